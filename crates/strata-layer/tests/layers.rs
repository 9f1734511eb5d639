//! Writer determinism, writer/applier round trips, whiteouts and store integration.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{describe_tree, RawTar};
use strata_layer::{
    apply_layer, write_layer, write_layer_to_store, ApplyMode, Entry, EntryKind, LayerOptions,
    LayerSource, Timestamps,
};
use strata_oci::{Compression, Digest, Store};

fn opts(c: Compression) -> LayerOptions {
    LayerOptions {
        compression: c,
        level: None,
        timestamps: Timestamps::Epoch(0),
        xattrs: true,
        foreign_times: Default::default(),
        tap: None,
    }
}

/// The same logical tree, created in `order` (forward or reverse), with
/// mtimes offset by `skew` seconds.
fn build_tree(root: &Path, reverse: bool, skew: u64) {
    let mut steps: Vec<Box<dyn Fn(&Path)>> = vec![
        Box::new(|r| fs::create_dir_all(r.join("etc/conf.d")).unwrap()),
        Box::new(|r| fs::create_dir_all(r.join("usr/bin")).unwrap()),
        Box::new(|r| fs::create_dir_all(r.join(format!("deep/{}", "n".repeat(120)))).unwrap()),
    ];
    let files: Vec<(&str, &[u8])> = vec![
        ("etc/hostname", b"box\n"),
        ("etc/conf.d/a", b"a=1\n"),
        ("usr/bin/tool", b"#!/bin/sh\necho hi\n"),
        ("big", &[7u8; 70_000]),
    ];
    for (name, data) in files.clone() {
        steps.push(Box::new(move |r| fs::write(r.join(name), data).unwrap()));
    }
    let mut order: Vec<usize> = (0..steps.len()).collect();
    if reverse {
        // directories must still come first
        order[3..].reverse();
    }
    for i in order {
        steps[i](root);
    }
    fs::write(root.join(format!("deep/{}/leaf", "n".repeat(120))), b"deep").unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", root.join("etc/tool-link")).unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname2")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let _ = rustix::fs::lsetxattr(
        root.join("etc/hostname"),
        "user.note",
        b"x",
        rustix::fs::XattrFlags::empty(),
    );
    // Distinct mtimes in each copy.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + skew);
    for p in ["etc/hostname", "usr/bin/tool", "big", "etc", "usr/bin"] {
        let f = fs::File::open(root.join(p)).unwrap();
        f.set_modified(t).unwrap();
    }
}

#[test]
fn same_tree_gives_same_digests_across_copies_and_runs() {
    let a = tempfile::tempdir().unwrap();
    // Make inode order differ: create filler files first in b.
    let b = tempfile::tempdir().unwrap();
    for i in 0..20 {
        fs::write(b.path().join(format!("filler{i}")), b"").unwrap();
    }
    let b_root = b.path().join("tree");
    fs::create_dir(&b_root).unwrap();
    build_tree(a.path(), false, 0);
    build_tree(&b_root, true, 12345);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (ia, ba) = write_layer(LayerSource::Dir(a.path()), &opts(c), Vec::new()).unwrap();
        let (ia2, ba2) = write_layer(LayerSource::Dir(a.path()), &opts(c), Vec::new()).unwrap();
        let (ib, bb) = write_layer(LayerSource::Dir(&b_root), &opts(c), Vec::new()).unwrap();
        assert_eq!(ia, ia2, "{c:?}: two runs differ");
        assert_eq!(ba, ba2);
        assert_eq!(ia, ib, "{c:?}: two copies of the tree differ");
        assert_eq!(ba, bb);
        assert_eq!(ia.digest, Digest::sha256(&ba));
        assert_eq!(ia.size, ba.len() as u64);
        if c == Compression::None {
            assert_eq!(ia.diff_id, ia.digest);
        }
    }
    // Different compressions share the diffID.
    let g = write_layer(
        LayerSource::Dir(a.path()),
        &opts(Compression::Gzip),
        Vec::new(),
    )
    .unwrap()
    .0;
    let z = write_layer(
        LayerSource::Dir(a.path()),
        &opts(Compression::Zstd),
        Vec::new(),
    )
    .unwrap()
    .0;
    assert_eq!(g.diff_id, z.diff_id);
    assert_ne!(g.digest, z.digest);
}

#[test]
fn gzip_header_is_fixed() {
    let (_, blob) = write_layer(
        LayerSource::Entries(vec![Entry::file("a", "x")]),
        &opts(Compression::Gzip),
        Vec::new(),
    )
    .unwrap();
    // magic, deflate, no flags (no name), mtime 0, xfl, OS 255.
    assert_eq!(&blob[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    assert_eq!(blob[9], 255);
}

#[test]
fn tar_records_follow_the_rules() {
    let a = tempfile::tempdir().unwrap();
    build_tree(a.path(), false, 0);
    let (_, tar_bytes) = write_layer(
        LayerSource::Dir(a.path()),
        &opts(Compression::None),
        Vec::new(),
    )
    .unwrap();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), 0, "{name}");
        assert!(
            h.username().unwrap().is_none_or(str::is_empty),
            "{name} has a user name"
        );
        assert!(
            h.groupname().unwrap().is_none_or(str::is_empty),
            "{name} has a group name"
        );
        if name == "etc/hostname2" {
            assert_eq!(h.entry_type(), tar::EntryType::Link);
            assert_eq!(
                e.link_name().unwrap().unwrap().to_str(),
                Some("etc/hostname")
            );
        }
        if name == "fifo" {
            assert_eq!(h.entry_type(), tar::EntryType::Fifo);
        }
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let k = x.unwrap().key().unwrap().to_owned();
                assert!(
                    k == "path" || k == "linkpath" || k.starts_with("SCHILY.xattr."),
                    "{name}: pax {k}"
                );
            }
        }
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort_by(|x, y| {
        let c = |s: &str| {
            s.trim_end_matches('/')
                .split('/')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        c(x).cmp(&c(y))
    });
    assert_eq!(names, sorted);
    assert!(
        names.iter().any(|n| n.len() > 100),
        "the long name is there"
    );
    assert!(names.contains(&"usr/bin/".to_owned()));
}

#[test]
fn preserve_keeps_mtimes() {
    let a = tempfile::tempdir().unwrap();
    build_tree(a.path(), false, 0);
    let o = LayerOptions {
        timestamps: Timestamps::Preserve,
        ..opts(Compression::None)
    };
    let (_, t) = write_layer(LayerSource::Dir(a.path()), &o, Vec::new()).unwrap();
    let mut ar = tar::Archive::new(&t[..]);
    let big = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().as_ref() == b"big")
        .unwrap();
    assert_eq!(big.header().mtime().unwrap(), 1_000_000);
}

#[test]
fn write_apply_write_is_a_fixed_point() {
    let a = tempfile::tempdir().unwrap();
    build_tree(a.path(), false, 0);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (info, blob) = write_layer(LayerSource::Dir(a.path()), &opts(c), Vec::new()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let stats = apply_layer(&blob[..], out.path(), ApplyMode::Plain).unwrap();
        assert_eq!(stats.diff_id, info.diff_id);
        assert_eq!(stats.compression, c);
        assert_eq!(describe_tree(a.path()), describe_tree(out.path()));
        let h1 = fs::metadata(out.path().join("etc/hostname")).unwrap();
        let h2 = fs::metadata(out.path().join("etc/hostname2")).unwrap();
        assert_eq!(h1.ino(), h2.ino(), "hard link restored as a link");
        let (again, _) = write_layer(LayerSource::Dir(out.path()), &opts(c), Vec::new()).unwrap();
        assert_eq!(again, info, "{c:?}");
    }
}

#[test]
fn plain_mode_applies_whiteouts_with_oci_ordering() {
    let t = tempfile::tempdir().unwrap();
    let lower = RawTar::new()
        .dir("a/")
        .file("a/old1", b"1")
        .file("a/old2", b"2")
        .dir("b/")
        .file("b/gone", b"g")
        .file("b/stays", b"s")
        .dir("c/")
        .file("c/x", b"x")
        .finish();
    apply_layer(&lower[..], t.path(), ApplyMode::Plain).unwrap();
    // Same-layer entries listed before the opaque marker survive it.
    let upper = RawTar::new()
        .dir("a/")
        .file("a/new", b"n")
        .file("a/.wh..wh..opq", b"")
        .file("b/.wh.gone", b"")
        .file(".wh.c", b"")
        .file(".wh.never-existed", b"")
        .finish();
    apply_layer(&upper[..], t.path(), ApplyMode::Plain).unwrap();
    assert_eq!(
        describe_tree(t.path()),
        vec![
            "a dir mode=755",
            "a/new file \"n\" mode=644",
            "b dir mode=755",
            "b/stays file \"s\" mode=644",
        ]
    );
}

#[test]
fn overlay_mode_keeps_whiteouts_as_overlay_whiteouts() {
    if !strata_testkit::require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layer = RawTar::new()
        .dir("d/")
        .file("d/.wh..wh..opq", b"")
        .file(".wh.gone", b"")
        .file("d/keep", b"k")
        .finish();
    apply_layer(&layer[..], t.path(), ApplyMode::Overlay).unwrap();
    let m = fs::symlink_metadata(t.path().join("gone")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(t.path().join("d"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert_eq!(fs::read(t.path().join("d/keep")).unwrap(), b"k");
}

#[test]
fn devices_and_owners_as_root() {
    if !strata_testkit::require_root() {
        return;
    }
    let mut entries = vec![
        Entry::new("dev", EntryKind::Dir),
        Entry::new("dev/null", EntryKind::Char { major: 1, minor: 3 }),
        Entry::new("dev/loop9", EntryKind::Block { major: 7, minor: 9 }),
        Entry::new("p", EntryKind::Fifo),
    ];
    let mut f = Entry::file("owned", "x");
    f.uid = 1234;
    f.gid = 4321;
    f.mode = 0o2751;
    f.xattrs.push((
        "security.capability".into(),
        vec![1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ));
    entries.push(f);
    let (info, blob) = write_layer(
        LayerSource::Entries(entries),
        &opts(Compression::Gzip),
        Vec::new(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    apply_layer(&blob[..], out.path(), ApplyMode::Plain).unwrap();
    let m = fs::metadata(out.path().join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 4321, 0o2751));
    let null = fs::symlink_metadata(out.path().join("dev/null")).unwrap();
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let mut buf = [0u8; 64];
    let n =
        rustix::fs::lgetxattr(out.path().join("owned"), "security.capability", &mut buf).unwrap();
    assert_eq!(n, 20);
    let (again, _) = write_layer(
        LayerSource::Dir(out.path()),
        &opts(Compression::Gzip),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(again, info);
}

#[test]
fn written_into_the_store_in_one_pass() {
    let a = tempfile::tempdir().unwrap();
    build_tree(a.path(), false, 0);
    let s = tempfile::tempdir().unwrap();
    let store = Store::open(s.path()).unwrap();
    let info =
        write_layer_to_store(&store, LayerSource::Dir(a.path()), &opts(Compression::Gzip)).unwrap();
    let (mem, blob) = write_layer(
        LayerSource::Dir(a.path()),
        &opts(Compression::Gzip),
        Vec::new(),
    )
    .unwrap();
    assert_eq!(info, mem);
    assert_eq!(fs::read(store.blob_path(&info.digest)).unwrap(), blob);
    assert_eq!(
        info.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert!(store.verify().unwrap().problems.is_empty());
    assert_eq!(fs::read_dir(s.path().join("ingest")).unwrap().count(), 0);
}
