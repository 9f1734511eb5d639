//! The false cache hits the cache oracle (`cache_oracle.rs`) was built to
//! catch, one test each: after each change, a warm store must build the
//! image a fresh store builds, and `--explain` must name the input that
//! changed. They need root (RUN) and busybox-static.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

/// The image a fresh store builds from the same context and arguments.
fn cold_id(ctx: &Path, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let root = store_with_busybox(dir.path()).unwrap();
    build_json(&root, ctx, extra).0
}

/// What the miss events of a build say (their explanations, as JSON text).
fn misses(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "step_miss")
        .map(|e| e["explanation"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds in the warm store `s`, then cold; requires the same image and,
/// when `changed` is given, a miss whose explanation mentions it.
fn same_as_cold(s: &Setup, extra: &[&str], changed: Option<&str>) -> String {
    let (warm, events) = build_json(&s.root, &s.ctx, extra);
    let cold = cold_id(&s.ctx, extra);
    assert_eq!(
        warm,
        cold,
        "the warm store reused a layer that no longer matches its inputs:\n{}",
        misses(&events)
    );
    if let Some(what) = changed {
        let m = misses(&events);
        assert!(m.contains(what), "--explain does not name {what:?}:\n{m}");
    }
    warm
}

#[test]
fn source_date_epoch_build_arg_changes_run_and_copy_layers() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY f /f\nRUN echo hi > /run.txt\nWORKDIR /new/dir\n",
        ),
        ("f", "x"),
    ]) else {
        return;
    };
    let first = same_as_cold(&s, &[], None);
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=1000000"];
    let second = same_as_cold(&s, &epoch, Some("epoch 1000000"));
    assert_ne!(first, second);
    // The layers carry the new time.
    ok(&s.root, &["tag", &second, "epoch:1"]);
    let (_, layers, _) = identity(&s.root, "epoch:1");
    for l in &layers[1..] {
        for e in layer_archive(&s.root, l).entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 1_000_000, "{}", entry_path(&e));
        }
    }
    // And `--timestamps preserve` is a different key again.
    same_as_cold(&s, &["--timestamps", "preserve"], Some("preserve"));
}

#[test]
fn add_unpack_false_after_unpack_is_not_a_cache_hit() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\nADD x.tar.gz /t/\n")]) else {
        return;
    };
    let gz = {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(3);
        h.set_mtime(0);
        b.append_data(&mut h, "inner.txt", &b"abc"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap()
    };
    fs::write(s.ctx.join("x.tar.gz"), gz).unwrap();
    same_as_cold(&s, &[], None);
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nADD --unpack=false x.tar.gz /t/\n",
    )
    .unwrap();
    let id = same_as_cold(&s, &[], Some("unpack"));
    ok(&s.root, &["tag", &id, "packed:1"]);
    let (_, layers, _) = identity(&s.root, "packed:1");
    let files = layer_files(&s.root, layers.last().unwrap());
    assert!(files.contains_key("t/x.tar.gz"), "{:?}", files.keys());
    assert!(!files.contains_key("t/inner.txt"));
}

#[test]
fn copy_link_chown_follows_the_base_images_uid() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY --link --chown=app f /f\nCOPY --chown=app f /g\n",
        ),
        ("f", "x"),
    ]) else {
        return;
    };
    same_as_cold(&s, &[], None);
    // The base image, same tag, now gives app another uid.
    let tar = s._dir.path().join("base2.tar");
    assert!(strata_testkit::busybox_rootfs_tar_with(
        &tar,
        "root:x:0:0:root:/root:/bin/sh\napp:x:4242:4343::/home/app:/bin/sh\n",
        "root:x:0:\napp:x:4343:\n",
    ));
    let import = |root: &Path| {
        ok(
            root,
            &[
                "import",
                tar.to_str().unwrap(),
                "busybox",
                "-c",
                "ENV PATH=/bin:/usr/bin",
            ],
        );
    };
    import(&s.root);
    let (warm, events) = build_json(&s.root, &s.ctx, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cold_root = dir.path().join("cold");
    import(&cold_root);
    let (cold, _) = build_json(&cold_root, &s.ctx, &[]);
    assert_eq!(warm, cold, "{}", misses(&events));
    ok(&s.root, &["tag", &warm, "owned:1"]);
    let (_, layers, _) = identity(&s.root, "owned:1");
    for l in &layers[1..] {
        for (path, (_, uid, gid, _)) in layer_files(&s.root, l) {
            if path == "f" || path == "g" {
                assert_eq!((uid, gid), (4242, 4343), "{path}");
            }
        }
    }
}

#[test]
fn cache_mount_uid_gid_mode_and_sharing_are_keyed() {
    let df = |opts: &str| {
        format!(
            "FROM busybox\nRUN --mount=type=cache,target=/c{opts} stat -c '%u %g %a' /c > /cstat\n"
        )
    };
    let Some(s) = setup(&[("Dockerfile", &df(",uid=1000"))]) else {
        return;
    };
    same_as_cold(&s, &[], None);
    for (opts, want) in [
        (",uid=2000", "2000 0 755"),
        (",uid=2000,gid=3000", "2000 3000 755"),
        (",uid=2000,gid=3000,mode=0700", "2000 3000 700"),
        (
            ",uid=2000,gid=3000,mode=0700,sharing=locked",
            "2000 3000 700",
        ),
        (
            ",uid=2000,gid=3000,mode=0700,sharing=private",
            "2000 3000 700",
        ),
    ] {
        fs::write(s.ctx.join("Dockerfile"), df(opts)).unwrap();
        let id = same_as_cold(&s, &[], Some("mount:/c"));
        ok(&s.root, &["tag", &id, "c:1"]);
        let (_, layers, _) = identity(&s.root, "c:1");
        let files = layer_files(&s.root, layers.last().unwrap());
        let got = String::from_utf8_lossy(&files["cstat"].3).trim().to_owned();
        assert_eq!(got, want, "{opts}");
    }
}

#[test]
fn read_only_bind_does_not_leak_host_mtimes_or_owners() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=bind,target=/m cp -p /m/f /f && cp -a /m/d /d\n",
        ),
        ("f", "content"),
        ("d/inner", "inner"),
    ]) else {
        return;
    };
    let first = same_as_cold(&s, &[], None);
    // New mtimes and another owner on the host: the same image, from the
    // cache, and the layer shows neither.
    for p in ["f", "d/inner", "d"] {
        let t = filetime::FileTime::from_unix_time(1_234_567_890, 0);
        filetime::set_file_mtime(s.ctx.join(p), t).unwrap();
        std::os::unix::fs::chown(s.ctx.join(p), Some(4321), Some(4321)).unwrap();
    }
    let (again, events) = build_json(&s.root, &s.ctx, &[]);
    assert_eq!(again, first, "{}", misses(&events));
    assert!(verdicts(&events).values().all(|v| v == "cached"));
    assert_eq!(cold_id(&s.ctx, &[]), first);
    ok(&s.root, &["tag", &first, "bind:1"]);
    let (_, layers, _) = identity(&s.root, "bind:1");
    for e in layer_archive(&s.root, layers.last().unwrap())
        .entries()
        .unwrap()
    {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), 0, "{}", entry_path(&e));
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap()),
            (0, 0),
            "{}",
            entry_path(&e)
        );
    }
}

#[test]
fn cache_mount_times_do_not_reach_the_layer() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,target=/c sh -c 'test -f /c/once || echo x > /c/once; cp -p /c/once /once'\n",
    )]) else {
        return;
    };
    let first = same_as_cold(&s, &[], None);
    // The cache now holds a file written by an earlier build; a new key
    // (another arg) copies it out with its old time preserved.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    same_as_cold(&s, &["--build-arg", "UNUSED=1"], None);
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=cache,target=/c sh -c 'test -f /c/once || echo x > /c/once; cp -p /c/once /once' # again\n",
    )
    .unwrap();
    let second = same_as_cold(&s, &[], Some("instruction"));
    assert_ne!(first, second);
}

#[test]
fn secret_presence_is_not_part_of_the_key() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=tok echo built > /out\n",
    )]) else {
        return;
    };
    let secret = s._dir.path().join("tok");
    fs::write(&secret, "s3cr3t").unwrap();
    let with = format!("id=tok,src={}", secret.display());
    let (a, _) = build_json(&s.root, &s.ctx, &["--secret", &with]);
    let (b, events) = build_json(&s.root, &s.ctx, &[]);
    assert_eq!(a, b);
    assert!(
        verdicts(&events).values().all(|v| v == "cached"),
        "building without the secret reran the step: {}",
        misses(&events)
    );
    // A required secret that is missing is still an error.
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=tok,required echo built > /out\n",
    )
    .unwrap();
    let out = run(&s.root, &["build", s.ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret tok is required"));
}

#[test]
fn relative_strata_root_works() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\nRUN echo hi > /x\n")]) else {
        return;
    };
    let parent = s.root.parent().unwrap();
    let out = std::process::Command::new(strata_bin())
        .current_dir(parent)
        .env("STRATA_ROOT", "./root")
        .args(["build", "-q", s.ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sets an overlay module default (`redirect_dir`, `metacopy`, `index`) and
/// puts the old value back when dropped.
struct OverlayDefault {
    path: std::path::PathBuf,
    old: String,
}

impl OverlayDefault {
    fn set(name: &str, value: &str) -> Option<OverlayDefault> {
        let path = Path::new("/sys/module/overlay/parameters").join(name);
        let old = fs::read_to_string(&path).ok()?;
        fs::write(&path, value).ok()?;
        Some(OverlayDefault {
            path,
            old: old.trim().to_owned(),
        })
    }
}

impl Drop for OverlayDefault {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.old);
    }
}

#[test]
fn overlay_options_are_stated_not_left_to_kernel_defaults() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN mkdir -p /d/e && echo a > /d/f\nRUN mv /d /moved && chown 1000 /bin/busybox\n",
    )]) else {
        return;
    };
    if !strata_testkit::require_overlay() {
        return;
    }
    // Turn on what the diff cannot read, as a distribution kernel may.
    let _guards: Vec<OverlayDefault> = [("redirect_dir", "Y"), ("metacopy", "Y"), ("index", "Y")]
        .into_iter()
        .filter_map(|(n, v)| OverlayDefault::set(n, v))
        .collect();
    let warm = build_json(&s.root, &s.ctx, &[]).0;
    // The copy snapshotter makes the same layers.
    let dir = tempfile::tempdir().unwrap();
    let root = store_with_busybox(dir.path()).unwrap();
    let out = cmd(&root)
        .env("STRATA_SNAPSHOTTER", "copy")
        .args(["build", "--progress", "json", s.ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cold = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "done")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(warm, cold);
    // The real mount line: with the module defaults on, the kernel shows
    // the options strata stated.
    fs::write(
        s.ctx.join("Dockerfile.mi"),
        "FROM busybox\nRUN grep ' / / ' /proc/self/mountinfo > /mountinfo\n",
    )
    .unwrap();
    let mi = s.ctx.join("Dockerfile.mi");
    let (warm, _) = build_json(&s.root, &s.ctx, &["-f", mi.to_str().unwrap()]);
    ok(&s.root, &["tag", &warm, "mi:1"]);
    let (_, layers, _) = identity(&s.root, "mi:1");
    let files = layer_files(&s.root, layers.last().unwrap());
    let line = String::from_utf8_lossy(&files["mountinfo"].3).into_owned();
    assert!(line.contains("overlay"), "{line}");
    // `redirect_dir=off` shows as `follow` where the kernel always follows
    // redirects it finds: either way it creates none.
    for (param, shown) in [
        (
            "redirect_dir",
            &["redirect_dir=off", "redirect_dir=follow"][..],
        ),
        ("metacopy", &["metacopy=off"][..]),
        ("index", &["index=off"][..]),
    ] {
        if Path::new("/sys/module/overlay/parameters")
            .join(param)
            .exists()
        {
            assert!(
                shown.iter().any(|o| line.contains(o)),
                "{param} is not off in the mount: {line}"
            );
        }
    }
}

#[test]
fn strict_runs_prove_the_overlay_snapshotter_ran() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\nRUN echo hi > /x\n")]) else {
        return;
    };
    if !strata_testkit::require_overlay() {
        return;
    }
    let (_, events) = build_json(&s.root, &s.ctx, &[]);
    let plan = events.iter().find(|e| e["event"] == "plan").unwrap();
    assert_eq!(plan["snapshotter"], "overlay", "{plan}");
}

#[test]
fn mount_options_expand_build_args() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\nARG U=1234\nARG T=/c\nRUN --mount=type=cache,target=$T,uid=$U stat -c %u $T > /u\n",
    )]) else {
        return;
    };
    let read_u = |id: &str| {
        ok(&s.root, &["tag", id, "u:1"]);
        let (_, layers, _) = identity(&s.root, "u:1");
        let files = layer_files(&s.root, layers.last().unwrap());
        String::from_utf8_lossy(&files["u"].3).trim().to_owned()
    };
    let id = same_as_cold(&s, &[], None);
    assert_eq!(read_u(&id), "1234");
    let id = same_as_cold(&s, &["--build-arg", "U=99"], Some("uid=99"));
    assert_eq!(read_u(&id), "99");
}
