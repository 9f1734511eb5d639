//! The client against misbehaving registries (a small fake in axum): it
//! retries what is worth retrying, resumes broken downloads, and fails
//! clearly on lies, leaving the store as it was. Also the Bearer token flow
//! through a token-checking proxy in front of `strata serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use futures_util::StreamExt;
use strata_oci::{media_type, Digest, Reference, Store};
use strata_registry::{Client, ClientOptions, Error, Event, Progress, ServeOptions};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// 429 (Retry-After: 0), then 500 on manifests; 503 on the first blob GET.
    Flaky,
    /// The layer is served with 10 bytes more than its descriptor says.
    SizeLieHeader,
    /// Same, streamed without Content-Length.
    SizeLieStream,
    /// The manifest is not JSON.
    InvalidJson,
    /// The layer's bytes are different (same size).
    WrongDigest,
    /// Docker-Content-Digest of the manifest is wrong.
    WrongManifestHeader,
    /// The first layer GET breaks off halfway.
    DropMidBlob,
    /// Manifests answer with this status.
    Status(u16),
}

struct Fake {
    fault: Fault,
    manifest: Vec<u8>,
    blobs: HashMap<String, Vec<u8>>,
    layer: String,
    hits: AtomicUsize,
    blob_hits: AtomicUsize,
    ranges: Mutex<Vec<String>>,
}

async fn fake(State(f): State<Arc<Fake>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/v2/" {
        return StatusCode::OK.into_response();
    }
    if path.contains("/manifests/") {
        let n = f.hits.fetch_add(1, Ordering::SeqCst);
        match f.fault {
            Fault::Flaky if n == 0 || n == 1 => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "0")],
                    "slow down",
                )
                    .into_response()
            }
            Fault::Flaky if n == 2 => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response()
            }
            Fault::Status(s) => {
                let body = r#"{"errors":[{"code":"X","message":"told you so"}]}"#;
                let mut r = (StatusCode::from_u16(s).unwrap(), body).into_response();
                if s == 401 {
                    r.headers_mut().insert(
                        "www-authenticate",
                        HeaderValue::from_static("Basic realm=\"fake\""),
                    );
                }
                return r;
            }
            _ => {}
        }
        let body = if f.fault == Fault::InvalidJson {
            b"{\"schemaVersion\": 2, oops".to_vec()
        } else {
            f.manifest.clone()
        };
        let digest = if f.fault == Fault::WrongManifestHeader {
            Digest::sha256(b"lie").to_string()
        } else {
            Digest::sha256(&body).to_string()
        };
        return (
            [
                ("content-type", media_type::OCI_MANIFEST.to_owned()),
                ("docker-content-digest", digest),
            ],
            body,
        )
            .into_response();
    }
    if let Some(d) = path.split("/blobs/").nth(1) {
        let Some(data) = f.blobs.get(d) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let is_layer = *d == f.layer;
        if let Some(r) = req.headers().get("range") {
            f.ranges
                .lock()
                .unwrap()
                .push(r.to_str().unwrap().to_owned());
        }
        if is_layer {
            let n = f.blob_hits.fetch_add(1, Ordering::SeqCst);
            match f.fault {
                Fault::Flaky if n == 0 => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
                Fault::SizeLieHeader => {
                    let mut more = data.clone();
                    more.extend_from_slice(&[0u8; 10]);
                    return more.into_response();
                }
                Fault::SizeLieStream => {
                    let mut more = data.clone();
                    more.extend_from_slice(&[0u8; 10]);
                    let s = futures_util::stream::iter(
                        more.chunks(1000)
                            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                            .collect::<Vec<_>>(),
                    );
                    return Body::from_stream(s).into_response();
                }
                Fault::WrongDigest => {
                    let mut other = data.clone();
                    other[0] ^= 0xff;
                    return other.into_response();
                }
                Fault::DropMidBlob if n == 0 => {
                    let half = data[..data.len() / 2].to_vec();
                    let s = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
                        bytes::Bytes::from(half),
                    )])
                    .chain(futures_util::stream::once(async {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        Err(std::io::Error::other("connection reset"))
                    }));
                    let mut r = Body::from_stream(s).into_response();
                    r.headers_mut()
                        .insert("content-length", HeaderValue::from(data.len()));
                    return r;
                }
                _ => {}
            }
        }
        if let Some(r) = req.headers().get("range").and_then(|v| v.to_str().ok()) {
            let start: usize = r
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap();
            return (
                StatusCode::PARTIAL_CONTENT,
                [(
                    "content-range",
                    format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
                )],
                data[start..].to_vec(),
            )
                .into_response();
        }
        return data.clone().into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// A fake registry serving one image (config + one 200 kB layer).
async fn start_fake(fault: Fault) -> (String, Arc<Fake>) {
    let dir = tempfile::tempdir().unwrap();
    let src = Store::open(dir.path()).unwrap();
    let desc = make_image(&src, "x:1", &[("f", noise(7, 200_000))]);
    let img = src.image(&desc, None).unwrap();
    let mut blobs = HashMap::new();
    blobs.insert(
        img.manifest.config.digest.to_string(),
        img.config_raw.clone(),
    );
    let layer = img.layers[0].descriptor.digest.to_string();
    blobs.insert(
        layer.clone(),
        std::fs::read(src.blob_path(&img.layers[0].descriptor.digest)).unwrap(),
    );
    let f = Arc::new(Fake {
        fault,
        manifest: img.manifest_raw.clone(),
        blobs,
        layer,
        hits: AtomicUsize::new(0),
        blob_hits: AtomicUsize::new(0),
        ranges: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new().fallback(fake).with_state(f.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, f)
}

#[derive(Default)]
struct Retries(AtomicUsize);
impl Progress for Retries {
    fn event(&self, e: &Event) {
        if matches!(e, Event::Retry { .. }) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn quick_client(progress: Arc<dyn Progress>) -> Client {
    Client::new(ClientOptions {
        retry_delay: std::time::Duration::from_millis(10),
        progress,
        ..ClientOptions::default()
    })
    .unwrap()
}

/// Pull from a fake with `fault`: the result, the store, and the fake.
async fn pull_from(
    fault: Fault,
) -> (
    Result<strata_registry::PullSummary, Error>,
    Store,
    Arc<Fake>,
    usize,
    tempfile::TempDir,
) {
    let (addr, f) = start_fake(fault).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let retries = Arc::new(Retries::default());
    let client = quick_client(retries.clone());
    let r: Reference = format!("{addr}/app:1").parse().unwrap();
    let res = client.pull(&store, &r).await;
    (res, store, f, retries.0.load(Ordering::SeqCst), dir)
}

/// Nothing was committed: no tag, no layer, a clean verify.
fn assert_untouched(store: &Store, f: &Fake) {
    assert!(store.list_tags().unwrap().is_empty(), "a tag was set");
    assert!(
        !store.has(&f.layer.parse().unwrap()),
        "the layer was stored"
    );
    assert_verified(store);
}

#[tokio::test]
async fn retries_429_and_5xx_then_succeeds() {
    let (res, store, f, retries, _d) = pull_from(Fault::Flaky).await;
    let s = res.unwrap();
    assert_eq!(s.downloaded, 2);
    assert_eq!(retries, 4, "two 429s, one 500, one 503");
    assert!(store.has(&f.layer.parse().unwrap()));
    assert_verified(&store);
}

#[tokio::test]
async fn dropped_download_resumes_with_range() {
    let (res, store, f, retries, _d) = pull_from(Fault::DropMidBlob).await;
    res.unwrap();
    assert!(retries >= 1);
    let ranges = f.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    assert!(
        ranges[0].starts_with("bytes=") && ranges[0] != "bytes=0-",
        "{ranges:?}"
    );
    assert_verified(&store);
}

#[tokio::test]
async fn size_lies_are_refused() {
    for fault in [Fault::SizeLieHeader, Fault::SizeLieStream] {
        let (res, store, f, _, _d) = pull_from(fault).await;
        let e = res.unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "{fault:?}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&f.layer) && msg.contains("descriptor says"),
            "{msg}"
        );
        assert_untouched(&store, &f);
    }
}

#[tokio::test]
async fn wrong_digests_are_refused() {
    let (res, store, f, _, _d) = pull_from(Fault::WrongDigest).await;
    let e = res.unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&f.layer), "{e}");
    assert_untouched(&store, &f);
    // The bad bytes are gone (an unrelated blob's partial download may stay
    // behind for a later resume).
    let ingest = Digest::sha256(format!("pull-{}", f.layer).as_bytes());
    assert!(!store.root().join("ingest").join(ingest.hex()).exists());

    let (res, store, f, _, _d) = pull_from(Fault::WrongManifestHeader).await;
    let e = res.unwrap_err();
    assert!(e.to_string().contains("Docker-Content-Digest"), "{e}");
    assert_untouched(&store, &f);
}

#[tokio::test]
async fn invalid_json_manifest_is_refused() {
    let (res, store, f, _, _d) = pull_from(Fault::InvalidJson).await;
    let e = res.unwrap_err();
    assert!(matches!(e, Error::InvalidManifest { .. }), "{e}");
    assert!(
        e.to_string().contains("not valid JSON") && e.to_string().contains("app"),
        "{e}"
    );
    assert_untouched(&store, &f);
}

#[tokio::test]
async fn auth_and_missing_errors_name_registry_repository_and_request() {
    for (status, want) in [
        (401, "authentication required"),
        (403, "denied"),
        (404, "has no manifest 1"),
    ] {
        let (res, store, f, retries, _d) = pull_from(Fault::Status(status)).await;
        let e = res.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(want) && msg.contains("127.0.0.1:") && msg.contains("repository app"),
            "{status}: {msg}"
        );
        assert!(msg.contains("told you so"), "the registry's message: {msg}");
        assert_eq!(retries, 0, "{status} is not retried");
        assert_untouched(&store, &f);
    }
}

// ---- Bearer tokens -------------------------------------------------------

struct Proxy {
    /// Check Bearer tokens (else forward everything).
    tokens: bool,
    /// PATCHes after this many get 503.
    fail_patch_after: AtomicUsize,
    patches: AtomicUsize,
    patch_bytes: AtomicUsize,
    status_gets: AtomicUsize,
    upstream: String,
    me: Mutex<String>,
    token_requests: Mutex<Vec<Vec<String>>>,
    http: reqwest::Client,
}

fn repo_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    for marker in ["/blobs/", "/manifests/", "/tags/"] {
        if let Some(i) = rest.find(marker) {
            return Some(rest[..i].to_owned());
        }
    }
    None
}

async fn proxy(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/token" {
        let q = req.uri().query().unwrap_or("").to_owned();
        let scopes: Vec<String> = q
            .split('&')
            .filter_map(|kv| kv.strip_prefix("scope="))
            .map(|s| {
                s.replace("%3A", ":")
                    .replace("%2C", ",")
                    .replace("%2F", "/")
            })
            .collect();
        p.token_requests.lock().unwrap().push(scopes.clone());
        let body =
            serde_json::json!({"token": format!("tok {}", scopes.join(" ")), "expires_in": 300});
        return axum::Json(body).into_response();
    }
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let challenge = |scope: String| {
        let me = p.me.lock().unwrap().clone();
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_str(&format!(
                "Bearer realm=\"http://{me}/token\",service=\"fake\",scope=\"{scope}\""
            ))
            .unwrap(),
        );
        r
    };
    if req.method() == "PATCH" {
        let n = p.patches.fetch_add(1, Ordering::SeqCst);
        if n >= p.fail_patch_after.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let len: usize = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        p.patch_bytes.fetch_add(len, Ordering::SeqCst);
    }
    if req.method() == "GET" && path.contains("/blobs/uploads/") {
        p.status_gets.fetch_add(1, Ordering::SeqCst);
    }
    if !p.tokens {
        // no auth
    } else if let Some(repo) = repo_of(&path) {
        let write = req.method() != "GET" && req.method() != "HEAD";
        let need = format!(
            "repository:{repo}:{}",
            if write { "pull,push" } else { "pull" }
        );
        if !token
            .split(' ')
            .any(|s| s == need || (s.starts_with(&format!("repository:{repo}:")) && !write))
        {
            return challenge(need);
        }
        if let Some(from) = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("from=")))
        {
            let need_from = format!("repository:{}:pull", from.replace("%2F", "/"));
            if !token.split(' ').any(|s| s == need_from) {
                return challenge(need_from);
            }
        }
    } else if token.is_empty() {
        return challenge(String::new());
    }
    // Forward.
    let url = format!(
        "{}{}",
        p.upstream,
        req.uri()
            .path_and_query()
            .map(|x| x.as_str())
            .unwrap_or("/")
    );
    let method = req.method().clone();
    let mut rb = p.http.request(method, url);
    for h in [
        "content-type",
        "content-length",
        "content-range",
        "range",
        "accept",
    ] {
        if let Some(v) = req.headers().get(h) {
            rb = rb.header(h, v.clone());
        }
    }
    let body = req
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other));
    let resp = rb
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        out = out.header(k.as_str(), v.as_bytes());
    }
    out.body(Body::from_stream(resp.bytes_stream())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_per_scope_cached_and_mount_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _s, _reqs, _stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let p = Arc::new(Proxy {
        tokens: true,
        fail_patch_after: AtomicUsize::new(usize::MAX),
        patches: AtomicUsize::new(0),
        patch_bytes: AtomicUsize::new(0),
        status_gets: AtomicUsize::new(0),
        upstream: format!("http://{upstream}"),
        me: Mutex::new(String::new()),
        token_requests: Mutex::new(Vec::new()),
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new().fallback(proxy).with_state(p.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    *p.me.lock().unwrap() = addr.clone();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let store = Store::open(dir.path().join("local")).unwrap();
    make_image(
        &store,
        "b:1",
        &[("a", noise(1, 5000)), ("b", noise(2, 5000))],
    );
    let client = Client::new(ClientOptions::default()).unwrap();
    let s = client
        .push(
            &store,
            "b:1",
            &format!("{addr}/team/one:1").parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(s.uploaded, 3);
    let s = client
        .push(
            &store,
            "b:1",
            &format!("{addr}/team/two:1").parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(s.mounted, 3);
    let fresh = Store::open(dir.path().join("fresh")).unwrap();
    client
        .pull(&fresh, &format!("{addr}/team/two:1").parse().unwrap())
        .await
        .unwrap();
    let reqs = p.token_requests.lock().unwrap().clone();
    assert_eq!(
        reqs,
        vec![
            vec!["repository:team/one:pull,push".to_owned()],
            vec!["repository:team/two:pull,push".to_owned()],
            vec![
                "repository:team/two:pull,push".to_owned(),
                "repository:team/one:pull".to_owned()
            ],
            vec!["repository:team/two:pull".to_owned()],
        ],
        "one token per scope set, reused for every request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_upload_resumes_on_the_next_push() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, server_store, _reqs, _stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let p = Arc::new(Proxy {
        tokens: false,
        fail_patch_after: AtomicUsize::new(2),
        patches: AtomicUsize::new(0),
        patch_bytes: AtomicUsize::new(0),
        status_gets: AtomicUsize::new(0),
        upstream: format!("http://{upstream}"),
        me: Mutex::new(String::new()),
        token_requests: Mutex::new(Vec::new()),
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new().fallback(proxy).with_state(p.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let store = Store::open(dir.path().join("local")).unwrap();
    let desc = make_image(&store, "r:1", &[("big", noise(11, 1 << 20))]);
    let layer = store.image(&desc, None).unwrap().layers[0]
        .descriptor
        .clone();
    let client = Client::new(ClientOptions {
        monolithic_max: 1000,
        chunk_size: 200_000,
        retries: 1,
        retry_delay: std::time::Duration::from_millis(5),
        jobs: 1,
        ..ClientOptions::default()
    })
    .unwrap();
    let dest: Reference = format!("{addr}/resume:1").parse().unwrap();
    let e = client.push(&store, "r:1", &dest).await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    assert!(!server_store.has(&layer.digest));
    let sent_first = p.patch_bytes.load(Ordering::SeqCst);
    assert_eq!(sent_first, 400_000, "two chunks made it");

    // The registry is healthy again: the next push continues the upload.
    p.fail_patch_after.store(usize::MAX, Ordering::SeqCst);
    p.patch_bytes.store(0, Ordering::SeqCst);
    let s = client.push(&store, "r:1", &dest).await.unwrap();
    assert_eq!(
        (s.uploaded, s.skipped),
        (1, 1),
        "the config made it the first time"
    );
    assert!(
        p.status_gets.load(Ordering::SeqCst) >= 1,
        "upload status was asked"
    );
    let sent_second = p.patch_bytes.load(Ordering::SeqCst) as u64;
    assert_eq!(sent_second, layer.size - 400_000, "only the rest was sent");
    assert!(server_store.has(&layer.digest));
    assert_verified(&server_store);
}

// ---- a fault-injecting proxy in front of real registries -------------------

use common::fault_proxy::{FaultProxy, Inject, Rule};
use std::time::Duration;

/// The registries to put the proxy in front of: `strata serve` (with its
/// store) and, where installed, Debian's `docker-registry`.
struct Upstream {
    name: &'static str,
    addr: String,
    store: Option<Store>,
    _guard: Box<dyn std::any::Any>,
}

async fn upstreams(dir: &std::path::Path) -> Vec<Upstream> {
    let (addr, store, _reqs, stop) =
        start_server(&dir.join("strata-serve"), ServeOptions::default()).await;
    let mut out = vec![Upstream {
        name: "strata serve",
        addr,
        store: Some(store),
        _guard: Box::new(stop),
    }];
    if let Some(reg) = ReferenceRegistry::start() {
        out.push(Upstream {
            name: "docker-registry",
            addr: reg.addr.clone(),
            store: None,
            _guard: Box::new(reg),
        });
    }
    out
}

fn proxy_client() -> Client {
    Client::new(ClientOptions {
        retry_delay: Duration::from_millis(10),
        read_timeout: Duration::from_millis(700),
        monolithic_max: 100_000,
        chunk_size: 64 << 10,
        ..ClientOptions::default()
    })
    .unwrap()
}

/// An error with its causes, as a user would read them.
fn chain(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// An image with a config and two layers (300 kB and 200 kB), new to any
/// registry (seeded).
fn fresh_image(store: &Store, seed: u64) -> (Reference, Vec<Digest>) {
    let desc = make_image(
        store,
        "img:1",
        &[("a", noise(seed, 300_000)), ("b", noise(seed + 1, 200_000))],
    );
    let img = store.image(&desc, None).unwrap();
    let mut blobs = vec![img.manifest.config.digest.clone()];
    blobs.extend(img.layers.iter().map(|l| l.descriptor.digest.clone()));
    ("img:1".parse().unwrap(), blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_through_a_faulty_proxy_complete_or_name_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    for (u, up) in upstreams(dir.path()).await.into_iter().enumerate() {
        let src = Store::open(dir.path().join(format!("src{u}"))).unwrap();
        let (_, blobs) = fresh_image(&src, 100 + u as u64);
        let layer = blobs[1].to_string();
        let client = proxy_client();
        client
            .push(
                &src,
                "img:1",
                &format!("{}/app:1", up.addr).parse().unwrap(),
            )
            .await
            .unwrap();
        let proxy = FaultProxy::start(&up.addr).await;
        let via: Reference = format!("{}/app:1", proxy.addr).parse().unwrap();
        let want = src.resolve(&"img:1".parse().unwrap()).unwrap().digest;
        // Faults a pull must ride out.
        let transient = [
            (
                "dropped connection",
                Rule::new("GET", "/manifests/", Inject::Drop, 1),
            ),
            ("503", Rule::new("GET", "/blobs/", Inject::Status(503), 1)),
            (
                "500",
                Rule::new("GET", "/manifests/", Inject::Status(500), 2),
            ),
            (
                "429 Retry-After",
                Rule::new("GET", "/blobs/", Inject::TooMany(1), 1),
            ),
            (
                "truncated body",
                Rule::new("GET", layer.as_str(), Inject::Truncate, 1),
            ),
            (
                "stalled answer",
                Rule::new(
                    "GET",
                    layer.as_str(),
                    Inject::StallHead(Duration::from_secs(3)),
                    1,
                ),
            ),
            (
                "stalled body",
                Rule::new(
                    "GET",
                    layer.as_str(),
                    Inject::StallBody(Duration::from_secs(3)),
                    1,
                ),
            ),
        ];
        for (i, (label, rule)) in transient.into_iter().enumerate() {
            let fault = rule.fault;
            proxy.set(vec![rule]);
            proxy.take_seen();
            let store = Store::open(dir.path().join(format!("t{u}-{i}"))).unwrap();
            let s = client
                .pull(&store, &via)
                .await
                .unwrap_or_else(|e| panic!("{}: {label}: {}", up.name, chain(&e)));
            assert_eq!(s.digest, want, "{}: {label}", up.name);
            assert!(!proxy.pending(), "{}: {label} was never injected", up.name);
            assert_verified(&store);
            if matches!(fault, Inject::Truncate | Inject::StallBody(_)) {
                let seen = proxy.take_seen();
                let resumed = seen
                    .iter()
                    .filter(|r| r.path.ends_with(&layer) && r.method == "GET")
                    .any(|r| r.range.as_deref().is_some_and(|x| x != "bytes=0-"));
                assert!(resumed, "{}: {label}: no Range resume in {seen:?}", up.name);
            }
        }
        // Faults a pull must refuse, naming them, committing nothing bad;
        // once healed, the same pull completes without fetching again what
        // it had verified.
        let fatal = [
            ("wrong blob", Inject::WrongBlob, "digest mismatch"),
            (
                "Content-Length too long",
                Inject::LongLength,
                "the registry sent",
            ),
            (
                "Content-Length too short",
                Inject::ShortLength,
                "the registry sent",
            ),
        ];
        for (i, (label, fault, says)) in fatal.into_iter().enumerate() {
            proxy.set(vec![Rule::new("GET", layer.as_str(), fault, usize::MAX)]);
            let store = Store::open(dir.path().join(format!("f{u}-{i}"))).unwrap();
            let e = client.pull(&store, &via).await.unwrap_err();
            let msg = chain(&e);
            assert!(
                msg.contains(says) && msg.contains(&layer),
                "{}: {label}: {msg}",
                up.name
            );
            assert!(
                !store.has(&blobs[1]),
                "{}: {label}: bad blob committed",
                up.name
            );
            assert!(store.list_tags().unwrap().is_empty());
            assert_verified(&store);
            let verified: Vec<&Digest> = blobs.iter().filter(|d| store.has(d)).collect();
            proxy.heal();
            proxy.take_seen();
            client
                .pull(&store, &via)
                .await
                .unwrap_or_else(|e| panic!("{}: {label}, healed: {}", up.name, chain(&e)));
            assert_verified(&store);
            for r in proxy.take_seen() {
                if r.method == "GET" && r.path.contains("/blobs/") {
                    assert!(
                        !verified.iter().any(|d| r.path.ends_with(&d.to_string())),
                        "{}: {label}: {} fetched again",
                        up.name,
                        r.path
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_through_a_faulty_proxy_complete_or_name_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    for (u, up) in upstreams(dir.path()).await.into_iter().enumerate() {
        let proxy = FaultProxy::start(&up.addr).await;
        let client = proxy_client();
        let transient = [
            (
                "dropped upload start",
                Rule::new("POST", "/blobs/uploads/", Inject::Drop, 1),
            ),
            (
                "503 on a chunk",
                Rule::new("PATCH", "/blobs/uploads/", Inject::Status(503), 1),
            ),
            (
                "dropped chunk",
                Rule::new("PATCH", "/blobs/uploads/", Inject::Drop, 1),
            ),
            (
                "429 on HEAD",
                Rule::new("HEAD", "/blobs/", Inject::TooMany(1), 1),
            ),
            (
                "dropped upload end",
                Rule::new("PUT", "/blobs/uploads/", Inject::Drop, 1),
            ),
            (
                "500 on manifest",
                Rule::new("PUT", "/manifests/", Inject::Status(500), 1),
            ),
            (
                "stalled HEAD",
                Rule::new(
                    "HEAD",
                    "/blobs/",
                    Inject::StallHead(Duration::from_secs(3)),
                    1,
                ),
            ),
        ];
        for (i, (label, rule)) in transient.into_iter().enumerate() {
            let local = Store::open(dir.path().join(format!("p{u}-{i}"))).unwrap();
            let (r, _) = fresh_image(&local, 1000 + 10 * i as u64 + u as u64);
            let want = local.resolve(&r).unwrap().digest;
            proxy.set(vec![rule]);
            let dest: Reference = format!("{}/push{i}:1", proxy.addr).parse().unwrap();
            let s = client
                .push(&local, "img:1", &dest)
                .await
                .unwrap_or_else(|e| panic!("{}: {label}: {}", up.name, chain(&e)));
            assert_eq!(s.digest, want);
            assert!(!proxy.pending(), "{}: {label} was never injected", up.name);
            // What the registry holds is whole.
            let check = Store::open(dir.path().join(format!("c{u}-{i}"))).unwrap();
            let direct: Reference = format!("{}/push{i}:1", up.addr).parse().unwrap();
            assert_eq!(client.pull(&check, &direct).await.unwrap().digest, want);
            assert_verified(&check);
        }
        // Bytes changed on the way up: the registry refuses them, the push
        // fails naming the blob, and the registry has no such blob.
        let local = Store::open(dir.path().join(format!("bad{u}"))).unwrap();
        let (_, blobs) = fresh_image(&local, 5000 + u as u64);
        proxy.set(vec![
            Rule::new(
                "PATCH",
                "/blobs/uploads/",
                Inject::CorruptUpload,
                usize::MAX,
            ),
            Rule::new("PUT", "/blobs/uploads/", Inject::CorruptUpload, usize::MAX),
        ]);
        let dest: Reference = format!("{}/corrupt:1", proxy.addr).parse().unwrap();
        let e = client.push(&local, "img:1", &dest).await.unwrap_err();
        let msg = chain(&e);
        assert!(
            blobs.iter().any(|d| msg.contains(&d.to_string())) && msg.contains("400"),
            "{}: {msg}",
            up.name
        );
        let http = reqwest::Client::new();
        for d in &blobs {
            let r = http
                .head(format!("http://{}/v2/corrupt/blobs/{d}", up.addr))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{}: {d} was committed", up.name);
        }
        if let Some(s) = &up.store {
            for d in &blobs {
                assert!(!s.has(d), "{}: {d} is in the store", up.name);
            }
            assert_verified(s);
        }
        proxy.heal();
        client.push(&local, "img:1", &dest).await.unwrap();
    }
}
