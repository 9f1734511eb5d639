#!/usr/bin/env bash
# strata beside buildah (`bud --layers`) and docker's classic builder on the
# same contexts, each from an empty store on a file system of its own.
#
#   bench/compare.sh [--runs N] [--rows "1 2 3 4"] [--tools "strata buildah docker"]
#                    [--out FILE] [--smoke]
#
# Rows (see bench/README.md):
#   1  10,000 files, 179 MB (`COPY app /app`, `COPY last /last` on busybox):
#      cold, no change, touch (every file's mtime), one file changed (last/)
#   2  1 GiB in 100 files: cold, no change
#   3  RUN-heavy: apt-get install build-essential, examples/ordering (pip),
#      examples/multistage: cold, no change
#   4  rows 1's and 2's builds, each then pushed to a loopback registry
#      (docker-registry): build+push, build+push-1g
#
# Every run of every tool gets a fresh ext4 file system (a loop device) for
# its whole store, with the base images loaded and unpacked before the
# clock starts, so "bytes written" is what that device received. Tools
# alternate within each repetition (the order rotates). Each measurement is
# taken by bench/measure.py: wall time, CPU (user, sys) of everything the
# tool started (for docker: the daemons and their containers), peak RSS of
# one process, system calls, bytes written. The summary gives medians and
# strata/peer ratios; the raw JSON lines go to FILE (default
# $work/results.jsonl).
#
# --smoke: a 200-file, 2 MB context, one repetition, row 1 only: checks the
# harness end to end (untimed; scripts/test runs it), with the debug build
# (BENCH_PROFILE=release takes the release build instead).
# Needs root, mkfs.ext4 and loop devices (else stores go to a plain
# directory and bytes written are not measured), perf for syscall counts
# (Debian: linux-perf); buildah + skopeo, docker.io, docker-registry for
# the peers (a missing peer is skipped with a note).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=5
rows="1 2 3 4"
tools="strata buildah docker"
out=
smoke=false
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --smoke) smoke=true; runs=1; rows=1; shift ;;
    *) echo "usage: $0 [--runs N] [--rows LIST] [--tools LIST] [--out FILE] [--smoke]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/compare.sh needs root (loop devices, cgroups, perf)" >&2; exit 2; }
for t in mkfs.ext4 python3; do
  command -v "$t" >/dev/null || { echo "bench/compare.sh: $t is required" >&2; exit 2; }
done
command -v perf >/dev/null || echo "note: no perf (Debian: linux-perf): no syscall counts" >&2
have() {
  case $1 in
    strata) return 0 ;;
    buildah) command -v buildah >/dev/null && command -v skopeo >/dev/null ;;
    docker) command -v dockerd >/dev/null && command -v docker >/dev/null ;;
  esac
}
active=()
for t in $tools; do
  if have "$t"; then active+=("$t"); else echo "note: $t is not installed, skipped" >&2; fi
done
if [[ " $rows " == *" 4 "* ]] && ! command -v docker-registry >/dev/null; then
  echo "note: docker-registry is not installed, row 4 skipped" >&2
  rows=${rows//4/}
fi

# The smoke run takes the debug build `cargo test` made; timings want release.
# BENCH_PROFILE=release|debug overrides (a smoke run where only release is built).
profile=release
$smoke && profile=debug
profile=${BENCH_PROFILE:-$profile}
case $profile in release|debug) ;; *) echo "BENCH_PROFILE: release or debug" >&2; exit 2 ;; esac
cargo build -q --locked --profile "${profile/debug/dev}" -p strata-cli
strata=$root/target/$profile/strata
measure=(python3 "$root/bench/measure.py")

work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/strata-bench.XXXXXX")}
mkdir -p "$work"
out=${out:-$work/results.jsonl}
group=strata-bench-$$
mnt=$work/mnt
mkdir -p "$mnt"
dev=
img=
dockerd_pid=
registry_pid=
registry_addr=

cleanup() {
  set +e
  stop_dockerd
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
  fs_down
  for d in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/unified; do
    [ -d "$d/$group" ] && find "$d/$group" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  [ -z "${BENCH_KEEP:-}" ] && [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# --- a fresh file system per run ------------------------------------------
fs_up() { # size in GiB
  img=$work/fs.img
  rm -f "$img"
  truncate -s "${1}G" "$img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
  if dev=$(losetup -f --show "$img" 2>/dev/null) && mount "$dev" "$mnt"; then
    return
  fi
  # No loop devices here (a container): a plain directory, no byte counts.
  [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null
  dev=
  rm -f "$img"
  rm -rf "$mnt"; mkdir -p "$mnt"
  log "note: no loop device: stores in a plain directory, bytes written not measured"
}
fs_down() {
  if [ -n "$dev" ]; then
    mountpoint -q "$mnt" && umount "$mnt"
    losetup -d "$dev" 2>/dev/null
    dev=
  fi
  [ -n "$img" ] && rm -f "$img"
  img=
  mountpoint -q "$mnt" || { rm -rf "$mnt"; mkdir -p "$mnt"; }
}

# --- base images, made once --------------------------------------------------
base_dir=$work/base
mkdir -p "$base_dir"
bases() { # -> docker-archive tars of busybox and (rows 3) debian
  local need=busybox
  [[ " $rows " == *" 3 "* ]] && need="busybox debian"
  STRATA_ROOT=$base_dir/store
  export STRATA_ROOT
  for b in $need; do
    STRATA="$strata" BASE_CACHE="${BASE_CACHE:-$root/target/base-images}" scripts/base-images "$b" >/dev/null
  done
  "$strata" save busybox:latest -o "$base_dir/busybox.tar"
  if [[ $need == *debian* ]]; then
    "$strata" save debian:bookworm-minbase -o "$base_dir/debian.tar"
  fi
  unset STRATA_ROOT
}

# --- tools -------------------------------------------------------------------
stop_dockerd() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    dockerd_pid=
  fi
  grep -o -e " $mnt/docker[^ ]*" -e " $work/docker-exec[^ ]*" /proc/mounts | sort -r |
    xargs -r umount -l 2>/dev/null || true
}

start_dockerd() {
  mkdir -p "/sys/fs/cgroup/cpuacct/$group/docker" "/sys/fs/cgroup/unified/$group/docker"
  sh -c "echo \$\$ > /sys/fs/cgroup/cpuacct/$group/docker/cgroup.procs
         echo \$\$ > /sys/fs/cgroup/unified/$group/docker/cgroup.procs
         exec dockerd --iptables=false --bridge=none --data-root $mnt/docker \
           --exec-root $work/docker-exec --pidfile $work/docker.pid \
           -H unix://$work/docker.sock --cgroup-parent=/$group/docker/containers" \
    >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST=unix://$work/docker.sock
  for _ in $(seq 300); do docker info >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "dockerd did not start:"; tail -20 "$work/dockerd.log" >&2; exit 1
}

setup_tool() { # tool -> store with the base images, unpacked
  local tool=$1
  case $tool in
    strata)
      export STRATA_ROOT=$mnt/strata
      "$strata" load -i "$base_dir/busybox.tar" >/dev/null
      "$strata" run --rm busybox:latest true
      if [ -f "$base_dir/debian.tar" ] && [[ " $rows " == *" 3 "* ]]; then
        "$strata" load -i "$base_dir/debian.tar" >/dev/null
        "$strata" run --rm debian:bookworm-minbase true
      fi ;;
    buildah)
      export CONTAINERS_STORAGE_CONF=$work/storage.conf
      cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$mnt/buildah"
runroot = "$work/buildah-run"
EOF
      skopeo copy -q "docker-archive:$base_dir/busybox.tar" "containers-storage:docker.io/library/busybox:latest"
      if [ -f "$base_dir/debian.tar" ] && [[ " $rows " == *" 3 "* ]]; then
        skopeo copy -q "docker-archive:$base_dir/debian.tar" "containers-storage:docker.io/library/debian:bookworm-minbase"
      fi ;;
    docker)
      start_dockerd
      docker load -q -i "$base_dir/busybox.tar" >/dev/null
      if [ -f "$base_dir/debian.tar" ] && [[ " $rows " == *" 3 "* ]]; then
        docker load -q -i "$base_dir/debian.tar" >/dev/null
      fi ;;
  esac
}

teardown_tool() {
  case $1 in
    buildah) buildah rm --all >/dev/null 2>&1 || true
             grep -o " $mnt/buildah[^ ]*" /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
             rm -rf "$work/buildah-run" ;;
    docker) stop_dockerd ;;
  esac
}

build_cmd() { # tool dockerfile context tag
  local tool=$1 df=$2 ctx=$3 tag=$4
  case $tool in
    strata) echo "$strata build -q -f $df -t $tag $ctx" ;;
    buildah) echo "buildah bud -q --layers --pull=never --isolation chroot -f $df -t $tag $ctx" ;;
    docker) echo "env DOCKER_BUILDKIT=0 docker build -q --network host -f $df -t $tag $ctx" ;;
  esac
}

push_cmd() { # tool tag dest
  local tool=$1 tag=$2 dest=$3
  case $tool in
    strata) echo "$strata push $tag $dest" ;;
    buildah) echo "buildah push -q --tls-verify=false $tag docker://$dest" ;;
    docker) echo "sh -c 'docker tag $tag $dest && docker push -q $dest'" ;;
  esac
}

run=0
timed() { # row case tool rep cmd
  local row=$1 case=$2 tool=$3 rep=$4; shift 4
  run=$((run + 1))
  local cg=$group/$tool
  local daemons=()
  if [ "$tool" = docker ]; then
    cg=$group/docker
    daemons=(--daemon "$dockerd_pid")
    local c; c=$(pgrep -x containerd -P "$dockerd_pid" || true)
    [ -n "$c" ] && daemons+=(--daemon "$c")
  else
    cg=$group/$tool/$run
  fi
  sync
  if [ -n "${DROP_CACHES:-}" ]; then echo 3 >/proc/sys/vm/drop_caches; fi
  local line
  local device=()
  [ -n "$dev" ] && device=(--device "$(basename "$dev")" --mount "$mnt")
  line=$("${measure[@]}" --group "$cg" "${daemons[@]}" "${device[@]}" \
    --log "$work/last.log" --label "$row/$case/$tool/$rep" -- sh -c "$*") || {
    log "FAILED: $row $case $tool: $*"; tail -30 "$work/last.log" >&2; exit 1; }
  printf '%s\n' "$line" >>"$out"
  printf '%s\n' "$line" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("  {:28s} {:7.2f} s  cpu {:6.2f} s  rss {:6.0f} MB  {:>9} syscalls  {:8.1f} MB written".format(
    r["label"], r["wall"], r["user"] + r["sys"], r["peak_rss_kb"] / 1024,
    r["syscalls"] if r["syscalls"] is not None else "-", (r["written_bytes"] or 0) / 1e6))' >&2
}

# --- contexts ------------------------------------------------------------------
ctxs=$work/ctx
mkdir -p "$ctxs"
ctx_10k() {
  local d=$ctxs/10k
  if [ ! -d "$d" ]; then
    if $smoke; then python3 bench/gen-context.py "$d" 200 2; else python3 bench/gen-context.py "$d" 10000 179; fi
  fi
  echo "$d"
}
ctx_1g() {
  local d=$ctxs/1g
  if [ ! -d "$d" ]; then
    python3 bench/gen-context.py "$d" 100 1073.741824
  fi
  echo "$d"
}
ctx_apt() {
  local d=$ctxs/apt
  mkdir -p "$d"
  cat >"$d/Dockerfile" <<'EOF'
FROM debian:bookworm-minbase
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
EOF
  echo "$d"
}
ctx_example() { # name
  local d=$ctxs/$1
  if [ ! -d "$d" ]; then
    cp -a "examples/$1" "$d"
    if [ "$1" = ordering ]; then
      [ -d examples/ordering/wheels ] || examples/ordering/fetch-wheels.sh >/dev/null
      cp -a examples/ordering/wheels "$d/"
    fi
  fi
  echo "$d"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Sets registry_pid and registry_addr; not to be called in $(...), whose
# subshell would lose the pid (and leave the registry running).
start_registry() {
  local port; port=$(free_port)
  rm -rf "$work/registry"; mkdir -p "$work/registry"
  cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$work/registry/config.yml" >/dev/null 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { registry_addr=127.0.0.1:$port; return; }
    sleep 0.05
  done
  log "docker-registry did not start"; exit 1
}
stop_registry() { kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; registry_pid=; }

# The order of the tools in repetition r: rotated, so none always goes first.
order() {
  local r=$1 n=${#active[@]} i
  for i in $(seq 0 $((n - 1))); do echo "${active[$(( (i + r) % n ))]}"; done
}

row1() { # rep
  local rep=$1 ctx; ctx=$(ctx_10k)
  # The one file changed is in the small layer (`COPY last /last`): the
  # big layer stays cached (a change under app/ rebuilds it as cold does).
  local one=$ctx/last/version
  cp -p "$one" "$work/pristine"
  for tool in $(order "$rep"); do
    fs_up 8
    setup_tool "$tool"
    local b; b=$(build_cmd "$tool" "$ctx/Dockerfile" "$ctx" bench:1)
    timed 1 cold "$tool" "$rep" "$b"
    timed 1 no-change "$tool" "$rep" "$b"
    find "$ctx" -type f -exec touch {} +
    timed 1 touch "$tool" "$rep" "$b"
    printf 'changed %s\n' "$tool-$rep" >>"$one"
    timed 1 one-file "$tool" "$rep" "$b"
    cp -p "$work/pristine" "$one"
    teardown_tool "$tool"
    fs_down
  done
}

# Build, then push to a fresh registry, cold: row 1's context (build+push)
# and row 2's (build+push-1g). buildah and docker compress at push, strata
# at commit, so only the sum compares.
row4() {
  local rep=$1 c name ctx
  for tool in $(order "$rep"); do
    for c in "build+push $(ctx_10k)" "build+push-1g $(ctx_1g)"; do
      read -r name ctx <<<"$c"
      fs_up 8
      setup_tool "$tool"
      start_registry
      timed 4 "$name" "$tool" "$rep" "$(build_cmd "$tool" "$ctx/Dockerfile" "$ctx" bench:1) && $(push_cmd "$tool" bench:1 "$registry_addr/bench/$tool:$rep")"
      stop_registry
      teardown_tool "$tool"
      fs_down
    done
  done
}

row2() {
  local rep=$1 ctx; ctx=$(ctx_1g)
  for tool in $(order "$rep"); do
    fs_up 8
    setup_tool "$tool"
    local b; b=$(build_cmd "$tool" "$ctx/Dockerfile" "$ctx" bench:1)
    timed 2 cold "$tool" "$rep" "$b"
    timed 2 no-change "$tool" "$rep" "$b"
    teardown_tool "$tool"
    fs_down
  done
}

row3() {
  local rep=$1
  local cases=("apt $(ctx_apt) Dockerfile" "pip $(ctx_example ordering) Dockerfile"
               "multistage $(ctx_example multistage) Dockerfile")
  for tool in $(order "$rep"); do
    fs_up 8
    setup_tool "$tool"
    for c in "${cases[@]}"; do
      read -r name ctx df <<<"$c"
      if [ "$tool" = docker ] && [ "$name" = pip ]; then
        # RUN --mount needs BuildKit; the classic builder refuses it.
        continue
      fi
      local b; b=$(build_cmd "$tool" "$ctx/$df" "$ctx" "bench-$name:1")
      timed 3 "$name-cold" "$tool" "$rep" "$b"
      timed 3 "$name-no-change" "$tool" "$rep" "$b"
    done
    teardown_tool "$tool"
    fs_down
  done
}

log "==> work dir $work, results $out"
log "==> $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), strata $(git rev-parse --short HEAD)"
bases
cargo build -q --locked --profile "${profile/debug/dev}" -p strata-layer --example limit
limit() { # row context-dir
  local lim
  lim=$(target/$profile/examples/limit "$2")
  printf '%s\n' "{\"label\": \"$1/limit\", \"limit\": $lim}" >>"$out"
  log "  machine limit (read + sha256 + gzip at the layer level once, $(nproc) threads): $lim"
}
for row in $rows; do
  case $row in
    1) limit 1 "$(ctx_10k)/app" ;;
    2) limit 2 "$(ctx_1g)/app" ;;
  esac
  for rep in $(seq 1 "$runs"); do
    log "==> row $row, repetition $rep"
    case $row in
      1) row1 "$rep" ;;
      2) row2 "$rep" ;;
      3) row3 "$rep" ;;
      4) row4 "$rep" ;;
    esac
  done
done

log "==> summary (medians of $runs)"
python3 "$root/bench/summary.py" "$out"
