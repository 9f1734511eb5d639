//! Cache keys (DESIGN.md decision 1): a step's key is the sha256 of a
//! canonical encoding of everything that can change its result, tagged with
//! a version, and chained to its parent's key. Timestamps are never part of
//! a key. What was hashed is kept ([`Inputs`]) so `--explain` can say which
//! input differs from the last build.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_oci::Digest;

/// Key format versions: changing what goes into a kind of key means bumping
/// its tag (golden tests below freeze known keys).
///
/// v2 of COPY, RUN and WORKDIR added the timestamp mode and epoch; COPY the
/// ids `--chown` resolved to and ADD's unpack decision; RUN every cache
/// mount option, secret mounts whether or not the secret is given, and
/// context binds described without the host's owners.
pub mod tag {
    /// FROM: the base image.
    pub const FROM: &str = "strata.from.v1";
    /// Config-only instructions (ENV, LABEL, CMD...).
    pub const META: &str = "strata.meta.v1";
    /// COPY and ADD.
    pub const COPY: &str = "strata.copy.v2";
    /// RUN.
    pub const RUN: &str = "strata.run.v2";
    /// WORKDIR (may create a directory).
    pub const WORKDIR: &str = "strata.workdir.v2";
}

/// Everything hashed into one step's key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// Key kind and version ([`tag`]).
    pub kind: String,
    /// The parent step's key (hex), empty for a base.
    pub parent: String,
    /// The instruction, canonical: keyword upper case, variables expanded
    /// where the builder expands them, flags in a fixed order.
    pub instruction: String,
    /// Other scalar inputs by name (`shell`, `user`, `workdir`, `network`,
    /// `base`, `platform`, `mount:/target`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Environment the step sees (RUN).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Build args in scope (RUN; names and values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Source files (COPY/ADD): path -> [`file_desc`] text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

impl Inputs {
    /// Inputs of a kind, chained to `parent`.
    pub fn new(kind: &str, parent: &Digest, instruction: impl Into<String>) -> Inputs {
        Inputs {
            kind: kind.to_owned(),
            parent: parent.hex().to_owned(),
            instruction: instruction.into(),
            ..Inputs::default()
        }
    }

    /// The key: sha256 of the canonical JSON encoding (maps are sorted,
    /// field order is fixed by the struct).
    pub fn key(&self) -> Digest {
        // Serializing these plain maps and strings cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        Digest::sha256(&bytes)
    }
}

/// A file as it enters a key: type, permission bits, owner, size and content
/// digest (or link target). Never a timestamp.
pub fn file_desc(kind: char, mode: u32, uid: u32, gid: u32, size: u64, content: &str) -> String {
    format!("{kind} {mode:04o} {uid}:{gid} {size} {content}")
}

/// The digest part of a [`file_desc`] (for explanations).
pub fn desc_content(desc: &str) -> &str {
    desc.rsplit(' ').next().unwrap_or(desc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Digest {
        Digest::sha256(b"base")
    }

    /// Golden keys: if one of these changes, the key format changed and its
    /// tag in [`tag`] must be bumped (old cache entries must not be reused).
    #[test]
    fn golden_keys() {
        let mut run = Inputs::new(tag::RUN, &base(), "RUN /bin/sh -c make");
        run.env.insert("PATH".into(), "/usr/bin:/bin".into());
        run.fields.insert("user".into(), "0:0".into());
        run.fields.insert("timestamps".into(), "epoch 0".into());
        assert_eq!(
            run.key().to_string(),
            "sha256:1a3b0f09582712eee4da04c09fd991b0c8832607fef9a440a895e2b48ef77828"
        );
        let mut copy = Inputs::new(tag::COPY, &base(), "COPY app.py /app/");
        copy.fields.insert("timestamps".into(), "epoch 0".into());
        copy.files.insert(
            "app.py".into(),
            file_desc('f', 0o644, 0, 0, 5, &Digest::sha256(b"hello").to_string()),
        );
        assert_eq!(
            copy.key().to_string(),
            "sha256:8ac6afefc4725403c51a39ffc6aee8aebfa6c493d6e2c3ad703b303cbbdefb17"
        );
    }

    #[test]
    fn every_input_changes_the_key() {
        let mut a = Inputs::new(tag::RUN, &base(), "RUN x");
        let k = a.key();
        a.env.insert("A".into(), "1".into());
        let k2 = a.key();
        assert_ne!(k, k2);
        a.args.insert("V".into(), "1".into());
        let k3 = a.key();
        assert_ne!(k2, k3);
        a.fields.insert("network".into(), "none".into());
        assert_ne!(k3, a.key());
        let b = Inputs::new(tag::RUN, &Digest::sha256(b"other"), "RUN x");
        assert_ne!(k, b.key());
        let c = Inputs::new(tag::COPY, &base(), "RUN x");
        assert_ne!(k, c.key());
    }

    #[test]
    fn file_desc_has_no_time() {
        let d = file_desc('f', 0o755, 0, 0, 12, "sha256:ab");
        assert_eq!(d, "f 0755 0:0 12 sha256:ab");
        assert_eq!(desc_content(&d), "sha256:ab");
    }
}
