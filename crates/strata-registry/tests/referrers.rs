//! Referrers (OCI 1.1) travel with their image: pushed after it, pulled
//! with it through the referrers API (strata serve) or the tag-schema
//! fallback (distribution 2.8, which has no referrers API), and the
//! image's digest never changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use strata_oci::{media_type, Descriptor, Manifest, Reference, Store};
use strata_registry::{Client, ClientOptions, PushContent, ServeOptions};

/// An image `app:1` with an SBOM referrer and a signature of the SBOM;
/// returns (image manifest, sbom, signature).
fn image_with_referrers(store: &Store) -> (Descriptor, Descriptor, Descriptor) {
    let m = make_image(store, "app:1", &[("a", noise(1, 3000))]);
    let blob = store
        .put_json("application/spdx+json", br#"{"spdxVersion":"SPDX-2.3"}"#)
        .unwrap();
    let sbom = Manifest::artifact(
        "application/spdx+json",
        m.clone(),
        vec![blob],
        BTreeMap::new(),
    );
    let sbom = store.put_referrer(&sbom.to_json()).unwrap();
    let sig_blob = store.put_json("application/octet-stream", b"sig").unwrap();
    let sig = Manifest::artifact(
        "application/vnd.example.sig",
        sbom.clone(),
        vec![sig_blob],
        BTreeMap::from([("k".into(), "v".into())]),
    );
    let sig = store.put_referrer(&sig.to_json()).unwrap();
    (m, sbom, sig)
}

async fn push_and_pull(addr: &str, expect_api: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let (m, sbom, sig) = image_with_referrers(&store);
    let img = store.find_image("app:1").unwrap();
    let content = PushContent::of(&store, &img).unwrap();
    let listed: Vec<_> = content.referrers().map(|d| d.digest.clone()).collect();
    assert_eq!(listed, vec![sbom.digest.clone(), sig.digest.clone()]);

    let client = Client::new(ClientOptions::default()).unwrap();
    let dest: Reference = format!("{addr}/team/app:1").parse().unwrap();
    let pushed = client.push(&store, "app:1", &dest).await.unwrap();
    assert_eq!(pushed.digest, m.digest, "the image digest is unchanged");
    assert_eq!(pushed.referrers, 2);
    if expect_api {
        assert_eq!(pushed.manifest_bytes, content.manifest_bytes());
    }

    let fresh = Store::open(dir.path().join("b")).unwrap();
    let pulled = client.pull(&fresh, &dest).await.unwrap();
    assert_eq!(pulled.digest, m.digest);
    assert_eq!(pulled.referrers, 2);
    let got = fresh.referrers(&m.digest, None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].digest, sbom.digest);
    assert_eq!(
        got[0].artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    let sigs = fresh.referrers(&sbom.digest, None).unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].digest, sig.digest);
    assert_eq!(sigs[0].annotations.get("k").map(String::as_str), Some("v"));
    // Bytes exactly as pushed, and the store is consistent.
    assert_eq!(
        fresh.read_blob(&sig.digest).unwrap(),
        store.read_blob(&sig.digest).unwrap()
    );
    assert_verified(&fresh);
    // A second push sends no referrer blob again.
    let again = client.push(&store, "app:1", &dest).await.unwrap();
    assert_eq!(again.uploaded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_travel_through_strata_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, server_store, _reqs, stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    push_and_pull(&addr, true).await;
    // The server's store lists them too.
    let img = server_store.find_image("team/app:1").unwrap();
    assert_eq!(
        server_store
            .referrers(&img.descriptor.digest, None)
            .unwrap()
            .len(),
        1
    );
    stop.send(()).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_of_store_images_are_served_by_name() {
    // An image with referrers in the server's own store, never pushed:
    // the referrers API lists them and a pull brings them.
    let dir = tempfile::tempdir().unwrap();
    let (addr, server_store, _reqs, stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let (m, sbom, _sig) = image_with_referrers(&server_store);
    let client = Client::new(ClientOptions::default()).unwrap();
    let fresh = Store::open(dir.path().join("b")).unwrap();
    let r: Reference = format!("{addr}/app:1").parse().unwrap();
    let pulled = client.pull(&fresh, &r).await.unwrap();
    assert_eq!(pulled.digest, m.digest);
    assert_eq!(pulled.referrers, 2);
    assert_eq!(
        fresh.referrers(&m.digest, None).unwrap()[0].digest,
        sbom.digest
    );
    // Filtered by artifact type.
    let url = format!(
        "http://{addr}/v2/app/referrers/{}?artifactType=none/such",
        m.digest
    );
    let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(body["manifests"].as_array().map(Vec::len), Some(0));
    let url = format!("http://{addr}/v2/app/referrers/{}", m.digest);
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        media_type::OCI_INDEX
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["manifests"][0]["digest"], sbom.digest.to_string());
    stop.send(()).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_use_the_tag_fallback_without_the_api() {
    let Some(reg) = ReferenceRegistry::start() else {
        return;
    };
    push_and_pull(&reg.addr, false).await;
    // The fallback index is where the tag schema says.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (m, _, _) = image_with_referrers(&store);
    let url = format!(
        "http://{}/v2/team/app/manifests/sha256-{}",
        reg.addr,
        m.digest.hex()
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .header("accept", media_type::OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}
