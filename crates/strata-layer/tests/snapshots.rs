//! Snapshots, overlay upper -> layer, and the copy + diff fallback giving the
//! same layer bytes as the overlay path.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use common::describe_tree;
use strata_layer::{
    apply_layer, diff_dirs, upper_to_entries_against, write_layer, write_layer_to_store, ApplyMode,
    LayerOptions, LayerSource, MergedView, Snapshotter, Timestamps,
};
use strata_oci::{Compression, Layer, Store};

fn opts() -> LayerOptions {
    LayerOptions {
        compression: Compression::Gzip,
        level: None,
        timestamps: Timestamps::Epoch(0),
        xattrs: true,
        foreign_times: Default::default(),
        tap: None,
    }
}

fn base_tree(root: &Path) {
    for d in [
        "etc",
        "var/lib/app",
        "gone-dir/sub",
        "srv",
        "quiet",
        "replaced",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("quiet/stays"), b"s").unwrap();
    fs::write(root.join("replaced/old"), b"o").unwrap();
    for f in ["touch-me", "chown-same", "opened"] {
        fs::write(root.join("etc").join(f), b"same").unwrap();
    }
    fs::write(root.join("etc/hostname"), b"base\n").unwrap();
    fs::write(root.join("etc/same-size"), b"aaaa").unwrap();
    fs::write(root.join("etc/remove-me"), b"x").unwrap();
    fs::write(root.join("etc/chmod-me"), b"x").unwrap();
    fs::write(root.join("gone-dir/sub/f"), b"f").unwrap();
    fs::write(root.join("var/lib/app/data"), b"d").unwrap();
    fs::write(root.join("file-to-dir"), b"was a file").unwrap();
    std::os::unix::fs::symlink("hostname", root.join("etc/link")).unwrap();
    // Fixed times, so two trees made a moment apart are equal.
    for f in [
        "quiet/stays",
        "replaced/old",
        "etc/touch-me",
        "etc/chown-same",
        "etc/opened",
        "etc/hostname",
        "etc/same-size",
        "etc/remove-me",
        "etc/chmod-me",
        "gone-dir/sub/f",
        "var/lib/app/data",
        "file-to-dir",
    ] {
        let f = fs::File::options().write(true).open(root.join(f)).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
    }
}

/// The change a RUN step might make, applied to a merged view `m`.
fn change(m: &Path) {
    fs::write(m.join("etc/hostname"), b"changed\n").unwrap();
    fs::write(m.join("etc/same-size"), b"bbbb").unwrap(); // same size, new content
    fs::remove_file(m.join("etc/remove-me")).unwrap();
    fs::set_permissions(m.join("etc/chmod-me"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_dir_all(m.join("gone-dir")).unwrap();
    fs::remove_file(m.join("etc/link")).unwrap();
    std::os::unix::fs::symlink("same-size", m.join("etc/link")).unwrap();
    fs::create_dir_all(m.join("srv/new/deeper")).unwrap();
    fs::write(m.join("srv/new/deeper/file"), b"new").unwrap();
    fs::remove_file(m.join("file-to-dir")).unwrap();
    fs::create_dir(m.join("file-to-dir")).unwrap();
    fs::write(m.join("file-to-dir/inside"), b"i").unwrap();
    // Only the time changes: a change (overlay copies the file up).
    let f = fs::File::options()
        .write(true)
        .open(m.join("etc/touch-me"))
        .unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(2_000_000))
        .unwrap();
    // No change at all, though overlay copies these up.
    std::os::unix::fs::chown(m.join("etc/chown-same"), Some(0), Some(0)).unwrap();
    drop(
        fs::File::options()
            .write(true)
            .open(m.join("etc/opened"))
            .unwrap(),
    );
    fs::write(m.join("quiet/tmp"), b"t").unwrap();
    fs::remove_file(m.join("quiet/tmp")).unwrap();
    // `rm -rf d && mkdir d`: an opaque directory.
    fs::remove_dir_all(m.join("replaced")).unwrap();
    fs::create_dir(m.join("replaced")).unwrap();
    fs::write(m.join("replaced/new"), b"n").unwrap();
}

fn overlay_usable() -> bool {
    strata_testkit::require_overlay() && strata_testkit::require_tool("mount")
}

#[test]
fn diff_fallback_matches_the_overlay_upper_byte_for_byte() {
    if !overlay_usable() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged, copy) = (
        t.path().join("lower"),
        t.path().join("upper"),
        t.path().join("work"),
        t.path().join("merged"),
        t.path().join("copy"),
    );
    for d in [&lower, &upper, &work, &merged, &copy] {
        fs::create_dir_all(d).unwrap();
    }
    base_tree(&lower);
    base_tree(&copy);
    // Overlay path.
    let opt = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    strata_testkit::run_ok(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opt])
            .arg(&merged),
    );
    change(&merged);
    strata_testkit::run_ok(Command::new("umount").arg(&merged));
    let via_overlay =
        upper_to_entries_against(&upper, &MergedView::new(vec![lower.clone()]), true).unwrap();
    // Fallback path.
    change(&copy);
    let via_diff = diff_dirs(&lower, &copy).unwrap();
    let (a, blob_a) = write_layer(LayerSource::Entries(via_overlay), &opts(), Vec::new()).unwrap();
    let (b, blob_b) = write_layer(LayerSource::Entries(via_diff), &opts(), Vec::new()).unwrap();
    let names = |blob: &[u8]| -> Vec<String> {
        let (_, r) = strata_layer::decompress(blob).unwrap();
        let mut ar = tar::Archive::new(r);
        ar.entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    };
    let listed = names(&blob_a);
    // `rm -rf replaced && mkdir replaced` is written as the whiteouts the
    // overlay's opaque directory stands for (one form for both paths).
    for want in ["etc/touch-me", "replaced/.wh.old", "replaced/new"] {
        assert!(
            listed.iter().any(|n| n == want),
            "{want} missing: {listed:?}"
        );
    }
    assert!(
        !listed.iter().any(|n| n.ends_with(".wh..wh..opq")),
        "{listed:?}"
    );
    for unchanged in ["etc/chown-same", "etc/opened", "quiet/", "quiet"] {
        assert!(
            !listed.iter().any(|n| n == unchanged),
            "{unchanged} did not change but is in the layer: {listed:?}"
        );
    }
    if a != b {
        let list = |blob: &[u8]| {
            let (_, r) = strata_layer::decompress(blob).unwrap();
            let mut ar = tar::Archive::new(r);
            ar.entries()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    format!(
                        "{} {:?} {:o}",
                        String::from_utf8_lossy(&e.path_bytes()),
                        e.header().entry_type(),
                        e.header().mode().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        };
        panic!("overlay: {:#?}\ndiff: {:#?}", list(&blob_a), list(&blob_b));
    }
    assert_eq!(blob_a, blob_b);
    // And the layer turns the base into the changed tree.
    let check = t.path().join("check");
    fs::create_dir(&check).unwrap();
    base_tree(&check);
    apply_layer(&blob_a[..], &check, ApplyMode::Plain).unwrap();
    assert_eq!(describe_tree(&check), describe_tree(&copy));
}

/// The layer of an upper directory, gzip'd, with its entry names.
fn upper_layer(upper: &Path, lower: &Path) -> (Vec<u8>, Vec<String>) {
    let entries =
        upper_to_entries_against(upper, &MergedView::new(vec![lower.to_owned()]), true).unwrap();
    let (_, blob) = write_layer(LayerSource::Entries(entries), &opts(), Vec::new()).unwrap();
    let (_, r) = strata_layer::decompress(&blob[..]).unwrap();
    let names = tar::Archive::new(r)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    (blob, names)
}

/// fuse-overlayfs (the rootless snapshotter before Linux 5.11) writes its
/// upper directory in forms of its own: every directory it creates is
/// opaque (an xattr, plus a `.wh..wh..opq` file and a whiteout named
/// `.wh..opq` in it), and in a user namespace the xattr is
/// `user.fuseoverlayfs.opaque` and, where the kernel refuses whiteout
/// devices, whiteouts are `.wh.NAME` files. Each form gives the copy
/// snapshotter's layer.
#[test]
fn a_fuse_overlayfs_upper_gives_the_same_layer_in_each_of_its_forms() {
    if !strata_testkit::require_root()
        || !strata_testkit::require_tool("fuse-overlayfs")
        || !strata_testkit::require_tool("umount")
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged, copy] =
        ["lower", "upper", "work", "merged", "copy"].map(|d| t.path().join(d));
    for d in [&lower, &upper, &work, &merged, &copy] {
        fs::create_dir_all(d).unwrap();
    }
    base_tree(&lower);
    base_tree(&copy);
    let opt = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    strata_testkit::run_ok(
        Command::new("fuse-overlayfs")
            .args(["-o", &opt])
            .arg(&merged),
    );
    change(&merged);
    strata_testkit::run_ok(Command::new("umount").arg(&merged));
    // fuse-overlayfs's own markers are there, and never in the layer.
    assert!(upper.join("replaced/.wh..wh..opq").is_file());
    assert!(upper.join("srv/new/.wh..wh..opq").is_file());
    change(&copy);
    let via_diff = diff_dirs(&lower, &copy).unwrap();
    let (_, want) = write_layer(LayerSource::Entries(via_diff), &opts(), Vec::new()).unwrap();
    let (got, names) = upper_layer(&upper, &lower);
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".wh..wh..opq") || n.ends_with(".wh..opq")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "replaced/.wh.old"), "{names:?}");
    assert_eq!(got, want, "as root: {names:?}");
    // Rootless forms: the opaque xattr fuse-overlayfs sets there, and
    // whiteout files instead of devices.
    let mut dirs = vec![upper.clone()];
    let mut files = 0;
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                if rustix::fs::lgetxattr(&p, "trusted.overlay.opaque", &mut [0u8; 4]).is_ok() {
                    rustix::fs::lremovexattr(&p, "trusted.overlay.opaque").unwrap();
                    rustix::fs::lsetxattr(
                        &p,
                        "user.fuseoverlayfs.opaque",
                        b"y",
                        rustix::fs::XattrFlags::empty(),
                    )
                    .unwrap();
                }
                dirs.push(p);
            } else if m.file_type().is_char_device()
                && m.rdev() == 0
                && p.file_name().unwrap() != ".wh..opq"
            {
                fs::remove_file(&p).unwrap();
                let mut n = std::ffi::OsString::from(".wh.");
                n.push(p.file_name().unwrap());
                fs::write(p.with_file_name(n), b"").unwrap();
                files += 1;
            }
        }
    }
    assert!(
        files > 0,
        "the upper has whiteout devices to turn into files"
    );
    let (got, names) = upper_layer(&upper, &lower);
    assert_eq!(got, want, "rootless forms: {names:?}");
}

#[test]
fn diff_sees_file_times_not_directory_times_and_same_size_content_changes() {
    let t = tempfile::tempdir().unwrap();
    let (l, u) = (t.path().join("l"), t.path().join("u"));
    fs::create_dir_all(&l).unwrap();
    fs::create_dir_all(&u).unwrap();
    base_tree(&l);
    base_tree(&u);
    fs::write(u.join("quiet/tmp"), b"t").unwrap();
    fs::remove_file(u.join("quiet/tmp")).unwrap();
    assert!(
        diff_dirs(&l, &u).unwrap().is_empty(),
        "a directory's mtime alone is no change"
    );
    let f = fs::File::options()
        .write(true)
        .open(u.join("etc/hostname"))
        .unwrap();
    f.set_modified(UNIX_EPOCH).unwrap();
    let d = diff_dirs(&l, &u).unwrap();
    let names: Vec<_> = d.iter().map(|e| e.path.display().to_string()).collect();
    assert_eq!(names, ["etc", "etc/hostname"], "a file's mtime is a change");
    let f = fs::File::options()
        .write(true)
        .open(u.join("etc/hostname"))
        .unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    fs::write(u.join("etc/same-size"), b"bbbb").unwrap();
    let d = diff_dirs(&l, &u).unwrap();
    let names: Vec<_> = d.iter().map(|e| e.path.display().to_string()).collect();
    assert_eq!(names, ["etc", "etc/same-size"]);
}

#[test]
fn snapshotter_extracts_once_and_commits_changes() {
    if !overlay_usable() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    base_tree(&src);
    let info = write_layer_to_store(&store, LayerSource::Dir(&src), &opts()).unwrap();
    let base = Layer {
        descriptor: info.descriptor(),
        diff_id: info.diff_id.clone(),
    };
    let snap = Snapshotter::new(&store).unwrap();
    let dir = snap.ensure_layer(&base).unwrap();
    assert_eq!(dir, store.snapshots_dir().join(info.diff_id.hex()));
    assert_eq!(describe_tree(&dir), describe_tree(&src));
    let ino = fs::metadata(&dir).unwrap();
    snap.ensure_layer(&base).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(&dir).unwrap().ino(),
        ino.ino(),
        "extracted once"
    );

    // Overlay path through the snapshotter.
    let mounts = snap.prepare("run-1", std::slice::from_ref(&base)).unwrap();
    assert_eq!(mounts[0].kind, "overlay");
    let merged = t.path().join("merged");
    fs::create_dir(&merged).unwrap();
    strata_testkit::run_ok(
        Command::new("mount")
            .args([
                "-t",
                "overlay",
                "overlay",
                "-o",
                &mounts[0].options_string(),
            ])
            .arg(&merged),
    );
    change(&merged);
    strata_testkit::run_ok(Command::new("umount").arg(&merged));
    let via_overlay = snap.commit("run-1", &opts()).unwrap();
    assert!(snap.exists(&via_overlay.diff_id));
    // Its snapshot keeps whiteouts as overlay whiteouts.
    let wh = fs::symlink_metadata(snap.path(&via_overlay.diff_id).join("etc/remove-me")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(wh.file_type().is_char_device());

    // Copy fallback through the snapshotter: same layer.
    let mounts = snap
        .prepare_copy("run-2", std::slice::from_ref(&base))
        .unwrap();
    assert_eq!(mounts[0].kind, "bind");
    change(&snap.writable_dir("run-2"));
    let via_copy = snap.commit("run-2", &opts()).unwrap();
    assert_eq!(via_copy, via_overlay);

    // Lowerdirs for a two-layer stack: top first.
    let top = Layer {
        descriptor: via_overlay.descriptor(),
        diff_id: via_overlay.diff_id.clone(),
    };
    let mounts = snap.view(&[base.clone(), top.clone()]).unwrap();
    assert_eq!(
        mounts[0].options[0],
        format!(
            "lowerdir={}:{}",
            snap.path(&top.diff_id).display(),
            snap.path(&base.diff_id).display()
        )
    );
    assert!(!store.snapshots_dir().join(".active/run-1").exists());
}

/// Everything extraction decides about a tree: type, mode, owner, times
/// (seconds and nanoseconds), content or target, device numbers, xattrs,
/// links. Whiteouts are described without their times (extraction makes
/// them at the clock's time).
fn describe_full(root: &Path) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    fn xattrs(p: &Path) -> String {
        let mut names = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap_or(0);
        let mut list: Vec<String> = names[..n]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|k| {
                let k = String::from_utf8_lossy(k).into_owned();
                let mut v = vec![0u8; 4096];
                let len = rustix::fs::lgetxattr(p, k.as_str(), &mut v[..]).unwrap();
                format!("{k}={:?}", String::from_utf8_lossy(&v[..len]))
            })
            .collect();
        list.sort();
        list.join(",")
    }
    /// The content (its length and a checksum when long), read without
    /// touching the access time this describes.
    fn content(p: &Path) -> String {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut data = Vec::new();
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(p)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        if data.len() <= 64 {
            return format!("{:?}", String::from_utf8_lossy(&data));
        }
        let sum = data
            .iter()
            .fold(0u64, |h, b| h.wrapping_mul(1_000_003) ^ u64::from(*b));
        format!("{} bytes #{sum:x}", data.len())
    }
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let whiteout = ft.is_char_device() && m.rdev() == 0;
            let what = if ft.is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".to_owned()
            } else if m.is_file() {
                format!("file {} links={}", content(&p), m.nlink())
            } else {
                format!("special {:o} rdev={}", m.mode() & 0o170000, m.rdev())
            };
            let times = if whiteout {
                String::new()
            } else {
                format!(
                    "m={}.{} a={}.{}",
                    m.mtime(),
                    m.mtime_nsec(),
                    m.atime(),
                    m.atime_nsec()
                )
            };
            out.push(format!(
                "{rel} {what} mode={:o} {}:{} {times} [{}]",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                xattrs(&p)
            ));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn extract_blob(store: &Store, info: &strata_layer::LayerInfo, at: &Path) {
    fs::create_dir_all(at).unwrap();
    let blob = store.open_blob(&info.digest).unwrap();
    let stats = apply_layer(std::io::BufReader::new(blob), at, ApplyMode::Overlay).unwrap();
    assert_eq!(stats.diff_id, info.diff_id);
}

fn set_time(p: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn an_adopted_upper_is_what_extracting_its_layer_makes() {
    if !overlay_usable() {
        return;
    }
    adopted_upper_case(false);
}

/// The same with an upper directory fuse-overlayfs wrote (its opaque
/// markers in every directory it made).
#[test]
fn an_adopted_fuse_overlayfs_upper_is_what_extracting_its_layer_makes() {
    if !strata_testkit::require_root()
        || !strata_testkit::require_tool("fuse-overlayfs")
        || !strata_testkit::require_tool("umount")
    {
        return;
    }
    adopted_upper_case(true);
}

fn adopted_upper_case(fuse: bool) {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    base_tree(&src);
    fs::create_dir_all(src.join("attrs")).unwrap();
    fs::write(src.join("attrs/f"), b"a").unwrap();
    rustix::fs::lsetxattr(
        src.join("attrs/f"),
        "user.kept",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let info = write_layer_to_store(&store, LayerSource::Dir(&src), &opts()).unwrap();
    let base = Layer {
        descriptor: info.descriptor(),
        diff_id: info.diff_id.clone(),
    };
    let snap = Snapshotter::new(&store).unwrap();
    let started = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mounts = snap.prepare("run-a", std::slice::from_ref(&base)).unwrap();
    let merged = t.path().join("merged");
    fs::create_dir(&merged).unwrap();
    if fuse {
        let dirs: Vec<&str> = mounts[0]
            .options
            .iter()
            .filter(|o| o.starts_with("lowerdir=") || o.contains("dir="))
            .filter(|o| !o.starts_with("redirect_dir="))
            .map(String::as_str)
            .collect();
        strata_testkit::run_ok(
            Command::new("fuse-overlayfs")
                .args(["-o", &dirs.join(",")])
                .arg(&merged),
        );
    } else {
        strata_testkit::run_ok(
            Command::new("mount")
                .args([
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    &mounts[0].options_string(),
                ])
                .arg(&merged),
        );
    }
    change(&merged);
    // More of what RUN steps do: packaged (old) times kept, xattrs set and
    // removed, hard links, a fifo, a copy-up of a file with an xattr.
    fs::create_dir_all(merged.join("usr/lib/pkg")).unwrap();
    fs::write(merged.join("usr/lib/pkg/old.py"), b"old").unwrap();
    set_time(&merged.join("usr/lib/pkg/old.py"), 1_500_000_000);
    fs::write(merged.join("usr/lib/pkg/new"), b"new").unwrap();
    fs::hard_link(
        merged.join("usr/lib/pkg/new"),
        merged.join("usr/lib/pkg/new-link"),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        merged.join("usr/lib/pkg/new"),
        "user.tag",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    strata_testkit::run_ok(Command::new("mkfifo").arg(merged.join("usr/lib/pkg/fifo")));
    std::os::unix::fs::symlink("pkg/new", merged.join("usr/lib/link")).unwrap();
    fs::set_permissions(merged.join("attrs/f"), fs::Permissions::from_mode(0o4711)).unwrap();
    std::os::unix::fs::chown(merged.join("srv/new/deeper/file"), Some(1000), Some(2000)).unwrap();
    strata_testkit::run_ok(Command::new("umount").arg(&merged));
    let mut clamp = opts();
    clamp.timestamps = Timestamps::Clamp {
        since: started - 1,
        to: 7,
    };
    use std::os::unix::fs::MetadataExt;
    let upper = snap.writable_dir("run-a");
    let ino = fs::metadata(upper.join("usr/lib/pkg/old.py"))
        .unwrap()
        .ino();
    let layer = snap.commit("run-a", &clamp).unwrap();
    let adopted = snap.path(&layer.diff_id);
    assert_eq!(
        fs::metadata(adopted.join("usr/lib/pkg/old.py"))
            .unwrap()
            .ino(),
        ino,
        "the upper became the snapshot (not an extraction)"
    );
    let extracted = t.path().join("extracted");
    extract_blob(&store, &layer, &extracted);
    let (a, b) = (describe_full(&adopted), describe_full(&extracted));
    if a != b {
        let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
        panic!("adopted only: {only_a:#?}\nextracted only: {only_b:#?}");
    }
    // What the check covers.
    for want in [
        "replaced/old special 20000 rdev=0",
        "usr/lib/pkg/old.py file \"old\" links=1 mode=644 0:0 m=1500000000.0",
        "usr/lib/pkg/new file \"new\" links=2",
        "attrs/f file \"a\" links=1 mode=4711 0:0 m=0.0 a=0.0 [user.kept=\"1\"]",
    ] {
        assert!(a.iter().any(|l| l.starts_with(want)), "{want}: {a:#?}");
    }
    assert!(!a.iter().any(|l| l.starts_with("etc/chown-same")), "{a:#?}");
    assert!(!a.iter().any(|l| l.contains("overlay")), "{a:#?}");
}

#[test]
fn a_layer_extracted_while_written_is_what_extracting_its_blob_makes() {
    if !strata_testkit::require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    base_tree(&src);
    fs::hard_link(src.join("etc/hostname"), src.join("etc/hostname2")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("srv/big"), &big).unwrap();
    let snap = Snapshotter::new(&store).unwrap();
    let mut entries = strata_layer::scan_dir(&src, true).unwrap();
    for e in &mut entries {
        e.uid = 1000;
        e.mode |= 0o040;
    }
    let info = snap
        .write_layer(LayerSource::Entries(entries.clone()), &opts(), true)
        .unwrap();
    let written = write_layer_to_store(&store, LayerSource::Entries(entries), &opts()).unwrap();
    assert_eq!(info, written, "extracting changes nothing in the layer");
    assert!(snap.exists(&info.diff_id));
    let extracted = t.path().join("extracted");
    extract_blob(&store, &info, &extracted);
    assert_eq!(
        describe_full(&snap.path(&info.diff_id)),
        describe_full(&extracted)
    );
    // Without extracting, only the index.
    let other = snap
        .write_layer(
            LayerSource::Entries(vec![strata_layer::Entry::file("x", "y")]),
            &opts(),
            false,
        )
        .unwrap();
    assert!(!snap.exists(&other.diff_id));
    let layer = Layer {
        descriptor: other.descriptor(),
        diff_id: other.diff_id.clone(),
    };
    assert_eq!(snap.index(&layer).unwrap().unwrap().len(), 1);
}
