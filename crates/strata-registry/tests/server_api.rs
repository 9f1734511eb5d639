//! `strata serve` against the distribution spec, request by request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Client, StatusCode};
use strata_oci::{media_type, Descriptor, Digest, Manifest};
use strata_registry::ServeOptions;

fn http() -> Client {
    Client::builder().build().unwrap()
}

async fn code_of(resp: reqwest::Response) -> String {
    let v: serde_json::Value = resp.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

fn sha512(data: &[u8]) -> Digest {
    let mut h = strata_oci::Hasher::new(strata_oci::Algorithm::Sha512);
    h.update(data);
    h.finish()
}

/// POST + PUT one blob; returns its digest.
async fn upload(c: &Client, base: &str, repo: &str, data: &[u8]) -> Digest {
    upload_as(c, base, repo, data, Digest::sha256(data)).await
}

/// POST + PUT one blob announced by `d` (sha256 or sha512).
async fn upload_as(c: &Client, base: &str, repo: &str, data: &[u8], d: Digest) -> Digest {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .put(format!("{base}{loc}"))
        .query(&[("digest", d.to_string())])
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    d
}

/// A manifest with a config and one layer, both uploaded to `repo`.
async fn push_manifest(
    c: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    seed: u64,
) -> (Digest, Vec<u8>) {
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        Digest::sha256(b"t")
    );
    let layer = noise(seed, 1000);
    let cd = upload(c, base, repo, cfg.as_bytes()).await;
    let ld = upload(c, base, repo, &layer).await;
    let m = Manifest::oci(
        Descriptor::new(media_type::OCI_CONFIG, cd, cfg.len() as u64),
        vec![Descriptor::new(media_type::OCI_LAYER_GZIP, ld, 1000)],
    )
    .to_json();
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    (Digest::sha256(&m), m)
}

#[tokio::test]
async fn ping_blobs_manifests_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, _stop) = start_server(dir.path(), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = http();

    let r = c.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // Monolithic upload, HEAD and ranged GET.
    let data = noise(1, 5000);
    let d = upload(&c, &base, "app/web", &data).await;
    let r = c
        .head(format!("{base}/v2/app/web/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "5000");
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    let r = c
        .get(format!("{base}/v2/app/web/blobs/{d}"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/5000");
    assert_eq!(r.bytes().await.unwrap(), &data[100..200]);
    let r = c
        .get(format!("{base}/v2/app/web/blobs/{d}"))
        .header("range", "bytes=6000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // A blob is reachable only through repositories it was pushed to.
    let r = c
        .get(format!("{base}/v2/other/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(code_of(r).await, "BLOB_UNKNOWN");

    // Wrong digest: refused, nothing stored, no ingest left behind.
    let r = c
        .post(format!("{base}/v2/app/web/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let liar = Digest::sha256(b"something else");
    let r = c
        .put(format!("{base}{loc}"))
        .query(&[("digest", liar.to_string())])
        .body(noise(2, 300))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code_of(r).await, "DIGEST_INVALID");
    assert!(!store.has(&Digest::sha256(&noise(2, 300))));
    assert!(!store.has(&liar));
    assert_eq!(
        std::fs::read_dir(store.root().join("ingest"))
            .unwrap()
            .count(),
        0
    );

    // Single-request upload (POST ?digest=).
    let one = noise(3, 777);
    let od = Digest::sha256(&one);
    let r = c
        .post(format!("{base}/v2/app/web/blobs/uploads/"))
        .query(&[("digest", od.to_string())])
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/app/web/blobs/{od}").as_str()
    );

    // Manifests: PUT by tag, GET by tag and digest, HEAD, Accept.
    let (md, mraw) = push_manifest(&c, &base, "app/web", "v1", 4).await;
    let r = c
        .get(format!("{base}/v2/app/web/manifests/v1"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], media_type::OCI_MANIFEST);
    assert_eq!(
        r.headers()["docker-content-digest"],
        md.to_string().as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), mraw);
    let r = c
        .head(format!("{base}/v2/app/web/manifests/{md}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        mraw.len().to_string().as_str()
    );
    let r = c
        .get(format!("{base}/v2/app/web/manifests/v1"))
        .header("accept", media_type::DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "OCI manifest served to a docker-only Accept"
    );

    // Manifest errors.
    let missing = Manifest::oci(
        Descriptor::new(media_type::OCI_CONFIG, Digest::sha256(b"nope"), 4),
        vec![],
    )
    .to_json();
    let r = c
        .put(format!("{base}/v2/app/web/manifests/bad"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(missing)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "MANIFEST_BLOB_UNKNOWN");
    let r = c
        .put(format!("{base}/v2/app/web/manifests/bad"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "MANIFEST_INVALID");
    let r = c
        .put(format!(
            "{base}/v2/app/web/manifests/{}",
            Digest::sha256(b"x")
        ))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(mraw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "DIGEST_INVALID");
    let r = c
        .get(format!("{base}/v2/app/web/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "MANIFEST_UNKNOWN");
    let r = c
        .get(format!("{base}/v2/never/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "NAME_UNKNOWN");
    let r = c
        .get(format!("{base}/v2/Bad_Name/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code_of(r).await, "NAME_INVALID");

    // Tags, pagination, catalog.
    for t in ["v2", "v3", "a"] {
        let r = c
            .put(format!("{base}/v2/app/web/manifests/{t}"))
            .header("content-type", media_type::OCI_MANIFEST)
            .body(mraw.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = c
        .get(format!("{base}/v2/app/web/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, "</v2/app/web/tags/list?n=2&last=v1>; rel=\"next\"");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "v1"]));
    let r = c
        .get(format!("{base}/v2/app/web/tags/list?n=2&last=v1"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v2", "v3"]));
    upload(&c, &base, "zeta", b"z").await;
    let v: serde_json::Value = c
        .get(format!("{base}/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["app/web", "zeta"]));
    let r = c
        .get(format!("{base}/v2/_catalog?n=1"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["link"]
        .to_str()
        .unwrap()
        .contains("last=app/web"));

    // Deletes: a tag, a manifest, a blob.
    let r = c
        .delete(format!("{base}/v2/app/web/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .get(format!("{base}/v2/app/web/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .delete(format!("{base}/v2/app/web/manifests/{md}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .get(format!("{base}/v2/app/web/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "tags of a deleted manifest go with it"
    );
    let r = c
        .delete(format!("{base}/v2/app/web/blobs/{od}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .head(format!("{base}/v2/app/web/blobs/{od}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_verified(&store);
}

#[tokio::test]
async fn chunked_upload_status_cancel_and_mount() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, _stop) = start_server(dir.path(), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = http();
    let data = noise(10, 3 << 20);
    let d = Digest::sha256(&data);
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let mut loc = r.headers()["location"].to_str().unwrap().to_owned();
    let mut off = 0;
    for chunk in data.chunks(1 << 20) {
        let end = off + chunk.len() - 1;
        let r = c
            .patch(format!("{base}{loc}"))
            .header("content-range", format!("{off}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()["range"], format!("0-{end}").as_str());
        loc = r.headers()["location"].to_str().unwrap().to_owned();
        off = end + 1;
        // A chunk that does not start where the upload is: 416.
        let r = c
            .patch(format!("{base}{loc}"))
            .header("content-range", "0-9")
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    }
    let r = c.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", data.len() - 1).as_str()
    );
    let r = c
        .put(format!("{base}{loc}"))
        .query(&[("digest", d.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(store.blob_size(&d).unwrap(), data.len() as u64);

    // Cancel.
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    c.patch(format!("{base}{loc}"))
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap();
    let r = c.delete(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(code_of(r).await, "BLOB_UPLOAD_UNKNOWN");
    // An upload of another repository is not reachable through this one.
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let id = loc.rsplit('/').next().unwrap();
    let r = c
        .get(format!("{base}/v2/b/blobs/uploads/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "BLOB_UPLOAD_UNKNOWN");

    // Mount into b from a: 201; from a repository without it: 202.
    let r = c
        .post(format!("{base}/v2/b/blobs/uploads/"))
        .query(&[("mount", d.to_string()), ("from", "a".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], d.to_string().as_str());
    let r = c
        .head(format!("{base}/v2/b/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{base}/v2/c/blobs/uploads/"))
        .query(&[("mount", d.to_string()), ("from", "nowhere".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_verified(&store);
}

#[tokio::test]
async fn referrers_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _store, _reqs, _stop) = start_server(dir.path(), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = http();
    let (subject, sraw) = push_manifest(&c, &base, "r", "v1", 20).await;
    let empty = upload(&c, &base, "r", b"{}").await;
    let mut sig_digests = Vec::new();
    for (i, at) in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ]
    .iter()
    .enumerate()
    {
        let layer = upload(&c, &base, "r", format!("payload {i}").as_bytes()).await;
        let mut m = Manifest::oci(
            Descriptor::new(media_type::OCI_EMPTY, empty.clone(), 2),
            vec![Descriptor::new("application/octet-stream", layer, 9)],
        );
        m.artifact_type = Some((*at).into());
        m.subject = Some(Descriptor::new(
            media_type::OCI_MANIFEST,
            subject.clone(),
            sraw.len() as u64,
        ));
        let raw = m.to_json();
        let d = Digest::sha256(&raw);
        let r = c
            .put(format!("{base}/v2/r/manifests/{d}"))
            .header("content-type", media_type::OCI_MANIFEST)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["oci-subject"], subject.to_string().as_str());
        sig_digests.push(d);
    }
    let r = c
        .get(format!("{base}/v2/r/referrers/{subject}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], media_type::OCI_INDEX);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    let r = c
        .get(format!(
            "{base}/v2/r/referrers/{subject}?artifactType=application/vnd.example.sbom"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = r.json().await.unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], sig_digests[1].to_string());
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sbom");
    // Deleting a referrer removes it from the list.
    c.delete(format!("{base}/v2/r/manifests/{}", sig_digests[0]))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = c
        .get(format!("{base}/v2/r/referrers/{subject}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let r = c
        .get(format!("{base}/v2/r/referrers/sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn htpasswd_pull_push_split_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    std::fs::write(
        &pw,
        format!(
            "alice:{}\nbob:{}\n",
            bcrypt::hash("wonderland", 4).unwrap(),
            bcrypt::hash("builder", 4).unwrap()
        ),
    )
    .unwrap();
    let opts = ServeOptions {
        htpasswd: Some(pw.clone()),
        anonymous_pull: true,
        push_users: vec!["alice".into()],
        ..ServeOptions::default()
    };
    let (addr, _store, _reqs, _stop) = start_server(&dir.path().join("s1"), opts).await;
    let base = format!("http://{addr}");
    let c = http();
    // Anonymous pull is allowed, push is not.
    let r = c.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{base}/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"strata\"");
    assert_eq!(code_of(r).await, "UNAUTHORIZED");
    // A wrong password is anonymous.
    let r = c
        .post(format!("{base}/v2/x/blobs/uploads/"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // bob may pull but not push; alice may push.
    let r = c
        .post(format!("{base}/v2/x/blobs/uploads/"))
        .basic_auth("bob", Some("builder"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(code_of(r).await, "DENIED");
    let r = c
        .post(format!("{base}/v2/x/blobs/uploads/"))
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Without anonymous pull, even the ping wants credentials.
    let opts = ServeOptions {
        htpasswd: Some(pw),
        read_only: true,
        ..ServeOptions::default()
    };
    let (addr, _store, _reqs, _stop2) = start_server(&dir.path().join("s2"), opts).await;
    let base = format!("http://{addr}");
    let r = c.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(format!("{base}/v2/"))
        .basic_auth("bob", Some("builder"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{base}/v2/x/blobs/uploads/"))
        .basic_auth("alice", Some("wonderland"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code_of(r).await, "UNSUPPORTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_push_the_same_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, _stop) = start_server(dir.path(), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let data = noise(30, 2 << 20);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let base = base.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            let c = http();
            upload(&c, &base, &format!("same/r{}", i % 3), &data).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Digest::sha256(&data));
    }
    assert_eq!(
        store.blob_size(&Digest::sha256(&data)).unwrap(),
        data.len() as u64
    );
    assert_eq!(
        std::fs::read_dir(store.root().join("ingest"))
            .unwrap()
            .count(),
        0
    );
    assert_verified(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_upload_keeps_partial_for_resume_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServeOptions {
        upload_ttl: Duration::from_millis(1500),
        ..ServeOptions::default()
    };
    let (addr, store, _reqs, _stop) = start_server(dir.path(), opts).await;
    let base = format!("http://{addr}");
    let c = http();
    let data = noise(40, 3 << 20);
    let d = Digest::sha256(&data);
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    // A body that breaks off after 1 MiB + 5 bytes.
    let first = data[..(1 << 20) + 5].to_vec();
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from(first)),
        Err(std::io::Error::other("client died")),
    ]);
    let res = c
        .patch(format!("{base}{loc}"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(res.is_err(), "the request should fail on the client side");
    // Nothing committed; the status tells where to resume.
    assert!(!store.has(&d));
    let mut offset = 0;
    for _ in 0..50 {
        let r = c.get(format!("{base}{loc}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let range = r.headers()["range"].to_str().unwrap().to_owned();
        offset = range.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
        if offset > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offset > 0 && offset <= (1 << 20) + 5, "offset {offset}");
    let r = c
        .patch(format!("{base}{loc}"))
        .header("content-range", format!("{offset}-{}", data.len() - 1))
        .body(data[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .put(format!("{base}{loc}"))
        .query(&[("digest", d.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(store.has(&d));

    // An upload left alone expires, its data removed.
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    c.patch(format!("{base}{loc}"))
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_dir(store.root().join("ingest"))
            .unwrap()
            .count(),
        1
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = c.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(code_of(r).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        std::fs::read_dir(store.root().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn registry_content_survives_prune() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, stop) = start_server(dir.path(), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = http();
    let (md, _) = push_manifest(&c, &base, "keep", "v1", 50).await;
    let stray = store.put_blob(b"not linked anywhere").unwrap();
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.gc(strata_oci::GcOptions::default()).unwrap();
    assert!(store.has(&md), "gc removed a manifest the registry serves");
    assert!(!store.has(&stray), "gc kept a blob nothing references");
    let m: Manifest = serde_json::from_slice(&store.read_blob(&md).unwrap()).unwrap();
    for l in m.layers {
        assert!(store.has(&l.digest));
    }
}

#[tokio::test]
async fn too_many_uploads_and_size_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServeOptions {
        max_uploads: 1,
        ..ServeOptions::default()
    };
    let (addr, _store, _reqs, _stop) = start_server(dir.path(), opts).await;
    let base = format!("http://{addr}");
    let c = http();
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(code_of(r).await, "TOOMANYREQUESTS");
    // A chunk whose Content-Range disagrees with its length.
    let r = c
        .patch(format!("{base}{loc}"))
        .header("content-range", "0-99")
        .body(vec![0u8; 50])
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "SIZE_INVALID");
    // Finishing frees the slot; the client's retry on 429 gets through.
    c.delete(format!("{base}{loc}")).send().await.unwrap();
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn manifests_and_indexes_by_sha512_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, _stop) = start_server(dir.path(), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = http();
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = noise(512, 3000);
    let cd = upload_as(&c, &base, "s", cfg, sha512(cfg)).await;
    let ld = upload_as(&c, &base, "s", &layer, sha512(&layer)).await;
    let m = Manifest::oci(
        Descriptor::new(media_type::OCI_CONFIG, cd, cfg.len() as u64),
        vec![Descriptor::new(media_type::OCI_LAYER_GZIP, ld, 3000)],
    )
    .to_json();
    let md = sha512(&m);
    let r = c
        .put(format!("{base}/v2/s/manifests/{md}"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(
        r.headers()["docker-content-digest"],
        md.to_string().as_str()
    );
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    for url in [
        format!("{base}{loc}"),
        format!("{base}/v2/s/manifests/{md}"),
    ] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert_eq!(r.headers()["content-type"], media_type::OCI_MANIFEST);
        assert_eq!(r.bytes().await.unwrap().to_vec(), m);
        let r = c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-length"], m.len().to_string().as_str());
    }
    // An index listing it by its sha512 digest, itself pushed by sha512.
    let idx = strata_oci::Index::oci(vec![Descriptor::new(
        media_type::OCI_MANIFEST,
        md.clone(),
        m.len() as u64,
    )]);
    let raw = serde_json::to_vec(&idx).unwrap();
    let xd = sha512(&raw);
    let r = c
        .put(format!("{base}/v2/s/manifests/{xd}"))
        .header("content-type", media_type::OCI_INDEX)
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = c
        .get(format!("{base}/v2/s/manifests/{xd}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), raw);
    // A body that does not hash to the sha512 it is pushed by.
    let r = c
        .put(format!("{base}/v2/s/manifests/{xd}"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, "DIGEST_INVALID");
    let r = c
        .delete(format!("{base}/v2/s/manifests/{md}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_verified(&store);
}

fn ingests(store: &strata_oci::Store) -> usize {
    std::fs::read_dir(store.root().join("ingest")).map_or(0, |d| d.count())
}

#[tokio::test]
async fn blob_size_limit_holds_on_every_upload_path() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServeOptions {
        max_blob_size: 10_000,
        ..ServeOptions::default()
    };
    let (addr, store, _reqs, _stop) = start_server(dir.path(), opts).await;
    let base = format!("http://{addr}");
    let c = http();
    let big = noise(9, 12_000);
    let d = Digest::sha256(&big);
    // Monolithic POST ?digest=, announced by Content-Length.
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .query(&[("digest", d.to_string())])
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code_of(r).await, "SIZE_INVALID");
    // Monolithic POST streamed without a length: cut off at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .query(&[("digest", d.to_string())])
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked: the chunk that crosses the limit cancels the upload.
    let r = c
        .post(format!("{base}/v2/a/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(format!("{base}{loc}"))
        .body(big[..6000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .patch(format!("{base}{loc}"))
        .body(big[6000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = c.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(
        code_of(r).await,
        "BLOB_UPLOAD_UNKNOWN",
        "the upload is gone"
    );
    assert!(!store.has(&d));
    assert_eq!(ingests(&store), 0, "no partial data is left");
    // At the limit is fine.
    let ok = upload(&c, &base, "a", &big[..10_000]).await;
    assert!(store.has(&ok));
    assert_verified(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_request_uploads_count_against_max_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServeOptions {
        max_uploads: 1,
        ..ServeOptions::default()
    };
    let (addr, store, _reqs, _stop) = start_server(dir.path(), opts).await;
    let base = format!("http://{addr}");
    let c = http();
    let data = noise(3, 5000);
    let d = Digest::sha256(&data);
    // A monolithic upload whose body is still arriving.
    let start_first =
        || {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|x| (x, rx))
            });
            let c = c.clone();
            let url = format!("{base}/v2/a/blobs/uploads/?digest={d}");
            let handle = tokio::spawn(async move {
                c.post(url)
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            (tx, handle)
        };
    let (mut tx, mut first) = start_first();
    tx.send(Ok(data[..100].to_vec())).await.unwrap();
    // Once the server counts it, a second upload is refused. (A probe
    // holds the one slot for a moment itself: if the first upload arrived
    // then, it was refused, and it is started again.)
    let mut refused = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if first.is_finished() {
            let status = first.await.unwrap();
            assert_eq!(
                status,
                StatusCode::TOO_MANY_REQUESTS,
                "the first upload ended"
            );
            (tx, first) = start_first();
            tx.send(Ok(data[..100].to_vec())).await.unwrap();
        }
        let r = c
            .post(format!("{base}/v2/b/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        c.delete(format!("{base}{loc}")).send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "a streaming POST ?digest= did not count as an upload"
    );
    tx.send(Ok(data[100..].to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(first.await.unwrap(), StatusCode::CREATED);
    assert!(store.has(&d));
    // Its slot is free again.
    let r = c
        .post(format!("{base}/v2/b/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn prune_collects_while_serving_and_spares_uploads_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, _reqs, _stop) = start_server(dir.path(), ServeOptions::default()).await;
    let base = format!("http://{addr}");
    let c = http();
    let (md, _) = push_manifest(&c, &base, "keep", "v1", 60).await;
    // Written after the server started, referenced by nothing.
    let stray = store.put_blob(b"nobody wants me").unwrap();
    // An upload in progress.
    let data = noise(61, 4000);
    let d = Digest::sha256(&data);
    let r = c
        .post(format!("{base}/v2/keep/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(format!("{base}{loc}"))
        .body(data[..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The server holds no lease between requests, so gc collects.
    let report = store.gc(strata_oci::GcOptions::default()).unwrap();
    assert!(
        !store.has(&stray),
        "gc kept an unreferenced blob while the server ran: {report:?}"
    );
    assert!(store.has(&md));
    let r = c
        .put(format!("{base}{loc}"))
        .query(&[("digest", d.to_string())])
        .body(data[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "the upload survived gc");
    store.gc(strata_oci::GcOptions::default()).unwrap();
    assert!(store.has(&d), "linked blobs are kept");
    assert_verified(&store);
}

#[tokio::test]
async fn failing_passwords_are_throttled_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    std::fs::write(
        &pw,
        format!("alice:{}\n", bcrypt::hash("wonderland", 4).unwrap()),
    )
    .unwrap();
    let opts = ServeOptions {
        htpasswd: Some(pw),
        max_auth_failures: 3,
        ..ServeOptions::default()
    };
    let (addr, _store, _reqs, _stop) = start_server(&dir.path().join("s"), opts).await;
    let base = format!("http://{addr}");
    let c = http();
    let get = |user: &'static str, pass: String| {
        c.get(format!("{base}/v2/"))
            .basic_auth(user, Some(pass))
            .send()
    };
    assert_eq!(
        get("alice", "wonderland".into()).await.unwrap().status(),
        StatusCode::OK
    );
    for i in 0..3 {
        // Unknown users and wrong passwords alike.
        let user = if i % 2 == 0 { "alice" } else { "nobody" };
        let r = get(user, format!("guess {i}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = get("alice", "guess 4".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(code_of(r).await, "TOOMANYREQUESTS");
    // A password already verified still works.
    assert_eq!(
        get("alice", "wonderland".into()).await.unwrap().status(),
        StatusCode::OK
    );
}
