//! The examples under examples/ build, run and show the effect each one is
//! about (PRACTICES.md cases 1, 2, 4 and 5). The Debian-based ones need
//! debootstrap and network access to Debian's and PyPI's mirrors.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::*;
use serde_json::Value;

fn examples() -> PathBuf {
    strata_testkit::workspace_root().join("examples")
}

/// Runs scripts/base-images for `which` into `root`. The rootfs tarballs are
/// cached under target/base-images, made once per test run.
fn base_image(root: &Path, which: &str) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let ws = strata_testkit::workspace_root();
    let out = Command::new(ws.join("scripts/base-images"))
        .arg(which)
        .env("STRATA", strata_bin())
        .env("STRATA_ROOT", root)
        .env("BASE_CACHE", ws.join("target/base-images"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/base-images {which} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies an example into a scratch directory (the tests change files).
fn copy_example(name: &str, to: &Path) -> PathBuf {
    let dest = to.join(name);
    let st = Command::new("cp")
        .args([
            "-a",
            examples().join(name).to_str().unwrap(),
            dest.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = fs::remove_dir_all(dest.join("target"));
    dest
}

fn build(root: &Path, ctx: &Path, file: &str, tag: &str) -> Vec<Value> {
    let out = ok(
        root,
        &[
            "build",
            "--progress",
            "json",
            "-f",
            ctx.join(file).to_str().unwrap(),
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ],
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The reason a step missed, or "cached", by step index (stage 0 only).
fn verdict(events: &[Value], stage: u64, step: u64) -> String {
    for e in events {
        if e["id"]["stage"] == stage && e["id"]["step"] == step {
            match e["event"].as_str() {
                Some("step_cached") => return "cached".into(),
                Some("step_miss") => return e["explanation"]["reason"].as_str().unwrap().into(),
                _ => {}
            }
        }
    }
    "none".into()
}

/// Sum of the compressed layer sizes of an image.
fn image_size(root: &Path, image: &str) -> u64 {
    inspect(root, image)["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Size"].as_u64().unwrap())
        .sum()
}

/// Uncompressed size of every layer of an image.
fn image_tar_size(root: &Path, image: &str) -> u64 {
    let mut total = 0;
    for l in identity(root, image).1 {
        let hex = l.strip_prefix("sha256:").unwrap();
        let f = fs::File::open(root.join("blobs/sha256").join(hex)).unwrap();
        let mut d = flate2::read::GzDecoder::new(f);
        total += std::io::copy(&mut d, &mut std::io::sink()).unwrap();
    }
    total
}

#[test]
fn quickstart_builds_runs_and_rebuilds_from_cache() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    base_image(&root, "busybox");
    let ctx = examples().join("quickstart");
    let first = build(&root, &ctx, "Dockerfile", "quickstart:1.0");
    assert!(first.iter().any(|e| e["event"] == "step_miss"));
    let out = ok(&root, &["run", "--rm", "quickstart:1.0"]);
    assert_eq!(
        out.trim(),
        "Hello, world! (greet 1.0, running as app on Linux)"
    );
    let out = ok(&root, &["run", "--rm", "quickstart:1.0", "strata"]);
    assert!(out.starts_with("Hello, strata!"), "{out}");
    let hist = ok(&root, &["history", "--no-trunc", "quickstart:1.0"]);
    assert!(
        hist.contains("COPY --from=build /greet /usr/local/bin/greet"),
        "{hist}"
    );
    let again = build(&root, &ctx, "Dockerfile", "quickstart:1.0");
    assert!(
        !again.iter().any(|e| e["event"] == "step_miss"),
        "a no-change rebuild ran steps"
    );
}

#[test]
fn java_layers_change_only_the_classes_layer() {
    if !strata_testkit::require_root()
        || !strata_testkit::require_tool("javac")
        || !strata_testkit::require_tool("jar")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    base_image(&root, "busybox");
    let ctx = copy_example("java-layers", dir.path());
    let sh = |args: &[&str]| {
        let out = Command::new(ctx.join("build.sh"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "build.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&[]);
    build(&root, &ctx, "Dockerfile.fat", "fat:1");
    build(&root, &ctx, "Dockerfile.layered", "layered:1");
    let (_, fat1, _) = identity(&root, "fat:1");
    let (_, lay1, _) = identity(&root, "layered:1");
    // busybox, WORKDIR /app, then lib, META-INF, org, classes.
    assert_eq!(lay1.len(), 6, "{lay1:?}");

    // A one-class change.
    let greeting = ctx.join("src/com/example/Greeting.java");
    let text = fs::read_to_string(&greeting)
        .unwrap()
        .replace("java-layers v1", "java-layers v2");
    fs::write(&greeting, text).unwrap();
    sh(&[]);
    let fat_events = build(&root, &ctx, "Dockerfile.fat", "fat:2");
    let events = build(&root, &ctx, "Dockerfile.layered", "layered:2");
    let (_, fat2, _) = identity(&root, "fat:2");
    let (lay2_id, lay2, _) = identity(&root, "layered:2");
    // The layered image differs in the classes layer only...
    assert_eq!(lay1[..5], lay2[..5], "dependency/loader layers changed");
    assert_ne!(lay1[5], lay2[5], "the classes layer did not change");
    for step in 1..=4 {
        assert_eq!(
            verdict(&events, 0, step),
            "cached",
            "step {step}: {events:?}"
        );
    }
    assert_eq!(verdict(&events, 0, 5), "changed");
    // ...and the bytes that would travel are small, while the fat image
    // re-sends the whole jar.
    let size_of = |image: &str, digest: &str| -> u64 {
        inspect(&root, image)["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["Digest"] == digest)
            .unwrap()["Size"]
            .as_u64()
            .unwrap()
    };
    let classes = size_of("layered:2", &lay2[5]);
    let libs = size_of("layered:2", &lay2[2]);
    let jar = size_of("fat:2", &fat2[2]);
    assert_ne!(fat1[2], fat2[2]);
    assert!(verdict(&fat_events, 0, 2) == "changed");
    assert!(
        classes * 20 < jar,
        "classes layer {classes} B vs fat jar layer {jar} B"
    );
    assert!(
        classes * 20 < libs,
        "classes layer {classes} B vs lib layer {libs} B"
    );
    eprintln!("java-layers: fat jar layer {jar} B; layered: lib {libs} B, classes {classes} B");

    // Re-extracting the jar gives every file a new mtime: nothing changes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sh(&["extract"]);
    let events = build(&root, &ctx, "Dockerfile.layered", "layered:3");
    assert_eq!(
        identity(&root, "layered:3").0,
        lay2_id,
        "new mtimes changed the image"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "step_miss"),
        "new mtimes missed the cache"
    );
}

/// Debian-based examples share the minbase rootfs (debootstrap, once).
fn debian_store(dir: &Path) -> Option<PathBuf> {
    if !strata_testkit::require_root() || !strata_testkit::require_tool("debootstrap") {
        return None;
    }
    let root = dir.join("root");
    base_image(&root, "debian");
    Some(root)
}

#[test]
fn apt_cleanup_delete_in_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = debian_store(dir.path()) else {
        return;
    };
    let ctx = examples().join("apt-cleanup");
    build(&root, &ctx, "Dockerfile.two-runs", "apt:two-runs");
    build(&root, &ctx, "Dockerfile.one-run", "apt:one-run");
    // The archive the two-run version downloads and deletes too late.
    let (_, layers, _) = identity(&root, "apt:two-runs");
    let mut deb_size = 0;
    for l in &layers[1..] {
        let hex = l.strip_prefix("sha256:").unwrap();
        let f = fs::File::open(root.join("blobs/sha256").join(hex)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            // (The later RUN rm adds a `.wh.` whiteout of the same name.)
            if e.path().unwrap().to_string_lossy().ends_with(".deb") {
                deb_size = deb_size.max(e.header().size().unwrap());
            }
        }
    }
    assert!(deb_size > 1_000_000, "no .deb found in the two-run image");
    let two = image_tar_size(&root, "apt:two-runs");
    let one = image_tar_size(&root, "apt:one-run");
    let diff = two - one;
    eprintln!(
        "apt-cleanup: two RUNs {two} B, one RUN {one} B, difference {diff} B, .deb {deb_size} B"
    );
    // The difference is the archive (plus a few tar headers and the whiteout).
    assert!(
        diff >= deb_size && diff < deb_size + 64 * 1024,
        "difference {diff} B is not the archive's {deb_size} B"
    );
    let (a, b) = (
        image_size(&root, "apt:two-runs"),
        image_size(&root, "apt:one-run"),
    );
    assert!(a > b + deb_size * 9 / 10, "compressed: {a} vs {b}");

    // The SBOM of a real Debian image lists exactly what dpkg says is
    // installed in its file system.
    if strata_testkit::require_tool("dpkg-query") {
        let rootfs = dir.path().join("rootfs");
        let df = ctx.join("Dockerfile.one-run");
        ok(
            &root,
            &[
                "build",
                "-q",
                "-f",
                df.to_str().unwrap(),
                "-o",
                &format!("type=local,dest={}", rootfs.display()),
                ctx.to_str().unwrap(),
            ],
        );
        let out = Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                rootfs.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: std::collections::BTreeSet<(String, String)> =
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("ii"))
                .filter_map(|l| {
                    let mut f = l.split('\t').skip(1);
                    Some((f.next()?.to_owned(), f.next()?.to_owned()))
                })
                .collect();
        let spdx: Value =
            serde_json::from_str(&ok(&root, &["sbom", "apt:one-run", "--format", "spdx"])).unwrap();
        let got: std::collections::BTreeSet<(String, String)> = spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["SPDXID"] != "SPDXRef-Image")
            .filter(|p| {
                p["externalRefs"].as_array().is_some_and(|r| {
                    r.iter().any(|x| {
                        x["referenceLocator"]
                            .as_str()
                            .is_some_and(|l| l.starts_with("pkg:deb/"))
                    })
                })
            })
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["versionInfo"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(want.len() > 80, "{} packages", want.len());
        assert_eq!(got, want);
        eprintln!(
            "apt-cleanup: the SBOM lists the {} packages dpkg-query does",
            want.len()
        );
    }
}

#[test]
fn multistage_ships_only_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = debian_store(dir.path()) else {
        return;
    };
    base_image(&root, "busybox");
    let ctx = examples().join("multistage");
    build(&root, &ctx, "Dockerfile.single", "hello:single");
    build(&root, &ctx, "Dockerfile", "hello:multi");
    let single = image_size(&root, "hello:single");
    let multi = image_size(&root, "hello:multi");
    eprintln!("multistage: single-stage {single} B, multi-stage {multi} B");
    assert!(
        multi * 10 < single,
        "multi-stage {multi} B is not much smaller than {single} B"
    );
    let out = ok(&root, &["run", "--rm", "hello:multi"]);
    assert!(out.starts_with("Hello from a"), "{out}");
}

#[test]
fn ordering_keeps_the_install_cached() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = debian_store(dir.path()) else {
        return;
    };
    let ctx = copy_example("ordering", dir.path());
    let out = Command::new(ctx.join("fetch-wheels.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "fetch-wheels.sh (pip download) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    build(&root, &ctx, "Dockerfile.bad", "order:bad");
    build(&root, &ctx, "Dockerfile", "order:good");
    let out = ok(&root, &["run", "--rm", "order:good"]);
    assert!(out.contains("Hello from ordering v1"), "{out}");
    // A source change.
    let app = ctx.join("src/app.py");
    let text = fs::read_to_string(&app).unwrap().replace("v1", "v2");
    fs::write(&app, text).unwrap();
    let bad = build(&root, &ctx, "Dockerfile.bad", "order:bad");
    let good = build(&root, &ctx, "Dockerfile", "order:good");
    // bad: FROM, RUN apt, WORKDIR, COPY . ., RUN pip -> the install reruns.
    assert_eq!(verdict(&bad, 0, 3), "changed", "{bad:?}");
    assert_eq!(verdict(&bad, 0, 4), "earlier_step");
    // good: COPY requirements.txt and RUN pip stay cached; only COPY src/ runs.
    assert_eq!(verdict(&good, 0, 3), "cached");
    assert_eq!(verdict(&good, 0, 4), "cached", "{good:?}");
    assert_eq!(verdict(&good, 0, 5), "changed");
    let out = ok(&root, &["run", "--rm", "order:good"]);
    assert!(out.contains("Hello from ordering v2"), "{out}");
}
