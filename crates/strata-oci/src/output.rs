//! Output files (`strata save -o`) written atomically beside their
//! destination, and the temp files of killed writers swept; exporting
//! images to one ([`export_archive`]).
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
use crate::{save_docker_archive, save_oci_layout, Error, Result, SaveItem, Store};

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

/// The archive formats [`export_archive`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A docker-archive (`docker save`), always a tar.
    Docker,
    /// An OCI image layout: a tar when the destination ends in `.tar`,
    /// else a directory.
    Oci,
}

/// Write `items` to `out` in `format` (`strata save`, `build --output`).
/// A tar goes to a temp file beside the destination ([`OutputFile`]),
/// renamed when complete: a killed export never leaves a truncated archive
/// under the final name.
pub fn export_archive(
    store: &Store,
    items: &[SaveItem],
    out: &Path,
    format: ArchiveFormat,
) -> Result<()> {
    match format {
        ArchiveFormat::Docker => {
            let file = OutputFile::create(out)?;
            let w = io::BufWriter::new(file.file());
            let w = save_docker_archive(store, items, w)?;
            w.into_inner()
                .map_err(|e| Error::io("write", out.to_owned(), e.into_error()))?;
            file.commit()
        }
        ArchiveFormat::Oci => {
            let as_tar = out.extension().is_some_and(|e| e == "tar");
            save_oci_layout(store, items, out, as_tar)
        }
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

    #[test]
    fn exports_load_back_with_the_same_image() {
        use crate::{media_type, Descriptor, ImageConfig, Manifest, Reference};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        let layer = b"layer bytes";
        let ld = store.put_blob(layer).unwrap_or_else(|e| panic!("{e}"));
        let mut cfg = ImageConfig::default();
        cfg.rootfs.diff_ids.push(ld.clone());
        let cd = store
            .put_json(media_type::OCI_CONFIG, &cfg.to_json())
            .unwrap_or_else(|e| panic!("{e}"));
        let m = Manifest::oci(
            cd,
            vec![Descriptor::new(
                media_type::OCI_LAYER_TAR,
                ld,
                layer.len() as u64,
            )],
        );
        let md = store
            .put_json(media_type::OCI_MANIFEST, &m.to_json())
            .unwrap_or_else(|e| panic!("{e}"));
        let name: Reference = "example.com/app:1"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        store.tag(&name, &md).unwrap_or_else(|e| panic!("{e}"));
        let image = store.image(&md, None).unwrap_or_else(|e| panic!("{e}"));
        let items = [SaveItem {
            image: image.clone(),
            names: vec![name],
        }];
        for (file, format, is_dir) in [
            ("docker.tar", ArchiveFormat::Docker, false),
            ("oci.tar", ArchiveFormat::Oci, false),
            ("oci-dir", ArchiveFormat::Oci, true),
        ] {
            let out = dir.path().join(file);
            export_archive(&store, &items, &out, format).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(out.is_dir(), is_dir, "{file}");
            let other = Store::open(dir.path().join(format!("load-{file}")))
                .unwrap_or_else(|e| panic!("{e}"));
            let loaded = crate::load_archive(&other, &out).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded.len(), 1, "{file}");
            let back = other
                .image(&loaded[0].descriptor, None)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back.id(), image.id(), "{file}");
        }
    }
}
