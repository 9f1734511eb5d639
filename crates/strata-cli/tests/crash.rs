//! kill -9 at several points of `import` and `save` never leaves a store
//! that `strata store verify` complains about, nor a truncated archive under
//! the requested name.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Pseudo-random, incompressible bytes (xorshift), streamed.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let b = self.state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A rootfs tar with a big incompressible file, so a run takes a while.
fn big_tar(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("big.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
    for i in 0..3u64 {
        let size = 40 << 20;
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        b.append_data(
            &mut h,
            format!("data/blob{i}"),
            Noise {
                state: 0x9e37_79b9_7f4a_7c15 + i,
                left: size,
            },
        )
        .unwrap();
    }
    b.finish().unwrap();
    p
}

const KILL_AFTER_MS: [u64; 7] = [1, 20, 60, 150, 300, 600, 1200];

#[test]
fn kill_9_during_import_leaves_the_store_clean() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let tar = big_tar(t.path());
    // Something already in the store, which must survive intact.
    ok(&root, &["import", tar.to_str().unwrap(), "before"]);
    for (i, ms) in KILL_AFTER_MS.iter().enumerate() {
        let mut child = cmd(&root)
            .args(["import", tar.to_str().unwrap(), &format!("killed:{i}")])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        verify_clean(&root);
        // Either the tag is complete or absent.
        let out = run(&root, &["inspect", &format!("killed:{i}")]);
        assert!(matches!(out.status.code(), Some(0) | Some(1)));
    }
    ok(&root, &["import", tar.to_str().unwrap(), "after"]);
    assert_eq!(identity(&root, "before"), identity(&root, "after"));
    verify_clean(&root);
    // prune cleans the abandoned ingests of killed imports.
    ok(&root, &["prune", "--all"]);
    assert_eq!(std::fs::read_dir(root.join("ingest")).unwrap().count(), 0);
    verify_clean(&root);
}

#[test]
fn kill_9_during_save_leaves_no_truncated_archive() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let tar = big_tar(t.path());
    ok(&root, &["import", tar.to_str().unwrap(), "big"]);
    let out_dir = t.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for (i, ms) in KILL_AFTER_MS.iter().enumerate() {
        let dest = out_dir.join(format!("img{i}.tar"));
        let mut child = cmd(&root)
            .args(["save", "big", "-o", dest.to_str().unwrap()])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = child.kill();
        let _ = child.wait();
        verify_clean(&root);
        if dest.exists() {
            // Complete: it loads with the same identity.
            let r = t.path().join(format!("r{i}"));
            ok(&r, &["load", "-i", dest.to_str().unwrap()]);
            assert_eq!(identity(&r, "big"), identity(&root, "big"));
        }
    }
}
