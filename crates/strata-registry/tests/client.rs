//! The client against `strata serve`: minimal traffic, mounts, chunks,
//! resume, platforms, auth, TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use strata_oci::{media_type, Descriptor, Digest, Index, Platform, Reference, Store};
use strata_registry::{
    AuthConfig, BlobOutcome, Client, ClientOptions, Credential, Error, Event, Progress,
    ServeOptions,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Recorder {
    fn outcomes(&self) -> Vec<BlobOutcome> {
        self.0
            .lock()
            .unwrap()
            .drain(..)
            .filter_map(|e| match e {
                Event::BlobDone { outcome, .. } => Some(outcome),
                _ => None,
            })
            .collect()
    }
}

fn client_with(rec: Arc<Recorder>) -> Client {
    Client::new(ClientOptions {
        progress: rec,
        ..ClientOptions::default()
    })
    .unwrap()
}

/// The PRACTICES.md case: push an image, change one layer, push again:
/// exactly one layer plus config and manifest travel; the rest are
/// reported as existing. Counted on the server side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_again_after_one_layer_changed_uploads_only_that_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, server_store, reqs, _stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let store = Store::open(dir.path().join("local")).unwrap();
    let deps = noise(1, 3 << 20);
    let meta = noise(2, 2000);
    let loader = noise(3, 1500);
    let classes_v1 = noise(4, 170_000);
    make_image(
        &store,
        "app:v1",
        &[
            ("lib/deps.jar", deps.clone()),
            ("META-INF/m", meta.clone()),
            ("org/loader", loader.clone()),
            ("classes/App.class", classes_v1),
        ],
    );
    let rec = Arc::new(Recorder::default());
    let client = client_with(rec.clone());
    let dest: Reference = format!("{addr}/team/app:v1").parse().unwrap();
    let s1 = client.push(&store, "app:v1", &dest).await.unwrap();
    assert_eq!((s1.uploaded, s1.skipped, s1.mounted), (5, 0, 0));
    let first = reqs.take();
    assert_eq!(Requests::count(&first, "PUT", "/manifests/"), 1);

    // A code change: only the classes layer differs.
    let classes_v2 = noise(5, 176_000);
    make_image(
        &store,
        "app:v2",
        &[
            ("lib/deps.jar", deps),
            ("META-INF/m", meta),
            ("org/loader", loader),
            ("classes/App.class", classes_v2.clone()),
        ],
    );
    let dest2: Reference = format!("{addr}/team/app:v2").parse().unwrap();
    let s2 = client.push(&store, "app:v2", &dest2).await.unwrap();
    assert_eq!(
        (s2.uploaded, s2.skipped, s2.mounted),
        (2, 3, 0),
        "one layer + config"
    );
    let outcomes = rec.outcomes();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == BlobOutcome::Exists)
            .count(),
        3
    );
    let second = reqs.take();
    // Server side: 5 HEADs, 2 uploads finished (layer + config), 1 manifest.
    assert_eq!(Requests::count(&second, "HEAD", "/blobs/"), 5);
    assert_eq!(Requests::count(&second, "PUT", "/blobs/uploads/"), 2);
    assert_eq!(Requests::count(&second, "PUT", "/manifests/"), 1);
    let uploaded: u64 = second
        .iter()
        .filter(|l| l.path.contains("/blobs/uploads/"))
        .map(|l| l.bytes_in)
        .sum();
    let (layer_blob, _) = layer("classes/App.class", &classes_v2);
    assert!(
        uploaded < layer_blob.len() as u64 + 4096,
        "uploaded {uploaded} bytes"
    );
    // What was sent: those uploads and the manifest, as the server read them.
    let manifest_in: u64 = second
        .iter()
        .filter(|l| l.method == "PUT" && l.path.contains("/manifests/"))
        .map(|l| l.bytes_in)
        .sum();
    assert_eq!(s2.manifest_bytes, manifest_in);
    assert_eq!(s2.bytes_sent, uploaded + manifest_in);

    // Pull both into a fresh store: the second pull fetches only the delta.
    let other = Store::open(dir.path().join("other")).unwrap();
    let p1 = client.pull(&other, &dest).await.unwrap();
    assert_eq!((p1.downloaded, p1.present), (5, 0));
    let p2 = client.pull(&other, &dest2).await.unwrap();
    assert_eq!((p2.downloaded, p2.present), (2, 3));
    assert!(rec.outcomes().contains(&BlobOutcome::AlreadyPresent));
    assert_eq!(
        other.resolve(&dest2).unwrap().digest,
        store.resolve(&"app:v2".parse().unwrap()).unwrap().digest
    );
    let img = other.find_image(&dest2.to_string()).unwrap();
    assert_eq!(img.layers.len(), 4);
    assert_verified(&other);
    assert_verified(&server_store);
}

#[tokio::test]
async fn blobs_known_elsewhere_are_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _s, reqs, _stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let store = Store::open(dir.path().join("local")).unwrap();
    make_image(
        &store,
        "m:1",
        &[("a", noise(1, 1000)), ("b", noise(2, 1000))],
    );
    let client = Client::new(ClientOptions::default()).unwrap();
    client
        .push(&store, "m:1", &format!("{addr}/one/m:1").parse().unwrap())
        .await
        .unwrap();
    reqs.take();
    let s = client
        .push(&store, "m:1", &format!("{addr}/two/m:1").parse().unwrap())
        .await
        .unwrap();
    assert_eq!((s.uploaded, s.skipped, s.mounted), (0, 0, 3));
    let logs = reqs.take();
    assert_eq!(
        Requests::count(&logs, "POST", "/two/m/blobs/uploads/"),
        3,
        "{logs:?}"
    );
    assert!(logs
        .iter()
        .filter(|l| l.method == "POST")
        .all(|l| l.status == 201));

    // Pulled blobs are remembered too: pull from one, push to three.
    let fresh = Store::open(dir.path().join("fresh")).unwrap();
    let r: Reference = format!("{addr}/one/m:1").parse().unwrap();
    client.pull(&fresh, &r).await.unwrap();
    let s = client
        .push(
            &fresh,
            &r.to_string(),
            &format!("{addr}/three/m:1").parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(s.mounted, 3);
}

#[tokio::test]
async fn large_blobs_go_in_chunks_and_downloads_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _s, reqs, _stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let store = Store::open(dir.path().join("local")).unwrap();
    let big = noise(9, 1 << 20);
    let desc = make_image(&store, "big:1", &[("big", big)]);
    let client = Client::new(ClientOptions {
        monolithic_max: 100_000,
        chunk_size: 300_000,
        ..ClientOptions::default()
    })
    .unwrap();
    let dest: Reference = format!("{addr}/big:1").parse().unwrap();
    client.push(&store, "big:1", &dest).await.unwrap();
    let logs = reqs.take();
    // ~1 MiB of gzip'd noise in 300 kB chunks: 4 PATCHes; the config is small.
    assert_eq!(Requests::count(&logs, "PATCH", "/blobs/uploads/"), 4);
    assert_eq!(Requests::count(&logs, "PUT", "/blobs/uploads/"), 2);

    // A download interrupted earlier continues where it stopped.
    let fresh = Store::open(dir.path().join("fresh")).unwrap();
    let img = store.image(&desc, None).unwrap();
    let layer = &img.layers[0].descriptor;
    let data = std::fs::read(store.blob_path(&layer.digest)).unwrap();
    let half = data.len() / 2;
    {
        let mut w = fresh
            .writer(&format!("pull-{}", layer.digest), None)
            .unwrap();
        std::io::Write::write_all(&mut w, &data[..half]).unwrap();
    }
    let s = client.pull(&fresh, &dest).await.unwrap();
    assert_eq!(
        s.bytes_received,
        (data.len() - half) as u64 + img.config_raw.len() as u64
    );
    let logs = reqs.take();
    let get = logs
        .iter()
        .find(|l| l.path.ends_with(&layer.digest.to_string()) && l.method == "GET")
        .unwrap();
    assert_eq!(get.status, 206);
    assert_verified(&fresh);
}

fn arch_image(store: &Store, arch: &str) -> Descriptor {
    let cfg = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        layer(arch, arch.as_bytes()).1
    );
    let (blob, _) = layer(arch, arch.as_bytes());
    let l = store.put_blob(&blob).unwrap();
    let c = store
        .put_json(media_type::OCI_CONFIG, cfg.as_bytes())
        .unwrap();
    let m = strata_oci::Manifest::oci(
        c,
        vec![Descriptor::new(
            media_type::OCI_LAYER_GZIP,
            l,
            blob.len() as u64,
        )],
    )
    .to_json();
    let mut d = store.put_json(media_type::OCI_MANIFEST, &m).unwrap();
    d.platform = Some(format!("linux/{arch}").parse::<Platform>().unwrap());
    d
}

#[tokio::test]
async fn index_pushed_whole_and_pulled_for_one_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _s, _reqs, _stop) =
        start_server(&dir.path().join("server"), ServeOptions::default()).await;
    let store = Store::open(dir.path().join("local")).unwrap();
    let idx = Index::oci(vec![
        arch_image(&store, "amd64"),
        arch_image(&store, "arm64"),
    ])
    .to_json();
    let idesc = store.put_json(media_type::OCI_INDEX, &idx).unwrap();
    store.tag(&"multi:1".parse().unwrap(), &idesc).unwrap();
    let client = Client::new(ClientOptions::default()).unwrap();
    let dest: Reference = format!("{addr}/multi:1").parse().unwrap();
    let s = client.push(&store, "multi:1", &dest).await.unwrap();
    assert_eq!(s.digest, idesc.digest);
    assert_eq!(s.manifests, 3);

    let arm = Client::new(ClientOptions {
        platform: Some("linux/arm64".parse().unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let fresh = Store::open(dir.path().join("fresh")).unwrap();
    let p = arm.pull(&fresh, &dest).await.unwrap();
    assert_eq!(p.digest, idesc.digest);
    assert_eq!(p.downloaded, 2);
    let img = fresh
        .image(
            &fresh.resolve(&dest).unwrap(),
            Some(&"linux/arm64".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(img.config.architecture, "arm64");
    assert_verified(&fresh);

    let s390 = Client::new(ClientOptions {
        platform: Some("linux/s390x".parse().unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let e = s390.pull(&fresh, &dest).await.unwrap_err();
    assert!(matches!(e, Error::NoPlatform { .. }), "{e}");
    assert!(e.to_string().contains("linux/amd64, linux/arm64"), "{e}");

    // By digest: kept untagged.
    let by_digest = dest.with_digest(idesc.digest.clone());
    let other = Store::open(dir.path().join("other")).unwrap();
    client.pull(&other, &by_digest).await.unwrap();
    assert!(other.resolve(&dest).is_err());
    assert_eq!(other.list_tags().unwrap().len(), 1);
}

#[tokio::test]
async fn basic_auth_credentials_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    std::fs::write(
        &pw,
        format!("ci:{}\n", bcrypt::hash("s3cret-pw", 4).unwrap()),
    )
    .unwrap();
    let opts = ServeOptions {
        htpasswd: Some(pw),
        ..ServeOptions::default()
    };
    let (addr, _s, _reqs, _stop) = start_server(&dir.path().join("server"), opts).await;
    let store = Store::open(dir.path().join("local")).unwrap();
    make_image(&store, "a:1", &[("f", noise(1, 100))]);
    let dest: Reference = format!("{addr}/secure/a:1").parse().unwrap();

    let anon = Client::new(ClientOptions::default()).unwrap();
    let e = anon.push(&store, "a:1", &dest).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&addr) && msg.contains("secure"), "{msg}");

    let wrong = Client::new(ClientOptions {
        auth: AuthConfig {
            env_credential: Some(Credential {
                username: "ci".into(),
                password: "nope".into(),
            }),
            ..AuthConfig::default()
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let e = wrong.push(&store, "a:1", &dest).await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(!format!("{e:?}").contains("nope"), "secret in the error");

    // Credentials from a file in docker's format.
    let auth_file = dir.path().join("auth.json");
    AuthConfig {
        auth_file: Some(auth_file.clone()),
        ..AuthConfig::default()
    }
    .store(
        &addr,
        &Credential {
            username: "ci".into(),
            password: "s3cret-pw".into(),
        },
    )
    .unwrap();
    let good = Client::new(ClientOptions {
        auth: AuthConfig {
            auth_file: Some(auth_file),
            ..AuthConfig::default()
        },
        ..ClientOptions::default()
    })
    .unwrap();
    good.check_login(&addr).await.unwrap();
    let s = good.push(&store, "a:1", &dest).await.unwrap();
    assert_eq!(s.uploaded, 2);
    let e = good
        .pull(
            &Store::open(dir.path().join("x")).unwrap(),
            &format!("{addr}/secure/a:missing").parse().unwrap(),
        )
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        e.to_string().contains("manifest missing") && e.to_string().contains("secure"),
        "{e}"
    );
}

#[tokio::test]
async fn tls_server_and_https_client() {
    if !strata_testkit::require_tool("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ca = make_test_ca(dir.path(), &cert, &key);
    let opts = ServeOptions {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..ServeOptions::default()
    };
    let (addr, _s, _reqs, _stop) = start_server(&dir.path().join("server"), opts).await;
    // The server speaks TLS only.
    let plain = reqwest::get(format!("http://{addr}/v2/")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let r = trusted
        .get(format!("https://{addr}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let store = Store::open(dir.path().join("local")).unwrap();
    make_image(&store, "t:1", &[("f", noise(1, 100))]);
    let client = Client::new(ClientOptions {
        ca_cert: Some(std::fs::read(&ca).unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let s = client
        .push(&store, "t:1", &format!("{addr}/t:1").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(s.uploaded, 2);
}

#[tokio::test]
async fn non_loopback_registries_never_get_plain_http() {
    // 127.0.0.2 is loopback too; use a name that is not, pointing nowhere
    // reachable: the error must say https and suggest --insecure-registry,
    // or fail to connect, but never try http.
    let client = Client::new(ClientOptions {
        retries: 0,
        ..ClientOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let e = client
        .pull(&store, &"registry.invalid:5000/a:1".parse().unwrap())
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("registry.invalid:5000"), "{msg}");
    assert!(
        matches!(e, Error::Connect { .. } | Error::InsecureRefused { .. }),
        "{e:?}"
    );
    let _ = Digest::sha256(b"");
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl);
/// returns the CA certificate's path.
fn make_test_ca(
    dir: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::path::PathBuf {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        strata_testkit::run_ok(std::process::Command::new("openssl").args(args));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=strata test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        &p("srv.csr"),
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p("srv.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        cert.to_str().unwrap(),
    ]);
    dir.join("ca.pem")
}
