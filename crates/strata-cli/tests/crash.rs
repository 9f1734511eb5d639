//! Crash at any point (issue 24, item 1): `import`, `build` (COPY and a RUN
//! with a `--secret`), `save`, `load`, `pull` and `push` are killed with
//! SIGKILL at a random moment of a run (and `strata serve` during an
//! upload), and then:
//!
//! - no process of the killed command and no mount of its store remain;
//! - the next run of the same command succeeds;
//! - that run swept the temporary state the killed one left (`tmp/`,
//!   `snapshots/.active/`), and `strata prune` sweeps the rest (ingests);
//! - `strata store verify` is clean, and what the store held before (an
//!   image) is intact: no data lost;
//! - the secret's bytes are nowhere under the store (after every trial) or
//!   under /tmp (after the last).
//!
//! Each test runs `STRATA_CRASH_TRIALS` trials (default 3, the CI size);
//! `bench/crash.sh` runs 50 or more. The kill moments come from
//! `STRATA_CRASH_SEED` (printed, so a failure can be replayed). Every test
//! prints its line of the fault table: `crash <command>: trials, survived,
//! data lost, secrets left`.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Pseudo-random, incompressible bytes (xorshift), streamed.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let b = self.state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A rootfs tar with big incompressible files, so a run takes a while.
fn big_tar(dir: &Path) -> PathBuf {
    let p = dir.join("big.tar");
    let mut b = tar::Builder::new(fs::File::create(&p).unwrap());
    for i in 0..3u64 {
        let size = 40 << 20;
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        b.append_data(
            &mut h,
            format!("data/blob{i}"),
            Noise {
                state: 0x9e37_79b9_7f4a_7c15 + i,
                left: size,
            },
        )
        .unwrap();
    }
    b.finish().unwrap();
    p
}

/// Kill moments: xorshift seeded from `STRATA_CRASH_SEED` or the clock.
struct Moments(u64);

impl Moments {
    fn new(test: &str) -> Moments {
        let seed = std::env::var("STRATA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("{test}: STRATA_CRASH_SEED={seed}");
        Moments(seed)
    }

    /// A moment in `[0, span)`.
    fn within(&mut self, span: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = span.as_nanos().max(1) as u64;
        Duration::from_nanos(self.0 % nanos)
    }
}

fn trials() -> usize {
    std::env::var("STRATA_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// Processes left behind: any whose command line names the store, or whose
/// environment carries `marker` (the RUN steps of a build get it as a build
/// argument). Waits a little for them to go (a sandbox's init dies with its
/// parent, asynchronously); returns the survivors, which are ours to kill.
fn leftover_processes(root: &Path, marker: Option<&str>) -> Vec<(u32, String)> {
    let root = root.to_string_lossy().into_owned();
    let me = std::process::id();
    let scan = || {
        let mut found = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let environ = fs::read(e.path().join("environ")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let named = text.contains(&root);
            let marked = marker.is_some_and(|m| {
                environ
                    .split(|&b| b == 0)
                    .any(|kv| kv == format!("CRASHMARKER={m}").as_bytes())
            });
            if named || marked {
                found.push((pid, text));
            }
        }
        found
    };
    // A step's processes (the marked ones): long enough for a sandbox's init
    // to follow its killed parent, short enough that a step left running (it
    // sleeps longer) is caught. Processes that only name the store (an OCI
    // runtime's `delete`, the watchdog running it) may take longer on a
    // loaded machine, but must end too.
    let started = Instant::now();
    loop {
        let found = scan();
        let step_left = marker.is_some() && found.iter().any(|(_, t)| !t.contains(&root));
        if found.is_empty()
            || (step_left && started.elapsed() > Duration::from_secs(2))
            || started.elapsed() > Duration::from_secs(20)
        {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mounts of this mount namespace under the store.
fn leftover_mounts(root: &Path) -> Vec<String> {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let root = root.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&root)))
        .map(str::to_owned)
        .collect()
}

/// Files under `dir` holding `needle`, skipping `except`, other file
/// systems mounted below (as `du -x`) and files too big to be anything of
/// ours.
fn files_holding(dir: &Path, needle: &[u8], except: &[PathBuf]) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.dev() != top.dev() {
            continue;
        }
        if meta.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && meta.len() < (512 << 20) && !except.contains(&p) {
            let Ok(mut f) = fs::File::open(&p) else {
                continue;
            };
            let mut data = Vec::new();
            if f.read_to_end(&mut data).is_ok() && data.windows(needle.len()).any(|w| w == needle) {
                out.push(p);
            }
        }
    }
    out
}

/// Temporary state under the store that nobody holds any more. After a
/// command that opened the store has run, there must be none.
fn held_state(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["tmp", "snapshots/.active"] {
        for e in fs::read_dir(root.join(d)).into_iter().flatten().flatten() {
            out.push(format!("{d}/{}", e.file_name().to_string_lossy()));
        }
    }
    for e in fs::read_dir(root.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".tmp-") {
            out.push(format!("snapshots/{n}"));
        }
    }
    out
}

/// One command under crash trials.
struct Crash<'a> {
    name: &'a str,
    root: &'a Path,
    /// The command's arguments for trial `i`.
    args: &'a dyn Fn(usize) -> Vec<String>,
    /// Run before each trial (and before the calibration run).
    before: &'a dyn Fn(usize),
    /// Checks after the kill, before anything else touches the store.
    after_kill: &'a dyn Fn(usize),
    /// Checks after the next run of the command succeeded.
    after_rerun: &'a dyn Fn(usize),
    /// Bytes that must not survive (a secret), and the file they come from.
    secret: Option<(&'a [u8], PathBuf)>,
    /// Build argument RUN steps carry, to find their processes.
    marker: Option<&'a str>,
    /// An image that was in the store before, which must stay intact.
    keep: &'a str,
}

impl Crash<'_> {
    fn run(&self) {
        let mut moments = Moments::new(self.name);
        let keep = identity(self.root, self.keep);
        // A run to the end tells how long one takes.
        (self.before)(0);
        let started = Instant::now();
        let args = (self.args)(0);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(self.root, &args);
        let span = started.elapsed().mul_f64(1.2);
        let n = trials();
        let mut survived = 0;
        let mut mid_run = 0;
        for i in 1..=n {
            (self.before)(i);
            let args = (self.args)(i);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut child = cmd(self.root)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let at = moments.within(span);
            std::thread::sleep(at);
            if child.try_wait().unwrap().is_none() {
                mid_run += 1;
            }
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            let procs = leftover_processes(self.root, self.marker);
            for (pid, _) in &procs {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
            assert!(
                procs.is_empty(),
                "{} killed at {at:?}: processes left: {procs:?}",
                self.name
            );
            let mounts = leftover_mounts(self.root);
            assert!(
                mounts.is_empty(),
                "{} killed at {at:?}: mounts left: {mounts:?}",
                self.name
            );
            (self.after_kill)(i);
            // The next run of the same command succeeds, and sweeps.
            (self.before)(i);
            ok(self.root, &args);
            let held = held_state(self.root);
            assert!(
                held.is_empty(),
                "{} killed at {at:?}: the next run left stale state: {held:?}",
                self.name
            );
            (self.after_rerun)(i);
            verify_clean(self.root);
            assert_eq!(
                identity(self.root, self.keep),
                keep,
                "{} killed at {at:?}: {} changed",
                self.name,
                self.keep
            );
            if let Some((secret, source)) = &self.secret {
                let left = files_holding(self.root, secret, std::slice::from_ref(source));
                assert!(left.is_empty(), "secret bytes left in {left:?}");
            }
            survived += 1;
        }
        // prune sweeps what a command does not (abandoned ingests).
        ok(self.root, &["prune"]);
        let ingests: Vec<_> = fs::read_dir(self.root.join("ingest"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(ingests.is_empty(), "prune left ingests: {ingests:?}");
        verify_clean(self.root);
        let mut secrets_left = 0;
        if let Some((secret, source)) = &self.secret {
            let left = files_holding(Path::new("/tmp"), secret, std::slice::from_ref(source));
            secrets_left = left.len();
            assert!(left.is_empty(), "secret bytes left in {left:?}");
        }
        println!(
            "crash {}: {n} trials ({mid_run} killed mid-run), {survived} survived, 0 data lost, \
             {secrets_left} secrets left",
            self.name
        );
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn kill_9_during_import() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let tar = big_tar(t.path());
    let tar_s = tar.to_str().unwrap().to_owned();
    // Something already in the store, which must survive intact.
    ok(&root, &["import", &tar_s, "before"]);
    Crash {
        name: "import",
        root: &root,
        args: &|i| strs(&["import", &tar_s, &format!("killed:{i}")]),
        before: &|_| {},
        after_kill: &|i| {
            // Either the tag is complete or absent.
            let out = run(&root, &["inspect", &format!("killed:{i}")]);
            assert!(matches!(out.status.code(), Some(0) | Some(1)));
        },
        after_rerun: &|i| {
            assert_eq!(
                identity(&root, &format!("killed:{i}")),
                identity(&root, "before")
            );
        },
        secret: None,
        marker: None,
        keep: "before",
    }
    .run();
}

#[test]
fn kill_9_during_save_leaves_no_truncated_archive() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let tar = big_tar(t.path());
    ok(&root, &["import", tar.to_str().unwrap(), "big"]);
    let out_dir = t.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let dest = |i: usize| out_dir.join(format!("img{i}.tar"));
    let loads_as_big = |p: &Path, i: usize| {
        let r = t.path().join(format!("r{i}"));
        ok(&r, &["load", "-i", p.to_str().unwrap()]);
        assert_eq!(identity(&r, "big"), identity(&root, "big"));
        fs::remove_dir_all(&r).unwrap();
    };
    Crash {
        name: "save",
        root: &root,
        args: &|i| strs(&["save", "big", "-o", dest(i).to_str().unwrap()]),
        before: &|_| {},
        after_kill: &|i| {
            // Complete under its name, or absent.
            if dest(i).exists() {
                loads_as_big(&dest(i), i);
            }
        },
        after_rerun: &|i| {
            loads_as_big(&dest(i), i);
            // The killed save's temp file is gone.
            let temps: Vec<_> = fs::read_dir(&out_dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with(".strata-save-"))
                .collect();
            assert!(temps.is_empty(), "temp files of killed saves: {temps:?}");
            fs::remove_file(dest(i)).unwrap();
        },
        secret: None,
        marker: None,
        keep: "big",
    }
    .run();
}

#[test]
fn kill_9_during_load() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let tar = big_tar(t.path());
    ok(&src, &["import", tar.to_str().unwrap(), "big"]);
    let archive = t.path().join("big-archive.tar");
    ok(&src, &["save", "big", "-o", archive.to_str().unwrap()]);
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    let archive_s = archive.to_str().unwrap().to_owned();
    Crash {
        name: "load",
        root: &root,
        args: &|_| strs(&["load", "-i", &archive_s]),
        // Each trial loads into a store without the image, so the blobs
        // are written again.
        before: &|_| {
            let _ = run(&root, &["rmi", "big"]);
            ok(&root, &["prune"]);
        },
        after_kill: &|_| {},
        after_rerun: &|_| {
            assert_eq!(identity(&root, "big"), identity(&src, "big"));
        },
        secret: None,
        marker: None,
        keep: "busybox",
    }
    .run();
}

/// A build with a big COPY and a RUN that reads a `--secret` and writes for
/// a while; `isolation` picks the RUN executor.
fn build_crash(name: &str, isolation: &str) {
    if !strata_testkit::require_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    // Unique to this test: the two build tests run side by side, and each
    // kills the processes its marker finds.
    let marker = format!(
        "{:x}{isolation}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let secret = {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("strata-crash-secret-{nanos:x}-{marker}")
    };
    let secret_file = t.path().join("secret.txt");
    fs::write(&secret_file, &secret).unwrap();
    let ctx = t.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    std::io::copy(
        &mut Noise {
            state: 42,
            left: 24 << 20,
        },
        &mut fs::File::create(ctx.join("big.bin")).unwrap(),
    )
    .unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         ARG CRASHMARKER\n\
         COPY big.bin /big.bin\n\
         RUN --mount=type=secret,id=tok sh -c 'cp /run/secrets/tok /dev/null && \
             head -c 8000000 /dev/urandom > /out && sleep 3 && md5sum /big.bin > /sum'\n",
    )
    .unwrap();
    let secret_arg = format!("id=tok,src={}", secret_file.display());
    let ctx_s = ctx.to_str().unwrap().to_owned();
    let marker_arg = format!("CRASHMARKER={marker}");
    Crash {
        name,
        root: &root,
        args: &|i| {
            strs(&[
                "build",
                "-q",
                "--no-cache",
                "--isolation",
                isolation,
                "--build-arg",
                &marker_arg,
                "--secret",
                &secret_arg,
                "-t",
                &format!("crash:{i}"),
                &ctx_s,
            ])
        },
        before: &|_| {},
        after_kill: &|_| {},
        after_rerun: &|i| {
            let img = format!("crash:{i}");
            let out = ok(
                &root,
                &["run", "--rm", "--isolation", isolation, &img, "cat", "/sum"],
            );
            assert!(out.contains("/big.bin"), "{out}");
            // Keep the store small over many trials (each RUN layer differs).
            ok(&root, &["rmi", &img]);
            ok(&root, &["prune", "--all"]);
        },
        secret: Some((secret.as_bytes(), secret_file.clone())),
        marker: Some(&marker),
        keep: "busybox",
    }
    .run();
}

#[test]
fn kill_9_during_build_with_the_builtin_sandbox() {
    build_crash("build (builtin sandbox)", "builtin");
}

/// runc and crun, and the step's processes under them, are not in strata's
/// process group: a watchdog on a pipe deletes the container when a build
/// is killed with SIGKILL.
#[test]
fn kill_9_during_build_with_the_oci_runtime() {
    if !strata_testkit::require_tool("runc") && !strata_testkit::require_tool("crun") {
        return;
    }
    build_crash("build (OCI runtime)", "oci");
}

#[test]
fn kill_9_during_pull() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let tar = big_tar(t.path());
    ok(&src, &["import", tar.to_str().unwrap(), "big"]);
    // The source store served as it is (its tags by name).
    let srv = Serve::start(&src, &[]);
    let Some(root) = store_with_busybox(t.path()) else {
        return;
    };
    let name = format!("{}/big:latest", srv.addr);
    Crash {
        name: "pull",
        root: &root,
        args: &|_| strs(&["pull", &name]),
        // Each trial pulls into a store without the image.
        before: &|_| {
            let _ = run(&root, &["rmi", &name]);
            ok(&root, &["prune"]);
        },
        after_kill: &|_| {
            // Either the image is complete or absent.
            let out = run(&root, &["inspect", &name]);
            assert!(matches!(out.status.code(), Some(0) | Some(1)));
        },
        after_rerun: &|_| {
            assert_eq!(identity(&root, &name), identity(&src, "big"));
        },
        secret: None,
        marker: None,
        keep: "busybox",
    }
    .run();
    drop(srv);
}

#[test]
fn kill_9_during_push() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let tar = big_tar(t.path());
    ok(&root, &["import", tar.to_str().unwrap(), "big"]);
    let srv_root = t.path().join("srv");
    let srv = Serve::start(&srv_root, &[]);
    // Each trial pushes to a repository of its own, so the layers go again.
    let dest = |i: usize| format!("{}/r{i}/big:1", srv.addr);
    let fresh = t.path().join("fresh");
    Crash {
        name: "push",
        root: &root,
        args: &|i| strs(&["push", "big", &dest(i)]),
        before: &|_| {},
        after_kill: &|_| {},
        after_rerun: &|i| {
            // What the registry holds is whole: a fresh store pulls it.
            ok(&fresh, &["pull", &dest(i)]);
            assert_eq!(identity(&fresh, &dest(i)), identity(&root, "big"));
            fs::remove_dir_all(&fresh).unwrap();
        },
        secret: None,
        marker: None,
        keep: "big",
    }
    .run();
    srv.stop();
    verify_clean(&srv_root);
}

/// `strata serve` killed while a client uploads: the next server on the
/// store sweeps the upload, the push then succeeds, and the server's store
/// verifies clean.
#[test]
fn kill_9_of_serve_during_an_upload() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let tar = big_tar(t.path());
    ok(&root, &["import", tar.to_str().unwrap(), "big"]);
    let srv_root = t.path().join("srv");
    let fresh = t.path().join("fresh");
    let mut moments = Moments::new("serve upload");
    // A push to the end tells how long one takes.
    let srv = Serve::start(&srv_root, &[]);
    let started = Instant::now();
    let push = |addr: &str, i: usize| {
        strata()
            .args(["--root", root.to_str().unwrap(), "push", "big"])
            .arg(format!("{addr}/u{i}/big:1"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = push(&srv.addr, 0).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let span = started.elapsed().mul_f64(1.2);
    srv.stop();
    let n = trials();
    let mut survived = 0;
    let mut mid_run = 0;
    for i in 1..=n {
        let mut srv = Serve::start(&srv_root, &[]);
        let client = push(&srv.addr, i);
        std::thread::sleep(moments.within(span));
        let _ = srv.child.kill(); // SIGKILL
        let _ = srv.child.wait();
        let out = client.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The client either finished first or says what happened.
        assert!(out.status.success() || !err.trim().is_empty());
        if !out.status.success() {
            mid_run += 1;
        }
        drop(srv);
        let procs = leftover_processes(&srv_root, None);
        assert!(procs.is_empty(), "processes left: {procs:?}");
        // The next server sweeps; the push then completes.
        let srv = Serve::start(&srv_root, &[]);
        let out = push(&srv.addr, i).wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dest = format!("{}/u{i}/big:1", srv.addr);
        ok(&fresh, &["pull", &dest]);
        assert_eq!(identity(&fresh, &dest), identity(&root, "big"));
        fs::remove_dir_all(&fresh).unwrap();
        srv.stop();
        let held = held_state(&srv_root);
        assert!(held.is_empty(), "stale state after a restart: {held:?}");
        verify_clean(&srv_root);
        survived += 1;
    }
    ok(&srv_root, &["prune"]);
    verify_clean(&srv_root);
    println!(
        "crash serve upload: {n} trials ({mid_run} killed mid-run), {survived} survived, \
         0 data lost, 0 secrets left"
    );
}
