//! `LayoutCache` shared by processes: concurrent exports into one
//! directory merge, and a prune beside them never removes what an export
//! is about to list.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_oci::{media_type, CacheRecord, Descriptor, Digest, LayoutCache, RemoteCache, Store};

/// Set in the child processes this test starts.
const CHILD_ENV: &str = "STRATA_LAYOUT_CACHE_CHILD";

/// `count` records of `seed`, their layers stored in `store`.
fn records(store: &Store, seed: u32, count: u32) -> Vec<CacheRecord> {
    (0..count)
        .map(|i| {
            let data = format!("layer {seed} {i} ").repeat(40);
            let d = store.put_blob(data.as_bytes()).unwrap();
            CacheRecord {
                chain: None,
                key: Digest::sha256(format!("key {seed} {i}").as_bytes()),
                layer: Some((
                    Descriptor::new(media_type::OCI_LAYER_GZIP, d, data.len() as u64),
                    Digest::sha256(format!("tar {seed} {i}").as_bytes()),
                )),
            }
        })
        .collect()
}

/// Export `records` a few at a time, as a build per stage would.
fn export_in_batches(cache_dir: &Path, store: &Store, records: &[CacheRecord]) {
    for chunk in records.chunks(4) {
        LayoutCache::new(cache_dir)
            .export(store, chunk, &[])
            .unwrap();
    }
}

/// The child's half of `two_processes_exporting_to_one_directory_keep_every_entry`:
/// does nothing unless started by it.
#[test]
fn child_exporter() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut it = spec.splitn(3, ':');
    let seed: u32 = it.next().unwrap().parse().unwrap();
    let store = Store::open(it.next().unwrap()).unwrap();
    let dir = it.next().unwrap();
    export_in_batches(Path::new(dir), &store, &records(&store, seed, 40));
}

#[test]
fn two_processes_exporting_to_one_directory_keep_every_entry() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let me = std::env::current_exe().unwrap();
    let children: Vec<_> = (1..=2u32)
        .map(|seed| {
            // Each "machine" has its own store.
            let store_dir = tmp.path().join(format!("store{seed}"));
            Command::new(&me)
                .args(["--exact", "child_exporter", "--test-threads=1"])
                .env(
                    CHILD_ENV,
                    format!("{seed}:{}:{}", store_dir.display(), cache_dir.display()),
                )
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let cache = LayoutCache::new(&cache_dir);
    let entries = cache.list().unwrap();
    assert_eq!(entries.len(), 80);
    // Every entry's layer is there, and fetches (verified) into a new store.
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    for seed in 1..=2u32 {
        let want = records(
            &Store::open(tmp.path().join(format!("store{seed}"))).unwrap(),
            seed,
            40,
        );
        for rec in want {
            let e = cache.lookup(&rec.key).unwrap().unwrap();
            assert_eq!(e.record, rec);
            let (d, _) = rec.layer.unwrap();
            cache.fetch_blob(&fresh, &d).unwrap();
            assert!(fresh.has(&d.digest));
        }
    }
}

#[test]
fn a_prune_beside_exports_keeps_their_blobs() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let cache_dir = tmp.path().join("cache");
    let recs = records(&store, 7, 60);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Set even when the export panics, so the pruner stops.
            struct Done<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let _done = Done(&done);
            export_in_batches(&cache_dir, &store, &recs);
        });
        s.spawn(|| {
            // Prunes nothing (every entry is young) but sweeps blobs that no
            // listed entry names: an export's not yet listed layers are
            // exactly those.
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                LayoutCache::new(&cache_dir)
                    .prune(Duration::from_secs(3600))
                    .unwrap();
            }
        });
    });
    let cache = LayoutCache::new(&cache_dir);
    assert_eq!(cache.list().unwrap().len(), 60);
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    for rec in &recs {
        let (d, _) = rec.layer.clone().unwrap();
        cache.fetch_blob(&fresh, &d).unwrap();
    }
}
