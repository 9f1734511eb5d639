//! The client against Debian's reference registry (distribution 2.8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use strata_oci::{Reference, Store};
use strata_registry::{Client, ClientOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_skip_mount_against_reference_registry() {
    let Some(reg) = ReferenceRegistry::start() else {
        return;
    };
    let addr = &reg.addr;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("local")).unwrap();
    let base = vec![
        ("deps", noise(1, 2 << 20)),
        ("meta", noise(2, 3000)),
        ("app", noise(3, 100_000)),
    ];
    make_image_typed(
        &store,
        "ref:v1",
        &base
            .iter()
            .map(|(p, c)| (*p, c.clone()))
            .collect::<Vec<_>>(),
        true,
    );
    // Small chunks so the chunked path (PATCH + Content-Range) is used too.
    let client = Client::new(ClientOptions {
        monolithic_max: 64 << 10,
        chunk_size: 512 << 10,
        ..ClientOptions::default()
    })
    .unwrap();
    let v1: Reference = format!("{addr}/ref/app:v1").parse().unwrap();
    let s = client.push(&store, "ref:v1", &v1).await.unwrap();
    assert_eq!((s.uploaded, s.skipped, s.mounted), (4, 0, 0));

    // Change one layer, push again: only it and the config travel.
    let mut changed = base.clone();
    changed[2].1 = noise(4, 100_000);
    make_image_typed(
        &store,
        "ref:v2",
        &changed
            .iter()
            .map(|(p, c)| (*p, c.clone()))
            .collect::<Vec<_>>(),
        true,
    );
    let v2: Reference = format!("{addr}/ref/app:v2").parse().unwrap();
    let s = client.push(&store, "ref:v2", &v2).await.unwrap();
    assert_eq!((s.uploaded, s.skipped, s.mounted), (2, 2, 0));
    assert!(s.bytes_sent < 110_000, "sent {}", s.bytes_sent);

    // Another repository of the same registry: mounted.
    let other: Reference = format!("{addr}/ref/other:v2").parse().unwrap();
    let s = client.push(&store, "ref:v2", &other).await.unwrap();
    assert_eq!((s.uploaded, s.skipped, s.mounted), (0, 0, 4));

    // Pull back into a fresh store; the second tag only needs the delta.
    let fresh = Store::open(dir.path().join("fresh")).unwrap();
    let p = client.pull(&fresh, &v1).await.unwrap();
    assert_eq!((p.downloaded, p.present), (4, 0));
    let p = client.pull(&fresh, &v2).await.unwrap();
    assert_eq!((p.downloaded, p.present), (2, 2));
    assert_eq!(
        fresh.resolve(&v2).unwrap().digest,
        store.resolve(&"ref:v2".parse().unwrap()).unwrap().digest,
        "manifest bytes kept as received"
    );
    assert_verified(&fresh);

    // By digest.
    let by_digest = v1.with_digest(p.digest.clone());
    let again = Store::open(dir.path().join("again")).unwrap();
    let p2 = client.pull(&again, &by_digest).await.unwrap();
    assert_eq!(p2.digest, p.digest);
    // A missing tag names what was asked.
    let e = client
        .pull(&again, &format!("{addr}/ref/app:nope").parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        e.is_not_found() && e.to_string().contains("manifest nope"),
        "{e}"
    );
}
