//! The context walk: which entries the builder receives, and their
//! metadata; plus opening files without leaving the context.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::ContextError;
use crate::pattern::Matcher;

/// The type of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed by the walk).
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl EntryKind {
    /// One letter, as `ls -l` shows types: `f` (file), `d`, `l`, `p`, `s`, `c`, `b`.
    pub fn letter(self) -> char {
        match self {
            EntryKind::File => 'f',
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 's',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
        }
    }

    fn of(meta: &Metadata) -> EntryKind {
        let t = meta.file_type();
        if t.is_dir() {
            EntryKind::Dir
        } else if t.is_symlink() {
            EntryKind::Symlink
        } else if t.is_fifo() {
            EntryKind::Fifo
        } else if t.is_socket() {
            EntryKind::Socket
        } else if t.is_char_device() {
            EntryKind::CharDevice
        } else if t.is_block_device() {
            EntryKind::BlockDevice
        } else {
            EntryKind::File
        }
    }
}

/// A time stamp (seconds and nanoseconds since the Unix epoch). Used only
/// as a hint for the hash cache, never in digests or cache keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds (0..1e9).
    pub nsec: u32,
}

impl Timestamp {
    pub(crate) fn as_nanos(self) -> i128 {
        i128::from(self.sec) * 1_000_000_000 + i128::from(self.nsec)
    }
}

/// One entry the builder receives: its context-relative path and its
/// metadata (from `lstat`: symlinks are described, not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Slash-separated path relative to the context root (no `./`).
    /// A name that is not UTF-8 appears with U+FFFD replacements.
    pub path: String,
    /// The path as the file system spells it, relative to the root.
    pub os_path: PathBuf,
    /// File type.
    pub kind: EntryKind,
    /// Permission bits, with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Size in bytes (regular files; the target length for symlinks).
    pub size: u64,
    /// Where a symlink points, as written in the link.
    pub link_target: Option<PathBuf>,
    /// Device of the file system holding the entry.
    pub dev: u64,
    /// Inode number: entries with the same `(dev, ino)` are hard links of
    /// one another.
    pub ino: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number, for device nodes.
    pub rdev: u64,
    /// Modification time (a cache hint only).
    pub mtime: Timestamp,
    /// Status change time (a cache hint only).
    pub ctime: Timestamp,
    /// A directory the ignore file excludes, received only because an
    /// exception re-includes something below it (as BuildKit does).
    pub implicit: bool,
}

impl Entry {
    pub(crate) fn from_meta(path: String, os_path: PathBuf, meta: &Metadata, link_target: Option<PathBuf>) -> Entry {
        Entry {
            path,
            os_path,
            kind: EntryKind::of(meta),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            link_target,
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            rdev: meta.rdev(),
            mtime: Timestamp {
                sec: meta.mtime(),
                nsec: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            },
            ctime: Timestamp {
                sec: meta.ctime(),
                nsec: meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            },
            implicit: false,
        }
    }

    /// Whether two entries are hard links to the same file.
    pub fn same_file(&self, other: &Entry) -> bool {
        self.kind == EntryKind::File && other.kind == EntryKind::File && self.dev == other.dev && self.ino == other.ino
    }
}

/// What the walk found.
pub(crate) struct WalkOutput {
    pub(crate) entries: Vec<Entry>,
    /// Directories excluded and not entered because no exception could
    /// re-include anything below them.
    pub(crate) pruned: usize,
}

struct Walker<'a> {
    root: &'a Path,
    matcher: &'a Matcher,
    out: Vec<Entry>,
    pruned: usize,
}

/// Walk `root`, applying `matcher`: included entries (sorted by path),
/// directories excluded but holding re-included entries marked implicit.
pub(crate) fn walk(root: &Path, matcher: &Matcher) -> Result<WalkOutput, ContextError> {
    let mut w = Walker {
        root,
        matcher,
        out: Vec::new(),
        pruned: 0,
    };
    let hits = vec![false; matcher.patterns().len()];
    w.dir("", Path::new(""), &hits, false)?;
    let mut entries = w.out;
    entries.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(WalkOutput {
        entries,
        pruned: w.pruned,
    })
}

impl Walker<'_> {
    /// Walk one directory; returns whether anything below it is included.
    fn dir(&mut self, rel: &str, rel_os: &Path, hits: &[bool], excluded: bool) -> Result<bool, ContextError> {
        let abs = self.root.join(rel_os);
        let rd = match std::fs::read_dir(&abs) {
            Ok(rd) => rd,
            // BuildKit skips unreadable directories it would not send anyway.
            Err(e) if excluded && e.kind() == io::ErrorKind::PermissionDenied => return Ok(false),
            Err(e) => return Err(ContextError::io("read directory", abs, e)),
        };
        let mut names = Vec::new();
        for item in rd {
            let item = item.map_err(|e| ContextError::io("read directory", &abs, e))?;
            names.push(item.file_name());
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut any = false;
        let mut child_hits = Vec::new();
        for name in names {
            let child_os = rel_os.join(&name);
            let name_str = name.to_string_lossy();
            let child = if rel.is_empty() {
                name_str.into_owned()
            } else {
                format!("{rel}/{name_str}")
            };
            let abs_child = self.root.join(&child_os);
            let meta = match std::fs::symlink_metadata(&abs_child) {
                Ok(m) => m,
                // Removed since read_dir listed it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ContextError::io("stat", abs_child, e)),
            };
            let is_dir = meta.is_dir();
            let child_excluded = if self.matcher.patterns().is_empty() {
                child_hits.clear();
                false
            } else {
                self.matcher
                    .decide(&child, hits, if is_dir { Some(&mut child_hits) } else { None })?
            };
            if is_dir {
                if !child_excluded {
                    self.out.push(Entry::from_meta(child.clone(), child_os.clone(), &meta, None));
                    let sub_hits = std::mem::take(&mut child_hits);
                    self.dir(&child, &child_os, &sub_hits, false)?;
                    child_hits = sub_hits;
                    any = true;
                } else if self.matcher.may_reinclude_below(&child) {
                    let sub_hits = std::mem::take(&mut child_hits);
                    let found = self.dir(&child, &child_os, &sub_hits, true)?;
                    child_hits = sub_hits;
                    if found {
                        let mut e = Entry::from_meta(child.clone(), child_os.clone(), &meta, None);
                        e.implicit = true;
                        self.out.push(e);
                        any = true;
                    }
                } else {
                    self.pruned += 1;
                }
            } else if !child_excluded {
                let target = if meta.file_type().is_symlink() {
                    Some(
                        std::fs::read_link(&abs_child)
                            .map_err(|e| ContextError::io("read symlink", &abs_child, e))?,
                    )
                } else {
                    None
                };
                self.out.push(Entry::from_meta(child, child_os, &meta, target));
                any = true;
            }
        }
        Ok(any)
    }
}

/// Open `root` as a directory handle the context's reads start from.
pub(crate) fn open_root(root: &Path) -> Result<OwnedFd, ContextError> {
    rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ContextError::io("open", root, e.into()))
}

/// Open the regular file `rel` (a path with no symlinks in it) below
/// `root_fd`, refusing to follow any symlink or to leave the directory,
/// even if the tree changed since it was walked.
pub(crate) fn open_beneath(root_fd: BorrowedFd<'_>, rel: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    match rustix::fs::openat2(
        root_fd,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => return Ok(File::from(fd)),
        Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {}
        Err(e) => return Err(e.into()),
    }
    // No openat2 (old kernel, seccomp): one component at a time.
    let mut dir: Option<OwnedFd> = None;
    let comps: Vec<&OsStr> = rel.iter().collect();
    for (i, comp) in comps.iter().enumerate() {
        if *comp == ".." || comp.as_bytes().contains(&b'/') {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let at = dir.as_ref().map(|d| d.as_fd()).unwrap_or(root_fd);
        let last = i + 1 == comps.len();
        let f = if last {
            flags
        } else {
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
        };
        let fd = rustix::fs::openat(at, *comp, f, Mode::empty())?;
        if last {
            return Ok(File::from(fd));
        }
        dir = Some(fd);
    }
    Err(io::Error::from(io::ErrorKind::InvalidInput))
}
