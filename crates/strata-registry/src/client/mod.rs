//! The distribution client: endpoint discovery (https, plain HTTP only where
//! allowed), authentication (anonymous, Basic, Bearer tokens cached per
//! scope), retries with backoff, and the push and pull flows.

mod cache;
mod fetcher;
mod pull;
mod push;

pub use push::PushContent;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use strata_oci::Platform;

use crate::auth::{parse_challenges, AuthConfig, Credential};
use crate::error::{Error, Result};
use crate::progress::{Event, NoProgress, Progress};

pub use cache::{CacheError, RegistryCache};
pub use fetcher::OriginFetcher;

/// Settings of a [`Client`].
#[derive(Clone)]
pub struct ClientOptions {
    /// Registries (`host[:port]`) where plain HTTP and unverified TLS are
    /// allowed. Loopback registries (localhost, 127.0.0.1, ::1) always are.
    pub insecure_registries: Vec<String>,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Blobs up to this size go in one PUT; larger ones in PATCH chunks.
    pub monolithic_max: u64,
    /// Size of each PATCH chunk.
    pub chunk_size: u64,
    /// Retries of a request after a 429, a 5xx or a dropped connection.
    pub retries: u32,
    /// First backoff delay (doubled on every retry, capped at 10 s; a
    /// `Retry-After` from the registry takes precedence).
    pub retry_delay: Duration,
    /// Platform chosen from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Where credentials come from.
    pub auth: AuthConfig,
    /// Receives progress events.
    pub progress: Arc<dyn Progress>,
    /// Extra CA certificate (PEM) to trust, e.g. a test registry's.
    pub ca_cert: Option<Vec<u8>>,
    /// A registry silent this long on a read (a stalled answer or body)
    /// counts as a dropped connection: retried, downloads resumed.
    pub read_timeout: Duration,
    /// Longest wait for a connection to the registry.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("insecure_registries", &self.insecure_registries)
            .field("jobs", &self.jobs)
            .field("monolithic_max", &self.monolithic_max)
            .field("chunk_size", &self.chunk_size)
            .field("retries", &self.retries)
            .field("read_timeout", &self.read_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure_registries: Vec::new(),
            jobs: 4,
            monolithic_max: 16 << 20,
            chunk_size: 16 << 20,
            retries: 5,
            retry_delay: Duration::from_millis(250),
            platform: None,
            auth: AuthConfig::default(),
            progress: Arc::new(NoProgress),
            ca_cert: None,
            read_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// How to talk to one registry, found by the first request.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `https://host` or `http://host`.
    base: String,
    /// Certificates are not checked (an `--insecure-registry`).
    insecure: bool,
}

#[derive(Debug, Clone)]
enum Scheme {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Default)]
struct RegistryState {
    endpoint: Option<Endpoint>,
    scheme: Option<Scheme>,
    credential: Option<Option<Credential>>,
    /// Bearer tokens by scope string.
    tokens: HashMap<String, (String, Instant)>,
}

/// What a request is about, for auth scopes and error messages.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Registry as written in references (`localhost:5000`, `docker.io`).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Token scopes (`repository:<name>:pull[,push]`).
    pub scopes: Vec<String>,
}

impl Target {
    pub(crate) fn new(registry: &str, repository: &str, push: bool) -> Target {
        let actions = if push { "pull,push" } else { "pull" };
        Target {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            scopes: vec![format!("repository:{repository}:{actions}")],
        }
    }
}

/// A registry client. Cheap to share: clone the `Arc` or borrow it from
/// several tasks; endpoints and tokens are cached inside.
pub struct Client {
    opts: ClientOptions,
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    state: Mutex<HashMap<String, RegistryState>>,
    /// One token request at a time, so parallel blobs share one token.
    token_flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("opts", &self.opts).finish()
    }
}

/// Whether the registry is on this machine (plain HTTP allowed).
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// A client with these options.
    pub fn new(options: ClientOptions) -> Result<Client> {
        install_crypto_provider();
        let build = |insecure: bool| -> Result<reqwest::Client> {
            let mut b = reqwest::Client::builder()
                .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(options.connect_timeout)
                .read_timeout(options.read_timeout)
                .pool_max_idle_per_host(options.jobs.max(1) * 2)
                .danger_accept_invalid_certs(insecure);
            if let Some(pem) = &options.ca_cert {
                let cert = reqwest::Certificate::from_pem(pem).map_err(|e| Error::Tls {
                    path: "ca certificate".into(),
                    reason: e.to_string(),
                })?;
                b = b.add_root_certificate(cert);
            }
            b.build().map_err(|e| Error::Tls {
                path: "client".into(),
                reason: e.to_string(),
            })
        };
        Ok(Client {
            http: build(false)?,
            http_insecure: build(true)?,
            opts: options,
            state: Mutex::new(HashMap::new()),
            token_flight: tokio::sync::Mutex::new(()),
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    pub(crate) fn emit(&self, e: Event) {
        self.opts.progress.event(&e);
    }

    fn with_state<T>(&self, registry: &str, f: impl FnOnce(&mut RegistryState) -> T) -> T {
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(registry.to_owned()).or_default())
    }

    fn insecure_allowed(&self, registry: &str) -> bool {
        is_loopback(registry) || self.opts.insecure_registries.iter().any(|r| r == registry)
    }

    /// Find out whether the registry speaks https (or, where allowed, plain
    /// HTTP), and which auth scheme its `/v2/` asks for.
    async fn endpoint(&self, registry: &str) -> Result<Endpoint> {
        if let Some(e) = self.with_state(registry, |s| s.endpoint.clone()) {
            return Ok(e);
        }
        let host = crate::host::api_host(registry);
        // Loopback and named insecure registries: TLS certificates are
        // not checked (as docker does), and plain HTTP is the fallback.
        let https = Endpoint {
            base: format!("https://{host}"),
            insecure: self.insecure_allowed(registry),
        };
        let mut last_err = None;
        let mut chosen = None;
        for attempt in 0..=self.opts.retries.min(2) {
            match self
                .client_for(&https)
                .get(format!("{}/v2/", https.base))
                .send()
                .await
            {
                Ok(resp) => {
                    chosen = Some((https.clone(), resp));
                    break;
                }
                Err(e) if self.insecure_allowed(registry) => {
                    let http = Endpoint {
                        base: format!("http://{host}"),
                        insecure: true,
                    };
                    match self.http.get(format!("{}/v2/", http.base)).send().await {
                        Ok(resp) => {
                            chosen = Some((http, resp));
                            break;
                        }
                        Err(e2) => last_err = Some((e2, false)),
                    }
                    let _ = e;
                }
                Err(e) => {
                    let tls = !e.is_connect() || format!("{e:?}").contains("Tls");
                    last_err = Some((e, tls));
                }
            }
            if attempt < self.opts.retries.min(2) {
                tokio::time::sleep(self.opts.retry_delay * (attempt + 1)).await;
            }
        }
        let Some((ep, resp)) = chosen else {
            return Err(match last_err {
                Some((source, true)) => Error::InsecureRefused {
                    registry: registry.to_owned(),
                    source,
                },
                Some((source, false)) => Error::Connect {
                    registry: registry.to_owned(),
                    what: "GET /v2/".into(),
                    source,
                },
                None => Error::Status {
                    registry: registry.to_owned(),
                    repository: String::new(),
                    what: "GET /v2/".into(),
                    status: 0,
                    detail: "no answer".into(),
                },
            });
        };
        let scheme = scheme_from(resp.headers()).unwrap_or(Scheme::Anonymous);
        tracing::debug!(registry, base = %ep.base, ?scheme, "registry endpoint");
        self.with_state(registry, |s| {
            s.endpoint = Some(ep.clone());
            if s.scheme.is_none() {
                s.scheme = Some(scheme);
            }
        });
        Ok(ep)
    }

    fn client_for(&self, ep: &Endpoint) -> &reqwest::Client {
        if ep.insecure {
            &self.http_insecure
        } else {
            &self.http
        }
    }

    fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        if let Some(c) = self.with_state(registry, |s| s.credential.clone()) {
            return Ok(c);
        }
        let c = self.opts.auth.lookup(registry)?;
        self.with_state(registry, |s| s.credential = Some(c.clone()));
        Ok(c)
    }

    /// The Authorization header to send for `target`, fetching a token
    /// when the registry wants Bearer auth and none is cached for the scope.
    async fn auth_header(&self, target: &Target, ep: &Endpoint) -> Result<Option<String>> {
        let scheme = self.with_state(&target.registry, |s| s.scheme.clone());
        match scheme {
            None | Some(Scheme::Anonymous) => Ok(None),
            Some(Scheme::Basic) => Ok(self.credential(&target.registry)?.map(|c| c.basic_header())),
            Some(Scheme::Bearer { realm, service }) => {
                let key = target.scopes.join(" ");
                let cached = || {
                    self.with_state(&target.registry, |s| {
                        s.tokens
                            .get(&key)
                            .filter(|(_, exp)| *exp > Instant::now())
                            .map(|(t, _)| t.clone())
                    })
                };
                if let Some(t) = cached() {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let _flight = self.token_flight.lock().await;
                if let Some(t) = cached() {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self
                    .fetch_token(target, ep, &realm, service.as_deref())
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn fetch_token(
        &self,
        target: &Target,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in &target.scopes {
            query.push(("scope", s));
        }
        let cred = self.credential(&target.registry)?;
        let what = format!("a token for {}", target.scopes.join(" "));
        let mut attempt = 0;
        let resp = loop {
            let mut rb = self.client_for(ep).get(realm).query(&query);
            if let Some(c) = &cred {
                rb = rb.header(AUTHORIZATION, sensitive(&c.basic_header()));
            }
            match rb.send().await {
                Ok(r) if retryable(r.status()) && attempt < self.opts.retries => {
                    attempt += 1;
                    self.backoff(&what, r.status().to_string(), attempt, r.headers())
                        .await;
                }
                Ok(r) => break r,
                Err(e) if attempt < self.opts.retries => {
                    attempt += 1;
                    self.backoff(&what, e.to_string(), attempt, &HeaderMap::new())
                        .await;
                }
                Err(source) => {
                    return Err(Error::Connect {
                        registry: target.registry.clone(),
                        what,
                        source,
                    })
                }
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(status_error(status, target, &what, detail));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = resp.bytes().await.map_err(|source| Error::Connect {
            registry: target.registry.clone(),
            what: what.clone(),
            source,
        })?;
        let tr: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Status {
            registry: target.registry.clone(),
            repository: target.repository.clone(),
            what: what.clone(),
            status: status.as_u16(),
            detail: format!("token response is not valid JSON: {e}"),
        })?;
        let token = tr
            .token
            .filter(|t| !t.is_empty())
            .or(tr.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Status {
                registry: target.registry.clone(),
                repository: target.repository.clone(),
                what: what.clone(),
                status: status.as_u16(),
                detail: "token response has no token".into(),
            })?;
        // Renew a little early; 60 s is the spec's default lifetime.
        let ttl = Duration::from_secs(tr.expires_in.unwrap_or(60).max(10) - 5);
        let key = target.scopes.join(" ");
        self.with_state(&target.registry, |s| {
            s.tokens.insert(key, (token.clone(), Instant::now() + ttl));
        });
        Ok(token)
    }

    async fn backoff(&self, what: &str, reason: String, attempt: u32, headers: &HeaderMap) {
        let exp = self.opts.retry_delay * 2u32.saturating_pow(attempt.saturating_sub(1));
        let mut delay = exp.min(Duration::from_secs(10));
        if let Some(s) = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            delay = Duration::from_secs(s.min(60));
        }
        self.emit(Event::Retry {
            what: what.to_owned(),
            reason,
            attempt,
            delay,
        });
        tokio::time::sleep(delay).await;
    }

    /// Send a request built by `make` (called again for every attempt),
    /// with auth, retries on 429/5xx and transport errors, and one
    /// re-authentication on 401. The caller checks the final status.
    pub(crate) async fn send<F>(&self, target: &Target, what: &str, make: F) -> Result<Response>
    where
        F: Fn(&reqwest::Client, &str) -> RequestBuilder,
    {
        let ep = self.endpoint(&target.registry).await?;
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let client = self.client_for(&ep);
            let mut req = make(client, &ep.base)
                .build()
                .map_err(|source| Error::Connect {
                    registry: target.registry.clone(),
                    what: what.to_owned(),
                    source,
                })?;
            // Credentials go only to the registry itself, never to another
            // host named in a Location header.
            if same_origin(req.url(), &ep.base) {
                if let Some(h) = self.auth_header(target, &ep).await? {
                    req.headers_mut().insert(AUTHORIZATION, sensitive(&h));
                }
            }
            match client.execute(req).await {
                Err(e) => {
                    if attempt < self.opts.retries {
                        attempt += 1;
                        self.backoff(what, transport_reason(&e), attempt, &HeaderMap::new())
                            .await;
                        continue;
                    }
                    return Err(Error::Connect {
                        registry: target.registry.clone(),
                        what: what.to_owned(),
                        source: e,
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && !reauthed {
                        reauthed = true;
                        if self.learn_challenge(target, resp.headers()) {
                            continue;
                        }
                        return Ok(resp);
                    }
                    if retryable(status) && attempt < self.opts.retries {
                        attempt += 1;
                        self.backoff(what, status.to_string(), attempt, resp.headers())
                            .await;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    /// Take a 401's challenge into account; true when a retry may succeed.
    fn learn_challenge(&self, target: &Target, headers: &HeaderMap) -> bool {
        let Some(new) = scheme_from(headers) else {
            return false;
        };
        let has_cred = matches!(self.credential(&target.registry), Ok(Some(_)));
        self.with_state(&target.registry, |s| {
            let changed = match (&s.scheme, &new) {
                (Some(Scheme::Bearer { .. }), Scheme::Bearer { .. }) => {
                    // The token was refused (expired, or the scope grew):
                    // forget it and ask once more.
                    let key = target.scopes.join(" ");
                    s.tokens.remove(&key).is_some()
                }
                (Some(Scheme::Basic), Scheme::Basic) => false,
                _ => matches!(new, Scheme::Bearer { .. }) || has_cred,
            };
            s.scheme = Some(new);
            changed
        })
    }

    /// Check that the registry accepts the configured credentials (for
    /// `strata login`): `/v2/` with Basic auth, or a token for `/v2/`.
    pub async fn check_login(&self, registry: &str) -> Result<()> {
        let target = Target {
            registry: registry.to_owned(),
            repository: String::new(),
            scopes: Vec::new(),
        };
        let what = "log in (GET /v2/)";
        let scheme = {
            self.endpoint(registry).await?;
            self.with_state(registry, |s| s.scheme.clone())
        };
        if self.credential(registry)?.is_none() && !matches!(scheme, None | Some(Scheme::Anonymous))
        {
            return Err(status_error(
                StatusCode::UNAUTHORIZED,
                &target,
                what,
                "no credentials".into(),
            ));
        }
        let resp = self
            .send(&target, what, |c, base| c.get(format!("{base}/v2/")))
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = error_detail(resp).await;
        Err(status_error(status, &target, what, detail))
    }
}

/// Whether `url` is on the registry's own scheme, host and port.
fn same_origin(url: &reqwest::Url, base: &str) -> bool {
    match reqwest::Url::parse(base) {
        Ok(b) => {
            b.scheme() == url.scheme()
                && b.host_str() == url.host_str()
                && b.port_or_known_default() == url.port_or_known_default()
        }
        Err(_) => false,
    }
}

/// A header value that `Debug` (and so any log) shows as `Sensitive`.
fn sensitive(v: &str) -> HeaderValue {
    let mut h = HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static(""));
    h.set_sensitive(true);
    h
}

fn transport_reason(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn scheme_from(headers: &HeaderMap) -> Option<Scheme> {
    let mut found = None;
    for v in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(v) = v.to_str() else { continue };
        for c in parse_challenges(v) {
            match c.scheme.as_str() {
                "bearer" => {
                    if let Some(realm) = c.params.get("realm") {
                        return Some(Scheme::Bearer {
                            realm: realm.clone(),
                            service: c.params.get("service").cloned(),
                        });
                    }
                }
                "basic" => found = Some(Scheme::Basic),
                _ => {}
            }
        }
    }
    found
}

pub(crate) fn retryable(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS
        || s == StatusCode::INTERNAL_SERVER_ERROR
        || s == StatusCode::BAD_GATEWAY
        || s == StatusCode::SERVICE_UNAVAILABLE
        || s == StatusCode::GATEWAY_TIMEOUT
}

/// The registry's own error message(s) from an error body, shortened.
pub(crate) async fn error_detail(resp: Response) -> String {
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(_) => return String::new(),
    };
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<ErrItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrItem {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errs>(&body) {
        return e
            .errors
            .iter()
            .map(|i| match (&i.code, &i.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&body);
    let t = text.trim();
    t.chars().take(200).collect()
}

pub(crate) fn status_error(status: StatusCode, t: &Target, what: &str, detail: String) -> Error {
    let (registry, repository, what) = (t.registry.clone(), t.repository.clone(), what.to_owned());
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized {
            registry,
            repository,
            what,
            detail,
        },
        StatusCode::FORBIDDEN => Error::Denied {
            registry,
            repository,
            what,
            detail,
        },
        StatusCode::NOT_FOUND => Error::NotFound {
            registry,
            repository,
            what,
            detail,
        },
        s => Error::Status {
            registry,
            repository,
            what,
            status: s.as_u16(),
            detail,
        },
    }
}

/// Make a registry's `Location` header absolute.
pub(crate) fn absolute_location(base: &str, loc: &HeaderValue) -> Option<String> {
    let l = loc.to_str().ok()?;
    if l.starts_with("http://") || l.starts_with("https://") {
        Some(l.to_owned())
    } else if l.starts_with('/') {
        Some(format!("{base}{l}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn credentials_stay_on_the_registry() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(same_origin(
            &u("http://127.0.0.1:5000/v2/x/blobs/uploads/1"),
            "http://127.0.0.1:5000"
        ));
        assert!(same_origin(
            &u("https://r.example/v2/"),
            "https://r.example"
        ));
        assert!(!same_origin(
            &u("https://cdn.example/blob"),
            "https://r.example"
        ));
        assert!(!same_origin(
            &u("http://r.example/v2/"),
            "https://r.example"
        ));
        assert!(!same_origin(
            &u("https://r.example:444/v2/"),
            "https://r.example"
        ));
    }

    #[test]
    fn loopback_names() {
        for (r, want) in [
            ("localhost:5000", true),
            ("localhost", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("[::1]:5000", true),
            ("registry.example:5000", false),
            ("10.0.0.1:5000", false),
            ("docker.io", false),
        ] {
            assert_eq!(is_loopback(r), want, "{r}");
        }
    }
}
