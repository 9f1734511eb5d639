//! Temporary state held by a live process, and the sweep that removes it
//! once its holder is gone (even after `kill -9`).
//!
//! A holder takes an exclusive `flock` on `<name>.lock` *before* it creates
//! `<name>/`, and removes `<name>/` *before* the lock file when it is done.
//! The kernel drops the lock when the holder dies, so a lock file that can be
//! locked by someone else marks state whose holder is gone. Two places hold
//! such state:
//!
//! - `tmp/<kind>-<pid>-<n>/` ([`Store::temp_dir`]): a build's scratch files,
//!   which can hold copies of `--secret` files. Every [`Store::open`] sweeps
//!   the stale ones, so a secret does not outlive a crash beyond the next
//!   strata command.
//! - `snapshots/.active/<key>/` ([`Store::hold_active`]): the writable layer
//!   of a RUN step or a container. Stale ones (holder died) are swept by
//!   every [`Store::open`]; released ones (a container layer `strata run`
//!   kept) by garbage collection.
//!
//! - `snapshots/.tmp-<pid>-<n>/` ([`Store::hold_extraction`]): a layer
//!   being extracted; stale ones are swept by every [`Store::open`].
//!
//! Nothing is removed while a mount point lies inside it, so a sweep never
//! reaches through a leftover bind mount into the host's files.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;

use super::{dir_size, now_nanos, read_dir_sorted, remove_tree, Store};
use crate::error::IoContext;
use crate::{Error, Result};

/// Where build scratch directories live, under the store root.
pub(super) const TMP_DIR: &str = "tmp";

/// Where active snapshots live, under the store root.
pub(super) const ACTIVE_DIR: &str = "snapshots/.active";
/// Beside an active snapshot kept on purpose ([`Store::keep_active`]).
const KEEP_SUFFIX: &str = ".keep";

/// Where snapshots live, under the store root.
const SNAPSHOTS_DIR: &str = "snapshots";

/// Names of snapshots being extracted, in [`SNAPSHOTS_DIR`].
pub(super) const EXTRACT_PREFIX: &str = ".tmp-";

/// A lock file `flock`ed by this process, marking the directory beside it
/// (same name without `.lock`) as in use. Dropping it releases the mark
/// (and removes the lock file); the directory itself is the owner's to
/// remove first.
#[derive(Debug)]
pub struct Hold {
    lock_path: PathBuf,
    _file: File,
}

impl Hold {
    /// Lock `lock_path` (creating it), retrying when a sweeper removed the
    /// file between our open and our lock.
    fn acquire(lock_path: PathBuf) -> Result<Hold> {
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .ctx("create lock", &lock_path)?;
            // Blocks only while a sweeper that found the fresh file decides
            // it is stale and removes it.
            rustix::fs::flock(file.as_fd(), FlockOperation::LockExclusive)
                .ctx("lock", &lock_path)?;
            if same_file(&file, &lock_path) {
                return Ok(Hold {
                    lock_path,
                    _file: file,
                });
            }
        }
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Whether `path` still names the file `file` is open on.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A scratch directory under `<store>/tmp/`, removed when dropped, and by
/// the next strata command if this process dies first ([`Store::temp_dir`]).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    // Dropped after the directory is removed (see `Drop`).
    hold: Option<Hold>,
}

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Directory first, lock last: a directory without its lock is
        // stale to every sweeper.
        let _ = remove_tree(&self.path);
        self.hold.take();
    }
}

/// Letters, digits, `-`, `_`, `.`, not starting with `.`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 200
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What a sweep removed.
#[derive(Debug, Clone, Default)]
pub(super) struct Swept {
    /// Paths removed (`tmp/<name>`, `snapshots/.active/<key>`) and the
    /// bytes each held.
    pub(super) names: Vec<(String, u64)>,
}

impl Store {
    /// A fresh scratch directory `tmp/<kind>-<pid>-<n>/`, held by this
    /// process and removed when the returned value drops. If the process
    /// dies first (even by `kill -9`), the next command that opens the store
    /// removes it: put secrets only in such a directory.
    pub fn temp_dir(&self, kind: &str) -> Result<TempDir> {
        if !valid_name(kind) {
            return Err(Error::invalid(format!(
                "temp dir kind {kind:?}: letters, digits, '-', '_', '.'"
            )));
        }
        let dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        let name = format!(
            "{kind}-{}-{}-{}",
            std::process::id(),
            now_nanos(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(&name);
        let hold = Hold::acquire(dir.join(format!("{name}.lock")))?;
        fs::create_dir(&path).ctx("create", &path)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).ctx("chmod", &path)?;
        Ok(TempDir {
            path,
            hold: Some(hold),
        })
    }

    /// Mark the active snapshot `snapshots/.active/<key>/` as in use by this
    /// process: take this *before* preparing the snapshot, keep it while the
    /// snapshot is mounted, and drop it after removing the snapshot. A
    /// snapshot whose holder died is removed by the next command that opens
    /// the store; one whose hold was released (a container layer kept on
    /// purpose) by garbage collection.
    pub fn hold_active(&self, key: &str) -> Result<Hold> {
        if !valid_name(key) {
            return Err(Error::invalid(format!(
                "snapshot key {key:?}: letters, digits, '-', '_', '.'"
            )));
        }
        let dir = self.root.join(ACTIVE_DIR);
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        Hold::acquire(dir.join(format!("{key}.lock")))
    }

    /// Keep the active snapshot `snapshots/.active/<key>/` past its holder:
    /// a container's writable layer lives as long as the container, not the
    /// command that made it. Garbage collection leaves a kept snapshot alone
    /// until [`Store::release_active`] (the container's removal).
    pub fn keep_active(&self, key: &str) -> Result<()> {
        if !valid_name(key) {
            return Err(Error::invalid(format!(
                "snapshot key {key:?}: letters, digits, '-', '_', '.'"
            )));
        }
        let dir = self.root.join(ACTIVE_DIR);
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        let path = dir.join(format!("{key}{KEEP_SUFFIX}"));
        fs::File::create(&path).ctx("create", &path)?;
        Ok(())
    }

    /// Let garbage collection remove the active snapshot `key` again (call
    /// after removing it; a missing mark is fine).
    pub fn release_active(&self, key: &str) -> Result<()> {
        let path = self
            .root
            .join(ACTIVE_DIR)
            .join(format!("{key}{KEEP_SUFFIX}"));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", &path),
            _ => Ok(()),
        }
    }

    /// A fresh name for a snapshot being extracted,
    /// `snapshots/.tmp-<pid>-<n>`, held by this process: create the
    /// directory, fill it, rename it into place, then drop the hold. If the
    /// process dies first, the next command that opens the store removes it.
    pub fn hold_extraction(&self) -> Result<(PathBuf, Hold)> {
        let dir = self.snapshots_dir();
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        let name = format!(
            "{EXTRACT_PREFIX}{}-{}-{}",
            std::process::id(),
            now_nanos(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let hold = Hold::acquire(dir.join(format!("{name}.lock")))?;
        Ok((dir.join(name), hold))
    }

    /// Remove held state whose holder is gone: under `tmp/`, every
    /// directory without a live lock; under `snapshots/.active/`, every
    /// directory whose lock file is stale, and with `released` also those
    /// without a lock file; under `snapshots/`, extractions whose lock file
    /// is stale. Cheap when there is nothing to do (three directory
    /// listings), so [`Store::open`] runs it.
    pub(super) fn sweep_held(&self, released: bool, dry_run: bool) -> Result<Swept> {
        let mut swept = Swept::default();
        let mut mounts: Option<Vec<PathBuf>> = None;
        for (base, orphans) in [
            (TMP_DIR, true),
            (ACTIVE_DIR, released),
            (SNAPSHOTS_DIR, false),
        ] {
            let dir = self.root.join(base);
            let names = read_dir_sorted(&dir)?;
            for name in &names {
                let path = dir.join(name);
                if base == SNAPSHOTS_DIR && !name.starts_with(EXTRACT_PREFIX) {
                    continue;
                }
                if let Some(held) = name.strip_suffix(".lock") {
                    // A lock file: stale if we can lock it.
                    let Some(_stale) = try_lock_stale(&path) else {
                        continue;
                    };
                    let target = dir.join(held);
                    if target.exists() {
                        if has_mounts(&mut mounts, &target) {
                            continue;
                        }
                        let bytes = dir_size(&target);
                        // One that cannot be removed now (another sweeper
                        // is at it, or a file is busy) keeps its lock file,
                        // so the next sweep tries again.
                        if !dry_run && remove_tree(&target).is_err() {
                            continue;
                        }
                        swept.names.push((format!("{base}/{held}"), bytes));
                    }
                    if !dry_run {
                        let _ = fs::remove_file(&path);
                    }
                } else if orphans
                    && !names.iter().any(|n| *n == format!("{name}.lock"))
                    && !names.iter().any(|n| *n == format!("{name}{KEEP_SUFFIX}"))
                    && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
                {
                    // A directory without a lock file: its holder released
                    // it (or a version without holds made it). Its lock
                    // might appear right after our listing only if a holder
                    // re-used the name, and names are unique.
                    if has_mounts(&mut mounts, &path) {
                        continue;
                    }
                    let bytes = dir_size(&path);
                    if !dry_run && remove_tree(&path).is_err() {
                        continue;
                    }
                    swept.names.push((format!("{base}/{name}"), bytes));
                }
            }
        }
        Ok(swept)
    }
}

/// The lock on `path` if nobody holds it (and it is still that file).
fn try_lock_stale(path: &Path) -> Option<File> {
    let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive).ok()?;
    same_file(&file, path).then_some(file)
}

/// Whether a mount point lies at or under `dir` (`mounts` is filled on
/// first use).
fn has_mounts(mounts: &mut Option<Vec<PathBuf>>, dir: &Path) -> bool {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    mounts
        .get_or_insert_with(mount_points)
        .iter()
        .any(|m| m.starts_with(&dir))
}

/// Mount points of this process's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

/// `\040`-style octal escapes of mountinfo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/trail\04"), r"/trail\04");
    }

    #[test]
    fn kinds_and_keys_are_names() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for bad in ["", ".x", "a/b", "../x"] {
            assert!(s.temp_dir(bad).is_err(), "{bad:?}");
            assert!(s.hold_active(bad).is_err(), "{bad:?}");
        }
    }
}
