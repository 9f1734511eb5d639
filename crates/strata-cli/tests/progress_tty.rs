//! What the screen shows: the live progress view on a real pseudo-terminal
//! (`script` from util-linux allocates it), read back through a terminal
//! emulator, and no colour codes where colour is not wanted.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

/// Runs `strata ARGS` on a pseudo-terminal of 100x40 and returns the raw
/// bytes the terminal received.
fn on_a_terminal(root: &std::path::Path, args: &str, env: &str) -> Vec<u8> {
    if !strata_testkit::require_tool("script") {
        return Vec::new();
    }
    let dir = tempfile::tempdir().unwrap();
    let typescript = dir.path().join("typescript");
    let cmd = format!(
        "stty cols 100 rows 40; {env} STRATA_ROOT={} {} {args}",
        root.display(),
        strata_bin()
    );
    let status = Command::new("script")
        .args(["-qfec", &cmd])
        .arg(&typescript)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{cmd}");
    std::fs::read(&typescript).unwrap()
}

/// The screen after `bytes`, as text.
fn screen(bytes: &[u8]) -> String {
    let n = |v: u16| std::num::NonZeroU16::new(v).unwrap();
    let mut p = vt100::Parser::new(n(40), n(100), 0);
    p.process(bytes);
    p.screen().contents()
}

#[test]
fn finished_steps_stay_on_screen_with_expanded_names() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "ARG BASE=busybox\nFROM ${BASE}\nRUN echo one > /a\nRUN echo two > /b\nCOPY f /f\n",
        ),
        ("f", "x"),
    ]) else {
        return;
    };
    let raw = on_a_terminal(
        &s.root,
        &format!("build --progress tty {}", s.ctx.display()),
        "",
    );
    if raw.is_empty() {
        return;
    }
    let text = screen(&raw);
    for want in [
        "[1/4] FROM busybox",
        "[2/4] RUN echo one > /a DONE",
        "[3/4] RUN echo two > /b DONE",
        "[4/4] COPY f /f DONE",
        "built sha256:",
    ] {
        assert!(
            text.contains(want),
            "{want:?} is not on the screen:\n{text}"
        );
    }
    assert!(!text.contains("${BASE}"), "{text}");
    // Cached, and with NO_COLOR: the same lines, no colour.
    let raw = on_a_terminal(
        &s.root,
        &format!("build --progress tty {}", s.ctx.display()),
        "NO_COLOR=1",
    );
    let text = screen(&raw);
    assert!(text.contains("[2/4] RUN echo one > /a CACHED"), "{text}");
    let sgr = String::from_utf8_lossy(&raw);
    assert!(
        !sgr.contains("\x1b[36m") && !sgr.contains("\x1b[1m"),
        "colour codes with NO_COLOR: {sgr:?}"
    );
}

#[test]
fn nothing_writes_colour_codes_into_a_pipe() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\nRUN echo hi\n")]) else {
        return;
    };
    // A warning (an unused build arg) and the plain progress, piped.
    let out = run(
        &s.root,
        &[
            "build",
            "--build-arg",
            "UNUSED=1",
            "--no-cache",
            s.ctx.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNUSED"), "{err}");
    assert!(!err.contains('\x1b'), "escape codes in a pipe: {err:?}");
}
