//! Who may do what: htpasswd (bcrypt) Basic auth, anonymous pull, push
//! users and read-only mode.
//!
//! Password checks cost a bounded amount whoever asks: verdicts are cached
//! (a bounded number of them), a client whose passwords keep failing is
//! answered 429 without running bcrypt until its window ends, at most one
//! bcrypt runs per core at a time, and an unknown user is checked against a
//! dummy hash of the same cost, so it answers as slowly as a wrong password
//! (no user enumeration by timing).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use base64::Engine as _;
use strata_oci::Digest;

use super::errcode::{err, Code};
use super::AppState;
use crate::error::{Error, Result};

/// Password verdicts kept (successes and failures alike).
pub(super) const CACHE_MAX: usize = 1024;
/// Clients whose failures are tracked at once.
const CLIENTS_MAX: usize = 4096;
/// The window over which a client's failures are counted.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

pub(super) fn read_htpasswd(path: &PathBuf) -> Result<HashMap<String, String>> {
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

pub(super) enum Access {
    Pull,
    Push,
}

/// The outcome of a credential check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The password is right.
    Valid,
    /// Wrong password or unknown user (indistinguishable).
    Invalid,
    /// The client failed too often lately: retry after this long.
    Throttled(Duration),
}

/// Verdicts by sha256(user, password), oldest evicted first.
#[derive(Default)]
struct Cache {
    map: HashMap<Digest, bool>,
    order: VecDeque<Digest>,
}

impl Cache {
    fn get(&self, k: &Digest) -> Option<bool> {
        self.map.get(k).copied()
    }

    fn insert(&mut self, k: Digest, ok: bool) {
        if self.map.insert(k.clone(), ok).is_none() {
            self.order.push_back(k);
        }
        while self.map.len() > CACHE_MAX {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }
}

/// Failed bcrypt checks per client address in the current window.
#[derive(Default)]
struct Failures {
    by_client: HashMap<IpAddr, (Instant, u32)>,
}

impl Failures {
    /// How long `client` must wait, if it used up its failures.
    fn throttled(&mut self, client: IpAddr, limit: u32) -> Option<Duration> {
        let (since, n) = *self.by_client.get(&client)?;
        let age = since.elapsed();
        if age >= FAILURE_WINDOW {
            self.by_client.remove(&client);
            return None;
        }
        (n >= limit).then(|| FAILURE_WINDOW - age)
    }

    fn record(&mut self, client: IpAddr) {
        if self.by_client.len() >= CLIENTS_MAX && !self.by_client.contains_key(&client) {
            self.by_client
                .retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
            if self.by_client.len() >= CLIENTS_MAX {
                let oldest = self
                    .by_client
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.by_client.remove(&k);
                }
            }
        }
        let e = self
            .by_client
            .entry(client)
            .or_insert_with(|| (Instant::now(), 0));
        if e.0.elapsed() >= FAILURE_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

/// Checks Basic credentials against the htpasswd entries (see the module
/// doc for what bounds its cost).
pub(super) struct Authenticator {
    users: HashMap<String, String>,
    /// A hash of a random password at the entries' highest cost.
    dummy: String,
    cache: Mutex<Cache>,
    failures: Mutex<Failures>,
    /// Failed checks a client may make per window.
    failure_limit: u32,
    slots: tokio::sync::Semaphore,
    bcrypt_runs: AtomicU64,
}

/// The cost field of a `$2y$NN$...` hash.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

impl Authenticator {
    pub(super) fn new(users: HashMap<String, String>, failure_limit: u32) -> Authenticator {
        let cost = users
            .values()
            .filter_map(|h| bcrypt_cost(h))
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let secret =
            Digest::sha256(format!("{:?}{}", Instant::now(), std::process::id()).as_bytes());
        let dummy = if users.is_empty() {
            String::new()
        } else {
            bcrypt::hash(secret.hex(), cost).unwrap_or_default()
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Authenticator {
            users,
            dummy,
            cache: Mutex::new(Cache::default()),
            failures: Mutex::new(Failures::default()),
            failure_limit: failure_limit.max(1),
            slots: tokio::sync::Semaphore::new(cores),
            bcrypt_runs: AtomicU64::new(0),
        }
    }

    /// Check `user`'s `password` for a request from `client`.
    pub(super) async fn check(&self, client: IpAddr, user: &str, password: &str) -> Verdict {
        let mut key = Vec::with_capacity(user.len() + password.len() + 1);
        key.extend_from_slice(user.as_bytes());
        key.push(0);
        key.extend_from_slice(password.as_bytes());
        let key = Digest::sha256(&key);
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key);
        match cached {
            Some(true) => return Verdict::Valid,
            Some(false) => return Verdict::Invalid,
            None => {}
        }
        if let Some(wait) = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .throttled(client, self.failure_limit)
        {
            return Verdict::Throttled(wait);
        }
        // An unknown user costs the same bcrypt as a known one.
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let ok = {
            let Ok(_slot) = self.slots.acquire().await else {
                return Verdict::Invalid;
            };
            self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
            let pw = password.to_owned();
            let verified =
                tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash).unwrap_or(false))
                    .await
                    .unwrap_or(false);
            verified && known
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, ok);
        if ok {
            Verdict::Valid
        } else {
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(client);
            Verdict::Invalid
        }
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

pub(super) async fn authorize(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
    access: Access,
) -> Option<Response> {
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
            Some((u, p)) => match state.auth.check(client, &u, &p).await {
                Verdict::Valid => Some(u),
                Verdict::Invalid => None,
                Verdict::Throttled(wait) => {
                    let mut r = err(
                        Code::TooManyRequests,
                        "too many failed logins from this address; wait before trying again",
                    );
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(wait.as_secs().max(1)),
                    );
                    return Some(r);
                }
            },
            None => None,
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

pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(limit: u32) -> Authenticator {
        let users: HashMap<String, String> = [(
            "alice".to_owned(),
            bcrypt::hash("wonderland", 4).unwrap_or_default(),
        )]
        .into();
        Authenticator::new(users, limit)
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn runs(a: &Authenticator) -> u64 {
        a.bcrypt_runs.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn unknown_users_cost_a_bcrypt_like_wrong_passwords() {
        let a = alice(100);
        assert_eq!(bcrypt_cost(&a.dummy), Some(4), "dummy at the entries' cost");
        assert_eq!(a.check(HERE, "alice", "wrong").await, Verdict::Invalid);
        assert_eq!(runs(&a), 1);
        assert_eq!(a.check(HERE, "mallory", "wrong").await, Verdict::Invalid);
        assert_eq!(runs(&a), 2, "an unknown user ran bcrypt too");
        // Cached alike: neither runs bcrypt again.
        assert_eq!(a.check(HERE, "alice", "wrong").await, Verdict::Invalid);
        assert_eq!(a.check(HERE, "mallory", "wrong").await, Verdict::Invalid);
        assert_eq!(runs(&a), 2);
        // The dummy hash never lets anyone in, whatever the password.
        assert_eq!(a.check(HERE, "mallory", "").await, Verdict::Invalid);
        assert_eq!(a.check(HERE, "alice", "wonderland").await, Verdict::Valid);
    }

    #[tokio::test]
    async fn the_verdict_cache_is_bounded() {
        let a = alice(u32::MAX);
        for i in 0..(CACHE_MAX + 300) {
            a.check(HERE, "alice", &format!("guess {i}")).await;
        }
        assert_eq!(a.cached(), CACHE_MAX);
        assert_eq!(runs(&a), (CACHE_MAX + 300) as u64);
    }

    #[tokio::test]
    async fn a_client_that_keeps_failing_waits_without_costing_bcrypt() {
        let a = alice(3);
        assert_eq!(a.check(HERE, "alice", "wonderland").await, Verdict::Valid);
        for i in 0..3 {
            assert_eq!(
                a.check(HERE, "alice", &format!("guess {i}")).await,
                Verdict::Invalid
            );
        }
        let before = runs(&a);
        for i in 3..50 {
            let v = a.check(HERE, "mallory", &format!("guess {i}")).await;
            assert!(
                matches!(v, Verdict::Throttled(w) if w <= FAILURE_WINDOW),
                "{v:?}"
            );
        }
        assert_eq!(runs(&a), before, "no bcrypt while throttled");
        // A credential already verified still works; another client is
        // not affected.
        assert_eq!(a.check(HERE, "alice", "wonderland").await, Verdict::Valid);
        let other: IpAddr = "127.0.0.2".parse().unwrap_or(HERE);
        assert_eq!(a.check(other, "alice", "guess 99").await, Verdict::Invalid);
    }

    #[test]
    fn tracked_clients_are_bounded() {
        let mut f = Failures::default();
        for i in 0..(CLIENTS_MAX as u32 + 100) {
            f.record(IpAddr::V4(std::net::Ipv4Addr::from(i)));
        }
        assert!(f.by_client.len() <= CLIENTS_MAX);
    }
}
