//! Layer writing and applying throughput: a 64 MiB tree (256 files of
//! 256 KiB, half compressible text, half noise).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_layer::{apply_layer, write_layer, ApplyMode, LayerOptions, LayerSource, Timestamps};
use strata_oci::Compression;

fn tree(root: &Path) -> u64 {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut total = 0;
    for d in 0..16 {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..16 {
            let data: Vec<u8> = if f % 2 == 0 {
                format!("line {d} {f} the quick brown fox\n")
                    .repeat(256 * 1024 / 32)
                    .into_bytes()
            } else {
                (0..256 * 1024)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect()
            };
            total += data.len() as u64;
            std::fs::write(dir.join(format!("f{f:02}")), data).unwrap();
        }
    }
    total
}

fn bench(c: &mut Criterion) {
    let src = tempfile::tempdir().unwrap();
    let bytes = tree(src.path());
    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for (name, comp) in [
        ("tar", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
    ] {
        let opts = LayerOptions {
            compression: comp,
            level: None,
            timestamps: Timestamps::Epoch(0),
            xattrs: true,
            foreign_times: Default::default(),
            tap: None,
        };
        g.bench_function(format!("write_{name}"), |b| {
            b.iter(|| write_layer(LayerSource::Dir(src.path()), &opts, std::io::sink()).unwrap())
        });
        let (_, blob) = write_layer(LayerSource::Dir(src.path()), &opts, Vec::new()).unwrap();
        g.bench_function(format!("apply_{name}"), |b| {
            b.iter(|| {
                let out = tempfile::tempdir().unwrap();
                apply_layer(&blob[..], out.path(), ApplyMode::Plain).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
