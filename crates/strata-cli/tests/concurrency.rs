//! Many users at once (issue 24, item 4): 8 builds sharing one store and
//! one cache, of the same and of different Dockerfiles, while `strata prune`
//! (and `prune --all`) runs in a loop beside them. No build fails, no blob is
//! corrupt, `store verify` is clean, and every image is what a build alone
//! makes.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

const DOCKERFILES: [&str; 2] = [
    "FROM busybox\n\
     COPY app.txt /app/app.txt\n\
     RUN --mount=type=cache,target=/cache sh -c 'echo $(cat /app/app.txt) >> /cache/log; \
         head -c 200000 /dev/zero | tr \"\\0\" a > /app/data'\n\
     RUN wc -c /app/data > /app/size\n\
     CMD [\"cat\", \"/app/size\"]\n",
    "FROM busybox AS build\n\
     COPY app.txt /src/app.txt\n\
     RUN sh -c 'for i in 1 2 3; do cat /src/app.txt; done > /src/out'\n\
     FROM busybox\n\
     COPY --from=build /src/out /out\n\
     RUN sed -n 2p /out > /second\n",
];

fn context(dir: &Path, name: &str, dockerfile: &str, app: &str) -> PathBuf {
    let ctx = dir.join(name);
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    fs::write(ctx.join("app.txt"), app).unwrap();
    ctx
}

#[test]
fn eight_builds_and_a_prune_loop_share_one_store() {
    if !strata_testkit::require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    // Four contexts: two Dockerfiles, each with two contents; each built
    // twice at once (same key) — 8 builds.
    let mut builds = Vec::new();
    for (d, df) in DOCKERFILES.iter().enumerate() {
        for v in 0..2 {
            let ctx = context(
                t.path(),
                &format!("ctx-{d}-{v}"),
                df,
                &format!("app {d} {v}\n"),
            );
            for copy in 0..2 {
                builds.push((ctx.clone(), format!("img-{d}-{v}:{copy}")));
            }
        }
    }
    // What each context builds to, alone (then forgotten, cache included).
    let alone: Vec<String> = builds
        .iter()
        .step_by(2)
        .map(|(ctx, _)| {
            let out = ok(
                &root,
                &[
                    "build",
                    "-q",
                    "--isolation",
                    "builtin",
                    ctx.to_str().unwrap(),
                ],
            );
            out.trim().to_owned()
        })
        .collect();
    ok(&root, &["prune", "--all"]);

    let stop = Arc::new(AtomicBool::new(false));
    let prunes = Arc::new(AtomicUsize::new(0));
    let pruner = {
        let (root, stop, prunes) = (root.clone(), stop.clone(), prunes.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let args: &[&str] = if i % 3 == 2 {
                    &["prune", "--all"]
                } else {
                    &["prune"]
                };
                ok(&root, args);
                prunes.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let handles: Vec<_> = builds
        .iter()
        .map(|(ctx, tag)| {
            let (root, ctx, tag) = (root.clone(), ctx.clone(), tag.clone());
            std::thread::spawn(move || {
                let out = run(
                    &root,
                    &[
                        "build",
                        "-q",
                        "--isolation",
                        "builtin",
                        "-t",
                        &tag,
                        ctx.to_str().unwrap(),
                    ],
                );
                (tag, out)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    pruner.join().unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, out)| !out.status.success())
        .map(|(tag, out)| format!("{tag}: {}", String::from_utf8_lossy(&out.stderr)))
        .collect();
    assert!(failed.is_empty(), "builds failed:\n{}", failed.join("\n"));
    assert!(
        prunes.load(Ordering::Relaxed) > 0,
        "prune never ran beside the builds"
    );
    verify_clean(&root);
    // Every image is the one a build alone makes, and runs.
    for (i, (_, out)) in results.iter().enumerate() {
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(id, alone[i / 2], "build {i} made a different image");
    }
    for (_, tag) in &builds {
        let r = run(
            &root,
            &["run", "--rm", "--isolation", "builtin", tag, "true"],
        );
        assert!(r.status.success(), "{tag} does not run");
    }
    // And a prune after all that keeps them whole.
    ok(&root, &["prune"]);
    verify_clean(&root);
    eprintln!(
        "concurrency: 8 builds, {} prunes beside them, 0 failed, verify clean",
        prunes.load(Ordering::Relaxed)
    );
}
