//! Shared helpers: images made with the store API, servers on free ports,
//! request counters.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fault_proxy;

use std::io::Write;
use std::sync::{Arc, Mutex};

use strata_oci::{media_type, Descriptor, Digest, ImageConfig, Manifest, Reference, Store};
use strata_registry::{RequestLog, ServeOptions};

/// Bytes that do not compress (so sizes are predictable), from a seed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
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

/// A gzip'd tar layer with one file `name` holding `content`:
/// (blob bytes, diffID).
pub fn layer(name: &str, content: &[u8]) -> (Vec<u8>, Digest) {
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

/// Store an image whose layers each hold one file (`files[i]` = (path,
/// content)), tag it `name`; returns the manifest descriptor.
pub fn make_image(store: &Store, name: &str, files: &[(&str, Vec<u8>)]) -> Descriptor {
    make_image_typed(store, name, files, false)
}

/// Like [`make_image`]; `docker` chooses Docker schema 2 media types.
pub fn make_image_typed(
    store: &Store,
    name: &str,
    files: &[(&str, Vec<u8>)],
    docker: bool,
) -> Descriptor {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (path, content) in files {
        let (blob, diff_id) = layer(path, content);
        let d = store.put_blob(&blob).unwrap();
        let mt = if docker {
            media_type::DOCKER_LAYER_GZIP
        } else {
            media_type::OCI_LAYER_GZIP
        };
        layers.push(Descriptor::new(mt, d, blob.len() as u64));
        diff_ids.push(diff_id);
    }
    let mut config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    config.rootfs.diff_ids = diff_ids;
    config.config = Some(strata_oci::ContainerConfig {
        cmd: Some(vec!["/bin/sh".into()]),
        ..Default::default()
    });
    let craw = config.to_json();
    let cdesc = store
        .put_json(
            if docker {
                media_type::DOCKER_CONFIG
            } else {
                media_type::OCI_CONFIG
            },
            &craw,
        )
        .unwrap();
    let mut m = Manifest::oci(cdesc, layers);
    if docker {
        m.media_type = Some(media_type::DOCKER_MANIFEST.into());
    }
    let raw = m.to_json();
    let mdesc = store
        .put_json(
            m.media_type.as_deref().unwrap_or(media_type::OCI_MANIFEST),
            &raw,
        )
        .unwrap();
    let r: Reference = name.parse().unwrap();
    store.tag(&r, &mdesc).unwrap();
    mdesc
}

/// Requests seen by a server, for counting.
#[derive(Clone, Default)]
pub struct Requests(pub Arc<Mutex<Vec<RequestLog>>>);

impl Requests {
    pub fn hook(&self) -> strata_registry::RequestHook {
        let me = self.clone();
        Arc::new(move |l: &RequestLog| me.0.lock().unwrap().push(l.clone()))
    }
    pub fn take(&self) -> Vec<RequestLog> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    /// (method, path-kind) counts: uploads finished (PUT on uploads),
    /// manifest PUTs, blob HEADs.
    pub fn count(logs: &[RequestLog], method: &str, contains: &str) -> usize {
        logs.iter()
            .filter(|l| l.method == method && l.path.contains(contains))
            .count()
    }
}

/// A strata registry over a fresh store, on a free port, counting requests.
pub async fn start_server(
    dir: &std::path::Path,
    mut opts: ServeOptions,
) -> (String, Store, Requests, tokio::sync::oneshot::Sender<()>) {
    let store = Store::open(dir).unwrap();
    let reqs = Requests::default();
    opts.addr = "127.0.0.1:0".into();
    opts.on_request = Some(reqs.hook());
    let (addr, stop) = strata_registry::serve_until(store.clone(), opts)
        .await
        .unwrap();
    (addr.to_string(), store, reqs, stop)
}

/// `store verify` is clean.
pub fn assert_verified(store: &Store) {
    let r = store.verify().unwrap();
    assert!(r.problems.is_empty(), "store problems: {:?}", r.problems);
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's reference registry (`docker-registry`) on a free loopback
/// port with a temp storage dir; killed on drop.
pub struct ReferenceRegistry {
    pub addr: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl ReferenceRegistry {
    /// `None` (after the testkit's NOT RUN message) when not installed.
    pub fn start() -> Option<ReferenceRegistry> {
        if !strata_testkit::require_tool("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let reg = ReferenceRegistry {
            addr,
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&reg.addr).is_ok() {
                return Some(reg);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("docker-registry did not start on {}", reg.addr);
    }
}

impl Drop for ReferenceRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
