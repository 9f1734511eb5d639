//! Push: HEAD every blob first, mount what another repository of the same
//! registry has, upload the rest (one PUT for small blobs, PATCH chunks for
//! large ones, resuming an interrupted upload), then put the manifest(s).

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::StatusCode;
use strata_oci::{media_type, Descriptor, Digest, Image, Index, Manifest, Reference, Store};
use tokio::io::AsyncReadExt;

use super::{absolute_location, error_detail, status_error, Client, Target};
use crate::error::{Error, Result};
use crate::origins;
use crate::progress::{BlobKind, BlobOutcome, Event, PushSummary};

/// A manifest or index to put, with its raw bytes.
#[derive(Debug, Clone)]
pub(super) struct Doc {
    pub(super) desc: Descriptor,
    pub(super) raw: Vec<u8>,
}

/// What a push of an image sends, decided before anything is sent: the
/// manifests it puts (for an image stored with its whole index, every
/// platform's manifest and then the index; else the image's manifest) and
/// the blobs they reference. A registry that already has a blob receives
/// none of its bytes; it receives every manifest. `strata diff` predicts a
/// push from the same content.
#[derive(Debug, Clone)]
pub struct PushContent {
    manifests: Vec<(Doc, Manifest)>,
    index: Option<Doc>,
    /// Referrers (SBOMs, provenance, signatures) of the manifests and the
    /// index, and their own referrers: put after the image, by digest.
    referrers: Vec<(Doc, Digest)>,
    blobs: Vec<(Descriptor, BlobKind)>,
}

/// How deep referrers of referrers are followed (a signature of an SBOM).
const REFERRER_DEPTH: usize = 3;

/// The referrers of `subject` in the store, and theirs, depth first;
/// `(document, subject digest)`.
fn store_referrers(
    store: &Store,
    subject: &Digest,
    depth: usize,
    out: &mut Vec<(Doc, Manifest, Digest)>,
) -> Result<()> {
    if depth >= REFERRER_DEPTH {
        return Ok(());
    }
    for r in store.referrers(subject, None)? {
        if out.iter().any(|(d, _, _)| d.desc.digest == r.digest) {
            continue;
        }
        let raw = store.read_blob(&r.digest)?;
        let Ok(m) = serde_json::from_slice::<Manifest>(&raw) else {
            continue;
        };
        if !m
            .layers
            .iter()
            .chain(std::iter::once(&m.config))
            .all(|d| store.has(&d.digest))
        {
            continue;
        }
        let digest = r.digest.clone();
        out.push((Doc { desc: r, raw }, m, subject.clone()));
        store_referrers(store, &digest, depth + 1, out)?;
    }
    Ok(())
}

impl PushContent {
    /// What a push of `image` (resolved from `store`) sends.
    pub fn of(store: &Store, image: &Image) -> Result<PushContent> {
        let mut manifests: Vec<(Doc, Manifest)> = Vec::new();
        let mut index: Option<Doc> = None;
        if let Some(idx_desc) = &image.index {
            // The whole index when every manifest it lists (with its blobs)
            // is here; else just the chosen image.
            let raw = store.read_blob(&idx_desc.digest)?;
            if let Ok(parsed) = serde_json::from_slice::<Index>(&raw) {
                let mut all = Vec::new();
                for m in &parsed.manifests {
                    let Ok(mraw) = store.read_blob(&m.digest) else {
                        break;
                    };
                    let Ok(mparsed) = serde_json::from_slice::<Manifest>(&mraw) else {
                        break;
                    };
                    if !mparsed
                        .layers
                        .iter()
                        .chain(std::iter::once(&mparsed.config))
                        .all(|d| store.has(&d.digest))
                    {
                        break;
                    }
                    all.push((
                        Doc {
                            desc: m.clone(),
                            raw: mraw,
                        },
                        mparsed,
                    ));
                }
                if all.len() == parsed.manifests.len() && !all.is_empty() {
                    manifests = all;
                    index = Some(Doc {
                        desc: idx_desc.clone(),
                        raw,
                    });
                }
            }
        }
        if manifests.is_empty() {
            manifests.push((
                Doc {
                    desc: image.descriptor.clone(),
                    raw: image.manifest_raw.clone(),
                },
                image.manifest.clone(),
            ));
        }
        let mut found = Vec::new();
        for d in manifests
            .iter()
            .map(|(d, _)| &d.desc.digest)
            .chain(index.iter().map(|d| &d.desc.digest))
        {
            store_referrers(store, d, 0, &mut found)?;
        }
        // Every blob once, config first (docker's order).
        let mut blobs: Vec<(Descriptor, BlobKind)> = Vec::new();
        for m in manifests
            .iter()
            .map(|(_, m)| m)
            .chain(found.iter().map(|(_, m, _)| m))
        {
            let items = std::iter::once((&m.config, BlobKind::Config))
                .chain(m.layers.iter().map(|l| (l, BlobKind::Layer)));
            for (d, kind) in items {
                if !blobs.iter().any(|(b, _)| b.digest == d.digest) {
                    blobs.push((d.clone(), kind));
                }
            }
        }
        Ok(PushContent {
            manifests,
            index,
            referrers: found.into_iter().map(|(d, _, s)| (d, s)).collect(),
            blobs,
        })
    }

    /// The blobs (configs and layers), each once, in the order they are
    /// pushed.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.blobs.iter().map(|(d, _)| d)
    }

    /// The manifests, then the index (when the whole index goes), then
    /// the referrers, in the order they are put.
    pub fn documents(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests
            .iter()
            .map(|(d, _)| &d.desc)
            .chain(self.index.iter().map(|d| &d.desc))
            .chain(self.referrers.iter().map(|(d, _)| &d.desc))
    }

    /// The referrers that go with the image (SBOMs, provenance,
    /// signatures), in the order they are put.
    pub fn referrers(&self) -> impl Iterator<Item = &Descriptor> {
        self.referrers.iter().map(|(d, _)| &d.desc)
    }

    /// Bytes of the manifests, the index and the referrers: what a push
    /// sends besides blobs (to a registry without the referrers API, the
    /// fallback tag's index goes too).
    pub fn manifest_bytes(&self) -> u64 {
        self.manifests
            .iter()
            .map(|(d, _)| &d.raw)
            .chain(self.index.iter().map(|d| &d.raw))
            .chain(self.referrers.iter().map(|(d, _)| &d.raw))
            .map(|r| r.len() as u64)
            .sum()
    }
}

impl Client {
    /// Push the image `image` (a name, `name@digest` or image ID in the
    /// store) to `dest`. Blobs the registry has are skipped, blobs known to
    /// live in another repository of the same registry are mounted, the
    /// rest are uploaded, `jobs` at a time; then the manifest is put (for
    /// an image stored with its whole index: every manifest, then the index).
    /// What is sent is [`PushContent::of`] the image.
    pub async fn push(&self, store: &Store, image: &str, dest: &Reference) -> Result<PushSummary> {
        let img = store.find_image(image)?;
        let PushContent {
            manifests,
            index: top,
            referrers,
            blobs,
        } = PushContent::of(store, &img)?;
        let registry = dest.domain().to_owned();
        let repository = dest.path().to_owned();
        let target = Target::new(&registry, &repository, true);
        let sent = Arc::new(AtomicU64::new(0));
        let jobs = self.opts.jobs.max(1);
        let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(blobs.iter())
            .map(|(d, kind)| self.push_blob(store, &target, d, *kind, sent.clone()))
            .buffer_unordered(jobs)
            .try_collect()
            .await?;
        let mut summary = PushSummary {
            reference: dest.clone(),
            digest: manifests[0].0.desc.digest.clone(),
            size: manifests[0].0.desc.size,
            uploaded: 0,
            skipped: 0,
            mounted: 0,
            manifests: 0,
            referrers: 0,
            bytes_sent: sent.load(Ordering::Relaxed),
            manifest_bytes: 0,
        };
        for o in &outcomes {
            match o {
                BlobOutcome::Uploaded => summary.uploaded += 1,
                BlobOutcome::Exists => summary.skipped += 1,
                BlobOutcome::Mounted { .. } => summary.mounted += 1,
                _ => {}
            }
        }
        // Manifests: by digest when an index follows, else by the tag.
        let final_ref = dest
            .tag()
            .map(str::to_owned)
            .or_else(|| dest.digest().map(|d| d.to_string()))
            .unwrap_or_else(|| "latest".to_owned());
        let single = top.is_none();
        for (doc, _) in &manifests {
            let r = if single {
                final_ref.clone()
            } else {
                doc.desc.digest.to_string()
            };
            self.put_manifest(&target, doc, &r).await?;
            summary.manifests += 1;
            summary.manifest_bytes += doc.raw.len() as u64;
        }
        if let Some(doc) = &top {
            self.put_manifest(&target, doc, &final_ref).await?;
            summary.manifests += 1;
            summary.manifest_bytes += doc.raw.len() as u64;
            summary.digest = doc.desc.digest.clone();
            summary.size = doc.desc.size;
        }
        // Referrers after their subjects, by digest; a registry that does
        // not answer `OCI-Subject` gets the tag-schema fallback index.
        for (doc, subject) in &referrers {
            let acknowledged = self
                .put_manifest(&target, doc, &doc.desc.digest.to_string())
                .await?;
            summary.manifests += 1;
            summary.referrers += 1;
            summary.manifest_bytes += doc.raw.len() as u64;
            if acknowledged.as_ref() != Some(subject) {
                summary.manifest_bytes += self
                    .add_to_fallback_index(&target, subject, &doc.desc)
                    .await?;
            }
        }
        summary.bytes_sent += summary.manifest_bytes;
        for (d, _) in &blobs {
            origins::record(store, &d.digest, &registry, &repository);
        }
        Ok(summary)
    }

    /// Add `referrer` to the referrers tag-schema fallback of `subject`
    /// (the index tagged `<alg>-<hex>`), for a registry without the
    /// referrers API. Returns the bytes of the index put (0 when it
    /// already listed the referrer).
    async fn add_to_fallback_index(
        &self,
        target: &Target,
        subject: &Digest,
        referrer: &Descriptor,
    ) -> Result<u64> {
        let tag = referrers_tag(subject);
        let mut index = match self.fetch_manifest(target, &tag, None, None).await {
            Ok(f) => {
                serde_json::from_slice::<Index>(&f.raw).map_err(|e| Error::InvalidManifest {
                    registry: target.registry.clone(),
                    repository: target.repository.clone(),
                    what: format!("referrers fallback index {tag}"),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.is_not_found() => Index::oci(Vec::new()),
            Err(e) => return Err(e),
        };
        if index.manifests.iter().any(|m| m.digest == referrer.digest) {
            return Ok(0);
        }
        index.manifests.push(referrer.clone());
        let raw = index.to_json();
        let desc = Descriptor::new(
            media_type::OCI_INDEX,
            Digest::sha256(&raw),
            raw.len() as u64,
        );
        let n = raw.len() as u64;
        self.put_manifest(target, &Doc { desc, raw }, &tag).await?;
        Ok(n)
    }

    /// Put a manifest or index under `reference`; returns the subject the
    /// registry acknowledged (`OCI-Subject`), if any.
    pub(super) async fn put_manifest(
        &self,
        target: &Target,
        doc: &Doc,
        reference: &str,
    ) -> Result<Option<Digest>> {
        let mt = if doc.desc.media_type.is_empty() {
            strata_oci::sniff_media_type(&doc.raw)
                .unwrap_or_else(|| media_type::OCI_MANIFEST.into())
        } else {
            doc.desc.media_type.clone()
        };
        let what = format!("PUT manifest {reference}");
        let repo = target.repository.clone();
        let resp = self
            .send(target, &what, |c, base| {
                c.put(format!("{base}/v2/{repo}/manifests/{reference}"))
                    .header(CONTENT_TYPE, mt.as_str())
                    .body(doc.raw.clone())
            })
            .await?;
        let status = resp.status();
        if status != StatusCode::CREATED && !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(status_error(status, target, &what, detail));
        }
        if let Some(got) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            if got != doc.desc.digest && got.algorithm() == doc.desc.digest.algorithm() {
                return Err(Error::DigestMismatch {
                    registry: target.registry.clone(),
                    repository: target.repository.clone(),
                    what: format!("manifest {reference} as stored by the registry"),
                    expected: doc.desc.digest.to_string(),
                    actual: got.to_string(),
                });
            }
        }
        Ok(resp
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok()))
    }

    pub(super) async fn push_blob(
        &self,
        store: &Store,
        target: &Target,
        desc: &Descriptor,
        kind: BlobKind,
        sent: Arc<AtomicU64>,
    ) -> Result<BlobOutcome> {
        let digest = &desc.digest;
        let repo = target.repository.clone();
        // 1. Does the registry have it?
        let what = format!("HEAD blob {digest}");
        let resp = self
            .send(target, &what, |c, base| {
                c.head(format!("{base}/v2/{repo}/blobs/{digest}"))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {
                self.emit(Event::BlobDone {
                    digest: digest.clone(),
                    outcome: BlobOutcome::Exists,
                });
                return Ok(BlobOutcome::Exists);
            }
            StatusCode::NOT_FOUND => {}
            s => {
                let detail = error_detail(resp).await;
                return Err(status_error(s, target, &what, detail));
            }
        }
        let path = store.blob_path(digest);
        // A blob the store lacks (a layer a build took from a registry
        // cache without downloading it) can still be mounted.
        let local = match store.blob_size(digest) {
            Ok(size) if size != desc.size => {
                return Err(Error::SizeMismatch {
                    registry: "local store".into(),
                    repository: String::new(),
                    what: format!("blob {digest}"),
                    expected: desc.size,
                    actual: size,
                })
            }
            Ok(size) => Some(size),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        // 2. Mount from a repository of the same registry that has it.
        let mut location: Option<String> = None;
        for (reg, from) in origins::lookup(store, digest) {
            if reg != target.registry || from == target.repository {
                continue;
            }
            let mut mt = target.clone();
            mt.scopes.push(format!("repository:{from}:pull"));
            let what = format!("mount blob {digest} from {from}");
            let resp = self
                .send(&mt, &what, |c, base| {
                    c.post(format!("{base}/v2/{repo}/blobs/uploads/"))
                        .query(&[("mount", digest.to_string()), ("from", from.clone())])
                        .header(CONTENT_LENGTH, 0)
                })
                .await?;
            match resp.status() {
                StatusCode::CREATED => {
                    let outcome = BlobOutcome::Mounted { from: from.clone() };
                    self.emit(Event::BlobDone {
                        digest: digest.clone(),
                        outcome: outcome.clone(),
                    });
                    return Ok(outcome);
                }
                StatusCode::ACCEPTED => {
                    let base = self.endpoint(&target.registry).await?.base;
                    location = resp
                        .headers()
                        .get(LOCATION)
                        .and_then(|l| absolute_location(&base, l));
                    break;
                }
                s => {
                    tracing::debug!(%digest, %from, status = %s, "mount refused, uploading");
                }
            }
        }
        // A remote blob no mount could give: downloaded from where it lives,
        // then uploaded.
        let local = match local {
            None if store.remote_blob(digest).is_some() => {
                let mut got = None;
                for (reg, from) in origins::lookup(store, digest) {
                    let source = Target::new(&reg, &from, false);
                    let received = Arc::new(AtomicU64::new(0));
                    match self.pull_blob(store, &source, desc, kind, received).await {
                        Ok(_) => {
                            got = Some(desc.size);
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(%digest, %reg, %from, error = %e, "cannot download a remote blob to push it")
                        }
                    }
                }
                got
            }
            other => other,
        };
        let Some(size) = local else {
            return Err(Error::Store(strata_oci::Error::NotFound {
                what: format!(
                    "blob {digest} (not in the store, and in no other repository of {} known to strata)",
                    target.registry
                ),
            }));
        };
        // 3. Resume an upload an earlier run left, or start one.
        let record = resume_record(store, &target.registry, &target.repository, digest);
        let mut offset = 0u64;
        if location.is_none() {
            if let Some(loc) = std::fs::read_to_string(&record)
                .ok()
                .filter(|l| !l.is_empty())
            {
                if let Some(o) = self.upload_status(target, &loc).await {
                    location = Some(loc);
                    offset = o;
                }
            }
        }
        let mut location = match location {
            Some(l) => l,
            None => self.start_upload(target).await?,
        };
        // A resumed upload the registry then refuses (the part it kept was
        // damaged) is started over once, from the first byte.
        let mut resumed = offset > 0;
        loop {
            self.emit(Event::BlobStart {
                digest: digest.clone(),
                size,
                kind,
                offset,
            });
            let base = self.endpoint(&target.registry).await?.base;
            if size <= self.opts.monolithic_max && offset == 0 {
                let what = format!("upload blob {digest}");
                let resp = self
                    .send(target, &what, |c, _| {
                        c.put(&location)
                            .query(&[("digest", digest.to_string())])
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, size)
                            .body(self.file_body(&path, 0, size, digest, sent.clone()))
                    })
                    .await?;
                let s = resp.status();
                if s != StatusCode::CREATED && !s.is_success() {
                    let detail = error_detail(resp).await;
                    return Err(status_error(s, target, &what, detail));
                }
            } else {
                let chunk = self.opts.chunk_size.max(1);
                let mut stalls = 0;
                while offset < size {
                    let end = (offset + chunk).min(size);
                    let what = format!("upload blob {digest} bytes {offset}-{}", end - 1);
                    let loc = location.clone();
                    let resp = self
                        .send(target, &what, |c, _| {
                            c.patch(&loc)
                                .header(CONTENT_TYPE, "application/octet-stream")
                                .header("content-range", format!("{offset}-{}", end - 1))
                                .header(CONTENT_LENGTH, end - offset)
                                .body(self.file_body(
                                    &path,
                                    offset,
                                    end - offset,
                                    digest,
                                    sent.clone(),
                                ))
                        })
                        .await;
                    let ok = match resp {
                        Ok(r) if r.status() == StatusCode::ACCEPTED || r.status().is_success() => {
                            if let Some(l) = r
                                .headers()
                                .get(LOCATION)
                                .and_then(|l| absolute_location(&base, l))
                            {
                                location = l;
                            }
                            offset = end;
                            let _ = write_record(&record, &location);
                            true
                        }
                        Ok(r) if r.status() == StatusCode::RANGE_NOT_SATISFIABLE => false,
                        Ok(r) => {
                            let s = r.status();
                            let detail = error_detail(r).await;
                            return Err(status_error(s, target, &what, detail));
                        }
                        Err(e @ Error::Connect { .. }) => {
                            // The registry may have kept part of the chunk.
                            if stalls >= 3 {
                                return Err(e);
                            }
                            false
                        }
                        Err(e) => return Err(e),
                    };
                    if !ok {
                        stalls += 1;
                        if stalls > 3 {
                            return Err(Error::Status {
                                registry: target.registry.clone(),
                                repository: target.repository.clone(),
                                what,
                                status: 416,
                                detail: "the registry keeps refusing the upload offset".into(),
                            });
                        }
                        match self.upload_status(target, &location).await {
                            Some(o) => offset = o,
                            None => {
                                location = self.start_upload(target).await?;
                                offset = 0;
                            }
                        }
                        self.emit(Event::BlobStart {
                            digest: digest.clone(),
                            size,
                            kind,
                            offset,
                        });
                    }
                }
                let what = format!("finish upload of blob {digest}");
                let loc = location.clone();
                let resp = self
                    .send(target, &what, |c, _| {
                        c.put(&loc)
                            .query(&[("digest", digest.to_string())])
                            .header(CONTENT_LENGTH, 0)
                    })
                    .await?;
                let s = resp.status();
                if s == StatusCode::BAD_REQUEST && resumed {
                    tracing::info!(%digest, "the registry refused the resumed upload; starting over");
                    let _ = std::fs::remove_file(&record);
                    location = self.start_upload(target).await?;
                    offset = 0;
                    resumed = false;
                    continue;
                }
                if s != StatusCode::CREATED && !s.is_success() {
                    let detail = error_detail(resp).await;
                    return Err(status_error(s, target, &what, detail));
                }
            }
            break;
        }
        let _ = std::fs::remove_file(&record);
        self.emit(Event::BlobDone {
            digest: digest.clone(),
            outcome: BlobOutcome::Uploaded,
        });
        Ok(BlobOutcome::Uploaded)
    }

    async fn start_upload(&self, target: &Target) -> Result<String> {
        let repo = target.repository.clone();
        let what = "start a blob upload".to_owned();
        let resp = self
            .send(target, &what, |c, base| {
                c.post(format!("{base}/v2/{repo}/blobs/uploads/"))
                    .header(CONTENT_LENGTH, 0)
            })
            .await?;
        let s = resp.status();
        if s != StatusCode::ACCEPTED {
            let detail = error_detail(resp).await;
            return Err(status_error(s, target, &what, detail));
        }
        let base = self.endpoint(&target.registry).await?.base;
        resp.headers()
            .get(LOCATION)
            .and_then(|l| absolute_location(&base, l))
            .ok_or_else(|| Error::Status {
                registry: target.registry.clone(),
                repository: target.repository.clone(),
                what,
                status: s.as_u16(),
                detail: "no Location header".into(),
            })
    }

    /// How many bytes an upload session holds (`Range: 0-N`), or `None`
    /// when it is gone.
    async fn upload_status(&self, target: &Target, location: &str) -> Option<u64> {
        let resp = self
            .send(target, "upload status", |c, _| c.get(location))
            .await
            .ok()?;
        if resp.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let range = resp.headers().get(RANGE)?.to_str().ok()?;
        let end = range.trim().strip_prefix("bytes=").unwrap_or(range.trim());
        let (_, last) = end.split_once('-')?;
        let last: u64 = last.parse().ok()?;
        // "0-0" is an empty upload for some registries.
        Some(if last == 0 { 0 } else { last + 1 })
    }

    fn file_body(
        &self,
        path: &Path,
        offset: u64,
        len: u64,
        digest: &Digest,
        sent: Arc<AtomicU64>,
    ) -> reqwest::Body {
        let progress = self.opts.progress.clone();
        let digest = digest.clone();
        let opened = std::fs::File::open(path).and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            Ok(f)
        });
        match opened {
            Ok(f) => {
                let reader = tokio::fs::File::from_std(f).take(len);
                let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10)
                    .inspect_ok(move |b| {
                        let n = b.len() as u64;
                        sent.fetch_add(n, Ordering::Relaxed);
                        progress.event(&Event::BlobBytes {
                            digest: digest.clone(),
                            bytes: n,
                        });
                    });
                reqwest::Body::wrap_stream(stream)
            }
            Err(e) => reqwest::Body::wrap_stream(futures_util::stream::once(async move {
                Err::<bytes::Bytes, _>(e)
            })),
        }
    }
}

/// The referrers tag-schema fallback tag of `subject`: `<alg>-<hex>`.
pub(super) fn referrers_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm().as_str(), subject.hex())
}

fn resume_record(store: &Store, registry: &str, repo: &str, d: &Digest) -> PathBuf {
    let key = Digest::sha256(format!("{registry}/{repo}@{d}").as_bytes());
    store.root().join("registry/client-uploads").join(key.hex())
}

fn write_record(p: &Path, location: &str) -> std::io::Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(p, location)
}
