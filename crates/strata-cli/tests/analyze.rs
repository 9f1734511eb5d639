//! End-to-end tests of `strata analyze` and `strata diff`: images built from
//! PRACTICES.md cases (file and directory deleted in a later layer,
//! duplicated content), attribution to Dockerfile lines, `--ci`, the
//! archive and OCI-layout sources, the HTML page in headless Chromium, and
//! the post-build summary.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn json(root: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(root, args)).unwrap()
}

fn wasted<'a>(r: &'a Value, path: &str) -> &'a Value {
    r["wasted_paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["path"] == path)
        .unwrap_or_else(|| panic!("no wasted path {path} in {:#}", r["wasted_paths"]))
}

const BAD: &str = "FROM busybox
RUN head -c 300000 /dev/urandom > /big.bin
RUN rm /big.bin
RUN mkdir -p /cache/sub && head -c 100000 /dev/urandom > /cache/a && head -c 50000 /dev/urandom > /cache/sub/b
RUN rm -rf /cache
COPY data.bin /opt/one.bin
COPY data.bin /opt/two.bin
";

const GOOD: &str = "FROM busybox
RUN head -c 300000 /dev/urandom > /big.bin && rm /big.bin
RUN mkdir -p /cache/sub && head -c 100000 /dev/urandom > /cache/a && rm -rf /cache
COPY data.bin /opt/one.bin
";

#[test]
fn analyze_reports_the_practices_cases_with_bytes_layers_and_lines() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(dir.path()) else {
        return;
    };
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(ctx.join("data.bin"), &data).unwrap();
    fs::write(ctx.join("Dockerfile"), BAD).unwrap();
    fs::write(ctx.join("Dockerfile.good"), GOOD).unwrap();

    // The base alone: whatever it wastes is subtracted below.
    let base = json(&root, &["analyze", "--format", "json", "busybox"]);
    let base_waste = base["wasted_bytes"].as_u64().unwrap();

    // Plain progress prints the summary after the build; -q does not.
    let out = cmd(&root)
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            "bad:1",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("analysis: "), "{stderr}");
    assert!(
        stderr.contains("/big.bin removed in layer 2 (Dockerfile:3)"),
        "{stderr}"
    );
    let quiet = ok(
        &root,
        &["build", "-q", "-t", "bad:1", ctx.to_str().unwrap()],
    );
    assert!(!quiet.contains("analysis"));

    let r = json(
        &root,
        &["analyze", "--format", "json", "--top", "50", "bad:1"],
    );
    let big = wasted(&r, "big.bin");
    assert_eq!(big["kind"], "removed");
    assert_eq!(big["bytes"], 300_000);
    assert_eq!(big["layers"], serde_json::json!([1]));
    assert_eq!(big["lines"], serde_json::json!([2]));
    assert_eq!(big["by_line"], 3);
    let cache = wasted(&r, "cache");
    assert_eq!(
        (cache["bytes"].as_u64(), cache["files"].as_u64()),
        (Some(150_000), Some(2))
    );
    assert_eq!(cache["lines"], serde_json::json!([4]));
    assert_eq!(cache["by_line"], 5);
    let two = wasted(&r, "opt/two.bin");
    assert_eq!(two["kind"], "duplicate");
    assert_eq!(two["bytes"], 40_000);
    assert_eq!(two["kept"], "opt/one.bin");
    assert_eq!(two["lines"], serde_json::json!([7]));
    assert_eq!(
        r["wasted_bytes"].as_u64().unwrap(),
        base_waste + 300_000 + 150_000 + 40_000
    );
    assert_eq!(r["layers"].as_array().unwrap().len(), 7);
    assert_eq!(r["layers"][2]["files_removed"], 1);

    // Every layer's files are on record (the new ones written while the
    // build wrote them, the base's by the first analysis), and the analysis
    // from the records is the analysis from the blobs, byte for byte; a
    // damaged record is read around.
    let records = root.join("sidecars/layer-files");
    for l in r["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap().replace(':', "-");
        assert!(
            records.join(format!("{d}.v1")).is_file(),
            "no record of {d}"
        );
    }
    let from_records = ok(&root, &["analyze", "--format", "json", "bad:1"]);
    let moved = dir.path().join("records");
    fs::rename(&records, &moved).unwrap();
    let from_blobs = ok(&root, &["analyze", "--format", "json", "bad:1"]);
    assert_eq!(from_records, from_blobs);
    // That analysis recorded them again; damage each one.
    let mut damaged = 0;
    for e in fs::read_dir(&records).unwrap() {
        let p = e.unwrap().path();
        let mut b = fs::read(&p).unwrap();
        let cut = b.len() - 3;
        b.truncate(cut);
        fs::write(&p, b).unwrap();
        damaged += 1;
    }
    assert_eq!(damaged, 7);
    assert_eq!(
        ok(&root, &["analyze", "--format", "json", "bad:1"]),
        from_blobs
    );
    fs::remove_dir_all(&moved).unwrap();
    // The base image's layer (found from the build record) is reported
    // apart: the Dockerfile's layers hold exactly the waste it made.
    assert_eq!(r["base_source"], "dockerfile");
    assert_eq!(r["base"]["layers"], 1);
    assert_eq!(r["layers"][0]["base"], true);
    assert_eq!(r["layers"][1]["base"], false);
    assert_eq!(r["base"]["wasted_bytes"].as_u64().unwrap(), base_waste);
    assert_eq!(r["added"]["wasted_bytes"], 300_000 + 150_000 + 40_000);
    let text = ok(&root, &["analyze", "bad:1"]);
    assert!(
        text.contains("wasted by the Dockerfile's layers 1-6")
            && text.contains("from the base image (layer 0, before the Dockerfile's first step)"),
        "{text}"
    );

    // The fixed Dockerfile wastes nothing beyond the base.
    ok(
        &root,
        &[
            "build",
            "-q",
            "-f",
            ctx.join("Dockerfile.good").to_str().unwrap(),
            "-t",
            "good:1",
            ctx.to_str().unwrap(),
        ],
    );
    let g = json(&root, &["analyze", "--format", "json", "good:1"]);
    assert_eq!(g["wasted_bytes"].as_u64().unwrap(), base_waste);

    // An image built FROM bad:1: bad:1's waste (its duplicate included) is
    // the base's now; the child's own copy of a base file is the child's.
    fs::write(
        ctx.join("Dockerfile.child"),
        "FROM bad:1\nCOPY data.bin /opt/three.bin\n",
    )
    .unwrap();
    ok(
        &root,
        &[
            "build",
            "-q",
            "-f",
            ctx.join("Dockerfile.child").to_str().unwrap(),
            "-t",
            "child:1",
            ctx.to_str().unwrap(),
        ],
    );
    let c = json(&root, &["analyze", "--format", "json", "child:1"]);
    let bad_waste = base_waste + 300_000 + 150_000 + 40_000;
    assert_eq!(c["base"]["layers"], 7);
    assert_eq!(c["base"]["wasted_bytes"].as_u64().unwrap(), bad_waste);
    assert_eq!(c["added"]["wasted_bytes"], 40_000);
    assert_eq!(c["added"]["duplicate_bytes"], 40_000);
    assert_eq!(c["wasted_bytes"].as_u64().unwrap(), bad_waste + 40_000);
    let three = wasted(&c, "opt/three.bin");
    assert_eq!(
        (three["kept"].as_str(), three["base_bytes"].as_u64()),
        (Some("opt/one.bin"), Some(0))
    );
    assert_eq!(wasted(&c, "opt/two.bin")["base_bytes"], 40_000);
    // --ci judges the child's 40 kB, not the 530 kB of the whole image.
    let child_ci = run(
        &root,
        &[
            "analyze",
            "--ci",
            "--lowest-efficiency",
            "0.5",
            "--highest-wasted-bytes",
            "100kB",
            "--highest-user-wasted-percent",
            "1",
            "child:1",
        ],
    );
    assert_eq!(
        child_ci.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&child_ci.stderr)
    );

    // --ci gates: the defaults (efficiency 0.9, 10%) fail the bad image.
    let ci = run(&root, &["analyze", "--ci", "bad:1"]);
    assert_eq!(
        ci.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&ci.stderr)
    );
    assert!(String::from_utf8_lossy(&ci.stderr).contains("FAIL: lowest-efficiency"));
    let lax = run(
        &root,
        &[
            "analyze",
            "--ci",
            "--lowest-efficiency",
            "0",
            "--highest-wasted-bytes",
            "1GB",
            "--highest-user-wasted-percent",
            "1",
            "bad:1",
        ],
    );
    assert_eq!(lax.status.code(), Some(0));

    // The same image from a docker-archive and an OCI layout.
    let tar = dir.path().join("bad.tar");
    ok(&root, &["save", "bad:1", "-o", tar.to_str().unwrap()]);
    let spec = format!("docker-archive:{}", tar.display());
    let a = json(&root, &["analyze", "--format", "json", &spec]);
    assert_eq!(a["wasted_bytes"], r["wasted_bytes"]);
    // Without the build record, -f maps the Dockerfile onto the history
    // and finds the same base layer; without either, an imported base
    // (no CMD in its history) is not told apart.
    let df = ctx.join("Dockerfile");
    let af = json(
        &root,
        &[
            "analyze",
            "--format",
            "json",
            "-f",
            df.to_str().unwrap(),
            &spec,
        ],
    );
    assert_eq!(af["base_source"], "dockerfile");
    assert_eq!(af["base"]["layers"], 1);
    assert_eq!(af["added"]["wasted_bytes"], r["added"]["wasted_bytes"]);
    assert_eq!(a["base_source"], Value::Null);
    assert_eq!(a["added"]["wasted_bytes"], a["wasted_bytes"]);
    let oci = dir.path().join("bad-oci");
    ok(
        &root,
        &[
            "save",
            "--format",
            "oci",
            "bad:1",
            "-o",
            oci.to_str().unwrap(),
        ],
    );
    let spec = format!("oci:{}", oci.display());
    let o = json(&root, &["analyze", "--format", "json", &spec]);
    assert_eq!(o["wasted_bytes"], r["wasted_bytes"]);

    // diff: the good image's RUNs leave nothing (no layer), so it is the
    // base plus the `COPY data.bin /opt/one.bin` layer, which has the same
    // content and digest as the bad image's: a push sends config + manifest.
    let d = json(&root, &["diff", "--format", "json", "bad:1", "good:1"]);
    assert_eq!(d["layers"].as_array().unwrap().len(), 2, "{d:#}");
    assert_eq!(
        (d["shared_layers"].as_u64(), d["new_layers"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(d["new_layer_bytes"], 0);
    assert_eq!(d["only_in_from"].as_array().unwrap().len(), 5);
    assert_eq!(d["config_changed"], true);
    assert!(d["push_bytes"].as_u64().unwrap() > 0 && d["push_bytes"].as_u64().unwrap() < 10_000);
    // And the other way round, all five bad layers are sent.
    let back = json(&root, &["diff", "--format", "json", "good:1", "bad:1"]);
    assert_eq!(back["new_layers"], 5);
    let sum: u64 = back["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"] != "shared")
        .map(|l| l["compressed_size"].as_u64().unwrap())
        .sum();
    assert_eq!(back["new_layer_bytes"].as_u64().unwrap(), sum);
    assert!(sum > 450_000, "{sum}");
    let files = ok(&root, &["diff", "--files", "bad:1", "good:1"]);
    assert!(files.contains("- /opt/two.bin"), "{files}");

    // HTML renders in headless Chromium.
    let html = dir.path().join("bad.html");
    ok(
        &root,
        &[
            "analyze",
            "--format",
            "html",
            "-o",
            html.to_str().unwrap(),
            "bad:1",
        ],
    );
    check_html_renders(&html, dir.path());

    // Garbage collection takes a layer's files record with its blob.
    let layer = r["layers"][2]["digest"].as_str().unwrap().replace(':', "-");
    let record = records.join(format!("{layer}.v1"));
    assert!(record.is_file());
    for image in ["bad:1", "child:1"] {
        ok(&root, &["rmi", image]);
    }
    // (The build cache keeps the layer too.)
    ok(&root, &["prune", "--all"]);
    assert!(!record.exists(), "{} outlived its layer", record.display());
}

/// Load the page in headless Chromium: the DOM it builds has the layer rows,
/// the treemap and the wasted paths, and a screenshot is written.
fn check_html_renders(html: &Path, dir: &Path) {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| strata_testkit::which(c).is_some())
    else {
        strata_testkit::require_tool("chromium");
        return;
    };
    let profile = dir.join("chromium-profile");
    let url = format!("file://{}", html.display());
    let base = |extra: &[&str]| {
        let mut c = Command::new(chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url);
        c
    };
    let dom = base(&["--dump-dom"]).output().unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("id=\"treemap\""), "{dom}");
    assert_eq!(dom.matches("class=\"layer\"").count(), 7, "{dom}");
    assert!(dom.contains("/big.bin"));
    let shot = dir.join("bad.png");
    let out = base(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,1600",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn analyze_and_diff_imported_images_without_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let make = |name: &str, extra: &[(&str, &[u8])]| {
        let tree = dir.path().join(name);
        fs::create_dir_all(tree.join("usr/share/doc/pkg")).unwrap();
        fs::create_dir_all(tree.join("var/lib/apt/lists")).unwrap();
        fs::write(tree.join("usr/share/doc/pkg/README"), vec![b'd'; 12_345]).unwrap();
        for (p, body) in extra {
            let f = tree.join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, body).unwrap();
        }
        let tar = dir.path().join(format!("{name}.tar"));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        tar
    };
    let lists: &[u8] = &[b'l'; 70_000];
    let a = make(
        "a",
        &[
            ("var/lib/apt/lists/x_Packages", lists),
            ("app/one", b"same bytes here"),
        ],
    );
    let b = make(
        "b",
        &[
            ("app/one", b"same bytes here"),
            ("app/two", b"same bytes here"),
        ],
    );
    ok(&root, &["import", a.to_str().unwrap(), "img:a"]);
    ok(&root, &["import", b.to_str().unwrap(), "img:b"]);

    let r = json(&root, &["analyze", "--format", "json", "img:a"]);
    let ids: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["apt-lists", "docs"]);
    assert_eq!(r["findings"][0]["bytes"], 70_000);
    assert_eq!(r["findings"][1]["bytes"], 12_345);
    assert_eq!(r["wasted_bytes"], 0);
    let text = ok(&root, &["analyze", "img:a"]);
    assert!(text.contains("apt package lists [apt-lists]"), "{text}");
    assert!(text.contains("Efficiency 100.0%"), "{text}");

    let rb = json(&root, &["analyze", "--format", "json", "img:b"]);
    assert_eq!(rb["duplicate_bytes"], 15);
    assert_eq!(rb["wasted_paths"][0]["path"], "app/two");

    let d = json(&root, &["diff", "--format", "json", "img:a", "img:b"]);
    assert_eq!(
        (d["shared_layers"].as_u64(), d["new_layers"].as_u64()),
        (Some(0), Some(1))
    );
    let layer = d["layers"][0]["compressed_size"].as_u64().unwrap();
    assert_eq!(d["new_layer_bytes"].as_u64().unwrap(), layer);
    assert!(d["push_bytes"].as_u64().unwrap() > layer);
    let same = json(&root, &["diff", "--format", "json", "img:a", "img:a"]);
    assert_eq!(same["new_layers"], 0);
    assert_eq!(same["config_changed"], false);

    // Errors name the problem.
    let missing = run(&root, &["analyze", "oci:/nonexistent/layout"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/layout"));
    let bad = run(
        &root,
        &["analyze", "--ci", "--highest-wasted-bytes", "lots", "img:a"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--highest-wasted-bytes"));
}
