//! OCI image layout and docker-archive export and import.
//!
//! Export writes what docker 25+ `docker save` writes: `blobs/sha256/*`,
//! an OCI `index.json` and `oci-layout`, plus docker's `manifest.json` and
//! `repositories`, so one file is both a docker-archive and an OCI layout.
//! Blobs are copied as they are, so layers keep their digests.
//!
//! Import reads OCI layouts (directory or tar, including what skopeo's
//! `oci:` and `oci-archive:` write), docker 25+ archives (through their
//! index), and older docker-archives (`manifest.json` with `<id>/layer.tar`
//! or skopeo's `<digest>.tar` members, whose manifest strata creates). The
//! archive is read in one pass: every member is streamed into the store
//! (verified when its name is a digest) before the documents are
//! interpreted, so stdin works and memory stays bounded.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::image::sniff_media_type;
use crate::output::OutputFile;
use crate::store::write_atomic;
use crate::{
    media_type, Descriptor, Digest, Error, Image, Index, Manifest, Reference, Result, Store,
};

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An image to save and the names to record for it.
#[derive(Debug, Clone)]
pub struct SaveItem {
    /// The image.
    pub image: Image,
    /// Its names (may be empty).
    pub names: Vec<Reference>,
}

/// An image `load` stored.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The manifest or index it is stored as.
    pub descriptor: Descriptor,
    /// The names it was tagged with.
    pub names: Vec<Reference>,
    /// A bare `org.opencontainers.image.ref.name` (like `latest`) that was
    /// not a full reference, so the image was kept untagged.
    pub ref_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Blobs each image needs, in a stable order: manifest, config, layers.
fn image_blobs(img: &Image) -> Vec<Descriptor> {
    let mut v = vec![img.descriptor.clone(), img.manifest.config.clone()];
    v.extend(img.layers.iter().map(|l| l.descriptor.clone()));
    v
}

/// The document an archive names for an item, and the blobs it needs: with
/// `whole`, the image's index when it came through one and every manifest
/// it lists is stored (all platforms: an OCI layout); else the image's own
/// manifest (one platform: a docker-archive).
fn item_docs(store: &Store, it: &SaveItem, whole: bool) -> (Descriptor, Vec<Descriptor>) {
    let single = || (it.image.descriptor.clone(), image_blobs(&it.image));
    let Some(idx) = it.image.index.as_ref().filter(|_| whole) else {
        return single();
    };
    let Ok(index) = store
        .read_blob(&idx.digest)
        .map_err(|_| ())
        .and_then(|raw| serde_json::from_slice::<Index>(&raw).map_err(|_| ()))
    else {
        return single();
    };
    let mut blobs = vec![idx.clone()];
    for m in &index.manifests {
        let manifest = store
            .read_blob(&m.digest)
            .ok()
            .and_then(|raw| serde_json::from_slice::<Manifest>(&raw).ok());
        let Some(manifest) = manifest.filter(|_| media_type::is_manifest(&m.media_type)) else {
            return single();
        };
        let all = std::iter::once(m.clone())
            .chain(std::iter::once(manifest.config.clone()))
            .chain(manifest.layers.iter().cloned());
        for d in all {
            if !store.has(&d.digest) {
                return single();
            }
            blobs.push(d);
        }
    }
    let mut top = idx.clone();
    if top.media_type.is_empty() {
        top.media_type = media_type::OCI_INDEX.to_owned();
    }
    (top, blobs)
}

fn index_for(store: &Store, items: &[SaveItem], whole: bool) -> Index {
    let mut manifests = Vec::new();
    for it in items {
        let (top, _) = item_docs(store, it, whole);
        let base = Descriptor::new(top.media_type.clone(), top.digest.clone(), top.size);
        if it.names.is_empty() {
            manifests.push(base.clone());
        }
        for n in &it.names {
            let mut d = base.clone();
            d.annotations
                .insert(ANNOTATION_IMAGE_NAME.into(), n.to_string());
            if let Some(t) = n.tag() {
                d.annotations
                    .insert(ANNOTATION_REF_NAME.into(), t.to_owned());
            }
            manifests.push(d);
        }
    }
    Index::oci(manifests)
}

/// A deterministic tar of files (mtime 0, root-owned, 0644; dirs 0755).
struct TarOut<W: Write> {
    b: tar::Builder<W>,
}

impl<W: Write> TarOut<W> {
    fn new(w: W) -> Self {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Deterministic);
        TarOut { b }
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, name: &str) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0, 0o755);
        self.b.append_data(&mut h, name, io::empty())
    }

    fn file(&mut self, name: &str, size: u64, data: impl Read) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, size, 0o644);
        self.b.append_data(&mut h, name, data)
    }

    fn finish(self) -> io::Result<W> {
        self.b.into_inner()
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn write_blobs<W: Write>(
    store: &Store,
    items: &[SaveItem],
    whole: bool,
    t: &mut TarOut<W>,
) -> Result<()> {
    let io_err = |e: io::Error| Error::io("write archive", PathBuf::from("-"), e);
    t.dir("blobs/").map_err(io_err)?;
    let mut algs = std::collections::BTreeSet::new();
    let mut done = std::collections::HashSet::new();
    for it in items {
        for d in item_docs(store, it, whole).1 {
            let alg = d.digest.algorithm().as_str();
            if algs.insert(alg) {
                t.dir(&format!("blobs/{alg}/")).map_err(io_err)?;
            }
            if !done.insert(d.digest.clone()) {
                continue;
            }
            let f = store.open_blob(&d.digest)?;
            let size = f.metadata().ctx("stat", store.blob_path(&d.digest))?.len();
            t.file(&blob_name(&d.digest), size, BufReader::new(f))
                .map_err(io_err)?;
        }
    }
    Ok(())
}

/// Write a docker-archive (docker 25+ layout: also a valid OCI layout).
pub fn save_docker_archive<W: Write>(store: &Store, items: &[SaveItem], out: W) -> Result<W> {
    let io_err = |e: io::Error| Error::io("write archive", PathBuf::from("-"), e);
    let mut t = TarOut::new(out);
    write_blobs(store, items, false, &mut t)?;
    let index = index_for(store, items, false).to_json();
    t.file("index.json", index.len() as u64, &index[..])
        .map_err(io_err)?;
    let mut manifest = Vec::new();
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for it in items {
        let tags: Vec<String> = it
            .names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(|n| {
                Reference::new(&n.name(), n.tag(), None)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| n.familiar())
            })
            .collect();
        manifest.push(DockerManifestEntry {
            config: blob_name(&it.image.manifest.config.digest),
            repo_tags: Some(tags),
            layers: it
                .image
                .layers
                .iter()
                .map(|l| blob_name(&l.descriptor.digest))
                .collect(),
        });
        if let Some(top) = it.image.layers.last() {
            for n in &it.names {
                if let Some(tag) = n.tag() {
                    repos
                        .entry(n.familiar_name())
                        .or_default()
                        .insert(tag.to_owned(), top.descriptor.digest.hex().to_owned());
                }
            }
        }
    }
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    t.file("manifest.json", manifest.len() as u64, &manifest[..])
        .map_err(io_err)?;
    t.file("oci-layout", OCI_LAYOUT.len() as u64, OCI_LAYOUT)
        .map_err(io_err)?;
    let repos = serde_json::to_vec(&repos).unwrap_or_default();
    t.file("repositories", repos.len() as u64, &repos[..])
        .map_err(io_err)?;
    let mut w = t.finish().map_err(io_err)?;
    w.flush().map_err(io_err)?;
    Ok(w)
}

/// Write an OCI image layout: a directory (merged with a layout already
/// there, entries with the same name replaced), or with `as_tar` a tar of one
/// written to `dest`.
pub fn save_oci_layout(store: &Store, items: &[SaveItem], dest: &Path, as_tar: bool) -> Result<()> {
    if as_tar {
        let out = OutputFile::create(dest)?;
        let io_err = |e: io::Error| Error::io("write", dest.to_owned(), e);
        let mut t = TarOut::new(io::BufWriter::new(out.file()));
        t.file("oci-layout", OCI_LAYOUT.len() as u64, OCI_LAYOUT)
            .map_err(io_err)?;
        let index = index_for(store, items, true).to_json();
        t.file("index.json", index.len() as u64, &index[..])
            .map_err(io_err)?;
        write_blobs(store, items, true, &mut t)?;
        let mut w = t.finish().map_err(io_err)?;
        w.flush().map_err(io_err)?;
        drop(w);
        return out.commit();
    }
    fs::create_dir_all(dest).ctx("create", dest)?;
    for it in items {
        for d in item_docs(store, it, true).1 {
            let target = dest.join(blob_name(&d.digest));
            if target.is_file() {
                continue;
            }
            let parent = target.parent().unwrap_or(dest).to_owned();
            fs::create_dir_all(&parent).ctx("create", &parent)?;
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&parent)
                .ctx("create temp file in", &parent)?;
            io::copy(&mut store.open_blob(&d.digest)?, &mut tmp).ctx("write", tmp.path())?;
            tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
            tmp.persist(&target)
                .map_err(|e| Error::io("rename", target.clone(), e.error))?;
        }
    }
    let mut index = index_for(store, items, true);
    let index_path = dest.join("index.json");
    if let Ok(old) = fs::read(&index_path) {
        let old: Index = serde_json::from_slice(&old)
            .map_err(|e| Error::invalid(format!("{}: {e}", index_path.display())))?;
        let new_names: Vec<Option<String>> = index
            .manifests
            .iter()
            .map(|d| d.annotations.get(ANNOTATION_REF_NAME).cloned())
            .collect();
        let mut merged: Vec<Descriptor> = old
            .manifests
            .into_iter()
            .filter(|d| match d.annotations.get(ANNOTATION_REF_NAME) {
                Some(n) => !new_names.contains(&Some(n.clone())),
                None => !index.manifests.iter().any(|m| m.digest == d.digest),
            })
            .collect();
        merged.extend(index.manifests);
        index.manifests = merged;
    }
    write_atomic(&dest.join("oci-layout"), OCI_LAYOUT)?;
    write_atomic(&index_path, &index.to_json())
}

/// Where the blobs of an archive being loaded come from.
enum Source<'a> {
    /// An OCI layout directory.
    Dir(&'a Path),
    /// Already streamed into the store.
    Stored,
}

fn copy_tree(store: &Store, src: &Source<'_>, desc: &Descriptor, depth: usize) -> Result<()> {
    if depth > 8 {
        return Err(Error::invalid("indexes nested too deep"));
    }
    if !store.has(&desc.digest) {
        match src {
            Source::Dir(dir) => {
                let p = dir.join(blob_name(&desc.digest));
                let f = File::open(&p).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => Error::NotFound {
                        what: format!("blob {} in {}", desc.digest, dir.display()),
                    },
                    _ => Error::io("open", p.clone(), e),
                })?;
                store.put_reader(BufReader::new(f), Some(desc))?;
            }
            Source::Stored => {
                return Err(Error::NotFound {
                    what: format!("blob {} in the archive", desc.digest),
                })
            }
        }
    }
    let mt = &desc.media_type;
    if !(media_type::is_manifest(mt) || media_type::is_index(mt)) {
        return Ok(());
    }
    let raw = store.read_blob(&desc.digest)?;
    if media_type::is_index(mt) {
        let idx: Index = serde_json::from_slice(&raw)
            .map_err(|e| Error::invalid(format!("index {}: {e}", desc.digest)))?;
        for m in &idx.manifests {
            // Children for other platforms may be missing from a layout.
            match copy_tree(store, src, m, depth + 1) {
                Ok(()) => {}
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    } else {
        let m: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| Error::invalid(format!("manifest {}: {e}", desc.digest)))?;
        copy_tree(store, src, &m.config, depth + 1)?;
        for l in &m.layers {
            copy_tree(store, src, l, depth + 1)?;
        }
    }
    Ok(())
}

/// Tag (or keep untagged) `desc` under the names an index entry gives it.
fn name_entry(
    store: &Store,
    desc: &Descriptor,
    fallback_names: &[Reference],
) -> Result<LoadedImage> {
    let mut names = Vec::new();
    let mut ref_name = None;
    if let Some(n) = desc.annotations.get(ANNOTATION_IMAGE_NAME) {
        if let Ok(r) = n.parse::<Reference>() {
            names.push(r);
        }
    }
    if names.is_empty() {
        if let Some(n) = desc.annotations.get(ANNOTATION_REF_NAME) {
            match n.parse::<Reference>() {
                Ok(r) if n.contains(['/', ':']) && r.tag().is_some() => names.push(r),
                _ => ref_name = Some(n.clone()),
            }
        }
    }
    if names.is_empty() {
        names.extend(fallback_names.iter().cloned());
    }
    let clean = Descriptor::new(desc.media_type.clone(), desc.digest.clone(), desc.size);
    if names.is_empty() {
        store.keep_untagged(&clean)?;
    }
    for n in &names {
        store.tag(n, &clean)?;
    }
    Ok(LoadedImage {
        descriptor: clean,
        names,
        ref_name,
    })
}

fn load_index(
    store: &Store,
    src: &Source<'_>,
    index_json: &[u8],
    names_by_config: &HashMap<Digest, Vec<Reference>>,
) -> Result<Vec<LoadedImage>> {
    let index: Index = serde_json::from_slice(index_json)
        .map_err(|e| Error::invalid(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for d in &index.manifests {
        let mut d = d.clone();
        if d.media_type.is_empty() {
            d.media_type = media_type::OCI_MANIFEST.into();
        }
        copy_tree(store, src, &d, 0)?;
        let fallback = if media_type::is_manifest(&d.media_type) {
            let img = store.image(&d, None)?;
            names_by_config.get(img.id()).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(name_entry(store, &d, &fallback)?);
    }
    Ok(out)
}

fn clean_member(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    let mut parts = Vec::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn is_document(name: &str) -> bool {
    matches!(
        name,
        "manifest.json" | "index.json" | "oci-layout" | "repositories"
    ) || name.ends_with("/json")
        || name.ends_with("/VERSION")
}

/// Load a docker-archive or OCI layout (directory, tar, gzip'd tar, or `-`
/// for standard input) into the store, tagging what it names.
pub fn load_archive(store: &Store, path: &Path) -> Result<Vec<LoadedImage>> {
    let _lease = store.lease("load")?;
    if path.is_dir() {
        let index = fs::read(path.join("index.json")).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::invalid(format!(
                "{} is a directory without index.json: not an OCI image layout",
                path.display()
            )),
            _ => Error::io("read", path.join("index.json"), e),
        })?;
        return load_index(store, &Source::Dir(path), &index, &HashMap::new());
    }
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).ctx("open", path)?)
    };
    let mut r = BufReader::with_capacity(256 * 1024, reader);
    let gzipped = r.fill_buf().ctx("read", path)?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    };
    let mut ar = tar::Archive::new(reader);
    let mut docs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut files: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let rd = |e: io::Error| Error::io("read archive", path.to_owned(), e);
    for entry in ar.entries().map_err(rd)? {
        let mut entry = entry.map_err(rd)?;
        let Some(name) = clean_member(&entry.path_bytes()) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name_bytes() {
                    let t = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                        clean_member(
                            base.join(Path::new(&*String::from_utf8_lossy(&target)))
                                .as_os_str()
                                .as_encoded_bytes(),
                        )
                    } else {
                        clean_member(&target)
                    };
                    if let Some(t) = t {
                        links.insert(name, t);
                    }
                }
                continue;
            }
            _ => continue,
        }
        let size = entry.size();
        if is_document(&name) {
            if size > crate::MAX_DOCUMENT_SIZE {
                return Err(Error::invalid(format!(
                    "{name} in the archive is too big ({size} bytes)"
                )));
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(rd)?;
            docs.insert(name, buf);
            continue;
        }
        // A blob named by its digest is verified on the way in.
        let expected = name
            .strip_prefix("blobs/")
            .and_then(|rest| rest.replacen('/', ":", 1).parse::<Digest>().ok())
            .map(|d| Descriptor::new("", d, size));
        let digest = store.put_reader(&mut entry, expected.as_ref())?;
        files.insert(name, (digest, size));
    }
    let resolve = |p: &str| -> Option<(Digest, u64)> {
        let mut p = clean_member(p.as_bytes())?;
        for _ in 0..16 {
            if let Some(f) = files.get(&p) {
                return Some(f.clone());
            }
            p = links.get(&p)?.clone();
        }
        None
    };
    // Names from docker's manifest.json, by config digest.
    let docker_manifest: Option<Vec<DockerManifestEntry>> = match docs.get("manifest.json") {
        Some(b) => Some(
            serde_json::from_slice(b).map_err(|e| Error::invalid(format!("manifest.json: {e}")))?,
        ),
        None => None,
    };
    let mut names_by_config: HashMap<Digest, Vec<Reference>> = HashMap::new();
    if let Some(entries) = &docker_manifest {
        for e in entries {
            let Some((cd, _)) = resolve(&e.config) else {
                continue;
            };
            let names = e
                .repo_tags
                .iter()
                .flatten()
                .map(|t| {
                    t.parse::<Reference>().map_err(|err| {
                        Error::invalid(format!("manifest.json: RepoTags {t:?}: {err}"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            names_by_config.entry(cd).or_default().extend(names);
        }
    }
    if let Some(index) = docs.get("index.json") {
        return load_index(store, &Source::Stored, index, &names_by_config);
    }
    let Some(entries) = docker_manifest else {
        return Err(Error::invalid(format!(
            "{}: neither a docker-archive (no manifest.json) nor an OCI layout (no index.json)",
            path.display()
        )));
    };
    let mut out = Vec::new();
    for e in entries {
        let (cd, csize) = resolve(&e.config).ok_or_else(|| {
            Error::invalid(format!(
                "manifest.json: config {} is not in the archive",
                e.config
            ))
        })?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (ld, lsize) = resolve(l).ok_or_else(|| {
                Error::invalid(format!("manifest.json: layer {l} is not in the archive"))
            })?;
            let mut head = [0u8; 4];
            let n = store
                .open_blob(&ld)?
                .read(&mut head)
                .ctx("read", store.blob_path(&ld))?;
            let mt = if head[..n].starts_with(&[0x1f, 0x8b]) {
                media_type::OCI_LAYER_GZIP
            } else if head[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
                media_type::OCI_LAYER_ZSTD
            } else {
                media_type::OCI_LAYER_TAR
            };
            layers.push(Descriptor::new(mt, ld, lsize));
        }
        let config_raw = store.read_blob(&cd)?;
        let config_mt = match sniff_media_type(&config_raw) {
            Some(m) if m == media_type::DOCKER_CONFIG => media_type::DOCKER_CONFIG,
            _ => media_type::OCI_CONFIG,
        };
        let manifest = Manifest::oci(Descriptor::new(config_mt, cd.clone(), csize), layers);
        let desc = store.put_json(media_type::OCI_MANIFEST, &manifest.to_json())?;
        // Check it resolves (diff_ids match layers) before naming it.
        store.image(&desc, None)?;
        let names = names_by_config.get(&cd).cloned().unwrap_or_default();
        out.push(name_entry(store, &desc, &names)?);
    }
    Ok(out)
}
