#!/usr/bin/env bash
# Load on `strata serve` beside Debian's reference registry (docker-registry,
# distribution 2.8) serving the same blobs: wrk with C concurrent
# connections pulling a 40 MiB blob, then the manifest, for D seconds each.
# Reports requests/s, p99 latency, throughput and the server's peak RSS
# during each run (VmHWM, reset before the run through /proc/PID/clear_refs).
# errors = non-2xx answers + socket errors (wrk's timeout is 60 s).
#
#   bench/serve-load.sh [CONNECTIONS] [SECONDS] [BLOB_MB]   (default: 32 10 40)
#
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=${1:-32}
secs=${2:-10}
mb=${3:-40}

for t in docker-registry wrk python3; do
  command -v "$t" >/dev/null || { echo "bench/serve-load.sh: $t is required (apt-get install docker-registry wrk)" >&2; exit 1; }
done

cargo build --release -q -p strata-cli -p strata-registry --bin strata --example mkimage
strata=$PWD/target/release/strata
mkimage=$PWD/target/release/examples/mkimage

work=$(mktemp -d /tmp/strata-load.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

echo "==> image: one $mb MiB layer"
"$mkimage" "$work/client" "$work/layout" load 1 "$mb" >/dev/null

# strata serve
sport=$(free_port)
"$strata" --root "$work/strata-root" -q serve --addr "127.0.0.1:$sport" >"$work/strata.log" 2>&1 &
spid=$!; pids+=("$spid")
# docker-registry
rport=$(free_port)
mkdir -p "$work/ref"
cat >"$work/ref/config.yml" <<EOC
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/ref/data
http:
  addr: 127.0.0.1:$rport
EOC
docker-registry serve "$work/ref/config.yml" >"$work/ref.log" 2>&1 &
rpid=$!; pids+=("$rpid")
wait_port "$sport"; wait_port "$rport"

for port in "$sport" "$rport"; do
  "$strata" --root "$work/client" -q push load:v1 "127.0.0.1:$port/load:v1" >/dev/null
done
layer=$(python3 - "$work/layout" <<'PY'
import json, sys, os
root = sys.argv[1]
idx = json.load(open(os.path.join(root, "index.json")))
m = idx["manifests"][0]["digest"].split(":")
man = json.load(open(os.path.join(root, "blobs", m[0], m[1])))
print(max(man["layers"], key=lambda l: l["size"])["digest"])
PY
)
accept='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

rows=()
run() { # server pid port label path
  local server=$1 pid=$2 port=$3 label=$4 path=$5 out
  echo 5 >"/proc/$pid/clear_refs"
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --timeout 60s --latency -H "Accept: $accept" "http://127.0.0.1:$port$path")
  local rps p99 tput errs peak
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  tput=$(awk '/^Transfer\/sec/ {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx or 3xx responses/ {print $NF}' <<<"$out")
  errs=$(( ${errs:-0} + $(awk -F'[ ,]+' '/Socket errors/ {print $5+$7+$9+$11}' <<<"$out") + 0 ))
  peak=$(( $(peak_kib "$pid") / 1024 ))
  rows+=("$(printf '| %-15s | %-18s | %10s | %9s | %10s | %8s MiB | %6s |' "$server" "$label" "$rps" "$p99" "$tput" "$peak" "$errs")")
  printf '%s\n' "${rows[-1]}"
}

echo "==> $conns connections, ${secs}s per run, blob $layer"
for s in "strata serve:$spid:$sport" "docker-registry:$rpid:$rport"; do
  IFS=: read -r name pid port <<<"$s"
  run "$name" "$pid" "$port" "blob GET ${mb} MiB" "/v2/load/blobs/$layer"
  run "$name" "$pid" "$port" "manifest GET" "/v2/load/manifests/v1"
done

echo
echo "==> summary ($(nproc) cores, loopback; peak RSS = the server's VmHWM during the run)"
printf '| %-15s | %-18s | %10s | %9s | %10s | %12s | %6s |\n' server target "req/s" p99 "transfer/s" "peak RSS" errors
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "-----------------" "--------------------" "------------" "-----------" "------------" "--------------" "--------"
printf '%s\n' "${rows[@]}"
