//! Manifests and indexes: resolve by tag or digest, get/head, put (with
//! every reference checked), delete, and the referrers of a subject.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use strata_oci::{media_type, Descriptor, Digest, Hasher, Index, Manifest};

use super::blobs::parse_digest;
use super::errcode::{empty, err, err_status, internal, json_response, storage, Code};
use super::repo::valid_tag;
use super::served::Served;
use super::{repo_lock, request_lease, AppState, BytesIn};

/// Largest manifest accepted (the spec asks registries to take at least 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;

/// Resolve a tag or digest to a manifest served under `name` (linked in
/// the repository, or an image of a store tag): (digest, media type).
pub(super) fn resolve_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
) -> std::result::Result<(Digest, String), Response> {
    let store = st.repos.store();
    let mut served = Served::new(&st.repos, name);
    let unknown_name = |served: &mut Served| match served.exists() {
        Ok(false) => Err(err(
            Code::NameUnknown,
            format!("repository {name} is not known"),
        )),
        Ok(true) => Ok(()),
        Err(e) => Err(storage(store, e)),
    };
    if let Ok(d) = reference.parse::<Digest>() {
        return match served.manifest(&d) {
            Ok(Some(mt)) => Ok((d, mt)),
            Ok(None) => {
                unknown_name(&mut served)?;
                Err(err(
                    Code::ManifestUnknown,
                    format!("manifest {d} is not in {name}"),
                ))
            }
            Err(e) => Err(storage(store, e)),
        };
    }
    if reference.contains(':') {
        return Err(err(
            Code::DigestInvalid,
            format!("invalid digest {reference:?}"),
        ));
    }
    if !valid_tag(reference) {
        return Err(err(
            Code::ManifestInvalid,
            format!("invalid tag {reference:?}"),
        ));
    }
    let desc = match served.tag(reference) {
        Ok(Some(d)) => d,
        Ok(None) => {
            unknown_name(&mut served)?;
            return Err(err(
                Code::ManifestUnknown,
                format!("tag {reference} is not in {name}"),
            ));
        }
        Err(e) => return Err(storage(store, e)),
    };
    match served.manifest(&desc.digest) {
        Ok(Some(mt)) => Ok((desc.digest, mt)),
        Ok(None) => Err(err(
            Code::ManifestUnknown,
            format!("tag {reference} of {name} points at a missing manifest"),
        )),
        Err(e) => Err(storage(store, e)),
    }
}

/// Whether the client's Accept header allows `mt`. No header, `*/*`, or a
/// header that names no manifest type at all accept anything.
pub(super) fn accepts(headers: &HeaderMap, mt: &str) -> bool {
    let mut any_manifest_type = false;
    for v in headers.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t == mt || t == "*/*" || t == "application/*" {
                return true;
            }
            if media_type::is_manifest(t) || media_type::is_index(t) {
                any_manifest_type = true;
            }
        }
    }
    !any_manifest_type
}

pub(super) fn get_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
    h: &HeaderMap,
    body: bool,
) -> Response {
    let (d, mt) = match resolve_manifest(st, name, reference) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !accepts(h, &mt) {
        return err(
            Code::ManifestUnknown,
            format!("manifest {reference} is a {mt}, which the Accept header does not list"),
        );
    }
    let raw = match st.repos.store().read_blob(&d) {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let mut r = empty(
        StatusCode::OK,
        &[
            ("content-type", mt),
            ("docker-content-digest", d.to_string()),
            ("etag", format!("\"{d}\"")),
            ("content-length", raw.len().to_string()),
        ],
    );
    if body {
        *r.body_mut() = Body::from(raw);
    }
    r
}

pub(super) async fn read_small_body(
    body: Body,
    limit: usize,
    counter: &BytesIn,
) -> std::result::Result<Vec<u8>, Response> {
    let mut out = Vec::new();
    let mut s = body.into_data_stream();
    while let Some(chunk) = s.next().await {
        let chunk =
            chunk.map_err(|e| err(Code::ManifestInvalid, format!("reading the body: {e}")))?;
        counter.0.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        out.extend_from_slice(&chunk);
        if out.len() > limit {
            return Err(err_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::SizeInvalid,
                format!("manifest larger than {limit} bytes"),
            ));
        }
    }
    Ok(out)
}

pub(super) async fn put_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
    h: &HeaderMap,
    body: Body,
    counter: BytesIn,
) -> Response {
    let by_digest = reference.parse::<Digest>().ok();
    if by_digest.is_none() {
        if reference.contains(':') {
            return err(Code::DigestInvalid, format!("invalid digest {reference:?}"));
        }
        if !valid_tag(reference) {
            return err(Code::ManifestInvalid, format!("invalid tag {reference:?}"));
        }
    }
    let raw = match read_small_body(body, MAX_MANIFEST, &counter).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let value: serde_json::Value = match serde_json::from_slice(&raw) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return err(Code::ManifestInvalid, "manifest is not a JSON object"),
        Err(e) => {
            return err(
                Code::ManifestInvalid,
                format!("manifest is not valid JSON: {e}"),
            )
        }
    };
    let content_type = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let body_type = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    if let Some(bt) = &body_type {
        if !content_type.is_empty() && bt != &content_type && content_type != "application/json" {
            return err(
                Code::ManifestInvalid,
                format!("mediaType {bt} does not match Content-Type {content_type}"),
            );
        }
    }
    let mt = body_type
        .or_else(|| {
            (!content_type.is_empty() && content_type != "application/json")
                .then(|| content_type.clone())
        })
        .or_else(|| strata_oci::sniff_media_type(&raw))
        .unwrap_or_default();
    let is_index = media_type::is_index(&mt)
        || (value.get("manifests").is_some() && value.get("layers").is_none());
    let digest = match &by_digest {
        Some(want) => {
            let mut hs = Hasher::new(want.algorithm());
            hs.update(&raw);
            let got = hs.finish();
            if &got != want {
                return err(
                    Code::DigestInvalid,
                    format!("manifest content hashes to {got}, not {want}"),
                );
            }
            got
        }
        None => Digest::sha256(&raw),
    };
    // Held until the repository's root names the manifest.
    let _lease = match request_lease(st, "manifest", &[&digest]) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
    let store = st.repos.store();
    let mut served = Served::new(&st.repos, name);
    // What the manifest references that only the store's tags provide:
    // linked into the repository with the manifest.
    let mut link_manifests: Vec<(Digest, String)> = Vec::new();
    let mut link_blobs: Vec<Digest> = Vec::new();
    let subject: Option<Descriptor>;
    let mut artifact_type: Option<String> = value
        .get("artifactType")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let annotations = value
        .get("annotations")
        .and_then(|a| {
            serde_json::from_value::<std::collections::BTreeMap<String, String>>(a.clone()).ok()
        })
        .unwrap_or_default();
    if is_index {
        let idx: Index = match serde_json::from_slice(&raw) {
            Ok(i) => i,
            Err(e) => return err(Code::ManifestInvalid, format!("invalid index: {e}")),
        };
        for m in &idx.manifests {
            if st.repos.manifest_type(name, &m.digest).is_some() {
                continue;
            }
            match served.manifest(&m.digest) {
                Ok(Some(mt)) => link_manifests.push((m.digest.clone(), mt)),
                Ok(None) => {
                    return err(
                        Code::ManifestBlobUnknown,
                        format!("index lists manifest {} which is not in {name}", m.digest),
                    )
                }
                Err(e) => return storage(store, e),
            }
        }
        subject = idx.subject.clone();
    } else {
        let m: Manifest = match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(e) => return err(Code::ManifestInvalid, format!("invalid manifest: {e}")),
        };
        if m.schema_version != 2 {
            return err(
                Code::ManifestInvalid,
                "only schemaVersion 2 manifests are supported",
            );
        }
        for d in std::iter::once(&m.config).chain(m.layers.iter()) {
            if !d.urls.is_empty() {
                continue; // foreign layer
            }
            if !st.repos.has_blob(name, &d.digest) {
                match served.store_blob(&d.digest) {
                    Ok(true) => link_blobs.push(d.digest.clone()),
                    Ok(false) => {
                        return err(
                            Code::ManifestBlobUnknown,
                            format!(
                                "manifest references blob {} which is not in {name}",
                                d.digest
                            ),
                        )
                    }
                    Err(e) => return storage(store, e),
                }
            }
            match store.blob_size(&d.digest) {
                Ok(s) if s == d.size => {}
                Ok(s) => {
                    return err(
                        Code::ManifestInvalid,
                        format!(
                            "descriptor of {} says {} bytes, the blob has {s}",
                            d.digest, d.size
                        ),
                    )
                }
                Err(e) => return internal(e),
            }
        }
        if artifact_type.is_none() && m.subject.is_some() {
            artifact_type = Some(m.config.media_type.clone());
        }
        subject = m.subject.clone();
    }
    // Stored under the digest it was pushed by (sha256 or sha512), so a GET
    // by that digest finds it.
    let stored = Descriptor::new(mt.clone(), digest.clone(), raw.len() as u64);
    if let Err(e) = store.put_reader(&raw[..], Some(&stored)) {
        return storage(store, e);
    }
    for d in &link_blobs {
        if let Err(e) = st.repos.link_blob(name, d) {
            return storage(store, e);
        }
    }
    for (d, mt) in &link_manifests {
        if let Err(e) = st.repos.link_manifest(name, d, mt) {
            return storage(store, e);
        }
    }
    if let Err(e) = st.repos.link_manifest(name, &digest, &mt) {
        return storage(store, e);
    }
    let desc = {
        let mut d = Descriptor::new(mt.clone(), digest.clone(), raw.len() as u64);
        d.artifact_type = artifact_type;
        d.annotations = annotations;
        d
    };
    if by_digest.is_none() {
        if let Err(e) = served.set_tag(reference, &stored) {
            return storage(store, e);
        }
    }
    if let Some(s) = &subject {
        if let Err(e) = st.repos.add_referrer(name, &s.digest, &desc) {
            return storage(store, e);
        }
        // The store lists it too (`strata inspect --referrers` on the
        // server's store), and keeps it while the subject lives.
        if let Err(e) = store.add_referrer(&s.digest, &desc) {
            return storage(store, e);
        }
    }
    if let Err(e) = st.repos.sync_root(name) {
        return storage(store, e);
    }
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
    ];
    if let Some(s) = subject {
        headers.push(("oci-subject", s.digest.to_string()));
    }
    empty(StatusCode::CREATED, &headers)
}

pub(super) async fn delete_manifest(st: &AppState, name: &str, reference: &str) -> Response {
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
    let store = st.repos.store();
    let mut served = Served::new(&st.repos, name);
    match reference.parse::<Digest>() {
        Ok(d) => {
            let linked = st.repos.manifest_type(name, &d).is_some();
            if linked {
                // Drop its referrer record, if it had a subject.
                if let Ok(raw) = store.read_blob(&d) {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) {
                        if let Some(s) = v
                            .get("subject")
                            .and_then(|s| serde_json::from_value::<Descriptor>(s.clone()).ok())
                        {
                            let _ = st.repos.remove_referrer(name, &s.digest, &d);
                            // And the store's record put_manifest made.
                            let _ = store.remove_referrer(&s.digest, &d);
                        }
                    }
                }
                if let Err(e) = st.repos.unlink_manifest(name, &d) {
                    return internal(e);
                }
            }
            let untagged = match served.remove_store_tags_of(&d) {
                Ok(n) => n,
                Err(e) => return storage(store, e),
            };
            if !linked && untagged == 0 {
                return match served.store_manifest(&d) {
                    Ok(true) => err(
                        Code::Unsupported,
                        format!(
                            "manifest {d} is part of an index the store tags in {name}: \
                             delete that index or its tag"
                        ),
                    ),
                    Ok(false) => err(
                        Code::ManifestUnknown,
                        format!("manifest {d} is not in {name}"),
                    ),
                    Err(e) => storage(store, e),
                };
            }
        }
        Err(_) => {
            if !valid_tag(reference) {
                return err(Code::ManifestInvalid, format!("invalid tag {reference:?}"));
            }
            match served.remove_tag(reference) {
                Ok(true) => {}
                Ok(false) => {
                    return err(
                        Code::ManifestUnknown,
                        format!("tag {reference} is not in {name}"),
                    )
                }
                Err(e) => return storage(store, e),
            }
        }
    }
    if let Err(e) = st.repos.sync_root(name) {
        return internal(e);
    }
    empty(StatusCode::ACCEPTED, &[])
}

pub(super) fn referrers(
    st: &AppState,
    name: &str,
    digest: &str,
    q: &HashMap<String, String>,
) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut list = match st.repos.referrers(name, &d) {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    // The store's referrers of a manifest served through a store tag (an
    // image built with an SBOM, served without a push).
    let mut served = Served::new(&st.repos, name);
    match served.store_manifest(&d) {
        Ok(true) => match st.repos.store().referrers(&d, None) {
            Ok(more) => {
                for r in more {
                    if !list.iter().any(|x| x.digest == r.digest) {
                        list.push(r);
                    }
                }
            }
            Err(e) => return storage(st.repos.store(), e),
        },
        Ok(false) => {}
        Err(e) => return storage(st.repos.store(), e),
    }
    let filter = q.get("artifactType").filter(|a| !a.is_empty());
    if let Some(a) = filter {
        list.retain(|r| r.artifact_type.as_deref() == Some(a.as_str()));
    }
    let idx = Index::oci(list);
    let mut r = json_response(
        serde_json::to_value(&idx).unwrap_or_default(),
        None,
        media_type::OCI_INDEX,
    );
    if filter.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    r
}
