//! Read-only binds of the context (`RUN --mount=type=bind`), as BuildKit's
//! local sources work: the store keeps one copy per context directory and
//! bind source, synced by content digest before each use, so a step sees
//! the admitted files owned by root with the build's epoch as their time
//! (nothing of the host reaches a layer through a `cp -p`), and only files
//! whose content changed since the last sync are copied again.
//!
//! `<store>/build-cache/binds/<id>/` holds `tree/` (the copy), `manifest`
//! (what the copy holds: path, type, mode, content digest or link target)
//! and `lock` (exclusive while syncing, shared while a step uses the copy,
//! so a prune never takes a tree from under a running step).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use strata_context::{Context, Entry, EntryKind};
use strata_oci::Digest;

use crate::error::{Error, Result};

/// A synced copy in use: bind `path`; the shared lock lasts as long as this.
#[derive(Debug)]
pub(crate) struct BindTree {
    /// What to bind: the tree, or the file in it for a file source.
    pub(crate) path: PathBuf,
    _lock: fs::File,
}

/// One line of the manifest: what a path of the tree is.
fn describe(e: &Entry, digest: Option<&Digest>, preserve: bool) -> String {
    let what = match e.kind {
        EntryKind::File => digest.map(|d| d.to_string()).unwrap_or_default(),
        EntryKind::Symlink => e
            .link_target
            .as_ref()
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let time = if preserve {
        format!(" @{}", e.mtime.sec)
    } else {
        String::new()
    };
    format!("{} {:o} {what}{time}", e.kind.letter(), e.mode)
}

/// Syncs and locks the copy of context entry `top` (and what the context
/// admits below it) for a read-only bind; `time` is the mtime every entry
/// gets, or `None` to keep the context's (`--timestamps preserve`).
pub(crate) fn bind_tree(
    cache_dir: &Path,
    ctx: &Context,
    top: &Entry,
    time: Option<i64>,
) -> Result<BindTree> {
    let id = Digest::sha256(
        format!(
            "{}\0{}\0{}",
            ctx.root().display(),
            top.path,
            time.map_or("preserve".to_owned(), |t| t.to_string())
        )
        .as_bytes(),
    );
    let base = cache_dir.join("binds").join(id.hex());
    let tree = base.join("tree");
    fs::create_dir_all(&base).map_err(|e| Error::io("create", &base, e))?;
    let lock_path = base.join("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
    flock(&lock, FlockOperation::LockExclusive)
        .map_err(|e| Error::io("lock", &lock_path, e.into()))?;
    sync(ctx, top, &base, &tree, time)?;
    // Others may use the same copy now; nobody syncs it while we hold this.
    flock(&lock, FlockOperation::LockShared)
        .map_err(|e| Error::io("lock", &lock_path, e.into()))?;
    let path = if top.kind == EntryKind::Dir {
        tree
    } else {
        tree.join(top.path.rsplit('/').next().unwrap_or(&top.path))
    };
    Ok(BindTree { path, _lock: lock })
}

fn sync(ctx: &Context, top: &Entry, base: &Path, tree: &Path, time: Option<i64>) -> Result<()> {
    let preserve = time.is_none();
    // What the tree must hold: relative path -> (entry, description).
    let entries: Vec<&Entry> = if top.kind == EntryKind::Dir {
        ctx.entries_under(&top.path).iter().collect()
    } else {
        vec![top]
    };
    let strip = if top.kind != EntryKind::Dir {
        top.path.rfind('/').map_or(0, |i| i + 1)
    } else if top.path == "." {
        0
    } else {
        top.path.len() + 1
    };
    let index = ctx.index_paths(&[top.path.as_str()])?;
    let mut want: BTreeMap<String, (&Entry, String)> = BTreeMap::new();
    for e in entries {
        if !matches!(
            e.kind,
            EntryKind::File | EntryKind::Dir | EntryKind::Symlink
        ) {
            continue;
        }
        let digest = index.get(&e.path).and_then(|i| i.digest.as_ref());
        want.insert(
            e.path[strip..].to_owned(),
            (e, describe(e, digest, preserve)),
        );
    }
    let manifest_path = base.join("manifest");
    let mut have: BTreeMap<String, String> = fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if have.is_empty() || !tree.is_dir() {
        let _ = strata_oci::remove_tree(tree);
        have.clear();
    }
    fs::create_dir_all(tree).map_err(|e| Error::io("create", tree, e))?;
    // Gone or changed kind: removed, deepest first.
    for (rel, desc) in have.iter().rev() {
        let keep = want
            .get(rel)
            .is_some_and(|(_, d)| d.chars().next() == desc.chars().next());
        if !keep {
            let p = tree.join(rel);
            let _ = match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => strata_oci::remove_tree(&p).map_err(|e| e.to_string()),
                Ok(_) => fs::remove_file(&p).map_err(|e| e.to_string()),
                Err(_) => Ok(()),
            };
        }
    }
    // New or changed: made again (parents come first in path order).
    for (rel, (e, desc)) in &want {
        if have.get(rel) == Some(desc) {
            continue;
        }
        let at = tree.join(rel);
        let src = ctx.root().join(&e.os_path);
        match e.kind {
            EntryKind::Dir => {
                fs::create_dir_all(&at).map_err(|err| Error::io("create", &at, err))?;
            }
            EntryKind::File => {
                let tmp = at.with_file_name(format!(
                    ".strata-tmp-{}",
                    at.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ));
                fs::copy(&src, &tmp).map_err(|err| Error::io("copy", &src, err))?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(e.mode))
                    .map_err(|err| Error::io("chmod", &tmp, err))?;
                stamp(&tmp, time.unwrap_or(e.mtime.sec))?;
                fs::rename(&tmp, &at).map_err(|err| Error::io("rename", &at, err))?;
            }
            EntryKind::Symlink => {
                let _ = fs::remove_file(&at);
                if let Some(t) = &e.link_target {
                    symlink(t, &at).map_err(|err| Error::io("create", &at, err))?;
                    stamp(&at, time.unwrap_or(e.mtime.sec))?;
                }
            }
            _ => {}
        }
    }
    // Directories last, deepest first: their mode, owner and time hold once
    // nothing more is made in them.
    let mut dirs: Vec<(PathBuf, &Entry)> = want
        .iter()
        .filter(|(_, (e, _))| e.kind == EntryKind::Dir)
        .map(|(rel, (e, _))| (tree.join(rel), *e))
        .collect();
    if top.kind == EntryKind::Dir {
        dirs.push((tree.to_path_buf(), top));
    } else {
        fs::set_permissions(tree, fs::Permissions::from_mode(0o755))
            .map_err(|err| Error::io("chmod", tree, err))?;
        stamp(tree, time.unwrap_or(0))?;
    }
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (at, e) in dirs {
        fs::set_permissions(&at, fs::Permissions::from_mode(e.mode))
            .map_err(|err| Error::io("chmod", &at, err))?;
        stamp(&at, time.unwrap_or(e.mtime.sec))?;
    }
    let manifest: BTreeMap<&String, &String> = want.iter().map(|(k, (_, d))| (k, d)).collect();
    crate::cache::write_atomic(
        &manifest_path,
        &serde_json::to_vec(&manifest).unwrap_or_default(),
    )
}

/// Makes `path` (not following a symlink) root-owned with mtime `secs`.
pub(crate) fn stamp(path: &Path, secs: i64) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(0), Some(0)).map_err(|e| Error::io("chown", path, e))?;
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io("set the time of", path, e.into()))
}

/// Removes the copies no running step uses (they are made again when
/// needed); returns the bytes freed.
pub fn prune_bind_trees(store: &strata_oci::Store) -> u64 {
    let dir = store.root().join("build-cache").join("binds");
    let Ok(rd) = fs::read_dir(&dir) else {
        return 0;
    };
    let mut freed = 0;
    for e in rd.flatten() {
        let base = e.path();
        let Ok(lock) = fs::OpenOptions::new().write(true).open(base.join("lock")) else {
            let _ = strata_oci::remove_tree(&base);
            continue;
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // in use
        }
        freed += du(&base);
        let _ = strata_oci::remove_tree(&base);
    }
    freed
}

fn du(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut n = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata() {
                n += m.blocks() * 512;
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    n
}
