//! End-to-end tests of multi-platform work: `--platform` parsing (lists,
//! containerd's aliases, refusals), BuildKit's platform args, builds for
//! several platforms into one OCI index, and foreign-architecture RUN.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn malformed_platforms_are_usage_errors_naming_the_bad_part() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ctx = context(
        dir.path(),
        &[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a")],
    );
    let ctx = ctx.to_str().unwrap();
    for (platform, part) in [
        (
            "linux/amd64,arm64,foo",
            "\"foo\" is not a known operating system or architecture",
        ),
        ("linux/amd64,,linux/arm64", "empty entry"),
        ("linux/pentium", "\"pentium\" is not a known architecture"),
        ("lnux/arm64", "\"lnux\" is not a known operating system"),
        ("linux/arm64/", "variant is empty"),
    ] {
        let out = run(&root, &["build", "-q", "--platform", platform, ctx]);
        assert_eq!(out.status.code(), Some(2), "{platform}: {}", stderr(&out));
        assert!(stderr(&out).contains(part), "{platform}: {}", stderr(&out));
    }
    // Commands that take one platform say a list is not one.
    let out = run(
        &root,
        &[
            "pull",
            "--platform",
            "linux/amd64,linux/arm64",
            "127.0.0.1:1/x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a list"), "{}", stderr(&out));
}

#[test]
fn platform_aliases_are_normalised_as_containerd_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ctx = context(
        dir.path(),
        &[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a")],
    );
    for (given, arch, variant) in [
        ("linux/aarch64", "arm64", None),
        ("linux/arm64/v8", "arm64", None),
        ("armhf", "arm", Some("v7")),
        ("linux/x86_64", "amd64", None),
    ] {
        ok(
            &root,
            &[
                "build",
                "-q",
                "--platform",
                given,
                "-t",
                "alias",
                ctx.to_str().unwrap(),
            ],
        );
        let v = inspect(&root, "alias");
        assert_eq!(v["Architecture"], arch, "{given}");
        assert_eq!(v["Os"], "linux", "{given}");
        assert_eq!(v["Variant"].as_str(), variant, "{given}");
    }
}
