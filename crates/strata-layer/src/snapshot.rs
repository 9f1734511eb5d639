//! Snapshots: each layer extracted once (overlay mode) into
//! `<store>/snapshots/<diffID hex>/`, stacked as overlay lowerdirs; active
//! snapshots (a fresh upper for a RUN step) under `snapshots/.active/<key>/`.
//!
//! The snapshotter returns mounts as plain data and never mounts anything
//! itself (the sandbox does the syscalls).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_oci::{Digest, Image, Layer, Store};

use crate::diff::upper_to_entries_against;
use crate::error::IoContext;
use crate::writer::{prepare_entries, write_sorted_to_store};
use crate::{
    apply_layer, diff_dirs, ApplyMode, Error, LayerIndex, LayerInfo, LayerOptions, MergedView,
    Result,
};

/// A mount, as data: what `mount -t KIND SOURCE TARGET -o OPTIONS` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// File system type (`overlay`, `bind`).
    pub kind: String,
    /// Source (`overlay`, or a directory for binds).
    pub source: PathBuf,
    /// Options (`lowerdir=...`, `upperdir=...`, `workdir=...`, `rbind`, `ro`).
    pub options: Vec<String>,
}

impl Mount {
    /// The options joined with commas, as `mount -o` takes them.
    pub fn options_string(&self) -> String {
        self.options.join(",")
    }
}

/// Make everything written under `dir` durable before it is renamed into
/// place: one `syncfs` of its file system (as containerd's applier does)
/// rather than an fsync per file, which costs a journal commit each.
pub(crate) fn sync_tree(dir: &Path) -> Result<()> {
    let d = fs::File::open(dir).ctx("open", dir)?;
    rustix::fs::syncfs(&d).ctx("sync the file system of", dir)
}

/// A full disk while extracting or writing a layer is the store's disk
/// being full: say so, naming the store's directory, rather than "reading
/// the layer" or "read <source file>".
pub(crate) fn no_space_in_store(e: Error, op: &'static str, dir: &Path) -> Error {
    if strata_oci::is_no_space(&e) {
        Error::Store(strata_oci::Error::NoSpace {
            op,
            path: dir.to_owned(),
            source: rustix::io::Errno::NOSPC.into(),
        })
    } else {
        e
    }
}

/// Manages snapshot directories in a store.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    pub(crate) store: Store,
    pub(crate) dir: PathBuf,
    /// Indexes of layers written or read by this process (see [`LayerIndex`]).
    pub(crate) indexes: Arc<Mutex<HashMap<Digest, Arc<LayerIndex>>>>,
}

pub(crate) fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

fn valid_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.starts_with('.')
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Err(Error::invalid(
            key,
            "snapshot keys are letters, digits, '-', '_', '.'",
        ));
    }
    Ok(())
}

impl Snapshotter {
    /// The snapshotter of `store`.
    pub fn new(store: &Store) -> Result<Snapshotter> {
        let dir = store.snapshots_dir();
        fs::create_dir_all(dir.join(".active")).ctx("create", &dir)?;
        fs::create_dir_all(dir.join(".empty")).ctx("create", &dir)?;
        fs::create_dir_all(dir.join(".index")).ctx("create", &dir)?;
        Ok(Snapshotter {
            store: store.clone(),
            dir,
            indexes: Default::default(),
        })
    }

    /// Where the snapshot of the layer with this diffID lives.
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// Whether the layer is extracted.
    pub fn exists(&self, diff_id: &Digest) -> bool {
        self.path(diff_id).is_dir()
    }

    /// Extract `layer` (overlay mode) unless it already is; atomic and
    /// durable: into a temp dir, diffID checked, everything written synced
    /// to disk, then renamed into place and the rename synced. A snapshot
    /// directory therefore exists only complete, even after a power loss,
    /// which is why its existence alone is trusted. Returns its directory.
    pub fn ensure_layer(&self, layer: &Layer) -> Result<PathBuf> {
        let target = self.path(&layer.diff_id);
        if target.is_dir() {
            return Ok(target);
        }
        // Held: if this process dies, the next command removes it.
        let (tmp, _hold) = self.store.hold_extraction()?;
        fs::create_dir(&tmp).ctx("create", &tmp)?;
        let result = (|| {
            let blob = self.store.open_blob(&layer.descriptor.digest)?;
            let stats = apply_layer(std::io::BufReader::new(blob), &tmp, ApplyMode::Overlay)?;
            if stats.diff_id != layer.diff_id {
                return Err(Error::Store(strata_oci::Error::DigestMismatch {
                    what: format!("uncompressed layer {}", layer.descriptor.digest),
                    expected: layer.diff_id.to_string(),
                    actual: stats.diff_id.to_string(),
                }));
            }
            sync_tree(&tmp)
        })();
        if let Err(e) = result {
            let _ = strata_oci::remove_tree(&tmp);
            return Err(no_space_in_store(e, "extract a layer into", &self.dir));
        }
        match fs::rename(&tmp, &target) {
            Ok(()) => {}
            // Another process finished first: theirs is as good as ours.
            Err(_) if target.is_dir() => {
                let _ = strata_oci::remove_tree(&tmp);
            }
            Err(e) => {
                let _ = strata_oci::remove_tree(&tmp);
                return Err(e).ctx("rename into", &target);
            }
        }
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .ctx("fsync", &self.dir)?;
        Ok(target)
    }

    /// Extract every layer of `image` and return the overlay lowerdir list,
    /// top layer first (the order `lowerdir=` takes).
    pub fn lowerdirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        self.lowerdirs_of(&image.layers)
    }

    fn lowerdirs_of(&self, layers: &[Layer]) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for l in layers {
            dirs.push(self.ensure_layer(l)?);
        }
        dirs.reverse();
        Ok(dirs)
    }

    fn active(&self, key: &str) -> PathBuf {
        self.dir.join(".active").join(key)
    }

    /// A writable snapshot on top of `parents` (bottom first): an overlay
    /// with a fresh upper and work dir. Mount it, run, then [`Snapshotter::commit`].
    pub fn prepare(&self, key: &str, parents: &[Layer]) -> Result<Vec<Mount>> {
        valid_key(key)?;
        let lowers = self.lowerdirs_of(parents)?;
        let a = self.active(key);
        if a.exists() {
            return Err(Error::Store(strata_oci::Error::AlreadyExists {
                what: format!("snapshot {key}"),
            }));
        }
        for d in ["upper", "work"] {
            fs::create_dir_all(a.join(d)).ctx("create", a.join(d))?;
        }
        // The lower layers, for commit to leave out what a copy-up did not
        // change.
        let list: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        fs::write(a.join("lowers"), list.join("\n")).ctx("write", a.join("lowers"))?;
        Ok(vec![self.overlay_mount(&lowers, Some(&a))])
    }

    /// A read-only view of `parents`.
    pub fn view(&self, parents: &[Layer]) -> Result<Vec<Mount>> {
        let lowers = self.lowerdirs_of(parents)?;
        Ok(vec![self.overlay_mount(&lowers, None)])
    }

    fn overlay_mount(&self, lowers: &[PathBuf], active: Option<&Path>) -> Mount {
        let mut lowers: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        if lowers.is_empty() || (active.is_none() && lowers.len() == 1) {
            // overlay needs two layers for a read-only mount, one lower otherwise.
            lowers.push(self.dir.join(".empty").display().to_string());
        }
        let mut options = vec![format!("lowerdir={}", lowers.join(":"))];
        if let Some(a) = active {
            options.push(format!("upperdir={}", a.join("upper").display()));
            options.push(format!("workdir={}", a.join("work").display()));
        }
        options.push("redirect_dir=off".into());
        options.push("index=off".into());
        options.push("metacopy=off".into());
        Mount {
            kind: "overlay".into(),
            source: PathBuf::from("overlay"),
            options,
        }
    }

    /// The fallback without overlayfs: a full copy of `parents` applied in
    /// plain mode, plus a pristine copy to compare against at commit.
    /// Returns a bind mount of the writable copy.
    pub fn prepare_copy(&self, key: &str, parents: &[Layer]) -> Result<Vec<Mount>> {
        valid_key(key)?;
        let a = self.active(key);
        if a.exists() {
            return Err(Error::Store(strata_oci::Error::AlreadyExists {
                what: format!("snapshot {key}"),
            }));
        }
        for d in ["lower", "root"] {
            let dir = a.join(d);
            fs::create_dir_all(&dir).ctx("create", &dir)?;
            for l in parents {
                let blob = self.store.open_blob(&l.descriptor.digest)?;
                apply_layer(std::io::BufReader::new(blob), &dir, ApplyMode::Plain)?;
            }
        }
        // Directories a layer does not list, but a later layer adds to, got
        // the clock's time in each copy: make the two copies agree, so only
        // what the command changes differs.
        copy_dir_times(&a.join("lower"), &a.join("root"))?;
        Ok(vec![Mount {
            kind: "bind".into(),
            source: a.join("root"),
            options: vec!["rbind".into(), "rw".into()],
        }])
    }

    /// The directory a prepared snapshot's changes land in (`upper` for
    /// overlay, the writable copy for the fallback).
    pub fn writable_dir(&self, key: &str) -> PathBuf {
        let a = self.active(key);
        if a.join("root").is_dir() {
            a.join("root")
        } else {
            a.join("upper")
        }
    }

    /// Turn a prepared snapshot's changes into a layer in the store, make
    /// the overlay upper directory the layer's snapshot (see
    /// [`Snapshotter::adopt_upper`]), and drop the active snapshot.
    pub fn commit(&self, key: &str, opts: &LayerOptions) -> Result<LayerInfo> {
        valid_key(key)?;
        let a = self.active(key);
        let copy = a.join("root").is_dir();
        let entries = if copy {
            diff_dirs(&a.join("lower"), &a.join("root"))?
        } else if a.join("upper").is_dir() {
            let lowers = fs::read_to_string(a.join("lowers")).unwrap_or_default();
            let view = MergedView::new(
                lowers
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(PathBuf::from)
                    .collect(),
            );
            upper_to_entries_against(&a.join("upper"), &view, opts.xattrs)?
        } else {
            return Err(Error::Store(strata_oci::Error::NotFound {
                what: format!("snapshot {key}"),
            }));
        };
        let entries = prepare_entries(entries)?;
        let index = LayerIndex::from_entries(&entries, opts).ok();
        let info = write_sorted_to_store(&self.store, &entries, opts, None)?;
        if let Some(index) = index {
            self.keep_index(&info.diff_id, index);
        }
        if !copy
            && self
                .adopt_upper(&a.join("upper"), &entries, opts, &info.diff_id)
                .is_err()
        {
            let layer = Layer {
                descriptor: info.descriptor(),
                diff_id: info.diff_id.clone(),
            };
            self.ensure_layer(&layer)?;
        }
        self.remove(key)?;
        Ok(info)
    }

    /// Drop an active snapshot.
    pub fn remove(&self, key: &str) -> Result<()> {
        valid_key(key)?;
        strata_oci::remove_tree(&self.active(key))?;
        Ok(())
    }
}

/// Sets the mtime of every directory under `to` to that of the same
/// directory under `from` (the trees hold the same paths).
fn copy_dir_times(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let src = from.join(&rel);
        for e in fs::read_dir(&src).ctx("list", &src)? {
            let e = e.ctx("list", &src)?;
            if e.file_type().ctx("stat", e.path())?.is_dir() {
                stack.push(rel.join(e.file_name()));
            }
        }
        let meta = fs::symlink_metadata(&src).ctx("stat", &src)?;
        let t = rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        let dst = to.join(&rel);
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &dst,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)
        .ctx("set times of", &dst)?;
    }
    Ok(())
}
