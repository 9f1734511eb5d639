//! What a build reads and writes besides a context directory: a Dockerfile
//! or a context tarball on standard input, git and HTTP contexts, and the
//! final stage's files as a directory or a tar (`-o`).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::*;

/// `strata build ARGS` with `input` on standard input; returns stdout.
fn build_stdin(root: &std::path::Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = cmd(root)
        .arg("build")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "strata build {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn cat(root: &std::path::Path, image: &str, path: &str) -> String {
    ok(root, &["run", "--rm", image, "cat", path])
}

fn context_tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn dockerfile_or_context_tarball_on_stdin() {
    let Some(s) = setup(&[("data.txt", "from the context\n")]) else {
        return;
    };
    // `build -`: a Dockerfile, no context.
    build_stdin(
        &s.root,
        &["-q", "-t", "stdin:1", "-"],
        b"FROM busybox\nRUN echo piped > /x\n",
    );
    assert_eq!(cat(&s.root, "stdin:1", "/x"), "piped\n");
    // `-f -`: the Dockerfile from stdin, the context from the directory.
    build_stdin(
        &s.root,
        &["-q", "-t", "stdin:2", "-f", "-", s.ctx.to_str().unwrap()],
        b"FROM busybox\nCOPY data.txt /data.txt\n",
    );
    assert_eq!(cat(&s.root, "stdin:2", "/data.txt"), "from the context\n");
    // `build -` with a context tarball.
    let tgz = context_tar_gz(&[
        ("Dockerfile", "FROM busybox\nCOPY in.txt /in.txt\n"),
        ("in.txt", "from the tarball\n"),
    ]);
    build_stdin(&s.root, &["-q", "-t", "stdin:3", "-"], &tgz);
    assert_eq!(cat(&s.root, "stdin:3", "/in.txt"), "from the tarball\n");
    // Nothing of the unpacked context is left in the store's scratch space.
    let tmp: Vec<_> = std::fs::read_dir(s.root.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn git_context_with_ref_and_subdir() {
    let Some(s) = setup(&[]) else {
        return;
    };
    if !strata_testkit::require_tool("git") {
        return;
    }
    let work = s._dir.path().join("work");
    std::fs::create_dir_all(work.join("web")).unwrap();
    std::fs::write(
        work.join("web/Dockerfile"),
        "FROM busybox\nCOPY page.txt /page.txt\n",
    )
    .unwrap();
    std::fs::write(work.join("web/page.txt"), "version one\n").unwrap();
    let git = |args: &[&str]| {
        strata_testkit::run_ok(
            Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(&work),
        )
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    git(&["tag", "v1"]);
    std::fs::write(work.join("web/page.txt"), "version two\n").unwrap();
    git(&["commit", "-q", "-am", "two"]);
    let bare = s._dir.path().join("repo.git");
    strata_testkit::run_ok(
        Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(&work)
            .arg(&bare),
    );
    let url = format!("file://{}", bare.display());
    ok(
        &s.root,
        &["build", "-q", "-t", "git:1", &format!("{url}#v1:web")],
    );
    assert_eq!(cat(&s.root, "git:1", "/page.txt"), "version one\n");
    ok(
        &s.root,
        &["build", "-q", "-t", "git:2", &format!("{url}#main:web")],
    );
    assert_eq!(cat(&s.root, "git:2", "/page.txt"), "version two\n");
    let out = run(&s.root, &["build", &format!("{url}#main:nothere")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothere"));
}

/// Serves `body` for every request on a loopback port until the test ends.
fn serve_once_per_request(body: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn http_tarball_and_dockerfile_contexts() {
    let Some(s) = setup(&[]) else {
        return;
    };
    let tgz = context_tar_gz(&[
        ("Dockerfile", "FROM busybox\nCOPY a.txt /a.txt\n"),
        ("a.txt", "over http\n"),
    ]);
    let url = serve_once_per_request(tgz);
    ok(
        &s.root,
        &["build", "-q", "-t", "http:1", &format!("{url}/ctx.tar.gz")],
    );
    assert_eq!(cat(&s.root, "http:1", "/a.txt"), "over http\n");
    let url = serve_once_per_request(b"FROM busybox\nRUN echo remote > /r\n".to_vec());
    ok(
        &s.root,
        &["build", "-q", "-t", "http:2", &format!("{url}/Dockerfile")],
    );
    assert_eq!(cat(&s.root, "http:2", "/r"), "remote\n");
}

#[test]
fn outputs_the_final_stages_files_as_a_directory_or_a_tar() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox AS build\nRUN mkdir /out && echo artifact > /out/app && rm /bin/ls\nFROM scratch\nCOPY --from=build /out /\n",
        ),
    ]) else {
        return;
    };
    let ctx = s.ctx.to_str().unwrap();
    let dir = s._dir.path().join("out-dir");
    ok(&s.root, &["build", "-q", "-o", dir.to_str().unwrap(), ctx]);
    assert_eq!(
        std::fs::read_to_string(dir.join("app")).unwrap(),
        "artifact\n"
    );
    let dir2 = s._dir.path().join("out-local");
    let spec = format!("type=local,dest={}", dir2.display());
    ok(&s.root, &["build", "-q", "-o", &spec, ctx]);
    assert_eq!(
        std::fs::read_to_string(dir2.join("app")).unwrap(),
        "artifact\n"
    );
    // A tar, to a file and to standard output.
    let tar_path = s._dir.path().join("out.tar");
    let spec = format!("type=tar,dest={}", tar_path.display());
    ok(&s.root, &["build", "-q", "-o", &spec, ctx]);
    let names = |bytes: &[u8]| -> Vec<String> {
        tar::Archive::new(bytes)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let from_file = names(&std::fs::read(&tar_path).unwrap());
    assert_eq!(from_file, ["app"]);
    let out = run(&s.root, &["build", "-q", "-o", "-", ctx]);
    assert!(out.status.success());
    assert_eq!(names(&out.stdout), ["app"]);
    // The stage with a deletion: whiteouts are applied, never written out.
    std::fs::write(
        s.ctx.join("Dockerfile"),
        "FROM busybox\nRUN rm /bin/ls && echo x > /new\n",
    )
    .unwrap();
    let dir3 = s._dir.path().join("out-whiteout");
    ok(&s.root, &["build", "-q", "-o", dir3.to_str().unwrap(), ctx]);
    assert!(dir3.join("new").is_file());
    assert!(!dir3.join("bin/ls").exists());
    assert!(!std::fs::read_dir(dir3.join("bin"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".wh.")));
}
