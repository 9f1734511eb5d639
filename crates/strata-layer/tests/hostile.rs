//! A corpus of hostile layers, one test per attack: each must be refused
//! with an error naming the entry (or, where the safe outcome is to replace
//! rather than follow, leave everything outside the target untouched).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::RawTar;
use strata_layer::{apply_layer, ApplyMode, Error};

/// A target dir and, beside it, an `outside` dir holding `victim`.
struct Arena {
    _tmp: tempfile::TempDir,
    target: PathBuf,
    outside: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&target).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), b"original").unwrap();
        Arena {
            _tmp: tmp,
            target,
            outside,
        }
    }

    fn apply(&self, tar: Vec<u8>) -> Result<strata_layer::ApplyStats, Error> {
        apply_layer(&tar[..], &self.target, ApplyMode::Plain)
    }

    /// The outside dir holds exactly the untouched victim.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("victim")],
            "something was created outside"
        );
        assert_eq!(
            fs::read(self.outside.join("victim")).unwrap(),
            b"original",
            "the victim was modified"
        );
    }
}

fn assert_refused(res: Result<strata_layer::ApplyStats, Error>, entry: &str) {
    match res {
        Err(e @ Error::Unsafe { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(entry), "error does not name {entry:?}: {msg}");
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("hostile layer was applied"),
    }
}

fn outside_rel(a: &Arena) -> String {
    // "../outside" from the target.
    let _ = &a.outside;
    "../outside".to_owned()
}

#[test]
fn dotdot_path_is_refused() {
    let a = Arena::new();
    let res = a.apply(RawTar::new().file("../outside/victim", b"pwned").finish());
    assert_refused(res, "../outside/victim");
    a.assert_outside_untouched();
}

#[test]
fn dotdot_in_the_middle_is_refused() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .dir("a/")
            .file("a/../../outside/new", b"x")
            .finish(),
    );
    assert_refused(res, "a/../../outside/new");
    a.assert_outside_untouched();
}

#[test]
fn absolute_path_is_refused() {
    let a = Arena::new();
    let abs = a.outside.join("victim").display().to_string();
    assert_refused(a.apply(RawTar::new().file(&abs, b"pwned").finish()), &abs);
    a.assert_outside_untouched();
}

#[test]
fn long_pax_name_with_dotdot_is_refused() {
    let a = Arena::new();
    let name = format!("{}{}", "d/".repeat(60), "../".repeat(61) + "outside/victim");
    assert_refused(
        a.apply(RawTar::new().file(&name, b"pwned").finish()),
        "outside/victim",
    );
    a.assert_outside_untouched();
}

#[test]
fn write_through_relative_symlink_is_refused() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .symlink("link", &outside_rel(&a))
            .file("link/victim", b"pwned")
            .finish(),
    );
    assert_refused(res, "link/victim");
    a.assert_outside_untouched();
}

#[test]
fn write_through_absolute_symlink_is_refused() {
    let a = Arena::new();
    let abs = a.outside.display().to_string();
    let res = a.apply(
        RawTar::new()
            .symlink("link", &abs)
            .file("link/new", b"pwned")
            .finish(),
    );
    assert_refused(res, "link/new");
    a.assert_outside_untouched();
}

#[test]
fn write_through_symlink_chain_is_refused() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .symlink("a", "b")
            .symlink("b", "c/../../outside")
            .dir("c/")
            .file("a/victim", b"pwned")
            .finish(),
    );
    assert_refused(res, "a/victim");
    a.assert_outside_untouched();
}

#[test]
fn symlink_planted_by_an_earlier_layer_is_refused() {
    let a = Arena::new();
    a.apply(RawTar::new().symlink("etc", &outside_rel(&a)).finish())
        .unwrap();
    let res = a.apply(RawTar::new().file("etc/victim", b"pwned").finish());
    assert_refused(res, "etc/victim");
    a.assert_outside_untouched();
}

#[test]
fn symlink_inside_the_target_is_followed() {
    // Not an attack: a relative link that stays inside is honoured.
    let a = Arena::new();
    a.apply(
        RawTar::new()
            .dir("usr/")
            .dir("usr/lib/")
            .symlink("lib", "usr/lib")
            .file("lib/x", b"ok")
            .finish(),
    )
    .unwrap();
    assert_eq!(fs::read(a.target.join("usr/lib/x")).unwrap(), b"ok");
}

#[test]
fn file_over_a_symlink_replaces_the_link() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .symlink("f", "../outside/victim")
            .file("f", b"pwned")
            .finish(),
    );
    res.unwrap();
    a.assert_outside_untouched();
    let m = fs::symlink_metadata(a.target.join("f")).unwrap();
    assert!(m.is_file());
    assert_eq!(fs::read(a.target.join("f")).unwrap(), b"pwned");
}

#[test]
fn symlink_replaced_by_a_directory_never_leads_out() {
    let a = Arena::new();
    a.apply(
        RawTar::new()
            .symlink("d", &outside_rel(&a))
            .dir("d/")
            .file("d/victim", b"pwned")
            .finish(),
    )
    .unwrap();
    a.assert_outside_untouched();
    assert!(fs::symlink_metadata(a.target.join("d")).unwrap().is_dir());
    assert_eq!(fs::read(a.target.join("d/victim")).unwrap(), b"pwned");
}

#[test]
fn hardlink_to_an_outside_file_is_refused() {
    let a = Arena::new();
    let res = a.apply(RawTar::new().hardlink("h", "../outside/victim").finish());
    assert_refused(res, "h");
    a.assert_outside_untouched();
    let abs = a.outside.join("victim").display().to_string();
    let res = a.apply(RawTar::new().hardlink("h2", &abs).finish());
    assert_refused(res, "h2");
}

#[test]
fn hardlink_through_a_symlink_is_refused() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .symlink("l", &outside_rel(&a))
            .hardlink("h", "l/victim")
            .finish(),
    );
    assert_refused(res, "h");
    a.assert_outside_untouched();
}

#[test]
fn writing_over_a_hardlink_does_not_modify_its_target() {
    let a = Arena::new();
    a.apply(
        RawTar::new()
            .file("a", b"keep")
            .hardlink("h", "a")
            .file("h", b"new")
            .finish(),
    )
    .unwrap();
    assert_eq!(fs::read(a.target.join("a")).unwrap(), b"keep");
    assert_eq!(fs::read(a.target.join("h")).unwrap(), b"new");
}

#[test]
fn hardlink_to_a_directory_is_refused() {
    let a = Arena::new();
    let res = a.apply(RawTar::new().dir("d/").hardlink("h", "d").finish());
    assert_refused(res, "h");
}

#[test]
fn whiteout_through_a_symlink_is_refused() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .symlink("l", &outside_rel(&a))
            .file("l/.wh.victim", b"")
            .finish(),
    );
    assert_refused(res, "l/.wh.victim");
    a.assert_outside_untouched();
}

#[test]
fn opaque_marker_through_a_symlink_is_refused() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .symlink("l", &outside_rel(&a))
            .file("l/.wh..wh..opq", b"")
            .finish(),
    );
    assert_refused(res, "l/.wh..wh..opq");
    a.assert_outside_untouched();
}

#[test]
fn whiteout_with_dotdot_is_refused() {
    let a = Arena::new();
    let res = a.apply(RawTar::new().file("../outside/.wh.victim", b"").finish());
    assert_refused(res, "../outside/.wh.victim");
    a.assert_outside_untouched();
}

#[test]
fn nothing_outside_when_target_itself_is_reached_through_symlink() {
    // The target path may be a symlink (callers' business); entries still
    // cannot climb out of what it resolves to.
    let a = Arena::new();
    let alias = a.target.parent().unwrap().join("alias");
    std::os::unix::fs::symlink(&a.target, &alias).unwrap();
    let res = apply_layer(
        &RawTar::new().file("../outside/victim", b"x").finish()[..],
        Path::new(&alias),
        ApplyMode::Plain,
    );
    assert_refused(res, "../outside/victim");
    a.assert_outside_untouched();
}

// The applier keeps the open parents of one entry for the next: an entry
// that replaces one of those parents must never let a later entry write
// through what the parent was, nor through what it now is.

#[test]
fn directory_replaced_by_a_symlink_mid_layer_is_refused() {
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .dir("d/")
            .file("d/a", b"fine")
            .symlink("d", &outside_rel(&a))
            .file("d/victim", b"pwned")
            .finish(),
    );
    assert_refused(res, "d/victim");
    a.assert_outside_untouched();
}

#[test]
fn parent_reached_through_a_symlink_is_resolved_again() {
    // `l` leads to `t`; then an entry reached through `l/up` (up -> ..)
    // replaces `t` itself by a link out. `l/victim` must follow `l` anew.
    let a = Arena::new();
    let res = a.apply(
        RawTar::new()
            .dir("t/")
            .symlink("t/up", "..")
            .symlink("l", "t")
            .file("l/a", b"inside")
            .symlink("l/up/t", &outside_rel(&a))
            .file("l/victim", b"pwned")
            .finish(),
    );
    assert_refused(res, "l/victim");
    a.assert_outside_untouched();
}
