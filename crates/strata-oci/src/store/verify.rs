//! `strata store verify`: every blob re-hashed against its name, every
//! reference from the tags checked.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;

use serde::Serialize;

use super::{hash_reader, read_dir_sorted, Store};
use crate::image::sniff_media_type;
use crate::{
    media_type, Algorithm, Descriptor, Digest, Error, ImageConfig, Index, Manifest, Result,
};

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A blob whose content does not match its name.
    CorruptBlob {
        /// The name.
        digest: String,
        /// The content's digest.
        actual: String,
    },
    /// A file under `blobs/` that is not a digest name, or cannot be read.
    BadBlobFile {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Referenced content is missing.
    Missing {
        /// Who references it (a tag, a manifest).
        referenced_by: String,
        /// What is missing.
        digest: String,
    },
    /// A manifest, index or config that does not parse.
    BadDocument {
        /// Its digest.
        digest: String,
        /// Who references it.
        referenced_by: String,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob { digest, actual } => {
                write!(f, "corrupt blob {digest}: content hashes to {actual}")
            }
            Problem::BadBlobFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            Problem::Missing {
                referenced_by,
                digest,
            } => write!(f, "missing {digest}, referenced by {referenced_by}"),
            Problem::BadDocument {
                digest,
                referenced_by,
                reason,
            } => write!(
                f,
                "bad document {digest} (referenced by {referenced_by}): {reason}"
            ),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Tags checked.
    pub tags: usize,
    /// Everything wrong.
    pub problems: Vec<Problem>,
}

impl Store {
    /// Re-hash every blob and check every reference from the tags.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let blobs = self.root.join("blobs");
        for alg in read_dir_sorted(&blobs)? {
            let algorithm = match alg.as_str() {
                "sha256" => Algorithm::Sha256,
                "sha512" => Algorithm::Sha512,
                _ => {
                    report.problems.push(Problem::BadBlobFile {
                        path: blobs.join(&alg),
                        reason: "unknown digest algorithm directory".into(),
                    });
                    continue;
                }
            };
            for name in read_dir_sorted(&blobs.join(&alg))? {
                let path = blobs.join(&alg).join(&name);
                let Ok(digest) = Digest::new(algorithm, &name) else {
                    report.problems.push(Problem::BadBlobFile {
                        path,
                        reason: "not a digest name".into(),
                    });
                    continue;
                };
                match File::open(&path).and_then(|f| hash_reader(f, algorithm)) {
                    Ok((actual, n)) => {
                        report.blobs += 1;
                        report.bytes += n;
                        if actual != digest {
                            report.problems.push(Problem::CorruptBlob {
                                digest: digest.to_string(),
                                actual: actual.to_string(),
                            });
                        }
                    }
                    Err(e) => report.problems.push(Problem::BadBlobFile {
                        path,
                        reason: e.to_string(),
                    }),
                }
            }
        }
        let corrupt: BTreeSet<String> = report
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::CorruptBlob { digest, .. } => Some(digest.clone()),
                _ => None,
            })
            .collect();
        let mut checked = BTreeSet::new();
        for e in self.list_tags()? {
            report.tags += 1;
            let who = match &e.reference {
                Some(r) => format!("tag {}", r.familiar()),
                None => format!("untagged image {}", e.descriptor.digest),
            };
            self.check_tree(
                &e.descriptor,
                &who,
                &corrupt,
                &mut checked,
                &mut report.problems,
            );
        }
        Ok(report)
    }

    fn check_tree(
        &self,
        desc: &Descriptor,
        who: &str,
        corrupt: &BTreeSet<String>,
        checked: &mut BTreeSet<Digest>,
        problems: &mut Vec<Problem>,
    ) {
        if !checked.insert(desc.digest.clone()) {
            return;
        }
        if !self.has(&desc.digest) {
            problems.push(Problem::Missing {
                referenced_by: who.to_owned(),
                digest: desc.digest.to_string(),
            });
            return;
        }
        if corrupt.contains(&desc.digest.to_string()) {
            return;
        }
        let is_doc = media_type::is_manifest(&desc.media_type)
            || media_type::is_index(&desc.media_type)
            || desc.media_type.is_empty();
        if !is_doc {
            return;
        }
        let bad = |reason: String, problems: &mut Vec<Problem>| {
            problems.push(Problem::BadDocument {
                digest: desc.digest.to_string(),
                referenced_by: who.to_owned(),
                reason,
            })
        };
        let raw = match self.read_blob(&desc.digest) {
            Ok(r) => r,
            Err(e) => return bad(e.to_string(), problems),
        };
        let mt = if desc.media_type.is_empty() {
            sniff_media_type(&raw).unwrap_or_default()
        } else {
            desc.media_type.clone()
        };
        let me = format!(
            "{} {}",
            if media_type::is_index(&mt) {
                "index"
            } else {
                "manifest"
            },
            desc.digest
        );
        if media_type::is_index(&mt) {
            match serde_json::from_slice::<Index>(&raw) {
                // Index children may be absent (a pull keeps one platform).
                Ok(idx) => {
                    for m in idx.manifests.iter().filter(|m| self.has(&m.digest)) {
                        self.check_tree(m, &me, corrupt, checked, problems);
                    }
                }
                Err(e) => bad(e.to_string(), problems),
            }
            return;
        }
        let m: Manifest = match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(e) => return bad(e.to_string(), problems),
        };
        for l in m.layers.iter().chain(std::iter::once(&m.config)) {
            // A layer left in a registry (downloaded on first read) is whole.
            if !self.has(&l.digest) && self.remote_blob(&l.digest).is_none() {
                problems.push(Problem::Missing {
                    referenced_by: me.clone(),
                    digest: l.digest.to_string(),
                });
            }
        }
        if self.has(&m.config.digest) && !corrupt.contains(&m.config.digest.to_string()) {
            match self.read_blob(&m.config.digest).and_then(|c| {
                serde_json::from_slice::<ImageConfig>(&c).map_err(|e| Error::invalid(e.to_string()))
            }) {
                Ok(c) if c.rootfs.diff_ids.len() != m.layers.len() => {
                    problems.push(Problem::BadDocument {
                        digest: m.config.digest.to_string(),
                        referenced_by: me,
                        reason: format!(
                            "config lists {} diff_ids for {} layers",
                            c.rootfs.diff_ids.len(),
                            m.layers.len()
                        ),
                    })
                }
                Ok(_) => {}
                Err(e) => problems.push(Problem::BadDocument {
                    digest: m.config.digest.to_string(),
                    referenced_by: me,
                    reason: e.to_string(),
                }),
            }
        }
    }
}
