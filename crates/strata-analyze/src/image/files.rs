//! What the analysis reads of one layer, kept so it is read only once.
//!
//! [`LayerFiles`] is a layer's entries as the replay in `walk` uses them:
//! normalized path, kind, and for regular files size, sha256 and the
//! archive markers. It is made by scanning the layer's tar
//! ([`LayerFiles::scan`]), either from the blob or from the uncompressed
//! stream while the builder writes the layer ([`summary_tap`]), and kept in
//! the store's [`FILES_SIDECAR`] sidecar under the layer's blob digest, so
//! the post-build summary never decompresses a layer the build just wrote
//! and a base image is read once, not on every build. Garbage collection
//! removes the record with its blob.

use std::io::{self, Read, Write};

use strata_layer::{LayerInfo, StreamThread, TapFactory, TarTap};
use strata_oci::{Digest, Store};

use super::walk::{normalize, read_content};

/// The store's sidecar kind the layer records are kept under.
pub const FILES_SIDECAR: &str = "layer-files";

/// The sidecar key: the record format's version.
const KEY: &str = "v1";

/// The first bytes of an encoded record.
const MAGIC: &[u8] = b"strata-layer-files 1\n";

/// One tar entry, as the replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Normalized path (no leading `/` or `./`, `..` resolved); never empty.
    pub path: String,
    /// What it is.
    pub kind: Kind,
}

/// The kind of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Content bytes.
        size: u64,
        /// sha256 of the content.
        sha256: [u8; 32],
        /// For `.jar`/`.war`: nested library jars it holds.
        nested_jars: u64,
        /// For `.jar`/`.war`: has `BOOT-INF/classes/`.
        boot_classes: bool,
    },
    /// A hard link to this (normalized) path.
    HardLink(String),
    /// A symlink, device or FIFO.
    Other,
}

/// A layer's entries in tar order, and the tar's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerFiles {
    /// Uncompressed tar bytes (end-of-archive blocks and padding included).
    pub tar_bytes: u64,
    /// The entries, in tar order.
    pub records: Vec<Record>,
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

impl LayerFiles {
    /// Scan a layer blob (gzip, zstd or plain tar).
    pub fn scan_blob(blob: impl Read) -> io::Result<LayerFiles> {
        let (_, tar) = strata_layer::decompress(blob)?;
        LayerFiles::scan(tar)
    }

    /// Scan an uncompressed tar stream, to its end.
    pub fn scan(tar: impl Read) -> io::Result<LayerFiles> {
        let mut counting = Counting { inner: tar, n: 0 };
        let mut records = Vec::new();
        {
            let mut ar = tar::Archive::new(&mut counting);
            for entry in ar.entries()? {
                let mut entry = entry?;
                let path = normalize(&entry.path_bytes());
                if path.is_empty() {
                    continue;
                }
                let t = entry.header().entry_type();
                let kind = if t.is_dir() {
                    Kind::Dir
                } else if t.is_hard_link() {
                    Kind::HardLink(
                        entry
                            .link_name_bytes()
                            .map(|b| normalize(&b))
                            .unwrap_or_default(),
                    )
                } else if t.is_file() || t == tar::EntryType::Continuous {
                    let lower = path.to_ascii_lowercase();
                    let jar = lower.ends_with(".jar") || lower.ends_with(".war");
                    let (sha256, size, nested_jars, boot_classes) = read_content(&mut entry, jar)?;
                    Kind::File {
                        size,
                        sha256,
                        nested_jars,
                        boot_classes,
                    }
                } else {
                    Kind::Other
                };
                records.push(Record { path, kind });
            }
        }
        // Read to the end (tar padding), so the size is the whole stream.
        io::copy(&mut counting, &mut io::sink())?;
        Ok(LayerFiles {
            tar_bytes: counting.n,
            records,
        })
    }

    /// The stored form (a private, versioned binary format).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 16 + self.records.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.tar_bytes.to_le_bytes());
        out.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        let put_str = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        for r in &self.records {
            match &r.kind {
                Kind::Dir => out.push(b'd'),
                Kind::File { .. } => out.push(b'f'),
                Kind::HardLink(_) => out.push(b'h'),
                Kind::Other => out.push(b'o'),
            }
            put_str(&mut out, &r.path);
            match &r.kind {
                Kind::File {
                    size,
                    sha256,
                    nested_jars,
                    boot_classes,
                } => {
                    out.extend_from_slice(&size.to_le_bytes());
                    out.extend_from_slice(sha256);
                    out.extend_from_slice(&nested_jars.to_le_bytes());
                    out.push(u8::from(*boot_classes));
                }
                Kind::HardLink(t) => put_str(&mut out, t),
                Kind::Dir | Kind::Other => {}
            }
        }
        out
    }

    /// Read the stored form; `None` when it is not one (damaged, truncated,
    /// another version), so the caller reads the layer instead.
    pub fn decode(mut b: &[u8]) -> Option<LayerFiles> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Some(h)
        }
        fn u64_(b: &mut &[u8]) -> Option<u64> {
            Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
        }
        fn str_(b: &mut &[u8]) -> Option<String> {
            let n = u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize;
            String::from_utf8(take(b, n)?.to_vec()).ok()
        }
        if take(&mut b, MAGIC.len())? != MAGIC {
            return None;
        }
        let tar_bytes = u64_(&mut b)?;
        let n = u64_(&mut b)?;
        // Each record takes at least 5 bytes: a count beyond that is damage.
        if n > (b.len() / 5) as u64 {
            return None;
        }
        let mut records = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let tag = take(&mut b, 1)?[0];
            let path = str_(&mut b)?;
            if path.is_empty() {
                return None;
            }
            let kind = match tag {
                b'd' => Kind::Dir,
                b'o' => Kind::Other,
                b'h' => Kind::HardLink(str_(&mut b)?),
                b'f' => {
                    let size = u64_(&mut b)?;
                    let sha256: [u8; 32] = take(&mut b, 32)?.try_into().ok()?;
                    let nested_jars = u64_(&mut b)?;
                    let boot_classes = match take(&mut b, 1)?[0] {
                        0 => false,
                        1 => true,
                        _ => return None,
                    };
                    Kind::File {
                        size,
                        sha256,
                        nested_jars,
                        boot_classes,
                    }
                }
                _ => return None,
            };
            records.push(Record { path, kind });
        }
        b.is_empty().then_some(LayerFiles { tar_bytes, records })
    }
}

/// The records kept for the layer blob `digest`, if any (and readable).
pub fn stored_files(store: &Store, digest: &Digest) -> Option<LayerFiles> {
    let sc = store.sidecar(FILES_SIDECAR).ok()?;
    LayerFiles::decode(&sc.get(digest, Some(KEY)).ok()??)
}

/// Keep `files` as the records of the layer blob `digest`. Best effort: a
/// record that cannot be written only costs a later read of the layer.
pub fn store_files(store: &Store, digest: &Digest, files: &LayerFiles) {
    if let Ok(sc) = store.sidecar(FILES_SIDECAR) {
        let _ = sc.put(digest, Some(KEY), &files.encode());
    }
}

/// The records of layer `digest`: kept ones, or scanned from the blob
/// `open` gives (and then kept).
pub fn layer_files(
    store: &Store,
    digest: &Digest,
    open: impl FnOnce() -> io::Result<Box<dyn Read>>,
) -> io::Result<LayerFiles> {
    if let Some(f) = stored_files(store, digest) {
        return Ok(f);
    }
    let files = LayerFiles::scan_blob(open()?)?;
    store_files(store, digest, &files);
    Ok(files)
}

/// A [`TapFactory`] for the builder: each layer it writes is scanned while
/// it is written, on a thread of its own, and its records kept in `store`.
pub fn summary_tap(store: &Store) -> TapFactory {
    let store = store.clone();
    TapFactory(std::sync::Arc::new(move || {
        // The stream goes in bounded chunks: the writer waits when the
        // scan falls behind, so memory stays bounded whatever the layer's
        // size.
        Box::new(SummaryTap {
            store: store.clone(),
            scan: StreamThread::spawn("layer-files", |r: &mut dyn Read| LayerFiles::scan(r)).ok(),
        }) as Box<dyn TarTap>
    }))
}

struct SummaryTap {
    store: Store,
    scan: Option<StreamThread<io::Result<LayerFiles>>>,
}

impl TarTap for SummaryTap {
    fn write(&mut self, data: &[u8]) {
        if let Some(s) = &mut self.scan {
            let _ = s.write_all(data);
        }
    }

    fn finish(mut self: Box<Self>, info: &LayerInfo) {
        // A scan that stopped (an entry it could not read) keeps nothing:
        // the summary reads the layer.
        let files = self
            .scan
            .take()
            .and_then(|s| s.finish())
            .and_then(Result::ok);
        if let Some(files) = files.filter(|f| f.tar_bytes == info.uncompressed_size) {
            store_files(&self.store, &info.digest, &files);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, t, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn sample() -> Vec<u8> {
        tar_of(&[
            ("./etc/", tar::EntryType::Directory, b"", None),
            ("./etc/a", tar::EntryType::Regular, b"hello", None),
            ("etc/b", tar::EntryType::Link, b"", Some("./etc/a")),
            ("etc/c", tar::EntryType::Symlink, b"", Some("a")),
            (
                "app/x.jar",
                tar::EntryType::Regular,
                b"BOOT-INF/classes/",
                None,
            ),
            ("etc/.wh.old", tar::EntryType::Regular, b"", None),
        ])
    }

    #[test]
    fn scan_reads_kinds_and_sizes() {
        let t = sample();
        let f = LayerFiles::scan(&t[..]).unwrap();
        assert_eq!(f.tar_bytes, t.len() as u64);
        let paths: Vec<&str> = f.records.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            ["etc", "etc/a", "etc/b", "etc/c", "app/x.jar", "etc/.wh.old"]
        );
        assert_eq!(f.records[0].kind, Kind::Dir);
        match &f.records[1].kind {
            Kind::File { size, sha256, .. } => {
                assert_eq!(*size, 5);
                assert_eq!(
                    Digest::sha256(b"hello").hex(),
                    sha256
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                );
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(f.records[2].kind, Kind::HardLink("etc/a".into()));
        assert_eq!(f.records[3].kind, Kind::Other);
        assert!(matches!(
            f.records[4].kind,
            Kind::File {
                boot_classes: true,
                ..
            }
        ));
    }

    #[test]
    fn encoding_round_trips_and_damage_is_refused() {
        let f = LayerFiles::scan(&sample()[..]).unwrap();
        let e = f.encode();
        assert_eq!(LayerFiles::decode(&e), Some(f));
        for cut in [0, 5, MAGIC.len() + 3, e.len() / 2, e.len() - 1] {
            assert_eq!(LayerFiles::decode(&e[..cut]), None, "cut at {cut}");
        }
        let mut longer = e.clone();
        longer.push(0);
        assert_eq!(LayerFiles::decode(&longer), None);
        let mut bad = e.clone();
        bad[MAGIC.len() + 16] = b'z';
        assert_eq!(LayerFiles::decode(&bad), None);
    }

    /// The tap, fed the stream in uneven pieces, records what a scan of the
    /// blob does, under the blob's digest; a dropped tap records nothing.
    #[test]
    fn the_tap_records_what_a_scan_of_the_blob_gives() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = sample();
        let blob = store.put_blob(&t).unwrap();
        let info = LayerInfo {
            diff_id: Digest::sha256(&t),
            digest: blob.clone(),
            size: t.len() as u64,
            uncompressed_size: t.len() as u64,
            media_type: strata_oci::media_type::OCI_LAYER_TAR.into(),
        };
        let factory = summary_tap(&store);
        let mut tap = (factory.0)();
        // More than one chunk, in odd pieces: pad with a big file.
        let big = vec![7u8; 3 * 256 * 1024 + 11];
        let mut t2 = tar_of(&[("big", tar::EntryType::Regular, &big, None)]);
        t2.truncate(t2.len() - 1024); // drop its end-of-archive blocks
        t2.extend_from_slice(&t);
        for piece in t2.chunks(100_003) {
            tap.write(piece);
        }
        let info2 = LayerInfo {
            uncompressed_size: t2.len() as u64,
            ..info.clone()
        };
        tap.finish(&info2);
        let kept = stored_files(&store, &blob).expect("kept");
        assert_eq!(kept, LayerFiles::scan(&t2[..]).unwrap());
        assert_eq!(kept.records[0].path, "big");

        // A layer that failed: nothing kept (and the thread ends).
        let other = store.put_blob(b"other").unwrap();
        let mut tap = (factory.0)();
        tap.write(&t[..700]);
        drop(tap);
        assert_eq!(stored_files(&store, &other), None);

        // A size that disagrees with the layer's: not kept.
        let third = store.put_blob(b"third").unwrap();
        let mut tap = (factory.0)();
        tap.write(&t);
        tap.finish(&LayerInfo {
            digest: third.clone(),
            uncompressed_size: 1,
            ..info
        });
        assert_eq!(stored_files(&store, &third), None);
    }
}
