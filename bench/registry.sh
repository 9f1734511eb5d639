#!/usr/bin/env bash
# Push and pull times and bytes for a multi-layer image of a few hundred MB,
# strata vs `skopeo copy` doing the same transfer, against Debian's
# reference registry (docker-registry) on loopback.
#
#   bench/registry.sh [LAYERS] [MB_PER_LAYER]     (default: 8 layers x 40 MiB)
#
# Each tool gets its own fresh registry (so neither benefits from the
# other's blobs or from a cached mount). Bytes are the loopback interface's
# received bytes (/proc/net/dev, lo rx) during the command, so HTTP and
# TCP overhead are included alike for both tools.
set -euo pipefail
cd "$(dirname "$0")/.."

layers=${1:-8}
mb=${2:-40}

for t in docker-registry skopeo python3; do
  command -v "$t" >/dev/null || { echo "bench/registry.sh: $t is required" >&2; exit 1; }
done

# One cargo invocation for both (same feature set, no rebuild between them).
cargo build --release -q -p strata-cli -p strata-registry --bin strata --example mkimage
strata=$PWD/target/release/strata
mkimage=$PWD/target/release/examples/mkimage

work=$(mktemp -d /tmp/strata-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_registry() { # name -> prints host:port
  local name=$1 port
  port=$(free_port)
  mkdir -p "$work/$name"
  cat >"$work/$name/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/$name/data
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$work/$name/config.yml" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { echo "127.0.0.1:$port"; return; }
    sleep 0.05
  done
  echo "registry $name did not start" >&2; exit 1
}

lo_rx() { awk '$1=="lo:" {print $2}' /proc/net/dev; }

results=()
measure() { # label cmd...
  local label=$1; shift
  sync
  local b0 t0 t1 b1
  b0=$(lo_rx); t0=$(date +%s.%N)
  "$@" >"$work/last.out" 2>&1 || { cat "$work/last.out" >&2; exit 1; }
  t1=$(date +%s.%N); b1=$(lo_rx)
  local secs mb_
  secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  mb_=$(python3 -c "print(f'{($b1-$b0)/1e6:.1f}')")
  results+=("$(printf '%-44s %8s s %10s MB' "$label" "$secs" "$mb_")")
  printf '%-44s %8s s %10s MB\n' "$label" "$secs" "$mb_"
}

echo "==> image: $layers layers x $mb MiB (incompressible, uncompressed tar layers), v2 = last layer changed"
"$mkimage" "$work/store" "$work/layout" bench "$layers" "$mb" --v2

rs=$(start_registry reg-strata)
rk=$(start_registry reg-skopeo)
echo "==> registries: strata -> $rs, skopeo -> $rk"

measure "push v1 (strata push)" \
  "$strata" --root "$work/store" push bench:v1 "$rs/bench:v1"
measure "push v1 (skopeo copy oci: -> docker://)" \
  skopeo copy -q --dest-tls-verify=false "oci:$work/layout:v1" "docker://$rk/bench:v1"
measure "push v2, one layer changed (strata push)" \
  "$strata" --root "$work/store" push bench:v2 "$rs/bench:v2"
tail -1 "$work/last.out"
measure "push v2, one layer changed (skopeo copy)" \
  skopeo copy -q --dest-tls-verify=false "oci:$work/layout:v2" "docker://$rk/bench:v2"
measure "pull v1 into an empty store (strata pull)" \
  "$strata" --root "$work/pulled" pull "$rs/bench:v1"
measure "pull v1 (skopeo copy docker:// -> oci:)" \
  skopeo copy -q --src-tls-verify=false "docker://$rk/bench:v1" "oci:$work/skopeo-out:v1"
measure "pull v2 after v1 (strata pull)" \
  "$strata" --root "$work/pulled" pull "$rs/bench:v2"
tail -1 "$work/last.out"
measure "pull v2 after v1 (skopeo copy, same oci dir)" \
  skopeo copy -q --src-tls-verify=false "docker://$rk/bench:v2" "oci:$work/skopeo-out:v2"

echo
echo "==> summary ($layers x $mb MiB, loopback, $(nproc) cores)"
printf '%s\n' "${results[@]}"
