//! Interop with the tools users already have: skopeo, umoci and docker read
//! what strata writes, and strata loads what they write.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use strata_testkit::{require_root, require_tool, run_ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The image ID printed by `strata load` for an untagged load.
fn loaded_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: "))
        .unwrap_or_else(|| panic!("no image ID in {out:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn skopeo_inspects_strata_oci_layout() {
    if !require_tool("skopeo") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    let layout = t.path().join("layout");
    ok(
        &root,
        &["save", "busybox", "--format", "oci", "-o", s(&layout)],
    );
    let out = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:latest", s(&layout))),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let mine = inspect(&root, "busybox");
    assert_eq!(v["Digest"], mine["Digest"]);
    assert_eq!(v["Layers"][0], mine["Layers"][0]["Digest"]);
    assert_eq!(v["Architecture"], mine["Architecture"]);
    // And the docker-archive.
    let archive = t.path().join("img.tar");
    ok(&root, &["save", "busybox", "-o", s(&archive)]);
    let out = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", s(&archive))),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    // skopeo names docker-archive layers by their uncompressed digest.
    assert_eq!(v["Layers"][0], mine["Layers"][0]["DiffID"], "{out}");
    let cfg = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", s(&archive))),
    );
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"][0], mine["Layers"][0]["DiffID"]);
}

#[test]
fn skopeo_copies_to_and_from_strata() {
    if !require_tool("skopeo") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    let (id, digests, diff_ids) = identity(&root, "busybox");
    let layout = t.path().join("layout");
    ok(
        &root,
        &["save", "busybox", "--format", "oci", "-o", s(&layout)],
    );
    let archive = t.path().join("img.tar");
    ok(&root, &["save", "busybox", "-o", s(&archive)]);

    // oci: -> oci-archive: (layers copied as they are).
    let oci_archive = t.path().join("sk-oci.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:latest", s(&layout)),
        &format!("oci-archive:{}:latest", s(&oci_archive)),
    ]));
    let r1 = t.path().join("r1");
    let out = ok(&r1, &["load", "-i", s(&oci_archive)]);
    let got = loaded_id(&out);
    assert_eq!(got, id);
    assert_eq!(
        identity(&r1, &got),
        (id.clone(), digests.clone(), diff_ids.clone())
    );
    verify_clean(&r1);

    // docker-archive: (strata's) -> docker-archive: (skopeo's own layout, uncompressed layers).
    let sk_docker = t.path().join("sk-docker.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", s(&archive)),
        &format!("docker-archive:{}:example.com/sk/bb:1", s(&sk_docker)),
    ]));
    let r2 = t.path().join("r2");
    let out = ok(&r2, &["load", "-i", s(&sk_docker)]);
    assert!(out.contains("Loaded image: example.com/sk/bb:1"), "{out}");
    let (id2, _, diff2) = identity(&r2, "example.com/sk/bb:1");
    assert_eq!(
        (id2, diff2),
        (id.clone(), diff_ids.clone()),
        "same config, same diffIDs"
    );
    verify_clean(&r2);

    // docker-archive: -> oci: directory.
    let sk_oci = t.path().join("sk-oci-dir");
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", s(&archive)),
        &format!("oci:{}:v1", s(&sk_oci)),
    ]));
    let r3 = t.path().join("r3");
    let got = loaded_id(&ok(&r3, &["load", "-i", s(&sk_oci)]));
    assert_eq!(identity(&r3, &got).2, diff_ids);
    verify_clean(&r3);
}

#[test]
fn umoci_unpacks_strata_oci_layout() {
    if !require_tool("umoci") || !require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    let layout = t.path().join("layout");
    ok(
        &root,
        &["save", "busybox", "--format", "oci", "-o", s(&layout)],
    );
    let bundle = t.path().join("bundle");
    run_ok(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:latest", s(&layout)),
        s(&bundle),
    ]));
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(bundle
        .join("rootfs/bin/sh")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    let config: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"], serde_json::json!(["sh"]));
}

/// dockerd, started for the test when it is not running.
struct Dockerd(Option<Child>);

impl Dockerd {
    fn ensure() -> Option<Dockerd> {
        if !require_root() || !require_tool("docker") || !require_tool("dockerd") {
            return None;
        }
        let ping = || {
            Command::new("docker")
                .arg("info")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if ping() {
            return Some(Dockerd(None));
        }
        let log =
            std::fs::File::create(std::env::temp_dir().join("strata-test-dockerd.log")).unwrap();
        // Wrapped at once so Drop stops it on every path.
        let guard = Dockerd(Some(
            Command::new("dockerd")
                .args(["--iptables=false", "--bridge=none"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if ping() {
                return Some(guard);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "dockerd did not come up in 60 s (see {}/strata-test-dockerd.log)",
            std::env::temp_dir().display()
        );
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            // SIGTERM so it cleans up, then wait.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

#[test]
fn docker_loads_and_runs_strata_archive_and_strata_loads_docker_save() {
    let Some(_dockerd) = Dockerd::ensure() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    ok(&root, &["tag", "busybox", "strata-interop/bb:1"]);
    let (id, _, diff_ids) = identity(&root, "strata-interop/bb:1");
    let archive = t.path().join("img.tar");
    ok(&root, &["save", "strata-interop/bb:1", "-o", s(&archive)]);
    let out = run_ok(Command::new("docker").args(["load", "-i", s(&archive)]));
    assert!(out.contains("Loaded image: strata-interop/bb:1"), "{out}");
    let docker_id = run_ok(Command::new("docker").args([
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        "strata-interop/bb:1",
    ]));
    assert_eq!(docker_id.trim(), id, "docker computes the same image ID");
    let hi = run_ok(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        "strata-interop/bb:1",
        "echo",
        "hi",
    ]));
    assert_eq!(hi, "hi\n");

    // What docker save writes (its own format), strata loads.
    let saved = t.path().join("docker-save.tar");
    run_ok(Command::new("docker").args(["save", "-o", s(&saved), "strata-interop/bb:1"]));
    let r2 = t.path().join("r2");
    let out = ok(&r2, &["load", "-i", s(&saved)]);
    assert!(out.contains("Loaded image: strata-interop/bb:1"), "{out}");
    let (id2, _, diff2) = identity(&r2, "strata-interop/bb:1");
    assert_eq!((id2, diff2), (id, diff_ids));
    verify_clean(&r2);
    let _ = Command::new("docker")
        .args(["rmi", "-f", "strata-interop/bb:1"])
        .output();
}
