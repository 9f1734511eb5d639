//! [`RegistryCache`]: the build cache in a registry repository
//! (`--cache-to/--cache-from type=registry,ref=REGISTRY/REPO[:TAG]`), in
//! the format of docs/cache.md: one OCI artifact manifest per cache key,
//! tagged `<TAG>-<key hex>`, so exports accumulate and never evict each
//! other.
//!
//! Costs: a lookup is one `GET /v2/<repo>/manifests/<TAG>-<key>` (404 is a
//! miss); an export HEADs each entry's tag, sends the layers the registry
//! lacks (HEAD-skip, cross-repository mount, upload; `jobs` at a time) and
//! puts one small manifest per new entry; `list` and `prune` read the tag
//! list (paginated) and each entry's manifest.
//!
//! A cache is an accelerator, so lookups fail fast: they use their own
//! client with at most one retry (after 100 ms), a 3 s connect timeout and a 10 s read
//! timeout, each lookup has a 15 s deadline, and after the first failure
//! that is not a miss (registry unreachable, refused credentials, a
//! timeout) every later lookup fails at once without a request
//! ([`CacheError::Unavailable`]). Exports, fetches, listings and prunes use
//! the options the cache was made with.
//!
//! The [`RemoteCache`] trait is synchronous: a `RegistryCache` owns a small
//! tokio runtime (2 worker threads) and runs each call on it, waiting on a
//! channel, so it may be called from any thread, inside another runtime
//! too (where it blocks that thread until the call is done).

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, LINK};
use reqwest::StatusCode;
use strata_oci::{
    cache_created_now, cache_entry_manifest, cache_entry_older_than, cache_entry_tag,
    empty_descriptor, is_cache_entry_tag, media_type, parse_cache_entry, CacheEntryError,
    CacheRecord, Descriptor, Digest, ExportReport, PruneReport, Reference, RemoteCache,
    RemoteEntry, RemoteError, Store, CACHE_REFRESH_AGE, DEFAULT_CACHE_TAG, EMPTY_JSON,
    MAX_DOCUMENT_SIZE,
};

use super::pull::{Fetched, MANIFEST_ACCEPT};
use super::push::Doc;
use super::{absolute_location, error_detail, status_error, Client, ClientOptions, Target};
use crate::error::{Error, Result};
use crate::origins;
use crate::progress::{BlobKind, BlobOutcome};

/// Connect timeout of lookups.
const LOOKUP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Read timeout of lookups.
const LOOKUP_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before a lookup's one retry.
const LOOKUP_RETRY_DELAY: Duration = Duration::from_millis(100);
/// The longest a lookup takes, retries and token requests included.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(15);
/// Tags asked for per page of the tag list.
const TAGS_PAGE: usize = 1000;

/// The error of a registry cache operation.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CacheError {
    /// The registry (or the store) failed; the error names the registry,
    /// the repository and what was asked.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Registry(#[from] Error),
    /// An earlier lookup failed (unreachable, refused, timed out): the
    /// registry is not asked again by this cache.
    #[error("{cache}: not asked again after an earlier failure ({first})")]
    Unavailable {
        /// The cache (`registry localhost:5000/app:cache`).
        cache: String,
        /// The first failure, with its causes.
        first: String,
    },
    /// A lookup did not finish in time.
    #[error("{cache}: no answer to {what} within {} s", .after.as_secs())]
    Timeout {
        /// The cache.
        cache: String,
        /// What was asked.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The cache's runtime stopped before the call finished (a panic in
    /// the call).
    #[error("{cache}: the call stopped before it finished")]
    Stopped {
        /// The cache.
        cache: String,
    },
}

impl From<strata_oci::Error> for CacheError {
    fn from(e: strata_oci::Error) -> CacheError {
        CacheError::Registry(Error::Store(e))
    }
}

impl CacheError {
    /// Whether a failed lookup says the cache cannot serve any lookup now
    /// (rather than something about one entry).
    fn disables_lookups(&self) -> bool {
        match self {
            CacheError::Registry(e) => !matches!(
                e,
                Error::NotFound { .. }
                    | Error::InvalidManifest { .. }
                    | Error::DigestMismatch { .. }
                    | Error::SizeMismatch { .. }
                    | Error::Store(_)
            ),
            CacheError::Timeout { .. } => true,
            CacheError::Unavailable { .. } | CacheError::Stopped { .. } => false,
        }
    }
}

/// A build cache in a registry repository. See the module docs.
///
/// ```no_run
/// use strata_oci::{Digest, RemoteCache};
/// use strata_registry::{ClientOptions, RegistryCache};
///
/// let cache = RegistryCache::new("localhost:5000/app", ClientOptions::default())?;
/// assert_eq!(cache.describe(), "registry localhost:5000/app:cache");
/// if let Some(hit) = cache.lookup(&Digest::sha256(b"a step's key"))? {
///     println!("layer: {:?}", hit.record.layer);
/// }
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub struct RegistryCache {
    inner: Arc<Inner>,
    /// Always `Some` until dropped (then shut down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    /// For exports, fetches, listings and prunes: the caller's options.
    client: Client,
    /// For lookups: few retries, short timeouts.
    quick: Client,
    registry: String,
    repository: String,
    tag: String,
    describe: String,
    /// The failure that disabled lookups (its text and causes).
    down: Mutex<Option<String>>,
    /// Where to record the repository of each hit's layer.
    origins: Option<Store>,
}

impl std::fmt::Debug for RegistryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCache")
            .field("cache", &self.inner.describe)
            .finish_non_exhaustive()
    }
}

/// One entry as listed: its tag, manifest digest and content.
struct Listed {
    digest: Digest,
    entry: RemoteEntry,
}

/// What an export does with one key.
enum Plan {
    /// Write this record (replacing the manifest `replaces`, if any).
    Write {
        record: Box<CacheRecord>,
        replaces: Option<Digest>,
    },
    /// The entry is there and stays.
    Present,
    /// Nothing to do (a refresh of an entry that is gone).
    Skip,
}

impl RegistryCache {
    /// The cache at `reference`, `registry/repository[:tag]` (the tag
    /// defaults to `cache`: a cache's entries are tagged `<tag>-<key>`),
    /// reached with `options` (those of push and pull: insecure
    /// registries, credentials, jobs, progress).
    pub fn new(reference: &str, options: ClientOptions) -> Result<RegistryCache> {
        let invalid = |why: String| Error::InvalidReference(format!("cache {reference:?}: {why}"));
        let parsed: Reference = reference.parse().map_err(|e| invalid(format!("{e}")))?;
        if parsed.digest().is_some() {
            return Err(invalid("a cache is named by a tag, not a digest".into()));
        }
        // References default to `latest`; a cache to `cache`.
        let last = reference.rsplit('/').next().unwrap_or(reference);
        let tag = match parsed.tag() {
            Some(t) if last.contains(':') => t.to_owned(),
            _ => DEFAULT_CACHE_TAG.to_owned(),
        };
        let named = parsed.with_tag(&tag).map_err(|e| invalid(e.to_string()))?;
        let quick = Client::new(ClientOptions {
            retries: options.retries.min(1),
            retry_delay: options.retry_delay.min(LOOKUP_RETRY_DELAY),
            connect_timeout: options.connect_timeout.min(LOOKUP_CONNECT_TIMEOUT),
            read_timeout: options.read_timeout.min(LOOKUP_READ_TIMEOUT),
            ..options.clone()
        })?;
        let client = Client::new(options)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-cache")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the runtime of", "the registry cache", e))?;
        Ok(RegistryCache {
            inner: Arc::new(Inner {
                client,
                quick,
                registry: named.domain().to_owned(),
                repository: named.path().to_owned(),
                tag,
                describe: format!("registry {}", named.familiar()),
                down: Mutex::new(None),
                origins: None,
            }),
            runtime: Some(runtime),
        })
    }

    /// Record in `store`, for each hit's layer, that it lives in this
    /// repository: a later push (or export) to another repository of the
    /// same registry then mounts it, though it was never downloaded.
    pub fn with_origins(mut self, store: Store) -> RegistryCache {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.origins = Some(store);
        }
        self
    }

    /// Run `fut` on the cache's runtime and wait for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = std::result::Result<T, CacheError>> + Send + 'static,
    ) -> std::result::Result<T, CacheError> {
        let stopped = || CacheError::Stopped {
            cache: self.inner.describe.clone(),
        };
        let rt = self.runtime.as_ref().ok_or_else(stopped)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| stopped())?
    }

    /// The entry for `key` (see [`RemoteCache::lookup`]).
    pub fn lookup_entry(
        &self,
        key: &Digest,
    ) -> std::result::Result<Option<RemoteEntry>, CacheError> {
        let inner = self.inner.clone();
        let key = key.clone();
        self.run(async move { inner.lookup(&key).await })
    }

    /// Copy a layer of this cache into `store`, verified.
    pub fn fetch(&self, store: &Store, desc: &Descriptor) -> std::result::Result<(), CacheError> {
        let inner = self.inner.clone();
        let (store, desc) = (store.clone(), desc.clone());
        self.run(async move { inner.fetch(&store, &desc).await })
    }

    /// Write `records` (see [`RemoteCache::export`]).
    pub fn export_records(
        &self,
        store: &Store,
        records: &[CacheRecord],
        refresh: &[Digest],
    ) -> std::result::Result<ExportReport, CacheError> {
        let inner = self.inner.clone();
        let (store, records, refresh) = (store.clone(), records.to_vec(), refresh.to_vec());
        self.run(async move { inner.export(&store, &records, &refresh).await })
    }

    /// Every entry, sorted by key.
    pub fn entries(&self) -> std::result::Result<Vec<RemoteEntry>, CacheError> {
        let inner = self.inner.clone();
        self.run(async move { Ok(inner.list().await?.into_iter().map(|l| l.entry).collect()) })
    }

    /// Remove the entries written `older_than` ago or earlier.
    pub fn prune_older_than(
        &self,
        older_than: Duration,
    ) -> std::result::Result<PruneReport, CacheError> {
        let inner = self.inner.clone();
        self.run(async move { inner.prune(older_than).await })
    }
}

impl Drop for RegistryCache {
    fn drop(&mut self) {
        // Never blocks (a runtime dropped inside another would panic).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl RemoteCache for RegistryCache {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn lookup(&self, key: &Digest) -> std::result::Result<Option<RemoteEntry>, RemoteError> {
        Ok(self.lookup_entry(key)?)
    }

    fn fetch_blob(&self, store: &Store, desc: &Descriptor) -> std::result::Result<(), RemoteError> {
        Ok(self.fetch(store, desc)?)
    }

    fn export(
        &self,
        store: &Store,
        records: &[CacheRecord],
        refresh: &[Digest],
    ) -> std::result::Result<ExportReport, RemoteError> {
        Ok(self.export_records(store, records, refresh)?)
    }

    fn list(&self) -> std::result::Result<Vec<RemoteEntry>, RemoteError> {
        Ok(self.entries()?)
    }

    fn prune(&self, older_than: Duration) -> std::result::Result<PruneReport, RemoteError> {
        Ok(self.prune_older_than(older_than)?)
    }

    fn mount_source(&self) -> Option<(String, String)> {
        Some((self.inner.registry.clone(), self.inner.repository.clone()))
    }
}

impl Inner {
    fn target(&self, push: bool) -> Target {
        Target::new(&self.registry, &self.repository, push)
    }

    async fn lookup(&self, key: &Digest) -> std::result::Result<Option<RemoteEntry>, CacheError> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(first) = down {
            return Err(CacheError::Unavailable {
                cache: self.describe.clone(),
                first,
            });
        }
        let tag = cache_entry_tag(&self.tag, key);
        let target = self.target(false);
        let got = tokio::time::timeout(
            LOOKUP_DEADLINE,
            self.quick.fetch_manifest(&target, &tag, None, None),
        )
        .await;
        let result = match got {
            Err(_) => Err(CacheError::Timeout {
                cache: self.describe.clone(),
                what: format!("GET manifest {tag}"),
                after: LOOKUP_DEADLINE,
            }),
            Ok(Err(e)) if e.is_not_found() => return Ok(None),
            Ok(Err(e)) => Err(CacheError::Registry(e)),
            Ok(Ok(fetched)) => self.entry_of(&tag, &fetched),
        };
        match result {
            Ok(Some(entry)) if &entry.record.key == key => {
                if let (Some(store), Some((d, _))) = (&self.origins, &entry.record.layer) {
                    origins::record(store, &d.digest, &self.registry, &self.repository);
                }
                Ok(Some(entry))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                if e.disables_lookups() {
                    *self.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(chain_text(&e));
                }
                Err(e)
            }
        }
    }

    /// The entry a fetched manifest holds (`None`: not a cache entry).
    fn entry_of(
        &self,
        tag: &str,
        fetched: &Fetched,
    ) -> std::result::Result<Option<RemoteEntry>, CacheError> {
        match parse_cache_entry(&fetched.raw) {
            Ok(e) => Ok(Some(e)),
            Err(CacheEntryError::Foreign) => Ok(None),
            Err(CacheEntryError::Invalid(reason)) => {
                Err(CacheError::Registry(Error::InvalidManifest {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    what: format!("cache entry {tag}"),
                    reason,
                }))
            }
        }
    }

    async fn fetch(&self, store: &Store, desc: &Descriptor) -> std::result::Result<(), CacheError> {
        let received = Arc::new(AtomicU64::new(0));
        self.client
            .pull_blob(store, &self.target(false), desc, BlobKind::Layer, received)
            .await?;
        origins::record(store, &desc.digest, &self.registry, &self.repository);
        Ok(())
    }

    /// Decide what to do with one key: HEAD its tag (GET for a hit to
    /// refresh, whose age matters).
    async fn plan(
        &self,
        target: &Target,
        key: &Digest,
        record: Option<&CacheRecord>,
        refresh: bool,
    ) -> Result<Plan> {
        let tag = cache_entry_tag(&self.tag, key);
        if !refresh {
            return Ok(match self.client.head_manifest(target, &tag).await? {
                true => Plan::Present,
                false => match record {
                    Some(r) => Plan::Write {
                        record: Box::new(r.clone()),
                        replaces: None,
                    },
                    None => Plan::Skip,
                },
            });
        }
        let fetched = match self.client.fetch_manifest(target, &tag, None, None).await {
            Ok(f) => f,
            Err(e) if e.is_not_found() => {
                return Ok(match record {
                    Some(r) => Plan::Write {
                        record: Box::new(r.clone()),
                        replaces: None,
                    },
                    None => Plan::Skip,
                })
            }
            Err(e) => return Err(e),
        };
        let existing = match self.entry_of(&tag, &fetched) {
            Ok(Some(e)) if &e.record.key == key => Some(e),
            _ => None,
        };
        Ok(match existing {
            // A refreshed record with another layer (a cache mount's new
            // contents) replaces the entry at once.
            Some(e)
                if !cache_entry_older_than(&e, CACHE_REFRESH_AGE)
                    && record.is_none_or(|r| r.layer == e.record.layer) =>
            {
                Plan::Present
            }
            Some(e) => Plan::Write {
                record: Box::new(record.cloned().unwrap_or(e.record)),
                replaces: Some(fetched.desc.digest),
            },
            // Broken or foreign under our tag: replaced when we can.
            None => match record {
                Some(r) => Plan::Write {
                    record: Box::new(r.clone()),
                    replaces: Some(fetched.desc.digest),
                },
                None => Plan::Skip,
            },
        })
    }

    async fn export(
        &self,
        store: &Store,
        records: &[CacheRecord],
        refresh: &[Digest],
    ) -> std::result::Result<ExportReport, CacheError> {
        let target = self.target(true);
        let jobs = self.client.options().jobs.max(1);
        let refresh: HashSet<&Digest> = refresh.iter().collect();
        let mut keys: Vec<(&Digest, Option<&CacheRecord>)> = Vec::new();
        let mut seen: HashSet<&Digest> = HashSet::new();
        for r in records {
            if seen.insert(&r.key) {
                keys.push((&r.key, Some(r)));
            }
        }
        for k in &refresh {
            if seen.insert(k) {
                keys.push((k, None));
            }
        }
        // 1. Which entries to write.
        let plans: Vec<_> = keys
            .iter()
            .map(|(k, r)| self.plan(&target, k, *r, refresh.contains(*k)))
            .collect();
        let plans: Vec<Plan> = futures_util::stream::iter(plans)
            .buffered(jobs)
            .try_collect()
            .await?;
        let mut report = ExportReport::default();
        let mut writes: Vec<(CacheRecord, Option<Digest>)> = Vec::new();
        for p in plans {
            match p {
                Plan::Write { record, replaces } => writes.push((*record, replaces)),
                Plan::Present => report.present += 1,
                Plan::Skip => {}
            }
        }
        if writes.is_empty() {
            return Ok(report);
        }
        // 2. Their blobs: the empty config, then each layer once.
        let mut lease = store.lease("cache export")?;
        let empty = empty_descriptor();
        store.put_blob(EMPTY_JSON)?;
        lease.add_digest(&empty.digest)?;
        let unsent = Arc::new(AtomicU64::new(0));
        self.client
            .push_blob(store, &target, &empty, BlobKind::Config, unsent)
            .await?;
        let mut layers: Vec<&Descriptor> = Vec::new();
        let mut unique: HashSet<&Digest> = HashSet::new();
        for (r, _) in &writes {
            if let Some((d, _)) = &r.layer {
                if unique.insert(&d.digest) {
                    layers.push(d);
                }
            }
        }
        let sent = Arc::new(AtomicU64::new(0));
        let pushes: Vec<_> = layers
            .iter()
            .map(|d| {
                self.client
                    .push_blob(store, &target, d, BlobKind::Layer, sent.clone())
            })
            .collect();
        let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(pushes)
            .buffer_unordered(jobs)
            .try_collect()
            .await?;
        for o in outcomes {
            match o {
                BlobOutcome::Uploaded => report.blobs_sent += 1,
                _ => report.blobs_skipped += 1,
            }
        }
        report.bytes_sent = sent.load(Ordering::Relaxed);
        for d in &layers {
            origins::record(store, &d.digest, &self.registry, &self.repository);
        }
        // 3. The manifests, one per entry.
        let created = cache_created_now();
        let puts: Vec<_> = writes
            .iter()
            .map(|(record, replaces)| {
                let target = &target;
                let created = &created;
                async move {
                    let tag = cache_entry_tag(&self.tag, &record.key);
                    let raw = cache_entry_manifest(record, created);
                    let desc = Descriptor::new(
                        media_type::OCI_MANIFEST,
                        Digest::sha256(&raw),
                        raw.len() as u64,
                    );
                    let doc = Doc { desc, raw };
                    self.client.put_manifest(target, &doc, &tag).await?;
                    // The manifest this one replaces is no longer tagged:
                    // remove it (best effort; registries may refuse
                    // deletes), so the repository does not keep it.
                    if let Some(old) = replaces.as_ref().filter(|o| **o != doc.desc.digest) {
                        if let Err(e) = self.client.delete_manifest(target, old).await {
                            tracing::debug!(%old, "replaced cache entry not deleted: {e}");
                        }
                    }
                    Ok::<(), Error>(())
                }
            })
            .collect();
        let put: Vec<()> = futures_util::stream::iter(puts)
            .buffer_unordered(jobs)
            .try_collect()
            .await?;
        report.entries = put.len();
        drop(lease);
        Ok(report)
    }

    /// Every entry of this cache: the tag list, then each manifest.
    async fn list(&self) -> std::result::Result<Vec<Listed>, CacheError> {
        let target = self.target(false);
        let jobs = self.client.options().jobs.max(1);
        let mut tags: Vec<String> = self
            .client
            .list_tags(&target)
            .await?
            .into_iter()
            .filter(|t| is_cache_entry_tag(&self.tag, t))
            .collect();
        tags.sort();
        let gets: Vec<_> = tags
            .iter()
            .map(|tag| {
                let target = &target;
                async move {
                    let fetched = match self.client.fetch_manifest(target, tag, None, None).await {
                        Ok(f) => f,
                        // Deleted since the tag list was read.
                        Err(e) if e.is_not_found() => return Ok(None),
                        Err(e) => return Err(CacheError::Registry(e)),
                    };
                    match self.entry_of(tag, &fetched) {
                        Ok(Some(entry)) => Ok(Some(Listed {
                            digest: fetched.desc.digest,
                            entry,
                        })),
                        Ok(None) => Ok(None),
                        Err(e) => {
                            tracing::warn!("{e}");
                            Ok(None)
                        }
                    }
                }
            })
            .collect();
        let found: Vec<Option<Listed>> = futures_util::stream::iter(gets)
            .buffered(jobs)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn prune(&self, older_than: Duration) -> std::result::Result<PruneReport, CacheError> {
        let target = self.target(true);
        let jobs = self.client.options().jobs.max(1);
        let listed = self.list().await?;
        let mut report = PruneReport::default();
        let mut old: Vec<&Digest> = Vec::new();
        for l in &listed {
            if cache_entry_older_than(&l.entry, older_than) {
                old.push(&l.digest);
            } else {
                report.kept += 1;
            }
        }
        // One manifest may back several tags only if two entries had the
        // same bytes, which their key annotations rule out.
        let deletes: Vec<_> = old
            .iter()
            .map(|d| self.client.delete_manifest(&target, d))
            .collect();
        let removed: Vec<bool> = futures_util::stream::iter(deletes)
            .buffer_unordered(jobs)
            .try_collect()
            .await?;
        report.removed = removed.len();
        Ok(report)
    }
}

/// An error and its causes, `: `-separated.
pub(super) fn chain_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The `rel="next"` target of a `Link` header.
fn next_link(h: &str) -> Option<String> {
    for part in h.split(',') {
        let part = part.trim();
        let (url, params) = part.split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        if params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
        {
            return Some(url.to_owned());
        }
    }
    None
}

impl Client {
    /// Whether the repository has the manifest `reference` (`HEAD`).
    pub(super) async fn head_manifest(&self, target: &Target, reference: &str) -> Result<bool> {
        let repo = target.repository.clone();
        let what = format!("HEAD manifest {reference}");
        let resp = self
            .send(target, &what, |c, base| {
                c.head(format!("{base}/v2/{repo}/manifests/{reference}"))
                    .header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => {
                let detail = error_detail(resp).await;
                Err(status_error(s, target, &what, detail))
            }
        }
    }

    /// Delete the manifest `digest` (and so the tags that point at it);
    /// `false` when it was already gone.
    pub(super) async fn delete_manifest(&self, target: &Target, digest: &Digest) -> Result<bool> {
        let repo = target.repository.clone();
        let what = format!("DELETE manifest {digest}");
        let resp = self
            .send(target, &what, |c, base| {
                c.delete(format!("{base}/v2/{repo}/manifests/{digest}"))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => {
                let detail = error_detail(resp).await;
                Err(status_error(s, target, &what, detail))
            }
        }
    }

    /// Every tag of the repository, following `Link` pagination; none
    /// when the repository does not exist.
    pub(super) async fn list_tags(&self, target: &Target) -> Result<Vec<String>> {
        self.list_tags_paged(target, TAGS_PAGE).await
    }

    async fn list_tags_paged(&self, target: &Target, page: usize) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            // docker-registry answers `null` for a repository without tags.
            tags: Option<Vec<String>>,
        }
        let repo = target.repository.clone();
        let mut next = format!("/v2/{repo}/tags/list?n={page}");
        let mut tags = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let what = "GET tags/list".to_owned();
            let url = next.clone();
            let resp = self
                .send(target, &what, |c, base| {
                    if url.starts_with("http://") || url.starts_with("https://") {
                        c.get(&url)
                    } else {
                        c.get(format!("{base}{url}"))
                    }
                })
                .await?;
            let status = resp.status();
            if status == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            if !status.is_success() {
                let detail = error_detail(resp).await;
                return Err(status_error(status, target, &what, detail));
            }
            let link = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let base = self.endpoint(&target.registry).await?.base;
            if resp.content_length().is_some_and(|n| n > MAX_DOCUMENT_SIZE) {
                return Err(Error::Status {
                    registry: target.registry.clone(),
                    repository: target.repository.clone(),
                    what,
                    status: status.as_u16(),
                    detail: "tag list page too big".into(),
                });
            }
            let body = resp.bytes().await.map_err(|source| Error::Connect {
                registry: target.registry.clone(),
                what: what.clone(),
                source,
            })?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| Error::Status {
                registry: target.registry.clone(),
                repository: target.repository.clone(),
                what: what.clone(),
                status: status.as_u16(),
                detail: format!("not a tag list: {e}"),
            })?;
            // (distribution 2.8 ignores `n` and answers every tag at once,
            // in no order, without a Link.)
            let before = tags.len();
            for t in page.tags.unwrap_or_default() {
                if seen.insert(t.clone()) {
                    tags.push(t);
                }
            }
            if tags.len() == before {
                break; // a page with nothing new: do not follow it further
            }
            match link {
                Some(l) if l.starts_with('/') => next = l,
                Some(l) => match reqwest::header::HeaderValue::from_str(&l)
                    .ok()
                    .and_then(|v| absolute_location(&base, &v))
                {
                    Some(abs) => next = abs,
                    None => break,
                },
                None => break,
            }
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tag_lists_are_read_page_by_page() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::ServeOptions {
            addr: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let (addr, stop) = crate::serve_until(Store::open(dir.path().join("s")).unwrap(), opts)
            .await
            .unwrap();
        let client = Client::new(ClientOptions::default()).unwrap();
        let local = Store::open(dir.path().join("local")).unwrap();
        local.put_blob(EMPTY_JSON).unwrap();
        let target = Target::new(&addr.to_string(), "t/x", true);
        let sent = Arc::new(AtomicU64::new(0));
        client
            .push_blob(&local, &target, &empty_descriptor(), BlobKind::Config, sent)
            .await
            .unwrap();
        let mut want = Vec::new();
        for i in 0..5u8 {
            let record = CacheRecord {
                chain: None,
                key: Digest::sha256(&[i]),
                layer: None,
            };
            let raw = cache_entry_manifest(&record, "2025-01-01T00:00:00Z");
            let desc = Descriptor::new(
                media_type::OCI_MANIFEST,
                Digest::sha256(&raw),
                raw.len() as u64,
            );
            let tag = format!("t{i}");
            client
                .put_manifest(&target, &Doc { desc, raw }, &tag)
                .await
                .unwrap();
            want.push(tag);
        }
        assert_eq!(client.list_tags_paged(&target, 2).await.unwrap(), want);
        assert_eq!(client.list_tags(&target).await.unwrap(), want);
        let none = Target::new(&addr.to_string(), "t/none", false);
        assert!(client.list_tags(&none).await.unwrap().is_empty());
        stop.send(()).ok();
    }

    #[test]
    fn link_headers() {
        for (h, want) in [
            (
                r#"</v2/x/tags/list?n=2&last=b>; rel="next""#,
                Some("/v2/x/tags/list?n=2&last=b"),
            ),
            (
                r#"<https://r.example/v2/x/tags/list?last=b>; rel=next"#,
                Some("https://r.example/v2/x/tags/list?last=b"),
            ),
            (r#"</a>; rel="prev", </b>; rel="next""#, Some("/b")),
            (r#"</a>; rel="prev""#, None),
            ("garbage", None),
        ] {
            assert_eq!(next_link(h).as_deref(), want, "{h}");
        }
    }
}
