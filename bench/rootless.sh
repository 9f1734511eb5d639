#!/usr/bin/env bash
# Rootless build times (issue 21): the examples of bench/build.sh built by
#   root      strata as root (its default executor: crun or runc)
#   rootless  strata as an ordinary user with subordinate ids (user namespace,
#             overlay with userxattr where the kernel allows, else copy)
#   buildah   buildah bud --layers as the same user (rootless, containers-storage
#             under its $HOME with the overlay driver); leave it out with
#             BENCH_TOOLS="root rootless"
# each on the same context and the same base images, median of RUNS (5):
#   cold       --no-cache (base image present, nothing from the cache)
#   no-change  the same build again, cached
#
#   bench/rootless.sh [EXAMPLE...]     (default: all; needs root to create the
#                                      user, network for apt-get)
#   BENCH_USER=strata-bench            the user (made when missing; given
#                                      subordinate ids 300000-365535 when
#                                      useradd gave it none)
#   STRATA_SNAPSHOTTER=copy            both strata runs with the copy snapshotter
#                                      (as on kernels without overlay in a user
#                                      namespace, before 5.11)
#   BUILDAH_ISOLATION=chroot           buildah's isolation (as bench/build.sh)
#
# Prints one row per example and tool, then the rootless/root and
# rootless/buildah ratios of the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${RUNS:-5}
user=${BENCH_USER:-strata-bench}
tools_wanted=${BENCH_TOOLS:-root rootless buildah}
[ "$(id -u)" = 0 ] || { echo "$0: run as root (it runs strata as root and as $user)" >&2; exit 2; }

if ! id "$user" >/dev/null 2>&1; then
  useradd -m -s /bin/sh "$user"
fi
if ! grep -q "^$user:" /etc/subuid; then
  usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$user"
fi
uid=$(id -u "$user")

cargo build --release -q --locked -p strata-cli
work=$(mktemp -d /tmp/strata-bench-rootless.XXXXXX)
chmod 755 "$work"
cp "$root/target/release/strata" "$work/strata"
strata=$work/strata
as_user() { # cmd... as $user, with its own store, runtime dir and buildah storage
  setpriv --reuid "$user" --regid "$user" --init-groups -- env -i \
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="$work/home" \
    XDG_RUNTIME_DIR="$work/home/run" STRATA_ROOT="$work/home/store" \
    ${STRATA_SNAPSHOTTER:+STRATA_SNAPSHOTTER=$STRATA_SNAPSHOTTER} "$@"
}
cleanup() {
  if command -v buildah >/dev/null; then
    as_user buildah rm --all >/dev/null 2>&1 || true
    as_user buildah unshare rm -rf "$work/home/.local" >/dev/null 2>&1 || true
  fi
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/home/run"
chmod 700 "$work/home/run"
# buildah's rootless storage under $HOME, with the kernel's overlay (its
# rootless default here would be vfs: a full copy per layer).
mkdir -p "$work/home/.config/containers"
printf '[storage]\ndriver = "overlay"\n' >"$work/home/.config/containers/storage.conf"
chown -R "$user:" "$work/home"
export STRATA_ROOT=$work/store

echo "==> base images"
STRATA="$strata" scripts/base-images busybox >/dev/null
STRATA="$strata" scripts/base-images debian >/dev/null
have_buildah=false
case " $tools_wanted " in *" buildah "*) command -v buildah >/dev/null && command -v skopeo >/dev/null && have_buildah=true ;; esac
for ref in busybox:latest debian:bookworm-minbase; do
  "$strata" save "$ref" -o "$work/base.tar"
  chmod 644 "$work/base.tar"
  as_user "$strata" load -i "$work/base.tar" >/dev/null
  if $have_buildah; then
    as_user skopeo copy -q "docker-archive:$work/base.tar" "containers-storage:docker.io/library/$ref"
  fi
done
# Unpacked for every tool before the timings (skopeo unpacked buildah's).
for ref in busybox:latest debian:bookworm-minbase; do
  "$strata" run --rm "$ref" true
  as_user "$strata" run --rm "$ref" true
done
echo "rootless: $(as_user "$strata" info | grep -E 'Snapshotter|Executor' | tr -s ' ' | paste -sd ';')"

cases=(
  "quickstart Dockerfile"
  "java-layers Dockerfile.layered"
  "java-layers Dockerfile.fat"
  "apt-cleanup Dockerfile.two-runs"
  "apt-cleanup Dockerfile.one-run"
  "multistage Dockerfile"
  "multistage Dockerfile.single"
  "ordering Dockerfile"
  "ordering Dockerfile.bad"
)

prepare() { # example -> a fresh copy of its context, the user's
  local ex=$1 dir=$work/ctx/$ex
  rm -rf "$dir"; mkdir -p "$work/ctx"; cp -a "examples/$ex" "$dir"
  case $ex in
    java-layers) (cd "$dir" && ./build.sh >/dev/null) ;;
    ordering) [ -d examples/ordering/wheels ] || examples/ordering/fetch-wheels.sh >/dev/null
              cp -a examples/ordering/wheels "$dir/" ;;
  esac
  chown -R "$user:" "$dir"
  chmod 755 "$work/ctx"
  echo "$dir"
}

once() { # cmd... -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/last.out" 2>&1 || { echo "FAILED: $*" >&2; tail -20 "$work/last.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$t0" "$t1"
}

median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }

rows=()
printf '%-32s %-9s %9s %9s   (median of %s)\n' example tool cold no-change "$runs"
for c in "${cases[@]}"; do
  read -r ex df <<<"$c"
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$ex"; then continue; fi
  dir=$(prepare "$ex")
  tag=bench-$ex-${df,,}:1
  # The tools take turns, run by run: a load that comes and goes (other
  # work on the machine) weighs on each alike.
  declare -A cold=() same=()
  for _ in $(seq "$runs"); do
    for tool in $tools_wanted; do
      case $tool in
        root) b=("$strata" build -q) ;;
        rootless) b=(as_user "$strata" build -q) ;;
        buildah) $have_buildah || continue
                 b=(as_user buildah bud -q --layers --pull=never --isolation "${BUILDAH_ISOLATION:-chroot}") ;;
        *) echo "$0: unknown tool $tool" >&2; exit 2 ;;
      esac
      args=(-f "$dir/$df" -t "$tag" "$dir")
      cold[$tool]+=" $(once "${b[@]}" --no-cache "${args[@]}")"
      same[$tool]+=" $(once "${b[@]}" "${args[@]}")"
    done
  done
  for tool in $tools_wanted; do
    [ -n "${cold[$tool]:-}" ] || continue
    # shellcheck disable=SC2086 # the times are words
    mc=$(median ${cold[$tool]}); ms=$(median ${same[$tool]})
    printf '%-32s %-9s %9s %9s   cold:%s\n' "$ex/$df" "$tool" "$mc" "$ms" "${cold[$tool]}"
    rows+=("$ex/$df $tool $mc $ms")
  done
done

echo
echo "ratios of the medians (cold, no-change):"
printf '%s\n' "${rows[@]}" | python3 -c '
import sys
r = {}
for line in sys.stdin:
    n, t, c, s = line.split()
    r.setdefault(n, {})[t] = (float(c), float(s))
def ratio(d, a, b):
    if a not in d or b not in d:
        return "        -         -"
    return "".join(f"{d[a][i] / max(d[b][i], 0.01):10.2f}" for i in range(2))
print("%-32s %20s %20s" % ("", "rootless/root", "rootless/buildah"))
for n, d in r.items():
    print("%-32s %s %s" % (n, ratio(d, "rootless", "root"), ratio(d, "rootless", "buildah")))
'
