#!/usr/bin/env bash
# Build times of every example, strata beside buildah (bud --layers) on the
# same contexts and the same base images:
#   cold              fresh store, base image present, nothing cached
#   no change         the same build again
#   one-file change   one source file's content changed (see CHANGE below)
#
#   bench/build.sh [EXAMPLE...]      (default: all; needs root, runc, network
#                                     for apt-get; buildah optional)
#
#   STRATA_BUILD_FLAGS="--sbom=spdx --provenance=max"  extra flags for strata's
#                                     builds (what a feature costs: run with and
#                                     without, compare the strata rows)
#   BENCH_TOOLS=strata                leave buildah out
#
# Prints one row per example and tool, and strata/buildah ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cargo build --release -q --locked -p strata-cli
strata=$root/target/release/strata

work=$(mktemp -d /tmp/strata-bench-build.XXXXXX)
cleanup() {
  if command -v buildah >/dev/null; then buildah rm --all >/dev/null 2>&1 || true; buildah umount --all >/dev/null 2>&1 || true; fi
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export STRATA_ROOT=$work/store

echo "==> base images"
STRATA="$strata" scripts/base-images busybox >/dev/null
STRATA="$strata" scripts/base-images debian >/dev/null
# "Base image present" means unpacked for both tools: skopeo's copy into
# containers-storage below unpacks buildah's, so unpack strata's snapshots
# too, outside the timings.
"$strata" run --rm busybox:latest true
"$strata" run --rm debian:bookworm-minbase true

# buildah's default (oci, via crun) fails on hybrid cgroup hosts ("cgroups in
# hybrid mode not supported"); chroot works everywhere. BUILDAH_ISOLATION=oci
# to compare against buildah's namespaced runs where the host allows.
buildah_isolation=${BUILDAH_ISOLATION:-chroot}
have_buildah=false
if command -v buildah >/dev/null && command -v skopeo >/dev/null; then
  have_buildah=true
  export CONTAINERS_STORAGE_CONF=$work/storage.conf
  cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/buildah"
runroot = "$work/buildah-run"
EOF
  for ref in busybox:latest debian:bookworm-minbase; do
    "$strata" save "$ref" -o "$work/base.tar"
    skopeo copy -q "docker-archive:$work/base.tar" "containers-storage:docker.io/library/$ref"
  done
fi

# example dockerfile change-file
cases=(
  "quickstart Dockerfile greet.sh"
  "java-layers Dockerfile.layered src/com/example/Greeting.java"
  "java-layers Dockerfile.fat src/com/example/Greeting.java"
  "apt-cleanup Dockerfile.two-runs -"
  "apt-cleanup Dockerfile.one-run -"
  "multistage Dockerfile hello.c"
  "multistage Dockerfile.single hello.c"
  "ordering Dockerfile src/app.py"
  "ordering Dockerfile.bad src/app.py"
)

secs() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$@"; }

timed() { # cmd... -> prints seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/last.out" 2>&1 || { echo "FAILED: $*" >&2; tail -20 "$work/last.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  secs "$t0" "$t1"
}

prepare() { # example -> a fresh copy of its context
  local ex=$1 dir=$work/ctx/$ex
  rm -rf "$dir"; mkdir -p "$work/ctx"; cp -a "examples/$ex" "$dir"
  case $ex in
    java-layers) (cd "$dir" && ./build.sh >/dev/null) ;;
    ordering) [ -d examples/ordering/wheels ] || examples/ordering/fetch-wheels.sh >/dev/null
              cp -a examples/ordering/wheels "$dir/" ;;
  esac
  echo "$dir"
}

change() { # ctx example file
  local dir=$1 ex=$2 f=$3
  [ "$f" = - ] && return 0
  printf '\n// bench change %s\n' "$(date +%s%N)" >>"$dir/$f"
  [ "$f" = src/app.py ] && sed -i 's|^// bench|# bench|' "$dir/$f"
  [ "$f" = greet.sh ] && sed -i 's|^// bench|# bench|' "$dir/$f"
  if [ "$ex" = java-layers ]; then (cd "$dir" && ./build.sh >/dev/null); fi
}

rows=()
printf '%-28s %-8s %9s %9s %9s\n' example tool cold no-change one-file
for c in "${cases[@]}"; do
  read -r ex df f <<<"$c"
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$ex"; then continue; fi
  tools=(strata)
  $have_buildah && [ "${BENCH_TOOLS:-strata buildah}" != strata ] && tools+=(buildah)
  for tool in "${tools[@]}"; do
    dir=$(prepare "$ex")
    tag=bench-$ex-${df,,}:1
    case $tool in
      # shellcheck disable=SC2086 # the extra flags are words
      strata) b=("$strata" build -q ${STRATA_BUILD_FLAGS:-} -f "$dir/$df" -t "$tag" "$dir") ;;
      buildah) b=(buildah bud -q --layers --pull=never --isolation "$buildah_isolation" -f "$dir/$df" -t "$tag" "$dir") ;;
    esac
    t_cold=$(timed "${b[@]}")
    t_same=$(timed "${b[@]}")
    if [ "$f" = - ]; then t_one=-; else change "$dir" "$ex" "$f"; t_one=$(timed "${b[@]}"); fi
    printf '%-28s %-8s %9s %9s %9s\n' "$ex/$df" "$tool" "$t_cold" "$t_same" "$t_one"
    rows+=("$ex/$df $tool $t_cold $t_same $t_one")
  done
done

if $have_buildah && [ "${BENCH_TOOLS:-strata buildah}" != strata ]; then
  echo
  echo "strata/buildah time ratios (lower is better for strata):"
  printf '%s\n' "${rows[@]}" | python3 -c '
import sys
r = {}
for line in sys.stdin:
    n, t, *v = line.split()
    r.setdefault(n, {})[t] = v
for n, d in r.items():
    if "strata" in d and "buildah" in d:
        out = []
        for a, b in zip(d["strata"], d["buildah"]):
            out.append("-" if a == "-" or b == "-" else f"{float(a)/max(float(b),0.01):.2f}")
        print(f"{n:28s} cold {out[0]:>6s}  no-change {out[1]:>6s}  one-file {out[2]:>6s}")
'
fi
