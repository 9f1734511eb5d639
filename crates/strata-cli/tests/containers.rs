//! End-to-end tests of `strata run` and the container lifecycle: flags
//! (`--env-file`, `--mount`, relative `-v`, `--name`, `--init`, `-p`),
//! docker's exit codes, a real terminal for `-it` (driven through a pty
//! this test allocates), `run -d`, `ps`, `logs`, `exec`, `stop`, `kill`,
//! `rm`, `container prune`, and a container that outlives a `kill -9` of
//! its client. They need root and busybox-static.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Polls `f` until it returns true; panics with `what` after a minute
/// (a wait for an event, not a timing assertion).
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes every container of the store when dropped, so a failing test
/// leaves no container running behind it.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(out) = cmd(&self.0).args(["ps", "-a", "--ids"]).output() else {
            return;
        };
        let ids = String::from_utf8_lossy(&out.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = cmd(&self.0).args(["rm", "-f"]).args(&ids).output();
        }
    }
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ps_names(root: &Path, all: bool) -> String {
    let args: &[&str] = if all { &["ps", "-a"] } else { &["ps"] };
    ok(root, args)
}

#[test]
fn run_flags_env_files_mounts_and_names() {
    let Some(s) = setup(&[
        ("data/in.txt", "from the host\n"),
        ("app.env", "# env\nA=1\nB=two words\nFROM_HOST\n"),
    ]) else {
        return;
    };
    let root = &s.root;
    let script = "echo A=$A B=$B H=$FROM_HOST; cat /data/in.txt; cat /m/in.txt; \
                  echo w > /tmpfs/x && grep -q ' /tmpfs tmpfs' /proc/mounts && echo tmpfs-ok; \
                  echo kept > /vol/f; pwd; hostname";
    let out = cmd(root)
        .current_dir(&s.ctx)
        .env("FROM_HOST", "yes")
        .args([
            "run",
            "--rm",
            "--name",
            "flags",
            "--env-file",
            "app.env",
            "-v",
            "./data:/data:ro",
            "--mount",
            "type=bind,source=data,target=/m,readonly",
            "--mount",
            "type=tmpfs,target=/tmpfs",
            "--mount",
            "type=volume,source=v1,target=/vol",
            "-w",
            "/tmp",
            "--hostname",
            "box",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "A=1 B=two words H=yes\nfrom the host\nfrom the host\ntmpfs-ok\n/tmp\nbox\n"
    );
    // The named volume outlives the container.
    assert_eq!(
        std::fs::read_to_string(root.join("volumes/v1/_data/f")).unwrap(),
        "kept\n"
    );
    // Read-only binds refuse writes.
    let out = cmd(root)
        .current_dir(&s.ctx)
        .args([
            "run",
            "--rm",
            "-v",
            "./data:/data:ro",
            "busybox",
            "sh",
            "-c",
            "echo x > /data/y",
        ])
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
    // -i: the client's stdin reaches the container; without it, /dev/null does.
    for (flags, want) in [(&["-i"][..], "line\nend\n"), (&[][..], "end\n")] {
        let mut child = cmd(root)
            .args(["run", "--rm"])
            .args(flags)
            .args(["busybox", "sh", "-c", "cat; echo end"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Without -i nobody reads it; the client may be gone already.
        let _ = stdin.write_all(b"line\n");
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{flags:?}");
    }
    // --network none: loopback only; the default is the host's network.
    let ifaces = |net: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(net);
        args.extend([
            "busybox",
            "sh",
            "-c",
            "tail -n +3 /proc/net/dev | cut -d: -f1",
        ]);
        ok(root, &args)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(ifaces(&["--network", "none"]), ["lo"]);
    let host = ifaces(&[]);
    let host_now = std::fs::read_to_string("/proc/net/dev").unwrap();
    assert!(
        host.iter().all(|i| host_now.contains(&format!("{i}:"))),
        "{host:?}"
    );
    // --rm left nothing: no container, no writable layer.
    assert_eq!(
        ps_names(root, true).lines().count(),
        1,
        "{}",
        ps_names(root, true)
    );
    let active: Vec<_> = std::fs::read_dir(root.join("snapshots/.active"))
        .unwrap()
        .collect();
    assert!(active.is_empty(), "{active:?}");
}

#[test]
fn exit_codes_are_dockers() {
    let Some(s) = setup(&[]) else { return };
    let _cleanup = Cleanup(s.root.clone());
    let root = &s.root;
    let out = run(root, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code(&out), 3);
    let out = run(root, &["run", "--rm", "no-such-image"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("no such image"), "{}", stderr(&out));
    let out = run(
        root,
        &["run", "--rm", "-p", "notaport:80", "busybox", "true"],
    );
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let out = run(
        root,
        &[
            "run",
            "--rm",
            "--mount",
            "type=nfs,target=/x",
            "busybox",
            "true",
        ],
    );
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    // A published port that is taken: the container does not start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(
        root,
        &[
            "run",
            "--rm",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "busybox",
            "true",
        ],
    );
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot publish port"),
        "{}",
        stderr(&out)
    );
    drop(taken);
    let out = run(root, &["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let out = run(root, &["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    let out = run(
        root,
        &[
            "run",
            "--rm",
            "--isolation",
            "builtin",
            "busybox",
            "no-such-command",
        ],
    );
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    // A name in use.
    ok(root, &["run", "--name", "taken", "busybox", "true"]);
    let out = run(root, &["run", "--name", "taken", "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    ok(root, &["rm", "taken"]);
}

#[test]
fn unknown_commands_get_no_dangerous_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    for (typed, bad) in [
        ("volume", ""),
        ("stpo", "stop"),
        ("rmx", "rmi"),
        ("prun", "run"),
    ] {
        let out = run(dir.path(), &[typed]);
        assert_eq!(code(&out), 2);
        let e = stderr(&out);
        assert!(
            e.contains(&format!("unrecognized subcommand '{typed}'")),
            "{e}"
        );
        if !bad.is_empty() {
            assert!(
                !e.contains(&format!("'{bad}'")),
                "{typed} suggested {bad}: {e}"
            );
        }
    }
    // ps and rm are verbs now, not typos of push and rmi.
    assert_eq!(code(&run(dir.path(), &["ps"])), 0);
}

/// A pty whose slave side is the controlling terminal of a `strata`
/// process, the master side read on a thread.
struct Pty {
    master: OwnedFd,
    out: Arc<Mutex<Vec<u8>>>,
    child: std::process::Child,
}

impl Pty {
    fn spawn(root: &Path, args: &[&str], rows: u16, cols: u16) -> Pty {
        use rustix::pty::OpenptFlags;
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        set_size(&master, rows, cols);
        let slave =
            rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
                .unwrap();
        let slave_fd = slave.as_raw_fd();
        let mut c = cmd(root);
        c.args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                libc::setsid();
                if libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().unwrap();
        drop(slave);
        let out = Arc::new(Mutex::new(Vec::new()));
        let reader = master.try_clone().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(reader);
            let mut buf = [0u8; 4096];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { master, out, child }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn send(&self, s: &str) {
        let mut f = std::fs::File::from(self.master.try_clone().unwrap());
        f.write_all(s.as_bytes()).unwrap();
    }

    fn wait_text(&self, needle: &str) {
        wait_for(&format!("{needle:?} on the terminal"), || {
            self.text().contains(needle)
        });
    }
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
}

fn tty_session(root: &Path, isolation: &str) {
    let mut pty = Pty::spawn(
        root,
        &[
            "run",
            "-it",
            "--rm",
            "--isolation",
            isolation,
            "busybox",
            "sh",
        ],
        40,
        100,
    );
    let before = rustix::termios::tcgetattr(pty.master.as_fd()).unwrap();
    pty.send("tty; stty size; echo done-$((20+1))\n");
    pty.wait_text("done-21");
    let text = pty.text();
    assert!(text.contains("/dev/pts/"), "{isolation}: {text}");
    assert!(
        text.contains("40 100"),
        "{isolation}: size not passed: {text}"
    );
    assert!(
        !text.contains("can't access tty") && !text.contains("job control turned off"),
        "{isolation}: {text}"
    );
    // A resize reaches the container (SIGWINCH through client and supervisor).
    set_size(&pty.master, 50, 120);
    // Ask until the new size is seen: the signal travels asynchronously.
    wait_for("the new window size in the container", || {
        pty.send("stty size\n");
        std::thread::sleep(Duration::from_millis(100));
        pty.text().contains("50 120")
    });
    // Ctrl-C is a byte for the container's terminal, not the end of strata.
    pty.send("sleep 100\n");
    std::thread::sleep(Duration::from_millis(300));
    pty.send("\x03");
    pty.send("echo after-$((1+1))\n");
    pty.wait_text("after-2");
    pty.send("exit 7\n");
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "{isolation}: {}", pty.text());
    // The terminal's modes are back (raw mode undone).
    let after = rustix::termios::tcgetattr(pty.master.as_fd()).unwrap();
    assert_eq!(before.local_modes, after.local_modes, "{isolation}");
    assert!(after
        .local_modes
        .contains(rustix::termios::LocalModes::ICANON | rustix::termios::LocalModes::ECHO));
}

#[test]
fn run_it_gives_a_real_terminal() {
    let Some(s) = setup(&[]) else { return };
    let _cleanup = Cleanup(s.root.clone());
    if !strata_testkit::require_tool("crun") && !strata_testkit::require_tool("runc") {
        tty_session(&s.root, "builtin");
        return;
    }
    tty_session(&s.root, "auto");
    tty_session(&s.root, "builtin");
}

fn lifecycle(root: &Path, isolation: &str) {
    let name = format!("web-{isolation}");
    let id = ok(
        root,
        &[
            "run",
            "-d",
            "--isolation",
            isolation,
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "echo hello; echo oops >&2; exec sleep 300",
        ],
    );
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let ps = ps_names(root, false);
    assert!(
        ps.contains(&name) && ps.contains(&id[..12]) && ps.contains("Up "),
        "{ps}"
    );
    wait_for("the log", || ok(root, &["logs", &name]).contains("hello"));
    let out = run(root, &["logs", &id[..8]]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(stderr(&out), "oops\n");
    // exec: the container's namespaces and filesystem, its exit code.
    let out = ok(
        root,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "echo $((40+2)) > /tmp/x; cat /tmp/x; hostname",
        ],
    );
    assert_eq!(out, format!("42\n{}\n", &id[..12]));
    let out = run(
        root,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "ps -o pid,comm | grep -c sleep; exit 5",
        ],
    );
    assert_eq!(code(&out), 5);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // -u resolves through the image's /etc/passwd; -e and -w apply.
    let out = ok(
        root,
        &[
            "exec",
            "-u",
            "app",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            &name,
            "sh",
            "-c",
            "id -u; echo $X; pwd",
        ],
    );
    assert_eq!(out, "1000\n1\n/tmp\n");
    let out = run(root, &["exec", &name, "no-such-command"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    // stop: sleep as pid 1 ignores SIGTERM, so it is killed after the grace time.
    assert_eq!(ok(root, &["stop", "-t", "1", &name]).trim(), name);
    let ps = ps_names(root, true);
    let line = ps.lines().find(|l| l.contains(&name)).unwrap();
    assert!(
        line.contains("Exited (137)") || line.contains("Exited (143)"),
        "{line}"
    );
    assert!(!ps_names(root, false).contains(&name));
    // Logs stay readable after the exit; exec does not start a stopped container.
    assert!(ok(root, &["logs", &name]).contains("hello"));
    assert_ne!(code(&run(root, &["exec", &name, "true"])), 0);
    assert_eq!(ok(root, &["rm", &name]).trim(), name);
    assert!(!ps_names(root, true).contains(&name));
    assert_eq!(code(&run(root, &["logs", &name])), 1);
}

#[test]
fn detached_containers_live_their_lifecycle() {
    let Some(s) = setup(&[]) else { return };
    let _cleanup = Cleanup(s.root.clone());
    let root = &s.root;
    lifecycle(root, "auto");
    lifecycle(root, "builtin");
    // logs -f follows until the container exits.
    let id = ok(
        root,
        &[
            "run",
            "-d",
            "busybox",
            "sh",
            "-c",
            "echo a; sleep 1; echo b",
        ],
    );
    let out = ok(root, &["logs", "-f", id.trim()]);
    assert_eq!(out, "a\nb\n");
    // kill sends a signal; rm refuses a running container without -f.
    ok(
        root,
        &["run", "-d", "--name", "k", "busybox", "sleep", "300"],
    );
    let out = run(root, &["rm", "k"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));
    assert_eq!(ok(root, &["kill", "-s", "TERM", "k"]).trim(), "k"); // ignored by pid 1
    assert!(ps_names(root, false).contains(" k"));
    // docker's --format: a template, and json with docker's fields.
    assert_eq!(
        ok(root, &["ps", "--format", "{{.Names}} {{.State}}"]),
        "k running\n"
    );
    let js: serde_json::Value = serde_json::from_str(
        ok(root, &["ps", "--format", "json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(js["Names"], "k");
    assert!(js["Status"].as_str().unwrap().starts_with("Up"), "{js}");
    // `strata prune` leaves the layers of containers that exist, running or
    // stopped, alone (they go with the container).
    ok(
        root,
        &[
            "run",
            "--name",
            "kept",
            "busybox",
            "sh",
            "-c",
            "echo mine > /f",
        ],
    );
    let dirs = || {
        std::fs::read_dir(root.join("snapshots/.active"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count()
    };
    let before = dirs();
    assert!(before >= 2, "{before}");
    let out = ok(root, &["prune"]);
    assert!(!out.contains("snapshot .active/ctr-"), "{out}");
    assert_eq!(dirs(), before, "{out}");
    assert_eq!(ok(root, &["exec", "k", "echo", "alive"]), "alive\n");
    ok(root, &["rm", "kept"]);
    ok(root, &["kill", "k"]);
    wait_for("k to exit", || !ps_names(root, false).contains(" k"));
    // container prune removes every stopped container and its layer.
    ok(root, &["run", "--name", "done", "busybox", "true"]);
    let out = ok(root, &["container", "prune"]);
    assert!(out.contains("Total reclaimed containers: 3"), "{out}");
    assert_eq!(ps_names(root, true).lines().count(), 1);
    let active: Vec<_> = std::fs::read_dir(root.join("snapshots/.active"))
        .unwrap()
        .collect();
    assert!(active.is_empty(), "{active:?}");
    verify_clean(root);
}

#[test]
fn kill_9_of_the_client_leaves_a_findable_container() {
    let Some(s) = setup(&[]) else { return };
    let _cleanup = Cleanup(s.root.clone());
    let root = &s.root;
    let mut client = cmd(root)
        .args([
            "run",
            "--rm",
            "--name",
            "orphan",
            "busybox",
            "sh",
            "-c",
            "echo up; exec sleep 300",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the container to run", || {
        ps_names(root, false).contains("orphan")
    });
    client.kill().unwrap(); // SIGKILL
    client.wait().unwrap();
    // Its supervisor goes on: the container runs, and every command finds it.
    let ps = ps_names(root, false);
    assert!(ps.contains("orphan") && ps.contains("Up "), "{ps}");
    wait_for("the log", || ok(root, &["logs", "orphan"]) == "up\n");
    assert_eq!(ok(root, &["exec", "orphan", "echo", "hi"]), "hi\n");
    ok(root, &["stop", "-t", "0", "orphan"]);
    // --rm: the supervisor removes it when it exits.
    wait_for("the container to be removed", || {
        !ps_names(root, true).contains("orphan")
    });
    let active: Vec<_> = std::fs::read_dir(root.join("snapshots/.active"))
        .unwrap()
        .collect();
    assert!(active.is_empty(), "{active:?}");
    let leftover = std::fs::read_dir(root.join("containers")).unwrap().count();
    assert_eq!(leftover, 0);
}

#[test]
fn a_dead_supervisor_reads_as_exited() {
    let Some(s) = setup(&[]) else { return };
    let _cleanup = Cleanup(s.root.clone());
    let root = &s.root;
    for isolation in ["builtin", "auto"] {
        let id = ok(
            root,
            &[
                "run",
                "-d",
                "--isolation",
                isolation,
                "busybox",
                "sleep",
                "300",
            ],
        );
        let id = id.trim();
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("containers").join(id).join("state.json")).unwrap(),
        )
        .unwrap();
        let sup = state["supervisor"].as_i64().unwrap() as i32;
        let pid = state["target"]["pid"].as_i64().unwrap() as i32;
        // SAFETY: kill(2) of the supervisor this test started through strata.
        unsafe { libc::kill(sup, libc::SIGKILL) };
        wait_for("the supervisor to die", || {
            ps_names(root, true).contains("Exited (unknown)")
        });
        assert!(!ps_names(root, false).contains(&id[..12]));
        // rm makes sure nothing of it runs any more (an OCI runtime's
        // container outlives its supervisor until then).
        ok(root, &["rm", &id[..12]]);
        wait_for("the container's process to end", || {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .map_or(true, |c| !c.contains("sleep"))
        });
        assert!(!ps_names(root, true).contains(&id[..12]));
    }
}

#[test]
fn published_ports_reach_a_server_inside() {
    let Some(s) = setup(&[("www/index.html", "hello from the container\n")]) else {
        return;
    };
    let _cleanup = Cleanup(s.root.clone());
    let root = &s.root;
    let port = free_port();
    let www = s.ctx.join("www");
    ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &format!("127.0.0.1:{port}:8080"),
            "-v",
            &format!("{}:/www:ro", www.display()),
            "busybox",
            "httpd",
            "-f",
            "-p",
            "127.0.0.1:8080",
            "-h",
            "/www",
        ],
    );
    let ps = ps_names(root, false);
    assert!(ps.contains(&format!("127.0.0.1:{port}->8080/tcp")), "{ps}");
    let mut body = String::new();
    wait_for("the server to answer", || {
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
        body.clear();
        let _ = c.read_to_string(&mut body);
        body.contains("hello from the container")
    });
    assert!(
        body.starts_with("HTTP/1.") && body.contains(" 200 "),
        "{body}"
    );
    // The container has its own network: the server is not on the host's loopback.
    assert!(std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err() || port == 8080);
    ok(root, &["rm", "-f", "web"]);
}

/// The number of zombie processes in container `name`.
fn zombies(root: &Path, name: &str) -> usize {
    let out = ok(root, &["exec", name, "ps", "-o", "stat,comm"]);
    out.lines()
        .filter(|l| l.trim_start().starts_with('Z'))
        .count()
}

fn sleeps(root: &Path, name: &str) -> usize {
    let out = ok(root, &["exec", name, "ps", "-o", "stat,comm"]);
    out.lines()
        .filter(|l| l.contains("sleep") && !l.trim_start().starts_with('Z'))
        .count()
}

#[test]
fn init_reaps_zombies() {
    let Some(s) = setup(&[]) else { return };
    let _cleanup = Cleanup(s.root.clone());
    if !strata_testkit::require_tool("tini-static") {
        return;
    }
    let root = &s.root;
    // An orphan that exits while pid 1 never waits: without an init it
    // stays a zombie; with --init it is reaped.
    let script = "sh -c 'sleep 0.2 &'; exec sleep 300";
    ok(
        root,
        &[
            "run", "-d", "--name", "plain", "busybox", "sh", "-c", script,
        ],
    );
    wait_for("the orphan to become a zombie", || {
        zombies(root, "plain") == 1
    });
    ok(
        root,
        &[
            "run", "-d", "--init", "--name", "reaped", "busybox", "sh", "-c", script,
        ],
    );
    wait_for("the orphan to exit", || sleeps(root, "reaped") == 1);
    assert_eq!(zombies(root, "reaped"), 0);
    let pid1 = ok(root, &["exec", "reaped", "cat", "/proc/1/comm"]);
    assert!(pid1.contains("init") || pid1.contains("tini"), "{pid1}");
    // Signals reach the command through the init: TERM stops it at once.
    ok(root, &["stop", "-t", "60", "reaped"]);
    let ps = ps_names(root, true);
    let line = ps.lines().find(|l| l.contains("reaped")).unwrap();
    assert!(line.contains("Exited (143)"), "{line}");
    ok(root, &["rm", "-f", "plain", "reaped"]);
}

#[test]
fn exec_it_gives_a_terminal() {
    let Some(s) = setup(&[]) else { return };
    let _cleanup = Cleanup(s.root.clone());
    let root = &s.root;
    for isolation in ["auto", "builtin"] {
        let name = format!("sh-{isolation}");
        ok(
            root,
            &[
                "run",
                "-d",
                "--isolation",
                isolation,
                "--name",
                &name,
                "busybox",
                "sleep",
                "300",
            ],
        );
        let mut pty = Pty::spawn(root, &["exec", "-it", &name, "sh"], 30, 90);
        pty.send("tty; stty size; echo ok-$((3*3))\n");
        pty.wait_text("ok-9");
        let text = pty.text();
        assert!(text.contains("/dev/pts/"), "{isolation}: {text}");
        assert!(text.contains("30 90"), "{isolation}: {text}");
        assert!(!text.contains("can't access tty"), "{isolation}: {text}");
        pty.send("exit 4\n");
        assert_eq!(pty.child.wait().unwrap().code(), Some(4), "{}", pty.text());
        ok(root, &["rm", "-f", &name]);
    }
    let _ = Command::new("true").status();
}
