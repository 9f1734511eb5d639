//! [`LayoutCache`]: a build cache in an OCI image layout directory
//! (`--cache-to type=local,dest=DIR`, `--cache-from type=local,src=DIR`),
//! for CI systems that save and restore a directory between runs.
//!
//! The entries are those of a registry cache (see [`crate::cache_entry_manifest`]
//! and docs/cache.md): one manifest per key in `blobs/sha256/`, listed in
//! `index.json` with `org.opencontainers.image.ref.name` = the entry tag.
//!
//! Concurrency: an export copies blobs (content-addressed, each written to a
//! temp name and renamed, or hard-linked from the store) while holding a
//! shared lock on `.strata-cache-gc.lock`, then re-reads and rewrites
//! `index.json` (temp file, fsync, rename) under an exclusive lock on
//! `.strata-cache.lock`, so exports from several processes to one
//! directory merge and never lose entries. A prune holds both exclusively,
//! so it never removes a blob an export is about to list. Lookups take no
//! lock (`index.json` is only ever replaced whole), so a read-only
//! directory serves `--cache-from`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::fs::FlockOperation;

use crate::cache_format::{
    cache_created_now, cache_entry_manifest, cache_entry_older_than, cache_entry_tag,
    is_cache_entry_tag, parse_cache_entry, valid_cache_tag, CacheEntryError, ANNOTATION_REF_NAME,
    CACHE_REFRESH_AGE, DEFAULT_CACHE_TAG, EMPTY_JSON,
};
use crate::error::IoContext;
use crate::{
    media_type, Algorithm, CacheRecord, Descriptor, Digest, Error, ExportReport, HashingReader,
    Index, Manifest, PruneReport, RemoteCache, RemoteEntry, RemoteError, Result, Store,
    MAX_DOCUMENT_SIZE,
};

const INDEX: &str = "index.json";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_LOCK: &str = ".strata-cache.lock";
const GC_LOCK: &str = ".strata-cache-gc.lock";

/// A build cache in an OCI image layout directory.
///
/// ```
/// use strata_oci::{CacheRecord, Digest, LayoutCache, RemoteCache, Store};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("store")).unwrap();
/// let cache = LayoutCache::new(dir.path().join("ci-cache"));
/// let key = Digest::sha256(b"a step");
/// let report = cache
///     .export(&store, &[CacheRecord { key: key.clone(), layer: None, chain: None }], &[])
///     .unwrap();
/// assert_eq!(report.entries, 1);
/// assert_eq!(cache.lookup(&key).unwrap().unwrap().record.layer, None);
/// ```
#[derive(Debug)]
pub struct LayoutCache {
    dir: PathBuf,
    tag: String,
    /// `index.json` as first read (entry tag -> manifest), kept for the
    /// lookups of one build; exports add to it.
    index: Mutex<Option<HashMap<String, Descriptor>>>,
}

/// What one export will write.
struct Planned {
    tag: String,
    record: CacheRecord,
    /// The manifest this entry replaces (a refresh), if any.
    replaces: Option<Digest>,
}

impl LayoutCache {
    /// The cache in `dir` (created by the first export; a missing
    /// directory is an empty cache), with the default tag `cache`.
    pub fn new(dir: impl Into<PathBuf>) -> LayoutCache {
        LayoutCache {
            dir: dir.into(),
            tag: DEFAULT_CACHE_TAG.to_owned(),
            index: Mutex::new(None),
        }
    }

    /// The cache in `dir` whose entries are tagged `<tag>-<key>`, so one
    /// directory can hold several caches.
    pub fn with_tag(dir: impl Into<PathBuf>, tag: &str) -> Result<LayoutCache> {
        if !valid_cache_tag(tag) {
            return Err(Error::InvalidArgument(format!(
                "cache tag {tag:?}: letters, digits, '_', '.', '-' (not first), at most 128"
            )));
        }
        let mut c = LayoutCache::new(dir);
        c.tag = tag.to_owned();
        Ok(c)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// The blob is in the directory with the size the descriptor says.
    fn has_blob(&self, d: &Descriptor) -> bool {
        fs::metadata(self.blob_path(&d.digest)).is_ok_and(|m| m.is_file() && m.len() == d.size)
    }

    /// `index.json` (an empty index when there is none).
    fn read_index(&self) -> Result<Index> {
        let p = self.dir.join(INDEX);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::InvalidArgument(format!("{}: not an OCI index: {e}", p.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::oci(Vec::new())),
            Err(e) => Err(e).ctx("read", p),
        }
    }

    /// This cache's entries in `index`: entry tag -> manifest descriptor.
    fn entries_of(&self, index: &Index) -> HashMap<String, Descriptor> {
        index
            .manifests
            .iter()
            .filter_map(|d| {
                let name = d.annotations.get(ANNOTATION_REF_NAME)?;
                is_cache_entry_tag(&self.tag, name).then(|| (name.clone(), d.clone()))
            })
            .collect()
    }

    /// A small blob of the directory, checked against its descriptor.
    fn read_document(&self, d: &Descriptor) -> Result<Vec<u8>> {
        let p = self.blob_path(&d.digest);
        if d.size > MAX_DOCUMENT_SIZE {
            return Err(Error::InvalidArgument(format!(
                "{}: {} bytes, too big for a manifest",
                p.display(),
                d.size
            )));
        }
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    what: format!("blob {} in {}", d.digest, self.dir.display()),
                })
            }
            Err(e) => return Err(e).ctx("open", p),
        };
        let mut raw = Vec::new();
        f.take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut raw)
            .ctx("read", &p)?;
        let actual = {
            let mut h = crate::Hasher::new(d.digest.algorithm());
            h.update(&raw);
            h.finish()
        };
        if actual != d.digest || raw.len() as u64 != d.size {
            return Err(Error::DigestMismatch {
                what: format!("{}", p.display()),
                expected: format!("{} ({} bytes)", d.digest, d.size),
                actual: format!("{actual} ({} bytes)", raw.len()),
            });
        }
        Ok(raw)
    }

    /// The entry a manifest of the index holds (`Ok(None)`: not ours).
    fn read_entry(&self, d: &Descriptor) -> Result<Option<RemoteEntry>> {
        let raw = self.read_document(d)?;
        match parse_cache_entry(&raw) {
            Ok(e) => Ok(Some(e)),
            Err(CacheEntryError::Foreign) => Ok(None),
            Err(e) => Err(Error::InvalidArgument(format!(
                "{}: {e}",
                self.blob_path(&d.digest).display()
            ))),
        }
    }

    fn lookup_entry(&self, key: &Digest) -> Result<Option<RemoteEntry>> {
        let tag = cache_entry_tag(&self.tag, key);
        let desc = {
            let mut memo = self.index.lock().unwrap_or_else(|p| p.into_inner());
            if memo.is_none() {
                *memo = Some(self.entries_of(&self.read_index()?));
            }
            memo.as_ref().and_then(|m| m.get(&tag).cloned())
        };
        let Some(desc) = desc else { return Ok(None) };
        let found = match self.read_entry(&desc) {
            Ok(e) => e,
            // Listed, but its manifest is gone (a prune raced): a miss.
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(found.filter(|e| &e.record.key == key))
    }

    fn fetch(&self, store: &Store, desc: &Descriptor) -> Result<()> {
        if store.has(&desc.digest) {
            return Ok(());
        }
        let p = self.blob_path(&desc.digest);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    what: format!("blob {} in {}", desc.digest, self.dir.display()),
                })
            }
            Err(e) => return Err(e).ctx("open", p),
        };
        // The store checks size and digest before the blob appears.
        store.put_reader(f, Some(desc)).map(|_| ())
    }

    /// Put the store's blob `d` in the directory: a hard link where the
    /// file system allows (store blobs are immutable and were verified when
    /// they entered the store), else a verified copy. Returns whether bytes
    /// were added (false: already there).
    fn put_blob_from(&self, store: &Store, d: &Descriptor) -> Result<bool> {
        let dst = self.blob_path(&d.digest);
        if self.has_blob(d) {
            return Ok(false);
        }
        let src = store.blob_path(&d.digest);
        let size = store.blob_size(&d.digest)?;
        if size != d.size {
            return Err(Error::DigestMismatch {
                what: format!("size of blob {} in the store", d.digest),
                expected: d.size.to_string(),
                actual: size.to_string(),
            });
        }
        let dir = dst.parent().unwrap_or(&self.dir).to_owned();
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        match fs::hard_link(&src, &dst) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if self.has_blob(d) {
                    return Ok(false);
                }
                // A damaged file of that name: replaced below.
            }
            Err(_) => {} // another file system, or links not allowed: copy
        }
        let src_file = store.open_blob(&d.digest)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .ctx("create temp file in", &dir)?;
        let mut reader = HashingReader::new(src_file, d.digest.algorithm());
        io::copy(&mut reader, tmp.as_file_mut()).ctx("copy to", tmp.path())?;
        let (actual, n) = reader.finish();
        if actual != d.digest || n != d.size {
            return Err(Error::DigestMismatch {
                what: format!("blob {} in the store", d.digest),
                expected: format!("{} ({} bytes)", d.digest, d.size),
                actual: format!("{actual} ({n} bytes)"),
            });
        }
        tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
        tmp.persist(&dst).map_err(|e| Error::Io {
            op: "rename",
            path: dst.clone(),
            source: e.error,
        })?;
        Ok(true)
    }

    /// Write a small blob (a manifest, the empty blob) unless present.
    fn put_document(&self, data: &[u8]) -> Result<Descriptor> {
        let d = Descriptor::new("", Digest::sha256(data), data.len() as u64);
        if !self.has_blob(&d) {
            write_atomic(&self.blob_path(&d.digest), data)?;
        }
        Ok(d)
    }

    fn ensure_layout(&self) -> Result<()> {
        let blobs = self.dir.join("blobs").join(Algorithm::Sha256.as_str());
        fs::create_dir_all(&blobs).ctx("create", &blobs)?;
        let layout = self.dir.join(LAYOUT_FILE);
        if !layout.exists() {
            write_atomic(&layout, LAYOUT_CONTENT)?;
        }
        Ok(())
    }

    fn export_records(
        &self,
        store: &Store,
        records: &[CacheRecord],
        refresh: &[Digest],
    ) -> Result<ExportReport> {
        self.ensure_layout()?;
        let _gc = lock(&self.dir.join(GC_LOCK), FlockOperation::LockShared)?;
        let current = self.entries_of(&self.read_index()?);
        let refresh: HashSet<&Digest> = refresh.iter().collect();
        let mut report = ExportReport::default();
        let mut plan: Vec<Planned> = Vec::new();
        let mut seen: HashSet<&Digest> = HashSet::new();
        for r in records {
            if !seen.insert(&r.key) {
                continue;
            }
            let tag = cache_entry_tag(&self.tag, &r.key);
            match current.get(&tag) {
                None => plan.push(Planned {
                    tag,
                    record: r.clone(),
                    replaces: None,
                }),
                Some(desc) => match self.stale(&r.key, desc, &refresh, Some(r))? {
                    true => plan.push(Planned {
                        tag,
                        record: r.clone(),
                        replaces: Some(desc.digest.clone()),
                    }),
                    false => report.present += 1,
                },
            }
        }
        // Hits to refresh that the build did not pass as records: written
        // again from their own entry.
        for key in refresh.iter().copied() {
            if seen.contains(key) {
                continue;
            }
            seen.insert(key);
            let tag = cache_entry_tag(&self.tag, key);
            let Some(desc) = current.get(&tag) else {
                continue;
            };
            if !self.stale(key, desc, &refresh, None)? {
                report.present += 1;
                continue;
            }
            if let Some(entry) = self.read_entry(desc)?.filter(|e| &e.record.key == key) {
                plan.push(Planned {
                    tag,
                    record: entry.record,
                    replaces: Some(desc.digest.clone()),
                });
            }
        }
        // Every layer must be here already or in the store.
        for p in &plan {
            if let Some((d, _)) = &p.record.layer {
                if !self.has_blob(d) && !store.has(&d.digest) {
                    return Err(Error::NotFound {
                        what: format!(
                            "layer {} of cache key {} (neither in the store nor in {})",
                            d.digest,
                            p.record.key,
                            self.dir.display()
                        ),
                    });
                }
            }
        }
        let mut copied: HashSet<&Digest> = HashSet::new();
        for p in &plan {
            let Some((d, _)) = &p.record.layer else {
                continue;
            };
            if !copied.insert(&d.digest) {
                continue;
            }
            if self.put_blob_from(store, d)? {
                report.blobs_sent += 1;
                report.bytes_sent += d.size;
            } else {
                report.blobs_skipped += 1;
            }
        }
        if !plan.is_empty() {
            self.put_document(EMPTY_JSON)?;
        }
        let created = cache_created_now();
        let mut written: Vec<(Descriptor, &Planned)> = Vec::new();
        for p in &plan {
            let raw = cache_entry_manifest(&p.record, &created);
            let mut d = self.put_document(&raw)?;
            d.media_type = media_type::OCI_MANIFEST.to_owned();
            d.artifact_type = Some(crate::CACHE_ARTIFACT_TYPE.to_owned());
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), p.tag.clone());
            written.push((d, p));
        }
        if written.is_empty() {
            return Ok(report);
        }
        // Merge into the index as it is now (another export may have
        // written it since it was read).
        let _ix = lock(&self.dir.join(INDEX_LOCK), FlockOperation::LockExclusive)?;
        let mut index = self.read_index()?;
        let mut added: Vec<Descriptor> = Vec::new();
        for (d, p) in written {
            let pos = index
                .manifests
                .iter()
                .position(|m| m.annotations.get(ANNOTATION_REF_NAME) == Some(&p.tag));
            match pos {
                None => {
                    added.push(d);
                    report.entries += 1;
                }
                Some(i) if p.replaces.as_ref() == Some(&index.manifests[i].digest) => {
                    index.manifests[i] = d;
                    report.entries += 1;
                }
                // Written by another export meanwhile: as good as ours.
                Some(_) => report.present += 1,
            }
        }
        added.sort_by(|a, b| {
            a.annotations
                .get(ANNOTATION_REF_NAME)
                .cmp(&b.annotations.get(ANNOTATION_REF_NAME))
        });
        index.manifests.extend(added);
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        write_atomic(&self.dir.join(INDEX), &bytes)?;
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.entries_of(&index));
        Ok(report)
    }

    /// Whether the listed entry for `key` is to be written again: it was a
    /// hit here (`refresh`) and is older than a day.
    /// Whether the entry `desc` for `key` is written again: a refreshed
    /// entry that is old, or whose layer is not `record`'s (a cache mount's
    /// new contents).
    fn stale(
        &self,
        key: &Digest,
        desc: &Descriptor,
        refresh: &HashSet<&Digest>,
        record: Option<&CacheRecord>,
    ) -> Result<bool> {
        if !refresh.contains(key) {
            return Ok(false);
        }
        match self.read_entry(desc) {
            Ok(Some(e)) => Ok(cache_entry_older_than(&e, CACHE_REFRESH_AGE)
                || record.is_some_and(|r| r.layer != e.record.layer)),
            // Not ours, or broken: replace it.
            Ok(None) | Err(Error::NotFound { .. } | Error::DigestMismatch { .. }) => Ok(true),
            Err(Error::InvalidArgument(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn list_entries(&self) -> Result<Vec<RemoteEntry>> {
        let index = self.read_index()?;
        let mut entries: Vec<(String, Descriptor)> = self.entries_of(&index).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (_, d) in entries {
            if let Some(e) = self.read_entry(&d)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn prune_entries(&self, older_than: Duration) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        if !self.dir.join(INDEX).exists() {
            return Ok(report);
        }
        let _gc = lock(&self.dir.join(GC_LOCK), FlockOperation::LockExclusive)?;
        let _ix = lock(&self.dir.join(INDEX_LOCK), FlockOperation::LockExclusive)?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        let mut keep = Vec::new();
        for d in std::mem::take(&mut index.manifests) {
            let ours = d
                .annotations
                .get(ANNOTATION_REF_NAME)
                .is_some_and(|n| is_cache_entry_tag(&self.tag, n));
            if !ours {
                keep.push(d);
                continue;
            }
            let old = match self.read_entry(&d) {
                Ok(Some(e)) => cache_entry_older_than(&e, older_than),
                Ok(None) => false,
                // A listed entry whose manifest is missing or damaged.
                Err(Error::NotFound { .. } | Error::DigestMismatch { .. }) => true,
                Err(e) => return Err(e),
            };
            if old {
                report.removed += 1;
            } else {
                report.kept += 1;
                keep.push(d);
            }
        }
        index.manifests = keep;
        if index.manifests.len() != before {
            let bytes = serde_json::to_vec(&index).unwrap_or_default();
            write_atomic(&self.dir.join(INDEX), &bytes)?;
        }
        self.sweep(&index)?;
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.entries_of(&index));
        Ok(report)
    }

    /// Remove every blob (and leftover temp file) that the index does not
    /// reach. Called with both locks held.
    fn sweep(&self, index: &Index) -> Result<()> {
        let mut live: BTreeSet<Digest> = BTreeSet::new();
        let mut todo: Vec<Descriptor> = index.manifests.clone();
        while let Some(d) = todo.pop() {
            if !live.insert(d.digest.clone()) {
                continue;
            }
            let is_doc =
                media_type::is_manifest(&d.media_type) || media_type::is_index(&d.media_type);
            if !is_doc {
                continue;
            }
            let Ok(raw) = self.read_document(&d) else {
                continue;
            };
            if media_type::is_index(&d.media_type) {
                if let Ok(i) = serde_json::from_slice::<Index>(&raw) {
                    todo.extend(i.manifests);
                }
            } else if let Ok(m) = serde_json::from_slice::<Manifest>(&raw) {
                todo.push(m.config);
                todo.extend(m.layers);
                todo.extend(m.subject);
            }
        }
        let blobs = self.dir.join("blobs");
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = blobs.join(alg.as_str());
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("list", dir),
            };
            for e in rd {
                let e = e.ctx("list", &dir)?;
                let name = e.file_name().to_string_lossy().into_owned();
                let keep = Digest::new(alg, &name).is_ok_and(|d| live.contains(&d));
                if !keep {
                    let p = e.path();
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).ctx("remove", p),
                    }
                }
            }
        }
        Ok(())
    }
}

impl RemoteCache for LayoutCache {
    fn describe(&self) -> String {
        format!("local cache {}", self.dir.display())
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
        Ok(self.list_entries()?)
    }

    fn prune(&self, older_than: Duration) -> std::result::Result<PruneReport, RemoteError> {
        Ok(self.prune_entries(older_than)?)
    }
}

/// A `flock` held while the value lives (blocking until granted).
struct Lock {
    _file: File,
}

fn lock(path: &Path, op: FlockOperation) -> Result<Lock> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx("open lock", path)?;
    rustix::fs::flock(file.as_fd(), op).ctx("lock", path)?;
    Ok(Lock { _file: file })
}

/// Write `data` to `path` through a temp file beside it: fsync, rename,
/// fsync the directory.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).ctx("create", dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx("create temp file in", dir)?;
    tmp.write_all(data).ctx("write", tmp.path())?;
    tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
    tmp.persist(path).map_err(|e| Error::Io {
        op: "rename",
        path: path.to_owned(),
        source: e.error,
    })?;
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync", dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(store: &Store, n: u8, size: usize) -> CacheRecord {
        let data: Vec<u8> = (0..size).map(|i| (i as u8) ^ n).collect();
        let d = store.put_blob(&data).unwrap();
        CacheRecord {
            chain: None,
            key: Digest::sha256(&[n, 0xca]),
            layer: Some((
                Descriptor::new(media_type::OCI_LAYER_GZIP, d, size as u64),
                Digest::sha256(&[n, 0xd1]),
            )),
        }
    }

    fn backdate(cache: &LayoutCache, key: &Digest, secs: i64) {
        // Rewrite the entry's manifest with an older creation time.
        let _ix = lock(&cache.dir.join(INDEX_LOCK), FlockOperation::LockExclusive).unwrap();
        let mut index = cache.read_index().unwrap();
        let tag = cache_entry_tag(&cache.tag, key);
        let i = index
            .manifests
            .iter()
            .position(|m| m.annotations.get(ANNOTATION_REF_NAME) == Some(&tag))
            .unwrap();
        let e = cache.read_entry(&index.manifests[i]).unwrap().unwrap();
        let raw = cache_entry_manifest(
            &e.record,
            &crate::format_rfc3339(crate::cache_format::unix_now() - secs),
        );
        let mut d = cache.put_document(&raw).unwrap();
        d.media_type = media_type::OCI_MANIFEST.to_owned();
        d.annotations.insert(ANNOTATION_REF_NAME.into(), tag);
        index.manifests[i] = d;
        write_atomic(&cache.dir.join(INDEX), &serde_json::to_vec(&index).unwrap()).unwrap();
        *cache.index.lock().unwrap() = None;
    }

    #[test]
    fn export_lookup_fetch_into_another_store() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let records = vec![
            record(&a, 1, 1000),
            record(&a, 2, 3000),
            CacheRecord {
                chain: None,
                key: Digest::sha256(b"env step"),
                layer: None,
            },
        ];
        let cache = LayoutCache::new(dir.path().join("cache"));
        let r = cache.export(&a, &records, &[]).unwrap();
        assert_eq!(
            (r.entries, r.present, r.blobs_sent, r.bytes_sent),
            (3, 0, 2, 4000)
        );
        // An OCI layout: oci-layout, index.json naming every entry.
        let index = cache.read_index().unwrap();
        assert_eq!(index.manifests.len(), 3);
        assert!(dir.path().join("cache/oci-layout").is_file());
        for m in &index.manifests {
            assert!(is_cache_entry_tag(
                "cache",
                &m.annotations[ANNOTATION_REF_NAME]
            ));
        }

        // Another "machine": a fresh handle and an empty store.
        let b = Store::open(dir.path().join("b")).unwrap();
        let cache_b = LayoutCache::new(dir.path().join("cache"));
        for rec in &records {
            let e = cache_b.lookup(&rec.key).unwrap().unwrap();
            assert_eq!(&e.record, rec);
            assert!(e.created.is_some());
            if let Some((d, _)) = &e.record.layer {
                cache_b.fetch_blob(&b, d).unwrap();
                assert_eq!(
                    b.read_blob(&d.digest).unwrap(),
                    a.read_blob(&d.digest).unwrap()
                );
            }
        }
        assert!(cache_b.lookup(&Digest::sha256(b"other")).unwrap().is_none());

        // Again: nothing to write, nothing sent.
        let r = cache.export(&a, &records, &[]).unwrap();
        assert_eq!(
            (r.entries, r.present, r.blobs_sent, r.bytes_sent),
            (0, 3, 0, 0)
        );
        assert_eq!(cache.list().unwrap().len(), 3);
    }

    #[test]
    fn a_missing_directory_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayoutCache::new(dir.path().join("none"));
        assert!(cache.lookup(&Digest::sha256(b"k")).unwrap().is_none());
        assert!(cache.list().unwrap().is_empty());
        assert_eq!(cache.prune(Duration::ZERO).unwrap(), PruneReport::default());
    }

    #[test]
    fn a_damaged_blob_is_not_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let rec = record(&a, 1, 500);
        let cache = LayoutCache::new(dir.path().join("cache"));
        // A copy, not a link, so damaging it leaves the store alone.
        let (d, _) = rec.layer.clone().unwrap();
        let p = cache.blob_path(&d.digest);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, vec![0u8; 500]).unwrap();
        // (same size, wrong bytes: the export keeps it, the fetch refuses it)
        cache.export(&a, std::slice::from_ref(&rec), &[]).unwrap();
        let b = Store::open(dir.path().join("b")).unwrap();
        let e = cache.fetch_blob(&b, &d).unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
        assert!(!b.has(&d.digest));
    }

    #[test]
    fn a_layer_in_neither_place_fails_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let rec = CacheRecord {
            chain: None,
            key: Digest::sha256(b"k"),
            layer: Some((
                Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(b"gone"), 4),
                Digest::sha256(b"t"),
            )),
        };
        let cache = LayoutCache::new(dir.path().join("cache"));
        let e = cache.export(&a, &[rec], &[]).unwrap_err();
        assert!(e.to_string().contains("neither in the store"), "{e}");
        assert!(cache.list().unwrap().is_empty());
    }

    #[test]
    fn refresh_rewrites_only_old_hits() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let recs = vec![record(&a, 1, 100), record(&a, 2, 100)];
        let cache = LayoutCache::new(dir.path().join("cache"));
        cache.export(&a, &recs, &[]).unwrap();
        // A hit younger than a day is left alone.
        let r = cache.export(&a, &recs, &[recs[0].key.clone()]).unwrap();
        assert_eq!((r.entries, r.present), (0, 2));
        // Two days old: a refresh renews it; without refresh it stays old.
        backdate(&cache, &recs[0].key, 2 * 86_400);
        backdate(&cache, &recs[1].key, 2 * 86_400);
        let r = cache.export(&a, &recs, &[recs[0].key.clone()]).unwrap();
        assert_eq!((r.entries, r.present, r.bytes_sent), (1, 1, 0));
        let fresh = cache.lookup(&recs[0].key).unwrap().unwrap();
        let old = cache.lookup(&recs[1].key).unwrap().unwrap();
        let day = Duration::from_secs(86_400);
        assert!(!cache_entry_older_than(&fresh, day));
        assert!(cache_entry_older_than(&old, day));
        // A refreshed key the build did not pass as a record is renewed
        // from its own entry.
        let r = cache.export(&a, &[], &[recs[1].key.clone()]).unwrap();
        assert_eq!(r.entries, 1);
        assert!(!cache_entry_older_than(
            &cache.lookup(&recs[1].key).unwrap().unwrap(),
            day
        ));
        assert_eq!(cache.read_index().unwrap().manifests.len(), 2);
    }

    #[test]
    fn prune_removes_old_entries_and_their_blobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let recs = vec![record(&a, 1, 100), record(&a, 2, 200)];
        let cache = LayoutCache::new(dir.path().join("cache"));
        cache.export(&a, &recs, &[]).unwrap();
        backdate(&cache, &recs[0].key, 40 * 86_400);
        let r = cache.prune(Duration::from_secs(30 * 86_400)).unwrap();
        assert_eq!((r.removed, r.kept), (1, 1));
        assert!(cache.lookup(&recs[0].key).unwrap().is_none());
        assert!(cache.lookup(&recs[1].key).unwrap().is_some());
        let (old_layer, _) = recs[0].layer.clone().unwrap();
        let (kept_layer, _) = recs[1].layer.clone().unwrap();
        assert!(!cache.blob_path(&old_layer.digest).exists());
        assert!(cache.blob_path(&kept_layer.digest).exists());
        // Only the kept entry's manifest, its layer and the empty blob remain.
        let n = fs::read_dir(dir.path().join("cache/blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(n, 3);
        // The store's blobs are not touched (hard links or copies).
        assert!(a.has(&old_layer.digest));
        let r = cache.prune(Duration::ZERO).unwrap();
        assert_eq!((r.removed, r.kept), (1, 0));
        assert_eq!(cache.read_index().unwrap().manifests.len(), 0);
    }

    #[test]
    fn other_content_of_the_layout_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let cache = LayoutCache::new(dir.path().join("cache"));
        let other = LayoutCache::with_tag(dir.path().join("cache"), "other").unwrap();
        let rec = record(&a, 1, 100);
        cache.export(&a, std::slice::from_ref(&rec), &[]).unwrap();
        other.export(&a, &[record(&a, 2, 100)], &[]).unwrap();
        assert_eq!(cache.list().unwrap().len(), 1);
        assert_eq!(other.list().unwrap().len(), 1);
        let r = other.prune(Duration::ZERO).unwrap();
        assert_eq!((r.removed, r.kept), (1, 0));
        // The other cache's entry, and its layer, are still there.
        let e = cache.lookup(&rec.key).unwrap().unwrap();
        let (d, _) = e.record.layer.unwrap();
        assert!(cache.has_blob(&d));
        assert!(LayoutCache::with_tag(dir.path(), "-bad").is_err());
    }

    #[test]
    fn concurrent_exports_from_threads_keep_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let path = dir.path().join("cache");
        let sets: Vec<Vec<CacheRecord>> = (0..4u8)
            .map(|t| (0..25u8).map(|i| record(&a, t * 25 + i, 64)).collect())
            .collect();
        std::thread::scope(|s| {
            for set in &sets {
                let (a, path) = (a.clone(), path.clone());
                s.spawn(move || {
                    // One handle per "process", several exports each.
                    for chunk in set.chunks(5) {
                        LayoutCache::new(&path).export(&a, chunk, &[]).unwrap();
                    }
                });
            }
        });
        let cache = LayoutCache::new(&path);
        assert_eq!(cache.list().unwrap().len(), 100);
        for rec in sets.iter().flatten() {
            assert_eq!(cache.lookup(&rec.key).unwrap().unwrap().record, *rec);
        }
    }
}
