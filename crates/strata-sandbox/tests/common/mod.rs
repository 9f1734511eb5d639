//! Shared fixtures for the executor tests.
#![allow(dead_code, clippy::unwrap_used, clippy::new_without_default)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use strata_sandbox::{BuiltinExecutor, Capture, Executor, OciExecutor, RootFs, RunSpec, Stdio};

/// An executor by name, or None (after NOT RUN / panic in strict mode)
/// when the test cannot run here.
pub fn executor(name: &str, state: &Path) -> Option<Box<dyn Executor>> {
    if !strata_testkit::require_root() {
        return None;
    }
    if !Path::new("/bin/busybox").exists() && !strata_testkit::require_tool("busybox") {
        return None;
    }
    match name {
        "builtin" => Some(Box::new(BuiltinExecutor::new(state))),
        rt => {
            if !strata_testkit::require_tool(rt) {
                return None;
            }
            Some(Box::new(OciExecutor::new(
                strata_testkit::which(rt).unwrap(),
                state,
            )))
        }
    }
}

/// A temp dir with `rootfs/` holding the extracted busybox rootfs and
/// `state/` for the executor.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("busybox.tar");
        assert!(strata_testkit::busybox_rootfs_tar(&tar));
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        strata_testkit::run_ok(
            Command::new("tar")
                .arg("-xf")
                .arg(&tar)
                .arg("-C")
                .arg(&rootfs),
        );
        std::fs::create_dir(dir.path().join("state")).unwrap();
        Fixture { dir }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A fresh overlay over the busybox rootfs (plus `extra_lowers` above it).
    pub fn overlay(&self, extra_lowers: &[PathBuf]) -> RootFs {
        let up = self.path("upper");
        let work = self.path("work");
        std::fs::create_dir_all(&up).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let mut lowerdirs = extra_lowers.to_vec();
        lowerdirs.push(self.rootfs());
        RootFs::Overlay {
            lowerdirs,
            upperdir: up,
            workdir: work,
        }
    }

    pub fn spec(&self, script: &str) -> (RunSpec, Capture) {
        let mut spec = RunSpec::new(
            RootFs::Dir(self.rootfs()),
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        );
        let c = Capture::new();
        spec.stdio = Stdio::Capture(c.clone());
        (spec, c)
    }
}

/// The host's mount table, without per-mount ids (stable across a run).
pub fn host_mounts() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').skip(3).collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

/// Host mounts that mention `needle` (a test's temp dir).
pub fn mounts_under(needle: &Path) -> Vec<String> {
    let n = needle.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&n))
        .map(str::to_string)
        .collect()
}

/// Entries of a directory tree, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Pids of host processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                v.push(pid);
            }
        }
    }
    v
}

/// The static `sysprobe` helper (tests/fixtures/sysprobe.c: makes system
/// calls docker's seccomp profile refuses, prints `name=errno`), built once
/// per test binary with `gcc -static`; None (NOT RUN) without gcc.
pub fn sysprobe() -> Option<PathBuf> {
    static PROBE: OnceLock<Option<PathBuf>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !strata_testkit::require_tool("gcc") {
                return None;
            }
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysprobe.c");
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let tmp = dir.join(format!("sysprobe.{}", std::process::id()));
            strata_testkit::run_ok(
                Command::new("gcc")
                    .args(["-static", "-O1", "-o"])
                    .arg(&tmp)
                    .arg(&src),
            );
            let out = dir.join("sysprobe");
            std::fs::rename(&tmp, &out).unwrap();
            Some(out)
        })
        .clone()
}

/// `key=value` and `key:\tvalue` lines of a probe's output.
pub fn probe_results(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('=').or_else(|| l.split_once(':')))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
