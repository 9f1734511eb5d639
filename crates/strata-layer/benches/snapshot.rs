//! The applier and the snapshotter against this machine's raw limits.
//!
//! `limits/*` are what no layer code can beat on one core: sha256 and
//! gzip (level 6, the layer default) throughput over the same bytes, and
//! creating small files with nothing but `openat` + `write` + `close`.
//! `apply/*` extracts a tar of the same small files (one directory entry
//! per 100 files, as a sorted tree), so its files/s compare with
//! `limits/create`. `snapshot/*` are the ways a snapshot directory is
//! made: extracting the stored blob (what every snapshot cost before),
//! extracting while the layer is written, and adopting a directory that
//! already holds the files (a RUN step's upper directory).
//!
//! ```sh
//! TMPDIR=/var/tmp cargo bench -p strata-layer --bench snapshot
//! ```
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sha2::Digest as _;
use strata_layer::{
    apply_layer, write_layer, ApplyMode, Entry, LayerOptions, LayerSource, Timestamps,
};
use strata_oci::Compression;

/// Files in the small-file tree.
const FILES: usize = 4000;
/// Bytes per small file.
const SMALL: usize = 4096;

/// Half source-like text, half noise: what an application tree holds.
fn mixed(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let text = b"fn main() { let value = options.get(index).unwrap_or(default); }\n";
    (0..n)
        .map(|i| {
            if (i / 8192) % 2 == 0 {
                text[i % text.len()]
            } else {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            }
        })
        .collect()
}

fn small_entries() -> Vec<Entry> {
    let mut out = Vec::new();
    for d in 0..FILES / 100 {
        out.push(Entry::new(format!("d{d:03}"), strata_layer::EntryKind::Dir));
        for f in 0..100 {
            out.push(Entry::file(
                format!("d{d:03}/f{f:03}"),
                mixed(SMALL, (d * 100 + f) as u64),
            ));
        }
    }
    out
}

fn opts(c: Compression) -> LayerOptions {
    LayerOptions {
        compression: c,
        level: None,
        timestamps: Timestamps::Epoch(0),
        xattrs: true,
        foreign_times: Default::default(),
    }
}

fn limits(c: &mut Criterion) {
    let data = mixed(32 << 20, 7);
    let mut g = c.benchmark_group("limits");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sha256", |b| b.iter(|| sha2::Sha256::digest(&data)));
    g.bench_function("gzip6", |b| {
        b.iter(|| {
            let mut e = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(6));
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        })
    });
    g.throughput(Throughput::Elements(FILES as u64));
    let content = mixed(SMALL, 3);
    g.bench_function("create", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                for d in 0..FILES / 100 {
                    let sub = dir.path().join(format!("d{d:03}"));
                    std::fs::create_dir(&sub).unwrap();
                    for f in 0..100 {
                        let mut file = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o644)
                            .open(sub.join(format!("f{f:03}")))
                            .unwrap();
                        file.write_all(&content).unwrap();
                    }
                }
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    let (_, tar) = write_layer(
        LayerSource::Entries(small_entries()),
        &opts(Compression::None),
        Vec::new(),
    )
    .unwrap();
    let mut g = c.benchmark_group("apply");
    g.sample_size(10);
    g.throughput(Throughput::Elements(FILES as u64));
    let mut modes = vec![("plain", ApplyMode::Plain)];
    if rustix::process::geteuid().is_root() {
        modes.push(("overlay", ApplyMode::Overlay));
    }
    for (name, mode) in modes {
        g.bench_function(name, |b| {
            b.iter_batched(
                || tempfile::tempdir().unwrap(),
                |dir| {
                    apply_layer(&tar[..], dir.path(), mode).unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, limits, apply);
criterion_main!(benches);
