//! A build context: the directory, its ignore file, the entries the
//! builder receives, safe reads and the content index.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::ContextError;
use crate::gopath::{clean, contains_wildcards, go_match};
use crate::index::{build_index, Index};
use crate::pattern::Matcher;
use crate::walk::{open_beneath, open_root, walk, Entry, EntryKind};

/// How to open a context.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// The Dockerfile (`-f`). A relative path is relative to the current
    /// directory, as with `docker build -f`. Default: `Dockerfile` in the
    /// context directory. Only its location matters here: a
    /// `<Dockerfile>.dockerignore` beside it replaces the context's
    /// `.dockerignore`.
    pub dockerfile: Option<PathBuf>,
    /// Where the stat-hint cache lives (strata passes
    /// `<store root>/context-cache/`); `None` disables the cache.
    pub state_dir: Option<PathBuf>,
}

/// Which ignore file applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreSource {
    /// `<Dockerfile>.dockerignore` beside the Dockerfile (BuildKit reads
    /// it first and, when it exists, ignores `.dockerignore`).
    DockerfileSpecific(PathBuf),
    /// `.dockerignore` at the context root.
    ContextRoot(PathBuf),
    /// No ignore file: everything is sent.
    None,
}

impl IgnoreSource {
    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            IgnoreSource::DockerfileSpecific(p) | IgnoreSource::ContextRoot(p) => Some(p),
            IgnoreSource::None => None,
        }
    }
}

/// A build context directory as the builder sees it.
///
/// Entries are what `docker build` would send with BuildKit: everything
/// the ignore file does not exclude (files, directories, symlinks as
/// symlinks, other special files), plus excluded directories holding
/// re-included entries. The Dockerfile and the ignore file follow the same
/// rule: they are in the context unless excluded (the builder reads the
/// Dockerfile itself, from [`dockerfile`](Context::dockerfile), whether or
/// not it is excluded; that is also what BuildKit and the classic builder
/// do).
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    root_fd: OwnedFd,
    root_entry: Entry,
    dockerfile: PathBuf,
    ignore: IgnoreSource,
    matcher: Matcher,
    entries: Vec<Entry>,
    pruned: usize,
    state_dir: Option<PathBuf>,
    index: Mutex<Option<Arc<Index>>>,
}

/// Resolve the ignore file as BuildKit does.
fn find_ignore_file(root: &Path, dockerfile: &Path) -> IgnoreSource {
    if let Some(name) = dockerfile.file_name() {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        let p = dockerfile.with_file_name(specific);
        if p.is_file() {
            return IgnoreSource::DockerfileSpecific(p);
        }
    }
    let p = root.join(".dockerignore");
    if std::fs::metadata(&p).is_ok() {
        IgnoreSource::ContextRoot(p)
    } else {
        IgnoreSource::None
    }
}

/// Normalise a context-relative path: leading `/` allowed (the context
/// root), cleaned; `None` when it climbs out with `..`.
fn normalize(rel: &str) -> Option<String> {
    let c = clean(rel);
    let c = c.trim_start_matches('/');
    if c.is_empty() {
        return Some(".".to_owned());
    }
    if c == ".." || c.starts_with("../") {
        return None;
    }
    Some(c.to_owned())
}

/// The most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: usize = 40;

impl Context {
    /// Open `dir` as a build context: find the ignore file (the
    /// Dockerfile-specific one first), compile it, and walk the directory.
    pub fn open(dir: impl AsRef<Path>, opts: ContextOptions) -> Result<Context, ContextError> {
        let dir = dir.as_ref();
        let root = std::fs::canonicalize(dir)
            .map_err(|e| ContextError::io("open build context", dir, e))?;
        let meta = std::fs::metadata(&root).map_err(|e| ContextError::io("stat", &root, e))?;
        if !meta.is_dir() {
            return Err(ContextError::NotADirectory(dir.to_path_buf()));
        }
        let root_fd = open_root(&root)?;
        let dockerfile = match &opts.dockerfile {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => std::env::current_dir()
                .map_err(|e| ContextError::io("find current directory for", p, e))?
                .join(p),
            None => {
                let upper = root.join("Dockerfile");
                let lower = root.join("dockerfile");
                if !upper.exists() && lower.exists() {
                    // BuildKit falls back to the lower-case name but still
                    // looks for `Dockerfile.dockerignore`.
                    lower
                } else {
                    upper
                }
            }
        };
        let ignore_name = if opts.dockerfile.is_none() {
            root.join("Dockerfile")
        } else {
            dockerfile.clone()
        };
        let ignore = find_ignore_file(&root, &ignore_name);
        let matcher = match ignore.path() {
            Some(p) => {
                let data = read_ignore(&root, &root_fd, p, &ignore)?;
                Matcher::from_ignore_file(p, &data)?
            }
            None => Matcher::empty(),
        };
        let out = walk(&root, &matcher)?;
        let mut root_entry = Entry::from_meta(".".to_owned(), PathBuf::from("."), &meta, None);
        root_entry.kind = EntryKind::Dir;
        Ok(Context {
            root,
            root_fd,
            root_entry,
            dockerfile,
            ignore,
            matcher,
            entries: out.entries,
            pruned: out.pruned,
            state_dir: opts.state_dir,
            index: Mutex::new(None),
        })
    }

    /// The context directory (absolute, symlinks resolved).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The context root itself, as a directory entry with path `.`.
    pub fn root_entry(&self) -> &Entry {
        &self.root_entry
    }

    /// The Dockerfile location (which may be outside the context, and may
    /// be excluded from it: the builder reads it anyway).
    pub fn dockerfile(&self) -> &Path {
        &self.dockerfile
    }

    /// The ignore file in force.
    pub fn ignore_source(&self) -> &IgnoreSource {
        &self.ignore
    }

    /// The compiled ignore patterns.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Every entry the builder receives, sorted by path (byte order, so a
    /// directory comes before what is inside it).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Excluded directories the walk did not enter because no exception
    /// could re-include anything below them.
    pub fn pruned_dirs(&self) -> usize {
        self.pruned
    }

    /// The entry at `path` (context-relative; `./` and a leading `/` are
    /// allowed), if the builder receives it.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        let p = normalize(path)?;
        if p == "." {
            return Some(&self.root_entry);
        }
        self.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(p.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entries strictly below directory `dir`, sorted (all of them for `.`).
    pub fn entries_under(&self, dir: &str) -> &[Entry] {
        let Some(d) = normalize(dir) else {
            return &[];
        };
        if d == "." {
            return &self.entries;
        }
        let prefix = format!("{d}/");
        let start = self
            .entries
            .partition_point(|e| e.path.as_bytes() < prefix.as_bytes());
        let len = self.entries[start..]
            .partition_point(|e| e.path.as_bytes().starts_with(prefix.as_bytes()));
        &self.entries[start..start + len]
    }

    /// Whether the builder receives nothing below the directory `dir`.
    pub fn is_empty_dir(&self, dir: &Entry) -> bool {
        dir.kind == EntryKind::Dir && self.entries_under(&dir.path).is_empty()
    }

    /// Resolve `path` to an entry, following symlinks (in the last
    /// component too) within the context. Refuses `..` above the root,
    /// absolute link targets and excluded paths.
    pub fn resolve(&self, path: &str) -> Result<&Entry, ContextError> {
        let Some(start) = normalize(path) else {
            return Err(ContextError::Escapes {
                path: path.to_owned(),
            });
        };
        let mut pending: Vec<String> = if start == "." {
            Vec::new()
        } else {
            start.split('/').rev().map(str::to_owned).collect()
        };
        let mut cur: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    if cur.pop().is_none() {
                        return Err(ContextError::Escapes {
                            path: path.to_owned(),
                        });
                    }
                    continue;
                }
                _ => {}
            }
            cur.push(comp);
            let joined = cur.join("/");
            let entry = self.lookup_included(&joined, path)?;
            if entry.kind == EntryKind::Symlink {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ContextError::Escapes {
                        path: path.to_owned(),
                    });
                }
                let Some(target) = &entry.link_target else {
                    return Err(ContextError::NotFound {
                        path: path.to_owned(),
                    });
                };
                if target.is_absolute() {
                    return Err(ContextError::Escapes {
                        path: path.to_owned(),
                    });
                }
                cur.pop();
                let t = target.to_string_lossy();
                for c in t.split('/').rev() {
                    pending.push(c.to_owned());
                }
            }
        }
        if cur.is_empty() {
            return Ok(&self.root_entry);
        }
        self.lookup_included(&cur.join("/"), path)
    }

    fn lookup_included(&self, rel: &str, asked: &str) -> Result<&Entry, ContextError> {
        if let Some(e) = self.get(rel) {
            return Ok(e);
        }
        // Say "excluded" rather than "not found" when that is why.
        // On disk but not received: the ignore file excludes it (or one of
        // its parent directories).
        if let Some(file) = self.ignore.path() {
            if self.root.join(rel).symlink_metadata().is_ok() {
                return Err(ContextError::Excluded {
                    path: rel.to_owned(),
                    ignore_file: file.to_path_buf(),
                });
            }
        }
        Err(ContextError::NotFound {
            path: asked.to_owned(),
        })
    }

    /// Open the regular file at `path` for reading. Refuses paths the
    /// ignore file excludes (they must never reach a layer), paths that
    /// leave the context through `..` or symlinks, and anything that is
    /// not a regular file; symlinks inside the context are followed. The
    /// file is opened without following any symlink and checked to be the
    /// one the walk saw.
    pub fn open_file(&self, path: &str) -> Result<File, ContextError> {
        let entry = self.resolve(path)?;
        if entry.kind != EntryKind::File {
            return Err(ContextError::NotAFile {
                path: path.to_owned(),
            });
        }
        let abs = self.root.join(&entry.os_path);
        let f = open_beneath(self.root_fd.as_fd(), &entry.os_path).map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                || e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
            {
                ContextError::Changed {
                    path: path.to_owned(),
                }
            } else {
                ContextError::io("open", &abs, e)
            }
        })?;
        let meta = f
            .metadata()
            .map_err(|e| ContextError::io("stat", &abs, e))?;
        if !meta.is_file() || meta.ino() != entry.ino || meta.dev() != entry.dev {
            return Err(ContextError::Changed {
                path: path.to_owned(),
            });
        }
        Ok(f)
    }

    /// The hashed index of the whole context (computed once, then shared).
    pub fn index(&self) -> Result<Arc<Index>, ContextError> {
        let mut slot = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ix) = slot.as_ref() {
            return Ok(Arc::clone(ix));
        }
        let all: Vec<&Entry> = self.entries.iter().collect();
        let ix = Arc::new(build_index(
            self.root_fd.as_fd(),
            &self.root,
            &all,
            self.state_dir.as_deref(),
            true,
        )?);
        *slot = Some(Arc::clone(&ix));
        Ok(ix)
    }

    /// Index only `paths` and everything below those that are directories
    /// (`COPY package.json ./` hashes one file, not the whole context).
    /// Each path must be in the context.
    pub fn index_paths(&self, paths: &[&str]) -> Result<Index, ContextError> {
        let mut selected: Vec<&Entry> = Vec::new();
        for p in paths {
            let e = match self.get(p) {
                Some(e) => e,
                None => self.lookup_included(p, p)?,
            };
            if e.path != "." {
                selected.push(e);
            }
            if e.kind == EntryKind::Dir {
                selected.extend(self.entries_under(&e.path));
            }
        }
        selected.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        selected.dedup_by(|a, b| a.path == b.path);
        if let Some(full) = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let entries = selected
                .iter()
                .filter_map(|e| full.get(&e.path).cloned())
                .collect();
            return Ok(Index::from_parts(entries));
        }
        build_index(
            self.root_fd.as_fd(),
            &self.root,
            &selected,
            self.state_dir.as_deref(),
            false,
        )
    }

    /// The entries a COPY/ADD source names, as BuildKit resolves them:
    /// a literal path (file, directory or symlink; symlinks in its parent
    /// directories are followed within the context) gives that entry; a
    /// source with wildcards (`*`, `?`, `[...]`, Go `filepath.Match`
    /// syntax, per path element) gives every entry below its literal
    /// leading directories whose relative path matches, not looking inside
    /// a matched directory. Empty when nothing matches.
    pub fn match_sources(&self, source: &str) -> Result<Vec<&Entry>, ContextError> {
        let Some(rel) = normalize(source) else {
            return Err(ContextError::Escapes {
                path: source.to_owned(),
            });
        };
        let parts: Vec<&str> = if rel == "." {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        let split = parts.iter().position(|p| contains_wildcards(p));
        let Some(split) = split else {
            return Ok(match self.resolve_parent_then_get(&rel) {
                Some(e) => vec![e],
                None => Vec::new(),
            });
        };
        let base_rel = if split == 0 {
            ".".to_owned()
        } else {
            parts[..split].join("/")
        };
        let pattern = parts[split..].join("/");
        if go_match(&pattern, "").is_err() {
            return Err(ContextError::SourcePattern {
                pattern: source.to_owned(),
            });
        }
        let base = match self.resolve(&base_rel) {
            Ok(e) if e.kind == EntryKind::Dir => e,
            _ => return Ok(Vec::new()),
        };
        let under = self.entries_under(&base.path);
        let strip = if base.path == "." {
            0
        } else {
            base.path.len() + 1
        };
        let mut out: Vec<&Entry> = Vec::new();
        let mut matched_dirs: Vec<String> = Vec::new();
        for e in under {
            if matched_dirs.iter().any(|d| {
                e.path.len() > d.len()
                    && e.path.starts_with(d.as_str())
                    && e.path.as_bytes()[d.len()] == b'/'
            }) {
                continue;
            }
            if go_match(&pattern, &e.path[strip..]).unwrap_or(false) {
                if e.kind == EntryKind::Dir {
                    matched_dirs.push(e.path.clone());
                }
                out.push(e);
            }
        }
        Ok(out)
    }

    /// A literal source: the entry itself (a symlink stays a symlink),
    /// after following symlinks in its parent directories.
    fn resolve_parent_then_get(&self, rel: &str) -> Option<&Entry> {
        if let Some(e) = self.get(rel) {
            return Some(e);
        }
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => return None,
        };
        let dir = self.resolve(parent).ok()?;
        if dir.kind != EntryKind::Dir {
            return None;
        }
        let joined = if dir.path == "." {
            name.to_owned()
        } else {
            format!("{}/{name}", dir.path)
        };
        self.get(&joined)
    }
}

/// Read the ignore file, refusing one that is a symlink leading out of
/// the context (BuildKit resolves it inside the context).
fn read_ignore(
    root: &Path,
    root_fd: &OwnedFd,
    path: &Path,
    src: &IgnoreSource,
) -> Result<Vec<u8>, ContextError> {
    if let IgnoreSource::ContextRoot(_) = src {
        // Resolve within the context: a symlinked .dockerignore must not
        // read files elsewhere on the host.
        let mut rel = PathBuf::from(".dockerignore");
        for _ in 0..MAX_SYMLINKS {
            match open_beneath(root_fd.as_fd(), &rel) {
                Ok(mut f) => {
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut f, &mut data)
                        .map_err(|e| ContextError::io("read", path, e))?;
                    return Ok(data);
                }
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                        || e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) =>
                {
                    let abs = root.join(&rel);
                    let target = std::fs::read_link(&abs)
                        .map_err(|e| ContextError::io("read symlink", &abs, e))?;
                    let joined = rel.parent().unwrap_or(Path::new("")).join(target);
                    let mut clean_rel = PathBuf::new();
                    for c in joined.components() {
                        match c {
                            Component::Normal(n) => clean_rel.push(n),
                            Component::ParentDir => {
                                clean_rel.pop();
                            }
                            _ => {}
                        }
                    }
                    rel = clean_rel;
                }
                Err(e) => return Err(ContextError::io("read", path, e)),
            }
        }
        return Err(ContextError::Escapes {
            path: ".dockerignore".to_owned(),
        });
    }
    std::fs::read(path).map_err(|e| ContextError::io("read", path, e))
}
