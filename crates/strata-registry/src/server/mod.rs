//! `strata serve`: an OCI distribution-spec v1.1 registry over the content
//! store (axum; TLS through rustls).
//!
//! One file per concern, as distribution's `registry/handlers/`:
//! `routes` (paths and dispatch), `auth` (who may do what),
//! `errcode` (the spec's error codes and reply builders), `manifests`,
//! `blobs`, `uploads`, `tags` (catalog and tag lists), `repo`
//! (the on-disk namespace) and `served` (what a repository name serves:
//! its own links and the store's tags, so the server serves the store's
//! images by name and pushes of images become store tags). This file holds
//! the options, the server's life cycle and the request log.

// Handlers' helpers fail with the HTTP response to send: one per request,
// never on a hot path, so its size does not matter.
#![allow(clippy::result_large_err)]

mod auth;
mod blobs;
mod errcode;
mod manifests;
mod repo;
mod routes;
mod served;
mod tags;
mod uploads;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use strata_oci::{Digest, Lease, Store};

use crate::error::{Error, Result};
use repo::Repos;
use uploads::Upload;

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

/// Default of [`ServeOptions::max_blob_size`]: 32 GiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 32 << 30;

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
    /// Uploads in progress (sessions and single-request uploads) beyond
    /// this get 429 TOOMANYREQUESTS.
    pub max_uploads: usize,
    /// Largest blob accepted; a bigger upload gets 413 SIZE_INVALID and is
    /// cancelled (its data removed).
    pub max_blob_size: u64,
    /// With `htpasswd`: failed password checks a client address may make
    /// per minute; beyond, 429 TOOMANYREQUESTS (with Retry-After) without
    /// running bcrypt.
    pub max_auth_failures: u32,
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
            .field("max_uploads", &self.max_uploads)
            .field("max_blob_size", &self.max_blob_size)
            .field("max_auth_failures", &self.max_auth_failures)
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
            max_blob_size: DEFAULT_MAX_BLOB_SIZE,
            max_auth_failures: 10,
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

struct AppState {
    repos: Repos,
    opts: ServeOptions,
    auth: auth::Authenticator,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
    /// Single-request uploads streaming right now (they count against
    /// `max_uploads` with the sessions).
    monolithic: AtomicUsize,
    /// Serialises link and root updates per repository.
    repo_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Server {
    /// Bind the listener and prepare the store's registry namespace.
    pub async fn bind(store: Store, options: ServeOptions) -> Result<Server> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let users = match &options.htpasswd {
            Some(p) => auth::read_htpasswd(p)?,
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
        let repos = Repos::new(store);
        std::fs::create_dir_all(repos.uploads_dir())
            .map_err(|e| Error::io("create", repos.uploads_dir(), e))?;
        let state = Arc::new(AppState {
            repos,
            auth: auth::Authenticator::new(users, options.max_auth_failures),
            opts: options,
            uploads: Mutex::new(HashMap::new()),
            monolithic: AtomicUsize::new(0),
            repo_locks: Mutex::new(HashMap::new()),
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
            .fallback(routes::dispatch)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                log_requests,
            ))
            .with_state(state.clone());
        let sweeper = tokio::spawn(uploads::expire_uploads(state.clone()));
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
                    .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                    .await
            }
            None => {
                let listener =
                    tokio::net::TcpListener::from_std(self.listener).map_err(|e| Error::Bind {
                        addr: addr_s.clone(),
                        source: e,
                    })?;
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
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

fn repo_lock(st: &AppState, name: &str) -> Arc<tokio::sync::Mutex<()>> {
    st.repo_locks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

/// A lease for the rest of a request that stores content and links it into
/// a repository: it protects `digests` from a concurrent `strata prune`
/// until the repository's root names them. Dropped with the request.
fn request_lease(
    st: &AppState,
    what: &str,
    digests: &[&Digest],
) -> std::result::Result<Lease, Response> {
    let store = st.repos.store();
    let mut lease = store
        .lease(&format!("strata serve: {what}"))
        .map_err(|e| errcode::storage(store, e))?;
    for d in digests {
        lease
            .add_digest(d)
            .map_err(|e| errcode::storage(store, e))?;
    }
    Ok(lease)
}
