#!/usr/bin/env bash
# A build cache shared through a registry: strata's `--cache-to/--cache-from
# type=registry` beside buildah's (`bud --layers --cache-to/--cache-from`),
# same examples, same loopback registry (Debian's docker-registry, the
# reference registry 2.8), bytes counted on the registry side by
# bench/countproxy.py standing in front of it.
#
#   bench/remote-cache.sh [--runs N] [--examples "busybox debian"]
#                         [--tools "strata strata-local buildah"] [--out FILE]
#
# For each example, repetition and tool (the order alternating), with a
# fresh registry:
#   A          machine A, an empty store, builds and exports the cache
#              (strata: mode=max): wall time, bytes uploaded
#   B cached   machine B, another empty store, the context copied elsewhere
#              with every mtime changed, builds with --cache-from: wall
#              time, bytes downloaded, steps run, same image ID as A or not
#   B one-file B again after changing a file only the final stage uses
#   C one-file a third empty store builds the changed context with
#              --cache-from (a CI runner after a one-file commit)
# "Empty store" means: only the base images, loaded before the clock starts
# (their load time is printed apart, never counted); the registry holds only
# the cache, not the base images.
#
# Examples:
#   busybox  3 stages: two builder stages whose RUN writes `date +%s%N` and
#            8 MB of random bytes, a final stage that COPY --from's both and
#            COPYs one context file (final.txt, the one changed)
#   debian   on debian:bookworm-minbase (target/base-images): a build stage
#            (apt-get install gcc libc6-dev, gcc -static, date +%s%N), a
#            stage writing 16 MB of random bytes, a final Debian stage
#            COPYing from both and one context file (motd.txt); the apt
#            step needs the Debian mirror
#
# The strata binary is $STRATA, else target/release/strata (built here with
# cargo when STRATA is unset). Needs root, docker-registry, curl, python3;
# buildah + skopeo for the peer (skipped with a note when missing).
# Raw results go to FILE (default $work/results.jsonl) as JSON lines;
# the table at the end is bench/remote-cache-summary.py FILE.
#
# strata-local is strata with `type=local` (an OCI layout directory, as a
# CI cache directory would hold): A's "up" is that directory's size, B's
# and C's downloads are not counted (the directory is read in place).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=3
examples="busybox debian"
tools="strata strata-local buildah"
out=
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --examples) examples=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--examples LIST] [--tools LIST] [--out FILE]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/remote-cache.sh needs root" >&2; exit 2; }
for t in docker-registry curl python3; do
  command -v "$t" >/dev/null || { echo "bench/remote-cache.sh: $t is required (apt-get install docker-registry curl)" >&2; exit 2; }
done
active=()
for t in $tools; do
  if [ "$t" = buildah ] && ! { command -v buildah >/dev/null && command -v skopeo >/dev/null; }; then
    echo "note: buildah or skopeo is not installed, buildah skipped" >&2
  else
    active+=("$t")
  fi
done

if [ -n "${STRATA:-}" ]; then
  strata=$STRATA
else
  cargo build --release -q --locked -p strata-cli
  strata=$root/target/release/strata
fi

work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/strata-remote-cache.XXXXXX")}
mkdir -p "$work"
out=${out:-$work/results.jsonl}
registry_pid=
proxy_pid=
proxy=

log() { printf '%s\n' "$*" >&2; }

umount_under() { # dir: what buildah's overlay driver left mounted there
  grep -o " $1[^ ]*" /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
}
cleanup() {
  set +e
  stop_registry
  if command -v buildah >/dev/null; then
    for c in "$work"/m/*/storage.conf; do
      [ -f "$c" ] && CONTAINERS_STORAGE_CONF=$c buildah rm --all >/dev/null 2>&1
    done
  fi
  umount_under "$work"
  [ -z "${BENCH_KEEP:-}" ] && [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"
}
trap cleanup EXIT

ms() { date +%s%N; }
secs() { python3 -c "import sys; print(f'{(int(sys.argv[2])-int(sys.argv[1]))/1e9:.3f}')" "$@"; }

# --- registry and counting proxy ----------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() {
  local port; port=$(free_port)
  local d=$work/registry
  rm -rf "$d"; mkdir -p "$d"
  cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/data
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$d/config.yml" >"$d/log" 2>&1 &
  registry_pid=$!
  local up=false
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=true; break; fi
    sleep 0.05
  done
  $up || { log "docker-registry did not start:"; cat "$d/log" >&2; exit 1; }
  python3 "$root/bench/countproxy.py" 0 "127.0.0.1:$port" --port-file "$d/proxy.port" >"$d/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 200); do [ -f "$d/proxy.port" ] && break; sleep 0.05; done
  [ -f "$d/proxy.port" ] || { log "countproxy did not start:"; cat "$d/proxy.log" >&2; exit 1; }
  proxy=127.0.0.1:$(cat "$d/proxy.port")
}
stop_registry() {
  local p
  for p in "$proxy_pid" "$registry_pid"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  proxy_pid=; registry_pid=; proxy=
}
reset_counts() { curl -fsS -X POST "http://$proxy/_reset" >/dev/null; }
counts() { # tool
  if [ "$1" = strata-local ]; then
    echo "local $(du -sb "$work/local-cache" 2>/dev/null | cut -f1 || echo 0)"
  else
    curl -fsS "http://$proxy/_count"
  fi
}

# --- base images (docker-archives), made once -------------------------------------
base=$work/base
mkdir -p "$base"
make_bases() {
  STRATA_ROOT=$base/store
  export STRATA_ROOT
  local need=busybox
  [[ " $examples " == *" debian "* ]] && need="busybox debian"
  for b in $need; do
    STRATA="$strata" BASE_CACHE="${BASE_CACHE:-$root/target/base-images}" scripts/base-images "$b" >/dev/null
  done
  "$strata" save busybox:latest -o "$base/busybox.tar"
  [[ $need == *debian* ]] && "$strata" save debian:bookworm-minbase -o "$base/debian.tar"
  unset STRATA_ROOT
}

# --- contexts ----------------------------------------------------------------
ctx_busybox() {
  local d=$work/ctx/busybox
  mkdir -p "$d"
  cat >"$d/Dockerfile" <<'EOF'
FROM busybox AS one
RUN date +%s%N > /stamp1 && head -c 8000000 /dev/urandom > /data1
FROM busybox AS two
RUN date +%s%N > /stamp2 && head -c 8000000 /dev/urandom > /data2
FROM busybox
COPY --from=one /stamp1 /data1 /out/
COPY --from=two /stamp2 /data2 /out/
COPY final.txt /final.txt
EOF
  echo "the final stage's file" >"$d/final.txt"
  echo "$d final.txt"
}
ctx_debian() {
  local d=$work/ctx/debian
  mkdir -p "$d"
  cp examples/multistage/hello.c "$d/"
  cat >"$d/Dockerfile" <<'EOF'
FROM debian:bookworm-minbase AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY hello.c .
RUN gcc -O2 -static -o /hello hello.c && date +%s%N > /built
FROM debian:bookworm-minbase AS data
RUN date +%s%N > /stamp && head -c 16000000 /dev/urandom > /data
FROM debian:bookworm-minbase
COPY --from=build /hello /built /usr/local/bin/
COPY --from=data /stamp /data /srv/
COPY motd.txt /etc/motd
CMD ["hello"]
EOF
  echo "the final stage's file" >"$d/motd.txt"
  echo "$d motd.txt"
}

# --- machines: a store of their own with the base images ------------------------------
machine() { # tool name -> sets up $work/m/name, prints seconds the base load took
  local tool=$1 m=$work/m/$2 t0
  rm -rf "$m"; mkdir -p "$m"
  t0=$(ms)
  case $tool in
    strata|strata-local)
      # Loaded and unpacked, as skopeo's copy into containers-storage does.
      STRATA_ROOT=$m/store "$strata" load -i "$base/busybox.tar" >/dev/null
      STRATA_ROOT=$m/store "$strata" run --rm busybox:latest true
      if [ -f "$base/debian.tar" ]; then
        STRATA_ROOT=$m/store "$strata" load -i "$base/debian.tar" >/dev/null
        STRATA_ROOT=$m/store "$strata" run --rm debian:bookworm-minbase true
      fi ;;
    buildah)
      cat >"$m/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$m/graph"
runroot = "$m/run"
EOF
      CONTAINERS_STORAGE_CONF=$m/storage.conf skopeo copy -q "docker-archive:$base/busybox.tar" "containers-storage:docker.io/library/busybox:latest"
      [ -f "$base/debian.tar" ] && CONTAINERS_STORAGE_CONF=$m/storage.conf skopeo copy -q "docker-archive:$base/debian.tar" "containers-storage:docker.io/library/debian:bookworm-minbase" ;;
  esac
  secs "$t0" "$(ms)"
}
drop_machine() { # tool name
  local m=$work/m/$2
  [ "$1" = buildah ] && CONTAINERS_STORAGE_CONF=$m/storage.conf buildah rm --all >/dev/null 2>&1
  umount_under "$m"
  rm -rf "$m"
}

# One build; prints "SECONDS RAN ID" (RAN: steps that ran, not taken from a cache).
build() { # tool machine ctx mode(to|from)
  local tool=$1 m=$work/m/$2 ctx=$3 mode=$4 t0 t1 o=$work/build.out
  local ref=$proxy/cache/$tool
  sync
  t0=$(ms)
  case $tool in
    strata)
      local c=(--cache-from "type=registry,ref=$ref:cache")
      [ "$mode" = to ] && c=(--cache-to "type=registry,ref=$ref:cache,mode=max")
      STRATA_ROOT=$m/store "$strata" build --progress json --insecure-registry "$proxy" "${c[@]}" \
        -t bench:1 "$ctx" >"$o" 2>"$o.err" || { log "FAILED: strata build"; tail -20 "$o" "$o.err" >&2; exit 1; } ;;
    strata-local)
      local c=(--cache-from "type=local,src=$work/local-cache")
      [ "$mode" = to ] && c=(--cache-to "type=local,dest=$work/local-cache,mode=max")
      STRATA_ROOT=$m/store "$strata" build --progress json "${c[@]}" \
        -t bench:1 "$ctx" >"$o" 2>"$o.err" || { log "FAILED: strata build (local cache)"; tail -20 "$o" "$o.err" >&2; exit 1; } ;;
    buildah)
      local c=(--cache-from "$ref")
      [ "$mode" = to ] && c=(--cache-to "$ref")
      CONTAINERS_STORAGE_CONF=$m/storage.conf buildah bud --layers --pull=never --isolation chroot \
        --tls-verify=false "${c[@]}" -t bench:1 "$ctx" >"$o" 2>&1 || { log "FAILED: buildah bud"; tail -30 "$o" >&2; exit 1; } ;;
  esac
  t1=$(ms)
  local ran id
  case $tool in
    strata|strata-local)
      read -r ran id < <(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "done":
        print(e["ran"], e["id"])' "$o") ;;
    buildah)
      # Steps other than FROM, less those that said "Using cache".
      local steps hits
      steps=$(grep -E 'STEP [0-9]+/[0-9]+: ' "$o" | grep -vcE 'STEP [0-9]+/[0-9]+: FROM ' || true)
      hits=$(grep -c -- '--> Using cache' "$o" || true)
      ran=$((steps - hits))
      id=sha256:$(tail -1 "$o") ;;
  esac
  echo "$(secs "$t0" "$t1") $ran $id"
}

record() { # example tool rep phase seconds ran id base_load counts-json
  python3 - "$@" >>"$out" <<'EOF'
import json, sys
ex, tool, rep, phase, wall, ran, iid, base, counts = sys.argv[1:10]
if counts.startswith("local "):  # a cache directory: its size after an export, reads not counted
    c, up, down, n = None, (int(counts.split()[1]) if phase == "A-export" else None), None, None
else:
    c = json.loads(counts)
    up = sum(v["sent"] for v in c.values())
    down = sum(v["received"] for v in c.values())
    n = sum(v["requests"] for v in c.values())
print(json.dumps({"example": ex, "tool": tool, "rep": int(rep), "phase": phase, "wall": float(wall),
                  "ran": int(ran), "id": iid, "base_load": float(base), "up": up, "down": down,
                  "requests": n, "counts": c}))
EOF
  tail -1 "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
mb = lambda b: "{:9.2f} MB".format(b / 1e6) if b is not None else "        - MB"
print("  {:8s} {:12s} {:11s} {:7.2f} s  ran {:2d}  up {}  down {}  {:>4} requests  (base load {:.2f} s)".format(
    r["example"], r["tool"], r["phase"], r["wall"], r["ran"], mb(r["up"]), mb(r["down"]),
    r["requests"] if r["requests"] is not None else "-", r["base_load"]))' >&2
}

one() { # example tool rep
  local ex=$1 tool=$2 rep=$3 ctx file res base_a base_b base_c id_a
  read -r ctx file < <("ctx_$ex")
  rm -rf "$work/local-cache"
  start_registry
  base_a=$(machine "$tool" a)
  reset_counts
  res=$(build "$tool" a "$ctx" to)
  # shellcheck disable=SC2086 # $res is three words
  record "$ex" "$tool" "$rep" A-export $res "$base_a" "$(counts "$tool")"
  id_a=$(echo "$res" | cut -d' ' -f3)
  drop_machine "$tool" a

  # Machine B: the context elsewhere, every mtime another one.
  local cb=$work/ctx-b
  rm -rf "$cb"; cp -r "$ctx" "$cb"
  find "$cb" -exec touch -d '2001-02-03 04:05:06' {} +
  base_b=$(machine "$tool" b)
  reset_counts
  res=$(build "$tool" b "$cb" from)
  # shellcheck disable=SC2086 # $res is three words
  record "$ex" "$tool" "$rep" B-cached $res "$base_b" "$(counts "$tool")"
  if [ "$(echo "$res" | cut -d' ' -f3)" != "$id_a" ]; then
    log "  note: $tool on B built another image ID than A ($id_a)"
  fi
  echo "changed in repetition $rep" >>"$cb/$file"
  reset_counts
  res=$(build "$tool" b "$cb" from)
  # shellcheck disable=SC2086 # $res is three words
  record "$ex" "$tool" "$rep" B-one-file $res 0 "$(counts "$tool")"
  drop_machine "$tool" b

  base_c=$(machine "$tool" c)
  reset_counts
  res=$(build "$tool" c "$cb" from)
  # shellcheck disable=SC2086 # $res is three words
  record "$ex" "$tool" "$rep" C-one-file $res "$base_c" "$(counts "$tool")"
  drop_machine "$tool" c
  stop_registry
}

log "==> work dir $work, results $out"
log "==> $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), strata $("$strata" --version 2>/dev/null | head -1) at $(git rev-parse --short HEAD), buildah $(buildah --version 2>/dev/null | cut -d' ' -f3 || echo -)"
make_bases
n=${#active[@]}
for rep in $(seq 1 "$runs"); do
  for ex in $examples; do
    log "==> $ex, repetition $rep"
    for i in $(seq 0 $((n - 1))); do
      one "$ex" "${active[$(( (i + rep) % n ))]}" "$rep"
    done
  done
done
log "==> summary (medians of $runs), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$root/bench/remote-cache-summary.py" "$out"
