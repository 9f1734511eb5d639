//! A power loss right after a snapshot was extracted never leaves a
//! snapshot directory with missing or truncated files.
//!
//! The store lives on an ext4 file system in a loop-mounted image file. The
//! loop device writes what the file system sends it into the image file, so
//! a copy of the image taken at any moment is what the disk would hold if
//! the power went out then; the copy is mounted (its journal replayed, as
//! after a reboot) and the snapshot checked file by file.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_layer::{import_tar_to_store, LayerOptions, Snapshotter};
use strata_oci::{Compression, Layer, Store};

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An ext4 image mounted at `mnt`, unmounted on drop.
struct Ext4 {
    image: PathBuf,
    mnt: PathBuf,
}

impl Ext4 {
    fn new(dir: &Path, name: &str, size_mb: u64) -> Ext4 {
        let image = dir.join(format!("{name}.img"));
        let f = fs::File::create(&image).unwrap();
        f.set_len(size_mb << 20).unwrap();
        sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        Ext4::mount(dir, name, image)
    }

    fn mount(dir: &Path, name: &str, image: PathBuf) -> Ext4 {
        let mnt = dir.join(name);
        fs::create_dir_all(&mnt).unwrap();
        sh(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        Ext4 { image, mnt }
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// Pseudo-random file contents (so nothing is all zeros by luck).
fn content(i: usize, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const FILES: usize = 40;

fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..FILES {
        let data = content(i, 20_000 + i * 1000);
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("app/file{i}"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn a_snapshot_survives_a_power_loss_right_after_ensure_layer() {
    if !strata_testkit::require_root()
        || !strata_testkit::require_tool("mkfs.ext4")
        || !strata_testkit::require_tool("mount")
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let disk = Ext4::new(t.path(), "disk", 128);
    let store = Store::open(disk.mnt.join("store")).unwrap();
    let info = import_tar_to_store(
        &store,
        &layer_tar()[..],
        &LayerOptions::new(Compression::Gzip),
    )
    .unwrap();
    let layer = Layer {
        descriptor: info.descriptor(),
        diff_id: info.diff_id.clone(),
    };
    // Everything before this point is on disk.
    sh(Command::new("sync").arg("-f").arg(&disk.mnt));
    let snap = Snapshotter::new(&store).unwrap();
    let dir = snap.ensure_layer(&layer).unwrap();
    let rel = dir.strip_prefix(&disk.mnt).unwrap().to_owned();

    // The power goes out now: what the disk holds is the image file as the
    // loop device left it.
    let copy = t.path().join("after-power-loss.img");
    let mut out = fs::File::create(&copy).unwrap();
    std::io::copy(&mut fs::File::open(&disk.image).unwrap(), &mut out).unwrap();
    out.flush().unwrap();
    drop(out);
    // Reboot: fsck replays the journal.
    let st = Command::new("e2fsck")
        .args(["-f", "-y"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        matches!(st.status.code(), Some(0) | Some(1)),
        "e2fsck: {}",
        String::from_utf8_lossy(&st.stdout)
    );
    let after = Ext4::mount(t.path(), "after", copy);
    let snapshot = after.mnt.join(&rel);
    assert!(
        snapshot.is_dir(),
        "ensure_layer returned, yet the snapshot is not on disk"
    );
    for i in 0..FILES {
        let p = snapshot.join(format!("app/file{i}"));
        let got = fs::read(&p).unwrap_or_default();
        assert!(
            got == content(i, 20_000 + i * 1000),
            "{} has {} bytes after the power loss, expected {}",
            p.display(),
            got.len(),
            20_000 + i * 1000
        );
    }
}
