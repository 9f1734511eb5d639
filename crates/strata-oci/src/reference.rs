//! Image references, normalised as docker does (`busybox` ->
//! `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

use crate::{Digest, DigestError};

/// The registry docker assumes when a name has none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// A normalised image reference: `domain/path[:tag][@digest]`.
///
/// Parsing fills in docker's defaults: the `docker.io` domain, the
/// `library/` prefix of official images, and the `latest` tag when neither a
/// tag nor a digest is given.
///
/// ```
/// use strata_oci::Reference;
/// let r: Reference = "busybox".parse().unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(r.familiar(), "busybox:latest");
/// let r: Reference = "localhost:5000/app:1".parse().unwrap();
/// assert_eq!((r.domain(), r.path(), r.tag()), ("localhost:5000", "app", Some("1")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The empty string.
    #[error("invalid reference: empty name")]
    Empty,
    /// Uppercase letters in the repository path.
    #[error("invalid reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    /// Something else in the name is not allowed.
    #[error("invalid reference {input:?}: {reason}")]
    Invalid {
        /// The input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid reference {input:?}: invalid tag {tag:?} (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')")]
    Tag {
        /// The input.
        input: String,
        /// The tag.
        tag: String,
    },
    /// The digest part does not parse.
    #[error("invalid reference {input:?}")]
    Digest {
        /// The input.
        input: String,
        /// Why the digest is wrong.
        #[source]
        source: DigestError,
    },
}

impl Reference {
    /// Build from parts (validated as a parse would).
    pub fn new(
        name: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut s = name.to_owned();
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s.parse()
    }

    /// The registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        Reference::new(&self.name(), Some(tag), None)
    }

    /// The same repository with this digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The short name docker prints: no `docker.io/`, no `library/`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.path)
                .to_owned()
        } else {
            self.name()
        }
    }

    /// The short form with tag and digest, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || i == b.len() {
            return false;
        }
        if !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    // host[:port], host made of dot-separated labels of [A-Za-z0-9-], or an
    // [IPv6] literal.
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) => {
                if ip.is_empty() || !ip.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
                    return false;
                }
                ("x", tail.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest {
                        input: input.to_owned(),
                        source,
                    })?;
                (r, Some(digest))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Tag {
                    input: input.to_owned(),
                    tag: t.to_owned(),
                });
            }
        }
        if name.is_empty() {
            return Err(invalid("empty repository name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("repository name longer than 255 characters"));
        }
        // Docker: the first component is a domain when it contains '.' or
        // ':', is `localhost`, or has uppercase letters.
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
        };
        let domain = if domain == LEGACY_DOMAIN {
            DEFAULT_DOMAIN.to_owned()
        } else {
            domain
        };
        if !valid_domain(&domain) {
            return Err(invalid(&format!("invalid registry host {domain:?}")));
        }
        if path.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(input.to_owned()));
        }
        if path.len() == 64
            && domain == DEFAULT_DOMAIN
            && path.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid(
                "a 64-character hexadecimal string is an image ID, not a repository name",
            ));
        }
        for comp in path.split('/') {
            if !valid_component(comp) {
                return Err(invalid(&format!(
                    "invalid path component {comp:?} (lowercase letters, digits and single separators '.', '_', '__', '-' between them)"
                )));
            }
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let d = D;
        let cases: &[(&str, &str, &str)] = &[
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("user/app:v2", "docker.io/user/app:v2", "user/app:v2"),
            (
                "localhost:5000/app:1",
                "localhost:5000/app:1",
                "localhost:5000/app:1",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            ("ghcr.io/a/b/c:x", "ghcr.io/a/b/c:x", "ghcr.io/a/b/c:x"),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000/app:latest",
            ),
            (
                "a.b-c/e_f.g__h-i--j",
                "a.b-c/e_f.g__h-i--j:latest",
                "a.b-c/e_f.g__h-i--j:latest",
            ),
        ];
        for (input, full, short) in cases {
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(r.familiar(), *short, "{input}");
            // normalisation is idempotent
            assert_eq!(full.parse::<Reference>().unwrap(), r);
        }
        let r: Reference = format!("busybox@{d}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        let r: Reference = format!("busybox:1@{d}").parse().unwrap();
        assert_eq!(
            (r.tag(), r.digest().map(|x| x.to_string())),
            (Some("1"), Some(d.to_owned()))
        );
        assert_eq!(r.familiar(), format!("busybox:1@{d}"));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Busybox", "must be lowercase"),
            ("docker.io/Library/x", "must be lowercase"),
            ("busybox:-x", "invalid tag"),
            ("busybox:", "invalid tag"),
            ("busybox@sha256:123", "invalid digest"),
            ("a//b", "invalid path component"),
            ("a/-b", "invalid path component"),
            ("a/b_", "invalid path component"),
            ("a/b...c", "invalid path component"),
            ("exa mple", "invalid path component"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "image ID",
            ),
            ("bad_host.com:x/app", "invalid registry host"),
        ];
        for (input, want) in cases {
            let e = input.parse::<Reference>().expect_err(input);
            let msg = format!(
                "{e} {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            assert!(msg.contains(want), "{input}: {msg}");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(long.parse::<Reference>().is_err());
    }
}
