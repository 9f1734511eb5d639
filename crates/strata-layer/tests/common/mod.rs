//! Helpers shared by the layer tests: raw tar building (including names the
//! tar crate refuses to write) and tree comparison.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

/// A raw tar under construction; names are written as given.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    fn header(&mut self, name: &[u8], kind: tar::EntryType, link: &[u8], size: u64, mode: u32) {
        if name.len() > 100 || link.len() > 100 {
            // PAX extended header for long names.
            let mut pax = Vec::new();
            for (k, v) in [("path", name), ("linkpath", link)] {
                if v.len() > 100 {
                    let body_len = k.len() + v.len() + 3;
                    let mut len = body_len + 1;
                    while body_len + len.to_string().len() != len {
                        len = body_len + len.to_string().len();
                    }
                    pax.extend(format!("{len} {k}=").as_bytes());
                    pax.extend(v);
                    pax.push(b'\n');
                }
            }
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(pax.len() as u64);
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_cksum();
            self.bytes.extend(h.as_bytes());
            self.bytes.extend(&pax);
            self.pad();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
        h.set_cksum();
        self.bytes.extend(h.as_bytes());
    }

    fn pad(&mut self) {
        let rem = self.bytes.len() % 512;
        if rem != 0 {
            self.bytes.extend(vec![0u8; 512 - rem]);
        }
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> RawTar {
        self.header(
            name.as_bytes(),
            tar::EntryType::Regular,
            b"",
            data.len() as u64,
            0o644,
        );
        self.bytes.extend(data);
        self.pad();
        self
    }

    pub fn dir(mut self, name: &str) -> RawTar {
        self.header(name.as_bytes(), tar::EntryType::Directory, b"", 0, 0o755);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> RawTar {
        self.header(
            name.as_bytes(),
            tar::EntryType::Symlink,
            target.as_bytes(),
            0,
            0o777,
        );
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> RawTar {
        self.header(
            name.as_bytes(),
            tar::EntryType::Link,
            target.as_bytes(),
            0,
            0o644,
        );
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend([0u8; 1024]);
        self.bytes
    }
}

/// Every path under `root` with a description of what it is, sorted.
pub fn describe_tree(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".to_owned()
            } else if m.is_file() {
                format!(
                    "file {:?}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                )
            } else {
                format!("special rdev={}", m.rdev())
            };
            out.push(format!("{rel} {what} mode={:o}", m.mode() & 0o7777));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}
