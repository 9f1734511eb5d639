#!/usr/bin/env bash
# One rootless `strata build --no-cache` with each snapshotter (issue 21):
#   overlay         the kernel's overlayfs in the user namespace (userxattr)
#   fuse-overlayfs  fuse-overlayfs (the choice on Linux < 5.11 when installed)
#   copy            the copy snapshotter
# on the same Dockerfile (the rootless test's steps plus 3000 files written,
# 1100 appended to, 1100 removed) over a busybox base with 3000 small files;
# median of RUNS (3) wall-clock seconds, the snapshotters taking turns. Also
# checks that the three give the same image ID.
#
#   bench/rootless-snapshotters.sh     (as root; needs setpriv, busybox,
#                                       fuse-overlayfs, a user with subids)
#   BENCH_USER=strata-rl STRATA=target/release/strata RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
user=${BENCH_USER:-strata-rl}
strata_src=${STRATA:-target/release/strata}
[ "$(id -u)" = 0 ] || { echo "$0: run as root (it runs strata as $user)" >&2; exit 2; }
id "$user" >/dev/null 2>&1 || { echo "$0: no user $user (scripts/test makes strata-rl)" >&2; exit 2; }
[ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" = 666 ] || { echo "$0: /dev/fuse is not 0666" >&2; exit 2; }

work=$(mktemp -d /tmp/strata-bench-snap.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/usr/share/data" "$work/ctx/d" "$work/xdg"
cp "$(command -v busybox)" "$work/rootfs/bin/"
for a in $("$work/rootfs/bin/busybox" --list); do
  [ -e "$work/rootfs/bin/$a" ] || ln -s busybox "$work/rootfs/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/rootfs/etc/group"
for i in $(seq 1 3000); do echo "line $i" >"$work/rootfs/usr/share/data/f$i"; done
tar -C "$work/rootfs" -cf "$work/base.tar" .
cat >"$work/ctx/Dockerfile" <<'EOF'
FROM busybox
COPY gone /gone
COPY d /d
RUN echo 'dev:x:1000:1000::/home/dev:/bin/sh' >> /etc/passwd && echo 'dev:x:1000:' >> /etc/group && mkdir -p /home/dev && echo mine > /home/dev/f && chown -R dev:dev /home/dev
RUN echo x > /owned && chown 65534:65534 /owned
RUN mkdir -p /usr/bin && cp /bin/busybox /usr/bin/suidbox && chmod 4755 /usr/bin/suidbox
RUN rm /gone
RUN rm -rf /d && mkdir /d && echo new > /d/new
RUN mkdir -p /gen && i=0; while [ $i -lt 3000 ]; do echo $i > /gen/f$i; i=$((i+1)); done
RUN for f in /usr/share/data/f1*; do echo changed >> $f; done && rm -rf /usr/share/data/f2*
RUN cat /usr/share/data/* /gen/* | md5sum > /sum && find /gen /usr -type f | wc -l > /count
EOF
echo gone >"$work/ctx/gone"
echo old >"$work/ctx/d/old"
cp "$strata_src" "$work/strata"
chmod 700 "$work/xdg"
chmod 755 "$work" "$work/strata"
chown -R "$user:" "$work"
as_user() {
  setpriv --reuid "$user" --regid "$user" --init-groups -- env -i PATH=/usr/bin:/bin \
    HOME="$work" XDG_RUNTIME_DIR="$work/xdg" STRATA_ROOT="$work/store" "$@"
}
as_user "$work/strata" import "$work/base.tar" busybox -c 'ENV PATH=/bin' >/dev/null

snaps=(overlay fuse-overlayfs copy)
declare -A times=() ids=()
for _ in $(seq "$runs"); do
  for s in "${snaps[@]}"; do
    t0=$(date +%s.%N)
    id=$(as_user env STRATA_SNAPSHOTTER="$s" "$work/strata" build -q --no-cache -t "$s" "$work/ctx")
    t1=$(date +%s.%N)
    times[$s]+="$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$t0" "$t1") "
    ids[$s]=$id
  done
done
printf '%-15s %8s   %s\n' snapshotter median "runs (s)"
for s in "${snaps[@]}"; do
  # shellcheck disable=SC2086
  med=$(python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" ${times[$s]})
  printf '%-15s %8s   %s\n' "$s" "$med" "${times[$s]}"
done
for s in "${snaps[@]}"; do echo "$s: ${ids[$s]}"; done
[ "$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)" = 1 ] || { echo "image IDs differ" >&2; exit 1; }
