//! A small record, kept in the store, of which registry repositories each
//! blob was pulled from or pushed to, so a later push to another repository
//! of the same registry can mount instead of upload.
//!
//! Layout: `<store>/registry/origins/<alg>/<hex>`, one `registry/repository`
//! per line. Lines are only ever appended (`O_APPEND` writes of one short
//! line are atomic), readers de-duplicate.

use std::io::Write;
use std::path::PathBuf;

use strata_oci::{Digest, Store};

fn path(store: &Store, d: &Digest) -> PathBuf {
    store
        .root()
        .join("registry/origins")
        .join(d.algorithm().as_str())
        .join(d.hex())
}

/// Repositories (`(registry, repository)`) the blob is known to live in.
pub(crate) fn lookup(store: &Store, d: &Digest) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path(store, d)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some((reg, repo)) = line.split_once('/') {
            let e = (reg.to_owned(), repo.to_owned());
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

/// Remember that the blob lives in `registry/repository`. Best effort: a
/// failure only costs a later mount.
pub(crate) fn record(store: &Store, d: &Digest, registry: &str, repository: &str) {
    if lookup(store, d)
        .iter()
        .any(|(r, p)| r == registry && p == repository)
    {
        return;
    }
    let p = path(store, d);
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
    {
        let _ = f.write_all(format!("{registry}/{repository}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn record_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::sha256(b"x");
        assert!(lookup(&store, &d).is_empty());
        record(&store, &d, "localhost:5000", "a/b");
        record(&store, &d, "localhost:5000", "a/b");
        record(&store, &d, "localhost:5000", "c");
        assert_eq!(
            lookup(&store, &d),
            vec![
                ("localhost:5000".into(), "a/b".into()),
                ("localhost:5000".into(), "c".into())
            ]
        );
    }
}
