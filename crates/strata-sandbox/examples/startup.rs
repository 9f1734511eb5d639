//! Startup overhead of each executor for `true` on a busybox root
//! filesystem (directory and fresh one-layer overlay), with docker's seccomp
//! profile and unconfined, as plain numbers.
//! Run as root: `cargo run --release -p strata-sandbox --example startup [N] [executor...]`
//! (the criterion bench `benches/startup.rs` measures the same with statistics).
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use strata_sandbox::{BuiltinExecutor, Executor, OciExecutor, RootFs, RunSpec, Seccomp, Stdio};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let only: Vec<String> = args.collect();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("busybox.tar");
    assert!(
        strata_testkit::busybox_rootfs_tar(&tar),
        "needs /bin/busybox"
    );
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
    let mut executors: Vec<Box<dyn Executor>> = Vec::new();
    for rt in ["runc", "crun"] {
        if let Some(p) = strata_testkit::which(rt) {
            executors.push(Box::new(OciExecutor::new(p, &state)));
        }
    }
    executors.push(Box::new(BuiltinExecutor::new(&state)));
    println!(
        "{:<10} {:<8} {:<11} {:>9} {:>9} {:>9}",
        "executor", "rootfs", "seccomp", "mean ms", "median", "min"
    );
    for e in executors
        .iter()
        .filter(|e| only.is_empty() || only.iter().any(|o| o == e.name()))
    {
        for (overlay, seccomp) in [false, true]
            .into_iter()
            .flat_map(|o| [(o, Seccomp::Default), (o, Seccomp::Unconfined)])
        {
            let mut times = Vec::new();
            for i in 0..n {
                let mut spec = RunSpec::new(RootFs::Dir(rootfs.clone()), vec!["/bin/true".into()]);
                spec.stdio = Stdio::Null;
                spec.seccomp = seccomp.clone();
                if overlay {
                    let up = dir.path().join(format!("up-{}-{i}", e.name()));
                    let work = dir.path().join(format!("work-{}-{i}", e.name()));
                    std::fs::create_dir_all(&up).unwrap();
                    std::fs::create_dir_all(&work).unwrap();
                    spec.rootfs = RootFs::Overlay {
                        lowerdirs: vec![rootfs.clone()],
                        upperdir: up,
                        workdir: work,
                    };
                }
                let t = Instant::now();
                assert!(e.run(&spec).unwrap().success());
                times.push(t.elapsed());
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / n;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{:<10} {:<8} {:<11} {:>9.1} {:>9.1} {:>9.1}",
                e.name(),
                if overlay { "overlay" } else { "dir" },
                if seccomp == Seccomp::Default {
                    "default"
                } else {
                    "unconfined"
                },
                ms(mean),
                ms(times[times.len() / 2]),
                ms(times[0])
            );
        }
    }
}
