//! Test helpers shared by strata's crates (dev-dependency only).
//!
//! Tests that need an outside tool (runc, skopeo, a registry, docker) or root
//! call [`require_tool`] / [`require_root`] first. Under `STRATA_TEST_STRICT=1`
//! (set by `scripts/test`, hence CI) a missing requirement fails the test
//! loudly; elsewhere the test prints why it did not run and returns early.
#![deny(missing_docs)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when missing tools must fail tests (CI).
pub fn strict() -> bool {
    std::env::var_os("STRATA_TEST_STRICT").is_some_and(|v| v != "0" && !v.is_empty())
}

fn unavailable(what: &str) -> bool {
    if strict() {
        panic!("test requirement missing: {what} (STRATA_TEST_STRICT is set, so this fails)");
    }
    not_run(&format!(
        "{what} is missing (set STRATA_TEST_STRICT=1 to make this a failure)"
    ));
    false
}

/// Says that the current test did not run what it is for, and why: on
/// standard error written directly (so `cargo test` shows it even for a
/// test that then passes, whose printed output it would hide), and in the
/// file `STRATA_NOT_RUN_LOG` names, from which `scripts/test` prints its
/// NOT RUN summary.
pub fn not_run(why: &str) {
    use std::io::Write as _;
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_owned();
    let line = format!("NOT RUN: {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("STRATA_NOT_RUN_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Whether `name` is on PATH; `false` (after a loud message) when it is not,
/// panics under strict mode.
pub fn require_tool(name: &str) -> bool {
    if which(name).is_some() {
        true
    } else {
        unavailable(&format!("the `{name}` command"))
    }
}

/// Whether we run as root; see [`require_tool`].
pub fn require_root() -> bool {
    if is_root() {
        true
    } else {
        unavailable("root privileges")
    }
}

/// Whether overlayfs can be mounted here (root, and the kernel has it,
/// after `modprobe overlay`); see [`require_tool`].
pub fn require_overlay() -> bool {
    if !require_root() {
        return false;
    }
    let has = || {
        std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|s| s.lines().any(|l| l.trim_end().ends_with("overlay")))
    };
    if !has() {
        let _ = Command::new("modprobe").arg("overlay").status();
    }
    if has() {
        true
    } else {
        unavailable("overlayfs (modprobe overlay)")
    }
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Full path of `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The workspace root (the directory holding the top Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// The external test corpus (`../shared/conformance` beside the
/// repository, or `STRATA_CONFORMANCE_DIR`), when it is there. A fresh clone
/// has none: then the test is reported NOT RUN (see [`not_run`]) and gets
/// `None`, in strict mode too — the corpus is data the project does not
/// ship, not a tool CI installs.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STRATA_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/conformance"));
    if dir.is_dir() {
        Some(dir)
    } else {
        not_run(&format!(
            "the external conformance corpus is not at {} (it is ../shared/conformance beside the repository; CI has it)",
            dir.display()
        ));
        None
    }
}

/// Run a command, panic with its output when it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write a minimal busybox root filesystem tarball (from Debian's
/// `busybox-static`: `/bin/busybox` plus one symlink per applet, /etc/passwd,
/// /etc/group, /tmp) to `dest`. Returns false when busybox is unavailable.
pub fn busybox_rootfs_tar(dest: &Path) -> bool {
    busybox_rootfs_tar_with(dest, BUSYBOX_PASSWD, BUSYBOX_GROUP)
}

/// `/etc/passwd` of [`busybox_rootfs_tar`]: root, nobody, and app (1000).
pub const BUSYBOX_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
/// `/etc/group` of [`busybox_rootfs_tar`].
pub const BUSYBOX_GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\n";

/// [`busybox_rootfs_tar`] with the given `/etc/passwd` and `/etc/group`
/// (a base image whose users differ, under the same name).
pub fn busybox_rootfs_tar_with(dest: &Path, passwd: &str, group: &str) -> bool {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() && !unavailable("/bin/busybox (Debian package busybox-static)") {
        return false;
    }
    let out = Command::new(busybox).arg("--list").output().unwrap();
    let applets = String::from_utf8(out.stdout).unwrap();
    let file = std::fs::File::create(dest).unwrap();
    let mut b = tar::Builder::new(file);
    let dir = |b: &mut tar::Builder<std::fs::File>, name: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    for (d, m) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
        ("dev", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
    ] {
        dir(&mut b, d, m);
    }
    let data = std::fs::read(busybox).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, "bin/busybox", &data[..]).unwrap();
    for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for (name, body) in [("etc/passwd", passwd), ("etc/group", group)] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    b.finish().unwrap();
    true
}
