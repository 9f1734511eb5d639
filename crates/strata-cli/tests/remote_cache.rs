//! `--cache-from` / `--cache-to` end to end: two stores stand in for two
//! machines (a CI runner starts empty), through `strata serve`, Debian's
//! `docker-registry` when installed, and a local OCI layout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const DOCKERFILE: &str = "FROM busybox\n\
    ARG V=1\n\
    COPY a /a\n\
    RUN cat /a > /b && echo $V > /v && mkdir -p /d && echo made > /d/f\n\
    WORKDIR /w\n\
    COPY b /w/b\n\
    ENV X=1\n\
    CMD [\"cat\", \"/a\"]\n";

/// Debian's reference registry (distribution 2.8), when installed.
struct Reference {
    addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Reference {
    fn start() -> Option<Reference> {
        if !strata_testkit::require_tool("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("config.yml");
        fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Reference {
            addr,
            child,
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&r.addr).is_ok() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start on {}", r.addr);
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of `src` at `dst` whose files all have other mtimes (the copy is
/// made now, and each file is dated a day later).
fn copy_with_new_times(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_with_new_times(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
            let later = std::time::SystemTime::now() + Duration::from_secs(86_400);
            fs::File::options()
                .write(true)
                .open(&to)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
    }
}

/// A "machine": an empty store with busybox imported.
fn machine(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    fs::create_dir_all(&d).unwrap();
    store_with_busybox(&d).expect("busybox")
}

fn reasons(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e["event"].as_str() {
            Some("step_cached") | Some("step_miss") => Some(
                e["explanation"]["reason"]
                    .as_str()
                    .unwrap_or("cached")
                    .to_owned(),
            ),
            _ => None,
        })
        .collect()
}

fn exported(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "cache_exported")
        .collect()
}

/// Machine A builds and exports; machine B, empty, with the context copied
/// (other mtimes), builds the same image without running a step; a third
/// build on B with a changed build arg reuses what the change does not touch.
fn two_machines(cache: &str) {
    let dir = tempfile::tempdir().unwrap();
    let a = machine(dir.path(), "a");
    let ctx = context(
        dir.path(),
        &[
            ("Dockerfile", DOCKERFILE),
            ("a", "alpha\n"),
            ("b", "beta\n"),
        ],
    );
    let to = format!("{cache},mode=max");
    let (id_a, ev) = build_json(&a, &ctx, &["--cache-to", &to]);
    let exp = exported(&ev);
    assert_eq!(exp.len(), 1, "{ev:?}");
    assert!(exp[0]["entries"].as_u64().unwrap() >= 4, "{:?}", exp[0]);
    assert!(exp[0]["blobs_sent"].as_u64().unwrap() >= 3, "{:?}", exp[0]);

    // Exporting again sends nothing: every entry is there.
    let (_, ev) = build_json(&a, &ctx, &["--cache-to", &to]);
    let exp = exported(&ev);
    assert_eq!(exp[0]["entries"], 0, "{:?}", exp[0]);
    assert_eq!(exp[0]["bytes_sent"], 0, "{:?}", exp[0]);

    let b = machine(dir.path(), "b");
    let ctx_b = dir.path().join("ctx-b");
    copy_with_new_times(&ctx, &ctx_b);
    let from = cache.replace("dest=", "src=");
    let (id_b, ev) = build_json(&b, &ctx_b, &["--cache-from", &from]);
    assert_eq!(id_a, id_b, "machine B built another image");
    let r = reasons(&ev);
    assert!(!r.is_empty());
    assert!(
        r.iter().all(|x| x == "remote"),
        "every step should come from the cache: {r:?}"
    );
    verify_clean(&b);
    // The image runs: its layers are all in B's store.
    let out = ok(
        &b,
        &["run", "--rm", &id_b, "cat", "/b", "/v", "/d/f", "/w/b"],
    );
    assert_eq!(out, "alpha\n1\nmade\nbeta\n");

    // Once fetched, the entries are B's own: the next build hits locally.
    let (_, ev) = build_json(&b, &ctx_b, &["--cache-from", &from]);
    assert!(reasons(&ev).iter().all(|x| x == "hit"), "{ev:?}");

    // A changed file late in the Dockerfile: the steps before it still come
    // from the cache, the COPY of the changed file is built and says the
    // cache was asked too; a cold build of the same thing agrees.
    let c = machine(dir.path(), "c");
    fs::write(ctx_b.join("b"), "beta, changed\n").unwrap();
    let (id_c, ev) = build_json(&c, &ctx_b, &["--cache-from", &from]);
    let r = reasons(&ev);
    assert_eq!(r[..3], ["remote", "remote", "remote"], "{r:?}");
    let miss = ev
        .iter()
        .find(|e| e["event"] == "step_miss")
        .expect("a miss");
    assert_eq!(miss["explanation"]["reason"], "not_in_remote", "{miss}");
    assert_eq!(miss["id"]["step"], 5, "{miss}");
    let cold = machine(dir.path(), "cold");
    let (id_cold, _) = build_json(&cold, &ctx_b, &[]);
    assert_eq!(id_cold, id_c);
}

#[test]
fn a_registry_cache_gives_an_empty_machine_the_same_image() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    two_machines(&format!(
        "type=registry,ref={}/cache/app:buildcache",
        srv.addr
    ));
    let log = srv.stop();
    assert!(log.contains("PUT /v2/cache/app/manifests/"), "{log}");
}

#[test]
fn the_reference_registry_holds_a_cache_too() {
    if !strata_testkit::require_root() {
        return;
    }
    let Some(reg) = Reference::start() else {
        return;
    };
    two_machines(&format!(
        "type=registry,ref={}/cache/app:buildcache",
        reg.addr
    ));
}

#[test]
fn a_local_cache_directory_works_like_a_registry() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cache-dir");
    two_machines(&format!("type=local,dest={}", d.display()));
    assert!(d.join("index.json").is_file());
    assert!(d.join("oci-layout").is_file());
}

/// A cache that cannot be reached: `--cache-from` warns and builds;
/// `--cache-to` fails the build (its point is the export) unless
/// `ignore-error=true`, which warns. The image is built and tagged either way.
#[test]
fn an_unreachable_cache_is_named_and_never_loses_the_build() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = machine(dir.path(), "m");
    let ctx = context(
        dir.path(),
        &[
            ("Dockerfile", DOCKERFILE),
            ("a", "alpha\n"),
            ("b", "beta\n"),
        ],
    );
    let down = format!("127.0.0.1:{}", free_port());
    let from = format!("type=registry,ref={down}/cache:x");
    let out = run(
        &root,
        &[
            "build",
            "-t",
            "t:1",
            "--cache-from",
            &from,
            ctx.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cannot be used, building without it"), "{err}");
    assert!(err.contains(&down), "{err}");
    // Said once, not once per step.
    assert_eq!(err.matches("cannot be used").count(), 1, "{err}");

    let to = format!("type=registry,ref={down}/cache:x");
    let out = run(
        &root,
        &[
            "build",
            "-t",
            "t:2",
            "--cache-to",
            &to,
            ctx.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an export that failed is an error");
    assert!(err.contains(&down), "{err}");
    assert!(err.contains("cache"), "{err}");
    // The image itself was built and tagged before the export.
    ok(&root, &["inspect", "t:2"]);

    let to = format!("type=registry,ref={down}/cache:x,ignore-error=true");
    let out = run(
        &root,
        &[
            "build",
            "-t",
            "t:3",
            "--cache-to",
            &to,
            ctx.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&down), "{err}");

    // Bad specs are usage errors (exit 2) that name the flag.
    for (flag, spec) in [
        ("--cache-to", "type=registry,ref=x/y:z,mode=huge"),
        ("--cache-from", "type=nope,ref=x"),
        ("--cache-from", "type=local"),
    ] {
        let out = run(&root, &["build", flag, spec, ctx.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {spec}: {err}");
        assert!(err.contains(flag), "{err}");
    }
    verify_clean(&root);
}

/// Two projects export to one cache ref at the same time (two CI jobs);
/// afterwards an empty machine finds every step of both.
#[test]
fn parallel_exports_to_one_ref_keep_both_projects() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let cache = format!("type=registry,ref={}/shared/cache:main", srv.addr);
    let mut ctxs = Vec::new();
    for (i, body) in ["one\n", "two\n"].iter().enumerate() {
        let d = dir.path().join(format!("p{i}"));
        let ctx = context(
            &d,
            &[
                ("Dockerfile", DOCKERFILE),
                ("a", body),
                ("b", &body.repeat(3)),
            ],
        );
        ctxs.push((machine(&d, "store"), ctx));
    }
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = ctxs
            .iter()
            .map(|(root, ctx)| {
                let cache = cache.clone();
                s.spawn(move || {
                    build_json(root, ctx, &["--cache-to", &format!("{cache},mode=max")]).0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let fresh = machine(dir.path(), "fresh");
    for ((_, ctx), id) in ctxs.iter().zip(&ids) {
        let (got, ev) = build_json(&fresh, ctx, &["--cache-from", &cache]);
        assert_eq!(&got, id);
        assert!(
            reasons(&ev).iter().all(|r| r == "remote" || r == "hit"),
            "{:?}",
            reasons(&ev)
        );
        assert!(ev.iter().all(|e| e["event"] != "step_miss"));
    }
}

const THREE_STAGES: &str = "FROM busybox AS one\n\
    RUN date +%s%N > /one && head -c 300000 /dev/urandom > /noise\n\
    WORKDIR /made/here\n\
    FROM busybox AS two\n\
    RUN date +%s%N > /two && head -c 300000 /dev/urandom > /noise\n\
    FROM busybox\n\
    COPY --from=one /one /one\n\
    COPY --from=two /two /two\n\
    COPY final.txt /final.txt\n\
    CMD [\"cat\", \"/one\", \"/two\", \"/final.txt\"]\n";

/// Bytes of the blobs in a store.
fn blob_bytes(root: &Path) -> u64 {
    fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Blob bytes a `strata serve` log shows moving (uploads and downloads),
/// from its line `from` on.
fn blob_bytes_moved(log: &str, from: usize) -> u64 {
    log.lines()
        .skip(from)
        .filter(|l| {
            (l.starts_with("GET ") || l.starts_with("PUT ") || l.starts_with("PATCH "))
                && l.contains("/blobs/")
        })
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[f.len() - 2].parse::<u64>().unwrap()
        })
        .sum()
}

/// Steps run (misses) in a build's events.
fn ran(events: &[Value]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter(|e| e["event"] == "step_miss")
        .map(|e| {
            (
                e["id"]["stage"].as_u64().unwrap(),
                e["id"]["step"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A 3-stage build whose RUN steps write the time (never twice the same)
/// and 300 kB of noise each: an empty machine with `--cache-from` gets the
/// same image with 0 steps run and downloads no layer of the intermediate
/// stages; pushing it to the registry that holds the cache moves no layer
/// byte at all (the layers are mounted, never downloaded), and the image
/// still runs there (its layers are downloaded when read). Editing a file
/// only the final stage uses runs only that step.
#[test]
fn an_empty_machine_rebuilds_and_pushes_without_moving_a_layer() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    let cache = format!("type=registry,ref={}/cache/app:ci", srv.addr);
    let ctx = context(
        dir.path(),
        &[("Dockerfile", THREE_STAGES), ("final.txt", "final\n")],
    );
    let a = machine(dir.path(), "a");
    let tag_a = format!("{}/app:a", srv.addr);
    let (id_a, _) = build_json(
        &a,
        &ctx,
        &[
            "--cache-to",
            &format!("{cache},mode=max"),
            "-t",
            &tag_a,
            "--push",
        ],
    );
    let want = ok(&a, &["run", "--rm", &id_a]);

    // B: empty, the context elsewhere with other mtimes, pushed.
    let b = machine(dir.path(), "b");
    let ctx_b = dir.path().join("ctx-b");
    copy_with_new_times(&ctx, &ctx_b);
    let before = blob_bytes(&b);
    let lines = srv.log().lines().count();
    let tag_b = format!("{}/app:b", srv.addr);
    let (id_b, ev) = build_json(
        &b,
        &ctx_b,
        &["--cache-from", &cache, "-t", &tag_b, "--push"],
    );
    assert_eq!(id_a, id_b, "machine B built another image");
    assert_eq!(ran(&ev), [], "{:?}", reasons(&ev));
    assert_eq!(reasons(&ev).len(), 6, "{:?}", reasons(&ev));
    let log = srv.log();
    assert_eq!(
        blob_bytes_moved(&log, lines),
        0,
        "{}",
        log.lines().skip(lines).collect::<Vec<_>>().join("\n")
    );
    let grown = blob_bytes(&b) - before;
    assert!(grown < 100_000, "B's store grew by {grown} bytes");
    verify_clean(&b);
    // Listing and inspecting read no layer.
    ok(&b, &["images"]);
    ok(&b, &["history", &tag_b]);
    assert_eq!(blob_bytes(&b) - before, grown, "images/history downloaded");
    // The pushed image is A's, and runs on B: its layers come when read.
    let pushed = ok(&b, &["inspect", "--format", "{{.Id}}", &tag_b]);
    assert_eq!(pushed.trim(), id_a);
    assert_eq!(ok(&b, &["run", "--rm", &id_b]), want);
    verify_clean(&b);

    // C: empty, one file of the final stage changed, not pushed: only that
    // COPY runs, only the final image's layers are downloaded, and a cold
    // build of the same context agrees.
    let c = machine(dir.path(), "c");
    fs::write(ctx_b.join("final.txt"), "final, changed\n").unwrap();
    let before = blob_bytes(&c);
    let (id_c, ev) = build_json(&c, &ctx_b, &["--cache-from", &cache]);
    assert_eq!(ran(&ev), [(2, 3)], "{:?}", reasons(&ev));
    let grown = blob_bytes(&c) - before;
    assert!(
        grown < 250_000,
        "C downloaded an intermediate layer: {grown} bytes"
    );
    verify_clean(&c);
    let out = ok(&c, &["run", "--rm", &id_c]);
    assert!(out.ends_with("final, changed\n"), "{out}");
    assert_eq!(
        out.lines().take(2).collect::<Vec<_>>(),
        want.lines().take(2).collect::<Vec<_>>()
    );
}

/// `mounts=true`: the contents of a `RUN --mount=type=cache` directory go
/// with the cache, so a step that runs on an empty machine starts with what
/// the last export held (a pip or npm cache survives across CI runners),
/// and a later export replaces them.
fn cache_mounts_travel(cache: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = "FROM busybox\n\
        ARG V=1\n\
        RUN --mount=type=cache,target=/c,id=log sh -c 'echo $V >> /c/log; cp /c/log /seen'\n";
    let ctx = context(dir.path(), &[("Dockerfile", dockerfile)]);
    let to = format!("{cache},mounts=true");
    let from = format!("{},mounts=true", cache.replace("dest=", "src="));
    let mut seen = Vec::new();
    for (n, v) in ["1", "2", "3"].iter().enumerate() {
        let m = machine(dir.path(), &format!("m{n}"));
        let arg = format!("V={v}");
        let (id, ev) = build_json(
            &m,
            &ctx,
            &[
                "--build-arg",
                &arg,
                "--cache-from",
                &from,
                "--cache-to",
                &to,
            ],
        );
        assert_eq!(ran(&ev).len(), 1, "{ev:?}");
        seen.push(ok(&m, &["run", "--rm", &id, "cat", "/seen"]));
        verify_clean(&m);
    }
    assert_eq!(seen, ["1\n", "1\n2\n", "1\n2\n3\n"]);
    // Without mounts=true nothing is restored.
    let m = machine(dir.path(), "plain");
    let plain_from = cache.replace("dest=", "src=");
    let (id, _) = build_json(
        &m,
        &ctx,
        &["--build-arg", "V=4", "--cache-from", &plain_from],
    );
    assert_eq!(ok(&m, &["run", "--rm", &id, "cat", "/seen"]), "4\n");
}

#[test]
fn cache_mounts_travel_through_a_registry() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("srv"), &[]);
    cache_mounts_travel(&format!("type=registry,ref={}/cache/m:ci", srv.addr));
}

#[test]
fn cache_mounts_travel_through_a_directory() {
    if !strata_testkit::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("ci-cache");
    cache_mounts_travel(&format!("type=local,dest={}", d.display()));
}
