//! Helpers for the end-to-end tests that drive the `strata` binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// A `strata` command on store `root`.
pub fn cmd(root: &Path) -> Command {
    let mut c = Command::new(strata_bin());
    c.env("STRATA_ROOT", root).env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Run and require success; returns stdout.
pub fn ok(root: &Path, args: &[&str]) -> String {
    let out = cmd(root).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "strata {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run, return the whole output.
pub fn run(root: &Path, args: &[&str]) -> Output {
    cmd(root).args(args).output().unwrap()
}

pub fn inspect(root: &Path, image: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(root, &["inspect", image])).unwrap();
    v[0].clone()
}

/// Layer digests, diffIDs and the image ID of an image.
pub fn identity(root: &Path, image: &str) -> (String, Vec<String>, Vec<String>) {
    let v = inspect(root, image);
    let layers = v["Layers"].as_array().unwrap();
    (
        v["Id"].as_str().unwrap().to_owned(),
        layers
            .iter()
            .map(|l| l["Digest"].as_str().unwrap().to_owned())
            .collect(),
        layers
            .iter()
            .map(|l| l["DiffID"].as_str().unwrap().to_owned())
            .collect(),
    )
}

/// The busybox rootfs tarball (None when busybox is unavailable and the
/// test is not strict).
pub fn busybox_tar(dir: &Path) -> Option<PathBuf> {
    let p = dir.join("busybox-rootfs.tar");
    if strata_testkit::busybox_rootfs_tar(&p) {
        Some(p)
    } else {
        None
    }
}

/// A store with busybox imported as `busybox:latest`.
pub fn store_with_busybox(dir: &Path) -> Option<PathBuf> {
    let tar = busybox_tar(dir)?;
    let root = dir.join("root");
    ok(
        &root,
        &[
            "import",
            tar.to_str().unwrap(),
            "busybox",
            "-c",
            r#"CMD ["sh"]"#,
            "-c",
            "ENV PATH=/bin:/usr/bin",
        ],
    );
    Some(root)
}

pub fn verify_clean(root: &Path) {
    let out = run(root, &["store", "verify"]);
    assert!(
        out.status.success(),
        "store verify found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
