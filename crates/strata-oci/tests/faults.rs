//! Store behaviour under faults: temporary state of dead processes is
//! swept (secrets included), leases are never mistaken for stale ones, gc
//! reports the bytes it frees, atomic writes never collide.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use strata_oci::{write_atomic, Digest, GcOptions, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("root")).unwrap();
    (dir, s)
}

/// Leave state as a process killed with SIGKILL does: a directory with its
/// lock file, the lock no longer held by anyone.
fn forge_stale(dir: &Path, name: &str, secret: &[u8]) {
    fs::create_dir_all(dir.join(name).join("sub")).unwrap();
    fs::write(dir.join(name).join("sub/secret-abc"), secret).unwrap();
    fs::write(dir.join(format!("{name}.lock")), b"").unwrap();
}

/// Every file under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if meta.is_file() {
            let data = fs::read(&p).unwrap_or_default();
            if data.windows(needle.len()).any(|w| w == needle) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn temp_dirs_are_removed_on_drop_and_after_their_holder_died() {
    let (_t, s) = store();
    let tmp = s.root().join("tmp");
    // Live: kept by every open, removed on drop.
    let live = s.temp_dir("build").unwrap();
    fs::write(live.path().join("secret-1"), b"live secret").unwrap();
    let again = Store::open(s.root()).unwrap();
    s.gc(GcOptions::default()).unwrap();
    assert!(
        live.path().join("secret-1").exists(),
        "a live temp dir was swept"
    );
    let p = live.path().to_owned();
    drop(live);
    assert!(!p.exists());
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "lock file left");

    // Dead holder (lock file not held): the next open removes it.
    forge_stale(&tmp, "build-1-2-3", b"TOP SECRET");
    // A directory without a lock (a version without holds, or a holder
    // that died half-way through removing it): removed too.
    fs::create_dir_all(tmp.join("build-4-5-6")).unwrap();
    fs::write(tmp.join("build-4-5-6/secret"), b"TOP SECRET").unwrap();
    // A lone stale lock file.
    fs::write(tmp.join("build-7-8-9.lock"), b"").unwrap();
    assert_eq!(files_containing(s.root(), b"TOP SECRET").len(), 2);
    let _ = Store::open(s.root()).unwrap();
    assert_eq!(
        files_containing(s.root(), b"TOP SECRET"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    drop(again);
}

#[test]
fn active_snapshots_stale_are_swept_by_open_released_by_gc_with_their_bytes() {
    let (_t, s) = store();
    let active = s.root().join("snapshots/.active");
    // Held: survives open and gc.
    let hold = s.hold_active("run-live").unwrap();
    fs::create_dir_all(active.join("run-live/upper")).unwrap();
    // Holder died: open removes it.
    forge_stale(&active, "run-dead", b"x");
    // Released on purpose (a container layer `strata run` kept): open
    // keeps it, gc removes it and counts its bytes.
    fs::create_dir_all(active.join("ctr-kept/upper")).unwrap();
    fs::write(active.join("ctr-kept/upper/big"), vec![7u8; 300_000]).unwrap();

    let _ = Store::open(s.root()).unwrap();
    assert!(!active.join("run-dead").exists());
    assert!(!active.join("run-dead.lock").exists());
    assert!(active.join("ctr-kept").exists());
    assert!(active.join("run-live").exists());

    // A collection that is not a prune (rmi's) keeps it.
    let rep = s.gc(GcOptions::default()).unwrap();
    assert!(rep.snapshots.is_empty());
    assert!(active.join("ctr-kept").exists());
    let prune = GcOptions {
        remove_released: true,
        ..Default::default()
    };
    let dry = s
        .gc(GcOptions {
            dry_run: true,
            ..prune
        })
        .unwrap();
    assert_eq!(dry.snapshots, [".active/ctr-kept"]);
    assert!(active.join("ctr-kept").exists());
    let rep = s.gc(prune).unwrap();
    assert_eq!(rep.snapshots, [".active/ctr-kept"]);
    assert_eq!(rep.snapshot_bytes, 300_000);
    assert_eq!(rep.reclaimed(), 300_000);
    assert!(!active.join("ctr-kept").exists());
    assert!(
        active.join("run-live/upper").exists(),
        "a held snapshot was swept"
    );
    drop(hold);
    assert!(!active.join("run-live.lock").exists());
}

#[test]
fn gc_counts_the_bytes_of_committed_snapshots() {
    let (_t, s) = store();
    let snap = s.snapshots_dir().join(Digest::sha256(b"layer").hex());
    fs::create_dir_all(snap.join("usr/bin")).unwrap();
    fs::write(snap.join("usr/bin/tool"), vec![1u8; 123_456]).unwrap();
    fs::hard_link(snap.join("usr/bin/tool"), snap.join("usr/bin/alias")).unwrap();
    std::os::unix::fs::symlink("tool", snap.join("usr/bin/link")).unwrap();
    let rep = s.gc(GcOptions::default()).unwrap();
    assert_eq!(rep.snapshots.len(), 1);
    // The file once (hard links), plus the symlink's target text.
    assert_eq!(rep.snapshot_bytes, 123_456 + 4);
    assert!(!snap.exists());
}

#[test]
fn a_sweep_never_reaches_through_a_mount() {
    if !strata_testkit::require_root() || !strata_testkit::require_tool("mount") {
        return;
    }
    let (t, s) = store();
    let precious = t.path().join("precious");
    fs::create_dir(&precious).unwrap();
    fs::write(precious.join("keep"), b"host data").unwrap();
    let tmp = s.root().join("tmp");
    forge_stale(&tmp, "build-1-1-1", b"x");
    let target = tmp.join("build-1-1-1/sub");
    let st = Command::new("mount")
        .arg("--bind")
        .arg(&precious)
        .arg(&target)
        .status()
        .unwrap();
    assert!(st.success());
    let _ = Store::open(s.root()).unwrap();
    let rep = s.gc(GcOptions::default());
    let _ = Command::new("umount").arg(&target).status();
    rep.unwrap();
    assert_eq!(fs::read(precious.join("keep")).unwrap(), b"host data");
    // Once unmounted, the next open sweeps it.
    let _ = Store::open(s.root()).unwrap();
    assert!(!tmp.join("build-1-1-1").exists());
    assert!(precious.join("keep").exists());
}

#[test]
fn a_lease_is_created_under_the_gc_lock() {
    let (_t, s) = store();
    // Play a collection in progress: hold gc.lock exclusively (the on-disk
    // protocol of the crate doc).
    let gc_lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(s.root().join("gc.lock"))
        .unwrap();
    rustix::fs::flock(gc_lock.as_fd(), rustix::fs::FlockOperation::LockExclusive).unwrap();
    let (tx, rx) = mpsc::channel();
    let s2 = s.clone();
    let h = std::thread::spawn(move || {
        let lease = s2.lease("test").unwrap();
        tx.send(()).unwrap();
        lease
    });
    // While a collection runs, no lease file may appear: one created then
    // could be taken for a dead process's between its open and its flock.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a lease was taken while gc held its lock"
    );
    assert_eq!(fs::read_dir(s.root().join("leases")).unwrap().count(), 0);
    drop(gc_lock);
    rx.recv().unwrap();
    let mut lease = h.join().unwrap();
    // And it protects what is added to it from a collection.
    let d = s.put_blob(b"leased").unwrap();
    lease.add_digest(&d).unwrap();
    s.gc(GcOptions::default()).unwrap();
    assert!(s.has(&d));
}

#[test]
fn leases_taken_while_gc_loops_always_protect_their_content() {
    let (_t, s) = store();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.gc(GcOptions::default()).unwrap();
                // flock is not fair: leave writers a moment to get in.
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for i in 0..50u32 {
        let mut lease = s.lease("loop").unwrap();
        let d = s.put_blob(format!("blob {i}").as_bytes()).unwrap();
        lease.add_digest(&d).unwrap();
        // Let at least one collection run with the lease in place.
        s.gc(GcOptions::default()).unwrap();
        assert!(s.has(&d), "gc removed a leased blob (iteration {i})");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    gc.join().unwrap();
}

#[test]
fn unresumable_ingests_of_dead_writers_go_at_the_next_gc() {
    let (_t, s) = store();
    // What a killed layer writer leaves: an unlocked ingest nobody can resume.
    let mut w = s.unique_writer().unwrap();
    std::io::Write::write_all(&mut w, &vec![0u8; 50_000]).unwrap();
    drop(w);
    // A resumable one (a pull keyed by digest) stays for a day.
    let mut w = s.writer("pull-sha256:abc", None).unwrap();
    std::io::Write::write_all(&mut w, b"partial").unwrap();
    drop(w);
    let rep = s.gc(GcOptions::default()).unwrap();
    assert_eq!(rep.ingests, 1);
    assert!(rep.temp_bytes >= 50_000);
    assert_eq!(fs::read_dir(s.root().join("ingest")).unwrap().count(), 1);
    let w = s.writer("pull-sha256:abc", None).unwrap();
    assert_eq!(w.offset(), 7, "a resumable ingest was lost");
}

#[test]
fn atomic_writes_of_one_path_from_many_threads_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entry.json");
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let body = vec![t; 1000 + i as usize];
                    write_atomic(&path, &body).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let path = path.clone();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                if let Ok(b) = fs::read(&path) {
                    // Always one writer's whole content.
                    assert!(b.len() >= 1000 && b.iter().all(|&c| c == b[0]));
                }
            }
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    reader.join().unwrap();
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["entry.json"], "temp files left behind");
}

#[test]
fn extractions_of_dead_processes_go_at_the_next_open_live_ones_stay() {
    let (_t, s) = store();
    let snaps = s.snapshots_dir();
    let (live, hold) = s.hold_extraction().unwrap();
    fs::create_dir(&live).unwrap();
    fs::write(live.join("file"), b"being extracted").unwrap();
    forge_stale(&snaps, ".tmp-1-2-3", b"x");
    let _ = Store::open(s.root()).unwrap();
    assert!(!snaps.join(".tmp-1-2-3").exists());
    assert!(!snaps.join(".tmp-1-2-3.lock").exists());
    assert!(live.join("file").exists(), "a live extraction was swept");
    s.gc(GcOptions::default()).unwrap();
    assert!(live.join("file").exists(), "gc swept a live extraction");
    // Renamed into place, then the hold dropped: nothing of it is left.
    let done = snaps.join(Digest::sha256(b"done").hex());
    fs::rename(&live, &done).unwrap();
    drop(hold);
    let left: Vec<_> = fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A writer that cannot set its ingest up (the disk is full) leaves no
/// directory behind, and one it resumes is not taken from under it.
#[test]
fn a_writer_that_cannot_start_on_a_full_disk_leaves_nothing() {
    if !strata_testkit::require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    fs::create_dir(&mnt).unwrap();
    strata_testkit::run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&mnt),
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _u = Unmount(&mnt);
    let s = Store::open(mnt.join("root")).unwrap();
    // A download that got under way, then the disk filled up.
    let mut w = s.writer("pull-a", None).unwrap();
    use std::io::Write as _;
    w.write_all(b"started").unwrap();
    drop(w);
    let mut fill = fs::File::create(mnt.join("fill")).unwrap();
    let block = vec![7u8; 4096];
    while fill.write_all(&block).is_ok() {}
    let ingest = |s: &Store| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(s.root().join("ingest"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = ingest(&s);
    assert_eq!(before.len(), 1);
    let err = s.writer("pull-b", None).map(|_| ()).unwrap_err();
    assert!(strata_oci::is_no_space(&err), "{err}");
    assert_eq!(ingest(&s), before, "a half-made ingest was left");
    // The earlier one still resumes where it was.
    let w = s.writer("pull-a", None).unwrap();
    assert_eq!(w.offset(), 7);
}

/// Rewriting a record with the bytes it holds touches nothing (the same
/// file stays, nothing is synced); other bytes replace it atomically.
#[test]
fn unchanged_records_are_not_rewritten() {
    use std::os::unix::fs::MetadataExt;
    let (dir, _s) = store();
    let p = dir.path().join("rec.json");
    strata_oci::write_atomic_if_changed(&p, b"one").unwrap();
    let ino = fs::metadata(&p).unwrap().ino();
    strata_oci::write_atomic_if_changed(&p, b"one").unwrap();
    assert_eq!(fs::metadata(&p).unwrap().ino(), ino, "rewritten");
    strata_oci::write_atomic_if_changed(&p, b"two").unwrap();
    assert_ne!(fs::metadata(&p).unwrap().ino(), ino);
    assert_eq!(fs::read(&p).unwrap(), b"two");
}
