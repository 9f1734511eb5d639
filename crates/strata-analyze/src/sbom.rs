//! Software bills of materials from an image's own package databases, each
//! package attributed to the layer (and, for images strata built, the
//! Dockerfile line) that installed it.
//!
//! [`scan_packages`] reads the layers bottom first and follows the files
//! package managers keep: dpkg (`var/lib/dpkg/status`, and the
//! `var/lib/dpkg/status.d/*` files distroless images carry), apk
//! (`lib/apk/db/installed`), Python (`*.dist-info/METADATA`), npm
//! (`package-lock.json` outside `node_modules`), Cargo (`Cargo.lock`) and
//! Maven (`META-INF/maven/**/pom.properties`, as files or inside jar, war
//! and ear archives and the jars those hold).
//! Whiteouts remove what lower layers had. A package belongs to the layer
//! where its name and version first appear and stay until the top.
//!
//! [`render_spdx`] writes SPDX 2.3 JSON, [`render_cyclonedx`] CycloneDX 1.5
//! JSON; both are functions of their inputs (timestamps come from the
//! image's `created`), so the same image gives the same bytes.
//! docs/supply-chain.md describes both formats.
//!
//! ```
//! use strata_analyze::sbom::{render_spdx, Ecosystem, Package, Subject};
//! let pkgs = vec![Package {
//!     ecosystem: Ecosystem::Deb,
//!     name: "zlib1g".into(),
//!     version: "1:1.2.13".into(),
//!     arch: Some("amd64".into()),
//!     distro: Some("debian".into()),
//!     source: "var/lib/dpkg/status".into(),
//!     layer: 0,
//! }];
//! let subject = Subject {
//!     name: "app:1".into(),
//!     manifest_digest: format!("sha256:{}", "0".repeat(64)),
//!     created: 0,
//!     tool_version: "0.1.0".into(),
//! };
//! let doc = render_spdx(&subject, &pkgs, &[]);
//! assert!(String::from_utf8(doc).unwrap().contains("pkg:deb/debian/zlib1g@1%3A1.2.13?arch=amd64"));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use serde::Serialize;
use serde_json::{json, Value};

use crate::image::LayerMeta;

mod jar;

/// Largest package database file read (a dpkg status of a big image is a
/// few MB).
const MAX_DB_FILE: u64 = 64 << 20;

/// Which package manager a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// dpkg (Debian, Ubuntu).
    Deb,
    /// apk (Alpine).
    Apk,
    /// Python distributions (`*.dist-info`).
    Pypi,
    /// npm (`package-lock.json`).
    Npm,
    /// Cargo (`Cargo.lock`).
    Cargo,
    /// Maven (`META-INF/maven/**/pom.properties`, in the file system or in
    /// a jar, war or ear, and in the jars such an archive holds).
    Maven,
}

impl Ecosystem {
    /// The package-url type.
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Maven => "maven",
        }
    }
}

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Package {
    /// Package manager.
    pub ecosystem: Ecosystem,
    /// Name.
    pub name: String,
    /// Version, as the database spells it.
    pub version: String,
    /// Architecture (dpkg, apk).
    pub arch: Option<String>,
    /// Distribution (`ID` of `/etc/os-release`), for dpkg and apk purls.
    pub distro: Option<String>,
    /// The database file that lists it (path in the image, no leading `/`).
    pub source: String,
    /// Index of the layer that installed it (bottom = 0).
    pub layer: usize,
}

impl Package {
    /// Its package URL (`pkg:deb/debian/bash@5.2-15?arch=amd64`).
    pub fn purl(&self) -> String {
        let name = match self.ecosystem {
            // Scoped npm packages: the scope is the namespace.
            Ecosystem::Npm => match self.name.strip_prefix('@').and_then(|s| s.split_once('/')) {
                Some((scope, n)) => format!("%40{}/{}", pct(scope), pct(n)),
                None => pct(&self.name),
            },
            Ecosystem::Pypi => pct(&self.name.to_lowercase().replace('_', "-")),
            // groupId:artifactId: the group is the namespace.
            Ecosystem::Maven => match self.name.split_once(':') {
                Some((g, a)) => format!("{}/{}", pct(g), pct(a)),
                None => pct(&self.name),
            },
            _ => pct(&self.name),
        };
        let ns = match (self.ecosystem, &self.distro) {
            (Ecosystem::Deb | Ecosystem::Apk, Some(d)) => format!("{}/", pct(d)),
            (Ecosystem::Deb, None) => "debian/".to_owned(),
            (Ecosystem::Apk, None) => "alpine/".to_owned(),
            _ => String::new(),
        };
        let mut p = format!(
            "pkg:{}/{ns}{name}@{}",
            self.ecosystem.purl_type(),
            pct(&self.version)
        );
        if let Some(a) = &self.arch {
            p.push_str("?arch=");
            p.push_str(&pct(a));
        }
        p
    }
}

/// Percent-encode all but unreserved characters.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error reading a layer.
#[derive(Debug, thiserror::Error)]
#[error("cannot read layer {index}")]
pub struct ScanError {
    /// The layer index.
    pub index: usize,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

/// Whether `path` (normalised, no leading `/`) is a file this module reads.
fn interesting(path: &str) -> bool {
    path == "var/lib/dpkg/status"
        || path
            .strip_prefix("var/lib/dpkg/status.d/")
            .is_some_and(|n| !n.contains('/') && !n.ends_with(".md5sums"))
        || path == "lib/apk/db/installed"
        || path == "etc/os-release"
        || path == "usr/lib/os-release"
        || (path.ends_with(".dist-info/METADATA"))
        || ((path == "package-lock.json" || path.ends_with("/package-lock.json"))
            && !path.contains("node_modules/"))
        || path == "Cargo.lock"
        || path.ends_with("/Cargo.lock")
        || (path.contains("META-INF/maven/") && path.ends_with("/pom.properties"))
        || is_java_archive(path)
}

fn is_java_archive(path: &str) -> bool {
    [".jar", ".war", ".ear"].iter().any(|x| path.ends_with(x))
}

fn normalize(raw: &str) -> String {
    let p = raw.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

/// Read the package databases of the layers `open(i)` yields (`n` layers,
/// bottom first; compressed or not) and return the packages of the top
/// layer's file system, sorted, each with the layer that installed it.
pub fn scan_packages(
    n: usize,
    open: &mut dyn FnMut(usize) -> io::Result<Box<dyn Read>>,
) -> Result<Vec<Package>, ScanError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut owner: BTreeMap<(Ecosystem, String, String, Option<String>, String), usize> =
        BTreeMap::new();
    let mut current: Vec<Package> = Vec::new();
    for index in 0..n {
        let err = |source: io::Error| ScanError { index, source };
        let blob = open(index).map_err(err)?;
        let (_, tar_stream) = strata_layer::decompress(blob).map_err(err)?;
        let mut ar = tar::Archive::new(tar_stream);
        let mut changed = false;
        for entry in ar.entries().map_err(err)? {
            let mut entry = entry.map_err(err)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = normalize(&raw);
            let (dir, base) = match path.rsplit_once('/') {
                Some((d, b)) => (d.to_owned(), b.to_owned()),
                None => (String::new(), path.clone()),
            };
            if base == ".wh..wh..opq" {
                let prefix = format!("{dir}/");
                let before = files.len();
                files.retain(|k, _| !(dir.is_empty() || k.starts_with(&prefix)));
                changed |= files.len() != before;
                continue;
            }
            if let Some(gone) = base.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    gone.to_owned()
                } else {
                    format!("{dir}/{gone}")
                };
                let prefix = format!("{gone}/");
                let before = files.len();
                files.retain(|k, _| k != &gone && !k.starts_with(&prefix));
                changed |= files.len() != before;
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            // Anything else at a path replaces what was there.
            if files.remove(&path).is_some() {
                changed = true;
            }
            if kind.is_file() && interesting(&path) && entry.size() <= MAX_DB_FILE {
                let mut buf = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut buf).map_err(err)?;
                if is_java_archive(&path) {
                    // Only what the archive says about its Maven artifacts.
                    let poms = jar::pom_properties(&buf, 1);
                    if poms.is_empty() {
                        continue;
                    }
                    buf = poms.join("\n\u{0}\n").into_bytes();
                }
                files.insert(path, buf);
                changed = true;
            }
        }
        if !changed {
            continue;
        }
        let mut next = parse_all(&files);
        for p in &mut next {
            let key = (
                p.ecosystem,
                p.name.clone(),
                p.version.clone(),
                p.arch.clone(),
                p.source.clone(),
            );
            p.layer = *owner.entry(key).or_insert(index);
        }
        // A package that went away and came back belongs to its return.
        let keep: BTreeSet<_> = next
            .iter()
            .map(|p| {
                (
                    p.ecosystem,
                    p.name.clone(),
                    p.version.clone(),
                    p.arch.clone(),
                    p.source.clone(),
                )
            })
            .collect();
        owner.retain(|k, _| keep.contains(k));
        current = next;
    }
    current.sort();
    current.dedup();
    Ok(current)
}

/// Every package the tracked files list.
fn parse_all(files: &BTreeMap<String, Vec<u8>>) -> Vec<Package> {
    let distro = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| files.get(*p))
        .and_then(|b| os_release_id(&String::from_utf8_lossy(b)));
    let mut out = Vec::new();
    for (path, bytes) in files {
        let text = String::from_utf8_lossy(bytes);
        let mk = |ecosystem, name: &str, version: &str, arch: Option<&str>| Package {
            ecosystem,
            name: name.to_owned(),
            version: version.to_owned(),
            arch: arch.filter(|a| !a.is_empty()).map(str::to_owned),
            distro: match ecosystem {
                Ecosystem::Deb | Ecosystem::Apk => distro.clone(),
                _ => None,
            },
            source: path.clone(),
            layer: 0,
        };
        if path == "var/lib/dpkg/status" || path.starts_with("var/lib/dpkg/status.d/") {
            for para in paragraphs(&text, ':') {
                let installed = para
                    .get("Status")
                    .is_none_or(|s| s.split_whitespace().last() == Some("installed"));
                if let (Some(n), Some(v), true) =
                    (para.get("Package"), para.get("Version"), installed)
                {
                    out.push(mk(
                        Ecosystem::Deb,
                        n,
                        v,
                        para.get("Architecture").map(String::as_str),
                    ));
                }
            }
        } else if path == "lib/apk/db/installed" {
            for para in paragraphs(&text, ':') {
                if let (Some(n), Some(v)) = (para.get("P"), para.get("V")) {
                    out.push(mk(Ecosystem::Apk, n, v, para.get("A").map(String::as_str)));
                }
            }
        } else if path.ends_with(".dist-info/METADATA") {
            let head = text.split("\n\n").next().unwrap_or("");
            if let Some(para) = paragraphs(head, ':').into_iter().next() {
                if let (Some(n), Some(v)) = (para.get("Name"), para.get("Version")) {
                    out.push(mk(Ecosystem::Pypi, n, v, None));
                }
            }
        } else if path.ends_with("package-lock.json") {
            for (n, v) in npm_lock(bytes) {
                out.push(mk(Ecosystem::Npm, &n, &v, None));
            }
        } else if path.ends_with("Cargo.lock") {
            for (n, v) in cargo_lock(&text) {
                out.push(mk(Ecosystem::Cargo, &n, &v, None));
            }
        } else if path.ends_with("/pom.properties") || is_java_archive(path) {
            for props in text.split("\n\u{0}\n") {
                if let Some((n, v)) = maven_properties(props) {
                    out.push(mk(Ecosystem::Maven, &n, &v, None));
                }
            }
        }
    }
    out
}

/// (`groupId:artifactId`, version) of a `pom.properties`.
fn maven_properties(text: &str) -> Option<(String, String)> {
    let mut g = None;
    let mut a = None;
    let mut v = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, val)) = line.split_once(['=', ':']) else {
            continue;
        };
        let val = val.trim().to_owned();
        match k.trim() {
            "groupId" => g = Some(val),
            "artifactId" => a = Some(val),
            "version" => v = Some(val),
            _ => {}
        }
    }
    let (g, a, v) = (g?, a?, v?);
    (!g.is_empty() && !a.is_empty() && !v.is_empty()).then(|| (format!("{g}:{a}"), v))
}

fn os_release_id(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("ID=")?;
        let v = v.trim().trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

/// RFC 822-style paragraphs (dpkg, apk with `sep` `:`): field -> value
/// (continuation lines dropped; only the first line of a field is kept).
fn paragraphs(text: &str, sep: char) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((k, v)) = line.split_once(sep) {
            cur.entry(k.trim().to_owned())
                .or_insert_with(|| v.trim().to_owned());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// (name, version) of every package a package-lock.json (v1, v2 or v3)
/// lists, without the root project.
fn npm_lock(bytes: &[u8]) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    if let Some(pkgs) = v.get("packages").and_then(Value::as_object) {
        for (path, p) in pkgs {
            let Some(i) = path.rfind("node_modules/") else {
                continue;
            };
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&path[i + "node_modules/".len()..]);
            if let Some(ver) = p.get("version").and_then(Value::as_str) {
                out.insert((name.to_owned(), ver.to_owned()));
            }
        }
    } else if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
        let mut stack: Vec<&serde_json::Map<String, Value>> = vec![deps];
        while let Some(d) = stack.pop() {
            for (name, p) in d {
                if let Some(ver) = p.get("version").and_then(Value::as_str) {
                    out.insert((name.clone(), ver.to_owned()));
                }
                if let Some(sub) = p.get("dependencies").and_then(Value::as_object) {
                    stack.push(sub);
                }
            }
        }
    }
    out.into_iter().collect()
}

/// (name, version) of every `[[package]]` of a Cargo.lock.
fn cargo_lock(text: &str) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<Pkg>,
    }
    #[derive(serde::Deserialize)]
    struct Pkg {
        name: String,
        version: String,
    }
    toml::from_str::<Lock>(text)
        .map(|l| l.package.into_iter().map(|p| (p.name, p.version)).collect())
        .unwrap_or_default()
}

/// What an SBOM describes.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The image as the user named it.
    pub name: String,
    /// Its manifest digest (`sha256:...`).
    pub manifest_digest: String,
    /// Seconds since the epoch: the document's creation time (the image's
    /// `created`, which follows SOURCE_DATE_EPOCH, so it is reproducible).
    pub created: i64,
    /// strata's version.
    pub tool_version: String,
}

/// Where a package came from, in words: `layer 3 (sha256:...) Dockerfile line 5: RUN ...`.
fn origin(p: &Package, layers: &[LayerMeta]) -> String {
    let mut s = format!("installed by layer {}", p.layer);
    if let Some(m) = layers.get(p.layer) {
        s.push_str(&format!(" ({})", m.diff_id));
        if let Some(l) = m.line {
            s.push_str(&format!(", Dockerfile line {l}"));
        }
        if let Some(c) = &m.created_by {
            s.push_str(&format!(": {c}"));
        }
    }
    s.push_str(&format!("; listed in /{}", p.source));
    s
}

/// SPDX 2.3 JSON: the image as a `CONTAINER` package the document
/// describes, containing one package per [`Package`] (purl external
/// reference; the layer and Dockerfile line in `sourceInfo`).
pub fn render_spdx(subject: &Subject, packages: &[Package], layers: &[LayerMeta]) -> Vec<u8> {
    let created = strata_oci::format_rfc3339(subject.created);
    let mut pkgs = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": subject.name,
        "versionInfo": subject.manifest_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut rels = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", p.ecosystem.purl_type());
        pkgs.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": origin(p, layers),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl(),
            }],
        }));
        rels.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let hex = subject
        .manifest_digest
        .rsplit(':')
        .next()
        .unwrap_or_default();
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.name,
        "documentNamespace": format!("https://strata.invalid/spdx/sha256/{hex}"),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: strata-{}", subject.tool_version)],
        },
        "packages": pkgs,
        "relationships": rels,
    });
    to_bytes(&doc)
}

/// CycloneDX 1.5 JSON: the image as the `container` metadata component,
/// one `library` component per [`Package`] (purl), with `strata:layer`,
/// `strata:layer.diffID`, `strata:dockerfile.line` and
/// `strata:created_by` properties.
pub fn render_cyclonedx(subject: &Subject, packages: &[Package], layers: &[LayerMeta]) -> Vec<u8> {
    let hex = subject
        .manifest_digest
        .rsplit(':')
        .next()
        .unwrap_or_default();
    // A stable serial number: the manifest digest's first 128 bits as a UUID.
    let h = format!("{hex:0<32}");
    let serial = format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    let components: Vec<Value> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut props = vec![
                json!({"name": "strata:layer", "value": p.layer.to_string()}),
                json!({"name": "strata:source", "value": format!("/{}", p.source)}),
            ];
            if let Some(m) = layers.get(p.layer) {
                props.push(json!({"name": "strata:layer.diffID", "value": m.diff_id}));
                if let Some(l) = m.line {
                    props.push(json!({"name": "strata:dockerfile.line", "value": l.to_string()}));
                }
                if let Some(c) = &m.created_by {
                    props.push(json!({"name": "strata:created_by", "value": c}));
                }
            }
            json!({
                "type": "library",
                "bom-ref": format!("pkg-{i}"),
                "name": p.name,
                "version": p.version,
                "purl": p.purl(),
                "properties": props,
            })
        })
        .collect();
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": strata_oci::format_rfc3339(subject.created),
            "tools": {"components": [{
                "type": "application",
                "name": "strata",
                "version": subject.tool_version,
            }]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": subject.name,
                "version": subject.manifest_digest,
            },
        },
        "components": components,
    });
    to_bytes(&doc)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, c) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(c.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, *c)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        b.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    fn scan(layers: Vec<Vec<u8>>) -> Vec<Package> {
        let n = layers.len();
        let mut open = |i: usize| -> io::Result<Box<dyn Read>> {
            Ok(Box::new(io::Cursor::new(layers[i].clone())))
        };
        scan_packages(n, &mut open).unwrap_or_else(|e| panic!("{e}"))
    }

    const STATUS1: &[u8] = b"Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
    const STATUS2: &[u8] = b"Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\n\nPackage: curl\nStatus: install ok installed\nVersion: 7.88.1-10+deb12u5\nArchitecture: amd64\n";

    #[test]
    fn maven_artifacts_from_pom_properties_and_jars() {
        let jar = jar::tests::zip(&[(
            "META-INF/maven/org.slf4j/slf4j-api/pom.properties",
            b"groupId=org.slf4j\nartifactId=slf4j-api\nversion=2.0.9\n",
            true,
        )]);
        let pkgs = scan(vec![
            tar_of(&[
                (
                    "app/classes/META-INF/maven/com.example/app/pom.properties",
                    b"#Generated by Maven\ngroupId=com.example\nartifactId=app\nversion=1.2\n",
                ),
                ("app/lib/slf4j-api-2.0.9.jar", &jar),
                ("app/lib/plain.jar", &jar::tests::zip(&[("x", b"y", false)])),
            ]),
            tar_of(&[("app/lib/.wh.slf4j-api-2.0.9.jar", b"")]),
        ]);
        let got: Vec<(String, String, usize)> = pkgs
            .iter()
            .map(|p| (p.purl(), p.source.clone(), p.layer))
            .collect();
        assert_eq!(
            got,
            vec![(
                "pkg:maven/com.example/app@1.2".into(),
                "app/classes/META-INF/maven/com.example/app/pom.properties".into(),
                0
            )]
        );
        // Before the whiteout, the jar's artifact was there too.
        let pkgs = scan(vec![tar_of(&[("app/lib/slf4j-api-2.0.9.jar", &jar)])]);
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].purl(), "pkg:maven/org.slf4j/slf4j-api@2.0.9");
        assert_eq!(pkgs[0].name, "org.slf4j:slf4j-api");
    }

    #[test]
    fn packages_belong_to_the_layer_that_installed_them() {
        let pkgs = scan(vec![
            tar_of(&[
                ("etc/os-release", b"ID=debian\n"),
                ("var/lib/dpkg/status", STATUS1),
            ]),
            tar_of(&[
                ("var/lib/dpkg/status", STATUS2),
                ("app/venv/lib/python3.11/site-packages/Flask-3.0.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.0\n\nbody: x\n"),
                ("app/package-lock.json", br#"{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/@types/node":{"version":"20.1.0"},"node_modules/left-pad":{"version":"1.3.0"}}}"#),
                ("app/node_modules/x/package-lock.json", br#"{"lockfileVersion":3,"packages":{"node_modules/ignored":{"version":"1"}}}"#),
            ]),
            tar_of(&[
                ("src/Cargo.lock", b"version = 3\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.0\"\n"),
                ("app/.wh.package-lock.json", b""),
            ]),
        ]);
        let got: Vec<(String, String, usize)> = pkgs
            .iter()
            .map(|p| (p.purl(), p.source.clone(), p.layer))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "pkg:deb/debian/base-files@12.4?arch=amd64".into(),
                    "var/lib/dpkg/status".into(),
                    0
                ),
                (
                    "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u5?arch=amd64".into(),
                    "var/lib/dpkg/status".into(),
                    1
                ),
                (
                    "pkg:pypi/flask@3.0.0".into(),
                    "app/venv/lib/python3.11/site-packages/Flask-3.0.0.dist-info/METADATA".into(),
                    1
                ),
                ("pkg:cargo/serde@1.0.0".into(), "src/Cargo.lock".into(), 2),
            ]
        );
    }

    #[test]
    fn apk_status_d_and_opaque_dirs() {
        let pkgs = scan(vec![
            tar_of(&[
                ("lib/apk/db/installed", b"C:Q1x\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n"),
                ("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a-0\nArchitecture: all\n"),
                ("var/lib/dpkg/status.d/tzdata.md5sums", b"x"),
            ]),
            tar_of(&[("var/lib/dpkg/status.d/.wh..wh..opq", b"")]),
        ]);
        let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["busybox", "musl"]);
        assert!(pkgs[0]
            .purl()
            .starts_with("pkg:apk/alpine/busybox@1.36.1-r5"));
    }

    #[test]
    fn documents_are_stable_and_carry_the_attribution() {
        let pkgs = vec![Package {
            ecosystem: Ecosystem::Npm,
            name: "@types/node".into(),
            version: "20.1.0".into(),
            arch: None,
            distro: None,
            source: "app/package-lock.json".into(),
            layer: 1,
        }];
        let layers = vec![
            LayerMeta {
                digest: "sha256:a".into(),
                diff_id: "sha256:b".into(),
                compressed_size: 1,
                created_by: None,
                line: None,
            },
            LayerMeta {
                digest: "sha256:c".into(),
                diff_id: "sha256:d".into(),
                compressed_size: 1,
                created_by: Some("RUN npm ci".into()),
                line: Some(4),
            },
        ];
        let s = Subject {
            name: "app:1".into(),
            manifest_digest: format!("sha256:{}", "ab".repeat(32)),
            created: 86_400,
            tool_version: "0.1.0".into(),
        };
        let spdx = String::from_utf8(render_spdx(&s, &pkgs, &layers)).unwrap_or_default();
        assert!(spdx.contains("pkg:npm/%40types/node@20.1.0"), "{spdx}");
        assert!(spdx.contains("Dockerfile line 4: RUN npm ci"), "{spdx}");
        assert!(
            spdx.contains("\"created\": \"1970-01-02T00:00:00Z\""),
            "{spdx}"
        );
        let cdx = String::from_utf8(render_cyclonedx(&s, &pkgs, &layers)).unwrap_or_default();
        assert!(cdx.contains("\"strata:dockerfile.line\""), "{cdx}");
        assert!(
            cdx.contains("urn:uuid:abababab-abab-abab-abab-abababababab"),
            "{cdx}"
        );
        assert_eq!(render_cyclonedx(&s, &pkgs, &layers), cdx.into_bytes());
    }
}
