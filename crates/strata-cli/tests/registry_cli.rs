//! `strata push/pull/login/logout/serve` end to end, and other tools
//! (skopeo, buildah, docker) against `strata serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{strata, Serve};
use strata_oci::{media_type, Descriptor, Digest, ImageConfig, Manifest, Reference, Store};

mod common;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A gzip'd tar layer holding one file: (blob, diffID).
fn layer(name: &str, content: &[u8]) -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, name, content).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// An image whose layers each hold one file, tagged `name` in the store.
fn make_image(store: &Store, name: &str, files: &[(&str, Vec<u8>)]) -> Descriptor {
    let mut layers = Vec::new();
    let mut config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    for (path, content) in files {
        let (blob, diff_id) = layer(path, content);
        let d = store.put_blob(&blob).unwrap();
        layers.push(Descriptor::new(
            media_type::OCI_LAYER_GZIP,
            d,
            blob.len() as u64,
        ));
        config.rootfs.diff_ids.push(diff_id);
    }
    config.config = Some(strata_oci::ContainerConfig {
        cmd: Some(vec!["/bin/sh".into()]),
        ..Default::default()
    });
    let c = store
        .put_json(media_type::OCI_CONFIG, &config.to_json())
        .unwrap();
    let m = store
        .put_json(
            media_type::OCI_MANIFEST,
            &Manifest::oci(c, layers).to_json(),
        )
        .unwrap();
    store.tag(&name.parse::<Reference>().unwrap(), &m).unwrap();
    m
}

fn ok(out: Output) -> (String, String) {
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "failed: {}\nstdout:\n{so}\nstderr:\n{se}",
        out.status
    );
    (so, se)
}

#[test]
fn push_and_pull_move_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let local = dir.path().join("local");
    let store = Store::open(&local).unwrap();
    let files = vec![
        ("deps.jar", noise(1, 1 << 20)),
        ("META-INF/m", noise(2, 1800)),
        ("org/loader", noise(3, 1300)),
        ("classes/App.class", noise(4, 170_000)),
    ];
    make_image(&store, "app:v1", &files);
    let root = local.to_str().unwrap();
    let dest1 = format!("{}/app:v1", srv.addr);
    let (out, _) = ok(strata()
        .args(["--root", root, "push", "app:v1", &dest1])
        .output()
        .unwrap());
    assert_eq!(out.matches(": Pushed").count(), 5, "{out}");
    assert!(
        out.contains("5 uploaded, 0 skipped (already exist), 0 mounted"),
        "{out}"
    );
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let before = srv.log();

    let mut v2 = files.clone();
    v2[3].1 = noise(5, 176_000);
    make_image(&store, "app:v2", &v2);
    let dest2 = format!("{}/app:v2", srv.addr);
    let (out, _) = ok(strata()
        .args(["--root", root, "push", "app:v2", &dest2])
        .output()
        .unwrap());
    assert_eq!(out.matches(": Layer already exists").count(), 3, "{out}");
    assert_eq!(out.matches(": Pushed").count(), 2, "{out}");
    assert!(
        out.contains("2 uploaded, 3 skipped (already exist), 0 mounted"),
        "{out}"
    );
    // Server side: one layer + config uploaded, one manifest.
    let log = srv.log();
    let new = &log[before.len()..];
    assert_eq!(
        new.lines()
            .filter(|l| l.starts_with("PUT /v2/app/blobs/uploads/"))
            .count(),
        2,
        "{new}"
    );
    assert_eq!(
        new.lines()
            .filter(|l| l.starts_with("PUT /v2/app/manifests/v2 201"))
            .count(),
        1,
        "{new}"
    );
    assert_eq!(
        new.lines()
            .filter(|l| l.starts_with("HEAD /v2/app/blobs/"))
            .count(),
        5,
        "{new}"
    );

    let other = dir.path().join("other");
    let oroot = other.to_str().unwrap();
    let (out, _) = ok(strata()
        .args(["--root", oroot, "pull", &dest1])
        .output()
        .unwrap());
    assert_eq!(out.matches(": Pull complete").count(), 5, "{out}");
    let (out, _) = ok(strata()
        .args(["--root", oroot, "pull", &dest2])
        .output()
        .unwrap());
    assert_eq!(out.matches(": Already exists").count(), 3, "{out}");
    assert!(out.contains("2 downloaded, 3 already present"), "{out}");
    let ostore = Store::open(&other).unwrap();
    assert!(ostore.verify().unwrap().problems.is_empty());
    assert_eq!(
        ostore.resolve(&dest2.parse().unwrap()).unwrap().digest,
        store.resolve(&"app:v2".parse().unwrap()).unwrap().digest
    );
    let log = srv.stop();
    assert!(log.contains("strata serve: stopped"), "{log}");
}

#[test]
fn login_logout_and_secrets_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("pa55-word-xyz", 4).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("ci:{hash}\n")).unwrap();
    let srv = Serve::start(
        &dir.path().join("srv"),
        &["--htpasswd", htpasswd.to_str().unwrap()],
    );
    let auth = dir.path().join("auth.json");
    let local = dir.path().join("local");
    make_image(
        &Store::open(&local).unwrap(),
        "l:1",
        &[("f", noise(1, 100))],
    );
    let root = local.to_str().unwrap();
    let dest = format!("{}/l:1", srv.addr);

    let out = strata()
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["--root", root, "push", "l:1", &dest])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("authentication required") && err.contains("hint: log in with `strata login"),
        "{err}"
    );

    let login = |pw: &str| {
        let mut child = strata()
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["login", &srv.addr, "-u", "ci", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let bad = login("wrong-password-123");
    assert_eq!(bad.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!all.contains("wrong-password-123"), "{all}");
    assert!(!auth.exists());
    let good = login("pa55-word-xyz");
    let (out, err) = ok(good);
    assert!(out.contains("Login Succeeded"));
    assert!(!out.contains("pa55") && !err.contains("pa55"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&auth).unwrap().mode() & 0o777, 0o600);

    let (out, err) = ok(strata()
        .env("REGISTRY_AUTH_FILE", &auth)
        .env("STRATA_LOG", "trace")
        .args([
            "--verbose",
            "--verbose",
            "--root",
            root,
            "push",
            "l:1",
            &dest,
        ])
        .output()
        .unwrap());
    assert!(out.contains("2 uploaded"), "{out}");
    // Not even trace logs show the password or the Basic header.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode("ci:pa55-word-xyz");
    assert!(
        !err.contains("pa55-word-xyz") && !err.contains(&b64),
        "secret in logs"
    );
    assert!(err.len() > 1000, "trace logging was on: {}", err.len());

    // Environment credentials work without a file.
    let (out, _) = ok(strata()
        .env("STRATA_REGISTRY_USER", "ci")
        .env("STRATA_REGISTRY_PASSWORD", "pa55-word-xyz")
        .env("REGISTRY_AUTH_FILE", dir.path().join("none.json"))
        .args([
            "--root",
            dir.path().join("p").to_str().unwrap(),
            "pull",
            &dest,
        ])
        .output()
        .unwrap());
    assert!(out.contains("pulled"), "{out}");

    let (out, _) = ok(strata()
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["logout", &srv.addr])
        .output()
        .unwrap());
    assert!(out.contains("Removing login credentials"), "{out}");
    let text = std::fs::read_to_string(&auth).unwrap();
    assert!(!text.contains(&srv.addr), "{text}");
}

/// Write the store image `name` as an OCI layout (for skopeo).
fn oci_layout(store: &Store, name: &str, dir: &Path) {
    let img = store.find_image(name).unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for d in img
        .layers
        .iter()
        .map(|l| &l.descriptor)
        .chain([&img.manifest.config, &img.descriptor])
    {
        std::fs::copy(store.blob_path(&d.digest), blobs.join(d.digest.hex())).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut d = img.descriptor.clone();
    d.annotations
        .insert("org.opencontainers.image.ref.name".into(), "latest".into());
    let idx = strata_oci::Index::oci(vec![d]);
    std::fs::write(dir.join("index.json"), idx.to_json()).unwrap();
}

#[test]
fn skopeo_copies_to_and_from_strata_serve() {
    if !strata_testkit::require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let store = Store::open(dir.path().join("local")).unwrap();
    make_image(
        &store,
        "sk:1",
        &[("a", noise(1, 300_000)), ("b", noise(2, 1000))],
    );
    let layout = dir.path().join("layout");
    oci_layout(&store, "sk:1", &layout);
    let dest = format!("docker://{}/skopeo/img:1", srv.addr);
    strata_testkit::run_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.display()),
        &dest,
    ]));
    let inspect = strata_testkit::run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &dest,
    ]));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2, "{inspect}");
    assert_eq!(
        v["Digest"],
        store
            .resolve(&"sk:1".parse().unwrap())
            .unwrap()
            .digest
            .to_string()
    );
    // strata pulls what skopeo pushed.
    let other = dir.path().join("other");
    let (out, _) = ok(strata()
        .args([
            "--root",
            other.to_str().unwrap(),
            "pull",
            &format!("{}/skopeo/img:1", srv.addr),
        ])
        .output()
        .unwrap());
    assert!(out.contains("3 downloaded"), "{out}");
    // skopeo copies what strata pushed, out of strata serve.
    ok(strata()
        .args([
            "--root",
            dir.path().join("local").to_str().unwrap(),
            "push",
            "sk:1",
            &format!("{}/strata/img:1", srv.addr),
        ])
        .output()
        .unwrap());
    let out_dir = dir.path().join("out");
    strata_testkit::run_ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/strata/img:1", srv.addr),
        &format!("dir:{}", out_dir.display()),
    ]));
    let img = store.find_image("sk:1").unwrap();
    for l in &img.layers {
        assert!(out_dir.join(l.descriptor.digest.hex()).is_file());
    }
    // Tag listing through skopeo.
    let tags = strata_testkit::run_ok(Command::new("skopeo").args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/skopeo/img", srv.addr),
    ]));
    assert!(tags.contains("\"1\""), "{tags}");
}

#[test]
fn buildah_pulls_and_pushes_with_strata_serve() {
    if !strata_testkit::require_tool("buildah") || !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let local = dir.path().join("local");
    make_image(
        &Store::open(&local).unwrap(),
        "bh:1",
        &[("etc/hello", b"hello\n".to_vec()), ("x", noise(1, 50_000))],
    );
    let img = format!("{}/bh/app:1", srv.addr);
    ok(strata()
        .args(["--root", local.to_str().unwrap(), "push", "bh:1", &img])
        .output()
        .unwrap());
    let broot = dir.path().join("containers");
    let buildah = || {
        let mut c = Command::new("buildah");
        c.args([
            "--root",
            broot.join("root").to_str().unwrap(),
            "--runroot",
            broot.join("run").to_str().unwrap(),
            "--storage-driver",
            "vfs",
        ]);
        c
    };
    strata_testkit::run_ok(buildah().args(["pull", "--tls-verify=false", &img]));
    let pushed = format!("{}/bh/pushed:2", srv.addr);
    strata_testkit::run_ok(buildah().args([
        "push",
        "--tls-verify=false",
        &img,
        &format!("docker://{pushed}"),
    ]));
    let (out, _) = ok(strata()
        .args([
            "--root",
            dir.path().join("back").to_str().unwrap(),
            "pull",
            &pushed,
        ])
        .output()
        .unwrap());
    assert!(out.contains("pulled"), "{out}");
    let _ = Command::new("buildah")
        .args([
            "--root",
            broot.join("root").to_str().unwrap(),
            "--runroot",
            broot.join("run").to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "rmi",
            "-a",
            "-f",
        ])
        .output();
}

/// dockerd, started for the test when none runs (root, no iptables, no bridge).
struct Dockerd {
    host: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Dockerd {
    fn get() -> Result<Dockerd, String> {
        if Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(Dockerd {
                host: std::env::var("DOCKER_HOST")
                    .unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
                child: None,
                _dir: None,
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let log = dir.path().join("dockerd.log");
        let child = Command::new("dockerd")
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--host",
                &host,
                "--data-root",
                dir.path().join("data").to_str().unwrap(),
                "--exec-root",
                dir.path().join("exec").to_str().unwrap(),
                "--pidfile",
                dir.path().join("docker.pid").to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .map_err(|e| format!("cannot start dockerd: {e}"))?;
        let mut d = Dockerd {
            host,
            child: Some(child),
            _dir: Some(dir),
        };
        for _ in 0..120 {
            if Command::new("docker")
                .args(["-H", &d.host, "info"])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Ok(d);
            }
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!(
                        "dockerd exited with {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "dockerd did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

#[test]
fn docker_pulls_from_strata_serve() {
    if !strata_testkit::require_tool("dockerd")
        || !strata_testkit::require_tool("docker")
        || !strata_testkit::require_root()
    {
        return;
    }
    let dockerd = match Dockerd::get() {
        Ok(d) => d,
        Err(e) => panic!("dockerd cannot run here: {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let local = dir.path().join("local");
    make_image(
        &Store::open(&local).unwrap(),
        "dk:1",
        &[("etc/hello", b"hi\n".to_vec()), ("y", noise(3, 20_000))],
    );
    let img = format!("{}/dk/app:1", srv.addr);
    ok(strata()
        .args(["--root", local.to_str().unwrap(), "push", "dk:1", &img])
        .output()
        .unwrap());
    let out =
        strata_testkit::run_ok(Command::new("docker").args(["-H", &dockerd.host, "pull", &img]));
    assert!(
        out.contains("Pull complete") || out.contains("Downloaded newer image"),
        "{out}"
    );
    eprintln!("docker pull said:\n{out}");
    let id = strata_testkit::run_ok(Command::new("docker").args([
        "-H",
        &dockerd.host,
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        &img,
    ]));
    let store = Store::open(&local).unwrap();
    assert_eq!(
        id.trim(),
        store.find_image("dk:1").unwrap().id().to_string()
    );
    let _ = Command::new("docker")
        .args(["-H", &dockerd.host, "rmi", &img])
        .output();
}

/// A context whose Dockerfile copies each file into a `FROM scratch` image.
fn scratch_context(dir: &Path, files: &[(&str, Vec<u8>)]) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut dockerfile = String::from("FROM scratch\n");
    for (name, content) in files {
        std::fs::write(ctx.join(name), content).unwrap();
        dockerfile.push_str(&format!("COPY {name} /{name}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// Rows of `strata images` as (repository, tag).
fn image_rows(root: &Path) -> Vec<(String, String)> {
    let (out, _) = ok(strata()
        .args(["--root", root.to_str().unwrap(), "images"])
        .output()
        .unwrap());
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect()
}

/// The README's promise: `strata build -t app:dev . && docker pull
/// localhost:5000/app:dev` with no push, and pushes to `strata serve` show
/// up in `strata images` on the store it serves.
#[test]
fn serve_serves_the_store_it_is_given() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let root = store_dir.to_str().unwrap();
    let ctx = scratch_context(
        dir.path(),
        &[
            ("hello.txt", b"hello\n".to_vec()),
            ("data", noise(1, 30_000)),
        ],
    );
    ok(strata()
        .args([
            "--root",
            root,
            "build",
            "-t",
            "app:dev",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    let srv = Serve::start(&store_dir, &[]);
    let store = Store::open(&store_dir).unwrap();
    let built = store.resolve(&"app:dev".parse().unwrap()).unwrap();
    let app = format!("{}/app:dev", srv.addr);

    // strata pulls what was only built.
    let other = dir.path().join("other");
    let oroot = other.to_str().unwrap();
    let (out, _) = ok(strata()
        .args(["--root", oroot, "pull", &app])
        .output()
        .unwrap());
    assert!(out.contains("3 downloaded"), "{out}");
    let ostore = Store::open(&other).unwrap();
    assert_eq!(
        ostore.resolve(&app.parse().unwrap()).unwrap().digest,
        built.digest
    );

    // skopeo sees it by name.
    if strata_testkit::require_tool("skopeo") {
        let inspect = strata_testkit::run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{app}"),
        ]));
        let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(v["Digest"], built.digest.to_string(), "{inspect}");
        assert_eq!(v["RepoTags"], serde_json::json!(["dev"]), "{inspect}");
    }

    // A push to the server is an image of the store it serves.
    make_image(&ostore, "web:2", &[("index.html", noise(2, 5000))]);
    let web = format!("{}/team/web:2", srv.addr);
    ok(strata()
        .args(["--root", oroot, "push", "web:2", &web])
        .output()
        .unwrap());
    let rows = image_rows(&store_dir);
    assert!(rows.contains(&("app".into(), "dev".into())), "{rows:?}");
    assert!(rows.contains(&("team/web".into(), "2".into())), "{rows:?}");
    assert_eq!(
        store.find_image("team/web:2").unwrap().id(),
        ostore.find_image("web:2").unwrap().id()
    );

    // docker pulls both, by name.
    if strata_testkit::require_tool("dockerd") && strata_testkit::require_tool("docker") {
        let dockerd = match Dockerd::get() {
            Ok(d) => d,
            Err(e) => panic!("dockerd cannot run here: {e}"),
        };
        for (name, id) in [
            (&app, store.find_image("app:dev").unwrap().id().to_string()),
            (
                &web,
                store.find_image("team/web:2").unwrap().id().to_string(),
            ),
        ] {
            strata_testkit::run_ok(Command::new("docker").args([
                "-H",
                &dockerd.host,
                "pull",
                name,
            ]));
            let got = strata_testkit::run_ok(Command::new("docker").args([
                "-H",
                &dockerd.host,
                "image",
                "inspect",
                "-f",
                "{{.Id}}",
                name,
            ]));
            assert_eq!(got.trim(), id, "{name}");
            eprintln!("docker pulled {name} as {id}");
            let _ = Command::new("docker")
                .args(["-H", &dockerd.host, "rmi", name])
                .output();
        }
    }
    let log = srv.stop();
    assert!(log.contains("GET /v2/app/manifests/dev 200"), "{log}");
}

/// `strata diff v1 v2` predicts exactly the bytes `strata push v2` then
/// sends to a registry holding v1, and the server receives them.
#[test]
fn diff_predicts_the_bytes_push_sends() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let root = local.to_str().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let build = |files: &[(&str, Vec<u8>)], tag: &str| {
        let ctx = scratch_context(dir.path(), files);
        ok(strata()
            .args(["--root", root, "build", "-t", tag, ctx.to_str().unwrap()])
            .output()
            .unwrap());
    };
    let mut files = vec![
        ("deps.bin", noise(1, 200_000)),
        ("conf.txt", b"level=1\n".to_vec()),
        ("app.bin", noise(2, 40_000)),
    ];
    build(&files, "app:v1");
    ok(strata()
        .args([
            "--root",
            root,
            "push",
            "app:v1",
            &format!("{}/app:v1", srv.addr),
        ])
        .output()
        .unwrap());
    files[2].1 = noise(3, 41_000);
    build(&files, "app:v2");

    let (out, _) = ok(strata()
        .args([
            "--root", root, "diff", "--format", "json", "app:v1", "app:v2",
        ])
        .output()
        .unwrap());
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    let predicted = d["push_bytes"].as_u64().unwrap();
    assert_eq!(d["new_layers"], 1, "{out}");
    assert!(d["config_changed"].as_bool().unwrap(), "{out}");
    let store = Store::open(&local).unwrap();
    let v2 = store.find_image("app:v2").unwrap();
    assert_eq!(d["manifest_bytes"], v2.manifest_raw.len() as u64, "{out}");
    assert_eq!(
        predicted,
        v2.layers[2].descriptor.size + v2.manifest.config.size + v2.manifest_raw.len() as u64,
        "{out}"
    );
    let (text, _) = ok(strata()
        .args(["--root", root, "diff", "app:v1", "app:v2"])
        .output()
        .unwrap());
    assert!(text.contains(&format!("({predicted} bytes:")), "{text}");

    let before = srv.log().len();
    let (out, _) = ok(strata()
        .args([
            "--root",
            root,
            "push",
            "app:v2",
            &format!("{}/app:v2", srv.addr),
        ])
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("({predicted} bytes)")),
        "diff predicted {predicted} bytes; push said:\n{out}"
    );
    // What the server read: upload bodies and the manifest.
    let log = srv.log();
    let received: u64 = log[before..]
        .lines()
        .filter(|l| l.starts_with("PUT ") || l.starts_with("PATCH ") || l.starts_with("POST "))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    eprintln!("diff predicted {predicted} bytes; the server received {received}");
    assert_eq!(received, predicted, "{}", &log[before..]);
}

/// A two-platform index built with strata (`app:1`, a file per arch) in a
/// store under `dir`; returns the store's path.
fn built_index(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nCOPY a /a-${TARGETARCH}\n",
    )
    .unwrap();
    std::fs::write(ctx.join("a"), noise(4, 10_000)).unwrap();
    let root = dir.join("store");
    ok(strata()
        .args(["--root", root.to_str().unwrap(), "build", "-q"])
        .args(["--platform", "linux/amd64,linux/arm64", "-t", "app:1"])
        .arg(&ctx)
        .output()
        .unwrap());
    root
}

/// The manifest digest and image ID of `platform`'s entry of `app:1`.
fn platform_image(store: &Store, platform: &str) -> (Digest, Digest) {
    let img = store
        .find_image_for("app:1", Some(&platform.parse().unwrap()))
        .unwrap();
    assert_eq!(
        img.config.architecture,
        platform.rsplit('/').next().unwrap()
    );
    (img.descriptor.digest.clone(), img.id().clone())
}

#[test]
fn skopeo_reads_a_pushed_index_and_picks_a_platform() {
    if !strata_testkit::require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = built_index(dir.path());
    let store = Store::open(&root).unwrap();
    let index = store.resolve(&"app:1".parse().unwrap()).unwrap();
    assert!(media_type::is_index(&index.media_type), "{index:?}");
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let dest = format!("{}/multi/app:1", srv.addr);
    ok(strata()
        .args(["--root", root.to_str().unwrap(), "push", "app:1", &dest])
        .output()
        .unwrap());
    // The registry holds the index itself, byte for byte.
    let raw = strata_testkit::run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]));
    assert_eq!(Digest::sha256(raw.as_bytes()), index.digest, "{raw}");
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["mediaType"], media_type::OCI_INDEX, "{raw}");
    let platforms: Vec<(String, String)> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (amd64, _) = platform_image(&store, "linux/amd64");
    let (arm64, _) = platform_image(&store, "linux/arm64");
    assert_eq!(
        platforms,
        [
            ("amd64".to_owned(), amd64.to_string()),
            ("arm64".to_owned(), arm64.to_string())
        ],
        "{raw}"
    );
    // --override-arch arm64 copies the arm64 manifest, unchanged.
    let out = dir.path().join("arm64");
    strata_testkit::run_ok(Command::new("skopeo").args([
        "copy",
        "--override-arch",
        "arm64",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("dir:{}", out.display()),
    ]));
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(Digest::sha256(&manifest), arm64);
    let m: Manifest = serde_json::from_slice(&manifest).unwrap();
    let config: ImageConfig =
        serde_json::from_slice(&std::fs::read(out.join(m.config.digest.hex())).unwrap()).unwrap();
    assert_eq!(config.architecture, "arm64");
}

#[test]
fn docker_pulls_an_index_from_strata_serve_per_platform() {
    if !strata_testkit::require_tool("dockerd")
        || !strata_testkit::require_tool("docker")
        || !strata_testkit::require_root()
    {
        return;
    }
    let dockerd = match Dockerd::get() {
        Ok(d) => d,
        Err(e) => panic!("dockerd cannot run here: {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let root = built_index(dir.path());
    let store = Store::open(&root).unwrap();
    let index = store.resolve(&"app:1".parse().unwrap()).unwrap();
    // `strata serve` over the build store: no push.
    let srv = Serve::start(&root, &[]);
    let name = format!("{}/app:1", srv.addr);
    let docker = |args: &[&str]| {
        strata_testkit::run_ok(
            Command::new("docker")
                .args(["-H", &dockerd.host])
                .args(args),
        )
    };
    let host = strata_oci::Platform::host();
    for platform in [format!("{host}"), "linux/arm64".to_owned()] {
        let mut pull = vec!["pull"];
        if platform != host.to_string() {
            pull.extend(["--platform", &platform]);
        }
        pull.push(&name);
        let said = docker(&pull);
        eprintln!("docker {pull:?} said:\n{said}");
        let (_, id) = platform_image(&store, &platform);
        let got = docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Architecture}} {{index .RepoDigests 0}}",
            &name,
        ]);
        let arch = platform.rsplit('/').next().unwrap();
        assert_eq!(
            got.trim(),
            format!("{id} {arch} {}/app@{}", srv.addr, index.digest),
            "{platform}"
        );
        let _ = docker(&["rmi", &name]);
    }
    // docker resolved the tag to the index, then fetched each platform's
    // manifest by its digest.
    let log = srv.stop();
    for platform in ["linux/amd64", "linux/arm64"] {
        let (manifest, _) = platform_image(&store, platform);
        assert!(
            log.contains(&format!("GET /v2/app/manifests/{manifest} 200")),
            "{platform}: {log}"
        );
    }
}
