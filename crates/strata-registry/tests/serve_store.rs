//! `strata serve` serves the store it is given: the store's tags are
//! pullable by name, pushes of images become store tags, and the two never
//! disagree about a tag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Client as Http, StatusCode};
use strata_oci::{media_type, Descriptor, Digest, Index, Manifest, Platform, Reference, Store};
use strata_registry::{Client, ServeOptions};

async fn code_of(resp: reqwest::Response) -> String {
    let v: serde_json::Value = resp.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

async fn get(c: &Http, url: String) -> reqwest::Response {
    c.get(url)
        .header(
            "accept",
            format!(
                "{}, {}, {}, {}",
                media_type::OCI_MANIFEST,
                media_type::OCI_INDEX,
                media_type::DOCKER_MANIFEST,
                media_type::DOCKER_MANIFEST_LIST
            ),
        )
        .send()
        .await
        .unwrap()
}

async fn json(c: &Http, url: String) -> serde_json::Value {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

/// PUT a manifest document by tag or digest; returns the response.
async fn put_manifest(
    c: &Http,
    base: &str,
    repo: &str,
    r: &str,
    mt: &str,
    raw: &[u8],
) -> reqwest::Response {
    c.put(format!("{base}/v2/{repo}/manifests/{r}"))
        .header("content-type", mt)
        .body(raw.to_vec())
        .send()
        .await
        .unwrap()
}

/// POST + PUT one blob.
async fn upload(c: &Http, base: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256(data);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .query(&[("digest", d.to_string())])
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_tags_are_served_by_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, _stop) =
        start_server(&dir.path().join("srv"), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = Http::new();
    // Built or pulled into the store, never pushed.
    let app = make_image(&store, "app:dev", &[("bin/app", noise(1, 4000))]);
    let tool = make_image_typed(
        &store,
        "example.com/team/tool:1",
        &[("t", noise(2, 3000)), ("u", noise(3, 100))],
        true,
    );
    // Another registry's `app:dev`: docker.io's is preferred.
    let other_app = make_image(&store, "quay.io/app:dev", &[("x", noise(4, 10))]);

    for (repo, tag, want) in [
        ("app", "dev", &app),
        ("library/app", "dev", &app),
        ("team/tool", "1", &tool),
        ("example.com/team/tool", "1", &tool),
    ] {
        let r = get(&c, format!("{base}/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag}");
        assert_eq!(
            r.headers()["docker-content-digest"],
            want.digest.to_string().as_str()
        );
        assert_eq!(r.headers()["content-type"], want.media_type.as_str());
        assert_eq!(
            r.bytes().await.unwrap(),
            store.read_blob(&want.digest).unwrap()
        );
        let r = c
            .head(format!("{base}/v2/{repo}/manifests/{}", want.digest))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{repo}@{}", want.digest);
        // Its config and layers, by digest.
        let img = store.image(want, None).unwrap();
        for b in
            std::iter::once(&img.manifest.config).chain(img.layers.iter().map(|l| &l.descriptor))
        {
            let r = c
                .get(format!("{base}/v2/{repo}/blobs/{}", b.digest))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{repo} blob {}", b.digest);
            assert_eq!(
                r.bytes().await.unwrap(),
                store.read_blob(&b.digest).unwrap()
            );
        }
    }
    // Nothing leaks to names that do not serve it.
    let tool_img = store.image(&tool, None).unwrap();
    let r = c
        .get(format!(
            "{base}/v2/app/blobs/{}",
            tool_img.layers[0].descriptor.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "BLOB_UNKNOWN");
    let r = get(&c, format!("{base}/v2/app/manifests/{}", tool.digest)).await;
    assert_eq!(code_of(r).await, "MANIFEST_UNKNOWN");
    let r = get(&c, format!("{base}/v2/tool/manifests/1")).await;
    assert_eq!(code_of(r).await, "NAME_UNKNOWN");
    // quay.io/app:dev is served as app too, by digest.
    let r = get(&c, format!("{base}/v2/app/manifests/{}", other_app.digest)).await;
    assert_eq!(r.status(), StatusCode::OK);

    // Listings.
    let v = json(&c, format!("{base}/v2/app/tags/list")).await;
    assert_eq!(v["tags"], serde_json::json!(["dev"]));
    let v = json(&c, format!("{base}/v2/_catalog")).await;
    assert_eq!(v["repositories"], serde_json::json!(["app", "team/tool"]));

    // The strata client pulls it into another store.
    let other = Store::open(dir.path().join("other")).unwrap();
    let client = Client::new(Default::default()).unwrap();
    let s = client
        .pull(&other, &reference(&format!("{addr}/app:dev")))
        .await
        .unwrap();
    assert_eq!(s.digest, app.digest);
    assert_eq!(s.downloaded, 2);
    assert_verified(&other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_images_are_store_tags_and_tags_live_in_one_place() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, srv, _reqs, _stop) =
        start_server(&dir.path().join("srv"), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = Http::new();
    let local = Store::open(dir.path().join("local")).unwrap();
    let client = Client::new(Default::default()).unwrap();

    // A push shows up among the store's images, under its familiar name.
    let web = make_image(&local, "web:1", &[("index.html", noise(1, 2000))]);
    client
        .push(&local, "web:1", &reference(&format!("{addr}/team/web:1")))
        .await
        .unwrap();
    client
        .push(&local, "web:1", &reference(&format!("{addr}/solo:2")))
        .await
        .unwrap();
    assert_eq!(
        srv.resolve(&reference("team/web:1")).unwrap().digest,
        web.digest
    );
    assert_eq!(
        srv.resolve(&reference("solo:2")).unwrap().digest,
        web.digest
    );
    let names: Vec<String> = srv
        .images()
        .unwrap()
        .iter()
        .filter_map(|s| s.entry.reference.as_ref().map(|r| r.familiar()))
        .collect();
    assert_eq!(names, ["solo:2", "team/web:1"]);

    // The store retags (a rebuild): the server serves the new image.
    let web2 = make_image(&srv, "team/web:1", &[("index.html", noise(2, 2000))]);
    let r = get(&c, format!("{base}/v2/team/web/manifests/1")).await;
    assert_eq!(
        r.headers()["docker-content-digest"],
        web2.digest.to_string().as_str()
    );

    // Deleting the tag removes the store's tag.
    let r = c
        .delete(format!("{base}/v2/team/web/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(srv
        .resolve(&reference("team/web:1"))
        .unwrap_err()
        .is_not_found());
    let r = get(&c, format!("{base}/v2/team/web/manifests/1")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Deleting by digest a manifest only a store tag provides.
    let x = make_image(&srv, "app:x", &[("x", noise(3, 500))]);
    let r = c
        .delete(format!("{base}/v2/app/manifests/{}", x.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(srv.resolve(&reference("app:x")).unwrap_err().is_not_found());

    // A blob of a store image cannot be deleted from under its tag.
    let dev = make_image(
        &srv,
        "app:dev",
        &[("a", noise(4, 800)), ("b", noise(5, 900))],
    );
    let dev_img = srv.image(&dev, None).unwrap();
    let shared = dev_img.layers[0].descriptor.clone();
    let r = c
        .delete(format!("{base}/v2/app/blobs/{}", shared.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "UNSUPPORTED");

    // A manifest may reference blobs only the store's tags provide; they
    // are linked with it, so it stays whole when the store's tag goes.
    let mut cfg_v: serde_json::Value = serde_json::from_slice(&dev_img.config_raw).unwrap();
    cfg_v["rootfs"]["diff_ids"] = serde_json::json!([dev_img.layers[0].diff_id.to_string()]);
    let cfg2 = serde_json::to_vec(&cfg_v).unwrap();
    let cd = upload(&c, &base, "app", &cfg2).await;
    let m = Manifest::oci(
        Descriptor::new(media_type::OCI_CONFIG, cd, cfg2.len() as u64),
        vec![shared.clone()],
    )
    .to_json();
    let md = Digest::sha256(&m);
    let r = put_manifest(
        &c,
        &base,
        "app",
        &md.to_string(),
        media_type::OCI_MANIFEST,
        &m,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    srv.untag(&reference("app:dev")).unwrap();
    let r = c
        .get(format!("{base}/v2/app/blobs/{}", shared.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&c, format!("{base}/v2/app/manifests/{md}")).await;
    assert_eq!(r.status(), StatusCode::OK);

    // An artifact is a tag of the repository only, and replaces the
    // store's tag of that name; `strata images` keeps working.
    let blob = upload(&c, &base, "app", b"signature").await;
    let art = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": upload(&c, &base, "app", b"{}").await.to_string(), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": blob.to_string(), "size": 9}],
    });
    let art = serde_json::to_vec(&art).unwrap();
    let r = put_manifest(&c, &base, "app", "slim", media_type::OCI_MANIFEST, &art).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(srv
        .resolve(&reference("app:slim"))
        .unwrap_err()
        .is_not_found());
    let r = get(&c, format!("{base}/v2/app/manifests/slim")).await;
    assert_eq!(
        r.headers()["docker-content-digest"],
        Digest::sha256(&art).to_string().as_str()
    );
    srv.images().unwrap();
    let v = json(&c, format!("{base}/v2/app/tags/list")).await;
    assert_eq!(v["tags"], serde_json::json!(["slim"]));
    // An image pushed over the artifact's tag moves it back to the store.
    let r = put_manifest(&c, &base, "app", "slim", media_type::OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        srv.resolve(&reference("app:slim")).unwrap().digest,
        Digest::sha256(&m)
    );
    let v = json(&c, format!("{base}/v2/app/tags/list")).await;
    assert_eq!(v["tags"], serde_json::json!(["slim"]));
    let r = get(&c, format!("{base}/v2/app/manifests/slim")).await;
    assert_eq!(
        r.headers()["docker-content-digest"],
        Digest::sha256(&m).to_string().as_str()
    );
    assert_verified(&srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_in_the_store_serves_the_platforms_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, _stop) =
        start_server(&dir.path().join("srv"), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = Http::new();
    let amd = make_image(&store, "tmp:amd", &[("a", noise(1, 100))]);
    store.untag(&reference("tmp:amd")).unwrap();
    let mut amd_d = amd.clone();
    amd_d.platform = Some("linux/amd64".parse::<Platform>().unwrap());
    // An arm64 entry the store does not hold (pulled for one platform).
    let mut arm_d = Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256(b"arm"), 3);
    arm_d.platform = Some("linux/arm64".parse::<Platform>().unwrap());
    let idx = store
        .put_json(
            media_type::OCI_INDEX,
            &Index::oci(vec![amd_d, arm_d.clone()]).to_json(),
        )
        .unwrap();
    store.tag(&reference("multi:1"), &idx).unwrap();

    let r = get(&c, format!("{base}/v2/multi/manifests/1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], media_type::OCI_INDEX);
    let r = get(&c, format!("{base}/v2/multi/manifests/{}", amd.digest)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&c, format!("{base}/v2/multi/manifests/{}", arm_d.digest)).await;
    assert_eq!(code_of(r).await, "MANIFEST_UNKNOWN");
    let img = store.image(&amd, None).unwrap();
    let r = c
        .head(format!(
            "{base}/v2/multi/blobs/{}",
            img.layers[0].descriptor.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A platform manifest goes with its index, not alone.
    let r = c
        .delete(format!("{base}/v2/multi/manifests/{}", amd.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "UNSUPPORTED");
    // The index pushed elsewhere on the server needs no upload of what
    // the store's tag already provides: its manifest is linked.
    let index_only = Index::oci(vec![{
        let mut d = amd.clone();
        d.platform = Some("linux/amd64".parse().unwrap());
        d
    }])
    .to_json();
    let r = put_manifest(&c, &base, "multi", "2", media_type::OCI_INDEX, &index_only).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(
        store.resolve(&reference("multi:2")).unwrap().digest,
        Digest::sha256(&index_only)
    );
    assert_verified(&store);
}
