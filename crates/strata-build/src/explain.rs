//! Why a step was cached or rebuilt, computed by comparing the inputs hashed
//! now with the inputs recorded by the last build of the same step.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::key::{desc_content, Inputs};

/// One input that differs from the last build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Change {
    /// A source file is new.
    FileAdded {
        /// Path (context-relative, or absolute in a stage).
        path: String,
        /// Its content digest.
        digest: String,
    },
    /// A source file is gone.
    FileRemoved {
        /// Path.
        path: String,
        /// Its old content digest.
        digest: String,
    },
    /// A source file's content or metadata changed.
    FileChanged {
        /// Path.
        path: String,
        /// Old description (type, mode, owner, size, digest).
        old: String,
        /// New description.
        new: String,
    },
    /// A build arg changed.
    Arg {
        /// Name.
        name: String,
        /// Old value (`None`: not set).
        old: Option<String>,
        /// New value.
        new: Option<String>,
    },
    /// An environment variable changed.
    Env {
        /// Name.
        name: String,
        /// Old value.
        old: Option<String>,
        /// New value.
        new: Option<String>,
    },
    /// Another input (user, workdir, shell, network, base image, mount...).
    Field {
        /// Which.
        name: String,
        /// Old value.
        old: Option<String>,
        /// New value.
        new: Option<String>,
    },
    /// The instruction text itself.
    Instruction {
        /// Before.
        old: String,
        /// Now.
        new: String,
    },
}

/// The verdict on one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Explanation {
    /// Found in the cache: every input equals the cached step's.
    Hit {
        /// Source files compared by content (COPY/ADD).
        files: usize,
        /// Of those, files whose timestamps changed since they were last
        /// hashed but whose content did not (the cache kept them).
        touched: usize,
    },
    /// Config-only step: nothing to cache, computed.
    Metadata,
    /// `--no-cache` or `--no-cache-filter` asked for a rebuild.
    NoCache {
        /// The flag.
        flag: String,
    },
    /// No earlier build of this step is recorded.
    FirstBuild,
    /// An earlier step changed, so this one runs again.
    EarlierStep {
        /// That step's label (`[build 3/7]`).
        step: String,
        /// What changed there, in a few words.
        summary: String,
    },
    /// The base image changed.
    BaseChanged {
        /// Old image ID prefix.
        old: String,
        /// New image ID prefix.
        new: String,
    },
    /// These inputs differ from the last build.
    Changed {
        /// The differences (at most `MAX_CHANGES`, the rest counted).
        changes: Vec<Change>,
        /// How many more differences there are.
        more: usize,
    },
    /// Inputs equal the last build's, but its result is gone (pruned).
    Evicted,
    /// Inputs equal the last build's, which did not finish this step.
    Unfinished,
    /// Not in the store's cache, found in a remote one (`--cache-from`).
    Remote {
        /// The cache, as the user named it.
        cache: String,
    },
    /// A miss here and in every remote cache asked.
    NotInRemote {
        /// Why the store's cache had no entry.
        local: Box<Explanation>,
        /// The remote caches that had none either (or could not answer).
        caches: Vec<String>,
    },
}

/// How many changes an explanation lists.
pub const MAX_CHANGES: usize = 8;

/// Compare the recorded inputs of the last build with the current ones.
/// `None` when they are equal.
pub fn compare(old: &Inputs, new: &Inputs) -> Option<Vec<Change>> {
    let mut changes = Vec::new();
    if old.instruction != new.instruction {
        // Another instruction: its environment, files and fields differ as
        // a consequence, and listing them is noise.
        return Some(vec![Change::Instruction {
            old: old.instruction.clone(),
            new: new.instruction.clone(),
        }]);
    }
    diff_maps(&old.args, &new.args, |name, old, new| Change::Arg {
        name,
        old,
        new,
    })
    .into_iter()
    .for_each(|c| changes.push(c));
    diff_maps(&old.env, &new.env, |name, old, new| Change::Env {
        name,
        old,
        new,
    })
    .into_iter()
    .for_each(|c| changes.push(c));
    diff_maps(&old.fields, &new.fields, |name, old, new| Change::Field {
        name,
        old,
        new,
    })
    .into_iter()
    .for_each(|c| changes.push(c));
    for (path, o, n) in map_diff(&old.files, &new.files) {
        changes.push(match (o, n) {
            (None, Some(n)) => Change::FileAdded {
                path,
                digest: desc_content(&n).to_owned(),
            },
            (Some(o), None) => Change::FileRemoved {
                path,
                digest: desc_content(&o).to_owned(),
            },
            (Some(old), Some(new)) => Change::FileChanged { path, old, new },
            (None, None) => continue,
        });
    }
    if changes.is_empty() && old.kind != new.kind {
        changes.push(Change::Field {
            name: "key format".into(),
            old: Some(old.kind.clone()),
            new: Some(new.kind.clone()),
        });
    }
    if changes.is_empty() {
        None
    } else {
        Some(changes)
    }
}

fn map_diff(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    for (k, v) in old {
        match new.get(k) {
            Some(n) if n == v => {}
            n => out.push((k.clone(), Some(v.clone()), n.cloned())),
        }
    }
    for (k, v) in new {
        if !old.contains_key(k) {
            out.push((k.clone(), None, Some(v.clone())));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn diff_maps(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    make: impl Fn(String, Option<String>, Option<String>) -> Change,
) -> Vec<Change> {
    map_diff(old, new)
        .into_iter()
        .map(|(k, o, n)| make(k, o, n))
        .collect()
}

/// Shortens `sha256:abcdef...` to `abcdef12`.
fn short_digest(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex.get(..8).unwrap_or(hex)
}

fn opt(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "unset".to_owned(),
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::FileAdded { path, digest } => {
                write!(f, "{path} added ({})", short_digest(digest))
            }
            Change::FileRemoved { path, digest } => {
                write!(f, "{path} removed (was {})", short_digest(digest))
            }
            Change::FileChanged { path, old, new } => {
                let (oc, nc) = (desc_content(old), desc_content(new));
                if oc != nc {
                    write!(
                        f,
                        "{path} changed ({} -> {})",
                        short_digest(oc),
                        short_digest(nc)
                    )
                } else {
                    // Same content: mode, owner or type changed.
                    write!(f, "{path} metadata changed ({old} -> {new})")
                }
            }
            Change::Arg { name, old, new } => {
                write!(f, "build arg {name} changed ({} -> {})", opt(old), opt(new))
            }
            Change::Env { name, old, new } => {
                write!(f, "env {name} changed ({} -> {})", opt(old), opt(new))
            }
            Change::Field { name, old, new } => {
                write!(f, "{name} changed ({} -> {})", opt(old), opt(new))
            }
            Change::Instruction { old, new } => {
                write!(f, "instruction changed (was `{old}`, now `{new}`)")
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Explanation::Hit { files: 0, .. } => write!(f, "inputs unchanged"),
            Explanation::Hit { files, touched: 0 } => {
                write!(f, "{files} source file(s) unchanged")
            }
            Explanation::Hit { files, touched } => write!(
                f,
                "{files} source file(s) unchanged ({touched} have new timestamps, same content)"
            ),
            Explanation::Metadata => write!(f, "config only"),
            Explanation::NoCache { flag } => write!(f, "{flag}"),
            Explanation::FirstBuild => write!(f, "no earlier build of this step"),
            Explanation::EarlierStep { step, summary } => {
                write!(f, "earlier step {step} changed: {summary}")
            }
            Explanation::BaseChanged { old, new } => {
                write!(f, "base image changed ({old} -> {new})")
            }
            Explanation::Changed { changes, more } => {
                for (i, c) in changes.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{c}")?;
                }
                if *more > 0 {
                    write!(f, "; and {more} more")?;
                }
                Ok(())
            }
            Explanation::Evicted => write!(f, "inputs unchanged but the cached result was pruned"),
            Explanation::Unfinished => write!(
                f,
                "inputs unchanged; the last build stopped before finishing this step"
            ),
            Explanation::Remote { cache } => write!(f, "found in {cache}"),
            Explanation::NotInRemote { local, caches } => {
                write!(f, "{local}; not in {} either", caches.join(", "))
            }
        }
    }
}

/// Build an explanation from a list of changes, keeping the first few.
pub fn changed(mut changes: Vec<Change>) -> Explanation {
    let more = changes.len().saturating_sub(MAX_CHANGES);
    changes.truncate(MAX_CHANGES);
    Explanation::Changed { changes, more }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{file_desc, tag};
    use strata_oci::Digest;

    fn inputs() -> Inputs {
        let mut i = Inputs::new(tag::COPY, &Digest::sha256(b"p"), "COPY . /app");
        i.files.insert(
            "a.txt".into(),
            file_desc('f', 0o644, 0, 0, 1, &Digest::sha256(b"a").to_string()),
        );
        i.files.insert(
            "b.txt".into(),
            file_desc('f', 0o644, 0, 0, 1, &Digest::sha256(b"b").to_string()),
        );
        i
    }

    #[test]
    fn equal_inputs_have_no_changes() {
        assert_eq!(compare(&inputs(), &inputs()), None);
    }

    #[test]
    fn file_changes_are_named_with_digest_prefixes() {
        let old = inputs();
        let mut new = inputs();
        new.files.insert(
            "a.txt".into(),
            file_desc('f', 0o644, 0, 0, 1, &Digest::sha256(b"A").to_string()),
        );
        new.files.remove("b.txt");
        new.files.insert(
            "c.txt".into(),
            file_desc('f', 0o644, 0, 0, 1, &Digest::sha256(b"c").to_string()),
        );
        let changes = compare(&old, &new).unwrap();
        let text = changed(changes).to_string();
        let a_old = Digest::sha256(b"a").hex()[..8].to_owned();
        let a_new = Digest::sha256(b"A").hex()[..8].to_owned();
        assert_eq!(
            text,
            format!(
                "a.txt changed ({a_old} -> {a_new}); b.txt removed (was {}); c.txt added ({})",
                &Digest::sha256(b"b").hex()[..8],
                &Digest::sha256(b"c").hex()[..8]
            )
        );
    }

    #[test]
    fn mode_change_is_not_reported_as_content() {
        let old = inputs();
        let mut new = inputs();
        new.files.insert(
            "a.txt".into(),
            file_desc('f', 0o755, 0, 0, 1, &Digest::sha256(b"a").to_string()),
        );
        let text = changed(compare(&old, &new).unwrap()).to_string();
        assert!(text.starts_with("a.txt metadata changed (f 0644"), "{text}");
    }

    #[test]
    fn args_and_env() {
        let mut old = Inputs::new(tag::RUN, &Digest::sha256(b"p"), "RUN make");
        old.args.insert("VERSION".into(), "1.0".into());
        let mut new = old.clone();
        new.args.insert("VERSION".into(), "1.1".into());
        new.env.insert("DEBUG".into(), "1".into());
        let text = changed(compare(&old, &new).unwrap()).to_string();
        assert_eq!(
            text,
            "build arg VERSION changed (\"1.0\" -> \"1.1\"); env DEBUG changed (unset -> \"1\")"
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let old = Inputs::new(tag::COPY, &Digest::sha256(b"p"), "COPY . .");
        let mut new = old.clone();
        for i in 0..20 {
            new.files.insert(
                format!("f{i:02}"),
                file_desc('f', 0o644, 0, 0, 0, "sha256:00"),
            );
        }
        match changed(compare(&old, &new).unwrap()) {
            Explanation::Changed { changes, more } => {
                assert_eq!((changes.len(), more), (MAX_CHANGES, 12));
            }
            other => panic!("{other:?}"),
        }
    }
}
