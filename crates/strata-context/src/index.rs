//! The content index: a sha256 for every included regular file, computed in
//! parallel and streaming, with a stat-hint cache (git's index idea) so an
//! unchanged file is never read twice.
//!
//! The cache maps a path to `(size, mtime, ctime, dev, inode) -> sha256`.
//! Time stamps are used only to decide whether to re-read a file; digests
//! depend on content alone. Git's "racily clean" problem (a file changed
//! again within the time stamp granularity of the moment it was hashed
//! keeps its stat data) is avoided by trusting a cached digest only when
//! the file's mtime and ctime were already [`RACY_WINDOW`] older than the
//! moment it was read; younger files are hashed again next time.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use strata_digest::{Digest, Hasher};

use crate::error::ContextError;
use crate::walk::{open_beneath, Entry, EntryKind, Timestamp};

/// How much older than the moment it was read a file's mtime and ctime
/// must be for its cached digest to be trusted later. Covers coarse file
/// system time stamps (1 s on some file systems, 2 s on FAT).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

const READ_BUF: usize = 256 * 1024;
const CACHE_MAGIC: &str = "strata-context-cache 1";

/// An entry with the digest of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The entry (metadata as read when it was hashed).
    pub entry: Entry,
    /// sha256 of the content, for regular files; `None` for other types
    /// (a symlink is described by its target, a directory by its metadata).
    pub digest: Option<Digest>,
}

/// Counters from one indexing run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Regular files in the index.
    pub files: usize,
    /// Files whose content was read and hashed.
    pub hashed_files: usize,
    /// Bytes read and hashed.
    pub hashed_bytes: u64,
    /// Files whose digest came from the stat-hint cache.
    pub cache_hits: usize,
    /// Files hashed now but too recently changed to be trusted next time.
    pub racy: usize,
    /// Files that are hard links of a file hashed in the same run.
    pub hardlink_reuses: usize,
    /// Files re-read because their timestamps (or inode) changed since they
    /// were last hashed, whose content turned out the same: touched, not
    /// changed. Files never hashed before, or hashed again only because
    /// they changed too recently to be trusted, do not count.
    pub touched: usize,
}

/// The hashed index of (part of) a context, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: Vec<IndexEntry>,
    stats: IndexStats,
}

impl Index {
    pub(crate) fn from_parts(entries: Vec<IndexEntry>) -> Index {
        Index {
            entries,
            stats: IndexStats::default(),
        }
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by(|e| e.entry.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// What this run read and reused.
    pub fn stats(&self) -> IndexStats {
        self.stats
    }

    /// A digest of the whole index in a canonical encoding (tag
    /// `strata.context.v1`; for each entry in path order: path, type,
    /// mode, uid, gid, size, content digest or link target). Independent
    /// of time stamps, inode numbers and the context's location.
    pub fn digest(&self) -> Digest {
        let mut h = Hasher::new(strata_digest::Algorithm::Sha256);
        h.update(b"strata.context.v1\0");
        for e in &self.entries {
            let en = &e.entry;
            h.update(en.path.as_bytes());
            h.update(b"\0");
            let meta = format!(
                "{} {:o} {} {} {}\0",
                en.kind.letter(),
                en.mode,
                en.uid,
                en.gid,
                if en.kind == EntryKind::Dir {
                    0
                } else {
                    en.size
                }
            );
            h.update(meta.as_bytes());
            match (&e.digest, &en.link_target) {
                (Some(d), _) => h.update(d.to_string().as_bytes()),
                (None, Some(t)) => h.update(t.as_os_str().as_bytes()),
                (None, None) => {}
            }
            h.update(b"\n");
        }
        h.finish()
    }
}

/// A cached digest and the stat data it was computed for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheRecord {
    size: u64,
    mtime: Timestamp,
    ctime: Timestamp,
    dev: u64,
    ino: u64,
    digest: Digest,
}

impl CacheRecord {
    fn fresh_for(&self, e: &Entry) -> bool {
        self.size == e.size
            && self.mtime == e.mtime
            && self.ctime == e.ctime
            && self.dev == e.dev
            && self.ino == e.ino
    }
}

/// The on-disk stat-hint cache of one context directory.
pub(crate) struct Cache {
    file: PathBuf,
    records: HashMap<String, CacheRecord>,
}

impl Cache {
    /// The cache for `root` (an absolute path) in `state_dir`; empty when
    /// there is none or it cannot be read (it is only a hint).
    pub(crate) fn load(state_dir: &Path, root: &Path) -> Cache {
        let key = hex::encode(Sha256::digest(root.as_os_str().as_bytes()));
        let file = state_dir.join(format!("{key}.idx"));
        let records = std::fs::read(&file)
            .ok()
            .and_then(|data| parse_cache(&data, root))
            .unwrap_or_default();
        Cache { file, records }
    }

    fn save(&self, root: &Path, records: &HashMap<String, CacheRecord>) -> io::Result<()> {
        let Some(dir) = self.file.parent() else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let Some(root_str) = root.to_str().filter(|s| !s.contains('\n')) else {
            return Ok(());
        };
        let mut paths: Vec<&String> = records.keys().collect();
        paths.sort_unstable();
        let mut out = String::with_capacity(records.len() * 120 + 64);
        out.push_str(CACHE_MAGIC);
        out.push('\n');
        out.push_str(root_str);
        out.push('\n');
        for p in &paths {
            let r = &records[*p];
            use std::fmt::Write as _;
            let _ = writeln!(
                out,
                "{} {}.{} {}.{} {} {} {} {}",
                r.size,
                r.mtime.sec,
                r.mtime.nsec,
                r.ctime.sec,
                r.ctime.nsec,
                r.dev,
                r.ino,
                r.digest.hex(),
                p
            );
        }
        use std::fmt::Write as _;
        let _ = writeln!(out, "end {}", paths.len());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(
            ".{}.{}.{nanos}.tmp",
            self.file_name(),
            std::process::id()
        ));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(out.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &self.file)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn file_name(&self) -> String {
        self.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

fn parse_ts(s: &str) -> Option<Timestamp> {
    let (a, b) = s.split_once('.')?;
    Some(Timestamp {
        sec: a.parse().ok()?,
        nsec: b.parse().ok()?,
    })
}

fn parse_cache(data: &[u8], root: &Path) -> Option<HashMap<String, CacheRecord>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.split('\n');
    if lines.next()? != CACHE_MAGIC || Some(lines.next()?) != root.to_str() {
        return None;
    }
    let mut records = HashMap::new();
    for line in lines {
        if let Some(n) = line.strip_prefix("end ") {
            // Only a complete file counts.
            return (n.parse::<usize>().ok()? == records.len()).then_some(records);
        }
        let mut f = line.splitn(7, ' ');
        let size = f.next()?.parse().ok()?;
        let mtime = parse_ts(f.next()?)?;
        let ctime = parse_ts(f.next()?)?;
        let dev = f.next()?.parse().ok()?;
        let ino = f.next()?.parse().ok()?;
        let digest = Digest::new(strata_digest::Algorithm::Sha256, f.next()?).ok()?;
        let path = f.next()?.to_owned();
        records.insert(
            path,
            CacheRecord {
                size,
                mtime,
                ctime,
                dev,
                ino,
                digest,
            },
        );
    }
    None
}

/// What hashing one file produced.
struct Hashed {
    digest: Digest,
    entry: Entry,
    trusted: bool,
}

fn ts_of(sec: i64, nsec: i64) -> Timestamp {
    Timestamp {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    }
}

/// Read and hash one regular file, streaming; the entry is refreshed from
/// the open file's own stat data. Fails if the file is not what the walk
/// saw (another inode, not a regular file) or changes while being read.
fn hash_file(
    root_fd: BorrowedFd<'_>,
    root: &Path,
    e: &Entry,
    bytes: &AtomicU64,
) -> Result<Hashed, ContextError> {
    let started = SystemTime::now();
    let abs = root.join(&e.os_path);
    let mut f = open_beneath(root_fd, &e.os_path).map_err(|err| {
        let code = err.raw_os_error();
        if code == Some(rustix::io::Errno::LOOP.raw_os_error())
            || code == Some(rustix::io::Errno::XDEV.raw_os_error())
        {
            // A symlink now stands where the walk saw a file.
            ContextError::Changed {
                path: e.path.clone(),
            }
        } else {
            ContextError::io("open", &abs, err)
        }
    })?;
    let before = f
        .metadata()
        .map_err(|err| ContextError::io("stat", &abs, err))?;
    if !before.is_file() || before.ino() != e.ino || before.dev() != e.dev {
        return Err(ContextError::Changed {
            path: e.path.clone(),
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut n_total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(ContextError::io("read", &abs, err)),
        };
        hasher.update(&buf[..n]);
        n_total += n as u64;
    }
    bytes.fetch_add(n_total, Ordering::Relaxed);
    let after = f
        .metadata()
        .map_err(|err| ContextError::io("stat", &abs, err))?;
    let mtime = ts_of(after.mtime(), after.mtime_nsec());
    let ctime = ts_of(after.ctime(), after.ctime_nsec());
    if n_total != after.size()
        || ts_of(before.mtime(), before.mtime_nsec()) != mtime
        || ts_of(before.ctime(), before.ctime_nsec()) != ctime
    {
        return Err(ContextError::Changed {
            path: e.path.clone(),
        });
    }
    let mut entry = e.clone();
    entry.size = after.size();
    entry.mode = after.mode() & 0o7777;
    entry.uid = after.uid();
    entry.gid = after.gid();
    entry.nlink = after.nlink();
    entry.mtime = mtime;
    entry.ctime = ctime;
    let limit = started
        .checked_sub(RACY_WINDOW)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
        .unwrap_or(0);
    let trusted = mtime.as_nanos() < limit && ctime.as_nanos() < limit;
    let digest = Digest::new(
        strata_digest::Algorithm::Sha256,
        &hex::encode(hasher.finalize()),
    )
    .map_err(|err| ContextError::io("hash", &abs, io::Error::other(err)))?;
    Ok(Hashed {
        digest,
        entry,
        trusted,
    })
}

/// Index `selected` entries (sorted by path). `full` says whether they
/// are the whole context (then cache records of vanished paths are
/// dropped; otherwise the cache keeps them).
pub(crate) fn build_index(
    root_fd: BorrowedFd<'_>,
    root: &Path,
    selected: &[&Entry],
    state_dir: Option<&Path>,
    full: bool,
) -> Result<Index, ContextError> {
    let cache = state_dir.map(|d| Cache::load(d, root));
    let mut stats = IndexStats::default();
    let mut digests: Vec<Option<Digest>> = vec![None; selected.len()];
    let mut refreshed: Vec<Option<Entry>> = vec![None; selected.len()];
    // Digests newly computed and trustworthy next time.
    let mut new_records: HashMap<String, CacheRecord> = HashMap::new();
    // Files whose cached digest was used.
    let mut hits: Vec<usize> = Vec::new();
    // Files to read, one per inode (hard links share the work).
    let mut work: Vec<usize> = Vec::new();
    let mut first_of_inode: HashMap<(u64, u64), usize> = HashMap::new();
    // Files with a cache record that no longer matches their stat: the
    // digest it recorded.
    let mut stale: HashMap<usize, Digest> = HashMap::new();
    let mut link_of: Vec<(usize, usize)> = Vec::new();
    for (i, e) in selected.iter().enumerate() {
        if e.kind != EntryKind::File {
            continue;
        }
        stats.files += 1;
        if let Some(rec) = cache.as_ref().and_then(|c| c.records.get(&e.path)) {
            if rec.fresh_for(e) {
                digests[i] = Some(rec.digest.clone());
                hits.push(i);
                stats.cache_hits += 1;
                continue;
            }
            stale.insert(i, rec.digest.clone());
        }
        match first_of_inode.get(&(e.dev, e.ino)) {
            Some(&j) => link_of.push((i, j)),
            None => {
                first_of_inode.insert((e.dev, e.ino), i);
                work.push(i);
            }
        }
    }
    let bytes = AtomicU64::new(0);
    let racy = AtomicUsize::new(0);
    let results: Vec<(usize, Result<Hashed, ContextError>)> = work
        .par_iter()
        .with_min_len(4)
        .map(|&i| (i, hash_file(root_fd, root, selected[i], &bytes)))
        .collect();
    stats.hashed_files = results.len();
    for (i, r) in results {
        let h = r?;
        if h.trusted {
            new_records.insert(
                h.entry.path.clone(),
                CacheRecord {
                    size: h.entry.size,
                    mtime: h.entry.mtime,
                    ctime: h.entry.ctime,
                    dev: h.entry.dev,
                    ino: h.entry.ino,
                    digest: h.digest.clone(),
                },
            );
        } else {
            racy.fetch_add(1, Ordering::Relaxed);
        }
        if stale.get(&i) == Some(&h.digest) {
            stats.touched += 1;
        }
        digests[i] = Some(h.digest);
        refreshed[i] = Some(h.entry);
    }
    for (i, j) in link_of {
        stats.hardlink_reuses += 1;
        digests[i] = digests[j].clone();
        if let (Some(d), Some(src)) = (&digests[i], &refreshed[j]) {
            let e = selected[i];
            let mut entry = e.clone();
            entry.size = src.size;
            entry.mtime = src.mtime;
            entry.ctime = src.ctime;
            if let Some(rec) = new_records.get(&src.path) {
                new_records.insert(
                    e.path.clone(),
                    CacheRecord {
                        digest: d.clone(),
                        ..rec.clone()
                    },
                );
            }
            refreshed[i] = Some(entry);
        }
    }
    stats.hashed_bytes = bytes.into_inner();
    stats.racy = racy.into_inner();
    if let Some(cache) = &cache {
        // Rewrite the cache only when it would change: new trusted digests,
        // or (for the whole context) cached paths that are gone or stale.
        let changed = !new_records.is_empty() || (full && hits.len() != cache.records.len());
        if changed {
            let mut records: HashMap<String, CacheRecord> = if full {
                hits.iter()
                    .filter_map(|&i| {
                        let p = &selected[i].path;
                        cache.records.get(p).map(|r| (p.clone(), r.clone()))
                    })
                    .collect()
            } else {
                cache.records.clone()
            };
            records.extend(new_records);
            // A cache that cannot be written costs speed, never correctness.
            if let Err(err) = cache.save(root, &records) {
                tracing_warn(&cache.file, &err);
            }
        }
    }
    let entries = selected
        .iter()
        .enumerate()
        .map(|(i, e)| IndexEntry {
            entry: refreshed[i].take().unwrap_or_else(|| (*e).clone()),
            digest: digests[i].take(),
        })
        .collect();
    Ok(Index { entries, stats })
}

fn tracing_warn(file: &Path, err: &io::Error) {
    eprintln!(
        "warning: cannot write context cache {}: {err}",
        file.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_roundtrip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/some/context dir");
        let cache = Cache::load(dir.path(), root);
        assert!(cache.records.is_empty());
        let mut records = HashMap::new();
        records.insert(
            "a b/c.txt".to_owned(),
            CacheRecord {
                size: 3,
                mtime: Timestamp { sec: 10, nsec: 5 },
                ctime: Timestamp { sec: 11, nsec: 0 },
                dev: 2049,
                ino: 77,
                digest: Digest::sha256(b"abc"),
            },
        );
        cache.save(root, &records).unwrap();
        let again = Cache::load(dir.path(), root);
        assert_eq!(again.records, records);
        // Another root never reads it.
        assert!(Cache::load(dir.path(), Path::new("/other"))
            .records
            .is_empty());
        // A truncated file is ignored.
        let data = std::fs::read(&again.file).unwrap();
        std::fs::write(&again.file, &data[..data.len() - 4]).unwrap();
        assert!(Cache::load(dir.path(), root).records.is_empty());
    }
}
