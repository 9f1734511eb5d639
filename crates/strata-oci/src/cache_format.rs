//! The format of build cache entries kept outside the store (docs/cache.md),
//! shared by the registry cache (strata-registry) and [`crate::LayoutCache`].
//!
//! One entry per cache key, each an OCI artifact manifest of its own, tagged
//! `<TAG>-<key hex>` (in a registry) or named so by
//! `org.opencontainers.image.ref.name` (in an OCI layout):
//!
//! ```json
//! {"schemaVersion":2,
//!  "mediaType":"application/vnd.oci.image.manifest.v1+json",
//!  "artifactType":"application/vnd.strata.cache.v1",
//!  "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:4413...","size":2},
//!  "layers":[<the step's layer descriptor, or the empty descriptor>],
//!  "annotations":{"dev.strata.cache.diffid":"sha256:...","dev.strata.cache.key":"sha256:...",
//!                 "org.opencontainers.image.created":"2025-01-31T12:00:00Z"}}
//! ```
//!
//! A step that made no layer has the empty descriptor as its only layer
//! (OCI 1.1: "for portability, layers SHOULD have at least one entry") and
//! no diffID annotation; readers also accept `"layers":[]`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{media_type, CacheRecord, Descriptor, Digest, Manifest, RemoteEntry};

/// The `artifactType` of a cache entry (the version of this format).
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.strata.cache.v1";
/// The tag of a cache reference that names none (`registry/app` means
/// `registry/app:cache`), and of an OCI layout cache.
pub const DEFAULT_CACHE_TAG: &str = "cache";
/// Annotation: the step's cache key.
pub const ANNOTATION_CACHE_KEY: &str = "dev.strata.cache.key";
/// Annotation: the diffID (uncompressed digest) of the step's layer.
pub const ANNOTATION_CACHE_DIFFID: &str = "dev.strata.cache.diffid";
/// Annotation: the key the chain of keys continues with, when it is not
/// the entry's own.
pub const ANNOTATION_CACHE_CHAIN: &str = "dev.strata.cache.chain";
/// Annotation: when the entry was written (RFC 3339, UTC).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Annotation of an OCI layout's index entries: the entry's tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The content of the OCI empty blob.
pub const EMPTY_JSON: &[u8] = b"{}";
/// An entry that was a hit is written again (its creation time renewed, so
/// a prune by age keeps it) only when it is older than this.
pub const CACHE_REFRESH_AGE: Duration = Duration::from_secs(24 * 3600);

/// Longest tag a registry accepts.
const MAX_TAG: usize = 128;
/// Hex digits of the key in an entry tag (sha256).
const KEY_HEX: usize = 64;

/// Why a manifest is not a usable cache entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheEntryError {
    /// Not a strata cache artifact at all (another artifact or an image
    /// under a tag that looks like an entry's): a miss, not an error.
    #[error("not a strata cache entry")]
    Foreign,
    /// A strata cache artifact that does not follow the format.
    #[error("invalid cache entry: {0}")]
    Invalid(String),
}

/// The OCI empty descriptor (`{}`, 2 bytes), the config of every entry.
pub fn empty_descriptor() -> Descriptor {
    Descriptor::new(media_type::OCI_EMPTY, Digest::sha256(EMPTY_JSON), 2)
}

/// The cache tag as entry tags use it: cut so that `<tag>-<64 hex>` fits
/// in a registry tag (128 characters).
fn tag_prefix(tag: &str) -> &str {
    let max = MAX_TAG - KEY_HEX - 1;
    // Tags are ASCII; cut on a char boundary anyway.
    let mut end = tag.len().min(max);
    while !tag.is_char_boundary(end) {
        end -= 1;
    }
    &tag[..end]
}

/// The hex that names `key` in a tag: its own for sha256 keys, the sha256
/// of its text for any other algorithm (so the tag stays 64 digits).
fn key_hex(key: &Digest) -> String {
    if key.algorithm() == crate::Algorithm::Sha256 {
        key.hex().to_owned()
    } else {
        Digest::sha256(key.to_string().as_bytes()).hex().to_owned()
    }
}

/// The tag of the entry for `key` in the cache tagged `tag`:
/// `<tag>-<key hex>`, `tag` cut to 63 characters.
pub fn cache_entry_tag(tag: &str, key: &Digest) -> String {
    format!("{}-{}", tag_prefix(tag), key_hex(key))
}

/// Whether `candidate` is the tag of an entry of the cache tagged `tag`.
pub fn is_cache_entry_tag(tag: &str, candidate: &str) -> bool {
    candidate
        .strip_prefix(tag_prefix(tag))
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == KEY_HEX && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// Whether `tag` can be a cache tag (a registry tag: `[A-Za-z0-9_]`
/// then `[A-Za-z0-9_.-]`, at most 128 characters).
pub fn valid_cache_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The manifest of the entry for `record`, written at `created` (RFC
/// 3339). The bytes are a function of the record and the time.
pub fn cache_entry_manifest(record: &CacheRecord, created: &str) -> Vec<u8> {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_CACHE_KEY.to_owned(), record.key.to_string());
    annotations.insert(ANNOTATION_CREATED.to_owned(), created.to_owned());
    if let Some(chain) = &record.chain {
        annotations.insert(ANNOTATION_CACHE_CHAIN.to_owned(), chain.to_string());
    }
    let layers = match &record.layer {
        Some((desc, diff_id)) => {
            annotations.insert(ANNOTATION_CACHE_DIFFID.to_owned(), diff_id.to_string());
            vec![desc.clone()]
        }
        None => vec![empty_descriptor()],
    };
    let mut m = Manifest::oci(empty_descriptor(), layers);
    m.artifact_type = Some(CACHE_ARTIFACT_TYPE.to_owned());
    m.annotations = annotations;
    m.to_json()
}

/// Read an entry's manifest.
pub fn parse_cache_entry(raw: &[u8]) -> Result<RemoteEntry, CacheEntryError> {
    let invalid = |s: String| CacheEntryError::Invalid(s);
    let m: Manifest =
        serde_json::from_slice(raw).map_err(|e| invalid(format!("not a manifest: {e}")))?;
    if m.artifact_type.as_deref() != Some(CACHE_ARTIFACT_TYPE) {
        return Err(CacheEntryError::Foreign);
    }
    if m.media_type
        .as_deref()
        .is_some_and(|mt| mt != media_type::OCI_MANIFEST)
    {
        return Err(invalid(format!(
            "media type {:?} is not an OCI manifest",
            m.media_type.unwrap_or_default()
        )));
    }
    let annotation = |name: &str| m.annotations.get(name);
    let key: Digest = annotation(ANNOTATION_CACHE_KEY)
        .ok_or_else(|| invalid(format!("no {ANNOTATION_CACHE_KEY} annotation")))?
        .parse()
        .map_err(|e| invalid(format!("{ANNOTATION_CACHE_KEY}: {e}")))?;
    let chain: Option<Digest> = match annotation(ANNOTATION_CACHE_CHAIN) {
        Some(c) => Some(
            c.parse()
                .map_err(|e| invalid(format!("{ANNOTATION_CACHE_CHAIN}: {e}")))?,
        ),
        None => None,
    };
    let real: Vec<&Descriptor> = m
        .layers
        .iter()
        .filter(|l| l.media_type != media_type::OCI_EMPTY)
        .collect();
    let layer = match real.as_slice() {
        [] => None,
        [l] => {
            let diff_id: Digest = annotation(ANNOTATION_CACHE_DIFFID)
                .ok_or_else(|| invalid(format!("a layer but no {ANNOTATION_CACHE_DIFFID}")))?
                .parse()
                .map_err(|e| invalid(format!("{ANNOTATION_CACHE_DIFFID}: {e}")))?;
            Some(((*l).clone(), diff_id))
        }
        more => return Err(invalid(format!("{} layers (one at most)", more.len()))),
    };
    Ok(RemoteEntry {
        record: CacheRecord { key, layer, chain },
        created: annotation(ANNOTATION_CREATED).cloned(),
    })
}

/// Unix time now (seconds).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The creation time of an entry written now (RFC 3339, UTC, seconds).
pub fn cache_created_now() -> String {
    crate::format_rfc3339(unix_now())
}

/// Whether the entry was written `age` or more ago (whole seconds, so
/// with `age` zero every entry is). An entry without a
/// (readable) creation time is never old: it is kept by prunes and not
/// refreshed.
pub fn cache_entry_older_than(entry: &RemoteEntry, age: Duration) -> bool {
    let Some(created) = entry.created.as_deref().and_then(crate::parse_rfc3339) else {
        return false;
    };
    let age = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    created <= unix_now().saturating_sub(age)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(n: u8) -> Digest {
        Digest::sha256(&[n])
    }

    fn layer_record() -> CacheRecord {
        CacheRecord {
            chain: None,
            key: key(1),
            layer: Some((
                Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::sha256(b"blob"), 4),
                Digest::sha256(b"tar"),
            )),
        }
    }

    #[test]
    fn tags_are_the_cache_tag_and_the_key() {
        let k = key(1);
        assert_eq!(cache_entry_tag("cache", &k), format!("cache-{}", k.hex()));
        // A long tag is cut so the entry tag fits in 128 characters.
        let long = "t".repeat(128);
        let t = cache_entry_tag(&long, &k);
        assert_eq!(t.len(), 128);
        assert_eq!(t, format!("{}-{}", "t".repeat(63), k.hex()));
        assert!(valid_cache_tag(&t));
        assert!(is_cache_entry_tag(&long, &t));
        // Other algorithms are named by the sha256 of their text.
        let k512: Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
        let t = cache_entry_tag("cache", &k512);
        assert_eq!(t.len(), "cache-".len() + 64);
        assert!(is_cache_entry_tag("cache", &t));
    }

    #[test]
    fn entry_tags_are_told_apart() {
        let hex = key(1).hex().to_owned();
        for (tag, candidate, want) in [
            ("cache", format!("cache-{hex}"), true),
            ("cache", format!("cache-{}", &hex[..63]), false),
            ("cache", format!("cache-{}", hex.to_uppercase()), false),
            ("cache", "cache".to_owned(), false),
            ("cache", "latest".to_owned(), false),
            // Another cache whose tag starts like this one's.
            ("cache", format!("cache-b-{hex}"), false),
            ("cache-b", format!("cache-b-{hex}"), true),
            ("main", format!("cache-{hex}"), false),
        ] {
            assert_eq!(
                is_cache_entry_tag(tag, &candidate),
                want,
                "{tag} {candidate}"
            );
        }
    }

    #[test]
    fn manifest_bytes_are_fixed() {
        let r = layer_record();
        let raw = cache_entry_manifest(&r, "2025-01-31T12:00:00Z");
        let want = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""artifactType":"application/vnd.strata.cache.v1","#,
                r#""config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"#,
                r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{blob}","size":4}}],"#,
                r#""annotations":{{"dev.strata.cache.diffid":"{diff}","dev.strata.cache.key":"{key}","#,
                r#""org.opencontainers.image.created":"2025-01-31T12:00:00Z"}}}}"#
            ),
            blob = Digest::sha256(b"blob"),
            diff = Digest::sha256(b"tar"),
            key = key(1),
        );
        assert_eq!(String::from_utf8(raw.clone()).unwrap(), want);
        let e = parse_cache_entry(&raw).unwrap();
        assert_eq!(e.record, r);
        assert_eq!(e.created.as_deref(), Some("2025-01-31T12:00:00Z"));
    }

    #[test]
    fn no_layer_is_the_empty_descriptor() {
        let r = CacheRecord {
            chain: None,
            key: key(2),
            layer: None,
        };
        let raw = cache_entry_manifest(&r, "2025-01-31T12:00:00Z");
        let m: Manifest = serde_json::from_slice(&raw).unwrap();
        assert_eq!(m.layers, vec![empty_descriptor()]);
        assert!(!m.annotations.contains_key(ANNOTATION_CACHE_DIFFID));
        assert_eq!(parse_cache_entry(&raw).unwrap().record, r);
        // `"layers": []` reads the same.
        let mut m = m;
        m.layers.clear();
        assert_eq!(parse_cache_entry(&m.to_json()).unwrap().record, r);
    }

    #[test]
    fn entries_record_nothing_but_the_output() {
        let raw = cache_entry_manifest(&layer_record(), "2025-01-31T12:00:00Z");
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let keys: Vec<&String> = v["annotations"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                ANNOTATION_CACHE_DIFFID,
                ANNOTATION_CACHE_KEY,
                ANNOTATION_CREATED
            ]
        );
    }

    #[test]
    fn foreign_and_invalid_manifests() {
        let image = Manifest::oci(empty_descriptor(), vec![]).to_json();
        assert_eq!(parse_cache_entry(&image), Err(CacheEntryError::Foreign));
        assert!(matches!(
            parse_cache_entry(b"not json"),
            Err(CacheEntryError::Invalid(_))
        ));
        let good = cache_entry_manifest(&layer_record(), "2025-01-31T12:00:00Z");
        let mut m: Manifest = serde_json::from_slice(&good).unwrap();
        m.annotations.remove(ANNOTATION_CACHE_DIFFID);
        assert!(matches!(
            parse_cache_entry(&m.to_json()),
            Err(CacheEntryError::Invalid(s)) if s.contains("diffid")
        ));
        let mut m: Manifest = serde_json::from_slice(&good).unwrap();
        m.annotations
            .insert(ANNOTATION_CACHE_KEY.into(), "nope".into());
        assert!(matches!(
            parse_cache_entry(&m.to_json()),
            Err(CacheEntryError::Invalid(_))
        ));
        let mut m: Manifest = serde_json::from_slice(&good).unwrap();
        m.layers.push(m.layers[0].clone());
        assert!(matches!(
            parse_cache_entry(&m.to_json()),
            Err(CacheEntryError::Invalid(s)) if s.contains("2 layers")
        ));
    }

    #[test]
    fn age() {
        let mut e = parse_cache_entry(&cache_entry_manifest(&layer_record(), &cache_created_now()))
            .unwrap();
        assert!(!cache_entry_older_than(&e, Duration::from_secs(3600)));
        e.created = Some(crate::format_rfc3339(unix_now() - 7200));
        assert!(cache_entry_older_than(&e, Duration::from_secs(3600)));
        assert!(!cache_entry_older_than(&e, Duration::from_secs(3 * 3600)));
        e.created = None;
        assert!(!cache_entry_older_than(&e, Duration::ZERO));
    }
}
