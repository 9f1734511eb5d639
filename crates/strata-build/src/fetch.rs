//! Getting bytes into a build: ADD URL downloads, and directories for
//! `RUN --mount=type=bind` made from the context (only what .dockerignore
//! admits) or from another stage's file system.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_context::{Context, Entry, EntryKind};
use strata_oci::{Digest, HashingWriter};

use crate::error::{Error, ErrorKind, Result};
use strata_layer::MergedView;

/// Downloads `url` into `dir`, named after the last path segment of the URL
/// (or `index.html`), verifying `checksum` when given. Streams to disk;
/// reports progress through `progress(bytes, total)`.
pub fn download(
    url: &str,
    dir: &Path,
    checksum: Option<&Digest>,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<PathBuf> {
    let err = |message: String| -> Error {
        ErrorKind::Download {
            url: url.to_owned(),
            message,
        }
        .into()
    };
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("index.html")
        .to_owned();
    let path = dir.join(&name);
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .timeout(None)
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut resp = client.get(url).send().map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("the server answered {}", resp.status())));
    }
    let total = resp.content_length();
    let file = fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
    let mut w = HashingWriter::new(io::BufWriter::new(file));
    let mut buf = vec![0u8; 1 << 16];
    let mut last = 0u64;
    loop {
        let n = resp.read(&mut buf).map_err(|e| err(e.to_string()))?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])
            .map_err(|e| Error::io("write", &path, e))?;
        if w.count() - last >= 1 << 20 {
            last = w.count();
            progress(last, total);
        }
    }
    let (mut inner, digest, size) = w.finish();
    inner.flush().map_err(|e| Error::io("write", &path, e))?;
    progress(size, total);
    if let Some(t) = total {
        if t != size {
            return Err(err(format!("expected {t} bytes, got {size}")));
        }
    }
    if let Some(expected) = checksum {
        let actual = if expected.algorithm() == digest.algorithm() {
            digest
        } else {
            let f = fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            let mut r = strata_oci::HashingReader::new(f, expected.algorithm());
            io::copy(&mut r, &mut io::sink()).map_err(|e| Error::io("read", &path, e))?;
            r.finish().0
        };
        if &actual != expected {
            return Err(err(format!(
                "checksum mismatch: expected {expected}, got {actual}"
            )));
        }
    }
    Ok(path)
}

/// Copies the context entry `top` and what the context admits below it into
/// `dest`: a bind mount of the context never shows files .dockerignore
/// excludes. What the step sees is a function of its key, never of the
/// host: files and directories are owned by root (as COPY makes them) and
/// carry `mtime` (the build's epoch), or their own mtimes when `mtime` is
/// `None` (`--timestamps preserve`, which keys them). Files are copied (a
/// reflink where the file system can), never hard-linked: a link would show
/// the host's owner and times, and a `cp -p` out of the mount would carry
/// them into the layer. Returns what to bind: `dest`, or the file inside it
/// when `top` is not a directory.
pub fn materialize_context(
    ctx: &Context,
    top: &Entry,
    dest: &Path,
    mtime: Option<i64>,
) -> Result<PathBuf> {
    fs::create_dir_all(dest).map_err(|e| Error::io("create", dest, e))?;
    // Directories get their mode and time once their children are in.
    let mut dirs: Vec<(PathBuf, &Entry)> = Vec::new();
    let put = |e: &Entry, at: &Path| -> Result<()> {
        let src = ctx.root().join(&e.os_path);
        match e.kind {
            EntryKind::Dir => {
                fs::create_dir_all(at).map_err(|err| Error::io("create", at, err))?;
            }
            EntryKind::File => {
                fs::copy(&src, at).map_err(|err| Error::io("copy", at, err))?;
                fs::set_permissions(at, fs::Permissions::from_mode(e.mode))
                    .map_err(|err| Error::io("chmod", at, err))?;
            }
            EntryKind::Symlink => match &e.link_target {
                Some(t) => symlink(t, at).map_err(|err| Error::io("create", at, err))?,
                None => return Ok(()),
            },
            _ => return Ok(()),
        }
        crate::bindtree::stamp(at, mtime.unwrap_or(e.mtime.sec))
    };
    if top.kind != EntryKind::Dir {
        let at = dest.join(top.path.rsplit('/').next().unwrap_or(&top.path));
        put(top, &at)?;
        return Ok(at);
    }
    let strip = if top.path == "." {
        0
    } else {
        top.path.len() + 1
    };
    for e in ctx.entries_under(&top.path) {
        let at = dest.join(&e.path[strip..]);
        if let Some(parent) = at.parent() {
            fs::create_dir_all(parent).map_err(|err| Error::io("create", parent, err))?;
        }
        put(e, &at)?;
        if e.kind == EntryKind::Dir {
            dirs.push((at, e));
        }
    }
    dirs.push((dest.to_path_buf(), top));
    // Deepest first, so setting a directory's time is the last change in it.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (at, e) in dirs {
        fs::set_permissions(&at, fs::Permissions::from_mode(e.mode))
            .map_err(|err| Error::io("chmod", &at, err))?;
        crate::bindtree::stamp(&at, mtime.unwrap_or(e.mtime.sec))?;
    }
    Ok(dest.to_path_buf())
}

/// What a bind of these context entries shows, for the cache key: per entry
/// its path, type, mode, size and content digest or link target, and with
/// `--timestamps preserve` its mtime. Never the host's owner (the bind shows
/// root) or, otherwise, its times.
pub fn context_bind_digest(index: &strata_context::Index, preserve: bool) -> Digest {
    let mut text = String::from("strata.bind.v1\n");
    for ie in index.entries() {
        let e = &ie.entry;
        let size = if e.kind == EntryKind::File { e.size } else { 0 };
        let content = match (&ie.digest, &e.link_target) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string_lossy().into_owned(),
            (None, None) => String::new(),
        };
        let _ = write!(
            text,
            "{}\0{} {:o} {size} {content}",
            e.path,
            e.kind.letter(),
            e.mode
        );
        if preserve {
            let _ = write!(text, " @{}", e.mtime.sec);
        }
        text.push('\n');
    }
    Digest::sha256(text.as_bytes())
}

/// The same for a path of a stage's merged file system.
pub fn materialize_view(
    view: &MergedView,
    source: &str,
    dest: &Path,
    readonly: bool,
) -> Result<PathBuf> {
    let comps = view
        .resolve(source, true)
        .map_err(|e| Error::invalid(format!("cannot resolve {source}: {e}")))?;
    let look = |comps: &[String]| {
        view.lookup_exact(comps)
            .map_err(|e| Error::invalid(format!("cannot read /{}: {e}", comps.join("/"))))
    };
    let Some(found) = look(&comps)? else {
        return Err(ErrorKind::SourceNotFound {
            source_path: source.to_owned(),
            excluded: false,
        }
        .into());
    };
    if !found.meta.is_dir() {
        fs::create_dir_all(dest).map_err(|e| Error::io("create", dest, e))?;
        let at = dest.join(comps.last().cloned().unwrap_or_default());
        copy_node(&found.real, &found.meta, &at, readonly)?;
        return Ok(at);
    }
    let mut stack = vec![(comps, dest.to_path_buf())];
    while let Some((dir, at)) = stack.pop() {
        fs::create_dir_all(&at).map_err(|e| Error::io("create", &at, e))?;
        if let Some(m) = view
            .stat_exact(&dir)
            .map_err(|e| Error::invalid(format!("cannot look up /{}: {e}", dir.join("/"))))?
        {
            let _ = fs::set_permissions(&at, fs::Permissions::from_mode(m.mode()));
        }
        let names = view
            .read_dir(&dir)
            .map_err(|e| Error::invalid(format!("cannot list /{}: {e}", dir.join("/"))))?;
        for name in names {
            let mut child = dir.clone();
            child.push(name.clone());
            let Some(f) = look(&child)? else {
                continue;
            };
            let target = at.join(&name);
            if f.meta.is_dir() {
                stack.push((child, target));
            } else {
                copy_node(&f.real, &f.meta, &target, readonly)?;
            }
        }
    }
    Ok(dest.to_path_buf())
}

fn copy_node(src: &Path, meta: &strata_layer::Meta, at: &Path, readonly: bool) -> Result<()> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let t = fs::read_link(src).map_err(|e| Error::io("read link", src, e))?;
        symlink(t, at).map_err(|e| Error::io("create", at, e))
    } else if ft.is_file() {
        link_or_copy(src, at, readonly)
    } else {
        Ok(()) // devices, fifos and whiteouts are not materialized
    }
}

/// Hard link when the mount is read-only (cheap, and the source cannot be
/// written through a read-only bind), else a real copy.
fn link_or_copy(src: &Path, at: &Path, readonly: bool) -> Result<()> {
    if readonly && fs::hard_link(src, at).is_ok() {
        return Ok(());
    }
    let mut from = fs::File::open(src).map_err(|e| Error::io("open", src, e))?;
    let mut to = fs::File::create(at).map_err(|e| Error::io("create", at, e))?;
    io::copy(&mut from, &mut to).map_err(|e| Error::io("copy", at, e))?;
    if let Ok(m) = from.metadata() {
        let _ = fs::set_permissions(at, fs::Permissions::from_mode(m.mode() & 0o7777));
    }
    Ok(())
}
