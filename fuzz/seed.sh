#!/bin/sh
# Seeds the fuzz corpora from ../shared/conformance (read in place; the
# corpora are not committed).
set -e
here=$(cd "$(dirname "$0")" && pwd)
conf="$here/../../shared/conformance"
mkdir -p "$here/corpus/parse" "$here/corpus/expand"
cp "$conf"/real-dockerfiles/*.Dockerfile "$here/corpus/parse/"
for d in "$conf"/buildkit-parser/*/; do cp "$d/Dockerfile" "$here/corpus/parse/bk-$(basename "$d")"; done
i=0
grep '|' "$conf/buildkit-shell/envVarTest" | grep -v '^#' | while IFS='|' read -r _ word _; do
  i=$((i + 1))
  printf '\%03o%s\0PWD=/home\0NULL=' $((i % 128)) "$(echo "$word" | sed 's/^ *//;s/ *$//')" > "$here/corpus/expand/e$i"
done
