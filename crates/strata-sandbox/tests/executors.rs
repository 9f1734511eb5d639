//! End-to-end tests of every executor (runc, crun, built-in) on a busybox
//! root filesystem. Each test exists once per executor (`runc::...`,
//! `crun::...`, `builtin::...`). Needs root; runc/crun tests need the tool.
#![allow(clippy::unwrap_used)]

mod common;

macro_rules! executor_tests {
    ($($name:ident),*) => {$(
        mod $name {
            use super::common::*;
            use std::time::Duration;
            use strata_sandbox::*;

            const NAME: &str = stringify!($name);

            fn setup() -> Option<(Fixture, Box<dyn Executor>)> {
                let f = Fixture::new();
                let e = executor(NAME, &f.state())?;
                assert_eq!(e.name(), NAME);
                Some((f, e))
            }

            #[test]
            fn echo_output_is_captured() {
                let Some((f, e)) = setup() else { return };
                let before = tree(&f.rootfs());
                let (spec, out) = f.spec("echo hi; echo oops >&2");
                assert_eq!(e.run(&spec).unwrap(), ExitStatus(0));
                // a directory rootfs keeps no mount point stubs (/etc/hosts...)
                assert_eq!(tree(&f.rootfs()), before);
                assert_eq!(out.stdout(), "hi\n");
                assert_eq!(out.stderr(), "oops\n");
                // plain argv, PATH lookup inside the container
                let mut spec = spec.clone();
                let c = Capture::new();
                spec.stdio = Stdio::Capture(c.clone());
                spec.args = vec!["echo".into(), "a b".into(), "c".into()];
                assert!(e.run(&spec).unwrap().success());
                assert_eq!(c.stdout(), "a b c\n");
            }

            #[test]
            fn lines_stream_to_a_callback() {
                let Some((f, e)) = setup() else { return };
                let (mut spec, _) = f.spec("for i in 1 2 3; do echo line$i; done; exit 4");
                let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
                let s2 = seen.clone();
                let c = Capture::with_callback(2, move |s, l| s2.lock().unwrap().push((s, l.to_string())));
                spec.stdio = Stdio::Capture(c.clone());
                assert_eq!(e.run(&spec).unwrap(), ExitStatus(4));
                assert_eq!(seen.lock().unwrap().len(), 3);
                assert_eq!(c.tail(5), vec![(Stream::Stdout, "line2".to_string()), (Stream::Stdout, "line3".to_string())]);
            }

            #[test]
            fn exit_codes_pass_through() {
                let Some((f, e)) = setup() else { return };
                for (script, code) in [("exit 3", 3), ("true", 0), ("exit 255", 255), ("sh -c 'kill -9 $$'; exit $?", 137)] {
                    let (spec, _) = f.spec(script);
                    assert_eq!(e.run(&spec).unwrap(), ExitStatus(code), "{script}");
                }
            }

            #[test]
            fn missing_command_is_an_exec_error() {
                let Some((f, e)) = setup() else { return };
                let (mut spec, _) = f.spec("");
                spec.args = vec!["does-not-exist".into()];
                match e.run(&spec) {
                    Err(SandboxError::Exec { program, source }) => {
                        assert_eq!(program, "does-not-exist");
                        assert_eq!(source.raw_os_error(), Some(libc_enoent()));
                    }
                    other => panic!("{other:?}"),
                }
            }

            fn libc_enoent() -> i32 { 2 }

            /// The status a started container reports to this test process:
            /// the built-in executor's is its child; an OCI runtime's detached
            /// container reaches only a child subreaper (as strata's
            /// supervisor is, tested end to end in strata-cli), which a test
            /// binary running tests in parallel cannot be.
            fn started_status(code: i32) -> ExitStatus {
                if NAME == "builtin" { ExitStatus(code) } else { ExitStatus(255) }
            }

            #[test]
            fn started_container_gets_a_terminal_in_its_own_devpts() {
                let Some((f, e)) = setup() else { return };
                let (mut spec, _) = f.spec("tty; stty size; exit 5");
                spec.stdio = Stdio::Null;
                spec.terminal = true;
                spec.console_size = Some(ConsoleSize { rows: 24, cols: 81 });
                let mut started = e.start(&spec).unwrap();
                let master = started.take_console().expect("a console");
                assert!(started.take_console().is_none(), "once");
                let mut out = Vec::new();
                pty::relay_console(std::os::fd::AsFd::as_fd(&master), None, |b| out.extend_from_slice(b)).unwrap();
                assert_eq!(started.wait().unwrap(), started_status(5));
                let text = String::from_utf8_lossy(&out);
                assert!(text.contains("/dev/pts/0"), "{text}");
                assert!(text.contains("24 81"), "{text}");
            }

            #[test]
            fn exec_joins_a_started_container() {
                let Some((f, e)) = setup() else { return };
                let (mut spec, _) = f.spec("exec sleep 30");
                spec.stdio = Stdio::Null;
                let started = e.start(&spec).unwrap();
                let target = started.exec_target();
                assert_eq!(target.pid, started.pid());
                let exec = |script: &str| {
                    let x = ExecSpec {
                        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
                        env: vec!["PATH=/bin".into()],
                        cwd: "/".into(),
                        user: User::root(),
                        terminal: false,
                        console_size: None,
                        seccomp: Seccomp::Default,
                    };
                    executor_for(&target, f.state()).exec(&target, &x).unwrap().wait()
                };
                // In the container's pid namespace: a handful of processes, not the host's.
                assert_eq!(exec("[ $(ps -o pid | wc -l) -lt 10 ] && exit 6").unwrap(), ExitStatus(6));
                let x = ExecSpec {
                    args: vec!["no-such-command".into()],
                    env: vec!["PATH=/bin".into()],
                    cwd: "/".into(),
                    user: User::root(),
                    terminal: false,
                    console_size: None,
                    seccomp: Seccomp::Default,
                };
                let r = executor_for(&target, f.state()).exec(&target, &x).and_then(|s| s.wait());
                assert!(matches!(r, Err(SandboxError::Exec { .. })), "{r:?}");
                started.signal(9).unwrap();
                assert_eq!(started.wait().unwrap(), started_status(137));
            }

            #[test]
            fn env_cwd_user_hostname_are_applied() {
                let Some((f, e)) = setup() else { return };
                let (mut spec, out) = f.spec("echo $FOO; pwd; id -u; id -g; id -G; hostname; cat /etc/hostname; grep -c localhost /etc/hosts");
                spec.env.push("FOO=bar baz".into());
                spec.cwd = "/home/app/new".into();
                spec.hostname = "buildbox".into();
                spec.user = resolve_user("app", &f.rootfs()).unwrap().user;
                spec.user.additional_gids = vec![50];
                assert!(e.run(&spec).unwrap().success(), "{:?}", out.lines());
                assert_eq!(out.stdout(), "bar baz\n/home/app/new\n1000\n1000\n1000 50\nbuildbox\nbuildbox\n2\n");
                // the created working directory stays, as with docker
                assert!(f.rootfs().join("home/app/new").is_dir());
            }

            #[test]
            fn network_none_has_only_loopback() {
                let Some((f, e)) = setup() else { return };
                let script = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
                let (mut spec, out) = f.spec(&format!("{script}; ping -c1 -W2 127.0.0.1 >/dev/null && echo lo-up"));
                spec.network = Network::None;
                assert!(e.run(&spec).unwrap().success());
                assert_eq!(out.stdout(), "lo\nlo-up\n", "only lo, and it is up as docker has it");
                // host network sees the host's interfaces
                let host: Vec<String> = std::fs::read_to_string("/proc/net/dev").unwrap().lines().skip(2)
                    .map(|l| l.split(':').next().unwrap().trim().to_string()).collect();
                let (spec, out) = f.spec(script);
                assert!(e.run(&spec).unwrap().success());
                let mut got: Vec<String> = out.stdout().lines().map(str::to_string).collect();
                got.sort();
                let mut want = host;
                want.sort();
                assert_eq!(got, want);
                // and the host's resolv.conf
                let (spec, out) = f.spec("cat /etc/resolv.conf");
                assert!(e.run(&spec).unwrap().success());
                let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                assert_eq!(out.stdout().trim_end(), host_resolv.trim_end());
            }

            #[test]
            fn overlay_writes_land_in_upper_and_deletes_are_whiteouts() {
                let Some((f, e)) = setup() else { return };
                let top = f.path("top");
                std::fs::create_dir_all(top.join("etc")).unwrap();
                std::fs::write(top.join("etc/motd"), "from top layer\n").unwrap();
                let before_lower = tree(&f.rootfs());
                let before_top = tree(&top);
                let (mut spec, out) = f.spec("cat /etc/motd; echo new > /newfile; rm /etc/group /etc/motd; mkdir -p /d; echo x > /d/f; ls /etc");
                spec.rootfs = f.overlay(std::slice::from_ref(&top));
                assert!(e.run(&spec).unwrap().success(), "{:?}", out.lines());
                assert!(out.stdout().starts_with("from top layer\n"));
                assert!(!out.stdout().contains("group"));
                let up = f.path("upper");
                assert_eq!(std::fs::read_to_string(up.join("newfile")).unwrap(), "new\n");
                assert_eq!(std::fs::read_to_string(up.join("d/f")).unwrap(), "x\n");
                assert!(is_whiteout(&up.join("etc/group")), "deleted lower file is a 0/0 char device");
                assert!(is_whiteout(&up.join("etc/motd")));
                // lowers untouched
                assert_eq!(tree(&f.rootfs()), before_lower);
                assert_eq!(tree(&top), before_top);
                assert!(f.rootfs().join("etc/group").is_file());
                // nothing but the command's changes: no mount point stubs
                // (/etc/hosts, /etc/resolv.conf...) left in the layer
                assert_eq!(tree(&up), vec!["d", "d/f", "etc", "etc/group", "etc/motd", "newfile"]);
                assert!(mounts_under(f.dir.path()).is_empty());
            }

            #[test]
            fn overlay_without_changes_leaves_an_empty_upper() {
                let Some((f, e)) = setup() else { return };
                let (mut spec, _) = f.spec("cat /etc/hosts /etc/resolv.conf >/dev/null");
                spec.rootfs = f.overlay(&[]);
                spec.mounts.push(Mount::tmpfs("/run/scratch", None));
                assert!(e.run(&spec).unwrap().success());
                assert_eq!(tree(&f.path("upper")), Vec::<String>::new());
            }

            #[test]
            fn overlay_pair_can_be_reused() {
                let Some((f, e)) = setup() else { return };
                let rootfs = f.overlay(&[]);
                let (mut spec, _) = f.spec("echo 1 >> /counter");
                spec.rootfs = rootfs.clone();
                assert!(e.run(&spec).unwrap().success());
                // the volatile marker of the first mount is gone, so the
                // same upper/work pair mounts again (strata run restarting)
                let (mut spec, out) = f.spec("echo 2 >> /counter; cat /counter");
                spec.rootfs = rootfs;
                assert!(e.run(&spec).unwrap().success());
                assert_eq!(out.stdout(), "1\n2\n");
            }

            #[test]
            fn concurrent_runs_keep_their_output() {
                let Some((f, e)) = setup() else { return };
                let e = std::sync::Arc::new(e);
                let threads: Vec<_> = (0..4)
                    .map(|i| {
                        let e = e.clone();
                        let (spec, out) = f.spec(&format!("sleep 0.2; echo run{i}"));
                        std::thread::spawn(move || {
                            for _ in 0..3 {
                                assert!(e.run(&spec).unwrap().success());
                            }
                            out.stdout()
                        })
                    })
                    .collect();
                let start = std::time::Instant::now();
                for (i, t) in threads.into_iter().enumerate() {
                    assert_eq!(t.join().unwrap(), format!("run{i}\nrun{i}\nrun{i}\n"));
                }
                // 12 runs of 0.2 s on 4 threads: parallel, and no run waits
                // for another one's pipes
                assert!(start.elapsed() < Duration::from_secs(30));
            }

            #[test]
            fn bind_mounts_rw_and_ro() {
                let Some((f, e)) = setup() else { return };
                let rw = f.path("rw");
                let ro = f.path("ro");
                std::fs::create_dir_all(&rw).unwrap();
                std::fs::create_dir_all(&ro).unwrap();
                std::fs::write(rw.join("data"), "hello\n").unwrap();
                std::fs::write(ro.join("data"), "ro\n").unwrap();
                let secret = f.path("secret");
                std::fs::write(&secret, "s3cr3t").unwrap();
                let (mut spec, out) = f.spec(
                    "cat /mnt/rw/data /mnt/ro/data /run/secrets/id; echo; echo w > /mnt/rw/new; \
                     if echo x > /mnt/ro/new; then echo ro-writable; else echo ro-refused; fi; \
                     if echo x > /run/secrets/id; then echo secret-writable; else echo secret-refused; fi",
                );
                spec.rootfs = f.overlay(&[]);
                spec.mounts = vec![
                    Mount::bind(&rw, "/mnt/rw", false),
                    Mount::bind(&ro, "/mnt/ro", true),
                    Mount::bind(&secret, "/run/secrets/id", true),
                ];
                assert!(e.run(&spec).unwrap().success(), "{:?}", out.lines());
                assert_eq!(out.stdout(), "hello\nro\ns3cr3t\nro-refused\nsecret-refused\n");
                assert_eq!(std::fs::read_to_string(rw.join("new")).unwrap(), "w\n");
                assert!(!ro.join("new").exists());
                assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cr3t");
                // mount points created for the binds are not part of the layer
                assert_eq!(tree(&f.path("upper")), Vec::<String>::new());
            }

            #[test]
            fn readonly_rootfs_refuses_writes() {
                let Some((f, e)) = setup() else { return };
                let (mut spec, out) = f.spec("if touch /x 2>/dev/null; then echo writable; else echo refused; fi; echo ok > /tmp/t 2>/dev/null || echo tmp-refused");
                spec.readonly_rootfs = true;
                spec.rootfs = f.overlay(&[]);
                assert!(e.run(&spec).unwrap().success());
                assert_eq!(out.stdout(), "refused\ntmp-refused\n");
            }

            #[test]
            fn host_mount_table_is_unchanged() {
                let Some((f, e)) = setup() else { return };
                let before = host_mounts();
                let (mut spec, _) = f.spec("mount | wc -l");
                spec.rootfs = f.overlay(&[]);
                spec.mounts.push(Mount::tmpfs("/scratch", Some(1 << 20)));
                assert!(e.run(&spec).unwrap().success());
                assert!(mounts_under(f.dir.path()).is_empty());
                let after = host_mounts();
                let gone: Vec<_> = before.iter().filter(|m| !after.contains(m)).collect();
                let new: Vec<_> = after.iter().filter(|m| !before.contains(m)).collect();
                assert!(new.iter().all(|m| !m.contains(&*f.dir.path().to_string_lossy())), "{new:?}");
                assert!(gone.is_empty() || gone.iter().all(|m| !m.contains("strata")), "{gone:?}");
            }

            #[test]
            fn pid_namespace_is_private() {
                let Some((f, e)) = setup() else { return };
                let (spec, out) = f.spec("echo $$; ls /proc | grep -c '^[0-9]'");
                assert!(e.run(&spec).unwrap().success());
                let lines: Vec<i32> = out.stdout().lines().map(|l| l.trim().parse().unwrap()).collect();
                // pid 1 is the command (OCI) or strata's init (built-in)
                assert!(lines[0] <= 2, "{lines:?}");
                assert!(lines[1] <= 4, "{lines:?}");
            }

            #[test]
            fn capabilities_match_docker_defaults() {
                let Some((f, e)) = setup() else { return };
                let script = "grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs)' /proc/self/status | tr -d ' \t'";
                let (spec, out) = f.spec(script);
                assert!(e.run(&spec).unwrap().success());
                let want = format!("{:016x}", DEFAULT_CAP_MASK);
                assert_eq!(
                    out.stdout(),
                    format!("CapInh:0000000000000000\nCapPrm:{want}\nCapEff:{want}\nCapBnd:{want}\nCapAmb:0000000000000000\nNoNewPrivs:1\n")
                );
                // a non-root user keeps the bounding set but no effective caps
                let (mut spec, out) = f.spec(script);
                spec.user = User { uid: 1000, gid: 1000, additional_gids: vec![] };
                assert!(e.run(&spec).unwrap().success());
                assert!(out.stdout().contains("CapEff:0000000000000000"), "{}", out.stdout());
                assert!(out.stdout().contains(&format!("CapBnd:{want}")));
            }

            #[test]
            fn masked_and_readonly_proc_paths() {
                let Some((f, e)) = setup() else { return };
                // the masked paths this kernel has, and what the host sees there
                let present: Vec<&str> = MASKED_PATHS.iter().copied().filter(|p| std::path::Path::new(p).exists()).collect();
                assert!(!present.is_empty());
                let mut script = String::new();
                for p in &present {
                    script.push_str(&format!("if [ -d {p} ]; then ls {p} | wc -l; else cat {p} | wc -c; fi; "));
                }
                script.push_str(
                    "if echo 1 > /proc/sys/kernel/domainname 2>/dev/null; then echo sys-writable; else echo sys-ro; fi; \
                     if touch /sys/x 2>/dev/null; then echo sysfs-writable; else echo sysfs-ro; fi; ls /dev | tr '\\n' ' '",
                );
                let (spec, out) = f.spec(&script);
                assert!(e.run(&spec).unwrap().success());
                let s = out.stdout();
                let lines: Vec<&str> = s.lines().collect();
                assert_eq!(lines.len(), present.len() + 3, "{:?}", out.lines());
                for (p, l) in present.iter().zip(&lines) {
                    assert_eq!(l.trim(), "0", "{p} is masked");
                }
                let n = present.len();
                assert_eq!(lines[n], "sys-ro");
                assert_eq!(lines[n + 1], "sysfs-ro");
                for dev in ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue"] {
                    assert!(lines[n + 2].split(' ').any(|d| d == dev), "/dev/{dev} in {}", lines[n + 2]);
                }
            }

            #[test]
            fn killed_command_leaves_nothing_behind() {
                let Some((f, e)) = setup() else { return };
                let before = host_mounts();
                let marker = format!("{}", 40000 + std::process::id() % 10000 + NAME.len() as u32 * 7);
                let (mut spec, _) = f.spec(&format!("sleep {marker}"));
                spec.rootfs = f.overlay(&[]);
                let spec2 = spec.clone();
                let state = f.state();
                let name = NAME.to_string();
                let t = std::thread::spawn(move || {
                    let e = executor(&name, &state).unwrap();
                    e.run(&spec2)
                });
                let mut pids = Vec::new();
                for _ in 0..200 {
                    pids = pids_with(&format!("sleep {marker}"));
                    if !pids.is_empty() { break; }
                    std::thread::sleep(Duration::from_millis(25));
                }
                assert!(!pids.is_empty(), "the command never started");
                for p in &pids {
                    std::process::Command::new("kill").arg("-9").arg(p.to_string()).status().unwrap();
                }
                let status = t.join().unwrap().unwrap();
                assert_eq!(status, ExitStatus(137));
                assert!(mounts_under(f.dir.path()).is_empty());
                let after = host_mounts();
                assert!(after.iter().all(|m| before.contains(m) || !m.contains(&*f.dir.path().to_string_lossy())));
                // no bundle, no runtime state left
                let left: Vec<String> = tree(&f.state()).into_iter().filter(|p| p.contains('/')).collect();
                assert!(left.is_empty(), "{left:?}");
                assert_eq!(tree(&f.path("upper")), Vec::<String>::new());
                let _ = e;
            }

            #[test]
            fn failing_setup_is_an_error_and_cleans_up() {
                let Some((f, e)) = setup() else { return };
                // a bind source that vanishes between validation and mount is
                // hard to stage; an unmountable overlay (upper missing) is not
                let (mut spec, _) = f.spec("true");
                spec.rootfs = RootFs::Overlay {
                    lowerdirs: vec![f.rootfs()],
                    upperdir: f.path("missing-upper"),
                    workdir: f.path("missing-work"),
                };
                let err = e.run(&spec).unwrap_err();
                let _ = err.to_string();
                assert!(mounts_under(f.dir.path()).is_empty());
                let left: Vec<String> = tree(&f.state()).into_iter().filter(|p| p.contains('/')).collect();
                assert!(left.is_empty(), "{left:?}");
            }

            /// The probe copied into the fixture's rootfs, run by `script`
            /// (as root, or as `uid`), and what it printed.
            fn probe(f: &Fixture, e: &dyn Executor, seccomp: Seccomp, uid: u32) -> Option<std::collections::BTreeMap<String, String>> {
                let probe = sysprobe()?;
                std::fs::copy(&probe, f.rootfs().join("sysprobe")).unwrap();
                let script = "grep '^Seccomp:' /proc/self/status; /sysprobe; \
                              if unshare -U true 2>/dev/null; then echo busybox_unshare_user=0; else echo busybox_unshare_user=failed; fi";
                let (mut spec, out) = f.spec(script);
                spec.seccomp = seccomp;
                spec.user = User { uid, gid: uid, additional_gids: vec![] };
                let status = e.run(&spec).unwrap();
                assert!(status.success(), "{status}: {}{}", out.stdout(), out.stderr());
                Some(probe_results(&out.stdout()))
            }

            #[test]
            fn seccomp_default_profile_refuses_what_docker_refuses() {
                let Some((f, e)) = setup() else { return };
                let Some(r) = probe(&f, e.as_ref(), Seccomp::Default, 0) else { return };
                let get = |k: &str| r.get(k).map(String::as_str).unwrap_or_else(|| panic!("{k} missing: {r:?}"));
                assert_eq!(get("Seccomp"), "2", "filter mode");
                // allowed: plain calls, chroot (CAP_SYS_CHROOT), the personality query, fork
                for k in ["getpid", "chroot", "personality_query", "clone_fork"] {
                    assert_eq!(get(k), "0", "{k}: {r:?}");
                }
                // refused with EPERM: keyrings, mounts, user namespaces, other personas, vsock
                for k in ["keyctl", "add_key", "mount", "unshare_user", "clone_newuser", "personality_addr_no_randomize", "socket_vsock"] {
                    assert_eq!(get(k), "1", "{k}: {r:?}");
                }
                // clone3 -> ENOSYS, so libcs fall back to clone
                assert_eq!(get("clone3"), "38");
                assert_eq!(get("busybox_unshare_user"), "failed");
                // a user other than root gets the same filter
                let Some(r) = probe(&f, e.as_ref(), Seccomp::Default, 1000) else { return };
                assert_eq!(r["Seccomp"], "2");
                assert_eq!(r["keyctl"], "1");
            }

            #[test]
            fn seccomp_unconfined_has_no_filter() {
                let Some((f, e)) = setup() else { return };
                let Some(r) = probe(&f, e.as_ref(), Seccomp::Unconfined, 0) else { return };
                assert_eq!(r["Seccomp"], "0", "{r:?}");
                // what the kernel itself says without a filter
                assert_eq!(r["clone3"], "22", "EINVAL for NULL args: {r:?}");
                assert_eq!(r["mount"], "2", "ENOENT before the capability check: {r:?}");
                assert_eq!(r["add_key"], "0", "{r:?}");
                assert_eq!(r["personality_addr_no_randomize"], "0", "{r:?}");
                assert_ne!(r["keyctl"], "1", "{r:?}");
                assert_ne!(r["socket_vsock"], "1", "{r:?}");
                // user namespaces, where the host lets a process without
                // CAP_SYS_ADMIN make them
                let sysctl = |p: &str| std::fs::read_to_string(p).ok().map(|v| v.trim().to_string());
                if sysctl("/proc/sys/user/max_user_namespaces").is_some_and(|v| v != "0")
                    && sysctl("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v != "0")
                {
                    for k in ["clone_newuser", "unshare_user", "busybox_unshare_user"] {
                        assert_eq!(r[k], "0", "{k}: {r:?}");
                    }
                }
            }

            #[test]
            fn seccomp_profile_from_a_file() {
                let Some((f, e)) = setup() else { return };
                let profile = f.path("profile.json");
                std::fs::write(
                    &profile,
                    r#"{"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
                )
                .unwrap();
                let seccomp = Seccomp::from_security_opt(&format!("seccomp={}", profile.display())).unwrap();
                let (mut spec, out) = f.spec("grep '^Seccomp:' /proc/self/status; mkdir /made 2>&1; echo mkdir=$?; cat /proc/self/status >/dev/null && echo read=ok");
                spec.seccomp = seccomp;
                assert!(e.run(&spec).unwrap().success());
                let text = out.stdout();
                assert!(text.contains("Seccomp:\t2"), "{text}");
                assert!(text.contains("Permission denied") && text.contains("mkdir=1"), "{text}");
                assert!(text.contains("read=ok"), "{text}");
                assert!(!f.rootfs().join("made").exists());
            }
        }
    )*};
}

executor_tests!(runc, crun, builtin);
