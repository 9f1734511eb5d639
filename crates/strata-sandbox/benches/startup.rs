//! Startup overhead of each executor: `true` in a busybox root filesystem,
//! as a directory and as a one-layer overlay. Needs root (skips otherwise).
//!
//! `cargo bench -p strata-sandbox --bench startup`
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};
use strata_sandbox::{BuiltinExecutor, Executor, OciExecutor, RootFs, RunSpec, Stdio};

fn startup(c: &mut Criterion) {
    if !strata_testkit::is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("startup bench NOT RUN: needs root and /bin/busybox");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("busybox.tar");
    assert!(strata_testkit::busybox_rootfs_tar(&tar));
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    strata_testkit::run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs),
    );
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();

    let mut executors: Vec<Box<dyn Executor>> = Vec::new();
    for rt in ["runc", "crun"] {
        if let Some(p) = strata_testkit::which(rt) {
            executors.push(Box::new(OciExecutor::new(p, &state)));
        }
    }
    executors.push(Box::new(BuiltinExecutor::new(&state)));

    let mut group = c.benchmark_group("startup_true");
    group.sample_size(30);
    for e in &executors {
        let mut spec = RunSpec::new(RootFs::Dir(rootfs.clone()), vec!["/bin/true".into()]);
        spec.stdio = Stdio::Null;
        group.bench_function(format!("{}/dir", e.name()), |b| {
            b.iter(|| assert!(e.run(&spec).unwrap().success()))
        });
        // a fresh upper/work pair per run, as the builder and `strata run` use
        let counter = std::cell::Cell::new(0u32);
        group.bench_function(format!("{}/overlay", e.name()), |b| {
            b.iter_batched(
                || {
                    counter.set(counter.get() + 1);
                    let up = dir
                        .path()
                        .join(format!("up-{}-{}", e.name(), counter.get()));
                    let work = dir
                        .path()
                        .join(format!("work-{}-{}", e.name(), counter.get()));
                    std::fs::create_dir_all(&up).unwrap();
                    std::fs::create_dir_all(&work).unwrap();
                    let mut s = spec.clone();
                    s.rootfs = RootFs::Overlay {
                        lowerdirs: vec![rootfs.clone()],
                        upperdir: up,
                        workdir: work,
                    };
                    s
                },
                |s| assert!(e.run(&s).unwrap().success()),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
