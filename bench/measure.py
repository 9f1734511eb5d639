#!/usr/bin/env python3
"""Runs one command and measures what it and everything it starts costs.

    measure.py --group NAME [--daemon PID]... [--device loopN --mount DIR]
               [--log FILE] [--label TEXT] -- COMMAND...

Prints one JSON object:

- wall: seconds until COMMAND exits;
- user, sys: CPU seconds of COMMAND's process tree (wait4: every process
  reaped on the way, containers an OCI runtime started included) or of the
  cgroup NAME (v1 cpuacct, children included), whichever is more: COMMAND
  is moved into the cgroup, and so is anything already there (a daemon
  that does the work, such as dockerd, with the containers it starts below
  it);
- peak_rss_kb: the largest resident set of one process: COMMAND's process
  tree (wait4), or a daemon's VmHWM (reset before the run) when larger;
- syscalls: system calls (perf's raw_syscalls:sys_enter) of COMMAND's
  process tree, or with --daemon of the cgroup NAME and those below it
  (v2, counted machine-wide);
- written_bytes: bytes written to DEVICE (the file system holding the
  tool's store), after syncing DIR so nothing is left in the page cache;
- rc: COMMAND's exit status.

Needs root and cgroup v1 cpuacct + cgroup v2 mounted (the hybrid layout
Debian boots with); without perf (Debian: linux-perf) syscalls is null.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

V1 = "/sys/fs/cgroup/cpuacct"
V2 = "/sys/fs/cgroup/unified"
if not os.path.isdir(V2) and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
    V2 = "/sys/fs/cgroup"


def cgroups(name):
    dirs = [os.path.join(V1, name), os.path.join(V2, name)]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    return dirs


def cpu(v1dir):
    def read(f):
        with open(os.path.join(v1dir, f)) as fh:
            return int(fh.read().split()[0])

    return read("cpuacct.usage_user") / 1e9, read("cpuacct.usage_sys") / 1e9


def sectors_written(device):
    with open(f"/sys/block/{device}/stat") as fh:
        return int(fh.read().split()[6])


def hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--group", required=True)
    p.add_argument("--daemon", type=int, action="append", default=[])
    p.add_argument("--device")
    p.add_argument("--mount")
    p.add_argument("--log", default=os.devnull)
    p.add_argument("--label", default="")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    v1, v2 = cgroups(a.group)
    for pid in a.daemon:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
    if a.mount:
        subprocess.run(["sync", "-f", a.mount], check=False)
    w0 = sectors_written(a.device) if a.device else 0
    u0, s0 = cpu(v1)
    counts = tempfile.NamedTemporaryFile(prefix="perf-", suffix=".csv", delete=False)
    counts.close()
    count = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", counts.name]
    perf = None
    if not shutil.which("perf"):
        cmd = list(cmd)  # no syscall counts
    elif a.daemon:
        # The work happens in the daemons: count the cgroup, machine-wide.
        perf = subprocess.Popen(
            count + ["-a", "--for-each-cgroup", os.path.relpath(v2, V2)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # perf opens its counters
        cmd = list(cmd)
    else:
        # Count the command's process tree, wherever its processes go
        # (an OCI runtime moves containers to cgroups of their own).
        cmd = count + ["--"] + list(cmd)

    def enter():
        pid = str(os.getpid())
        for d in (v1, v2):
            with open(os.path.join(d, "cgroup.procs"), "w") as fh:
                fh.write(pid)

    with open(a.log, "ab") as log:
        t0 = time.monotonic()
        child = subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=enter)
        _, status, ru = os.wait4(child.pid, 0)
        wall = time.monotonic() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    u1, s1 = cpu(v1)
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    syscalls = None
    with open(counts.name) as fh:
        for line in fh:
            f = line.strip().split(",")
            if len(f) > 3 and f[2] == "raw_syscalls:sys_enter" and f[0].isdigit():
                syscalls = int(f[0])
    os.unlink(counts.name)
    # CPU: the cgroup's, or the process tree's (every process reaped on
    # the way, containers included) when that is more.
    user = max(u1 - u0, ru.ru_utime)
    system = max(s1 - s0, ru.ru_stime)
    written = None
    if a.device:
        if a.mount:
            subprocess.run(["sync", "-f", a.mount], check=False)
        written = (sectors_written(a.device) - w0) * 512
    rss = max([ru.ru_maxrss] + [hwm_kb(pid) for pid in a.daemon])
    print(json.dumps({
        "label": a.label,
        "wall": round(wall, 3),
        "user": round(user, 3),
        "sys": round(system, 3),
        "peak_rss_kb": rss,
        "syscalls": syscalls,
        "written_bytes": written,
        "rc": child.returncode,
    }))
    sys.stdout.flush()
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
