//! Indexing a generated 10,000-file context: cold (no stat-hint cache: every
//! file read and hashed) and warm (unchanged context, cache in place: no
//! file read), plus the walk alone and hashing throughput on one big file.
//!
//! `cargo bench -p strata-context --bench index`

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_context::{Context, ContextOptions, RACY_WINDOW};

fn generate(root: &Path) {
    // 100 directories of 100 files, 1-8 KiB each, plus an ignore file that
    // excludes one directory and re-includes a file in it.
    for d in 0..100 {
        let dir = root.join(format!("pkg{d:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            let size = 1024 * (1 + (d * 7 + f) % 8);
            let data: Vec<u8> = (0..size)
                .map(|i| ((i * 31 + d * 7 + f) % 251) as u8)
                .collect();
            std::fs::write(dir.join(format!("file{f:03}.txt")), data).expect("write");
        }
    }
    std::fs::write(
        root.join(".dockerignore"),
        "pkg099\n!pkg099/file000.txt\n*.log\n",
    )
    .expect("write");
}

fn opts(state: &Path) -> ContextOptions {
    ContextOptions {
        dockerfile: None,
        state_dir: Some(state.to_path_buf()),
    }
}

fn bench(c: &mut Criterion) {
    let ctx_dir = tempfile::tempdir().expect("tempdir");
    generate(ctx_dir.path());
    // Files younger than the racy window are never trusted from the cache.
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(100));

    let mut g = c.benchmark_group("context-10k");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("walk", |b| {
        b.iter(|| Context::open(ctx_dir.path(), ContextOptions::default()).expect("open"))
    });
    g.bench_function("cold", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().expect("state"),
            |state| {
                let ctx = Context::open(ctx_dir.path(), opts(state.path())).expect("open");
                let ix = ctx.index().expect("index");
                assert_eq!(ix.stats().hashed_files, 9902);
            },
        )
    });
    let state = tempfile::tempdir().expect("state");
    let _ = Context::open(ctx_dir.path(), opts(state.path()))
        .expect("open")
        .index()
        .expect("index");
    g.bench_function("warm", |b| {
        b.iter(|| {
            let ctx = Context::open(ctx_dir.path(), opts(state.path())).expect("open");
            let ix = ctx.index().expect("index");
            assert_eq!(ix.stats().hashed_bytes, 0);
        })
    });
    g.finish();

    let big_dir = tempfile::tempdir().expect("tempdir");
    let size: u64 = 256 << 20;
    {
        let mut f = std::fs::File::create(big_dir.path().join("big.bin")).expect("create");
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
        for _ in 0..(size >> 20) {
            f.write_all(&chunk).expect("write");
        }
    }
    let mut g = c.benchmark_group("big-file");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size));
    g.bench_function("hash-256MiB", |b| {
        b.iter(|| {
            let ctx = Context::open(big_dir.path(), ContextOptions::default()).expect("open");
            let ix = ctx.index().expect("index");
            assert_eq!(ix.stats().hashed_bytes, size);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
