//! Output files (`strata save -o`) written atomically beside their
//! destination, and the temp files of killed writers swept.
//!
//! The temp file `.strata-save-*` is `flock`ed while it is written, so the
//! next writer into the same directory can tell one whose process died
//! (lock free) from one being written (lock held) and removes the former.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::error::IoContext;
use crate::{Error, Result};

const PREFIX: &str = ".strata-save-";

/// A file that appears at its destination only complete: written to a temp
/// file in the same directory, then fsynced and renamed by
/// [`OutputFile::commit`]. Dropped without commit, the temp file goes.
#[derive(Debug)]
pub struct OutputFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl OutputFile {
    /// Start writing `dest`. Temp files of writers that died in the same
    /// directory are removed first.
    pub fn create(dest: &Path) -> Result<OutputFile> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sweep(dir);
        let tmp = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempfile_in(dir)
            .ctx("create temp file in", dir)?;
        rustix::fs::flock(tmp.as_file().as_fd(), FlockOperation::LockExclusive)
            .ctx("lock", tmp.path())?;
        Ok(OutputFile {
            tmp,
            dest: dest.to_owned(),
        })
    }

    /// The temp file, to write to.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Make the content durable and move it to the destination.
    pub fn commit(self) -> Result<()> {
        self.tmp
            .as_file()
            .sync_all()
            .ctx("fsync", self.tmp.path())?;
        let dir = self
            .dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        self.tmp
            .persist(&self.dest)
            .map_err(|e| Error::io("rename", self.dest.clone(), e.error))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .ctx("fsync", dir)
    }
}

/// Remove `.strata-save-*` files in `dir` nobody is writing.
fn sweep(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(PREFIX)) {
            continue;
        }
        let p = e.path();
        let Ok(f) = fs::OpenOptions::new().read(true).open(&p) else {
            continue;
        };
        match rustix::fs::flock(f.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                let _ = fs::remove_file(&p);
            }
            Err(e) if io::Error::from(e).kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_writers_temp_goes_a_live_ones_stays() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = dir.path().join("out.tar");
        // Left by a writer that died: nobody holds its lock.
        let stale = dir.path().join(".strata-save-dead");
        fs::write(&stale, b"partial").unwrap_or_else(|e| panic!("{e}"));
        let live = OutputFile::create(&dest).unwrap_or_else(|e| panic!("{e}"));
        assert!(!stale.exists(), "a dead writer's temp file stayed");
        io::Write::write_all(&mut live.file(), b"one").unwrap_or_else(|e| panic!("{e}"));
        // A second writer does not take the first one's file for stale.
        let other =
            OutputFile::create(&dir.path().join("other.tar")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!dest.exists());
        live.commit().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read(&dest).unwrap_or_default(), b"one");
        drop(other);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["out.tar"]);
    }
}
