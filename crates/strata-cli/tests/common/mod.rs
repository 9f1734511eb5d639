//! Helpers for the end-to-end tests that drive the `strata` binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The binary under test: `STRATA_TEST_BIN` when set (a long oracle run
/// against a copy of the binary, while the tree is rebuilt), else the one
/// cargo built.
pub fn strata_bin() -> String {
    std::env::var("STRATA_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_strata").to_owned())
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

/// A context directory with these files.
pub fn context(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let ctx = dir.join("ctx");
    for (name, body) in files {
        let p = ctx.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    ctx
}

pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ctx: PathBuf,
}

/// A store with busybox and a context; None when root or busybox is missing
/// outside CI.
pub fn setup(files: &[(&str, &str)]) -> Option<Setup> {
    if !strata_testkit::require_root() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = store_with_busybox(dir.path())?;
    let ctx = context(dir.path(), files);
    Some(Setup {
        _dir: dir,
        root,
        ctx,
    })
}

/// `strata build` with JSON progress; returns (image id, events).
pub fn build_json(root: &Path, ctx: &Path, extra: &[&str]) -> (String, Vec<Value>) {
    let mut args = vec!["build", "--progress", "json"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = ok(root, &args);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = events
        .iter()
        .find(|e| e["event"] == "done")
        .expect("no done event");
    (done["id"].as_str().unwrap().to_owned(), events)
}

/// (stage, step) -> "cached" | "miss" reason, for layer steps.
pub fn verdicts(events: &[Value]) -> BTreeMap<(u64, u64), String> {
    let mut m = BTreeMap::new();
    for e in events {
        let key = |e: &Value| {
            (
                e["id"]["stage"].as_u64().unwrap(),
                e["id"]["step"].as_u64().unwrap(),
            )
        };
        match e["event"].as_str() {
            Some("step_cached") => {
                m.insert(key(e), "cached".to_owned());
            }
            Some("step_miss") => {
                m.insert(
                    key(e),
                    e["explanation"]["reason"].as_str().unwrap().to_owned(),
                );
            }
            _ => {}
        }
    }
    m
}

/// Files of a layer blob: path -> (mode, uid, gid, content).
pub fn layer_files(root: &Path, digest: &str) -> BTreeMap<String, (u32, u64, u64, Vec<u8>)> {
    let mut ar = layer_archive(root, digest);
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = entry_path(&e);
        let h = e.header();
        let (mode, uid, gid) = (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, (mode, uid, gid, data));
    }
    out
}

/// A layer blob of the store, opened as a tar stream.
pub fn layer_archive(root: &Path, digest: &str) -> tar::Archive<flate2::read::GzDecoder<fs::File>> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let f = fs::File::open(root.join("blobs/sha256").join(hex)).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f))
}

/// An entry's path without the trailing slash of directories.
pub fn entry_path<R: Read>(e: &tar::Entry<R>) -> String {
    e.path()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches('/')
        .to_owned()
}

/// `strata` with no registry credentials from the environment or a docker
/// config (tests of the registry commands).
pub fn strata() -> Command {
    let mut c = Command::new(strata_bin());
    c.env_remove("STRATA_REGISTRY_USER")
        .env_remove("STRATA_REGISTRY_PASSWORD")
        .env("DOCKER_CONFIG", "/nonexistent-strata-test");
    c
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `strata serve` as a child process, its stderr (request log) in a file.
pub struct Serve {
    pub addr: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(root: &Path, extra: &[&str]) -> Serve {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = root.with_extension("log");
        let child = strata()
            .args(["--root", root.to_str().unwrap(), "serve", "--addr", &addr])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // From here the child is waited on by Drop.
        let serve = Serve { addr, child, log };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&serve.addr).is_ok() {
                return serve;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = serve.log.clone();
        drop(serve);
        panic!(
            "strata serve did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// SIGTERM, and a graceful exit.
    pub fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "strata serve exited with {status}");
        self.log()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
