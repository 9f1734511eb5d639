//! The context walk: which entries the builder receives, and their
//! metadata; plus opening files without leaving the context.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

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
    pub(crate) fn from_meta(
        path: String,
        os_path: PathBuf,
        meta: &Metadata,
        link_target: Option<PathBuf>,
    ) -> Entry {
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
        self.kind == EntryKind::File
            && other.kind == EntryKind::File
            && self.dev == other.dev
            && self.ino == other.ino
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
/// Directories are opened relative to their parent without following
/// symlinks, so a tree changing during the walk cannot lead it outside.
pub(crate) fn walk(root: &Path, matcher: &Matcher) -> Result<WalkOutput, ContextError> {
    let mut w = Walker {
        root,
        matcher,
        out: Vec::new(),
        pruned: 0,
    };
    let hits = vec![false; matcher.patterns().len()];
    let fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ContextError::io("open", root, e.into()))?;
    w.dir(fd, "", Path::new(""), &hits)?;
    let mut entries = w.out;
    entries.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(WalkOutput {
        entries,
        pruned: w.pruned,
    })
}

impl Walker<'_> {
    /// Walk one directory (open as `fd`); returns whether anything below
    /// it is included.
    fn dir(
        &mut self,
        fd: OwnedFd,
        rel: &str,
        rel_os: &Path,
        hits: &[bool],
    ) -> Result<bool, ContextError> {
        let abs = || self.root.join(rel_os);
        let mut names: Vec<Vec<u8>> = Vec::new();
        {
            let mut d = rustix::fs::Dir::read_from(&fd)
                .map_err(|e| ContextError::io("read directory", abs(), e.into()))?;
            while let Some(item) = d.read() {
                let item = item.map_err(|e| ContextError::io("read directory", abs(), e.into()))?;
                let name = item.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
        }
        names.sort_unstable();
        let mut any = false;
        let mut child_hits = Vec::new();
        for name in names {
            let name_os = OsStr::from_bytes(&name);
            let child_os = rel_os.join(name_os);
            let name_str = String::from_utf8_lossy(&name);
            let child = if rel.is_empty() {
                name_str.into_owned()
            } else {
                format!("{rel}/{name_str}")
            };
            let st = match rustix::fs::statat(&fd, name_os, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed since the directory was listed.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    return Err(ContextError::io(
                        "stat",
                        self.root.join(&child_os),
                        e.into(),
                    ))
                }
            };
            let kind = kind_of_mode(st.st_mode as u32);
            let is_dir = kind == EntryKind::Dir;
            let child_excluded = if self.matcher.patterns().is_empty() {
                child_hits.clear();
                false
            } else {
                self.matcher.decide(
                    &child,
                    hits,
                    if is_dir { Some(&mut child_hits) } else { None },
                )?
            };
            if is_dir {
                let descend = !child_excluded || self.matcher.may_reinclude_below(&child);
                if !descend {
                    self.pruned += 1;
                    continue;
                }
                let sub = match rustix::fs::openat(
                    &fd,
                    name_os,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(sub) => sub,
                    // BuildKit skips unreadable directories it would not send anyway.
                    Err(rustix::io::Errno::ACCESS) if child_excluded => continue,
                    Err(e) => {
                        return Err(ContextError::io(
                            "open directory",
                            self.root.join(&child_os),
                            e.into(),
                        ))
                    }
                };
                let mut e = Entry::from_stat(child.clone(), child_os.clone(), &st, None);
                let sub_hits = std::mem::take(&mut child_hits);
                if !child_excluded {
                    self.out.push(e);
                    self.dir(sub, &child, &child_os, &sub_hits)?;
                    any = true;
                } else if self.dir(sub, &child, &child_os, &sub_hits)? {
                    e.implicit = true;
                    self.out.push(e);
                    any = true;
                }
                child_hits = sub_hits;
            } else if !child_excluded {
                let target = if kind == EntryKind::Symlink {
                    let t = rustix::fs::readlinkat(&fd, name_os, Vec::new()).map_err(|e| {
                        ContextError::io("read symlink", self.root.join(&child_os), e.into())
                    })?;
                    Some(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
                } else {
                    None
                };
                self.out
                    .push(Entry::from_stat(child, child_os, &st, target));
                any = true;
            }
        }
        Ok(any)
    }
}

fn kind_of_mode(mode: u32) -> EntryKind {
    match mode & 0o170000 {
        0o040000 => EntryKind::Dir,
        0o120000 => EntryKind::Symlink,
        0o010000 => EntryKind::Fifo,
        0o140000 => EntryKind::Socket,
        0o020000 => EntryKind::CharDevice,
        0o060000 => EntryKind::BlockDevice,
        _ => EntryKind::File,
    }
}

fn ts(sec: i64, nsec: i64) -> Timestamp {
    Timestamp {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    }
}

impl Entry {
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from_stat(
        path: String,
        os_path: PathBuf,
        st: &rustix::fs::Stat,
        link_target: Option<PathBuf>,
    ) -> Entry {
        Entry {
            path,
            os_path,
            kind: kind_of_mode(st.st_mode as u32),
            mode: (st.st_mode as u32) & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size.max(0) as u64,
            link_target,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            rdev: st.st_rdev as u64,
            mtime: ts(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: ts(st.st_ctime as i64, st.st_ctime_nsec as i64),
            implicit: false,
        }
    }
}

/// Open `root` as a directory handle the context's reads start from.
pub(crate) fn open_root(root: &Path) -> Result<OwnedFd, ContextError> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ContextError::io("open", root, e.into()))
}

/// Open the regular file `rel` (a path with no symlinks in it) below
/// `root_fd`, refusing to follow any symlink or to leave the directory,
/// even if the tree changed since it was walked.
pub(crate) fn open_beneath(root_fd: BorrowedFd<'_>, rel: &Path) -> io::Result<File> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
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
