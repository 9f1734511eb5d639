//! Make a benchmark image: `LAYERS` layers of `MB` MiB of incompressible
//! data each (uncompressed tar layers), tagged `NAME:v1` in a store and
//! written as an OCI layout (ref `v1`); with `--v2` also `NAME:v2`, the same
//! image with its last layer changed (ref `v2`).
//!
//! `cargo run --release -p strata-registry --example mkimage -- STORE LAYOUT NAME LAYERS MB [--v2]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use strata_oci::{media_type, Descriptor, Digest, ImageConfig, Index, Manifest, Reference, Store};

struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

/// A tar with one file of `size` noise bytes, streamed into the store.
fn layer(store: &Store, seed: u64, size: u64) -> Descriptor {
    let mut w = store
        .writer(&format!("mkimage-{seed}-{size}"), None)
        .unwrap();
    w.reset().unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_path(format!("data/{seed}.bin")).unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    w.write_all(header.as_bytes()).unwrap();
    let mut n = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        n.fill(&mut buf[..k]);
        w.write_all(&buf[..k]).unwrap();
        left -= k as u64;
    }
    let pad = (512 - size % 512) % 512;
    w.write_all(&vec![0u8; pad as usize + 1024]).unwrap();
    let total = w.offset();
    let d = w.commit(Some(total), None).unwrap();
    Descriptor::new(media_type::OCI_LAYER_TAR, d, total)
}

fn image(store: &Store, name: &str, layers: &[Descriptor]) -> Descriptor {
    let mut config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    // Uncompressed layers: the diffID is the blob digest.
    config.rootfs.diff_ids = layers.iter().map(|l| l.digest.clone()).collect();
    let c = store
        .put_json(media_type::OCI_CONFIG, &config.to_json())
        .unwrap();
    let m = store
        .put_json(
            media_type::OCI_MANIFEST,
            &Manifest::oci(c, layers.to_vec()).to_json(),
        )
        .unwrap();
    store.tag(&name.parse::<Reference>().unwrap(), &m).unwrap();
    m
}

fn copy_to_layout(store: &Store, d: &Digest, layout: &Path) {
    let dst = layout.join("blobs/sha256").join(d.hex());
    if !dst.exists() {
        std::fs::copy(store.blob_path(d), dst).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: mkimage STORE LAYOUT NAME LAYERS MB [--v2]");
        std::process::exit(2);
    }
    let store = Store::open(&args[1]).unwrap();
    let layout = Path::new(&args[2]);
    let name = &args[3];
    let count: u64 = args[4].parse().unwrap();
    let mb: u64 = args[5].parse().unwrap();
    let v2 = args.iter().any(|a| a == "--v2");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut layers: Vec<Descriptor> = (0..count).map(|i| layer(&store, i + 1, mb << 20)).collect();
    let mut refs = vec![("v1", image(&store, &format!("{name}:v1"), &layers))];
    if v2 {
        let last = layers.len() - 1;
        layers[last] = layer(&store, 1000, mb << 20);
        refs.push(("v2", image(&store, &format!("{name}:v2"), &layers)));
    }
    let mut entries = Vec::new();
    for (tag, m) in refs {
        let img = store.image(&m, None).unwrap();
        for l in &img.layers {
            copy_to_layout(&store, &l.descriptor.digest, layout);
        }
        copy_to_layout(&store, &img.manifest.config.digest, layout);
        copy_to_layout(&store, &m.digest, layout);
        let mut d = m.clone();
        d.annotations
            .insert("org.opencontainers.image.ref.name".into(), tag.into());
        entries.push(d);
        println!("{name}:{tag} {} ({} bytes of layers)", m.digest, img.size());
    }
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(layout.join("index.json"), Index::oci(entries).to_json()).unwrap();
}
