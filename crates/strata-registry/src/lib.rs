//! Registries for strata: a distribution client that moves only what
//! changed, and `strata serve`, an OCI distribution-spec v1.1 registry over
//! the same content store.
//!
//! # Public API
//!
//! - `Client::new(ClientOptions) -> Result<Client>`;
//!   `Client::push(&self, &Store, image: &str, dest: &Reference) -> Result<PushSummary>`;
//!   `Client::pull(&self, &Store, &Reference) -> Result<PullSummary>`;
//!   `Client::check_login(&self, registry: &str) -> Result<()>`.
//! - `RegistryCache::new("registry/repo[:tag]", ClientOptions) -> Result<RegistryCache>`
//!   (`.with_origins(store)`): the build cache in a registry repository, a
//!   [`strata_oci::RemoteCache`] (docs/cache.md); errors are [`CacheError`].
//! - `AuthConfig::from_env()`, `AuthConfig::lookup(registry)`,
//!   `AuthConfig::store(registry, &Credential)`, `AuthConfig::remove(registry)`.
//! - `serve(Store, ServeOptions) -> impl Future<Output = Result<()>>` (until
//!   SIGINT/SIGTERM); `Server::bind(Store, ServeOptions)`, `Server::local_addr()`,
//!   `Server::run_until(shutdown)`; `serve_until(Store, ServeOptions) -> (addr, stop)`.
//! - `registry_host("https://index.docker.io/v1/") == "docker.io"`: a
//!   registry as the user named it, as references spell it.
//! - Progress: implement [`Progress`] to receive [`Event`]s.
//! - Errors: [`Error`] (each variant names registry, repository and what was
//!   asked; `is_not_found()`, `is_auth()`; `miette::Diagnostic` hints).
//!
//! # Client
//!
//! [`Client::new`]`(`[`ClientOptions`]`)`, then
//! [`Client::push`]`(&store, image, &dest) -> `[`PushSummary`] and
//! [`Client::pull`]`(&store, &reference) -> `[`PullSummary`]. A push HEADs
//! every blob first and skips what the registry has ("Layer already
//! exists"), mounts blobs known (from the store's record of where each blob
//! was pulled from or pushed to) to live in another repository of the same
//! registry, and uploads the rest, `jobs` at a time: one PUT up to
//! `monolithic_max` bytes, PATCH chunks beyond, resuming an interrupted
//! upload from the registry's upload status. A pull skips blobs already in
//! the store ("Already exists"), resumes partial downloads with Range
//! requests, verifies size and digest before anything is committed, stores
//! manifests exactly as received, and only then sets the tag.
//!
//! Auth is anonymous, Basic, or Bearer tokens (cached per scope; a mount
//! asks for `repository:<from>:pull` too). Credentials come from
//! `STRATA_REGISTRY_USER`/`STRATA_REGISTRY_PASSWORD`, strata's auth file
//! (`$REGISTRY_AUTH_FILE`, else `$XDG_CONFIG_HOME/strata/auth.json`,
//! written 0600 by `strata login`), then docker's config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `credHelpers`,
//! `auths`, `credsStore`); see [`AuthConfig`]. Plain HTTP is used only for
//! loopback registries and `insecure_registries` (https is tried first).
//! 429, 5xx and dropped connections are retried with backoff (honouring
//! `Retry-After`). Progress goes to a [`Progress`] as [`Event`]s.
//!
//! # Server
//!
//! [`serve`]`(store, `[`ServeOptions`]`)` runs until SIGINT/SIGTERM;
//! [`Server::bind`] + [`Server::local_addr`] + [`Server::run_until`] for
//! tests. Blobs live once in the store; each repository holds links (see
//! the layout in the server's `repo` module), registered as store roots so
//! `strata prune` keeps them; a request that stores content holds a lease
//! only until its repository's root names it, so a prune beside a running
//! server collects everything else. Limits ([`ServeOptions`]): blob size
//! (413 `SIZE_INVALID` on every upload path), uploads in progress (429),
//! failed logins per client address and minute (429, no bcrypt run), and a
//! bounded cache of password verdicts; unknown users cost the same bcrypt
//! as wrong passwords. A full disk answers 507 naming the store and keeps
//! no partial upload data.
//!
//! ```
//! use strata_oci::{Reference, Store};
//! use strata_registry::{serve_until, Client, ClientOptions, ServeOptions};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("client"))?;
//! // An image: one config, no layers.
//! let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
//! let c = store.put_json(strata_oci::media_type::OCI_CONFIG, config)?;
//! let m = strata_oci::Manifest::oci(c, vec![]).to_json();
//! let m = store.put_json(strata_oci::media_type::OCI_MANIFEST, &m)?;
//! store.tag(&"demo:1".parse()?, &m)?;
//!
//! // A registry over another store, on a free loopback port.
//! let server_store = Store::open(dir.path().join("server"))?;
//! let opts = ServeOptions { addr: "127.0.0.1:0".into(), ..Default::default() };
//! let (addr, stop) = serve_until(server_store, opts).await?;
//!
//! let client = Client::new(ClientOptions::default())?;
//! let dest: Reference = format!("{addr}/demo:1").parse()?;
//! let pushed = client.push(&store, "demo:1", &dest).await?;
//! assert_eq!((pushed.uploaded, pushed.skipped), (1, 0));
//! let again = client.push(&store, "demo:1", &dest).await?;
//! assert_eq!((again.uploaded, again.skipped), (0, 1));
//!
//! let other = Store::open(dir.path().join("other"))?;
//! let pulled = client.pull(&other, &dest).await?;
//! assert_eq!(pulled.digest, m.digest);
//! stop.send(()).ok();
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod auth;
mod client;
mod error;
mod host;
mod origins;
mod progress;
mod server;

pub use auth::{AuthConfig, Credential};
pub use client::{CacheError, Client, ClientOptions, OriginFetcher, PushContent, RegistryCache};
pub use error::{Error, Result};
pub use host::registry_host;
pub use progress::{BlobKind, BlobOutcome, Event, NoProgress, Progress, PullSummary, PushSummary};
pub use server::{serve, RequestHook, RequestLog, ServeOptions, Server, DEFAULT_MAX_BLOB_SIZE};

/// Start a server in the background (on the current tokio runtime); returns
/// its address and a sender that stops it. Handy for tests and examples.
pub async fn serve_until(
    store: strata_oci::Store,
    options: ServeOptions,
) -> Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let server = Server::bind(store, options).await?;
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = server
            .run_until(async move {
                let _ = rx.await;
            })
            .await
        {
            tracing::error!("server stopped: {e}");
        }
    });
    Ok((addr, tx))
}
