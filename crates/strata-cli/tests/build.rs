//! End-to-end tests of `strata build`: instruction semantics, the content
//! cache and its explanations, reproducibility, mounts, failures.
//! They need root (RUN runs in a sandbox) and busybox-static.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;

fn layers(root: &Path, image: &str) -> Vec<String> {
    identity(root, image).1
}

fn run_out(root: &Path, args: &[&str]) -> String {
    ok(root, &[&["run", "--rm"], args].concat())
}

#[test]
fn instructions_set_the_config() {
    let Some(s) = setup(&[(
        "Dockerfile",
        r#"FROM busybox
ENV A=1 B="two words"
ENV C=${A}-x
LABEL org.example.v="${C}" other=yes
WORKDIR /srv/app
USER app:app
EXPOSE 80 53/udp 8000-8001
VOLUME ["/data", "/logs"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD wget -q -O- localhost || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered > /tmp/onbuild
MAINTAINER someone@example.com
ENTRYPOINT ["/bin/echo"]
"#,
    )]) else {
        return;
    };
    ok(
        &s.root,
        &["build", "-q", "-t", "cfg:1", s.ctx.to_str().unwrap()],
    );
    let v = inspect(&s.root, "cfg:1");
    let c = &v["Config"];
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"A=1") && env.contains(&"B=two words") && env.contains(&"C=1-x"),
        "{env:?}"
    );
    assert_eq!(c["Labels"]["org.example.v"], "1-x");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "app:app");
    let ports: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    assert_eq!(c["Volumes"].as_object().unwrap().len(), 2);
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Healthcheck"]["Test"][0], "CMD-SHELL");
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(c["Healthcheck"]["Retries"], 3);
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(
        c["OnBuild"],
        serde_json::json!(["RUN echo triggered > /tmp/onbuild"])
    );
    assert_eq!(
        v["Author"]
            .as_str()
            .or(v["Config"]["Author"].as_str())
            .unwrap_or("someone@example.com"),
        "someone@example.com"
    );
    // A new ENTRYPOINT resets the CMD inherited from busybox (`sh`).
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert!(c["Cmd"].is_null(), "inherited CMD kept: {}", c["Cmd"]);
    // WORKDIR created the directory, owned by the USER at that point (root).
    let out = run_out(
        &s.root,
        &["--entrypoint", "stat", "cfg:1", "-c", "%U %a", "/srv/app"],
    );
    assert_eq!(out.trim(), "root 755");

    // ONBUILD runs in a build that uses the image as its base.
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM cfg:1\nRUN test -f /tmp/onbuild\n",
    )
    .unwrap();
    ok(
        &s.root,
        &["build", "-q", "-t", "child:1", s.ctx.to_str().unwrap()],
    );
    let child = inspect(&s.root, "child:1");
    assert!(
        child["Config"]["OnBuild"].is_null(),
        "triggers must not carry over"
    );
    assert_eq!(
        run_out(&s.root, &["--entrypoint", "cat", "child:1", "/tmp/onbuild"]).trim(),
        "triggered"
    );
}

#[test]
fn args_are_scoped_and_overridable() {
    let Some(s) = setup(&[(
        "Dockerfile",
        r#"ARG BASE=busybox
ARG SHARED=from-meta
FROM ${BASE}
ARG SHARED
ARG VERSION=1.0
ARG EMPTY
RUN echo "$VERSION $SHARED [$EMPTY] $TARGETARCH" > /args
ENV KEEP=$VERSION
"#,
    )]) else {
        return;
    };
    let id = ok(
        &s.root,
        &["build", "-q", "-t", "a:1", s.ctx.to_str().unwrap()],
    );
    assert_eq!(
        run_out(&s.root, &["a:1", "cat", "/args"]).trim(),
        "1.0 from-meta []"
    );
    let env = inspect(&s.root, "a:1")["Config"]["Env"].to_string();
    assert!(
        env.contains("KEEP=1.0") && !env.contains("VERSION="),
        "ARG leaked into ENV: {env}"
    );
    // A build arg changes the value and the cache key.
    let out = run(
        &s.root,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "a:2",
            "--build-arg",
            "VERSION=2.0",
            "--build-arg",
            "UNUSED=x",
            s.ctx.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("build arg VERSION changed (\"1.0\" -> \"2.0\")"),
        "{err}"
    );
    assert!(err.contains("not consumed: UNUSED"), "{err}");
    assert_eq!(
        run_out(&s.root, &["a:2", "cat", "/args"]).trim(),
        "2.0 from-meta []"
    );
    assert_ne!(identity(&s.root, "a:2").0, id.trim());
    // History shows the build args the RUN saw, as BuildKit does.
    let hist = ok(&s.root, &["history", "--no-trunc", "a:2"]);
    assert!(
        hist.contains("RUN |3 SHARED=from-meta VERSION=2.0 EMPTY= /bin/sh -c"),
        "{hist}"
    );
}

#[test]
fn run_forms_users_and_heredocs() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\n\
         WORKDIR /work\n\
         RUN [\"/bin/sh\", \"-c\", \"echo exec > exec.txt\"]\n\
         USER app\n\
         RUN id -u > /tmp/uid && touch /tmp/owned\n\
         USER root\n\
         RUN <<EOF\n\
         echo one > heredoc.txt\n\
         echo two >> heredoc.txt\n\
         EOF\n\
         RUN <<EOT\n\
         #!/bin/sh\n\
         echo \"script $0\" > script.txt\n\
         EOT\n",
    )]) else {
        return;
    };
    ok(
        &s.root,
        &["build", "-q", "-t", "r:1", s.ctx.to_str().unwrap()],
    );
    assert_eq!(
        run_out(&s.root, &["r:1", "cat", "/work/exec.txt"]).trim(),
        "exec"
    );
    assert_eq!(run_out(&s.root, &["r:1", "cat", "/tmp/uid"]).trim(), "1000");
    assert_eq!(
        run_out(&s.root, &["r:1", "stat", "-c", "%u", "/tmp/owned"]).trim(),
        "1000"
    );
    assert_eq!(
        run_out(&s.root, &["r:1", "cat", "/work/heredoc.txt"]),
        "one\ntwo\n"
    );
    assert_eq!(
        run_out(&s.root, &["r:1", "cat", "/work/script.txt"]).trim(),
        "script /dev/pipes/EOT"
    );
    // Mount points made for the run (/etc/hosts, /dev/pipes) are not in layers.
    for l in layers(&s.root, "r:1").iter().skip(1) {
        let files = layer_files(&s.root, l);
        assert!(
            !files
                .keys()
                .any(|p| p.starts_with("etc") || p.starts_with("dev")),
            "mount stubs leaked into a layer: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn failing_run_reports_and_leaves_no_half_layer() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo before > /f\nRUN echo 'some output' && touch /half && exit 3\n",
    )]) else {
        return;
    };
    let out = run(
        &s.root,
        &["build", "--progress", "plain", s.ctx.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit code 3"), "{err}");
    assert!(
        err.contains("some output"),
        "last output lines missing: {err}"
    );
    assert!(err.contains("Dockerfile:3"), "no location: {err}");
    verify_clean(&s.root);
    let active = fs::read_dir(s.root.join("snapshots/.active"))
        .unwrap()
        .count();
    assert_eq!(active, 0, "an active snapshot was left behind");
}

#[test]
fn cache_is_keyed_on_content_not_timestamps() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY a.txt /a.txt\nCOPY b/ /b/\nRUN cat /a.txt /b/* > /all\n",
        ),
        ("a.txt", "alpha\n"),
        ("b/one.txt", "one\n"),
        ("b/two.txt", "two\n"),
    ]) else {
        return;
    };
    let (id1, ev1) = build_json(&s.root, &s.ctx, &[]);
    let v1 = verdicts(&ev1);
    assert!(v1.values().all(|v| v == "first_build"), "{v1:?}");

    // No change: everything cached, same image.
    let (id2, ev2) = build_json(&s.root, &s.ctx, &[]);
    assert_eq!(id1, id2);
    assert!(verdicts(&ev2).values().all(|v| v == "cached"));

    // New timestamps on every file (as re-extracting an archive does).
    for f in ["a.txt", "b/one.txt", "b/two.txt", "Dockerfile"] {
        let t = filetime::FileTime::from_unix_time(2_000_000_000, 0);
        filetime::set_file_mtime(s.ctx.join(f), t).unwrap();
    }
    let (id3, ev3) = build_json(&s.root, &s.ctx, &[]);
    assert_eq!(id1, id3, "touching files changed the image");
    assert!(
        verdicts(&ev3).values().all(|v| v == "cached"),
        "{:?}",
        verdicts(&ev3)
    );

    // One byte of one file: that COPY and everything after it miss.
    fs::write(s.ctx.join("b/two.txt"), "twO\n").unwrap();
    let (id4, ev4) = build_json(&s.root, &s.ctx, &[]);
    assert_ne!(id1, id4);
    let v4 = verdicts(&ev4);
    assert_eq!(
        v4.get(&(0, 1)).map(String::as_str),
        Some("cached"),
        "{v4:?}"
    );
    assert_eq!(
        v4.get(&(0, 2)).map(String::as_str),
        Some("changed"),
        "{v4:?}"
    );
    assert_eq!(
        v4.get(&(0, 3)).map(String::as_str),
        Some("earlier_step"),
        "{v4:?}"
    );
    let miss = ev4
        .iter()
        .find(|e| e["event"] == "step_miss" && e["id"]["step"] == 2)
        .unwrap();
    let change = &miss["explanation"]["changes"][0];
    assert_eq!(change["what"], "file_changed");
    assert_eq!(change["path"], "b/two.txt");
    // The human form names the file and the digest prefixes.
    let out = run(
        &s.root,
        &[
            "build",
            "--progress",
            "plain",
            "--explain",
            "--no-cache-filter",
            "none",
            s.ctx.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CACHED: 1 source file(s) unchanged"), "{err}");
    fs::write(s.ctx.join("b/two.txt"), "TWO\n").unwrap();
    let out = run(
        &s.root,
        &["build", "--progress", "plain", s.ctx.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let (old, new) = (
        &strata_oci::Digest::sha256(b"twO\n").hex()[..8].to_owned(),
        &strata_oci::Digest::sha256(b"TWO\n").hex()[..8].to_owned(),
    );
    assert!(
        err.contains(&format!("b/two.txt changed ({old} -> {new})")),
        "{err}"
    );
    assert!(
        err.contains("rebuilding: earlier step [3/4] changed: b/two.txt changed"),
        "{err}"
    );
}

/// path -> mtime of every entry in a layer blob.
fn layer_mtimes(root: &Path, digest: &str) -> BTreeMap<String, u64> {
    let mut ar = layer_archive(root, digest);
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        out.insert(entry_path(&e), e.header().mtime().unwrap());
    }
    out
}

#[test]
fn run_keeps_the_mtimes_its_inputs_carry_and_stamps_what_it_writes() {
    // /pkg/old stands for a file dpkg or tar unpacks with its packaged time;
    // /pkg/new is written by the command. Python's .pyc files record their
    // source's mtime, so flattening packaged times breaks them.
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN mkdir /pkg && echo old > /pkg/old && touch -d '2020-09-13 12:26:40' /pkg/old && echo new > /pkg/new\nRUN chmod 600 /pkg/old && echo more >> /pkg/new\nRUN --mount=type=bind,target=/src,rw cp -p /src/Dockerfile /pkg/df\n",
    )]) else {
        return;
    };
    // Context mtimes are not inputs: a copy out of a bind mount must not
    // carry them into the layer.
    filetime::set_file_mtime(
        s.ctx.join("Dockerfile"),
        filetime::FileTime::from_unix_time(1_000_000_000, 0),
    )
    .unwrap();
    let build = |root: &Path| {
        let args = ["build", "-q", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
        let id = ok(
            root,
            &[&args[..], &["-t", "t:1", s.ctx.to_str().unwrap()]].concat(),
        );
        id.trim().to_owned()
    };
    let id = build(&s.root);
    let ls = layers(&s.root, "t:1");
    let first = layer_mtimes(&s.root, &ls[ls.len() - 3]);
    let old = first["pkg/old"];
    assert!((1_599_000_000..1_601_000_000).contains(&old), "{first:?}");
    assert_eq!(first["pkg/new"], 1_700_000_000, "{first:?}");
    assert_eq!(first["pkg"], 1_700_000_000, "{first:?}");
    // A later step that only copies /pkg/old up keeps its time; what it
    // rewrites gets the epoch again.
    let second = layer_mtimes(&s.root, &ls[ls.len() - 2]);
    assert_eq!(second["pkg/old"], old, "{second:?}");
    assert_eq!(second["pkg/new"], 1_700_000_000, "{second:?}");
    let third = layer_mtimes(&s.root, &ls[ls.len() - 1]);
    assert_eq!(third["pkg/df"], 1_700_000_000, "{third:?}");
    // The running container sees the same times.
    let seen = run_out(
        &s.root,
        &["t:1", "stat", "-c", "%Y", "/pkg/old", "/pkg/new"],
    );
    assert_eq!(
        seen.split_whitespace().collect::<Vec<_>>(),
        [old.to_string(), "1700000000".to_string()]
    );
    // Still reproducible: another store, later, gives the same image.
    let other = tempfile::tempdir().unwrap();
    let root2 = store_with_busybox(other.path()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(build(&root2), id);
}

#[test]
fn no_cache_rebuilds_to_the_same_digest() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY f /f\nRUN echo built > /g && mkdir -p /d/e\n",
        ),
        ("f", "content\n"),
    ]) else {
        return;
    };
    let (id1, _) = build_json(&s.root, &s.ctx, &[]);
    let (id2, ev) = build_json(&s.root, &s.ctx, &["--no-cache"]);
    let v = verdicts(&ev);
    assert!(v.values().all(|r| r == "no_cache"), "{v:?}");
    assert_eq!(id1, id2, "a rebuild without cache must give the same image");
    // --no-cache-filter for a named stage only.
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox AS one\nRUN echo 1 > /1\nFROM busybox AS two\nCOPY --from=one /1 /1\nRUN echo 2 > /2\n",
    )
    .unwrap();
    build_json(&s.root, &s.ctx, &[]);
    let (_, ev) = build_json(&s.root, &s.ctx, &["--no-cache-filter", "two"]);
    let v = verdicts(&ev);
    assert_eq!(v.get(&(0, 1)).map(String::as_str), Some("cached"), "{v:?}");
    assert_eq!(
        v.get(&(1, 2)).map(String::as_str),
        Some("no_cache"),
        "{v:?}"
    );
}

#[test]
fn same_inputs_same_digest_across_stores_and_snapshotters() {
    let files = [
        (
            "Dockerfile",
            "FROM busybox AS b\nRUN mkdir -p /out && echo x > /out/x && ln -s x /out/y\nFROM busybox\nCOPY --from=b /out /out\nCOPY . /ctx\nRUN rm /bin/vi && chmod 700 /ctx\n",
        ),
        ("z.txt", "z\n"),
    ];
    let Some(s) = setup(&files) else {
        return;
    };
    let (id1, _) = build_json(&s.root, &s.ctx, &[]);
    // Another store, and the copy-and-diff snapshotter instead of overlayfs.
    let other = tempfile::tempdir().unwrap();
    let root2 = store_with_busybox(other.path()).unwrap();
    let out = cmd(&root2)
        .env("STRATA_SNAPSHOTTER", "copy")
        .args(["build", "-q", s.ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id1);
    // Both executors give the same result.
    let third = tempfile::tempdir().unwrap();
    let root3 = store_with_busybox(third.path()).unwrap();
    let id3 = ok(
        &root3,
        &[
            "build",
            "-q",
            "--isolation",
            "builtin",
            s.ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(id3.trim(), id1);
    if strata_testkit::require_tool("runc") {
        let fourth = tempfile::tempdir().unwrap();
        let root4 = store_with_busybox(fourth.path()).unwrap();
        let id4 = ok(
            &root4,
            &["build", "-q", "--isolation", "oci", s.ctx.to_str().unwrap()],
        );
        assert_eq!(id4.trim(), id1);
    }
}

#[test]
fn dockerignore_keeps_files_out_of_layers() {
    let Some(s) = setup(&[
        ("Dockerfile", "FROM busybox\nCOPY . /app\n"),
        (".dockerignore", "secret.txt\nlogs/\n!logs/keep.log\n"),
        ("app.py", "print(1)\n"),
        ("secret.txt", "hunter2\n"),
        ("logs/a.log", "noise\n"),
        ("logs/keep.log", "keep\n"),
    ]) else {
        return;
    };
    ok(
        &s.root,
        &["build", "-q", "-t", "ign:1", s.ctx.to_str().unwrap()],
    );
    let l = layers(&s.root, "ign:1");
    let files = layer_files(&s.root, l.last().unwrap());
    let names: Vec<&String> = files.keys().collect();
    assert!(
        files.contains_key("app/app.py") && files.contains_key("app/logs/keep.log"),
        "{names:?}"
    );
    assert!(
        !files
            .keys()
            .any(|p| p.contains("secret") || p.ends_with("a.log")),
        "{names:?}"
    );
    // Context files are owned by root in the image.
    assert_eq!(files["app/app.py"].1, 0);
    // Naming an excluded file is an error that says why.
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nCOPY secret.txt /s\n",
    )
    .unwrap();
    let out = run(&s.root, &["build", s.ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret.txt: not found (it is excluded by .dockerignore)"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn copy_follows_docker_rules() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            r#"FROM busybox AS src
RUN mkdir -p /opt/tool/bin && echo tool > /opt/tool/bin/t && chmod 755 /opt/tool/bin/t && chown 1000:1000 /opt/tool/bin/t
FROM busybox
RUN mkdir -p /usr/lib && ln -s usr/lib /lib2
WORKDIR /app
COPY dir/ ./into/
COPY *.md docs/
COPY --chown=app:app --chmod=700 one.txt /owned
COPY --from=src /opt/tool /tool
COPY one.txt /lib2/
COPY --parents dir/sub/deep.txt /p/
COPY --exclude=*.skip dir /ex/
ENV WHO=world
COPY <<EOF /inline.txt
inline $WHO
EOF
"#,
        ),
        ("dir/a.txt", "a"),
        ("dir/x.skip", "x"),
        ("dir/sub/deep.txt", "deep"),
        ("README.md", "r"),
        ("CHANGES.md", "c"),
        ("one.txt", "1"),
    ]) else {
        return;
    };
    ok(
        &s.root,
        &["build", "-q", "-t", "c:1", s.ctx.to_str().unwrap()],
    );
    let sh = |cmd: &str| run_out(&s.root, &["c:1", "sh", "-c", cmd]);
    assert_eq!(sh("cat /app/into/a.txt /app/into/sub/deep.txt"), "adeep");
    assert_eq!(sh("ls /app/docs | tr '\\n' ' '"), "CHANGES.md README.md ");
    assert_eq!(sh("stat -c '%u:%g %a' /owned").trim(), "1000:1000 700");
    assert_eq!(
        sh("cat /tool/bin/t; stat -c %u /tool/bin/t").trim(),
        "tool\n1000"
    );
    // The destination symlink resolves inside the image.
    assert_eq!(sh("cat /usr/lib/one.txt").trim(), "1");
    assert_eq!(sh("cat /p/dir/sub/deep.txt"), "deep");
    assert_eq!(sh("ls /ex | tr '\\n' ' '"), "a.txt sub ");
    assert_eq!(sh("cat /inline.txt").trim(), "inline world");
    // Several sources need a directory destination.
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nCOPY one.txt README.md /nodir\n",
    )
    .unwrap();
    let out = run(&s.root, &["build", s.ctx.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be a directory and end with a /"),
        "{err}"
    );
}

#[test]
fn add_unpacks_archives_and_downloads_urls() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\n")]) else {
        return;
    };
    // One tar, in every compression ADD understands.
    let tar_path = s.ctx.join("t.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&tar_path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "pkg/hello.txt", &b"hi\n"[..])
            .unwrap();
        b.finish().unwrap();
    }
    for (ext, prog) in [
        ("gz", "gzip"),
        ("bz2", "bzip2"),
        ("xz", "xz"),
        ("zst", "zstd"),
    ] {
        if !strata_testkit::require_tool(prog) {
            return;
        }
        let out = std::process::Command::new(prog)
            .args(["-c", tar_path.to_str().unwrap()])
            .output()
            .unwrap();
        fs::write(s.ctx.join(format!("t.tar.{ext}")), out.stdout).unwrap();
    }
    // A tiny HTTP server for ADD URL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let body = b"downloaded\n";
            let _ = std::io::Write::write_all(
                &mut stream,
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = std::io::Write::write_all(&mut stream, body);
        }
    });
    let sum = strata_oci::Digest::sha256(b"downloaded\n");
    fs::write(
        s.ctx.join("Dockerfile"),
        format!(
            "FROM busybox\n\
             ADD t.tar /plain/\n\
             ADD t.tar.gz /gz/\n\
             ADD t.tar.bz2 /bz2/\n\
             ADD t.tar.xz /xz/\n\
             ADD t.tar.zst /zst/\n\
             COPY t.tar.gz /copied/\n\
             ADD --checksum={sum} http://127.0.0.1:{port}/files/dl.txt /web/\n"
        ),
    )
    .unwrap();
    ok(
        &s.root,
        &["build", "-q", "-t", "add:1", s.ctx.to_str().unwrap()],
    );
    let sh = |cmd: &str| run_out(&s.root, &["add:1", "sh", "-c", cmd]);
    assert_eq!(sh("cat /plain/pkg/hello.txt /gz/pkg/hello.txt /bz2/pkg/hello.txt /xz/pkg/hello.txt /zst/pkg/hello.txt"), "hi\n".repeat(5));
    assert_eq!(sh("ls /copied"), "t.tar.gz\n", "COPY must not unpack");
    assert_eq!(
        sh("cat /web/dl.txt; stat -c %a /web/dl.txt"),
        "downloaded\n600\n"
    );
    // A wrong checksum fails the build.
    let bad = strata_oci::Digest::sha256(b"other");
    fs::write(
        s.ctx.join("Dockerfile"),
        format!("FROM busybox\nADD --checksum={bad} http://127.0.0.1:{port}/x /x\n"),
    )
    .unwrap();
    let out = run(&s.root, &["build", s.ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"));
}

#[test]
fn mounts_cache_secret_bind_and_network() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            r#"FROM busybox AS other
RUN echo from-stage > /made
FROM busybox
RUN --mount=type=cache,target=/cache sh -c 'n=$(cat /cache/n 2>/dev/null || echo 0); echo $((n+1)) > /cache/n; cp /cache/n /count'
RUN --mount=type=secret,id=token sh -c 'test "$(wc -c < /run/secrets/token)" = 12 && grep -q "^s3cr3t-v" /run/secrets/token && echo ok > /secret-ok'
RUN --mount=type=secret,id=token,env=TOKEN sh -c 'test ${#TOKEN} = 12'
RUN --mount=type=bind,from=other,source=/made,target=/m cp /m /copied
RUN --mount=type=bind,source=data.txt,target=/d.txt cp /d.txt /bound
RUN --network=none sh -c 'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " > /ifaces'
"#,
        ),
        ("data.txt", "bound data\n"),
        (".dockerignore", "secret.file\n"),
    ]) else {
        return;
    };
    let secret = s.ctx.parent().unwrap().join("secret.file");
    fs::write(&secret, "s3cr3t-value").unwrap();
    let spec = format!("id=token,src={}", secret.display());
    ok(
        &s.root,
        &[
            "build",
            "-q",
            "-t",
            "m:1",
            "--secret",
            &spec,
            s.ctx.to_str().unwrap(),
        ],
    );
    let sh = |img: &str, cmd: &str| run_out(&s.root, &[img, "sh", "-c", cmd]);
    assert_eq!(
        sh("m:1", "cat /count /secret-ok /copied /bound /ifaces"),
        "1\nok\nfrom-stage\nbound data\nlo\n"
    );
    assert_eq!(
        sh("m:1", "ls /cache 2>/dev/null | wc -l").trim(),
        "0",
        "cache content leaked into the image"
    );
    // The cache mount persists across builds.
    ok(
        &s.root,
        &[
            "build",
            "-q",
            "-t",
            "m:2",
            "--no-cache",
            "--secret",
            &spec,
            s.ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(sh("m:2", "cat /count").trim(), "2");
    // The secret is nowhere in the store: no layer, config or history.
    for entry in walk(&s.root.join("blobs")) {
        let data = fs::read(&entry).unwrap();
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut plain)
            .is_err()
        {
            plain = data;
        }
        assert!(
            !plain.windows(12).any(|w| w == b"s3cr3t-value"),
            "secret found in {}",
            entry.display()
        );
    }
    // A missing required secret is a clear error.
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=token,required=true true\n",
    )
    .unwrap();
    let out = run(&s.root, &["build", "--no-cache", s.ctx.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret token is required"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn target_prunes_and_independent_stages_run_together() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox AS broken\nRUN exit 1\n\
         FROM busybox AS left\nRUN sleep 1 && echo l > /l\n\
         FROM busybox AS right\nRUN sleep 1 && echo r > /r\n\
         FROM busybox AS final\nCOPY --from=left /l /l\nCOPY --from=right /r /r\n",
    )]) else {
        return;
    };
    // `broken` is not needed by `final`.
    let (_, events) = build_json(&s.root, &s.ctx, &["--target", "final", "-t", "t:1"]);
    assert!(
        !events.iter().any(|e| e["id"]["stage"] == 0),
        "unneeded stage was built"
    );
    // left and right overlap in time: both RUNs started before either ended.
    let pos = |ev: &str, stage: u64| {
        events
            .iter()
            .position(|e| e["event"] == ev && e["id"]["stage"] == stage && e["id"]["step"] == 1)
            .unwrap()
    };
    assert!(
        pos("step_started", 1) < pos("step_done", 2)
            && pos("step_started", 2) < pos("step_done", 1)
    );
    assert_eq!(run_out(&s.root, &["t:1", "cat", "/l", "/r"]), "l\nr\n");
    let out = run(
        &s.root,
        &["build", "--target", "nope", s.ctx.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("target stage \"nope\" could not be found")
    );
}

#[test]
fn outputs_and_iidfile() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\nRUN echo out > /o\n")]) else {
        return;
    };
    let d = s.ctx.parent().unwrap();
    let oci = d.join("oci-out");
    let archive = d.join("img.tar");
    let iid = d.join("iid");
    ok(
        &s.root,
        &[
            "build",
            "-q",
            "-t",
            "out:1",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            "--output",
            &format!("type=docker,dest={}", archive.display()),
            "--iidfile",
            iid.to_str().unwrap(),
            s.ctx.to_str().unwrap(),
        ],
    );
    let id = fs::read_to_string(&iid).unwrap();
    assert_eq!(id, identity(&s.root, "out:1").0);
    assert!(oci.join("index.json").is_file() && oci.join("oci-layout").is_file());
    // The archive loads into another store as the same image.
    let other = tempfile::tempdir().unwrap();
    let root2 = other.path().join("r");
    ok(&root2, &["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(identity(&root2, "out:1").0, id);
}

#[test]
fn killed_build_leaves_the_store_consistent() {
    let Some(s) = setup(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo start && sleep 30 && echo end > /end\n",
    )]) else {
        return;
    };
    let mut child = cmd(&s.root)
        .args(["build", "--progress", "json", s.ctx.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the RUN has produced output, then kill -9.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            break;
        }
        if line.contains("\"output\"") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    verify_clean(&s.root);
    // The next build works (and is not confused by what was left).
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo end > /end\n",
    )
    .unwrap();
    ok(
        &s.root,
        &["build", "-q", "-t", "k:1", s.ctx.to_str().unwrap()],
    );
    assert_eq!(run_out(&s.root, &["k:1", "cat", "/end"]).trim(), "end");
    ok(&s.root, &["prune"]);
    verify_clean(&s.root);
}

#[test]
fn parse_errors_point_at_the_line() {
    let Some(s) = setup(&[("Dockerfile", "FROM busybox\nRUN true\nCOPPY a b\n")]) else {
        return;
    };
    let out = run(&s.root, &["build", s.ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("COPPY"), "{err}");
    let out = run(&s.root, &["build", "--bogus-flag", "."]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

/// A layer's snapshot directory is made only when a later step needs its
/// files (a RUN, `strata run`), and then without reading its blob back:
/// COPY layers followed by a RUN are extracted while they are written, a
/// RUN's upper directory becomes its snapshot. Lookups into a layer that
/// was never extracted (the second COPY's destination) use its index.
#[test]
fn snapshots_are_made_only_when_something_needs_the_files() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY a/ /app/\nCOPY b.txt /app/sub/b.txt\n",
        ),
        ("a/x", "x\n"),
        ("a/sub/y", "y\n"),
        ("b.txt", "b\n"),
        (
            "Dockerfile.run",
            "FROM busybox\nCOPY a/ /srv/\nRUN cat /srv/x /srv/sub/y > /both\n",
        ),
    ]) else {
        return;
    };
    let snapshot = |diff_id: &str| {
        s.root
            .join("snapshots")
            .join(diff_id.trim_start_matches("sha256:"))
    };
    let index = |diff_id: &str| {
        s.root
            .join("snapshots/.index")
            .join(diff_id.trim_start_matches("sha256:"))
    };
    ok(
        &s.root,
        &["build", "-q", "-t", "lazy:1", s.ctx.to_str().unwrap()],
    );
    let (_, _, diff_ids) = identity(&s.root, "lazy:1");
    let copies = &diff_ids[diff_ids.len() - 2..];
    for d in copies {
        assert!(!snapshot(d).exists(), "{d} was extracted");
        assert!(index(d).is_file(), "{d} has no index");
    }
    // The second COPY merged into /app, which only the index knew.
    assert_eq!(
        run_out(&s.root, &["lazy:1", "cat", "/app/sub/b.txt", "/app/x"]),
        "b\nx\n"
    );
    for d in copies {
        assert!(snapshot(d).is_dir(), "`strata run` did not extract {d}");
    }

    let df = s.ctx.join("Dockerfile.run");
    ok(
        &s.root,
        &[
            "build",
            "-q",
            "--no-cache",
            "-f",
            df.to_str().unwrap(),
            "-t",
            "lazy:2",
            s.ctx.to_str().unwrap(),
        ],
    );
    let (_, _, diff_ids) = identity(&s.root, "lazy:2");
    for d in &diff_ids[diff_ids.len() - 2..] {
        assert!(snapshot(d).is_dir(), "{d} was not made during the build");
    }
    assert_eq!(run_out(&s.root, &["lazy:2", "cat", "/both"]), "x\ny\n");
}

#[test]
fn explain_speaks_plainly() {
    let Some(s) = setup(&[
        ("Dockerfile", "FROM busybox\nCOPY a /a\nRUN cat /a > /b\n"),
        ("a", "alpha\n"),
    ]) else {
        return;
    };
    let explain = |s: &Setup| -> String {
        let out = run(
            &s.root,
            &[
                "build",
                "--progress",
                "plain",
                "--explain",
                s.ctx.to_str().unwrap(),
            ],
        );
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let racy = std::time::Duration::from_millis(2100);
    explain(&s);
    // Nothing touched: no "new timestamps" (files just written are re-read
    // because their times are too recent to trust, which is not a touch).
    let err = explain(&s);
    assert!(!err.contains("new timestamps"), "{err}");
    std::thread::sleep(racy);
    let err = explain(&s);
    assert!(!err.contains("new timestamps"), "{err}");
    // The same bytes written again: touched, not changed.
    fs::write(s.ctx.join("a"), "alpha\n").unwrap();
    std::thread::sleep(racy);
    let err = explain(&s);
    assert!(err.contains("1 have new timestamps, same content"), "{err}");
    // A step inserted: it is new, the steps after it name it, and nothing
    // is said about their unchanged environment or about themselves.
    fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo inserted > /i\nCOPY a /a\nRUN cat /a > /b\n",
    )
    .unwrap();
    let err = explain(&s);
    assert!(
        err.contains("[3/4] rebuilding: earlier step [2/4] changed"),
        "{err}"
    );
    assert!(
        err.contains("[4/4] rebuilding: earlier step [2/4] changed"),
        "{err}"
    );
    assert!(!err.contains("env PATH"), "{err}");
    for n in 1..=4 {
        assert!(
            !err.contains(&format!("[{n}/4] rebuilding: earlier step [{n}/4]")),
            "a step blames itself: {err}"
        );
    }
}
