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

/// This machine's GOARCH name.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn cat(root: &std::path::Path, image: &str, file: &str) -> String {
    ok(root, &["run", "--rm", image, "cat", file])
}

#[test]
fn platform_args_follow_buildkit_scoping() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "ARG IMG=busybox\n\
         FROM --platform=$BUILDPLATFORM $IMG AS tools\n\
         RUN echo \"[$TARGETARCH] [$BUILDARCH]\" > /unscoped\n\
         ARG TARGETARCH TARGETPLATFORM TARGETOS TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH\n\
         RUN echo \"$TARGETOS $TARGETARCH $TARGETPLATFORM [$TARGETVARIANT] $BUILDOS $BUILDARCH $BUILDPLATFORM\" > /scoped\n\
         FROM ${IMG}\n\
         COPY --from=tools /unscoped /scoped /\n",
    )]) else {
        return;
    };
    let host = host_arch();
    let platform = format!("linux/{host}");
    ok(
        &s.root,
        &[
            "build",
            "-q",
            "--platform",
            &platform,
            "-t",
            "args",
            s.ctx.to_str().unwrap(),
        ],
    );
    // Automatic args exist in a stage only once it declares them.
    assert_eq!(cat(&s.root, "args", "/unscoped"), "[] []\n");
    assert_eq!(
        cat(&s.root, "args", "/scoped"),
        format!("linux {host} linux/{host} [] linux {host} linux/{host}\n")
    );
}
