//! Pull: resolve the reference to a manifest (choosing a platform from an
//! index), download the blobs the store lacks (`jobs` at a time, resuming
//! partial downloads with Range requests), verify each before it enters the
//! store, then store the documents as received and set the tag.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;
use strata_oci::{
    media_type, sniff_media_type, Descriptor, Digest, Hasher, Index, Manifest, Platform, Reference,
    Store, Writer, MAX_DOCUMENT_SIZE,
};

use super::{error_detail, status_error, Client, Target};
use crate::error::{Error, Result};
use crate::origins;
use crate::progress::{BlobKind, BlobOutcome, Event, PullSummary};

pub(super) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Write batches this big to the store in one blocking call.
const BATCH: usize = 1 << 20;

pub(super) struct Fetched {
    pub(super) desc: Descriptor,
    pub(super) raw: Vec<u8>,
}

impl Client {
    /// Pull `reference` (a tag or a digest) into the store: blobs already
    /// there are skipped, the rest downloaded and verified; the manifest
    /// (and index) are stored exactly as received and the tag is set (an
    /// image pulled by digest is kept untagged).
    pub async fn pull(&self, store: &Store, reference: &Reference) -> Result<PullSummary> {
        let registry = reference.domain().to_owned();
        let repository = reference.path().to_owned();
        let target = Target::new(&registry, &repository, false);
        let mut lease = store.lease("pull")?;
        let asked = reference
            .digest()
            .map(|d| d.to_string())
            .or_else(|| reference.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".into());
        let top = self
            .fetch_manifest(&target, &asked, reference.digest(), None)
            .await?;
        self.emit(Event::Resolved {
            reference: reference.clone(),
            digest: top.desc.digest.clone(),
        });
        let mut index: Option<Fetched> = None;
        let manifest_doc = if media_type::is_index(&top.desc.media_type) {
            let idx: Index =
                serde_json::from_slice(&top.raw).map_err(|e| Error::InvalidManifest {
                    registry: registry.clone(),
                    repository: repository.clone(),
                    what: format!("index {asked}"),
                    reason: e.to_string(),
                })?;
            let want = self.opts.platform.clone().unwrap_or_else(Platform::host);
            let chosen = idx
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
                .or_else(|| {
                    // An index without platforms (single image) is fine.
                    if idx.manifests.iter().all(|m| m.platform.is_none()) {
                        idx.manifests.first()
                    } else {
                        None
                    }
                })
                .ok_or_else(|| Error::NoPlatform {
                    reference: reference.familiar(),
                    platform: want.to_string(),
                    available: idx
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
                .clone();
            let child = self
                .fetch_manifest(
                    &target,
                    &chosen.digest.to_string(),
                    Some(&chosen.digest),
                    Some(&chosen),
                )
                .await?;
            if media_type::is_index(&child.desc.media_type) {
                return Err(Error::InvalidManifest {
                    registry,
                    repository,
                    what: format!("index {asked}"),
                    reason: "nested indexes are not supported".into(),
                });
            }
            index = Some(top);
            child
        } else {
            top
        };
        let manifest: Manifest =
            serde_json::from_slice(&manifest_doc.raw).map_err(|e| Error::InvalidManifest {
                registry: registry.clone(),
                repository: repository.clone(),
                what: format!("manifest {}", manifest_doc.desc.digest),
                reason: e.to_string(),
            })?;
        let mut blobs: Vec<(Descriptor, BlobKind)> =
            vec![(manifest.config.clone(), BlobKind::Config)];
        for l in &manifest.layers {
            if !blobs.iter().any(|(b, _)| b.digest == l.digest) {
                blobs.push((l.clone(), BlobKind::Layer));
            }
        }
        let received = Arc::new(AtomicU64::new(0));
        let jobs = self.opts.jobs.max(1);
        let outcomes: Vec<BlobOutcome> = match futures_util::stream::iter(blobs.iter())
            .map(|(d, kind)| self.pull_blob(store, &target, d, *kind, received.clone()))
            .buffer_unordered(jobs)
            .try_collect()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                // On a full disk, the partial downloads of this pull (the
                // failed one and those cut short with it) go: resuming
                // needs space there is not, and they only hold space.
                if strata_oci::is_no_space(&e) {
                    for (d, _) in &blobs {
                        abort_ingest(store, &format!("pull-{}", d.digest), d).await;
                    }
                }
                return Err(e);
            }
        };
        for (d, _) in &blobs {
            lease.add_digest(&d.digest)?;
        }
        // Everything verified: store documents, then the tag.
        let mdesc = store.put_json(&manifest_doc.desc.media_type, &manifest_doc.raw)?;
        lease.add_digest(&mdesc.digest)?;
        let top_desc = match &index {
            Some(i) => {
                let d = store.put_json(&i.desc.media_type, &i.raw)?;
                lease.add_digest(&d.digest)?;
                d
            }
            None => mdesc.clone(),
        };
        // The image must resolve (config parses, diff_ids match layers)
        // before a tag points at it.
        store.image(&top_desc, self.opts.platform.as_ref())?;
        if reference.tag().is_some() {
            store.tag(&reference.with_digest_removed(), &top_desc)?;
        } else {
            store.keep_untagged(&top_desc)?;
        }
        for (d, _) in &blobs {
            origins::record(store, &d.digest, &registry, &repository);
        }
        // Referrers (SBOMs, provenance, signatures) of the manifest and the
        // index come with the image.
        let mut referrers = 0;
        let mut subjects = vec![mdesc.digest.clone()];
        if index.is_some() {
            subjects.push(top_desc.digest.clone());
        }
        for s in &subjects {
            referrers += self
                .pull_referrers(store, &target, s, 0, &mut lease, &received)
                .await?;
        }
        let mut summary = PullSummary {
            reference: reference.clone(),
            digest: top_desc.digest.clone(),
            manifest: mdesc.digest.clone(),
            image_id: manifest.config.digest.clone(),
            downloaded: 0,
            present: 0,
            referrers,
            bytes_received: received.load(Ordering::Relaxed),
        };
        for o in outcomes {
            match o {
                BlobOutcome::Downloaded => summary.downloaded += 1,
                BlobOutcome::AlreadyPresent => summary.present += 1,
                _ => {}
            }
        }
        drop(lease);
        Ok(summary)
    }

    /// The referrers of `subject` in the repository: the referrers API,
    /// else the tag-schema fallback (`<alg>-<hex>`), else none. A registry
    /// that cannot answer either is not a reason to fail a pull.
    async fn list_referrers(&self, target: &Target, subject: &Digest) -> Vec<Descriptor> {
        let repo = target.repository.clone();
        let what = format!("GET referrers of {subject}");
        let resp = self
            .send(target, &what, |c, base| {
                c.get(format!("{base}/v2/{repo}/referrers/{subject}"))
                    .header(ACCEPT, media_type::OCI_INDEX)
            })
            .await;
        match resp {
            Ok(r) if r.status().is_success() => {
                let is_index = r
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| media_type::is_index(v.split(';').next().unwrap_or("")));
                if is_index {
                    if let Ok(body) = r.bytes().await {
                        if let Ok(idx) = serde_json::from_slice::<Index>(&body) {
                            return idx.manifests;
                        }
                    }
                }
            }
            Ok(r) => {
                tracing::debug!(status = %r.status(), %subject, "no referrers API; trying the fallback tag");
            }
            Err(e) => {
                tracing::debug!(%subject, "referrers API: {e}; trying the fallback tag");
            }
        }
        let tag = super::push::referrers_tag(subject);
        match self.fetch_manifest(target, &tag, None, None).await {
            Ok(f) => serde_json::from_slice::<Index>(&f.raw)
                .map(|i| i.manifests)
                .unwrap_or_default(),
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(%subject, "referrers of the image not pulled: {e}");
                }
                Vec::new()
            }
        }
    }

    /// Pull the referrers of `subject` (and theirs) into the store;
    /// returns how many were stored.
    fn pull_referrers<'a>(
        &'a self,
        store: &'a Store,
        target: &'a Target,
        subject: &'a Digest,
        depth: usize,
        lease: &'a mut strata_oci::Lease,
        received: &'a Arc<AtomicU64>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize>> + Send + 'a>> {
        Box::pin(async move {
            if depth >= 3 {
                return Ok(0);
            }
            let mut n = 0;
            for r in self.list_referrers(target, subject).await {
                if !media_type::is_manifest(&r.media_type) {
                    continue;
                }
                let doc = self
                    .fetch_manifest(target, &r.digest.to_string(), Some(&r.digest), Some(&r))
                    .await?;
                let m: Manifest =
                    serde_json::from_slice(&doc.raw).map_err(|e| Error::InvalidManifest {
                        registry: target.registry.clone(),
                        repository: target.repository.clone(),
                        what: format!("referrer {}", r.digest),
                        reason: e.to_string(),
                    })?;
                if m.subject.as_ref().map(|s| &s.digest) != Some(subject) {
                    continue;
                }
                for b in std::iter::once(&m.config).chain(&m.layers) {
                    self.pull_blob(store, target, b, BlobKind::Config, received.clone())
                        .await?;
                    lease.add_digest(&b.digest)?;
                }
                let desc = store.put_referrer(&doc.raw)?;
                lease.add_digest(&desc.digest)?;
                n += 1;
                n += self
                    .pull_referrers(store, target, &desc.digest, depth + 1, lease, received)
                    .await?;
            }
            Ok(n)
        })
    }

    /// GET a manifest or index, check it is JSON, its digest (against the
    /// reference's digest, the descriptor, and `Docker-Content-Digest`) and
    /// its size.
    pub(super) async fn fetch_manifest(
        &self,
        target: &Target,
        reference: &str,
        expected: Option<&Digest>,
        desc: Option<&Descriptor>,
    ) -> Result<Fetched> {
        let repo = target.repository.clone();
        let what = format!("manifest {reference}");
        let resp = self
            .send(target, &format!("GET {what}"), |c, base| {
                c.get(format!("{base}/v2/{repo}/manifests/{reference}"))
                    .header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(status_error(status, target, &what, detail));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = desc.map_or(MAX_DOCUMENT_SIZE, |d| d.size.min(MAX_DOCUMENT_SIZE));
        let size_err = |actual: u64| Error::SizeMismatch {
            registry: target.registry.clone(),
            repository: target.repository.clone(),
            what: what.clone(),
            expected: limit,
            actual,
        };
        if let Some(cl) = resp.content_length() {
            if cl > limit || desc.is_some_and(|d| d.size != cl) {
                return Err(size_err(cl));
            }
        }
        let mut raw = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| Error::Connect {
                registry: target.registry.clone(),
                what: format!("GET {what}"),
                source,
            })?;
            raw.extend_from_slice(&chunk);
            if raw.len() as u64 > limit {
                return Err(size_err(raw.len() as u64));
            }
        }
        if let Some(d) = desc {
            if d.size != raw.len() as u64 {
                return Err(size_err(raw.len() as u64));
            }
        }
        let check = |want: &Digest, label: &str| -> Result<()> {
            let mut h = Hasher::new(want.algorithm());
            h.update(&raw);
            let got = h.finish();
            if &got != want {
                return Err(Error::DigestMismatch {
                    registry: target.registry.clone(),
                    repository: target.repository.clone(),
                    what: format!("{what} ({label})"),
                    expected: want.to_string(),
                    actual: got.to_string(),
                });
            }
            Ok(())
        };
        if let Some(want) = expected {
            check(want, "asked digest")?;
        }
        if let Some(h) = &header_digest {
            let want: Digest = h.parse().map_err(|_| Error::InvalidManifest {
                registry: target.registry.clone(),
                repository: target.repository.clone(),
                what: what.clone(),
                reason: format!("Docker-Content-Digest {h:?} is not a digest"),
            })?;
            check(&want, "Docker-Content-Digest")?;
        }
        let invalid = |reason: String| Error::InvalidManifest {
            registry: target.registry.clone(),
            repository: target.repository.clone(),
            what: what.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(invalid("not a JSON object".into()));
        }
        let mt = match sniff_media_type(&raw) {
            Some(mt) => mt,
            None if media_type::is_manifest(&content_type)
                || media_type::is_index(&content_type) =>
            {
                content_type.clone()
            }
            None => {
                return Err(invalid(format!(
                    "unknown document (Content-Type {content_type:?})"
                )))
            }
        };
        if !media_type::is_manifest(&mt) && !media_type::is_index(&mt) {
            return Err(invalid(format!("unsupported media type {mt}")));
        }
        if media_type::is_manifest(&mt) {
            serde_json::from_slice::<Manifest>(&raw).map_err(|e| invalid(e.to_string()))?;
        } else {
            serde_json::from_slice::<Index>(&raw).map_err(|e| invalid(e.to_string()))?;
        }
        let digest = match expected {
            Some(d) => d.clone(),
            None => Digest::sha256(&raw),
        };
        let size = raw.len() as u64;
        Ok(Fetched {
            desc: Descriptor::new(mt, digest, size),
            raw,
        })
    }

    pub(super) async fn pull_blob(
        &self,
        store: &Store,
        target: &Target,
        desc: &Descriptor,
        kind: BlobKind,
        received: Arc<AtomicU64>,
    ) -> Result<BlobOutcome> {
        let digest = &desc.digest;
        let present = || {
            self.emit(Event::BlobDone {
                digest: digest.clone(),
                outcome: BlobOutcome::AlreadyPresent,
            });
            Ok(BlobOutcome::AlreadyPresent)
        };
        // Another process may be downloading the same blob: wait for it.
        let mut writer = loop {
            match store.writer(&format!("pull-{digest}"), Some(desc)) {
                Ok(w) => break w,
                Err(strata_oci::Error::AlreadyExists { .. }) => return present(),
                Err(strata_oci::Error::Locked(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let repo = target.repository.clone();
        let what = format!("blob {digest}");
        let mut attempt = 0u32;
        let mut started = false;
        loop {
            let offset = writer.offset();
            if offset > desc.size {
                writer = blocking(writer, |mut w| w.reset().map(|()| w)).await?;
                continue;
            }
            if !started || offset > 0 {
                self.emit(Event::BlobStart {
                    digest: digest.clone(),
                    size: desc.size,
                    kind,
                    offset,
                });
                started = true;
            }
            let resp = self
                .send(target, &format!("GET {what}"), |c, base| {
                    let rb = c.get(format!("{base}/v2/{repo}/blobs/{digest}"));
                    if offset > 0 && offset < desc.size {
                        rb.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        rb
                    }
                })
                .await?;
            let status = resp.status();
            if !status.is_success() {
                let detail = error_detail(resp).await;
                return Err(status_error(status, target, &what, detail));
            }
            let partial = status == StatusCode::PARTIAL_CONTENT
                && resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().starts_with(&format!("bytes {offset}-")));
            if !partial && writer.offset() > 0 {
                writer = blocking(writer, |mut w| w.reset().map(|()| w)).await?;
            }
            let start = writer.offset();
            let remaining = desc.size - start;
            let announced = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(cl) = announced {
                if cl != remaining {
                    let _ = blocking(writer, |w| w.abort()).await;
                    return Err(Error::SizeMismatch {
                        registry: target.registry.clone(),
                        repository: target.repository.clone(),
                        what,
                        expected: desc.size,
                        actual: cl + start,
                    });
                }
            }
            let mut stream = resp.bytes_stream();
            let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
            let mut got = start;
            let mut broken = None;
            loop {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        got += chunk.len() as u64;
                        if got > desc.size {
                            let _ = blocking(writer, |w| w.abort()).await;
                            return Err(Error::SizeMismatch {
                                registry: target.registry.clone(),
                                repository: target.repository.clone(),
                                what,
                                expected: desc.size,
                                actual: got,
                            });
                        }
                        received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        self.emit(Event::BlobBytes {
                            digest: digest.clone(),
                            bytes: chunk.len() as u64,
                        });
                        batch.extend_from_slice(&chunk);
                        if batch.len() >= BATCH {
                            let b = std::mem::take(&mut batch);
                            writer =
                                blocking(writer, move |mut w| w.write_all(&b).map(|()| w)).await?;
                        }
                    }
                    Some(Err(e)) => {
                        broken = Some(e);
                        break;
                    }
                    None => break,
                }
            }
            if !batch.is_empty() {
                let b = std::mem::take(&mut batch);
                writer = blocking(writer, move |mut w| w.write_all(&b).map(|()| w)).await?;
            }
            if got == desc.size {
                break;
            }
            // Short body or dropped connection: resume from what we have.
            if attempt >= self.opts.retries {
                return Err(match broken {
                    Some(source) => Error::Connect {
                        registry: target.registry.clone(),
                        what: format!("GET {what}"),
                        source,
                    },
                    None => Error::SizeMismatch {
                        registry: target.registry.clone(),
                        repository: target.repository.clone(),
                        what,
                        expected: desc.size,
                        actual: got,
                    },
                });
            }
            attempt += 1;
            self.backoff(
                &format!("GET {what}"),
                match &broken {
                    Some(e) => e.to_string(),
                    None => format!("connection closed after {got} of {} bytes", desc.size),
                },
                attempt,
                &Default::default(),
            )
            .await;
        }
        let size = desc.size;
        let expected = digest.clone();
        let committed =
            tokio::task::spawn_blocking(move || writer.commit(Some(size), Some(&expected)))
                .await
                .map_err(|e| Error::io("commit", store.root(), std::io::Error::other(e)))?;
        match committed {
            Ok(_) => {}
            Err(strata_oci::Error::DigestMismatch { actual, .. }) => {
                return Err(Error::DigestMismatch {
                    registry: target.registry.clone(),
                    repository: target.repository.clone(),
                    what,
                    expected: digest.to_string(),
                    actual,
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.emit(Event::BlobDone {
            digest: digest.clone(),
            outcome: BlobOutcome::Downloaded,
        });
        Ok(BlobOutcome::Downloaded)
    }
}

/// Remove the partial download `key` of `desc`, if there is one. A
/// download cut short may still be finishing a write on a blocking thread
/// (its future was dropped, the thread runs on): wait for it to let go, a
/// few seconds at most.
async fn abort_ingest(store: &Store, key: &str, desc: &Descriptor) {
    for _ in 0..250 {
        match store.writer(key, Some(desc)) {
            Ok(w) => {
                let _ = w.abort();
                return;
            }
            Err(strata_oci::Error::Locked(_)) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return,
        }
    }
}

/// Run a store operation on the writer off the async threads.
async fn blocking<T, E, F>(w: Writer, f: F) -> Result<T>
where
    T: Send + 'static,
    E: Into<StoreOrIo> + Send + 'static,
    F: FnOnce(Writer) -> std::result::Result<T, E> + Send + 'static,
{
    let path = w.path().to_owned();
    match tokio::task::spawn_blocking(move || f(w).map_err(Into::into)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(StoreOrIo::Store(e))) => Err(e.into()),
        // A full disk is the store's NoSpace, which names where.
        Ok(Err(StoreOrIo::Io(e))) => Err(strata_oci::Error::io("write", path, e).into()),
        Err(e) => Err(Error::io(
            "write to the store",
            path,
            std::io::Error::other(e),
        )),
    }
}

/// The two error types a writer operation can fail with.
pub(crate) enum StoreOrIo {
    Store(strata_oci::Error),
    Io(std::io::Error),
}

impl From<strata_oci::Error> for StoreOrIo {
    fn from(e: strata_oci::Error) -> Self {
        StoreOrIo::Store(e)
    }
}

impl From<std::io::Error> for StoreOrIo {
    fn from(e: std::io::Error) -> Self {
        StoreOrIo::Io(e)
    }
}

trait WithoutDigest {
    fn with_digest_removed(&self) -> Reference;
}

impl WithoutDigest for Reference {
    fn with_digest_removed(&self) -> Reference {
        match self.tag() {
            Some(t) => self.with_tag(t).unwrap_or_else(|_| self.clone()),
            None => self.clone(),
        }
    }
}
