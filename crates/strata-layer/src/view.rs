//! A read-only merged view of a stack of layers (top first), in user
//! space: what the union mount would show, without mounting anything. The
//! builder uses it to look at a stage's file system (COPY destinations,
//! `--from` sources, /etc/passwd for `--chown` and USER) and to resolve
//! symlinks inside the root, never outside it.
//!
//! A layer of the view is either a snapshot directory (overlay format:
//! whiteouts as 0/0 devices, opaque directories by xattr) or a layer not
//! extracted yet, known by its [`LayerIndex`]. Looking at metadata never
//! extracts anything; reading a file's bytes ([`MergedView::lookup_exact`],
//! [`MergedView::read_small`]) extracts the one layer that holds it.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use strata_oci::Layer;

use crate::index::Lookup;
use crate::{LayerIndex, Meta, Snapshotter};

/// Where a path of the merged view really is.
#[derive(Debug, Clone)]
pub struct Found {
    /// The file in its snapshot directory.
    pub real: PathBuf,
    /// Its metadata (not following symlinks).
    pub meta: Meta,
}

/// One layer of a [`MergedView`].
#[derive(Debug, Clone)]
pub struct ViewLayer(Inner);

#[derive(Debug, Clone)]
enum Inner {
    Dir(PathBuf),
    Lazy(Arc<Lazy>),
}

/// A layer extracted on first need.
#[derive(Debug)]
struct Lazy {
    snap: Snapshotter,
    layer: Layer,
    /// `None` inside: the layer cannot be indexed (it is extracted instead).
    index: OnceLock<Option<Arc<LayerIndex>>>,
    dir: OnceLock<PathBuf>,
}

impl ViewLayer {
    /// A snapshot directory.
    pub fn dir(path: impl Into<PathBuf>) -> ViewLayer {
        ViewLayer(Inner::Dir(path.into()))
    }

    /// `layer` of `snap`'s store: its snapshot directory when it is
    /// extracted, else its index until a file's bytes are read.
    pub fn layer(snap: &Snapshotter, layer: &Layer) -> ViewLayer {
        if snap.exists(&layer.diff_id) {
            return ViewLayer::dir(snap.path(&layer.diff_id));
        }
        ViewLayer(Inner::Lazy(Arc::new(Lazy {
            snap: snap.clone(),
            layer: layer.clone(),
            index: OnceLock::new(),
            dir: OnceLock::new(),
        })))
    }

    /// The snapshot directory, extracting the layer if it is not yet.
    pub fn materialize(&self) -> io::Result<PathBuf> {
        match &self.0 {
            Inner::Dir(p) => Ok(p.clone()),
            Inner::Lazy(l) => l.dir(),
        }
    }

    /// Whether the layer's snapshot directory exists.
    pub fn is_extracted(&self) -> bool {
        match &self.0 {
            Inner::Dir(_) => true,
            Inner::Lazy(l) => l.dir.get().is_some() || l.snap.exists(&l.layer.diff_id),
        }
    }
}

impl From<PathBuf> for ViewLayer {
    fn from(p: PathBuf) -> ViewLayer {
        ViewLayer::dir(p)
    }
}

impl Lazy {
    fn dir(&self) -> io::Result<PathBuf> {
        if let Some(d) = self.dir.get() {
            return Ok(d.clone());
        }
        let d = self
            .snap
            .ensure_layer(&self.layer)
            .map_err(io::Error::other)?;
        Ok(self.dir.get_or_init(|| d).clone())
    }

    fn index(&self) -> io::Result<Option<&Arc<LayerIndex>>> {
        if let Some(i) = self.index.get() {
            return Ok(i.as_ref());
        }
        let i = self.snap.index(&self.layer).map_err(io::Error::other)?;
        Ok(self.index.get_or_init(|| i).as_ref())
    }
}

/// A stack of layers seen as one file system.
#[derive(Debug, Clone, Default)]
pub struct MergedView {
    /// Top layer first.
    layers: Vec<ViewLayer>,
}

/// Whether `meta` is an overlay whiteout (a 0/0 character device).
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    crate::diff::OPAQUE_XATTRS.iter().any(|x| {
        matches!(
            crate::writer::get_xattr(dir, x).ok().flatten().as_deref(),
            Some(b"y")
        )
    })
}

/// Normal components of a root-relative path (`/a/./b/` -> `[a, b]`);
/// `..` is resolved lexically and never climbs above the root.
pub fn clean_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// What one layer has at a path.
enum Probe {
    Missing,
    Whiteout,
    Dir(Meta, bool),
    Leaf(Meta),
}

/// A directory of one layer.
enum Listing {
    /// The layer has nothing there.
    Absent,
    /// A non-directory (or whiteout) on the way hides the layers below.
    Hidden,
    /// Its names (whiteouts flagged) and whether it is opaque.
    Dir {
        names: Vec<(String, bool)>,
        opaque: bool,
    },
}

/// Where a path was found: its metadata and the layer holding it.
struct Hit<'a> {
    meta: Meta,
    layer: &'a ViewLayer,
}

fn probe_dir(dir: &Path, comps: &[String], opaque: bool) -> Probe {
    let mut p = dir.to_path_buf();
    p.extend(comps);
    let Ok(m) = fs::symlink_metadata(&p) else {
        return Probe::Missing;
    };
    if is_whiteout(&m) {
        return Probe::Whiteout;
    }
    if m.is_dir() {
        let o = opaque && is_opaque(&p);
        return Probe::Dir(Meta::from_std(&m, None), o);
    }
    Probe::Leaf(Meta::from_std(&m, None))
}

fn probe_index(index: &LayerIndex, comps: &[String]) -> Probe {
    match index.lookup(comps) {
        None => Probe::Missing,
        Some(Lookup::Whiteout) => Probe::Whiteout,
        Some(Lookup::Dir(m, o)) => Probe::Dir(m.clone(), o),
        Some(Lookup::Leaf(m)) => Probe::Leaf(m.clone()),
    }
}

impl ViewLayer {
    /// What this layer alone has at `comps` (`opaque`: find out whether a
    /// directory there is opaque).
    fn probe(&self, comps: &[String], opaque: bool) -> io::Result<Probe> {
        match &self.0 {
            Inner::Dir(d) => Ok(probe_dir(d, comps, opaque)),
            Inner::Lazy(l) => {
                if let Some(d) = l.dir.get() {
                    return Ok(probe_dir(d, comps, opaque));
                }
                match l.index()? {
                    Some(i) => Ok(probe_index(i, comps)),
                    None => Ok(probe_dir(&l.dir()?, comps, opaque)),
                }
            }
        }
    }

    /// The names in directory `comps` of this layer alone.
    fn children(&self, comps: &[String]) -> io::Result<Listing> {
        let dir = match &self.0 {
            Inner::Dir(d) => Some(d.clone()),
            Inner::Lazy(l) => match l.dir.get() {
                Some(d) => Some(d.clone()),
                None => match l.index()? {
                    Some(i) => {
                        for n in 1..=comps.len() {
                            match i.lookup(&comps[..n]) {
                                None => return Ok(Listing::Absent),
                                Some(Lookup::Dir(..)) => {}
                                Some(_) => return Ok(Listing::Hidden),
                            }
                        }
                        let opaque = matches!(i.lookup(comps), Some(Lookup::Dir(_, true)));
                        return Ok(match i.children(comps) {
                            Some(names) => Listing::Dir { names, opaque },
                            None => Listing::Absent,
                        });
                    }
                    None => Some(l.dir()?),
                },
            },
        };
        let Some(mut dir) = dir else {
            return Ok(Listing::Absent);
        };
        for c in comps {
            dir.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Listing::Hidden),
                Err(_) => return Ok(Listing::Absent),
            }
        }
        let mut names = Vec::new();
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let wh = e.metadata().map(|m| is_whiteout(&m)).unwrap_or(false);
                names.push((e.file_name().to_string_lossy().into_owned(), wh));
            }
        }
        Ok(Listing::Dir {
            names,
            opaque: is_opaque(&dir),
        })
    }
}

impl MergedView {
    /// A view of snapshot directories, top first.
    pub fn new(layers: Vec<PathBuf>) -> MergedView {
        MergedView {
            layers: layers.into_iter().map(ViewLayer::dir).collect(),
        }
    }

    /// A view of `layers`, top first.
    pub fn of(layers: Vec<ViewLayer>) -> MergedView {
        MergedView { layers }
    }

    /// The layers, top first.
    pub fn layers(&self) -> &[ViewLayer] {
        &self.layers
    }

    /// Finds `comps` without following any symlink.
    fn find(&self, comps: &[String]) -> io::Result<Option<Hit<'_>>> {
        if comps.is_empty() {
            let Some(top) = self.layers.first() else {
                return Ok(None);
            };
            return Ok(match top.probe(comps, false)? {
                Probe::Dir(meta, _) | Probe::Leaf(meta) => Some(Hit { meta, layer: top }),
                _ => None,
            });
        }
        'layers: for layer in &self.layers {
            let mut opaque_here = false;
            for i in 0..comps.len() {
                let last = i + 1 == comps.len();
                match layer.probe(&comps[..=i], !last)? {
                    Probe::Missing => {
                        if opaque_here {
                            return Ok(None);
                        }
                        continue 'layers;
                    }
                    Probe::Whiteout => return Ok(None),
                    Probe::Dir(meta, opaque) => {
                        if last {
                            return Ok(Some(Hit { meta, layer }));
                        }
                        opaque_here |= opaque;
                    }
                    Probe::Leaf(meta) => {
                        // A file here hides whatever lower layers have below it.
                        return Ok(last.then_some(Hit { meta, layer }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The metadata of `comps` (no symlink followed); `None` when the path
    /// does not exist in the merged view. Never extracts a layer.
    pub fn stat_exact(&self, comps: &[String]) -> io::Result<Option<Meta>> {
        Ok(self.find(comps)?.map(|h| h.meta))
    }

    /// Looks `comps` up without following any symlink, with the file's
    /// place on disk (the layer holding it is extracted if it is not yet).
    /// `None` when the path does not exist in the merged view.
    pub fn lookup_exact(&self, comps: &[String]) -> io::Result<Option<Found>> {
        let Some(hit) = self.find(comps)? else {
            return Ok(None);
        };
        let mut real = hit.layer.materialize()?;
        real.extend(comps);
        let meta = match hit.meta.is_symlink() {
            // Give the target, as an index does.
            true => Meta::from_std(&fs::symlink_metadata(&real)?, Some(fs::read_link(&real)?)),
            false => hit.meta,
        };
        Ok(Some(Found { real, meta }))
    }

    /// A symlink's target (never extracting an indexed layer).
    fn link_target(&self, comps: &[String], hit: &Hit<'_>) -> io::Result<PathBuf> {
        if let Some(t) = hit.meta.link_target() {
            return Ok(t.to_path_buf());
        }
        let mut real = hit.layer.materialize()?;
        real.extend(comps);
        fs::read_link(real)
    }

    /// Resolves `path` (absolute in the root, or relative to `/`) following
    /// symlinks inside the root (absolute targets restart at the root, `..`
    /// stops at the root), like Docker's FollowSymlinkInScope. The last
    /// component is followed only when `follow_last`. Returns the resolved
    /// components; the path need not exist (missing components are kept).
    pub fn resolve(&self, path: &str, follow_last: bool) -> io::Result<Vec<String>> {
        let mut todo: Vec<String> = clean_components(path);
        todo.reverse();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            let last = todo.is_empty();
            if last && !follow_last {
                break;
            }
            let Some(hit) = self.find(&done)? else {
                continue;
            };
            if !hit.meta.is_symlink() {
                continue;
            }
            hops += 1;
            if hops > 40 {
                return Err(io::Error::other(format!(
                    "too many levels of symbolic links resolving {path}"
                )));
            }
            let target = self.link_target(&done, &hit)?;
            done.pop();
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                done.clear();
            }
            // Push the target's components in front of what is left.
            let mut parts: Vec<String> = target
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_owned)
                .collect();
            parts.reverse();
            todo.extend(parts);
        }
        Ok(done)
    }

    /// Looks `path` up following symlinks in the root (extracting the layer
    /// that holds it, see [`MergedView::lookup_exact`]).
    pub fn lookup(&self, path: &str) -> io::Result<Option<(Vec<String>, Found)>> {
        let comps = self.resolve(path, true)?;
        Ok(self.lookup_exact(&comps)?.map(|f| (comps, f)))
    }

    /// The metadata of `path`, following symlinks in the root; never
    /// extracts a layer.
    pub fn stat(&self, path: &str) -> io::Result<Option<(Vec<String>, Meta)>> {
        let comps = self.resolve(path, true)?;
        Ok(self.stat_exact(&comps)?.map(|m| (comps, m)))
    }

    /// The names in the directory `comps` (exact, no symlinks followed), as
    /// the union shows them, sorted.
    pub fn read_dir(&self, comps: &[String]) -> io::Result<Vec<String>> {
        let mut names = std::collections::BTreeMap::<String, bool>::new(); // name -> visible
        for layer in &self.layers {
            let (children, opaque) = match layer.children(comps)? {
                Listing::Absent => continue,
                // A non-directory hides lower layers entirely.
                Listing::Hidden => return Ok(visible(names)),
                Listing::Dir { names, opaque } => (names, opaque),
            };
            for (name, wh) in children {
                names.entry(name).or_insert(!wh);
            }
            if opaque {
                break;
            }
        }
        Ok(visible(names))
    }

    /// Reads a whole small file (like /etc/passwd) through the view.
    pub fn read_small(&self, path: &str) -> Option<String> {
        let (_, found) = self.lookup(path).ok()??;
        if !found.meta.is_file() || found.meta.len() > 16 << 20 {
            return None;
        }
        fs::read_to_string(found.real).ok()
    }
}

fn visible(names: std::collections::BTreeMap<String, bool>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|(n, v)| v.then_some(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn comps(s: &str) -> Vec<String> {
        clean_components(s)
    }

    #[test]
    fn clean() {
        assert_eq!(comps("/a/./b//c/"), ["a", "b", "c"]);
        assert_eq!(comps("../../a/../b"), ["b"]);
        assert!(comps("/").is_empty());
    }

    #[test]
    fn upper_layers_win_and_dirs_merge() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(lower.path().join("etc")).unwrap();
        fs::write(lower.path().join("etc/a"), "lower").unwrap();
        fs::write(lower.path().join("etc/b"), "lower").unwrap();
        fs::create_dir_all(upper.path().join("etc")).unwrap();
        fs::write(upper.path().join("etc/a"), "upper").unwrap();
        fs::write(upper.path().join("etc/c"), "upper").unwrap();
        let v = MergedView::new(vec![upper.path().into(), lower.path().into()]);
        assert_eq!(v.read_small("/etc/a").unwrap(), "upper");
        assert_eq!(v.read_small("etc/b").unwrap(), "lower");
        assert_eq!(v.read_dir(&comps("etc")).unwrap(), ["a", "b", "c"]);
        assert!(v.lookup_exact(&comps("etc/missing")).unwrap().is_none());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let l = tempfile::tempdir().unwrap();
        fs::create_dir_all(l.path().join("usr/bin")).unwrap();
        fs::write(l.path().join("usr/bin/tool"), "x").unwrap();
        symlink("usr/bin", l.path().join("bin")).unwrap();
        symlink("/../../../../etc", l.path().join("escape")).unwrap();
        symlink("loop2", l.path().join("loop1")).unwrap();
        symlink("loop1", l.path().join("loop2")).unwrap();
        let v = MergedView::new(vec![l.path().into()]);
        assert_eq!(
            v.resolve("/bin/tool", true).unwrap(),
            ["usr", "bin", "tool"]
        );
        assert_eq!(v.resolve("/bin", false).unwrap(), ["bin"]);
        // An absolute target with .. stays in the root.
        assert_eq!(
            v.resolve("/escape/passwd", true).unwrap(),
            ["etc", "passwd"]
        );
        assert!(v.resolve("/loop1/x", true).is_err());
        assert_eq!(v.read_small("/bin/tool").unwrap(), "x");
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_content() {
        if !strata_testkit::require_root() {
            return;
        }
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(lower.path().join("d")).unwrap();
        fs::write(lower.path().join("d/old"), "").unwrap();
        fs::write(lower.path().join("gone"), "").unwrap();
        fs::create_dir_all(lower.path().join("o")).unwrap();
        fs::write(lower.path().join("o/hidden"), "").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.path().join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        fs::create_dir_all(upper.path().join("o")).unwrap();
        fs::write(upper.path().join("o/new"), "").unwrap();
        rustix::fs::lsetxattr(
            upper.path().join("o"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let v = MergedView::new(vec![upper.path().into(), lower.path().into()]);
        assert!(v.lookup_exact(&comps("gone")).unwrap().is_none());
        assert!(v.lookup_exact(&comps("o/hidden")).unwrap().is_none());
        assert!(v.lookup_exact(&comps("o/new")).unwrap().is_some());
        assert!(v.lookup_exact(&comps("d/old")).unwrap().is_some());
        assert_eq!(v.read_dir(&[]).unwrap(), ["d", "o"]);
        assert_eq!(v.read_dir(&comps("o")).unwrap(), ["new"]);
    }
}
