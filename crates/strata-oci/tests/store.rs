//! Content store behaviour: ingest, tags, images, verify, leases and gc.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use strata_oci::{
    media_type, Descriptor, Digest, Error, GcOptions, ImageConfig, Manifest, Problem, Reference,
    RootSet, Store, CACHE_NAMESPACE,
};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("root")).unwrap();
    (dir, s)
}

/// A one-layer image; returns the manifest descriptor.
fn put_image(s: &Store, layer: &[u8]) -> Descriptor {
    let ld = s.put_blob(layer).unwrap();
    let mut cfg = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    };
    cfg.rootfs.diff_ids.push(ld.clone());
    let cd = s.put_json(media_type::OCI_CONFIG, &cfg.to_json()).unwrap();
    let m = Manifest::oci(
        cd,
        vec![Descriptor::new(
            media_type::OCI_LAYER_TAR,
            ld,
            layer.len() as u64,
        )],
    );
    s.put_json(media_type::OCI_MANIFEST, &m.to_json()).unwrap()
}

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

#[test]
fn commit_verifies_digest_and_size() {
    let (_t, s) = store();
    let mut w = s.writer("a", None).unwrap();
    w.write_all(b"hello").unwrap();
    let err = w.commit(None, Some(&Digest::sha256(b"other"))).unwrap_err();
    assert!(err.is_digest_mismatch(), "{err}");
    assert!(
        !s.has(&Digest::sha256(b"hello")),
        "a mismatching blob was stored"
    );
    assert!(!s.has(&Digest::sha256(b"other")));

    let mut w = s.writer("a", None).unwrap();
    assert_eq!(w.offset(), 0, "a failed commit leaves nothing to resume");
    w.write_all(b"hello").unwrap();
    let err = w.commit(Some(4), None).unwrap_err();
    assert!(err.is_digest_mismatch(), "{err}");

    let d = s.put_blob(b"hello").unwrap();
    assert_eq!(s.read_blob(&d).unwrap(), b"hello");
    assert_eq!(s.blob_size(&d).unwrap(), 5);
    // A writer for present content says AlreadyExists; put is idempotent.
    let desc = Descriptor::new("", d.clone(), 5);
    assert!(s.writer("b", Some(&desc)).unwrap_err().is_already_exists());
    assert_eq!(s.put_blob(b"hello").unwrap(), d);
    assert!(s
        .read_blob(&Digest::sha256(b"nope"))
        .unwrap_err()
        .is_not_found());
}

#[test]
fn ingest_resumes_by_ref_and_is_locked_while_open() {
    let (_t, s) = store();
    let mut w = s.writer("upload-1", None).unwrap();
    w.write_all(b"hello ").unwrap();
    assert!(matches!(
        s.writer("upload-1", None).unwrap_err(),
        Error::Locked(_)
    ));
    drop(w);
    let mut w = s.writer("upload-1", None).unwrap();
    assert_eq!(w.offset(), 6);
    w.write_all(b"world").unwrap();
    let d = w
        .commit(Some(11), Some(&Digest::sha256(b"hello world")))
        .unwrap();
    assert_eq!(s.read_blob(&d).unwrap(), b"hello world");
    assert_eq!(s.writer("upload-1", None).unwrap().offset(), 0);
}

#[test]
fn sha512_blobs_are_accepted() {
    let (_t, s) = store();
    let mut h = strata_oci::Hasher::new(strata_oci::Algorithm::Sha512);
    h.update(b"x");
    let d = h.finish();
    let got = s
        .put_reader(&b"x"[..], Some(&Descriptor::new("", d.clone(), 1)))
        .unwrap();
    assert_eq!(got, d);
    assert!(s.blob_path(&d).to_string_lossy().contains("blobs/sha512/"));
    assert_eq!(s.read_blob(&d).unwrap(), b"x");
}

#[test]
fn tags_resolve_and_images_find() {
    let (_t, s) = store();
    let m = put_image(&s, b"layer-a");
    assert!(s.tag(&r("busybox"), &m).unwrap().is_none());
    s.tag(&r("localhost:5000/app:1"), &m).unwrap();
    assert_eq!(
        s.resolve(&r("docker.io/library/busybox:latest")).unwrap(),
        m
    );
    let img = s.find_image("busybox").unwrap();
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0].diff_id, Digest::sha256(b"layer-a"));
    assert_eq!(Digest::sha256(&img.config_raw), *img.id());
    assert_eq!(s.find_image(&img.id().to_string()).unwrap().id(), img.id());
    assert_eq!(s.find_image(&img.id().hex()[..8]).unwrap().id(), img.id());
    assert_eq!(
        s.find_image(&format!("busybox@{}", m.digest)).unwrap().id(),
        img.id()
    );
    assert_eq!(s.tags_of(img.id()).unwrap().len(), 2);
    assert!(s.find_image("nothere").unwrap_err().is_not_found());
    // Tags need stored content.
    let ghost = Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256(b"ghost"), 5);
    assert!(s.tag(&r("ghost"), &ghost).unwrap_err().is_not_found());
    s.untag(&r("busybox")).unwrap();
    assert!(s.resolve(&r("busybox")).unwrap_err().is_not_found());
    assert!(s.untag(&r("busybox")).unwrap_err().is_not_found());
}

#[test]
fn concurrent_taggers_lose_no_update() {
    let (_t, s) = store();
    let m = put_image(&s, b"l");
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = s.clone();
            let m = m.clone();
            scope.spawn(move || {
                for i in 0..25 {
                    s.tag(&r(&format!("app:t{t}-{i}")), &m).unwrap();
                }
            });
        }
    });
    assert_eq!(s.list_tags().unwrap().len(), 100);
}

#[test]
fn verify_finds_corruption_and_dangling_references() {
    let (_t, s) = store();
    let m = put_image(&s, b"layer");
    s.tag(&r("img"), &m).unwrap();
    let rep = s.verify().unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!((rep.blobs, rep.tags), (3, 1));

    // Corrupt the layer, delete nothing: one corrupt blob.
    let layer = Digest::sha256(b"layer");
    std::fs::write(s.blob_path(&layer), b"LAYER").unwrap();
    let rep = s.verify().unwrap();
    assert!(
        matches!(&rep.problems[..], [Problem::CorruptBlob { digest, .. }] if *digest == layer.to_string()),
        "{:?}",
        rep.problems
    );
    // Remove it: a missing blob referenced by the manifest.
    std::fs::remove_file(s.blob_path(&layer)).unwrap();
    let rep = s.verify().unwrap();
    assert!(
        matches!(&rep.problems[..], [Problem::Missing { digest, .. }] if *digest == layer.to_string()),
        "{:?}",
        rep.problems
    );
    std::fs::write(s.root().join("blobs/sha256/junk"), b"").unwrap();
    assert!(s
        .verify()
        .unwrap()
        .problems
        .iter()
        .any(|p| matches!(p, Problem::BadBlobFile { .. })));
}

#[test]
fn gc_keeps_tagged_rooted_and_leased_content() {
    let (_t, s) = store();
    let kept = put_image(&s, b"kept");
    s.tag(&r("kept"), &kept).unwrap();
    let orphan = put_image(&s, b"orphan");
    let cached = s.put_blob(b"cache layer").unwrap();
    s.set_root(
        CACHE_NAMESPACE,
        "build-1",
        &RootSet {
            digests: [cached.clone()].into(),
            snapshots: Default::default(),
        },
    )
    .unwrap();
    std::fs::create_dir_all(s.snapshots_dir().join(Digest::sha256(b"kept").hex())).unwrap();
    std::fs::create_dir_all(s.snapshots_dir().join(Digest::sha256(b"orphan").hex())).unwrap();

    // Dry run: reports, changes nothing.
    let rep = s
        .gc(GcOptions {
            dry_run: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rep.blobs.len(), 3, "{:?}", rep.blobs); // orphan manifest, config, layer
    assert!(s.has(&orphan.digest));

    let rep = s.gc(GcOptions::default()).unwrap();
    assert_eq!(rep.blobs.len(), 3);
    assert_eq!(
        rep.snapshots,
        vec![Digest::sha256(b"orphan").hex().to_owned()]
    );
    assert!(!s.has(&orphan.digest));
    assert!(s.has(&cached));
    assert!(s.find_image("kept").is_ok());
    assert!(s.verify().unwrap().problems.is_empty());

    // A lease protects content written while it lives, and what it names.
    let mut lease = s.lease("test").unwrap();
    let fresh = s.put_blob(b"fresh, untagged").unwrap();
    lease.add_digest(&cached).unwrap();
    let rep = s
        .gc(GcOptions {
            remove_cache: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rep.roots, vec!["cache/build-1".to_owned()]);
    assert!(s.has(&fresh) && s.has(&cached), "{rep:?}");
    drop(lease);
    s.gc(GcOptions::default()).unwrap();
    assert!(!s.has(&fresh) && !s.has(&cached));
}

#[test]
fn a_lease_of_a_dead_process_is_stale() {
    let (_t, s) = store();
    let lease = s.lease("x").unwrap();
    let dir = s.root().join("leases");
    let id = lease.id().to_owned();
    // Simulate a process killed with the lease held: files stay, lock gone.
    let json = std::fs::read(dir.join(format!("{id}.json"))).unwrap();
    drop(lease);
    std::fs::write(dir.join(format!("{id}.json")), json).unwrap();
    std::fs::write(dir.join(format!("{id}.lock")), b"").unwrap();
    let d = s.put_blob(b"written under a dead lease").unwrap();
    s.gc(GcOptions::default()).unwrap();
    assert!(!s.has(&d));
    assert!(!dir.join(format!("{id}.lock")).exists());
}

#[test]
fn untagged_images_survive_plain_prune_only() {
    let (_t, s) = store();
    let m = put_image(&s, b"u");
    s.keep_untagged(&m).unwrap();
    assert_eq!(s.list_tags().unwrap()[0].reference, None);
    s.gc(GcOptions::default()).unwrap();
    assert!(s.has(&m.digest));
    let rep = s
        .gc(GcOptions {
            remove_untagged: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rep.untagged, vec![m.digest.clone()]);
    assert!(!s.has(&m.digest));
}

#[test]
fn gc_removes_the_sidecars_of_removed_images_only() {
    let (_t, s) = store();
    let kept = put_image(&s, b"kept");
    s.tag(&r("kept"), &kept).unwrap();
    let gone = put_image(&s, b"gone");
    let id = |m: &Descriptor| {
        let man: serde_json::Value =
            serde_json::from_slice(&s.read_blob(&m.digest).unwrap()).unwrap();
        man["config"]["digest"].as_str().unwrap()[7..].to_owned()
    };
    let (kept_id, gone_id) = (id(&kept), id(&gone));
    let kept_id: Digest = format!("sha256:{kept_id}").parse().unwrap();
    let gone_id: Digest = format!("sha256:{gone_id}").parse().unwrap();
    // Two kinds, written by different tools; the store knows neither.
    let info = s.sidecar("build-info").unwrap();
    let analysis = s.sidecar("analysis").unwrap();
    info.put(&kept_id, None, b"x").unwrap();
    analysis
        .put(&kept_id, Some("0123456789abcdef"), b"x")
        .unwrap();
    info.put(&gone_id, None, b"x").unwrap();
    analysis
        .put(&gone_id, Some("0123456789abcdef"), b"x")
        .unwrap();
    let tmp = s.root().join("sidecars/analysis/.tmp-XYZ");
    std::fs::write(&tmp, b"x").unwrap();
    let present = || {
        vec![
            info.get(&kept_id, None).unwrap().is_some(),
            analysis
                .get(&kept_id, Some("0123456789abcdef"))
                .unwrap()
                .is_some(),
            info.get(&gone_id, None).unwrap().is_some(),
            analysis
                .get(&gone_id, Some("0123456789abcdef"))
                .unwrap()
                .is_some(),
            tmp.exists(),
        ]
    };
    let rep = s
        .gc(GcOptions {
            dry_run: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rep.sidecars, 2);
    assert_eq!(present(), [true; 5]);
    let rep = s.gc(GcOptions::default()).unwrap();
    assert_eq!(rep.sidecars, 2);
    // A young temp file may be a write in progress: kept.
    assert_eq!(present(), [true, true, false, false, true]);
}
