//! `RegistryCache` against `strata serve` and Debian's `docker-registry`
//! (distribution 2.8): two stores stand in for two machines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use strata_oci::{
    cache_entry_manifest, cache_entry_tag, format_rfc3339, media_type, CacheRecord, Descriptor,
    Digest, Manifest, RemoteCache, Store,
};
use strata_registry::{
    CacheError, ClientOptions, Error, Event, Progress, RegistryCache, RequestLog, ServeOptions,
};

/// A registry on loopback for one test.
enum Registry {
    Strata {
        addr: String,
        reqs: Requests,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        /// Runs the server (the test itself makes blocking calls).
        _rt: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
    },
    Reference(ReferenceRegistry),
}

impl Registry {
    fn strata() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (addr, _store, reqs, stop) = rt.block_on(start_server(
            &dir.path().join("server"),
            ServeOptions::default(),
        ));
        Registry::Strata {
            addr,
            reqs,
            stop: Some(stop),
            _rt: rt,
            _dir: dir,
        }
    }

    fn reference() -> Option<Registry> {
        ReferenceRegistry::start().map(Registry::Reference)
    }

    fn addr(&self) -> &str {
        match self {
            Registry::Strata { addr, .. } => addr,
            Registry::Reference(r) => &r.addr,
        }
    }

    /// Requests seen since the last call (strata serve only).
    fn take_requests(&self) -> Option<Vec<RequestLog>> {
        match self {
            Registry::Strata { reqs, .. } => Some(reqs.take()),
            Registry::Reference(_) => None,
        }
    }

    fn stop(&mut self) {
        match self {
            Registry::Strata { stop, .. } => {
                if let Some(s) = stop.take() {
                    s.send(()).ok();
                }
                // Wait until the port refuses connections.
                for _ in 0..100 {
                    if std::net::TcpStream::connect(self.addr()).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                panic!("the server did not stop");
            }
            Registry::Reference(_) => unreachable!("only strata servers are stopped"),
        }
    }
}

/// Both registries (the reference one when installed).
fn registries() -> Vec<(&'static str, Registry)> {
    let mut v = vec![("strata serve", Registry::strata())];
    if let Some(r) = Registry::reference() {
        v.push(("docker-registry", r));
    }
    v
}

/// `n` records with layers of `size` bytes (stored in `store`), plus one
/// without a layer.
fn records(store: &Store, seed: u64, n: usize, size: usize) -> Vec<CacheRecord> {
    let mut out: Vec<CacheRecord> = (0..n)
        .map(|i| {
            let (blob, diff_id) = layer(&format!("f{i}"), &noise(seed * 1000 + i as u64, size));
            let d = store.put_blob(&blob).unwrap();
            CacheRecord {
                chain: None,
                key: Digest::sha256(format!("key {seed} {i}").as_bytes()),
                layer: Some((
                    Descriptor::new(media_type::OCI_LAYER_GZIP, d, blob.len() as u64),
                    diff_id,
                )),
            }
        })
        .collect();
    out.push(CacheRecord {
        chain: None,
        key: Digest::sha256(format!("key {seed} env").as_bytes()),
        layer: None,
    });
    out
}

fn layer_bytes(records: &[CacheRecord]) -> u64 {
    records
        .iter()
        .filter_map(|r| r.layer.as_ref().map(|(d, _)| d.size))
        .sum()
}

fn cache_at(r: &str) -> RegistryCache {
    RegistryCache::new(r, ClientOptions::default()).unwrap()
}

/// Put an entry's manifest directly (to age it), returning its digest.
fn put_entry(addr: &str, repo: &str, tag: &str, record: &CacheRecord, created: &str) -> Digest {
    let raw = cache_entry_manifest(record, created);
    let resp = http::put_manifest(addr, repo, tag, &raw);
    assert!(resp.0 == 201, "PUT {tag}: {}", resp.0);
    Digest::sha256(&raw)
}

/// Minimal HTTP for the tests' own checks (the server runs elsewhere).
mod http {
    pub fn put_manifest(addr: &str, repo: &str, tag: &str, body: &[u8]) -> (u16, Vec<u8>) {
        request(
            "PUT",
            addr,
            &format!("/v2/{repo}/manifests/{tag}"),
            Some(("application/vnd.oci.image.manifest.v1+json", body)),
        )
    }

    pub fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
        request("GET", addr, path, None)
    }

    fn request(
        method: &str,
        addr: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> (u16, Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = reqwest::Client::new();
            let url = format!("http://{addr}{path}");
            let mut rb = c
                .request(method.parse().unwrap(), url)
                .header("accept", "application/vnd.oci.image.manifest.v1+json");
            if let Some((ct, b)) = body {
                rb = rb.header("content-type", ct).body(b.to_vec());
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap().to_vec())
        })
    }
}

/// An error and its causes.
fn anyhow_chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut src = e.source();
    while let Some(c) = src {
        out.push(c.to_string());
        src = c.source();
    }
    out
}

fn count(logs: &[RequestLog], method: &str, contains: &str) -> usize {
    Requests::count(logs, method, contains)
}

/// Bytes the registry received in blob uploads.
fn upload_bytes(logs: &[RequestLog]) -> u64 {
    logs.iter()
        .filter(|l| l.path.contains("/blobs/uploads/"))
        .map(|l| l.bytes_in)
        .sum()
}

#[test]
fn export_from_one_store_then_lookup_and_fetch_into_an_empty_one() {
    for (name, reg) in registries() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let recs = records(&a, 1, 3, 200_000);
        let r = format!("{}/team/app:ci", reg.addr());
        reg.take_requests();

        let report = cache_at(&r).export(&a, &recs, &[]).unwrap();
        assert_eq!(
            (
                report.entries,
                report.present,
                report.blobs_sent,
                report.blobs_skipped
            ),
            (4, 0, 3, 0),
            "{name}"
        );
        assert_eq!(report.bytes_sent, layer_bytes(&recs), "{name}");
        if let Some(logs) = reg.take_requests() {
            // The layers and the 2-byte empty blob, nothing else.
            assert_eq!(upload_bytes(&logs), layer_bytes(&recs) + 2, "{name}");
            assert_eq!(count(&logs, "PUT", "/manifests/ci-"), 4, "{name}");
        }

        // The same records again, by another handle: 0 layer bytes.
        let again = cache_at(&r).export(&a, &recs, &[]).unwrap();
        assert_eq!(
            (
                again.entries,
                again.present,
                again.blobs_sent,
                again.bytes_sent
            ),
            (0, 4, 0, 0),
            "{name}"
        );
        if let Some(logs) = reg.take_requests() {
            assert_eq!(upload_bytes(&logs), 0, "{name}");
            // One HEAD per entry and nothing else (the endpoint check aside).
            assert_eq!(count(&logs, "HEAD", "/manifests/"), 4, "{name}");
            assert_eq!(
                logs.iter().filter(|l| l.path != "/v2/").count(),
                4,
                "{name}: {logs:?}"
            );
        }

        // Machine B: an empty store, one small request per lookup.
        let b = Store::open(dir.path().join("b")).unwrap();
        let cache_b = cache_at(&r);
        for rec in &recs {
            let hit = cache_b.lookup(&rec.key).unwrap().expect("a hit");
            assert_eq!(&hit.record, rec, "{name}");
            assert!(hit.created.is_some());
        }
        assert!(cache_b
            .lookup(&Digest::sha256(b"never built"))
            .unwrap()
            .is_none());
        if let Some(logs) = reg.take_requests() {
            let non_endpoint: Vec<&RequestLog> = logs.iter().filter(|l| l.path != "/v2/").collect();
            assert_eq!(non_endpoint.len(), recs.len() + 1, "{name}: {logs:?}");
            assert!(non_endpoint
                .iter()
                .all(|l| l.method == "GET" && l.path.contains("/manifests/ci-")));
            // Small: no layer bytes travel in a lookup.
            assert!(non_endpoint.iter().all(|l| l.bytes_out < 2000), "{logs:?}");
            eprintln!(
                "lookup answers (bytes): {:?}",
                non_endpoint.iter().map(|l| l.bytes_out).collect::<Vec<_>>()
            );
        }
        assert!(b.list_tags().unwrap().is_empty());
        for rec in &recs {
            if let Some((d, _)) = &rec.layer {
                cache_b.fetch_blob(&b, d).unwrap();
                // read_blob re-hashes: the digest is verified.
                assert_eq!(b.blob_size(&d.digest).unwrap(), d.size);
                assert_eq!(
                    Digest::sha256(&std::fs::read(b.blob_path(&d.digest)).unwrap()),
                    d.digest
                );
            }
        }
        if let Some(logs) = reg.take_requests() {
            let down: u64 = logs
                .iter()
                .filter(|l| l.path.contains("/blobs/"))
                .map(|l| l.bytes_out)
                .sum();
            assert_eq!(down, layer_bytes(&recs), "{name}");
        }

        // The entries are what docs/cache.md says, under their own tags.
        let entries = cache_b.list().unwrap();
        assert_eq!(entries.len(), 4, "{name}");
        let rec = &recs[0];
        let tag = cache_entry_tag("ci", &rec.key);
        let (status, raw) = http::get(reg.addr(), &format!("/v2/team/app/manifests/{tag}"));
        assert_eq!(status, 200);
        let created = entries
            .iter()
            .find(|e| e.record.key == rec.key)
            .unwrap()
            .created
            .clone()
            .unwrap();
        assert_eq!(raw, cache_entry_manifest(rec, &created), "{name}");
        let m: Manifest = serde_json::from_slice(&raw).unwrap();
        assert_eq!(m.config.media_type, media_type::OCI_EMPTY);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.strata.cache.v1")
        );
        assert_eq!(
            cache_b.mount_source(),
            Some((reg.addr().to_owned(), "team/app".to_owned()))
        );
        assert_eq!(cache_b.describe(), format!("registry {r}"));
    }
}

#[test]
fn parallel_exports_of_different_keys_to_one_ref_keep_every_entry() {
    for (name, reg) in registries() {
        let dir = tempfile::tempdir().unwrap();
        let r = format!("{}/team/shared", reg.addr());
        let sets: Vec<(Store, Vec<CacheRecord>)> = (1..=2u64)
            .map(|seed| {
                let s = Store::open(dir.path().join(format!("s{seed}"))).unwrap();
                let recs = records(&s, seed, 12, 3000);
                (s, recs)
            })
            .collect();
        std::thread::scope(|scope| {
            for (store, recs) in &sets {
                let r = r.clone();
                scope.spawn(move || {
                    // Each "build" exports stage by stage.
                    let cache = cache_at(&r);
                    for chunk in recs.chunks(3) {
                        cache.export(store, chunk, &[]).unwrap();
                    }
                });
            }
        });
        let cache = cache_at(&r);
        assert_eq!(cache.list().unwrap().len(), 26, "{name}");
        for (_, recs) in &sets {
            for rec in recs {
                assert_eq!(
                    cache.lookup(&rec.key).unwrap().map(|e| e.record).as_ref(),
                    Some(rec),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn prune_by_age_and_refresh_of_old_hits() {
    for (name, reg) in registries() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let recs = records(&a, 3, 2, 1000);
        let r = format!("{}/team/prune", reg.addr());
        let cache = cache_at(&r);
        cache.export(&a, &recs, &[]).unwrap();
        // Age two entries: 40 days and 2 days.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let days = |n: i64| format_rfc3339(now - n * 86_400);
        let old_tag = cache_entry_tag("cache", &recs[0].key);
        put_entry(reg.addr(), "team/prune", &old_tag, &recs[0], &days(40));
        let stale_tag = cache_entry_tag("cache", &recs[1].key);
        let stale_digest = put_entry(reg.addr(), "team/prune", &stale_tag, &recs[1], &days(2));

        // A hit two days old is written again when the build says it was
        // a hit here; the replaced manifest is deleted.
        let report = cache
            .export(&a, &recs[1..], std::slice::from_ref(&recs[1].key))
            .unwrap();
        assert_eq!(
            (report.entries, report.present, report.bytes_sent),
            (1, 1, 0),
            "{name}"
        );
        let renewed = cache.lookup(&recs[1].key).unwrap().unwrap();
        assert!(!strata_oci::cache_entry_older_than(
            &renewed,
            Duration::from_secs(86_400)
        ));
        let (status, _) = http::get(
            reg.addr(),
            &format!("/v2/team/prune/manifests/{stale_digest}"),
        );
        assert_eq!(status, 404, "{name}: the replaced manifest is gone");

        let p = cache.prune(Duration::from_secs(30 * 86_400)).unwrap();
        assert_eq!((p.removed, p.kept), (1, 2), "{name}");
        assert!(cache.lookup(&recs[0].key).unwrap().is_none(), "{name}");
        assert!(cache.lookup(&recs[1].key).unwrap().is_some(), "{name}");
        assert!(cache.lookup(&recs[2].key).unwrap().is_some(), "{name}");
        assert_eq!(cache.list().unwrap().len(), 2);
        let p = cache.prune(Duration::ZERO).unwrap();
        assert_eq!((p.removed, p.kept), (2, 0), "{name}");
        assert!(cache.list().unwrap().is_empty());
    }
}

#[test]
fn a_layer_never_downloaded_is_mounted_into_another_cache() {
    for (name, reg) in registries() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let recs = records(&a, 4, 1, 50_000);
        cache_at(&format!("{}/team/main", reg.addr()))
            .export(&a, &recs, &[])
            .unwrap();
        // Machine B hits in team/main without downloading the layer, then
        // exports to team/branch: the layer is mounted, not sent.
        let b = Store::open(dir.path().join("b")).unwrap();
        let from = RegistryCache::new(
            &format!("{}/team/main", reg.addr()),
            ClientOptions::default(),
        )
        .unwrap()
        .with_origins(b.clone());
        let hit = from.lookup(&recs[0].key).unwrap().unwrap();
        let (d, _) = hit.record.layer.clone().unwrap();
        assert!(!b.has(&d.digest));
        let to = cache_at(&format!("{}/team/branch", reg.addr()));
        let report = to.export(&b, &[hit.record], &[]).unwrap();
        assert_eq!(
            (
                report.entries,
                report.blobs_sent,
                report.blobs_skipped,
                report.bytes_sent
            ),
            (1, 0, 1, 0),
            "{name}"
        );
        assert!(!b.has(&d.digest), "{name}: still not downloaded");
        // Without a known origin, a missing layer is an error naming it.
        let c = Store::open(dir.path().join("c")).unwrap();
        let e = cache_at(&format!("{}/team/other", reg.addr()))
            .export(&c, &recs[..1], &[])
            .unwrap_err();
        let chain = format!("{:?}", anyhow_chain(&*e));
        assert!(chain.contains("not in the store"), "{name}: {chain}");
    }
}

#[test]
fn entries_that_are_not_cache_entries_are_misses() {
    let reg = Registry::strata();
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a")).unwrap();
    let recs = records(&a, 5, 1, 100);
    let cache = cache_at(&format!("{}/team/odd", reg.addr()));
    cache.export(&a, &recs, &[]).unwrap();
    // An image manifest (no artifactType) under an entry's tag.
    let key = Digest::sha256(b"foreign");
    let tag = cache_entry_tag("cache", &key);
    let entry: Manifest =
        serde_json::from_slice(&cache_entry_manifest(&recs[0], "2025-01-01T00:00:00Z")).unwrap();
    let mut image = entry.clone();
    image.artifact_type = None;
    image.annotations.clear();
    let (status, _) = http::put_manifest(reg.addr(), "team/odd", &tag, &image.to_json());
    assert_eq!(status, 201);
    assert!(cache.lookup(&key).unwrap().is_none());
    // An entry for another key under this key's tag: a miss too.
    let (status, _) = http::put_manifest(reg.addr(), "team/odd", &tag, &entry.to_json());
    assert_eq!(status, 201);
    assert!(cache.lookup(&key).unwrap().is_none());
    assert_eq!(cache.list().unwrap().len(), 3);
}

#[derive(Default)]
struct Retries(Mutex<Vec<String>>);

impl Progress for Retries {
    fn event(&self, e: &Event) {
        if let Event::Retry { what, reason, .. } = e {
            self.0.lock().unwrap().push(format!("{what}: {reason}"));
        }
    }
}

#[test]
fn a_stopped_registry_fails_lookups_fast_and_once() {
    let mut reg = Registry::strata();
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a")).unwrap();
    let recs = records(&a, 6, 1, 100);
    let r = format!("{}/team/down", reg.addr());
    let retries = Arc::new(Retries::default());
    let opts = ClientOptions {
        progress: retries.clone(),
        ..ClientOptions::default()
    };
    let cache = RegistryCache::new(&r, opts.clone()).unwrap();
    cache.export(&a, &recs, &[]).unwrap();
    assert!(cache.lookup(&recs[0].key).unwrap().is_some());
    reg.stop();

    // The registry went away during a build: the endpoint is known, the
    // lookup gets "connection refused" and retries once at most.
    let start = Instant::now();
    let e = cache.lookup_entry(&recs[0].key).unwrap_err();
    let first = start.elapsed();
    assert!(
        matches!(&e, CacheError::Registry(Error::Connect { .. })),
        "{e:?}"
    );
    assert!(retries.0.lock().unwrap().len() <= 1, "{:?}", retries.0);
    // Every later lookup fails without a request.
    let start = Instant::now();
    let e = cache.lookup_entry(&recs[1].key).unwrap_err();
    let second = start.elapsed();
    assert!(matches!(&e, CacheError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot reach registry"), "{e}");
    assert!(retries.0.lock().unwrap().len() <= 1);

    // A cache made while the registry is down: its first lookup finds no
    // endpoint (https, then plain HTTP, one retry).
    retries.0.lock().unwrap().clear();
    let cold = RegistryCache::new(&r, opts).unwrap();
    let start = Instant::now();
    let e = cold.lookup(&recs[0].key).unwrap_err();
    let cold_first = start.elapsed();
    assert!(e.to_string().contains("cannot reach registry"), "{e}");
    eprintln!(
        "lookup against a stopped registry: {:.0} ms (endpoint known), {:.3} ms (later lookups), {:.0} ms (new cache)",
        first.as_secs_f64() * 1000.0,
        second.as_secs_f64() * 1000.0,
        cold_first.as_secs_f64() * 1000.0
    );
}

#[test]
fn a_cache_ref_names_a_tag() {
    let by_digest = format!("localhost:5000/app@{}", Digest::sha256(b"x"));
    assert!(RegistryCache::new(&by_digest, ClientOptions::default()).is_err());
    assert!(RegistryCache::new("localhost:5000/App", ClientOptions::default()).is_err());
    for (r, want) in [
        ("localhost:5000/app", "registry localhost:5000/app:cache"),
        (
            "localhost:5000/app:latest",
            "registry localhost:5000/app:latest",
        ),
        (
            "localhost:5000/team/app:ci-main",
            "registry localhost:5000/team/app:ci-main",
        ),
        ("docker.io/library/app", "registry app:cache"),
    ] {
        assert_eq!(cache_at(r).describe(), want, "{r}");
    }
    assert_eq!(
        cache_at("localhost:5000/team/app:ci").mount_source(),
        Some(("localhost:5000".to_owned(), "team/app".to_owned()))
    );
}

#[test]
fn a_cache_works_inside_another_runtime() {
    let reg = Registry::strata();
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a")).unwrap();
    let recs = records(&a, 7, 1, 100);
    let cache = cache_at(&format!("{}/team/nested", reg.addr()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Called (and dropped) from async code: no "runtime within a runtime"
    // panic.
    rt.block_on(async move {
        cache.export(&a, &recs, &[]).unwrap();
        assert!(cache.lookup(&recs[0].key).unwrap().is_some());
        drop(cache);
    });
}
