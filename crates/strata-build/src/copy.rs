//! COPY and ADD: which files, where they land, with which owner and mode,
//! and what goes into the cache key. The result is a list of layer entries
//! written straight from the sources into the layer (no staging copy).
//!
//! Docker's rules: a directory source copies its contents; several sources
//! or a wildcard need a directory destination ending in `/`; a relative
//! destination is relative to WORKDIR; destination symlinks resolve inside
//! the image's root; files from the context are owned by 0:0 unless
//! `--chown`; files from another stage keep their owner; `--parents` keeps
//! the source path; `--exclude` drops matching sources; ADD unpacks local
//! tar archives (plain, gzip, bzip2, xz, zstd) and downloads URLs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use strata_context::{Context, EntryKind as CtxKind, Matcher};
use strata_layer::{Entry, EntryKind, FileSource};
use strata_oci::{Digest, HashingReader};

use crate::error::{Error, ErrorKind, Result};
use crate::key::file_desc;
use strata_layer::{clean_components, MergedView, Meta};

/// Where COPY reads from.
pub enum Source<'a> {
    /// The build context.
    Context(&'a Context),
    /// Another stage's or image's file system.
    View(&'a MergedView),
}

/// A parsed `--chown` (already resolved to ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What the COPY/ADD asks for, expanded.
#[derive(Clone)]
pub struct CopyRequest<'a> {
    /// Source paths, expanded (URLs for ADD are handled by the caller).
    pub sources: Vec<String>,
    /// Heredoc files: (name, content).
    pub heredocs: Vec<(String, Vec<u8>)>,
    /// Destination, expanded, absolute or WORKDIR-relative.
    pub dest: String,
    /// The stage's WORKDIR.
    pub workdir: String,
    /// `--chown`.
    pub owner: Option<Owner>,
    /// `--chmod` (bits for files; directories get them too, as BuildKit).
    pub chmod: Option<u32>,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD: unpack local archives.
    pub unpack: bool,
    /// Keep mtimes (they then enter the key too).
    pub preserve_times: bool,
    /// Scratch space for unpacking archives.
    pub tmp: &'a Path,
}

/// A planned copy: layer entries and the source description for the key.
#[derive(Default)]
pub struct CopyPlan {
    /// Entries for the layer.
    pub entries: Vec<Entry>,
    /// Source path -> description (type, mode, size, content digest).
    pub files: BTreeMap<String, String>,
    /// Source files re-read because their timestamps changed, whose content
    /// did not (touched, not changed).
    pub rehashed: usize,
    /// Temporary directories to delete after the layer is written.
    pub temp_dirs: Vec<PathBuf>,
}

/// One thing to put at `dest`.
struct Item {
    dest: Vec<String>,
    kind: EntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

fn join_dest(workdir: &str, dest: &str) -> String {
    if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), dest)
    }
}

/// The `--exclude` patterns of `req`, compiled (`None` without any).
fn exclude_matcher(req: &CopyRequest<'_>) -> Result<Option<Matcher>> {
    if req.exclude.is_empty() {
        return Ok(None);
    }
    Matcher::new(req.exclude.iter().map(String::as_str))
        .map(Some)
        .map_err(|e| Error::invalid(format!("invalid --exclude pattern: {e}")))
}

/// Plans a COPY/ADD. `target` is the current stage's view (for destination
/// symlinks and existing directories); `None` with `--link`.
pub fn plan(
    req: &CopyRequest<'_>,
    src: Source<'_>,
    target: Option<&MergedView>,
) -> Result<CopyPlan> {
    let mut plan = CopyPlan::default();
    let exclude = exclude_matcher(req)?;
    let wildcard = req.sources.iter().any(|s| strata_context::has_wildcards(s));
    let many = req.sources.len() + req.heredocs.len() > 1 || wildcard;
    let dest_abs = join_dest(&req.workdir, &req.dest);
    let dest_slash = dest_abs.ends_with('/') || req.dest == "." || req.dest.ends_with("/.");
    let empty = MergedView::default();
    let view = target.unwrap_or(&empty);
    let dest_exists_dir = view
        .stat(&dest_abs)
        .ok()
        .flatten()
        .is_some_and(|(_, m)| m.is_dir());
    if many && !dest_slash && !dest_exists_dir {
        return Err(Error::invalid(
            "when using COPY with more than one source file, the destination must be a directory and end with a /",
        ));
    }
    let dest_is_dir = many || dest_slash || dest_exists_dir;
    // The destination, symlinks resolved inside the root.
    let dest_dir: Vec<String> = if dest_is_dir {
        resolve_in(view, &dest_abs, true)?
    } else {
        let comps = clean_components(&dest_abs);
        let (parent, name) = match comps.split_last() {
            Some((name, parent)) => (parent.join("/"), name.clone()),
            None => return Err(Error::invalid("cannot copy a file onto /")),
        };
        let mut p = resolve_in(view, &format!("/{parent}"), true)?;
        p.push(name);
        p
    };

    let mut items: Vec<Item> = Vec::new();
    for (name, content) in &req.heredocs {
        let mut dest = dest_dir.clone();
        if dest_is_dir {
            dest.extend(clean_components(name));
        }
        plan.files.insert(
            format!("<<{name}"),
            file_desc(
                'f',
                0o644,
                0,
                0,
                content.len() as u64,
                &Digest::sha256(content).to_string(),
            ),
        );
        items.push(Item {
            dest,
            kind: EntryKind::File {
                size: content.len() as u64,
                source: FileSource::Bytes(content.clone()),
            },
            mode: req.chmod.unwrap_or(0o644),
            uid: req.owner.map_or(0, |o| o.uid),
            gid: req.owner.map_or(0, |o| o.gid),
            mtime: 0,
        });
    }
    match src {
        Source::Context(ctx) => plan_context(
            req,
            ctx,
            exclude.as_ref(),
            &dest_dir,
            dest_is_dir,
            &mut plan,
            &mut items,
        )?,
        Source::View(v) => plan_view(
            req,
            v,
            exclude.as_ref(),
            &dest_dir,
            dest_is_dir,
            &mut plan,
            &mut items,
        )?,
    }

    // Parent directories of everything copied, as the image has them (or
    // new, 0755, owned by --chown or root).
    let mut dirs: BTreeMap<Vec<String>, Entry> = BTreeMap::new();
    for item in &items {
        for n in 1..item.dest.len() {
            let comps = item.dest[..n].to_vec();
            if dirs.contains_key(&comps) {
                continue;
            }
            let found = view
                .stat_exact(&comps)
                .map_err(|e| Error::invalid(format!("cannot look up /{}: {e}", comps.join("/"))))?;
            let entry = match found {
                Some(m) if m.is_dir() => {
                    let mut e = Entry::new(comps.join("/"), EntryKind::Dir);
                    e.mode = m.mode();
                    e.uid = m.uid();
                    e.gid = m.gid();
                    e.mtime = m.mtime();
                    e
                }
                _ => {
                    let mut e = Entry::new(comps.join("/"), EntryKind::Dir);
                    e.mode = 0o755;
                    if n >= dest_dir.len() || !dest_is_dir {
                        // Directories below the destination come from the
                        // sources themselves; only fill gaps here.
                    }
                    if let Some(o) = req.owner {
                        e.uid = o.uid;
                        e.gid = o.gid;
                    }
                    e
                }
            };
            dirs.insert(comps, entry);
        }
    }
    let mut by_path: BTreeMap<Vec<String>, Entry> = dirs;
    for item in items {
        if item.dest.is_empty() {
            // The destination is / itself: nothing to write for the dir.
            continue;
        }
        let mut e = Entry::new(item.dest.join("/"), item.kind);
        e.mode = item.mode;
        e.uid = item.uid;
        e.gid = item.gid;
        e.mtime = item.mtime;
        by_path.insert(item.dest, e);
    }
    plan.entries = by_path.into_values().collect();
    Ok(plan)
}

/// What a COPY from the context keys on ([`CopyPlan::files`] and
/// [`CopyPlan::rehashed`]), without looking at the destination: the same
/// as [`plan`] gives for any destination. For a COPY whose destination's
/// layers are not at hand (left in a registry), so a cache hit never
/// fetches them. Not for ADD (archives are unpacked) or heredocs.
pub fn source_files(req: &CopyRequest<'_>, ctx: &Context) -> Result<CopyPlan> {
    let exclude = exclude_matcher(req)?;
    let mut plan = CopyPlan::default();
    let mut items = Vec::new();
    let key_only = CopyRequest {
        unpack: false,
        heredocs: Vec::new(),
        ..req.clone()
    };
    plan_context(
        &key_only,
        ctx,
        exclude.as_ref(),
        &[],
        true,
        &mut plan,
        &mut items,
    )?;
    Ok(plan)
}

/// Whether `comps` exists in `view` (metadata only: nothing is extracted).
fn exists(view: &MergedView, comps: &[String]) -> Result<bool> {
    view.stat_exact(comps)
        .map(|m| m.is_some())
        .map_err(|e| Error::invalid(format!("cannot look up /{}: {e}", comps.join("/"))))
}

/// The names in directory `comps` of `view`.
fn list(view: &MergedView, comps: &[String]) -> Result<Vec<String>> {
    view.read_dir(comps)
        .map_err(|e| Error::invalid(format!("cannot list /{}: {e}", comps.join("/"))))
}

fn resolve_in(view: &MergedView, path: &str, follow_last: bool) -> Result<Vec<String>> {
    view.resolve(path, follow_last)
        .map_err(|e| Error::invalid(format!("cannot resolve {path} in the image: {e}")))
}

fn excluded(exclude: Option<&Matcher>, paths: &[&str]) -> bool {
    exclude.is_some_and(|m| paths.iter().any(|p| m.matches(p)))
}

#[allow(clippy::too_many_arguments)]
fn plan_context(
    req: &CopyRequest<'_>,
    ctx: &Context,
    exclude: Option<&Matcher>,
    dest_dir: &[String],
    dest_is_dir: bool,
    plan: &mut CopyPlan,
    items: &mut Vec<Item>,
) -> Result<()> {
    // (context path, dest components, entry)
    let mut chosen: Vec<(String, Vec<String>, strata_context::Entry)> = Vec::new();
    for source in &req.sources {
        // `--parents` with a `/./` pivot: keep only what follows it.
        let (pivot, pattern) = match source.split_once("/./") {
            Some((a, b)) if req.parents => (
                Some(a.trim_start_matches("./").to_owned()),
                format!("{a}/{b}"),
            ),
            _ => (None, source.clone()),
        };
        let matched = ctx.match_sources(&pattern)?;
        if matched.is_empty() {
            let cleaned = clean_components(&pattern).join("/");
            let is_excluded = !cleaned.is_empty() && ctx.matcher().matches(&cleaned);
            return Err(ErrorKind::SourceNotFound {
                source_path: source.clone(),
                excluded: is_excluded,
            }
            .into());
        }
        let literal = !strata_context::has_wildcards(&pattern);
        for e in matched {
            // A symlink named directly is followed (inside the context).
            let e = if literal && e.kind == CtxKind::Symlink {
                ctx.resolve(&e.path)?
            } else {
                e
            };
            let rel_root = |p: &str| -> Vec<String> {
                let p = match &pivot {
                    Some(pv) if !pv.is_empty() => p.strip_prefix(pv.as_str()).unwrap_or(p),
                    _ => p,
                };
                clean_components(p)
            };
            if e.kind == CtxKind::Dir {
                let base = if req.parents {
                    let mut d = dest_dir.to_vec();
                    d.extend(rel_root(&e.path));
                    d
                } else {
                    dest_dir.to_vec()
                };
                if req.parents && !excluded(exclude, &[&e.path]) {
                    chosen.push((e.path.clone(), base.clone(), e.clone()));
                }
                let strip = if e.path == "." { 0 } else { e.path.len() + 1 };
                for child in ctx.entries_under(&e.path) {
                    let rel = &child.path[strip..];
                    if excluded(exclude, &[rel, &child.path]) {
                        continue;
                    }
                    let mut d = base.clone();
                    d.extend(clean_components(rel));
                    chosen.push((child.path.clone(), d, child.clone()));
                }
            } else {
                if excluded(exclude, &[&e.path]) {
                    continue;
                }
                let d = if req.parents {
                    let mut d = dest_dir.to_vec();
                    d.extend(rel_root(&e.path));
                    d
                } else if dest_is_dir {
                    let mut d = dest_dir.to_vec();
                    let name = e.path.rsplit('/').next().unwrap_or(&e.path);
                    d.push(name.to_owned());
                    d
                } else {
                    dest_dir.to_vec()
                };
                chosen.push((e.path.clone(), d, e.clone()));
            }
        }
    }
    // Content digests from the index (stat-hint cache: unchanged files are
    // not re-read).
    let file_paths: Vec<&str> = chosen
        .iter()
        .filter(|(_, _, e)| e.kind == CtxKind::File)
        .map(|(p, _, _)| p.as_str())
        .collect();
    let index = ctx.index_paths(&file_paths)?;
    plan.rehashed = index.stats().touched;
    for (path, dest, e) in chosen {
        let (uid, gid) = req.owner.map_or((0, 0), |o| (o.uid, o.gid));
        let mode = match (req.chmod, e.kind) {
            (Some(m), CtxKind::File | CtxKind::Dir) => m,
            _ => e.mode,
        };
        let mtime = e.mtime.sec;
        let time = if req.preserve_times {
            format!(" @{mtime}")
        } else {
            String::new()
        };
        let kind = match e.kind {
            CtxKind::File => {
                let digest = index
                    .get(&path)
                    .and_then(|i| i.digest.clone())
                    .ok_or_else(|| Error::invalid(format!("{path}: not in the context index")))?;
                plan.files.insert(
                    path.clone(),
                    file_desc('f', e.mode, 0, 0, e.size, &digest.to_string()) + &time,
                );
                EntryKind::File {
                    size: e.size,
                    source: FileSource::Path(ctx.root().join(&e.os_path)),
                }
            }
            CtxKind::Dir => {
                plan.files.insert(
                    format!("{path}/"),
                    file_desc('d', e.mode, 0, 0, 0, "-") + &time,
                );
                EntryKind::Dir
            }
            CtxKind::Symlink => {
                let target = e.link_target.clone().unwrap_or_default();
                plan.files.insert(
                    path.clone(),
                    file_desc('l', 0o777, 0, 0, 0, &target.to_string_lossy()),
                );
                EntryKind::Symlink(target)
            }
            // Sockets and devices are not copied (as BuildKit's context
            // transfer skips them).
            _ => continue,
        };
        if req.unpack {
            if let EntryKind::File {
                source: FileSource::Path(p),
                ..
            } = &kind
            {
                if let Some(unpacked) = try_unpack(p, &dest, req, plan)? {
                    items.extend(unpacked);
                    continue;
                }
            }
        }
        items.push(Item {
            dest,
            kind,
            mode,
            uid,
            gid,
            mtime,
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn plan_view(
    req: &CopyRequest<'_>,
    view: &MergedView,
    exclude: Option<&Matcher>,
    dest_dir: &[String],
    dest_is_dir: bool,
    plan: &mut CopyPlan,
    items: &mut Vec<Item>,
) -> Result<()> {
    // (source comps, dest comps, real path, metadata)
    let mut chosen: Vec<(Vec<String>, Vec<String>, PathBuf, Meta)> = Vec::new();
    let look = |comps: &[String]| {
        view.lookup_exact(comps)
            .map_err(|e| Error::invalid(format!("cannot read /{}: {e}", comps.join("/"))))
    };
    for source in &req.sources {
        let matches: Vec<Vec<String>> = if strata_context::has_wildcards(source) {
            glob_view(view, source)?
        } else {
            let comps = resolve_in(view, source, true)?;
            if exists(view, &comps)? {
                vec![comps]
            } else {
                Vec::new()
            }
        };
        if matches.is_empty() {
            return Err(ErrorKind::SourceNotFound {
                source_path: source.clone(),
                excluded: false,
            }
            .into());
        }
        for comps in matches {
            let Some(found) = look(&comps)? else {
                continue;
            };
            let rel_full = comps.join("/");
            if found.meta.is_dir() {
                let base = if req.parents {
                    let mut d = dest_dir.to_vec();
                    d.extend(comps.iter().cloned());
                    chosen.push((
                        comps.clone(),
                        d.clone(),
                        found.real.clone(),
                        found.meta.clone(),
                    ));
                    d
                } else {
                    dest_dir.to_vec()
                };
                let mut stack = vec![Vec::<String>::new()];
                while let Some(rel) = stack.pop() {
                    let mut here = comps.clone();
                    here.extend(rel.iter().cloned());
                    for name in list(view, &here)? {
                        let mut child_rel = rel.clone();
                        child_rel.push(name.clone());
                        let mut child = here.clone();
                        child.push(name);
                        let rel_s = child_rel.join("/");
                        if excluded(exclude, &[&rel_s, &child.join("/")]) {
                            continue;
                        }
                        let Some(f) = look(&child)? else {
                            continue;
                        };
                        let mut d = base.clone();
                        d.extend(child_rel.iter().cloned());
                        if f.meta.is_dir() {
                            stack.push(child_rel.clone());
                        }
                        chosen.push((child, d, f.real, f.meta));
                    }
                }
            } else {
                if excluded(exclude, &[&rel_full]) {
                    continue;
                }
                let d = if req.parents {
                    let mut d = dest_dir.to_vec();
                    d.extend(comps.iter().cloned());
                    d
                } else if dest_is_dir {
                    let mut d = dest_dir.to_vec();
                    d.push(comps.last().cloned().unwrap_or_default());
                    d
                } else {
                    dest_dir.to_vec()
                };
                chosen.push((comps, d, found.real, found.meta));
            }
        }
    }
    // Hash the files' content (in parallel): the key depends on what the
    // other stage produced, not on how it got there.
    let digests: Vec<Option<io::Result<Digest>>> = chosen
        .par_iter()
        .map(|(_, _, real, meta)| meta.is_file().then(|| hash_file(real)))
        .collect();
    for ((comps, dest, real, meta), digest) in chosen.into_iter().zip(digests) {
        let path = format!("/{}", comps.join("/"));
        let (uid, gid) = req
            .owner
            .map_or((meta.uid(), meta.gid()), |o| (o.uid, o.gid));
        let perm = meta.mode() & 0o7777;
        let mode = match req.chmod {
            Some(m) if meta.is_file() || meta.is_dir() => m,
            _ => perm,
        };
        let mtime = meta.mtime();
        let time = if req.preserve_times {
            format!(" @{mtime}")
        } else {
            String::new()
        };
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            let digest = digest
                .unwrap_or_else(|| Err(io::Error::other("not hashed")))
                .map_err(|e| Error::io("read", &real, e))?;
            plan.files.insert(
                path,
                file_desc(
                    'f',
                    perm,
                    meta.uid(),
                    meta.gid(),
                    meta.len(),
                    &digest.to_string(),
                ) + &time,
            );
            EntryKind::File {
                size: meta.len(),
                source: FileSource::Path(real),
            }
        } else if ft.is_dir() {
            plan.files.insert(
                format!("{path}/"),
                file_desc('d', perm, meta.uid(), meta.gid(), 0, "-") + &time,
            );
            EntryKind::Dir
        } else if ft.is_symlink() {
            let target = match meta.link_target() {
                Some(t) => t.to_path_buf(),
                None => fs::read_link(&real).map_err(|e| Error::io("read link", &real, e))?,
            };
            plan.files.insert(
                path,
                file_desc(
                    'l',
                    0o777,
                    meta.uid(),
                    meta.gid(),
                    0,
                    &target.to_string_lossy(),
                ),
            );
            EntryKind::Symlink(target)
        } else if ft.is_fifo() {
            plan.files
                .insert(path, file_desc('p', perm, meta.uid(), meta.gid(), 0, "-"));
            EntryKind::Fifo
        } else if meta.is_whiteout() {
            continue;
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            plan.files.insert(
                path,
                file_desc(
                    'c',
                    perm,
                    meta.uid(),
                    meta.gid(),
                    0,
                    &format!("{major}:{minor}"),
                ),
            );
            if ft.is_char_device() {
                EntryKind::Char { major, minor }
            } else {
                EntryKind::Block { major, minor }
            }
        } else {
            continue;
        };
        items.push(Item {
            dest,
            kind,
            mode,
            uid,
            gid,
            mtime,
        });
    }
    Ok(())
}

/// Expands a wildcard source against a merged view (components matched one
/// by one with Go's filepath.Match).
fn glob_view(view: &MergedView, source: &str) -> Result<Vec<Vec<String>>> {
    let comps = clean_components(source);
    let mut current: Vec<Vec<String>> = vec![Vec::new()];
    for (i, pat) in comps.iter().enumerate() {
        let mut next = Vec::new();
        for base in &current {
            if !strata_context::has_wildcards(pat) {
                let mut c = base.clone();
                c.push(pat.clone());
                // Follow symlinks on the way, not at the end.
                let c = if i + 1 < comps.len() {
                    resolve_in(view, &c.join("/"), true)?
                } else {
                    c
                };
                if exists(view, &c)? {
                    next.push(c);
                }
                continue;
            }
            for name in list(view, base)? {
                match strata_context::glob_match(pat, &name) {
                    Some(true) => {
                        let mut c = base.clone();
                        c.push(name);
                        next.push(c);
                    }
                    Some(false) => {}
                    None => {
                        return Err(Error::invalid(format!("invalid source pattern {source:?}")))
                    }
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// sha256 of a file's content, streamed.
pub fn hash_file(path: &Path) -> io::Result<Digest> {
    let f = fs::File::open(path)?;
    let mut r = HashingReader::new(
        io::BufReader::with_capacity(1 << 16, f),
        strata_oci::Algorithm::Sha256,
    );
    io::copy(&mut r, &mut io::sink())?;
    Ok(r.finish().0)
}

/// Archive formats ADD unpacks, by magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archive {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn sniff_archive(path: &Path) -> io::Result<Option<Archive>> {
    let mut f = fs::File::open(path)?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let h = &head[..n];
    Ok(if h.starts_with(&[0x1f, 0x8b]) {
        Some(Archive::Gzip)
    } else if h.starts_with(b"BZh") {
        Some(Archive::Bzip2)
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Archive::Xz)
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Archive::Zstd)
    } else if n >= 262 && &h[257..262] == b"ustar" {
        Some(Archive::Tar)
    } else {
        None
    })
}

/// ADD of a local archive: unpack it (safely: nothing may land outside the
/// scratch directory) and plan its files under the destination directory.
/// `None` when the file is not a recognised archive (then it is copied).
fn try_unpack(
    path: &Path,
    dest: &[String],
    req: &CopyRequest<'_>,
    plan: &mut CopyPlan,
) -> Result<Option<Vec<Item>>> {
    let Some(kind) = sniff_archive(path).map_err(|e| Error::io("read", path, e))? else {
        return Ok(None);
    };
    // The destination of an archive is always a directory: the one the
    // file would have been copied into, or the destination itself.
    let f = fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let f = io::BufReader::new(f);
    let reader: Box<dyn Read> = match kind {
        Archive::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(f)),
        Archive::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(f)),
        // strata-layer detects gzip and zstd itself.
        Archive::Tar | Archive::Gzip | Archive::Zstd => Box::new(f),
    };
    let scratch = req.tmp.join(format!("unpack-{}", plan.temp_dirs.len()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| Error::io("create", &scratch, e))?;
    plan.temp_dirs.push(scratch.clone());
    strata_layer::apply_layer(reader, &scratch, strata_layer::ApplyMode::Plain)
        .map_err(|e| Error::invalid(format!("cannot unpack {}: {e}", path.display())))?;
    let mut dest_base = dest.to_vec();
    // A file source copied "into" a directory had its name appended: an
    // archive unpacks into that directory instead.
    if let Some(name) = path.file_name() {
        if dest_base.last().map(String::as_str) == Some(&*name.to_string_lossy()) {
            dest_base.pop();
        }
    }
    let entries = strata_layer::scan_dir(&scratch, true)?;
    let mut out = Vec::new();
    for e in entries {
        let mut d = dest_base.clone();
        d.extend(clean_components(&e.path.to_string_lossy()));
        let kind = match e.kind {
            EntryKind::File {
                size,
                source: FileSource::Path(p),
            } => EntryKind::File {
                size,
                source: FileSource::Path(p),
            },
            EntryKind::Hardlink(t) => {
                // Re-root the link target under the destination.
                let mut target = dest_base.clone();
                target.extend(clean_components(&t.to_string_lossy()));
                EntryKind::Hardlink(PathBuf::from(target.join("/")))
            }
            k => k,
        };
        out.push(Item {
            dest: d,
            kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
        });
    }
    Ok(Some(out))
}

/// Parses `--chmod`: octal (`755`, `0644`).
pub fn parse_chmod(s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            Error::invalid(format!(
                "invalid --chmod value {s:?}: expected octal bits like 755"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key a COPY gets without looking at its destination is the one
    /// it gets with any destination (else a key-first lookup would miss).
    #[test]
    fn source_files_are_what_any_destination_keys_on() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("src/sub")).unwrap();
        std::fs::write(root.join("src/a.txt"), "a").unwrap();
        std::fs::write(root.join("src/sub/b.txt"), "bb").unwrap();
        std::fs::write(root.join("top"), "t").unwrap();
        std::os::unix::fs::symlink("top", root.join("link")).unwrap();
        let ctx = Context::open(root, strata_context::ContextOptions::default()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<&str>, &str, bool, Vec<&str>)> = vec![
            (vec!["src"], "/app/", false, vec![]),
            (vec!["src/a.txt"], "/app/x", false, vec![]),
            (vec!["src", "top", "link"], "/dest/", false, vec![]),
            (vec!["src/*.txt", "top"], "d/", false, vec!["*.txt"]),
            (vec!["./src/./sub"], "/p/", true, vec![]),
            (vec!["."], ".", false, vec!["top"]),
        ];
        for (sources, dest, parents, exclude) in cases {
            for chmod in [None, Some(0o700)] {
                let req = CopyRequest {
                    sources: sources.iter().map(|s| s.to_string()).collect(),
                    heredocs: Vec::new(),
                    dest: dest.to_owned(),
                    workdir: "/w".to_owned(),
                    owner: Some(Owner { uid: 7, gid: 8 }),
                    chmod,
                    parents,
                    exclude: exclude.iter().map(|s| s.to_string()).collect(),
                    unpack: false,
                    preserve_times: chmod.is_some(),
                    tmp: tmp.path(),
                };
                let full = plan(&req, Source::Context(&ctx), None).unwrap();
                let key = source_files(&req, &ctx).unwrap();
                assert_eq!(key.files, full.files, "{sources:?} -> {dest}");
                assert!(!key.files.is_empty());
            }
        }
    }

    #[test]
    fn chmod() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert_eq!(parse_chmod("0644").unwrap(), 0o644);
        assert!(parse_chmod("u+x").is_err());
        assert!(parse_chmod("99999").is_err());
    }

    #[test]
    fn dest_join() {
        assert_eq!(join_dest("/app", "x/"), "/app/x/");
        assert_eq!(join_dest("/", "x"), "/x");
        assert_eq!(join_dest("/app", "/abs"), "/abs");
    }

    #[test]
    fn archive_sniffing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        fs::write(&p, [0x1f, 0x8b, 8, 0]).unwrap();
        assert_eq!(sniff_archive(&p).unwrap(), Some(Archive::Gzip));
        fs::write(&p, b"BZh91AY").unwrap();
        assert_eq!(sniff_archive(&p).unwrap(), Some(Archive::Bzip2));
        fs::write(&p, b"plain text").unwrap();
        assert_eq!(sniff_archive(&p).unwrap(), None);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        fs::write(&p, &tar).unwrap();
        assert_eq!(sniff_archive(&p).unwrap(), Some(Archive::Tar));
    }
}
