//! `strata cache ls` and `strata cache prune`: the store's build cache, a
//! registry cache (on `strata serve`) and an OCI layout cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{strata, Serve};
use serde_json::Value;
use strata_oci::{
    cache_entry_manifest, cache_entry_tag, format_rfc3339, media_type, CacheRecord, Descriptor,
    Digest, ImageConfig, Index, LayoutCache, Manifest, Reference, RemoteCache, RootSet, Store,
    ANNOTATION_REF_NAME, CACHE_NAMESPACE,
};
use strata_registry::{ClientOptions, RegistryCache};

mod common;

/// Records with layers of distinct bytes, plus one without a layer.
fn records(store: &Store, seed: u8, n: u8) -> Vec<CacheRecord> {
    let mut out: Vec<CacheRecord> = (0..n)
        .map(|i| {
            let data = vec![seed ^ i; 1000 + usize::from(i)];
            let d = store.put_blob(&data).unwrap();
            CacheRecord {
                chain: None,
                key: Digest::sha256(&[seed, i]),
                layer: Some((
                    Descriptor::new(media_type::OCI_LAYER_GZIP, d, data.len() as u64),
                    Digest::sha256(&[seed, i, 0xd1]),
                )),
            }
        })
        .collect();
    out.push(CacheRecord {
        chain: None,
        key: Digest::sha256(&[seed, 0xee]),
        layer: None,
    });
    out
}

fn run(root: &Path, args: &[&str]) -> (bool, String, String) {
    let out = strata()
        .env("STRATA_ROOT", root)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(root: &Path, args: &[&str]) -> String {
    let (success, out, err) = run(root, args);
    assert!(success, "strata {args:?} failed:\n{out}{err}");
    out
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn days_ago(n: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(n * 86_400)
}

#[test]
fn a_registry_cache_is_listed_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("server"), &[]);
    let store = Store::open(dir.path().join("a")).unwrap();
    let recs = records(&store, 1, 2);
    let r = format!("{}/team/app", serve.addr);
    RegistryCache::new(&r, ClientOptions::default())
        .unwrap()
        .export(&store, &recs, &[])
        .unwrap();
    let root = dir.path().join("b");

    let out = ok(&root, &["cache", "ls", &r]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("KEY"), "{out}");
    for rec in &recs {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&rec.key.hex()[..12]))
            .unwrap_or_else(|| panic!("no row for {}: {out}", rec.key));
        match &rec.layer {
            Some((d, _)) => assert!(row.contains(&d.digest.hex()[..12]), "{row}"),
            None => assert!(row.contains("no layer"), "{row}"),
        }
        assert!(row.contains("ago"), "{row}");
    }
    // The spelling of --cache-from, and JSON.
    let spec = format!("type=registry,ref={r},mode=max");
    let items = json_lines(&ok(&root, &["cache", "ls", &spec, "--format", "json"]));
    assert_eq!(items.len(), 3);
    let layered = items
        .iter()
        .find(|i| i["Key"] == recs[0].key.hex())
        .unwrap();
    let (d, diff) = recs[0].layer.clone().unwrap();
    assert_eq!(layered["LayerDigest"], d.digest.to_string());
    assert_eq!(layered["DiffID"], diff.to_string());
    assert_eq!(layered["Bytes"], d.size);

    let out = ok(&root, &["cache", "prune", &r, "--older-than", "30d"]);
    assert!(out.contains("removed 0 entries"), "{out}");
    assert!(out.contains("kept 3"), "{out}");
    let out = ok(&root, &["cache", "prune", &r, "--older-than", "0s"]);
    assert!(out.contains("removed 3 entries"), "{out}");
    assert_eq!(ok(&root, &["cache", "ls", &r]).lines().count(), 1);
    drop(serve);
}

#[test]
fn an_unreachable_registry_cache_fails_with_its_causes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let out = strata()
        .env("STRATA_ROOT", dir.path())
        .args(["cache", "ls", &format!("{addr}/team/app:ci")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: cannot list the registry {addr}/team/app:ci"
        )),
        "{err}"
    );
    assert!(err.contains("caused by: cannot reach registry"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    // A misspelt spec is a usage error.
    let out = strata()
        .env("STRATA_ROOT", dir.path())
        .args(["cache", "ls", "type=registry,src=x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Make the entry for `key` in the layout `dir` look written `days` ago.
fn backdate_layout_entry(dir: &Path, key: &Digest, days: u64) {
    let index_path = dir.join("index.json");
    let mut index: Index = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let tag = cache_entry_tag("cache", key);
    let pos = index
        .manifests
        .iter()
        .position(|m| m.annotations.get(ANNOTATION_REF_NAME) == Some(&tag))
        .unwrap();
    let old = &index.manifests[pos];
    let raw = std::fs::read(dir.join("blobs/sha256").join(old.digest.hex())).unwrap();
    let entry = strata_oci::parse_cache_entry(&raw).unwrap();
    let secs = days_ago(days)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let raw = cache_entry_manifest(&entry.record, &format_rfc3339(secs as i64));
    let d = Digest::sha256(&raw);
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), &raw).unwrap();
    let mut desc = old.clone();
    desc.digest = d;
    desc.size = raw.len() as u64;
    index.manifests[pos] = desc;
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn a_layout_cache_is_listed_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let recs = records(&store, 2, 2);
    let cache_dir = dir.path().join("ci-cache");
    LayoutCache::new(&cache_dir)
        .export(&store, &recs, &[])
        .unwrap();
    backdate_layout_entry(&cache_dir, &recs[0].key, 40);
    let root = dir.path().join("b");
    let d = cache_dir.to_str().unwrap();

    assert_eq!(ok(&root, &["cache", "ls", d]).lines().count(), 4);
    let spec = format!("type=local,src={d}");
    let items = json_lines(&ok(&root, &["cache", "ls", &spec, "--format", "json"]));
    assert_eq!(items.len(), 3);
    let old = items
        .iter()
        .find(|i| i["Key"] == recs[0].key.hex())
        .unwrap();
    assert!(
        old["CreatedSince"].as_str().unwrap().contains("weeks"),
        "{old}"
    );

    let out = ok(&root, &["cache", "prune", d, "--older-than", "720h"]);
    assert!(out.contains("removed 1 entries"), "{out}");
    assert!(out.contains("kept 2"), "{out}");
    let (old_layer, _) = recs[0].layer.clone().unwrap();
    let (kept_layer, _) = recs[1].layer.clone().unwrap();
    assert!(!cache_dir
        .join("blobs/sha256")
        .join(old_layer.digest.hex())
        .exists());
    assert!(cache_dir
        .join("blobs/sha256")
        .join(kept_layer.digest.hex())
        .exists());
    assert_eq!(ok(&root, &["cache", "ls", d]).lines().count(), 3);
    // A directory that is not there is a mistake here.
    let (success, _, err) = run(&root, &["cache", "ls", "./no-such-cache"]);
    assert!(!success);
    assert!(err.contains("no cache directory"), "{err}");
}

/// A build cache entry as the builder writes it: the layer blob rooted in
/// the cache namespace and `build-cache/keys/<key>.json`.
fn local_entry(store: &Store, key: &Digest, layer: Option<&[u8]>) -> Option<Descriptor> {
    let keys = store.root().join("build-cache/keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (json, desc) = match layer {
        Some(bytes) => {
            let d = store.put_blob(bytes).unwrap();
            let desc = Descriptor::new(media_type::OCI_LAYER_TAR, d.clone(), bytes.len() as u64);
            let mut set = RootSet::default();
            set.digests.insert(d.clone());
            store.set_root(CACHE_NAMESPACE, key.hex(), &set).unwrap();
            (
                serde_json::json!({"layer": {"descriptor": desc, "diff_id": d}}),
                Some(desc),
            )
        }
        None => (serde_json::json!({ "layer": null }), None),
    };
    std::fs::write(
        keys.join(format!("{}.json", key.hex())),
        serde_json::to_vec(&json).unwrap(),
    )
    .unwrap();
    desc
}

#[test]
fn the_local_build_cache_is_listed_and_pruned_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let keys: Vec<Digest> = (0..4u8).map(|i| Digest::sha256(&[i])).collect();
    let old_unused = local_entry(&store, &keys[0], Some(&[1u8; 3000])).unwrap();
    let old_in_image = local_entry(&store, &keys[1], Some(&[2u8; 2000])).unwrap();
    let young = local_entry(&store, &keys[2], Some(&[3u8; 1000])).unwrap();
    local_entry(&store, &keys[3], None);
    // An image uses the second entry's layer.
    let mut cfg = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    };
    cfg.rootfs.diff_ids.push(old_in_image.digest.clone());
    let c = store
        .put_json(media_type::OCI_CONFIG, &cfg.to_json())
        .unwrap();
    let m = store
        .put_json(
            media_type::OCI_MANIFEST,
            &Manifest::oci(c, vec![old_in_image.clone()]).to_json(),
        )
        .unwrap();
    store
        .tag(&"app:1".parse::<Reference>().unwrap(), &m)
        .unwrap();
    for k in [&keys[0], &keys[1], &keys[3]] {
        let p = root.join(format!("build-cache/keys/{}.json", k.hex()));
        filetime::set_file_mtime(&p, filetime::FileTime::from_system_time(days_ago(40))).unwrap();
    }

    let out = ok(&root, &["cache", "ls"]);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.contains("no layer"), "{out}");
    let items = json_lines(&ok(
        &root,
        &["cache", "ls", "--format", "json", "--no-trunc"],
    ));
    assert_eq!(items.len(), 4);
    assert!(items.iter().any(|i| i["Layer"] == young.digest.to_string()));

    let out = ok(&root, &["cache", "prune", "--older-than", "30d"]);
    assert!(out.contains("removed 3 entries"), "{out}");
    assert!(out.contains("kept 1"), "{out}");
    let store = Store::open(&root).unwrap();
    assert!(!store.has(&old_unused.digest), "an unused layer goes");
    assert!(
        store.has(&old_in_image.digest),
        "a layer an image uses stays"
    );
    assert!(store.has(&young.digest), "a young entry's layer stays");
    let roots: Vec<String> = store
        .list_roots()
        .unwrap()
        .into_iter()
        .filter(|(ns, _, _)| ns == CACHE_NAMESPACE)
        .map(|(_, name, _)| name)
        .collect();
    assert_eq!(roots, vec![keys[2].hex().to_owned()]);
    let items = json_lines(&ok(&root, &["cache", "ls", "--format", "json"]));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["Key"], keys[2].hex());
}
