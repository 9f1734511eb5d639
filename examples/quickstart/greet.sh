#!/bin/sh
# greet: say hello from inside a strata-built image.
echo "Hello, ${1:-world}! (greet @VERSION@, running as $(id -un) on $(uname -s))"
