//! `strata serve`: an OCI distribution-spec v1.1 registry over the content
//! store (axum; TLS through rustls).

// Handlers' helpers fail with the HTTP response to send: one per request,
// never on a hot path, so its size does not matter.
#![allow(clippy::result_large_err)]

mod repo;

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt;
use strata_oci::{media_type, Descriptor, Digest, Hasher, Index, Lease, Manifest, Store, Writer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{Error, Result};
use repo::{valid_name, valid_tag, Repos};

/// Largest manifest accepted (the spec asks registries to take at least 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;
/// Upload bytes are written to disk in batches this big.
const BATCH: usize = 1 << 20;

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct RequestLog {
    /// HTTP method.
    pub method: String,
    /// Path (without the query).
    pub path: String,
    /// Status code sent.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes announced (Content-Length).
    pub bytes_out: u64,
    /// Time to the response head.
    pub duration: Duration,
}

/// A callback that sees every request (for tests and metrics).
pub type RequestHook = Arc<dyn Fn(&RequestLog) + Send + Sync>;

/// Settings of [`serve`].
#[derive(Clone)]
pub struct ServeOptions {
    /// Address to listen on (`127.0.0.1:5000`; port 0 picks a free one).
    pub addr: String,
    /// htpasswd file (bcrypt entries): Basic auth; authenticated users may
    /// push and pull.
    pub htpasswd: Option<PathBuf>,
    /// Refuse every write (405 UNSUPPORTED).
    pub read_only: bool,
    /// With `htpasswd`: anonymous clients may pull.
    pub anonymous_pull: bool,
    /// With `htpasswd`: only these users may push (others get 403 DENIED);
    /// empty means every authenticated user.
    pub push_users: Vec<String>,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Upload sessions idle this long are cancelled and their data removed.
    pub upload_ttl: Duration,
    /// Open upload sessions beyond this get 429 TOOMANYREQUESTS.
    pub max_uploads: usize,
    /// Called once per request, after the response head.
    pub on_request: Option<RequestHook>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("addr", &self.addr)
            .field("htpasswd", &self.htpasswd)
            .field("read_only", &self.read_only)
            .field("anonymous_pull", &self.anonymous_pull)
            .field("tls_cert", &self.tls_cert)
            .field("upload_ttl", &self.upload_ttl)
            .finish_non_exhaustive()
    }
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            addr: "127.0.0.1:5000".into(),
            htpasswd: None,
            read_only: false,
            anonymous_pull: false,
            push_users: Vec::new(),
            tls_cert: None,
            tls_key: None,
            upload_ttl: Duration::from_secs(3600),
            max_uploads: 1000,
            on_request: None,
        }
    }
}

/// Serve `store` until SIGINT or SIGTERM, then finish the requests in
/// flight (at most 10 s) and return.
pub async fn serve(store: Store, options: ServeOptions) -> Result<()> {
    Server::bind(store, options).await?.run().await
}

/// A bound, not yet running server (to learn its address first).
pub struct Server {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    state: Arc<AppState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

struct Upload {
    name: String,
    writer: Option<Writer>,
    last: Instant,
}

struct AppState {
    repos: Repos,
    opts: ServeOptions,
    users: HashMap<String, String>,
    /// Verified (user, sha256(password)) pairs, so bcrypt runs once.
    verified: Mutex<HashMap<(String, String), bool>>,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
    /// Serialises link and root updates per repository.
    repo_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    _lease: Mutex<Lease>,
}

fn read_htpasswd(path: &PathBuf) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line.split_once(':').ok_or_else(|| Error::Htpasswd {
            path: path.clone(),
            line: i + 1,
            reason: "expected user:hash".into(),
        })?;
        if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
            return Err(Error::Htpasswd {
                path: path.clone(),
                line: i + 1,
                reason: format!("the entry for {user:?} is not a bcrypt hash"),
            });
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

impl Server {
    /// Bind the listener and prepare the store's registry namespace.
    pub async fn bind(store: Store, options: ServeOptions) -> Result<Server> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let users = match &options.htpasswd {
            Some(p) => read_htpasswd(p)?,
            None => HashMap::new(),
        };
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(c), Some(k)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(c, k)
                    .await
                    .map_err(|e| Error::Tls {
                        path: c.clone(),
                        reason: e.to_string(),
                    })?,
            ),
            (None, None) => None,
            (Some(c), None) | (None, Some(c)) => {
                return Err(Error::Tls {
                    path: c.clone(),
                    reason: "both --tls-cert and --tls-key are needed".into(),
                })
            }
        };
        let listener = std::net::TcpListener::bind(&options.addr).map_err(|e| Error::Bind {
            addr: options.addr.clone(),
            source: e,
        })?;
        listener.set_nonblocking(true).map_err(|e| Error::Bind {
            addr: options.addr.clone(),
            source: e,
        })?;
        let addr = listener.local_addr().map_err(|e| Error::Bind {
            addr: options.addr.clone(),
            source: e,
        })?;
        // Everything written while the server runs is protected from a
        // concurrent `strata prune` until it is linked (and so a root).
        let lease = store.lease("strata serve")?;
        let repos = Repos::new(store);
        std::fs::create_dir_all(repos.uploads_dir())
            .map_err(|e| Error::io("create", repos.uploads_dir(), e))?;
        let state = Arc::new(AppState {
            repos,
            opts: options,
            users,
            verified: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
            repo_locks: Mutex::new(HashMap::new()),
            _lease: Mutex::new(lease),
        });
        Ok(Server {
            listener,
            addr,
            tls,
            state,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Run until SIGINT or SIGTERM.
    pub async fn run(self) -> Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Run until `shutdown` completes, then drain requests in flight (10 s).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let state = self.state.clone();
        let app = axum::Router::new()
            .fallback(dispatch)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                log_requests,
            ))
            .with_state(state.clone());
        let sweeper = tokio::spawn(expire_uploads(state.clone()));
        tracing::info!(addr = %self.addr, tls = self.tls.is_some(), root = %state.repos.store().root().display(), "serving");
        let addr_s = self.addr.to_string();
        let res = match self.tls {
            Some(cfg) => {
                let handle = axum_server::Handle::new();
                let h2 = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    h2.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                axum_server::from_tcp_rustls(self.listener, cfg)
                    .handle(handle)
                    .serve(app.into_make_service())
                    .await
            }
            None => {
                let listener =
                    tokio::net::TcpListener::from_std(self.listener).map_err(|e| Error::Bind {
                        addr: addr_s.clone(),
                        source: e,
                    })?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        sweeper.abort();
        res.map_err(|e| Error::Bind {
            addr: addr_s,
            source: e,
        })
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Bytes read from the request body, shared with the logger.
#[derive(Clone, Default)]
struct BytesIn(Arc<AtomicU64>);

async fn log_requests(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let counter = BytesIn::default();
    req.extensions_mut().insert(counter.clone());
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let log = RequestLog {
        method,
        path,
        status: resp.status().as_u16(),
        bytes_in: counter.0.load(Ordering::Relaxed),
        bytes_out: resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        duration: start.elapsed(),
    };
    tracing::info!(
        "{} {} {} in={} out={} {}ms",
        log.method,
        log.path,
        log.status,
        log.bytes_in,
        log.bytes_out,
        log.duration.as_millis()
    );
    if let Some(hook) = &state.opts.on_request {
        hook(&log);
    }
    resp
}

// ---- responses ----------------------------------------------------------

/// A distribution-spec error code.
#[derive(Debug, Clone, Copy)]
enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

fn err(code: Code, message: impl Into<String>) -> Response {
    err_status(code.status(), code, message)
}

fn err_status(status: StatusCode, code: Code, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{"code": code.as_str(), "message": message.into(), "detail": null}]
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if code == Code::TooManyRequests {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

impl PartialEq for Code {
    fn eq(&self, o: &Code) -> bool {
        self.as_str() == o.as_str()
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("internal error: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(name) = header::HeaderName::from_bytes(k.as_bytes()) {
            r.headers_mut().insert(name, hv(v));
        }
    }
    if !r.headers().contains_key(header::CONTENT_LENGTH) {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

// ---- routing --------------------------------------------------------------

enum Route {
    Ping,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadNew(String),
    Upload(String, String),
    Referrers(String, String),
}

fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Ping);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| segs[..n - k].join("/");
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some(Route::Tags(name(2)));
    }
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        return Some(if id.is_empty() {
            Route::UploadNew(name(3))
        } else {
            Route::Upload(name(3), id.to_owned())
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some(Route::UploadNew(name(2)));
    }
    if n >= 3 && segs[n - 2] == "manifests" {
        return Some(Route::Manifest(name(2), segs[n - 1].to_owned()));
    }
    if n >= 3 && segs[n - 2] == "blobs" {
        return Some(Route::Blob(name(2), segs[n - 1].to_owned()));
    }
    if n >= 3 && segs[n - 2] == "referrers" {
        return Some(Route::Referrers(name(2), segs[n - 1].to_owned()));
    }
    None
}

fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(q) = uri.query() {
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.insert(pct_decode(k), pct_decode(v));
        }
    }
    out
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pct_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- auth -----------------------------------------------------------------

enum Access {
    Pull,
    Push,
}

async fn authorize(state: &AppState, headers: &HeaderMap, access: Access) -> Option<Response> {
    let write = matches!(access, Access::Push);
    let unauthorized = || {
        let mut r = err(Code::Unauthorized, "authentication required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"strata\""),
        );
        r
    };
    if state.opts.htpasswd.is_some() {
        let user = match basic_credentials(headers) {
            Some((u, p)) if check_password(state, &u, &p).await => Some(u),
            _ => None,
        };
        match user {
            None if !write && state.opts.anonymous_pull => return None,
            None => return Some(unauthorized()),
            Some(u)
                if write
                    && !state.opts.push_users.is_empty()
                    && !state.opts.push_users.contains(&u) =>
            {
                return Some(err(Code::Denied, format!("user {u} may not push")));
            }
            Some(_) => {}
        }
    }
    if write && state.opts.read_only {
        return Some(err(Code::Unsupported, "this registry is read-only"));
    }
    None
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

async fn check_password(state: &AppState, user: &str, password: &str) -> bool {
    let Some(hash) = state.users.get(user).cloned() else {
        return false;
    };
    let key = (
        user.to_owned(),
        Digest::sha256(password.as_bytes()).hex().to_owned(),
    );
    if let Some(ok) = state
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        return *ok;
    }
    let pw = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash).unwrap_or(false))
        .await
        .unwrap_or(false);
    state
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, ok);
    ok
}

// ---- dispatch ---------------------------------------------------------------

async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let counter = parts
        .extensions
        .get::<BytesIn>()
        .cloned()
        .unwrap_or_default();
    let Some(r) = route(parts.uri.path()) else {
        return err_status(StatusCode::NOT_FOUND, Code::Unsupported, "no such endpoint");
    };
    let m = parts.method.clone();
    let access = if m == Method::GET || m == Method::HEAD {
        Access::Pull
    } else {
        Access::Push
    };
    if let Some(denied) = authorize(&state, &parts.headers, access).await {
        return denied;
    }
    let name = match &r {
        Route::Ping | Route::Catalog => None,
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::UploadNew(n)
        | Route::Upload(n, _)
        | Route::Referrers(n, _) => Some(n.clone()),
    };
    if let Some(n) = &name {
        if !valid_name(n) {
            return err(Code::NameInvalid, format!("invalid repository name {n:?}"));
        }
    }
    let q = query(&parts.uri);
    let h = &parts.headers;
    let st = &state;
    match (r, m) {
        (Route::Ping, Method::GET | Method::HEAD) => {
            let mut r = empty(StatusCode::OK, &[]);
            *r.body_mut() = Body::from("{}");
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        (Route::Catalog, Method::GET) => catalog(st, &q),
        (Route::Tags(n), Method::GET) => tags_list(st, &n, &q),
        (Route::Manifest(n, r), Method::GET) => get_manifest(st, &n, &r, h, true),
        (Route::Manifest(n, r), Method::HEAD) => get_manifest(st, &n, &r, h, false),
        (Route::Manifest(n, r), Method::PUT) => put_manifest(st, &n, &r, h, body, counter).await,
        (Route::Manifest(n, r), Method::DELETE) => delete_manifest(st, &n, &r).await,
        (Route::Blob(n, d), Method::GET) => get_blob(st, &n, &d, h, true).await,
        (Route::Blob(n, d), Method::HEAD) => get_blob(st, &n, &d, h, false).await,
        (Route::Blob(n, d), Method::DELETE) => delete_blob(st, &n, &d).await,
        (Route::UploadNew(n), Method::POST) => start_upload(st, &n, &q, h, body, counter).await,
        (Route::Upload(n, id), Method::PATCH) => patch_upload(st, &n, &id, h, body, counter).await,
        (Route::Upload(n, id), Method::PUT) => put_upload(st, &n, &id, &q, h, body, counter).await,
        (Route::Upload(n, id), Method::GET) => upload_status(st, &n, &id).await,
        (Route::Upload(n, id), Method::DELETE) => cancel_upload(st, &n, &id).await,
        (Route::Referrers(n, d), Method::GET) => referrers(st, &n, &d, &q),
        _ => err(Code::Unsupported, "method not allowed here"),
    }
}

fn paginate(
    items: Vec<String>,
    q: &HashMap<String, String>,
    path: &str,
) -> (Vec<String>, Option<String>) {
    let mut items: Vec<String> = match q.get("last") {
        Some(last) if !last.is_empty() => items
            .into_iter()
            .filter(|t| t.as_str() > last.as_str())
            .collect(),
        _ => items,
    };
    let n = q.get("n").and_then(|n| n.parse::<usize>().ok());
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                link = Some(format!(
                    "<{path}?n={n}&last={}>; rel=\"next\"",
                    pct_encode(last)
                ));
            }
        }
    }
    (items, link)
}

fn json_response(value: serde_json::Value, link: Option<String>, content_type: &str) -> Response {
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    let mut r = empty(
        StatusCode::OK,
        &[("content-length", bytes.len().to_string())],
    );
    *r.body_mut() = Body::from(bytes);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, hv(content_type));
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, hv(&l));
    }
    r
}

fn catalog(st: &AppState, q: &HashMap<String, String>) -> Response {
    let all = match st.repos.catalog() {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let (items, link) = paginate(all, q, "/v2/_catalog");
    json_response(
        serde_json::json!({ "repositories": items }),
        link,
        "application/json",
    )
}

fn tags_list(st: &AppState, name: &str, q: &HashMap<String, String>) -> Response {
    if !st.repos.exists(name) {
        return err(Code::NameUnknown, format!("repository {name} is not known"));
    }
    let tags = match st.repos.tags(name) {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let (items, link) = paginate(tags, q, &format!("/v2/{name}/tags/list"));
    json_response(
        serde_json::json!({ "name": name, "tags": items }),
        link,
        "application/json",
    )
}

/// Resolve a tag or digest to a linked manifest: (digest, media type).
fn resolve_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
) -> std::result::Result<(Digest, String), Response> {
    if let Ok(d) = reference.parse::<Digest>() {
        return match st.repos.manifest_type(name, &d) {
            Some(mt) => Ok((d, mt)),
            None if !st.repos.exists(name) => Err(err(
                Code::NameUnknown,
                format!("repository {name} is not known"),
            )),
            None => Err(err(
                Code::ManifestUnknown,
                format!("manifest {d} is not in {name}"),
            )),
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
    let Some(desc) = st.repos.tag(name, reference) else {
        if !st.repos.exists(name) {
            return Err(err(
                Code::NameUnknown,
                format!("repository {name} is not known"),
            ));
        }
        return Err(err(
            Code::ManifestUnknown,
            format!("tag {reference} is not in {name}"),
        ));
    };
    match st.repos.manifest_type(name, &desc.digest) {
        Some(mt) => Ok((desc.digest, mt)),
        None => Err(err(
            Code::ManifestUnknown,
            format!("tag {reference} of {name} points at a missing manifest"),
        )),
    }
}

/// Whether the client's Accept header allows `mt`. No header, `*/*`, or a
/// header that names no manifest type at all accept anything.
fn accepts(headers: &HeaderMap, mt: &str) -> bool {
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

fn get_manifest(st: &AppState, name: &str, reference: &str, h: &HeaderMap, body: bool) -> Response {
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

async fn read_small_body(
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

fn repo_lock(st: &AppState, name: &str) -> Arc<tokio::sync::Mutex<()>> {
    st.repo_locks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

async fn put_manifest(
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
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
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
            if st.repos.manifest_type(name, &m.digest).is_none() {
                return err(
                    Code::ManifestBlobUnknown,
                    format!("index lists manifest {} which is not in {name}", m.digest),
                );
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
                return err(
                    Code::ManifestBlobUnknown,
                    format!(
                        "manifest references blob {} which is not in {name}",
                        d.digest
                    ),
                );
            }
            match st.repos.store().blob_size(&d.digest) {
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
    let store = st.repos.store();
    if let Err(e) = store.put_json(&mt, &raw) {
        return internal(e);
    }
    if let Err(e) = st.repos.link_manifest(name, &digest, &mt) {
        return internal(e);
    }
    let desc = {
        let mut d = Descriptor::new(mt.clone(), digest.clone(), raw.len() as u64);
        d.artifact_type = artifact_type;
        d.annotations = annotations;
        d
    };
    if by_digest.is_none() {
        if let Err(e) = st.repos.set_tag(
            name,
            reference,
            &Descriptor::new(mt.clone(), digest.clone(), raw.len() as u64),
        ) {
            return internal(e);
        }
    }
    if let Some(s) = &subject {
        if let Err(e) = st.repos.add_referrer(name, &s.digest, &desc) {
            return internal(e);
        }
    }
    if let Err(e) = st.repos.sync_root(name) {
        return internal(e);
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

async fn delete_manifest(st: &AppState, name: &str, reference: &str) -> Response {
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
    match reference.parse::<Digest>() {
        Ok(d) => {
            if st.repos.manifest_type(name, &d).is_none() {
                return err(
                    Code::ManifestUnknown,
                    format!("manifest {d} is not in {name}"),
                );
            }
            // Drop its referrer record, if it had a subject.
            if let Ok(raw) = st.repos.store().read_blob(&d) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) {
                    if let Some(s) = v
                        .get("subject")
                        .and_then(|s| serde_json::from_value::<Descriptor>(s.clone()).ok())
                    {
                        let _ = st.repos.remove_referrer(name, &s.digest, &d);
                    }
                }
            }
            if let Err(e) = st.repos.unlink_manifest(name, &d) {
                return internal(e);
            }
        }
        Err(_) => {
            if !valid_tag(reference) {
                return err(Code::ManifestInvalid, format!("invalid tag {reference:?}"));
            }
            match st.repos.remove_tag(name, reference) {
                Ok(true) => {}
                Ok(false) => {
                    return err(
                        Code::ManifestUnknown,
                        format!("tag {reference} is not in {name}"),
                    )
                }
                Err(e) => return internal(e),
            }
        }
    }
    if let Err(e) = st.repos.sync_root(name) {
        return internal(e);
    }
    empty(StatusCode::ACCEPTED, &[])
}

fn parse_digest(s: &str) -> std::result::Result<Digest, Response> {
    s.parse::<Digest>()
        .map_err(|_| err(Code::DigestInvalid, format!("invalid digest {s:?}")))
}

/// Parse `bytes=a-b`, `bytes=a-`, `bytes=-n` against `size`: (start, end inclusive).
fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

async fn get_blob(st: &AppState, name: &str, digest: &str, h: &HeaderMap, body: bool) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if !st.repos.has_blob(name, &d) {
        return err(Code::BlobUnknown, format!("blob {d} is not in {name}"));
    }
    let store = st.repos.store();
    let size = match store.blob_size(&d) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            return err(Code::BlobUnknown, format!("blob {d} is not in {name}"))
        }
        Err(e) => return internal(e),
    };
    let range = match h.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => match parse_range(v, size) {
            Some(r) => Some(r),
            None => {
                return empty(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &[("content-range", format!("bytes */{size}"))],
                )
            }
        },
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut headers = vec![
        ("content-length", len.to_string()),
        ("content-type", "application/octet-stream".to_owned()),
        ("docker-content-digest", d.to_string()),
        ("accept-ranges", "bytes".to_owned()),
        ("etag", format!("\"{d}\"")),
    ];
    if let Some((a, b)) = range {
        headers.push(("content-range", format!("bytes {a}-{b}/{size}")));
    }
    let mut r = empty(status, &headers);
    if body {
        let mut f = match tokio::fs::File::open(store.blob_path(&d)).await {
            Ok(f) => f,
            Err(e) => return internal(e),
        };
        if start > 0 {
            if let Err(e) = f.seek(std::io::SeekFrom::Start(start)).await {
                return internal(e);
            }
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10);
        *r.body_mut() = Body::from_stream(stream);
    }
    r
}

async fn delete_blob(st: &AppState, name: &str, digest: &str) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
    match st.repos.unlink_blob(name, &d) {
        Ok(true) => {}
        Ok(false) => return err(Code::BlobUnknown, format!("blob {d} is not in {name}")),
        Err(e) => return internal(e),
    }
    if let Err(e) = st.repos.sync_root(name) {
        return internal(e);
    }
    empty(StatusCode::ACCEPTED, &[])
}

fn referrers(st: &AppState, name: &str, digest: &str, q: &HashMap<String, String>) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut list = match st.repos.referrers(name, &d) {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
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

// ---- uploads ----------------------------------------------------------------

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_upload_id() -> String {
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

fn ingest_key(id: &str) -> String {
    format!("registry-upload-{id}")
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-')
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UploadRecord {
    name: String,
    started: u64,
}

/// Open a writer for an upload, waiting briefly for a previous request's
/// writer (still finishing a blocking write) to let go.
async fn open_writer(store: &Store, id: &str) -> std::result::Result<Writer, Response> {
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

fn upload_headers(name: &str, id: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", format!("0-{}", offset.saturating_sub(1))),
        ("docker-upload-uuid", id.to_owned()),
    ]
}

async fn start_upload(
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
            if valid_name(&from) && st.repos.has_blob(&from, &d) {
                let lock = repo_lock(st, name);
                let _g = lock.lock().await;
                if let Err(e) = st.repos.link_blob(name, &d) {
                    return internal(e);
                }
                if let Err(e) = st.repos.sync_root(name) {
                    return internal(e);
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
    let open = st.uploads.lock().unwrap_or_else(|p| p.into_inner()).len();
    if open >= st.opts.max_uploads {
        return err(Code::TooManyRequests, "too many uploads in progress");
    }
    let id = new_upload_id();
    let store = st.repos.store();
    let writer = match open_writer(store, &id).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    // Single-request upload: POST with ?digest= and the blob as body.
    if let Some(dg) = q.get("digest") {
        let d = match parse_digest(dg) {
            Ok(d) => d,
            Err(r) => {
                let _ = writer.abort();
                return r;
            }
        };
        let writer = match append_body(writer, body, None, &counter).await {
            Ok(w) => w,
            Err((w, r)) => {
                if let Some(w) = w {
                    let _ = w.abort();
                }
                return r;
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
        return internal(e);
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
fn session(
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

fn forget_session(st: &AppState, id: &str) {
    st.uploads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    let _ = std::fs::remove_file(st.repos.uploads_dir().join(format!("{id}.json")));
}

/// Append a request body to the writer, in blocking batches. A body that
/// breaks off leaves what arrived in the ingest (the client may resume).
async fn append_body(
    writer: Writer,
    body: Body,
    expect_len: Option<u64>,
    counter: &BytesIn,
) -> std::result::Result<Writer, (Option<Writer>, Response)> {
    let mut writer = writer;
    let mut stream = body.into_data_stream();
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    let mut broken = None;
    loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                n += chunk.len() as u64;
                counter.0.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                batch.extend_from_slice(&chunk);
                if batch.len() >= BATCH {
                    let b = std::mem::take(&mut batch);
                    writer = write_batch(writer, b).await?;
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
        writer = write_batch(writer, batch).await?;
    }
    if let Some(e) = broken {
        return Err((
            Some(writer),
            err(Code::BlobUploadInvalid, format!("the body broke off: {e}")),
        ));
    }
    if let Some(want) = expect_len {
        if want != n {
            return Err((
                Some(writer),
                err(
                    Code::SizeInvalid,
                    format!("Content-Range announced {want} bytes, the body had {n}"),
                ),
            ));
        }
    }
    Ok(writer)
}

async fn write_batch(
    writer: Writer,
    b: Vec<u8>,
) -> std::result::Result<Writer, (Option<Writer>, Response)> {
    let res = tokio::task::spawn_blocking(move || {
        let mut w = writer;
        match w.write_all(&b) {
            Ok(()) => Ok(w),
            Err(e) => Err((w, e)),
        }
    })
    .await;
    match res {
        Ok(Ok(w)) => Ok(w),
        Ok(Err((w, e))) => Err((Some(w), internal(e))),
        Err(e) => Err((None, internal(e))),
    }
}

/// Content-Range of a PATCH: `start-end` (inclusive), with or without `bytes `.
fn parse_content_range(h: &HeaderMap) -> Option<std::result::Result<(u64, u64), ()>> {
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

async fn take_writer(
    st: &AppState,
    up: &mut Upload,
    id: &str,
) -> std::result::Result<Writer, Response> {
    match up.writer.take() {
        Some(w) => Ok(w),
        None => open_writer(st.repos.store(), id).await,
    }
}

async fn patch_upload(
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
    match append_body(writer, body, expect, &counter).await {
        Ok(w) => {
            let off = w.offset();
            up.writer = Some(w);
            up.last = Instant::now();
            empty(StatusCode::ACCEPTED, &upload_headers(name, id, off))
        }
        Err((w, r)) => {
            up.writer = w;
            r
        }
    }
}

async fn put_upload(
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
    let writer = match append_body(writer, body, expect, &counter).await {
        Ok(w) => w,
        Err((w, r)) => {
            up.writer = w;
            return r;
        }
    };
    let r = finish_upload(st, name, writer, &d, h).await;
    forget_session(st, id);
    r
}

/// Verify and commit an upload, then link the blob in the repository. On a
/// digest mismatch nothing is stored.
async fn finish_upload(
    st: &AppState,
    name: &str,
    writer: Writer,
    d: &Digest,
    _h: &HeaderMap,
) -> Response {
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
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    }
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
    if let Err(e) = st.repos.link_blob(name, d) {
        return internal(e);
    }
    if let Err(e) = st.repos.sync_root(name) {
        return internal(e);
    }
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
        ],
    )
}

async fn upload_status(st: &AppState, name: &str, id: &str) -> Response {
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

async fn cancel_upload(st: &AppState, name: &str, id: &str) -> Response {
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
fn expire_uploads(state: Arc<AppState>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let name_of = |p: &str| match route(p) {
            Some(Route::Ping) => "ping".to_owned(),
            Some(Route::Catalog) => "catalog".to_owned(),
            Some(Route::Tags(n)) => format!("tags {n}"),
            Some(Route::Manifest(n, r)) => format!("manifest {n} {r}"),
            Some(Route::Blob(n, d)) => format!("blob {n} {d}"),
            Some(Route::UploadNew(n)) => format!("upload-new {n}"),
            Some(Route::Upload(n, i)) => format!("upload {n} {i}"),
            Some(Route::Referrers(n, d)) => format!("referrers {n} {d}"),
            None => "none".to_owned(),
        };
        for (p, want) in [
            ("/v2/", "ping"),
            ("/v2", "ping"),
            ("/v2/_catalog", "catalog"),
            ("/v2/a/b/tags/list", "tags a/b"),
            ("/v2/a/manifests/latest", "manifest a latest"),
            ("/v2/a/blobs/b/manifests/x", "manifest a/blobs/b x"),
            ("/v2/a/blobs/sha256:00", "blob a sha256:00"),
            ("/v2/a/blobs/uploads/", "upload-new a"),
            ("/v2/a/blobs/uploads", "upload-new a"),
            ("/v2/a/b/blobs/uploads/123", "upload a/b 123"),
            ("/v2/a/referrers/sha256:00", "referrers a sha256:00"),
            ("/v3/a", "none"),
        ] {
            assert_eq!(name_of(p), want, "{p}");
        }
    }

    #[test]
    fn ranges() {
        for (v, size, want) in [
            ("bytes=0-9", 100, Some((0, 9))),
            ("bytes=90-", 100, Some((90, 99))),
            ("bytes=-10", 100, Some((90, 99))),
            ("bytes=50-500", 100, Some((50, 99))),
            ("bytes=100-", 100, None),
            ("bytes=5-2", 100, None),
            ("bytes=0-1,4-5", 100, None),
            ("items=0-1", 100, None),
        ] {
            assert_eq!(parse_range(v, size), want, "{v}");
        }
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let q: HashMap<String, String> = [("n".to_owned(), "2".to_owned())].into();
        let (got, link) = paginate(items.clone(), &q, "/v2/x/tags/list");
        assert_eq!(got, ["a", "b"]);
        assert_eq!(
            link.as_deref(),
            Some("</v2/x/tags/list?n=2&last=b>; rel=\"next\"")
        );
        let q: HashMap<String, String> = [
            ("n".to_owned(), "2".to_owned()),
            ("last".to_owned(), "b".to_owned()),
        ]
        .into();
        let (got, link) = paginate(items, &q, "/v2/x/tags/list");
        assert_eq!(got, ["c", "d"]);
        assert_eq!(link, None);
    }
}
