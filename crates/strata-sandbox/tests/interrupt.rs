//! Ctrl-C while a container runs: the signal reaches the caller (strata),
//! which survives it, forwards it to the container, escalates to SIGKILL on
//! a second one, cleans up, and restores its own signal dispositions.
//! A separate test binary, since it signals its own process.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use strata_sandbox::ExitStatus;

static SERIAL: Mutex<()> = Mutex::new(());

fn sigint_disposition() -> usize {
    // SAFETY: querying the current action only.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old);
        old.sa_sigaction
    }
}

fn interrupt(name: &str, marker: u32) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let f = Fixture::new();
    let Some(_) = executor(name, &f.state()) else {
        return;
    };
    let before = sigint_disposition();
    let (mut spec, _) = f.spec(&format!("sleep {marker}"));
    spec.rootfs = f.overlay(&[]);
    let state = f.state();
    let n = name.to_string();
    let t = std::thread::spawn(move || executor(&n, &state).unwrap().run(&spec));
    let needle = format!("sleep {marker}");
    let start = Instant::now();
    while pids_with(&needle).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling ourselves; the executor's handler is installed while it runs.
    unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    let start = Instant::now();
    let mut sent = 1;
    while !t.is_finished() {
        // pid 1 of an OCI container (here `sleep`) ignores SIGINT, as in
        // docker: a second Ctrl-C escalates to SIGKILL
        if start.elapsed() > Duration::from_millis(1500) && sent == 1 {
            // SAFETY: as above.
            unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
            sent += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run did not end after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = t.join().unwrap().unwrap();
    if name == "builtin" {
        // strata's init forwards SIGINT to the command, which dies of it
        assert_eq!((status, sent), (ExitStatus(130), 1));
    } else {
        assert!(
            status == ExitStatus(130) || status == ExitStatus(137),
            "{status}"
        );
    }
    assert!(
        pids_with(&needle).is_empty(),
        "container processes survived"
    );
    assert!(mounts_under(f.dir.path()).is_empty());
    let left: Vec<String> = tree(&f.state())
        .into_iter()
        .filter(|p| p.contains('/'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(sigint_disposition(), before, "SIGINT disposition restored");
}

#[test]
fn runc_ctrl_c() {
    interrupt("runc", 51001);
}

#[test]
fn crun_ctrl_c() {
    interrupt("crun", 51002);
}

#[test]
fn builtin_ctrl_c() {
    interrupt("builtin", 51003);
}
