//! A read-only merged view of a stack of layer snapshots (overlay-format
//! directories, top first), in user space: what the union mount would show,
//! without mounting anything. The builder uses it to look at a stage's file
//! system (COPY destinations, `--from` sources, /etc/passwd for `--chown`
//! and USER) and to resolve symlinks inside the root, never outside it.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Where a path of the merged view really is.
#[derive(Debug, Clone)]
pub struct Found {
    /// The file in its snapshot directory.
    pub real: PathBuf,
    /// Its metadata (not following symlinks).
    pub meta: Metadata,
}

/// A stack of snapshot directories seen as one file system.
#[derive(Debug, Clone, Default)]
pub struct MergedView {
    /// Top layer first.
    layers: Vec<PathBuf>,
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

impl MergedView {
    /// A view of `layers`, top first.
    pub fn new(layers: Vec<PathBuf>) -> MergedView {
        MergedView { layers }
    }

    /// The snapshot directories, top first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Looks `comps` up without following any symlink. `None` when the path
    /// does not exist in the merged view.
    pub fn lookup_exact(&self, comps: &[String]) -> Option<Found> {
        if comps.is_empty() {
            let top = self.layers.first()?;
            return fs::symlink_metadata(top).ok().map(|meta| Found {
                real: top.clone(),
                meta,
            });
        }
        'layers: for layer in &self.layers {
            let mut dir = layer.clone();
            let mut opaque_here = false;
            for (i, c) in comps.iter().enumerate() {
                let p = dir.join(c);
                let meta = match fs::symlink_metadata(&p) {
                    Ok(m) => m,
                    Err(_) => {
                        if opaque_here {
                            return None;
                        }
                        continue 'layers;
                    }
                };
                if is_whiteout(&meta) {
                    return None;
                }
                if i + 1 == comps.len() {
                    return Some(Found { real: p, meta });
                }
                if !meta.is_dir() {
                    // A file here hides whatever lower layers have below it.
                    return None;
                }
                if is_opaque(&p) {
                    opaque_here = true;
                }
                dir = p;
            }
        }
        None
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
            let Some(found) = self.lookup_exact(&done) else {
                continue;
            };
            if !found.meta.file_type().is_symlink() {
                continue;
            }
            hops += 1;
            if hops > 40 {
                return Err(io::Error::other(format!(
                    "too many levels of symbolic links resolving {path}"
                )));
            }
            let target = fs::read_link(&found.real)?;
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

    /// Looks `path` up following symlinks in the root.
    pub fn lookup(&self, path: &str) -> io::Result<Option<(Vec<String>, Found)>> {
        let comps = self.resolve(path, true)?;
        Ok(self.lookup_exact(&comps).map(|f| (comps, f)))
    }

    /// The names in the directory `comps` (exact, no symlinks followed), as
    /// the union shows them, sorted.
    pub fn read_dir(&self, comps: &[String]) -> Vec<String> {
        let mut names = std::collections::BTreeMap::<String, bool>::new(); // name -> visible
        for layer in &self.layers {
            let mut dir = layer.clone();
            let mut exists = true;
            for c in comps {
                dir.push(c);
                match fs::symlink_metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    // A non-directory hides lower layers entirely.
                    Ok(_) => return visible(names),
                    Err(_) => {
                        exists = false;
                        break;
                    }
                }
            }
            if !exists {
                continue;
            }
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if names.contains_key(&name) {
                        continue;
                    }
                    let wh = e.metadata().map(|m| is_whiteout(&m)).unwrap_or(false);
                    names.insert(name, !wh);
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        visible(names)
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
        assert_eq!(v.read_dir(&comps("etc")), ["a", "b", "c"]);
        assert!(v.lookup_exact(&comps("etc/missing")).is_none());
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
        assert!(v.lookup_exact(&comps("gone")).is_none());
        assert!(v.lookup_exact(&comps("o/hidden")).is_none());
        assert!(v.lookup_exact(&comps("o/new")).is_some());
        assert!(v.lookup_exact(&comps("d/old")).is_some());
        assert_eq!(v.read_dir(&[]), ["d", "o"]);
        assert_eq!(v.read_dir(&comps("o")), ["new"]);
    }
}
