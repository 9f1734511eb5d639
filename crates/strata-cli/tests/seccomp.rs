//! `--security-opt seccomp=...` on `strata run` and `strata build`: docker's
//! default profile unless told otherwise, under the built-in sandbox and the
//! OCI runtime. (Each executor's filter is tested in depth in
//! strata-sandbox's tests/executors.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

/// The executors `--isolation` can pick here.
fn isolations() -> Vec<&'static str> {
    let mut v = vec!["builtin"];
    if strata_testkit::require_tool("crun") || strata_testkit::require_tool("runc") {
        v.push("oci");
    }
    v
}

/// A profile in docker's format that refuses mkdir with EACCES.
fn no_mkdir_profile(dir: &Path) -> String {
    let p = dir.join("no-mkdir.json");
    std::fs::write(
        &p,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    format!("seccomp={}", p.display())
}

#[test]
fn run_applies_dockers_profile_unless_told_otherwise() {
    if !strata_testkit::require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    let probe = "grep '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null; echo unshare=$?";
    for iso in isolations() {
        let out = ok(
            &root,
            &[
                "run",
                "--rm",
                "--isolation",
                iso,
                "busybox",
                "sh",
                "-c",
                probe,
            ],
        );
        assert_eq!(out, "Seccomp:\t2\nunshare=1\n", "{iso}");
        let out = ok(
            &root,
            &[
                "run",
                "--rm",
                "--isolation",
                iso,
                "--security-opt",
                "seccomp=unconfined",
                "busybox",
                "sh",
                "-c",
                "grep '^Seccomp:' /proc/self/status",
            ],
        );
        assert_eq!(out, "Seccomp:\t0\n", "{iso}");
        let profile = no_mkdir_profile(t.path());
        let out = ok(
            &root,
            &[
                "run",
                "--rm",
                "--isolation",
                iso,
                "--security-opt",
                &profile,
                "busybox",
                "sh",
                "-c",
                "grep '^Seccomp:' /proc/self/status; mkdir /d 2>&1; echo mkdir=$?",
            ],
        );
        assert!(out.starts_with("Seccomp:\t2\n"), "{iso}: {out}");
        assert!(
            out.contains("Permission denied") && out.ends_with("mkdir=1\n"),
            "{iso}: {out}"
        );
    }
}

#[test]
fn bad_security_options_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let bad_json = t.path().join("bad.json");
    std::fs::write(&bad_json, "{\"defaultAction\": 1}").unwrap();
    let missing = t.path().join("missing.json");
    let notify = t.path().join("notify.json");
    std::fs::write(&notify, r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).unwrap();
    for (opt, want) in [
        (
            "apparmor=unconfined".to_string(),
            "unsupported security option",
        ),
        ("seccomp=".to_string(), "unsupported security option"),
        (
            format!("seccomp={}", missing.display()),
            "cannot read the seccomp profile",
        ),
        (
            format!("seccomp={}", bad_json.display()),
            "docker's JSON profile format",
        ),
        (
            format!("seccomp={}", notify.display()),
            "SCMP_ACT_NOTIFY (a seccomp agent) is not supported",
        ),
    ] {
        for sub in [
            vec!["run", "--security-opt", &opt, "busybox", "true"],
            vec!["build", "--security-opt", &opt, "."],
        ] {
            let out = run(&root, &sub);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{sub:?}: {err}");
            assert!(err.contains(want), "{sub:?}: {err}");
        }
    }
}

#[test]
fn run_steps_get_the_profile_and_build_security_opt_changes_it() {
    if !strata_testkit::require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    let ctx = t.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let profile = no_mkdir_profile(t.path());
    for iso in isolations() {
        // docker's profile: filter mode, no user namespaces
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\nRUN grep -q 'Seccomp:.2' /proc/self/status && ! unshare -U true\n",
        )
        .unwrap();
        ok(&root, &["build", "--no-cache", "--isolation", iso, ctx_s]);
        // a step that needs no filter fails by default...
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\nRUN grep -q 'Seccomp:.0' /proc/self/status\n",
        )
        .unwrap();
        let out = run(&root, &["build", "--no-cache", "--isolation", iso, ctx_s]);
        assert_eq!(out.status.code(), Some(1), "{iso}");
        // ...and passes unconfined
        ok(
            &root,
            &[
                "build",
                "--no-cache",
                "--isolation",
                iso,
                "--security-opt",
                "seccomp=unconfined",
                ctx_s,
            ],
        );
        // ...and the profile is part of the step's key: the step cached
        // unconfined is not reused by a confined build.
        let out = run(&root, &["build", "--isolation", iso, ctx_s]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{iso}: a confined build reused the step cached unconfined"
        );
        // a profile file
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\nRUN if mkdir /d; then exit 1; fi\n",
        )
        .unwrap();
        ok(
            &root,
            &[
                "build",
                "--no-cache",
                "--isolation",
                iso,
                "--security-opt",
                &profile,
                ctx_s,
            ],
        );
    }
}
