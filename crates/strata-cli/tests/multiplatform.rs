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

/// The index a tag points at, read from an OCI layout `save` writes.
fn saved_index(root: &std::path::Path, image: &str, dir: &std::path::Path) -> serde_json::Value {
    ok(
        root,
        &[
            "save",
            "--format",
            "oci",
            "-o",
            dir.to_str().unwrap(),
            image,
        ],
    );
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let d = &top["manifests"][0];
    assert_eq!(
        d["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{top}"
    );
    let hex = d["digest"].as_str().unwrap().trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

#[test]
fn a_copy_only_build_for_two_platforms_is_a_reproducible_index() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETARCH\nCOPY a /a-${TARGETARCH}\n",
            ),
            ("a", "same bytes\n"),
        ],
    );
    let ctx = ctx.to_str().unwrap();
    let build = |name: &str| {
        let root = dir.path().join(name);
        let digest = ok(
            &root,
            &[
                "build",
                "-q",
                "--platform",
                "linux/amd64,linux/arm64",
                "-t",
                "app:1",
                ctx,
            ],
        );
        (root, digest.trim().to_owned())
    };
    let (root, digest) = build("one");
    let (_, again) = build("two");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(digest, again, "two fresh stores, two index digests");

    let index = saved_index(&root, "app:1", &dir.path().join("layout"));
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // Each manifest is its platform's image; one tag, one row.
    let arm = inspect_platform(&root, "app:1", "linux/arm64");
    assert_eq!(arm["Architecture"], "arm64");
    assert_eq!(arm["Index"]["Digest"], digest.as_str());
    assert_eq!(arm["Index"]["Manifests"].as_array().unwrap().len(), 2);
    let amd = inspect_platform(&root, "app:1", "linux/amd64");
    assert_eq!(amd["Architecture"], "amd64");
    assert_ne!(amd["Id"], arm["Id"]);
    assert_eq!(ok(&root, &["images", "-q"]).lines().count(), 1);
    verify_clean(&root);

    // OCI layout: the whole index back in a fresh store.
    let loaded = dir.path().join("loaded");
    ok(
        &loaded,
        &["load", "-i", dir.path().join("layout").to_str().unwrap()],
    );
    let v = inspect_platform(&loaded, "app:1", "linux/arm64");
    assert_eq!(v["Index"]["Digest"], digest.as_str());
    assert_eq!(v["Architecture"], "arm64");
    // docker-archive: one platform, the one asked for.
    let tar = dir.path().join("arm.tar");
    ok(
        &root,
        &[
            "save",
            "--platform",
            "linux/arm64",
            "-o",
            tar.to_str().unwrap(),
            "app:1",
        ],
    );
    let single = dir.path().join("single");
    ok(&single, &["load", "-i", tar.to_str().unwrap()]);
    let v = inspect(&single, "app:1");
    assert_eq!(v["Architecture"], "arm64");
    assert!(v.get("Index").is_none(), "{v}");
}

fn inspect_platform(root: &std::path::Path, image: &str, platform: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(root, &["inspect", "--platform", platform, image])).unwrap();
    v[0].clone()
}

#[test]
fn a_buildplatform_stage_is_built_once_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ctx = context(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM --platform=$BUILDPLATFORM scratch AS tools\nCOPY a /tool\n\
                 FROM scratch\nARG TARGETARCH\nCOPY --from=tools /tool /tool-${TARGETARCH}\n",
            ),
            ("a", "built once\n"),
        ],
    );
    let out = ok(
        &root,
        &[
            "build",
            "--progress",
            "json",
            "--platform",
            "linux/amd64,linux/arm64",
            ctx.to_str().unwrap(),
        ],
    );
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Per platform graph: the `tools` stage's COPY (stage 0, step 1).
    let mut graphs: Vec<Vec<&serde_json::Value>> = Vec::new();
    for e in &events {
        if e["event"] == "platform" {
            graphs.push(Vec::new());
        } else if let Some(g) = graphs.last_mut() {
            g.push(e);
        }
    }
    assert_eq!(graphs.len(), 2, "{out}");
    let tool_step = |g: &[&serde_json::Value]| {
        g.iter()
            .find(|e| e["event"] == "step_done" && e["id"]["stage"] == 0 && e["id"]["step"] == 1)
            .map(|e| e["cached"].as_bool().unwrap())
            .unwrap()
    };
    assert!(!tool_step(&graphs[0]), "built for the first platform");
    assert!(tool_step(&graphs[1]), "shared with the second: same key");
    // The target stage depends on TARGETARCH: built for each.
    let last = |g: &[&serde_json::Value]| {
        g.iter()
            .filter(|e| e["event"] == "step_done" && e["id"]["stage"] == 1)
            .all(|e| e["cached"] == false || e["layer"].is_null())
    };
    assert!(last(&graphs[1]), "{out}");
}

/// A platform this machine does not run natively.
fn foreign() -> &'static str {
    if host_arch() == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    }
}

#[test]
fn an_emulated_run_without_binfmt_fails_fast_with_the_fix() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\nCOPY . /ctx\nRUN echo never\n")]) else {
        return;
    };
    // busybox, declared as the foreign platform's (its bytes do not matter:
    // the check comes before anything runs).
    let tar = busybox_tar(s._dir.path()).unwrap();
    ok(
        &s.root,
        &[
            "import",
            "--platform",
            foreign(),
            tar.to_str().unwrap(),
            "busybox",
        ],
    );
    // No qemu registered: an empty binfmt_misc (status only).
    let binfmt = s._dir.path().join("binfmt");
    std::fs::create_dir_all(&binfmt).unwrap();
    std::fs::write(binfmt.join("status"), "enabled\n").unwrap();
    let out = cmd(&s.root)
        .env("STRATA_BINFMT_DIR", &binfmt)
        .args([
            "build",
            "--progress",
            "plain",
            "--platform",
            foreign(),
            s.ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let qemu = if foreign() == "linux/arm64" {
        "qemu-aarch64"
    } else {
        "qemu-x86_64"
    };
    assert!(err.contains(&format!("{qemu} is registered")), "{err}");
    assert!(
        err.contains("apt-get install qemu-user-static binfmt-support"),
        "{err}"
    );
    assert!(err.contains("qemu-user-binfmt"), "{err}");
    assert!(!err.contains("exec format error"), "{err}");
    // The step before it ran; the RUN never started a process.
    assert!(err.contains("COPY . /ctx"), "{err}");
}

/// Fails the test under STRATA_TEST_STRICT, else reports it NOT RUN.
fn missing<T>(what: &str) -> Option<T> {
    if strata_testkit::strict() {
        panic!("test requirement missing: {what} (STRATA_TEST_STRICT is set)");
    }
    strata_testkit::not_run(&format!("{what} is missing"));
    None
}

/// qemu-aarch64 registered in binfmt_misc with the F flag, on an x86-64
/// host; None (a failure under STRATA_TEST_STRICT) when it is missing.
fn arm64_qemu() -> Option<()> {
    if host_arch() != "amd64" {
        strata_testkit::not_run("emulation is tested on x86-64 hosts (arm64 foreign)");
        return None;
    }
    let arm: strata_oci::Platform = "linux/arm64".parse().unwrap();
    match strata_build::check_emulation(&arm, std::path::Path::new(strata_build::BINFMT_DIR)) {
        Ok(()) => Some(()),
        Err(e) => missing(&format!("qemu-aarch64 in binfmt_misc ({e}; {})", e.hint())),
    }
}

/// An arm64 busybox-static binary (`STRATA_TEST_BUSYBOX_ARM64`, which
/// scripts/test fetches with `apt-get download busybox-static:arm64`) and
/// [`arm64_qemu`]; None (a failure under STRATA_TEST_STRICT) when either is
/// missing.
fn arm64_emulation() -> Option<std::path::PathBuf> {
    arm64_qemu()?;
    match std::env::var_os("STRATA_TEST_BUSYBOX_ARM64").map(std::path::PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => missing("STRATA_TEST_BUSYBOX_ARM64 (an arm64 busybox-static binary)"),
    }
}

/// A root file system tar of `busybox` with a few applets.
fn busybox_tar_of(busybox: &std::path::Path, dest: &std::path::Path) {
    let mut b = tar::Builder::new(std::fs::File::create(dest).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h.clone(), "bin/", std::io::empty())
        .unwrap();
    b.append_data(&mut h, "tmp/", std::io::empty()).unwrap();
    let bytes = std::fs::read(busybox).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bytes.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bytes[..]).unwrap();
    for applet in ["sh", "echo", "uname", "cat"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn run_steps_run_natively_and_under_qemu_in_one_build() {
    if !strata_testkit::require_root() {
        return;
    }
    let Some(arm_busybox) = arm64_emulation() else {
        return;
    };
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM bb:${TARGETARCH}\nARG TARGETARCH\nRUN echo \"$(uname -m) $TARGETARCH\" > /arch\n",
    )]) else {
        return;
    };
    let host = busybox_tar(s._dir.path()).unwrap();
    let arm = s._dir.path().join("arm.tar");
    busybox_tar_of(&arm_busybox, &arm);
    ok(
        &s.root,
        &[
            "import",
            host.to_str().unwrap(),
            "bb:amd64",
            "-c",
            "ENV PATH=/bin",
        ],
    );
    ok(
        &s.root,
        &[
            "import",
            "--platform",
            "linux/arm64",
            arm.to_str().unwrap(),
            "bb:arm64",
            "-c",
            "ENV PATH=/bin",
        ],
    );
    let out = s._dir.path().join("out");
    ok(
        &s.root,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "uname",
            "-o",
            &format!("type=local,dest={}", out.display()),
            s.ctx.to_str().unwrap(),
        ],
    );
    let arch = |p: &str| std::fs::read_to_string(out.join(p).join("arch")).unwrap();
    assert_eq!(arch("linux_amd64"), "x86_64 amd64\n");
    assert_eq!(arch("linux_arm64"), "aarch64 arm64\n");
    // The image for this machine runs; the arm64 one through qemu too.
    assert_eq!(cat(&s.root, "uname", "/arch"), "x86_64 amd64\n");
}

/// Imports a host busybox as `bb:amd64` and the arm64 one as `bb:arm64`
/// (PATH set), and assembles them into the index `bb:multi`.
fn busybox_pair(root: &std::path::Path, dir: &std::path::Path, arm_busybox: &std::path::Path) {
    let host = busybox_tar(dir).unwrap();
    let arm = dir.join("arm.tar");
    busybox_tar_of(arm_busybox, &arm);
    for (tar, platform, name) in [
        (&host, "linux/amd64", "bb:amd64"),
        (&arm, "linux/arm64", "bb:arm64"),
    ] {
        ok(
            root,
            &[
                "import",
                "--platform",
                platform,
                tar.to_str().unwrap(),
                name,
                "-c",
                "ENV PATH=/bin",
            ],
        );
    }
    ok(
        root,
        &["manifest", "create", "bb:multi", "bb:amd64", "bb:arm64"],
    );
}

#[test]
fn run_platform_picks_from_an_index_and_emulates_another_cpu() {
    if !strata_testkit::require_root() {
        return;
    }
    let Some(arm_busybox) = arm64_emulation() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    busybox_pair(&root, dir.path(), &arm_busybox);
    let uname = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["uname", "-m"]);
        ok(&root, &all)
    };
    // From the index: the host's by default, the one asked for otherwise.
    assert_eq!(uname(&["bb:multi"]), "x86_64\n");
    assert_eq!(
        uname(&["--platform", "linux/arm64", "bb:multi"]),
        "aarch64\n"
    );
    assert_eq!(
        uname(&["--platform", "linux/amd64", "bb:multi"]),
        "x86_64\n"
    );
    // A single-platform image of another CPU, with or without --platform
    // (without it, docker's warning).
    assert_eq!(uname(&["--platform", "arm64", "bb:arm64"]), "aarch64\n");
    let out = run(&root, &["run", "--rm", "bb:arm64", "uname", "-m"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "aarch64\n");
    assert!(
        stderr(&out).contains("does not match this machine's"),
        "{}",
        stderr(&out)
    );
    // A platform the image is not for is refused, as docker does.
    let out = run(
        &root,
        &[
            "run",
            "--rm",
            "--platform",
            "linux/amd64",
            "bb:arm64",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is for linux/arm64, not the requested linux/amd64"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &root,
        &[
            "run",
            "--rm",
            "--platform",
            "linux/s390x",
            "bb:multi",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no image for linux/s390x in bb:multi"),
        "{}",
        stderr(&out)
    );
    // A bad platform is a usage error.
    let out = run(&root, &["run", "--platform", "linux/pentium", "bb:multi"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"pentium\" is not a known architecture"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_of_another_cpu_without_binfmt_fails_fast_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let Some(tar) = busybox_tar(dir.path()) else {
        return;
    };
    // busybox declared as the foreign platform's: the check comes before
    // any container exists, so its bytes do not matter.
    ok(
        &root,
        &[
            "import",
            "--platform",
            foreign(),
            tar.to_str().unwrap(),
            "bb",
        ],
    );
    let binfmt = dir.path().join("binfmt");
    std::fs::create_dir_all(&binfmt).unwrap();
    std::fs::write(binfmt.join("status"), "enabled\n").unwrap();
    let out = cmd(&root)
        .env("STRATA_BINFMT_DIR", &binfmt)
        .args([
            "run",
            "--rm",
            "--platform",
            foreign(),
            "bb",
            "/bin/busybox",
            "true",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&format!("cannot run bb ({})", foreign())),
        "{err}"
    );
    assert!(err.contains("is registered in binfmt_misc"), "{err}");
    assert!(
        err.contains("hint: install qemu and its binfmt_misc registrations: `apt-get install qemu-user-static binfmt-support`"),
        "{err}"
    );
    assert!(!err.contains("exec format error"), "{err}");
    // No container was left behind.
    assert_eq!(ok(&root, &["ps", "-a", "--ids"]), "");
}

#[test]
fn an_index_is_pushed_whole_and_pulled_per_platform() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ctx = context(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETARCH\nCOPY a /a-${TARGETARCH}\n",
            ),
            ("a", "a\n"),
        ],
    );
    let index = ok(
        &root,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "app:1",
            ctx.to_str().unwrap(),
        ],
    );
    let index = index.trim();
    let srv_root = dir.path().join("srv");
    let srv = Serve::start(&srv_root, &[]);
    let dest = format!("{}/team/app:1", srv.addr);
    ok(&root, &["push", "app:1", &dest]);
    // Pulled for one platform: that platform's manifest, reached through
    // the same index digest.
    for (platform, arch) in [("linux/arm64", "arm64"), ("linux/amd64", "amd64")] {
        let fresh = dir.path().join(format!("pull-{arch}"));
        ok(&fresh, &["pull", "--platform", platform, &dest]);
        let v = inspect(&fresh, &dest);
        assert_eq!(v["Architecture"], arch);
        assert_eq!(v["Digest"], index, "{v}");
    }
    // `strata serve` over the build store serves the index by its tag.
    let built = Serve::start(&root, &[]);
    let fresh = dir.path().join("pull-served");
    let name = format!("{}/app:1", built.addr);
    ok(&fresh, &["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(inspect(&fresh, &name)["Architecture"], "arm64");
    drop(built);
    // The registry holds the whole index (both manifests).
    let log = srv.stop();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("PUT") && l.contains("/manifests/"))
            .count(),
        3,
        "{log}"
    );
}

#[test]
fn manifest_create_assembles_an_index_from_single_platform_images() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ctx = context(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETARCH\nCOPY a /a-${TARGETARCH}\n",
            ),
            ("a", "a\n"),
        ],
    );
    let ctx = ctx.to_str().unwrap();
    for arch in ["amd64", "arm64"] {
        let p = format!("linux/{arch}");
        ok(
            &root,
            &[
                "build",
                "-q",
                "--platform",
                &p,
                "-t",
                &format!("app:{arch}"),
                ctx,
            ],
        );
    }
    let digest = ok(
        &root,
        &["manifest", "create", "app:multi", "app:amd64", "app:arm64"],
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&root, &["manifest", "inspect", "app:multi"])).unwrap();
    let platforms: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"], "{v}");
    // The same index a two-platform build makes.
    let built = ok(
        &dir.path().join("other"),
        &["build", "-q", "--platform", "linux/amd64,linux/arm64", ctx],
    );
    assert_eq!(digest.trim(), built.trim());
    // Two images for one platform are refused.
    std::fs::write(dir.path().join("ctx/a"), "other\n").unwrap();
    ok(
        &root,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64",
            "-t",
            "other",
            ctx,
        ],
    );
    let out = run(&root, &["manifest", "create", "bad", "other", "app:multi"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("two images for linux/amd64"),
        "{}",
        stderr(&out)
    );
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let dest = format!("{}/app:multi", srv.addr);
    ok(&root, &["manifest", "push", "app:multi", &dest]);
    let fresh = dir.path().join("fresh");
    ok(&fresh, &["pull", "--platform", "linux/arm64", &dest]);
    assert_eq!(inspect(&fresh, &dest)["Architecture"], "arm64");
}

/// Runs `scripts/base-images ARGS` into the store `root` (rootfs tarballs
/// cached under target/base-images, as the examples' tests do).
fn base_images(root: &std::path::Path, args: &[&str]) {
    let ws = strata_testkit::workspace_root();
    let out = std::process::Command::new(ws.join("scripts/base-images"))
        .args(args)
        .env("STRATA", strata_bin())
        .env("STRATA_ROOT", root)
        .env("BASE_CACHE", ws.join("target/base-images"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/base-images {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// A store with Debian minbase for amd64 and arm64 (`debian:bookworm-minbase`
/// an index of both), from `scripts/base-images --arch amd64,arm64 debian`
/// (debootstrap; the arm64 second stage under qemu).
fn debian_pair(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    if !strata_testkit::require_root() || !strata_testkit::require_tool("debootstrap") {
        return None;
    }
    arm64_qemu()?;
    let root = dir.join("root");
    base_images(&root, &["--arch", "amd64,arm64", "debian"]);
    Some(root)
}

#[test]
fn two_imported_debian_bases_build_one_index_natively_and_under_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = debian_pair(dir.path()) else {
        return;
    };
    for (tag, arch) in [("amd64", "amd64"), ("arm64", "arm64")] {
        let v = inspect(&root, &format!("debian:bookworm-minbase-{tag}"));
        assert_eq!(v["Architecture"], arch);
    }
    let ctx = context(
        dir.path(),
        &[(
            "Dockerfile",
            "FROM debian:bookworm-minbase\nARG TARGETARCH\n\
             RUN echo \"$(uname -m) $TARGETARCH $(dpkg --print-architecture)\" > /arch\n",
        )],
    );
    ok(
        &root,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "arch",
            ctx.to_str().unwrap(),
        ],
    );
    for (platform, want) in [
        ("linux/amd64", "x86_64 amd64 amd64\n"),
        ("linux/arm64", "aarch64 arm64 arm64\n"),
    ] {
        let got = ok(
            &root,
            &[
                "run",
                "--rm",
                "--platform",
                platform,
                "arch",
                "cat",
                "/arch",
            ],
        );
        assert_eq!(got, want, "{platform}");
    }
}

#[test]
fn the_cross_compile_pattern_builds_for_arm64_without_emulation() {
    if !strata_testkit::require_root() || !strata_testkit::require_tool("debootstrap") {
        return;
    }
    if host_arch() != "amd64" {
        strata_testkit::not_run("cross-compiling is tested on x86-64 hosts (to arm64)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    base_images(&root, &["debian"]);
    let ctx = context(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM --platform=$BUILDPLATFORM debian:bookworm-minbase AS build\n\
                 RUN apt-get update && apt-get install -y --no-install-recommends \
                     gcc-aarch64-linux-gnu libc6-dev-arm64-cross\n\
                 COPY hello.c .\n\
                 ARG TARGETARCH\n\
                 RUN test \"$TARGETARCH\" = arm64 && aarch64-linux-gnu-gcc -O2 -static -o /hello hello.c\n\
                 FROM scratch\n\
                 COPY --from=build /hello /hello\n",
            ),
            (
                "hello.c",
                "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
            ),
        ],
    );
    // No qemu at all: nothing of the target's runs in this build.
    let binfmt = dir.path().join("binfmt");
    std::fs::create_dir_all(&binfmt).unwrap();
    std::fs::write(binfmt.join("status"), "enabled\n").unwrap();
    let out = dir.path().join("out");
    let built = cmd(&root)
        .env("STRATA_BINFMT_DIR", &binfmt)
        .args(["build", "-q", "--platform", "linux/arm64", "-t", "hello"])
        .arg("-o")
        .arg(format!("type=local,dest={}", out.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    // An aarch64 ELF (e_machine 183), statically linked (no PT_INTERP).
    let elf = std::fs::read(out.join("hello")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183);
    assert!(!elf.windows(14).any(|w| w == b"/lib/ld-linux-"));
    // The image is one COPY layer over scratch, for arm64.
    let v = inspect_platform(&root, "hello", "linux/arm64");
    assert_eq!(v["Architecture"], "arm64", "{v}");
    assert_eq!(v["RootFS"]["diff_ids"].as_array().unwrap().len(), 1, "{v}");
    // Where qemu is there, it runs.
    let arm: strata_oci::Platform = "linux/arm64".parse().unwrap();
    if strata_build::check_emulation(&arm, std::path::Path::new(strata_build::BINFMT_DIR)).is_ok() {
        assert_eq!(
            ok(
                &root,
                &[
                    "run",
                    "--rm",
                    "--platform",
                    "linux/arm64",
                    "hello",
                    "/hello"
                ]
            ),
            "hello\n"
        );
    }
}
