//! The applier and the snapshotter against this machine's raw limits.
//!
//! `limits/*` are what no layer code can beat on one core: sha256 and
//! gzip (level 6, and 5: the layer default) throughput over the same bytes, and
//! creating small files with nothing but `openat` + `write` + `close`.
//! `apply/*` extracts a tar of the same small files (one directory entry
//! per 100 files, as a sorted tree), so its files/s compare with
//! `limits/create`. `snapshot/*` write a gzip layer of those files and make
//! its snapshot directory each way there is: reading the stored blob back
//! and extracting it (what every layer cost before), extracting while the
//! layer is written, adopting a directory that already holds the files (a
//! RUN step's upper directory); `write_only` is the layer without a
//! snapshot (what a layer no later step needs costs now).
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
        tap: None,
    }
}

fn limits(c: &mut Criterion) {
    let data = mixed(32 << 20, 7);
    let mut g = c.benchmark_group("limits");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sha256", |b| b.iter(|| sha2::Sha256::digest(&data)));
    let gzip = |data: &[u8], level: u32| {
        let mut e = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    g.bench_function("gzip6", |b| b.iter(|| gzip(&data, 6)));
    g.bench_function("gzip5", |b| b.iter(|| gzip(&data, 5)));
    // The two halves apart: text compresses about 4x, noise not at all.
    let text: Vec<u8> = data.chunks(8192).step_by(2).flatten().copied().collect();
    let noise: Vec<u8> = data
        .chunks(8192)
        .skip(1)
        .step_by(2)
        .flatten()
        .copied()
        .collect();
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("gzip6_text", |b| b.iter(|| gzip(&text, 6)));
    g.throughput(Throughput::Bytes(noise.len() as u64));
    g.bench_function("gzip6_noise", |b| b.iter(|| gzip(&noise, 6)));
    g.bench_function("gzip1_noise", |b| b.iter(|| gzip(&noise, 1)));
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

/// A tree of the small files, as a RUN step's upper directory would hold
/// them.
fn tree(root: &std::path::Path) {
    for e in small_entries() {
        match e.kind {
            strata_layer::EntryKind::File {
                source: strata_layer::FileSource::Bytes(b),
                ..
            } => std::fs::write(root.join(&e.path), b).unwrap(),
            _ => std::fs::create_dir(root.join(&e.path)).unwrap(),
        }
    }
}

fn snapshot(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() {
        return; // snapshots hold overlay whiteouts: root only
    }
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(FILES as u64));
    let gz = opts(Compression::Gzip);
    // What a snapshot cost before: the layer written, then its blob read
    // back and extracted.
    g.bench_function("write_then_extract_blob", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let store = strata_oci::Store::open(dir.path().join("store")).unwrap();
                let snap = strata_layer::Snapshotter::new(&store).unwrap();
                let info = snap
                    .write_layer(LayerSource::Entries(small_entries()), &gz, false)
                    .unwrap();
                snap.ensure_layer(&strata_oci::Layer {
                    descriptor: info.descriptor(),
                    diff_id: info.diff_id,
                })
                .unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("write_only", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let store = strata_oci::Store::open(dir.path().join("store")).unwrap();
                let snap = strata_layer::Snapshotter::new(&store).unwrap();
                snap.write_layer(LayerSource::Entries(small_entries()), &gz, false)
                    .unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("write_extracting", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let store = strata_oci::Store::open(dir.path().join("store")).unwrap();
                let snap = strata_layer::Snapshotter::new(&store).unwrap();
                let info = snap
                    .write_layer(LayerSource::Entries(small_entries()), &gz, true)
                    .unwrap();
                assert!(snap.exists(&info.diff_id));
                dir
            },
            BatchSize::PerIteration,
        )
    });
    // A RUN step's upper directory made the snapshot in place (the layer
    // is written from it first, as a commit does).
    g.bench_function("write_then_adopt_upper", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let upper = dir.path().join("upper");
                std::fs::create_dir(&upper).unwrap();
                tree(&upper);
                dir
            },
            |dir| {
                let upper = dir.path().join("upper");
                let store = strata_oci::Store::open(dir.path().join("store")).unwrap();
                let snap = strata_layer::Snapshotter::new(&store).unwrap();
                let mut entries = strata_layer::scan_dir(&upper, true).unwrap();
                entries.sort_by(|a, b| a.path.cmp(&b.path));
                let info = snap
                    .write_layer(LayerSource::Entries(entries.clone()), &gz, false)
                    .unwrap();
                snap.adopt_upper(&upper, &entries, &gz, &info.diff_id)
                    .unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, limits, apply, snapshot);
criterion_main!(benches);
