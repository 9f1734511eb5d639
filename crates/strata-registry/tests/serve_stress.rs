//! `strata serve` under pressure: many clients pushing the same blobs while
//! others pull, delete and prune, and uploads onto a full file system.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_oci::{GcOptions, Reference, Store};
use strata_registry::{Client, ClientOptions, ServeOptions};

fn quick_client(opts: ClientOptions) -> Client {
    Client::new(ClientOptions {
        retry_delay: Duration::from_millis(20),
        ..opts
    })
    .unwrap()
}

/// The image tagged `name` in `store` loads, and every blob re-hashes to
/// its digest.
fn assert_complete(store: &Store, name: &str) {
    let r: Reference = name.parse().unwrap();
    let desc = store.resolve(&r).unwrap();
    let img = store.image(&desc, None).unwrap();
    for l in &img.layers {
        assert!(store.has(&l.descriptor.digest));
    }
    assert_verified(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_pushers_with_pullers_deleters_and_prune_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, server_store, _reqs, _stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let local = Store::open(dir.path().join("local")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a", noise(1, 300_000)),
        ("b", noise(2, 200_000)),
        ("c", noise(3, 100_000)),
    ];
    let img = make_image(&local, "img:1", &files);
    let client = Arc::new(quick_client(ClientOptions {
        monolithic_max: 150_000,
        chunk_size: 64 << 10,
        ..ClientOptions::default()
    }));
    // One image to pull from the start.
    client
        .push(
            &local,
            "img:1",
            &format!("{addr}/base/img:1").parse().unwrap(),
        )
        .await
        .unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // prune in a loop beside everything.
    let gc = {
        let s = server_store.clone();
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                s.gc(GcOptions::default()).unwrap();
                runs += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            runs
        })
    };
    // Pushes, pulls and deletes, all at once (one task drives them all; the
    // server runs on the runtime's workers).
    let pushers = futures_util::future::join_all((0..16).map(|i| {
        let client = client.clone();
        let local = local.clone();
        let dest: Reference = format!("{addr}/team/app{}:v{i}", i % 4).parse().unwrap();
        async move { client.push(&local, "img:1", &dest).await.map(|_| dest) }
    }));
    let pullers = futures_util::future::join_all((0..4).map(|i| {
        let client = client.clone();
        let root = dir.path().join(format!("puller{i}"));
        let src: Reference = format!("{addr}/base/img:1").parse().unwrap();
        let want = img.digest.clone();
        async move {
            for k in 0..3 {
                let store = Store::open(root.join(k.to_string())).unwrap();
                let s = client.pull(&store, &src).await.unwrap();
                assert_eq!(s.digest, want);
                assert_verified(&store);
            }
        }
    }));
    let manifest = local.read_blob(&img.digest).unwrap();
    let man: strata_oci::Manifest = serde_json::from_slice(&manifest).unwrap();
    let deleters = futures_util::future::join_all((0..2).map(|i| {
        let client = client.clone();
        let local = local.clone();
        let addr = addr.clone();
        let man = man.clone();
        let md = img.digest.clone();
        async move {
            let http = reqwest::Client::new();
            let repo = format!("victim{i}");
            for k in 0..3 {
                let dest: Reference = format!("{addr}/{repo}:k{k}").parse().unwrap();
                client.push(&local, "img:1", &dest).await.unwrap();
                let r = http
                    .delete(format!("http://{addr}/v2/{repo}/manifests/{md}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                for l in std::iter::once(&man.config).chain(man.layers.iter()) {
                    let r = http
                        .delete(format!("http://{addr}/v2/{repo}/blobs/{}", l.digest))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
            }
        }
    }));
    let (pushed, _, _) = tokio::join!(pushers, pullers, deleters);
    let pushed: Vec<Reference> = pushed
        .into_iter()
        .map(|r| r.expect("a push failed"))
        .collect();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let gc_runs = gc.await.unwrap();
    assert!(gc_runs > 0);
    // One more prune with nothing running: everything pushed stays whole.
    server_store.gc(GcOptions::default()).unwrap();
    assert_verified(&server_store);
    for (i, dest) in pushed.iter().enumerate() {
        let store = Store::open(dir.path().join(format!("check{i}"))).unwrap();
        let s = client.pull(&store, dest).await.unwrap();
        assert_eq!(s.digest, img.digest, "{dest}");
        assert_complete(&store, &dest.to_string());
    }
}

/// A size-limited tmpfs, unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        strata_testkit::run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&mnt),
        );
        Tmpfs { mnt, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Bytes of upload data (ingest `data` files) under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                n += bytes_under(&e.path());
            } else if e.file_name() == "data" {
                n += m.len();
            }
        }
    }
    n
}

/// Fill the file system holding `path`, then give `leave` bytes back.
fn fill(path: &Path, leave: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    f.sync_all().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_onto_a_full_disk_fails_clearly_leaves_nothing_and_succeeds_once_freed() {
    if !strata_testkit::require_root() {
        return;
    }
    let fs = Tmpfs::mount("8m");
    let root = fs.mnt.join("store");
    let (addr, server_store, _reqs, _stop) = start_server(&root, ServeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(dir.path().join("local")).unwrap();
    let desc = make_image(&local, "big:1", &[("f", noise(5, 3 << 20))]);
    let layer = local.image(&desc, None).unwrap().layers[0]
        .descriptor
        .clone();
    let filler = fs.mnt.join("filler");
    fill(&filler, 1 << 20);
    let dest: Reference = format!("{addr}/full/big:1").parse().unwrap();
    for (label, opts) in [
        ("monolithic", ClientOptions::default()),
        (
            "chunked",
            ClientOptions {
                monolithic_max: 1000,
                chunk_size: 256 << 10,
                ..ClientOptions::default()
            },
        ),
    ] {
        let e = quick_client(opts)
            .push(&local, "big:1", &dest)
            .await
            .unwrap_err();
        let msg = format!("{e}");
        assert!(
            msg.contains("no space") && msg.contains(&root.display().to_string()),
            "{label}: {msg}"
        );
        assert!(!server_store.has(&layer.digest), "{label}");
        // The push gave up on its other uploads (the config) when the
        // layer's failed: the server drops those when it sees the
        // connections close, which may be just after the client returns.
        let mut left = bytes_under(&root.join("ingest"));
        for _ in 0..100 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            left = bytes_under(&root.join("ingest"));
        }
        assert_eq!(left, 0, "{label}: partial upload data left");
    }
    // A single-request upload on the full disk leaves no ingest at all.
    let blob = std::fs::read(local.blob_path(&layer.digest)).unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v2/full/blobs/uploads/"))
        .query(&[("digest", layer.digest.to_string())])
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    let body = r.text().await.unwrap();
    assert!(body.contains("no space"), "{body}");
    // Space freed: the same push goes through.
    std::fs::remove_file(&filler).unwrap();
    let s = quick_client(ClientOptions {
        monolithic_max: 1000,
        chunk_size: 256 << 10,
        ..ClientOptions::default()
    })
    .push(&local, "big:1", &dest)
    .await
    .unwrap();
    assert_eq!(s.digest, desc.digest);
    assert!(server_store.has(&layer.digest));
    assert_verified(&server_store);
}
