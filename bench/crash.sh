#!/usr/bin/env bash
# Crash at any point (issue 24, item 1), the long run: `import`, `build`
# (COPY and a RUN with a --secret, built-in sandbox and OCI runtime), `save`,
# `load`, `pull` and `push` killed with SIGKILL at random moments, and
# `strata serve` during an upload, TRIALS times each, with every check
# of crates/strata-cli/tests/crash.rs after each kill (no process or mount
# left, next run succeeds and sweeps, store verify clean, nothing lost, no
# secret bytes under the store or /tmp).
#
#   bench/crash.sh [TRIALS]        (default 50; needs root and busybox-static)
#   STRATA_CRASH_SEED=N            replay the kill moments of a failed run
#
# Prints the fault table: one line per command.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-50}
log=$(mktemp /tmp/strata-bench-crash.XXXXXX)
trap 'rm -f "$log"' EXIT
set +e
STRATA_CRASH_TRIALS=$trials STRATA_TEST_STRICT=1 \
  cargo test --locked -p strata-cli --test crash -- \
  --test-threads=1 --nocapture >"$log" 2>&1
status=$?
set -e
echo "command | trials | survived | data lost | secrets left"
grep '^crash ' "$log" | sed -E 's/^crash (.*): ([0-9]+) trials \(([0-9]+) killed mid-run\), ([0-9]+) survived, ([0-9]+) data lost, ([0-9]+) secrets left/\1 | \2 (\3 mid-run) | \4 | \5 | \6/'
if [ $status -ne 0 ]; then
  grep -E 'panicked|SEED=|left:|killed at' "$log" | head -40
  echo "FAILED (exit $status)"
fi
exit $status
