//! SL304 ADD where COPY does the same: a local file or directory that is
//! not an archive ADD would unpack (practice 8: the instruction says what
//! it does). URLs, git repositories and local archives are what ADD is for.
//!
//! Whether a local source is an archive is read from its content when the
//! build context has it (as the builder decides: gzip, bzip2, xz, zstd or a
//! plain tar), else from its name.

use std::io::Read as _;

use strata_dockerfile::shell::Lexer;
use strata_dockerfile::InstructionKind;

use super::super::rules::*;
use super::super::{Finding, Model};

/// Names ADD unpacks (hadolint's list, plus zstd).
const ARCHIVE_SUFFIXES: &[&str] = &[
    ".tar", ".Z", ".bz2", ".gz", ".lz", ".lzma", ".tZ", ".tb2", ".tbz", ".tbz2", ".tgz", ".tlz",
    ".tpz", ".txz", ".xz", ".zst", ".tzst",
];

/// Whether a source names something remote (ADD downloads or clones it).
pub(crate) fn is_remote(src: &str) -> bool {
    let l = src.to_ascii_lowercase();
    l.contains("://") || l.starts_with("git@")
}

/// Whether a name looks like an archive ADD unpacks.
pub(crate) fn archive_name(src: &str) -> bool {
    let s = src.trim_matches(['"', '\'']);
    ARCHIVE_SUFFIXES.iter().any(|x| s.ends_with(x))
}

/// Whether these leading bytes are a (compressed) tar, as the builder
/// detects it.
pub(crate) fn archive_magic(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.get(257..262) == Some(b"ustar")
}

/// What the context says about a local source: `Some(true)` an archive,
/// `Some(false)` a directory or a file that is not one, `None` unknown.
fn sniff(m: &Model, src: &str) -> Option<bool> {
    let ctx = m.ctx.as_ref()?;
    if strata_context::has_wildcards(src) {
        return None;
    }
    let rel = src.trim_start_matches("./").trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    if ctx.is_dir(rel) {
        return Some(false);
    }
    let mut f = std::fs::File::open(ctx.dir.join(rel)).ok()?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    Some(archive_magic(&head[..n]))
}

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    let lexer = Lexer::new(m.df.escape).skip_unset_env(true);
    for st in &m.stages {
        for ins in &st.insts {
            let InstructionKind::Add(ca) = &ins.inst.kind else {
                continue;
            };
            // Flags only ADD has are for remote sources.
            if ca.checksum.is_some() || ca.keep_git_dir || ca.sources.is_empty() {
                continue;
            }
            let mut local = Vec::new();
            let mut other = false;
            let mut verified = true;
            for s in &ca.sources {
                let value = if s.value.contains('$') {
                    match lexer.process_word(&s.value, &ins.env) {
                        Ok(w) if !w.value.contains('$') => w.value,
                        // Unknown until build time.
                        _ => {
                            other = true;
                            continue;
                        }
                    }
                } else {
                    s.value.clone()
                };
                if is_remote(&value) {
                    other = true;
                    continue;
                }
                let archive = match sniff(m, &value) {
                    Some(a) => a || archive_name(&value),
                    None => {
                        verified = false;
                        archive_name(&value)
                    }
                };
                if archive && ca.unpack != Some(false) {
                    other = true;
                } else {
                    local.push(value);
                }
            }
            if local.is_empty() {
                continue;
            }
            let kw_start = ins.inst.span.offset;
            let kw_end = kw_start + ins.inst.keyword.len();
            let list = local
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut f = m.finding(
                &ADD_LOCAL,
                kw_start,
                kw_end,
                Some(ins.node()),
                format!(
                    "ADD of {list}, which {}: COPY does the same and says so",
                    if local.len() == 1 {
                        "is not an archive to unpack"
                    } else {
                        "are not archives to unpack"
                    }
                ),
            );
            if other {
                f.fix.description = format!(
                    "copy {list} with a COPY of its own; keep ADD for the URLs and archives"
                );
            } else if ca.unpack.is_none() {
                let kw = if ins.inst.keyword.chars().all(|c| c.is_ascii_lowercase()) {
                    "copy"
                } else {
                    "COPY"
                };
                f.fix.description = "replace ADD with COPY".into();
                f.fix.edits.push(m.edit(kw_start, kw_end, kw));
                // Without the context the sources could be archives with
                // an unusual name, which ADD would unpack.
                f.fix.safe = verified;
            }
            out.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_archives_and_remote_sources() {
        let names: &[(&str, bool, bool)] = &[
            ("app.tar.gz", true, false),
            ("rootfs.tar.xz", true, false),
            ("x.tgz", true, false),
            ("data.zst", true, false),
            ("config.json", false, false),
            ("src/", false, false),
            ("app.zip", false, false),
            ("https://example.com/a.tar.gz", true, true),
            ("git@github.com:o/r.git", false, true),
            ("http://x/y", false, true),
        ];
        for (n, archive, remote) in names {
            assert_eq!(archive_name(n), *archive, "{n}");
            assert_eq!(is_remote(n), *remote, "{n}");
        }
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(archive_magic(&tar));
        assert!(archive_magic(&[0x1f, 0x8b, 8, 0]));
        assert!(archive_magic(b"BZh91AY"));
        assert!(!archive_magic(b"{\"a\": 1}"));
        assert!(!archive_magic(b""));
    }
}
