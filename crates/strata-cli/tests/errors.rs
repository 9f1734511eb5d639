//! How failures reach the user: every cause in the chain (`error:` /
//! `caused by:` / `hint:`), exit code 2 for usage errors found after the
//! arguments parsed, and a closed pipe ending a command quietly.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;

#[test]
fn a_private_base_image_shows_the_registrys_401_and_the_login_hint() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("right", 4).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("ci:{hash}\n")).unwrap();
    let served = dir.path().join("served");
    let serve = Serve::start(&served, &["--htpasswd", htpasswd.to_str().unwrap()]);
    let ctx = context(
        dir.path(),
        &[(
            "Dockerfile",
            &format!("FROM {}/private/base:1\nRUN true\n", serve.addr),
        )],
    );
    let root = dir.path().join("root");
    let out = strata()
        .env("STRATA_ROOT", &root)
        .args(["build", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("base image"), "{err}");
    assert!(
        err.contains("caused by:") && err.contains("authentication required"),
        "the registry's answer is lost: {err}"
    );
    assert!(err.contains("hint: log in with `strata login"), "{err}");
    assert!(
        !err.contains("strata pull"),
        "the pull hint is wrong when a pull was tried: {err}"
    );
    // No cause is printed twice.
    let lines: Vec<&str> = err.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        assert!(
            !lines[i + 1..].contains(l) || l.trim().is_empty(),
            "repeated line {l:?} in {err}"
        );
    }
}

#[test]
fn usage_errors_after_parsing_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), &[("Dockerfile", "FROM scratch\n")]);
    let root = dir.path().join("root");
    for args in [
        &["build", "--output", "type=nope", ctx.to_str().unwrap()][..],
        &["build", "-t", "Not A Tag", ctx.to_str().unwrap()][..],
        &["build", "--secret", "src=/x", ctx.to_str().unwrap()][..],
        &["build", "--push", ctx.to_str().unwrap()][..],
        &["pull", "UPPER/Case:x"][..],
    ] {
        let out = run(&root, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    }
    // A failed operation is still 1.
    let out = run(&root, &["inspect", "no-such-image"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_closed_pipe_ends_listing_commands_quietly() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(dir.path()) else {
        return;
    };
    for i in 0..200 {
        ok(&root, &["tag", "busybox", &format!("many:{i}")]);
    }
    for args in [
        &["images"][..],
        &["history", "--no-trunc", "busybox"][..],
        &["inspect", "busybox"][..],
    ] {
        // The reader takes nothing and goes away, as `| head -0` would.
        let mut child = cmd(&root)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "strata {args:?}: {status}: {err}");
        assert!(err.is_empty(), "strata {args:?} complained: {err}");
    }
}
