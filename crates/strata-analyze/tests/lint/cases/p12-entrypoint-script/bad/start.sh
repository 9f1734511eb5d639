#!/bin/sh
nginx -g "daemon off;" &
exec node server.js
