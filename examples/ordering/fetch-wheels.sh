#!/usr/bin/env bash
# Downloads the pinned wheels of requirements.txt into wheels/ (the build
# installs from there, without network access and without version drift).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip download --quiet --only-binary=:all: --no-deps -r requirements.txt -d wheels
ls wheels
