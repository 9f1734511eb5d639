//! A full disk (issue 24, item 3): the store on a size-limited tmpfs that
//! fills during a build, a load and a pull (a `strata serve` upload onto a
//! full disk is in strata-registry's serve_stress tests). The command fails with a "no
//! space" error naming the store, leaves nothing partial (no ingest, no
//! scratch or half-extracted directory, `store verify` clean, what was
//! stored before intact), and succeeds once space is freed.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size_mb` mounted at `dir`, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn new(dir: &Path, size_mb: u64) -> Option<SmallFs> {
        if !strata_testkit::require_root() || !strata_testkit::require_tool("mount") {
            return None;
        }
        fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m"),
                "strata-full",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount a tmpfs on {}", dir.display());
        Some(SmallFs(dir.to_owned()))
    }

    fn avail(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap()
    }

    /// Take all free space but `leave` bytes, in a file removed by `free`.
    fn fill(&self, leave: u64) {
        let avail = self.avail();
        let filler = self.0.join("filler");
        let f = fs::File::create(&filler).unwrap();
        // tmpfs allocates on write: write it.
        let mut w = std::io::BufWriter::new(f);
        std::io::copy(
            &mut std::io::repeat(0xa5).take(avail.saturating_sub(leave)),
            &mut w,
        )
        .unwrap();
        std::io::Write::flush(&mut w).unwrap();
    }

    fn free(&self) {
        let filler = self.0.join("filler");
        let size = fs::metadata(&filler).unwrap().len();
        let before = self.avail();
        fs::remove_file(&filler).unwrap();
        // The space comes back once nobody has the file open; anything on
        // the machine that reads files under /tmp can hold it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.avail() < before + size / 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A store `dir/src` holding `big`, an image with one 12 MB layer of
/// incompressible bytes (`seed`).
fn big_image(dir: &Path, seed: u64) -> PathBuf {
    let src = dir.join("src");
    let rootfs = dir.join("rootfs.tar");
    let mut b = tar::Builder::new(fs::File::create(&rootfs).unwrap());
    let data = noise(12 << 20, seed);
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "data/big", &data[..]).unwrap();
    b.finish().unwrap();
    ok(&src, &["import", rootfs.to_str().unwrap(), "big"]);
    src
}

/// Nothing half-done under the store.
fn nothing_partial(root: &Path) {
    let mut left = Vec::new();
    for d in ["ingest", "tmp", "snapshots/.active"] {
        for e in fs::read_dir(root.join(d)).into_iter().flatten().flatten() {
            left.push(format!("{d}/{}", e.file_name().to_string_lossy()));
        }
    }
    for d in ["snapshots", "blobs/sha256", "sidecars/build-info"] {
        for e in fs::read_dir(root.join(d)).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".tmp") {
                left.push(format!("{d}/{n}"));
            }
        }
    }
    assert!(left.is_empty(), "partial state left: {left:?}");
    verify_clean(root);
}

/// The failure says the disk is full and where.
fn says_no_space(out: &std::process::Output, root: &Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", err.lines().take(2).collect::<Vec<_>>().join(" / "));
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.to_lowercase().contains("no space"),
        "no \"no space\" in:\n{err}"
    );
    assert!(
        err.contains(&root.display().to_string()),
        "the store {} is not named in:\n{err}",
        root.display()
    );
}

#[test]
fn a_build_on_a_full_disk_fails_cleanly_and_succeeds_once_space_is_freed() {
    let t = tempfile::tempdir().unwrap();
    let Some(small) = SmallFs::new(&t.path().join("small"), 48) else {
        return;
    };
    let root = small.0.join("root");
    let tar = busybox_tar(t.path());
    let Some(tar) = tar else { return };
    ok(&root, &["import", tar.to_str().unwrap(), "busybox"]);
    let before = identity(&root, "busybox");
    let ctx = t.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("a.bin"), noise(6 << 20, 1)).unwrap();
    fs::write(ctx.join("b.bin"), noise(6 << 20, 2)).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY a.bin /a.bin\nRUN head -c 3000000 /a.bin > /part\nCOPY b.bin /b.bin\n",
    )
    .unwrap();
    let build = [
        "build",
        "-q",
        "--isolation",
        "builtin",
        "-t",
        "full",
        ctx.to_str().unwrap(),
    ];
    // Free space runs out at some point of each step: the layer blob, its
    // snapshot, the RUN's upper directory. Try a few amounts.
    for leave_mb in [1u64, 5, 9, 14, 20] {
        small.fill(leave_mb << 20);
        let out = run(&root, &build);
        if out.status.success() {
            eprintln!("{leave_mb} MB free: enough");
            // Enough for what was not cached yet.
            small.free();
            nothing_partial(&root);
            ok(&root, &["rmi", "full"]);
            ok(&root, &["prune", "--all"]);
            continue;
        }
        says_no_space(&out, &root);
        nothing_partial(&root);
        assert_eq!(identity(&root, "busybox"), before);
        small.free();
        ok(&root, &build);
        nothing_partial(&root);
        let got = ok(
            &root,
            &[
                "run",
                "--rm",
                "--isolation",
                "builtin",
                "full",
                "sh",
                "-c",
                "wc -c < /part; wc -c < /b.bin",
            ],
        );
        assert_eq!(
            got.split_whitespace().collect::<Vec<_>>(),
            ["3000000", "6291456"]
        );
        ok(&root, &["rmi", "full"]);
        ok(&root, &["prune", "--all"]);
    }
}

#[test]
fn a_load_on_a_full_disk_fails_cleanly_and_succeeds_once_space_is_freed() {
    let t = tempfile::tempdir().unwrap();
    let Some(small) = SmallFs::new(&t.path().join("small"), 40) else {
        return;
    };
    // An archive of an image with a 12 MB layer, made outside the small fs.
    let src = big_image(t.path(), 3);
    let archive = t.path().join("big.tar");
    ok(&src, &["save", "big", "-o", archive.to_str().unwrap()]);

    let root = small.0.join("root");
    let Some(tar) = busybox_tar(t.path()) else {
        return;
    };
    ok(&root, &["import", tar.to_str().unwrap(), "busybox"]);
    let before = identity(&root, "busybox");
    for leave_mb in [1u64, 6, 11] {
        small.fill(leave_mb << 20);
        let out = run(&root, &["load", "-i", archive.to_str().unwrap()]);
        says_no_space(&out, &root);
        nothing_partial(&root);
        assert!(run(&root, &["inspect", "big"]).status.code() == Some(1));
        assert_eq!(identity(&root, "busybox"), before);
        small.free();
        ok(&root, &["load", "-i", archive.to_str().unwrap()]);
        nothing_partial(&root);
        assert_eq!(identity(&root, "big"), identity(&src, "big"));
        ok(&root, &["rmi", "big"]);
        ok(&root, &["prune", "--all"]);
    }
}

#[test]
fn a_pull_on_a_full_disk_fails_cleanly_and_succeeds_once_space_is_freed() {
    let t = tempfile::tempdir().unwrap();
    let Some(small) = SmallFs::new(&t.path().join("small"), 40) else {
        return;
    };
    // An image with a 12 MB layer in a store outside the small fs, served.
    let src = big_image(t.path(), 5);
    let srv = Serve::start(&src, &[]);
    let name = format!("{}/big:latest", srv.addr);

    let root = small.0.join("root");
    let Some(tar) = busybox_tar(t.path()) else {
        return;
    };
    ok(&root, &["import", tar.to_str().unwrap(), "busybox"]);
    let before = identity(&root, "busybox");
    for leave_mb in [1u64, 6, 11] {
        small.fill(leave_mb << 20);
        let out = run(&root, &["pull", &name]);
        says_no_space(&out, &root);
        nothing_partial(&root);
        assert!(run(&root, &["inspect", &name]).status.code() == Some(1));
        assert_eq!(identity(&root, "busybox"), before);
        small.free();
        ok(&root, &["pull", &name]);
        nothing_partial(&root);
        assert_eq!(identity(&root, &name), identity(&src, "big"));
        ok(&root, &["rmi", &name]);
        ok(&root, &["prune", "--all"]);
    }
    drop(srv);
}
