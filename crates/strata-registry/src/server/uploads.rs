//! Blob uploads: monolithic, chunked and streamed, cross-repository
//! mounts, upload status and cancel, resume after a restart, and the
//! sweeper that expires idle sessions.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use strata_oci::{Digest, Store, Writer};

use super::blobs::parse_digest;
use super::errcode::{empty, err, err_status, internal, is_no_space, storage, Code};
use super::repo::valid_name;
use super::served::Served;
use super::{repo_lock, request_lease, AppState, BytesIn};

/// Upload bytes are written to disk in batches this big.
const BATCH: usize = 1 << 20;

pub(super) struct Upload {
    name: String,
    writer: Option<Writer>,
    last: Instant,
}

impl Upload {
    /// Answer a failed append: keep what arrived for a resume, or (too big,
    /// no space) drop the whole upload.
    async fn fail(&mut self, st: &AppState, id: &str, e: AppendError) -> Response {
        if e.cancel {
            if let Some(w) = e.writer {
                drop_upload(st, id, w).await;
            } else {
                forget_session(st, id);
            }
        } else {
            self.writer = e.writer;
        }
        e.response
    }
}

/// Why a body could not be appended to an upload.
pub(super) struct AppendError {
    writer: Option<Writer>,
    response: Response,
    /// The upload cannot go on: remove its data and session.
    cancel: bool,
}

/// Counts a single-request upload while it streams.
pub(super) struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(n: &'a AtomicUsize) -> InFlight<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn too_big(limit: u64) -> Response {
    err_status(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::SizeInvalid,
        format!("the blob exceeds this registry's limit of {limit} bytes; the upload is cancelled"),
    )
}

/// 413 when the request's Content-Length already takes the upload past
/// the blob size limit.
fn announced_too_big(st: &AppState, h: &HeaderMap, offset: u64) -> Option<Response> {
    let len: u64 = h
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (offset.saturating_add(len) > st.opts.max_blob_size).then(|| too_big(st.opts.max_blob_size))
}

/// Remove an upload's data and session.
async fn drop_upload(st: &AppState, id: &str, w: Writer) {
    let _ = tokio::task::spawn_blocking(move || w.abort()).await;
    forget_session(st, id);
}

/// Link a stored blob into the repository and update its root (the caller
/// holds the repository's lock).
fn link_blob(st: &AppState, name: &str, d: &Digest) -> std::result::Result<(), Response> {
    let store = st.repos.store();
    st.repos.link_blob(name, d).map_err(|e| storage(store, e))?;
    st.repos.sync_root(name).map_err(|e| storage(store, e))
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn new_upload_id() -> String {
    let mut buf = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok();
    if !ok {
        let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
        buf.copy_from_slice(&Digest::sha256(seed.as_bytes()).hex().as_bytes()[..16]);
    }
    let h = hex::encode(buf);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub(super) fn ingest_key(id: &str) -> String {
    format!("registry-upload-{id}")
}

pub(super) fn valid_upload_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-')
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct UploadRecord {
    name: String,
    started: u64,
}

/// Open a writer for an upload, waiting briefly for a previous request's
/// writer (still finishing a blocking write) to let go.
pub(super) async fn open_writer(store: &Store, id: &str) -> std::result::Result<Writer, Response> {
    for _ in 0..50 {
        match store.writer(&ingest_key(id), None) {
            Ok(w) => return Ok(w),
            Err(strata_oci::Error::Locked(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(internal(e)),
        }
    }
    Err(err(Code::TooManyRequests, "the upload is busy"))
}

pub(super) fn upload_headers(name: &str, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", format!("0-{}", offset.saturating_sub(1))),
        ("docker-upload-uuid", id.to_owned()),
    ]
}

pub(super) async fn start_upload(
    st: &AppState,
    name: &str,
    q: &HashMap<String, String>,
    h: &HeaderMap,
    body: Body,
    counter: BytesIn,
) -> Response {
    // Cross-repository mount.
    if let Some(m) = q.get("mount") {
        if let Ok(d) = m.parse::<Digest>() {
            let from = q.get("from").cloned().unwrap_or_default();
            // From a repository that links the blob or an image of the store
            // served under that name; on a store error, an upload instead.
            if valid_name(&from) && Served::new(&st.repos, &from).blob(&d).unwrap_or(false) {
                let _lease = match request_lease(st, "mount", &[&d]) {
                    Ok(l) => l,
                    Err(r) => return r,
                };
                let lock = repo_lock(st, name);
                let _g = lock.lock().await;
                if let Err(r) = link_blob(st, name, &d) {
                    return r;
                }
                return empty(
                    StatusCode::CREATED,
                    &[
                        ("location", format!("/v2/{name}/blobs/{d}")),
                        ("docker-content-digest", d.to_string()),
                    ],
                );
            }
        }
    }
    // Single-request upload: POST with ?digest= and the blob as body. It
    // counts against `max_uploads` while it streams.
    let monolithic = match q.get("digest") {
        Some(dg) => match parse_digest(dg) {
            Ok(d) => Some((d, InFlight::enter(&st.monolithic))),
            Err(r) => return r,
        },
        None => None,
    };
    let sessions = st.uploads.lock().unwrap_or_else(|p| p.into_inner()).len();
    let streaming = st.monolithic.load(Ordering::SeqCst) - usize::from(monolithic.is_some());
    if sessions + streaming >= st.opts.max_uploads {
        return err(Code::TooManyRequests, "too many uploads in progress");
    }
    if let Some(r) = announced_too_big(st, h, 0) {
        return r;
    }
    let id = new_upload_id();
    let store = st.repos.store();
    let writer = match open_writer(store, &id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Some((d, _in_flight)) = monolithic {
        let writer = match append_body(st, writer, body, None, &counter).await {
            Ok(w) => w,
            Err(e) => {
                if let Some(w) = e.writer {
                    let _ = tokio::task::spawn_blocking(move || w.abort()).await;
                }
                return e.response;
            }
        };
        return finish_upload(st, name, writer, &d, h).await;
    }
    let rec = UploadRecord {
        name: name.to_owned(),
        started: now_secs(),
    };
    let rec_path = st.repos.uploads_dir().join(format!("{id}.json"));
    if let Err(e) = std::fs::write(&rec_path, serde_json::to_vec(&rec).unwrap_or_default()) {
        let _ = writer.abort();
        return storage(store, e);
    }
    st.uploads.lock().unwrap_or_else(|p| p.into_inner()).insert(
        id.clone(),
        Arc::new(tokio::sync::Mutex::new(Upload {
            name: name.to_owned(),
            writer: Some(writer),
            last: Instant::now(),
        })),
    );
    empty(StatusCode::ACCEPTED, &upload_headers(name, &id, 0))
}

/// The session for `id` in repository `name` (from memory, or from its
/// record after a restart).
pub(super) fn session(
    st: &AppState,
    name: &str,
    id: &str,
) -> std::result::Result<Arc<tokio::sync::Mutex<Upload>>, Response> {
    let unknown = || {
        err(
            Code::BlobUploadUnknown,
            format!("upload {id} is not known in {name}"),
        )
    };
    if !valid_upload_id(id) {
        return Err(unknown());
    }
    let mut map = st.uploads.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = map.get(id) {
        return Ok(s.clone());
    }
    let rec_path = st.repos.uploads_dir().join(format!("{id}.json"));
    let rec: UploadRecord = std::fs::read(&rec_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(unknown)?;
    let s = Arc::new(tokio::sync::Mutex::new(Upload {
        name: rec.name,
        writer: None,
        last: Instant::now(),
    }));
    map.insert(id.to_owned(), s.clone());
    Ok(s)
}

pub(super) fn forget_session(st: &AppState, id: &str) {
    st.uploads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    let _ = std::fs::remove_file(st.repos.uploads_dir().join(format!("{id}.json")));
}

/// Append a request body to the writer, in blocking batches. A body that
/// breaks off leaves what arrived in the ingest (the client may resume).
pub(super) async fn append_body(
    st: &AppState,
    writer: Writer,
    body: Body,
    expect_len: Option<u64>,
    counter: &BytesIn,
) -> std::result::Result<Writer, AppendError> {
    let limit = st.opts.max_blob_size;
    let store = st.repos.store();
    let mut writer = writer;
    let base = writer.offset();
    let mut stream = body.into_data_stream();
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    let mut broken = None;
    loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                n += chunk.len() as u64;
                counter.0.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if base + n > limit {
                    return Err(AppendError {
                        writer: Some(writer),
                        response: too_big(limit),
                        cancel: true,
                    });
                }
                batch.extend_from_slice(&chunk);
                if batch.len() >= BATCH {
                    let b = std::mem::take(&mut batch);
                    writer = write_batch(store, writer, b).await?;
                }
            }
            Some(Err(e)) => {
                broken = Some(e.to_string());
                break;
            }
            None => break,
        }
    }
    if !batch.is_empty() {
        writer = write_batch(store, writer, batch).await?;
    }
    if let Some(e) = broken {
        return Err(AppendError {
            writer: Some(writer),
            response: err(Code::BlobUploadInvalid, format!("the body broke off: {e}")),
            cancel: false,
        });
    }
    if let Some(want) = expect_len {
        if want != n {
            return Err(AppendError {
                writer: Some(writer),
                response: err(
                    Code::SizeInvalid,
                    format!("Content-Range announced {want} bytes, the body had {n}"),
                ),
                cancel: false,
            });
        }
    }
    Ok(writer)
}

pub(super) async fn write_batch(
    store: &Store,
    writer: Writer,
    b: Vec<u8>,
) -> std::result::Result<Writer, AppendError> {
    let res = tokio::task::spawn_blocking(move || {
        let mut w = writer;
        match w.write_all(&b) {
            Ok(()) => Ok(w),
            Err(e) => {
                // A full disk: what the upload holds goes (nothing partial
                // stays behind, and the space is free again); the session
                // stays at offset 0, so a retry once space is freed works.
                if is_no_space(&e) {
                    let _ = w.reset();
                }
                Err((w, e))
            }
        }
    })
    .await;
    match res {
        Ok(Ok(w)) => Ok(w),
        Ok(Err((w, e))) => Err(AppendError {
            writer: Some(w),
            cancel: false,
            response: storage(store, e),
        }),
        Err(e) => Err(AppendError {
            writer: None,
            response: internal(e),
            cancel: false,
        }),
    }
}

/// Content-Range of a PATCH: `start-end` (inclusive), with or without `bytes `.
pub(super) fn parse_content_range(h: &HeaderMap) -> Option<std::result::Result<(u64, u64), ()>> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    Some(match v.split_once('-') {
        Some((a, b)) => match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Ok((a, b)),
            _ => Err(()),
        },
        None => Err(()),
    })
}

pub(super) async fn take_writer(
    st: &AppState,
    up: &mut Upload,
    id: &str,
) -> std::result::Result<Writer, Response> {
    match up.writer.take() {
        Some(w) => Ok(w),
        None => open_writer(st.repos.store(), id).await,
    }
}

pub(super) async fn patch_upload(
    st: &AppState,
    name: &str,
    id: &str,
    h: &HeaderMap,
    body: Body,
    counter: BytesIn,
) -> Response {
    let sess = match session(st, name, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut up = sess.lock().await;
    if up.name != name {
        return err(
            Code::BlobUploadUnknown,
            format!("upload {id} is not known in {name}"),
        );
    }
    up.last = Instant::now();
    let writer = match take_writer(st, &mut up, id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let offset = writer.offset();
    if let Some(r) = announced_too_big(st, h, offset) {
        drop_upload(st, id, writer).await;
        return r;
    }
    let expect = match parse_content_range(h) {
        None => None,
        Some(Err(())) => {
            up.writer = Some(writer);
            return err(Code::BlobUploadInvalid, "invalid Content-Range");
        }
        Some(Ok((a, b))) => {
            if a != offset {
                up.writer = Some(writer);
                let mut r = empty(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &upload_headers(name, id, offset),
                );
                *r.body_mut() = Body::from(format!(
                    "{{\"errors\":[{{\"code\":\"BLOB_UPLOAD_INVALID\",\"message\":\"the upload is at {offset}, the chunk starts at {a}\"}}]}}"
                ));
                r.headers_mut().remove(header::CONTENT_LENGTH);
                return r;
            }
            Some(b - a + 1)
        }
    };
    match append_body(st, writer, body, expect, &counter).await {
        Ok(w) => {
            let off = w.offset();
            up.writer = Some(w);
            up.last = Instant::now();
            empty(StatusCode::ACCEPTED, &upload_headers(name, id, off))
        }
        Err(e) => up.fail(st, id, e).await,
    }
}

pub(super) async fn put_upload(
    st: &AppState,
    name: &str,
    id: &str,
    q: &HashMap<String, String>,
    h: &HeaderMap,
    body: Body,
    counter: BytesIn,
) -> Response {
    let sess = match session(st, name, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut up = sess.lock().await;
    if up.name != name {
        return err(
            Code::BlobUploadUnknown,
            format!("upload {id} is not known in {name}"),
        );
    }
    let Some(dg) = q.get("digest") else {
        return err(
            Code::DigestInvalid,
            "the digest query parameter is required",
        );
    };
    let d = match parse_digest(dg) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let writer = match take_writer(st, &mut up, id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Some(r) = announced_too_big(st, h, writer.offset()) {
        drop_upload(st, id, writer).await;
        return r;
    }
    let expect = match parse_content_range(h) {
        Some(Ok((a, b))) if a == writer.offset() => Some(b - a + 1),
        Some(_) => {
            let off = writer.offset();
            up.writer = Some(writer);
            return empty(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &upload_headers(name, id, off),
            );
        }
        None => None,
    };
    let writer = match append_body(st, writer, body, expect, &counter).await {
        Ok(w) => w,
        Err(e) => return up.fail(st, id, e).await,
    };
    let r = finish_upload(st, name, writer, &d, h).await;
    forget_session(st, id);
    r
}

/// Verify and commit an upload, then link the blob in the repository. On a
/// digest mismatch nothing is stored.
pub(super) async fn finish_upload(
    st: &AppState,
    name: &str,
    writer: Writer,
    d: &Digest,
    _h: &HeaderMap,
) -> Response {
    let store = st.repos.store();
    // Held until the repository's root names the blob.
    let _lease = match request_lease(st, "upload", &[d]) {
        Ok(l) => l,
        Err(r) => {
            let _ = tokio::task::spawn_blocking(move || writer.abort()).await;
            return r;
        }
    };
    let expected = d.clone();
    let committed = tokio::task::spawn_blocking(move || writer.commit(None, Some(&expected))).await;
    match committed {
        Ok(Ok(_)) => {}
        Ok(Err(strata_oci::Error::DigestMismatch { actual, .. })) => {
            return err(
                Code::DigestInvalid,
                format!("the uploaded content hashes to {actual}, not {d}"),
            )
        }
        Ok(Err(e)) => return storage(store, e),
        Err(e) => return internal(e),
    }
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
    if let Err(r) = link_blob(st, name, d) {
        return r;
    }
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
        ],
    )
}

pub(super) async fn upload_status(st: &AppState, name: &str, id: &str) -> Response {
    let sess = match session(st, name, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut up = sess.lock().await;
    if up.name != name {
        return err(
            Code::BlobUploadUnknown,
            format!("upload {id} is not known in {name}"),
        );
    }
    let w = match take_writer(st, &mut up, id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let off = w.offset();
    up.writer = Some(w);
    empty(StatusCode::NO_CONTENT, &upload_headers(name, id, off))
}

pub(super) async fn cancel_upload(st: &AppState, name: &str, id: &str) -> Response {
    let sess = match session(st, name, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut up = sess.lock().await;
    if up.name != name {
        return err(
            Code::BlobUploadUnknown,
            format!("upload {id} is not known in {name}"),
        );
    }
    let w = match take_writer(st, &mut up, id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let _ = tokio::task::spawn_blocking(move || w.abort()).await;
    forget_session(st, id);
    empty(StatusCode::NO_CONTENT, &[])
}

/// Cancel upload sessions idle longer than the TTL (in memory and, after a
/// restart, on disk), removing their data.
pub(super) fn expire_uploads(state: Arc<AppState>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let ttl = state.opts.upload_ttl;
        let period = (ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        loop {
            tokio::time::sleep(period).await;
            let sessions: Vec<(String, Arc<tokio::sync::Mutex<Upload>>)> = state
                .uploads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (id, s) in sessions {
                let Ok(mut up) = s.try_lock() else { continue };
                if up.last.elapsed() < ttl {
                    continue;
                }
                let w = match up.writer.take() {
                    Some(w) => Some(w),
                    None => state.repos.store().writer(&ingest_key(&id), None).ok(),
                };
                if let Some(w) = w {
                    let _ = tokio::task::spawn_blocking(move || w.abort()).await;
                }
                tracing::info!(upload = %id, repository = %up.name, "upload expired");
                forget_session(&state, &id);
            }
            // Records left by an earlier run.
            let dir = state.repos.uploads_dir();
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let Some(id) = fname.strip_suffix(".json") else {
                    continue;
                };
                if state
                    .uploads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(id)
                {
                    continue;
                }
                let old = e
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= ttl);
                if old {
                    if let Ok(w) = state.repos.store().writer(&ingest_key(id), None) {
                        let _ = w.abort();
                    }
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    })
}
