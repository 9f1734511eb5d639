//! Parsing all real Dockerfiles of the conformance set (read once, parsed
//! per iteration): the syntax tree alone, and with typed stages.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn load() -> Vec<(String, String)> {
    // The corpus is external: without it there is nothing to measure.
    let Some(c) = strata_testkit::conformance_dir() else {
        return Vec::new();
    };
    let dir = c.join("real-dockerfiles");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "Dockerfile"));
    files.sort();
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let files = load();
    let bytes: usize = files.iter().map(|(_, s)| s.len()).sum();
    let mut g = c.benchmark_group("real-dockerfiles");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(format!("parse {} files", files.len()), |b| {
        b.iter(|| {
            for (name, src) in &files {
                let df = strata_dockerfile::parse_named(name, src).expect("parses");
                std::hint::black_box(df);
            }
        })
    });
    g.bench_function(format!("parse+stages {} files", files.len()), |b| {
        b.iter(|| {
            for (name, src) in &files {
                let df = strata_dockerfile::parse_named(name, src).expect("parses");
                std::hint::black_box(df.stages().expect("stages"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
