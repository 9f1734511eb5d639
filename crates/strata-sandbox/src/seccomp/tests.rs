//! Profile resolution, docker's JSON format, and the compiled BPF run
//! through a small classic-BPF interpreter (no root, no kernel filter).

use super::*;

const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

fn host(go_arch: &'static str, scmp_arch: &'static str, kernel: (u32, u32)) -> Host {
    Host {
        go_arch,
        scmp_arch,
        kernel,
    }
}

fn amd64() -> Host {
    host("amd64", "SCMP_ARCH_X86_64", (6, 1))
}

/// The rules of a resolved profile that name `name`.
fn rules<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
    p.syscalls
        .iter()
        .filter(|r| r.names.iter().any(|n| n == name))
        .collect()
}

#[test]
fn default_profile_for_dockers_capabilities_on_amd64() {
    let p = SeccompProfile::docker_default()
        .resolve_for(DOCKER_CAPS, &amd64())
        .unwrap();
    assert_eq!(p.default_action, Action::Errno);
    assert_eq!(p.default_errno_ret, Some(1));
    assert_eq!(
        p.architectures,
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    // refused: namespaces, mounts, keyrings, modules, clocks, reboot
    for name in [
        "unshare",
        "setns",
        "mount",
        "umount2",
        "keyctl",
        "add_key",
        "request_key",
        "init_module",
        "clock_settime",
        "reboot",
        "bpf",
        "perf_event_open",
        "open_by_handle_at",
        "userfaultfd",
        "kexec_load",
        "swapon",
        "pivot_root",
        "sethostname",
        "iopl",
    ] {
        assert!(rules(&p, name).is_empty(), "{name} must not be allowed");
    }
    // allowed with CAP_SYS_CHROOT (a default capability), and since 4.8 ptrace
    for name in [
        "chroot",
        "ptrace",
        "read",
        "execve",
        "arch_prctl",
        "modify_ldt",
        "io_uring_setup",
    ] {
        let r = rules(&p, name);
        assert!(
            r.iter()
                .any(|r| r.action == Action::Allow && r.args.is_empty()),
            "{name}: {r:?}"
        );
    }
    // not on this architecture
    assert!(rules(&p, "arm_fadvise64_64").is_empty());
    assert!(rules(&p, "riscv_flush_icache").is_empty());
    // clone without namespace flags; clone3 -> ENOSYS
    let clone = rules(&p, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(
        clone[0].args,
        [Arg {
            index: 0,
            value: 0x7E02_0000,
            value_two: 0,
            op: Op::MaskedEqual
        }]
    );
    let clone3 = rules(&p, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(
        (clone3[0].action, clone3[0].errno_ret),
        (Action::Errno, Some(38))
    );
    assert_eq!(rules(&p, "personality").len(), 5);
    assert_eq!(rules(&p, "socket")[0].args[0].op, Op::NotEqual);
}

#[test]
fn capabilities_arches_and_kernel_select_rules() {
    let profile = SeccompProfile::docker_default();
    // with CAP_SYS_ADMIN: mount and unshare, clone unconditionally, no ENOSYS clone3
    let mut caps = DOCKER_CAPS.to_vec();
    caps.push("CAP_SYS_ADMIN");
    let p = profile.resolve_for(&caps, &amd64()).unwrap();
    assert_eq!(rules(&p, "mount").len(), 1);
    assert!(rules(&p, "clone").iter().all(|r| r.args.is_empty()));
    assert!(rules(&p, "clone3")
        .iter()
        .all(|r| r.action == Action::Allow));
    // without CAP_SYS_CHROOT: no chroot
    let p = profile.resolve_for(&["CAP_CHOWN"], &amd64()).unwrap();
    assert!(rules(&p, "chroot").is_empty());
    // an old kernel: ptrace only with CAP_SYS_PTRACE
    let p = profile
        .resolve_for(DOCKER_CAPS, &host("amd64", "SCMP_ARCH_X86_64", (4, 4)))
        .unwrap();
    assert!(rules(&p, "ptrace").is_empty());
    // arm64: the arm extras, ARM as a sub-architecture, no arch_prctl
    let p = profile
        .resolve_for(DOCKER_CAPS, &host("arm64", "SCMP_ARCH_AARCH64", (6, 1)))
        .unwrap();
    assert_eq!(p.architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
    assert_eq!(rules(&p, "cacheflush").len(), 1);
    assert!(rules(&p, "arch_prctl").is_empty());
    // s390x: clone's flags are its second argument
    let p = profile
        .resolve_for(DOCKER_CAPS, &host("s390x", "SCMP_ARCH_S390X", (6, 1)))
        .unwrap();
    let clone = rules(&p, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args[0].index, 1);
}

const CUSTOM: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
    "someFutureKey": true,
    "syscalls": [
        {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 2048, "valueTwo": 2048, "op": "SCMP_CMP_MASKED_EQ"}],
         "comment": "no setuid bits"},
        {"names": ["uname"], "action": "SCMP_ACT_LOG", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS", "excludes": {"minKernel": "3.10"}}
    ]
}"#;

#[test]
fn dockers_json_format_is_read() {
    let p = SeccompProfile::from_json(CUSTOM.as_bytes()).unwrap();
    let r = p.resolve_for(DOCKER_CAPS, &amd64()).unwrap();
    assert_eq!(r.default_action, Action::Allow);
    assert_eq!(r.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
    // `name` becomes `names`; the LOG rule needs CAP_SYS_ADMIN; the KILL one
    // is excluded on kernels >= 3.10
    assert_eq!(r.syscalls.len(), 2);
    assert_eq!(r.syscalls[0].names, ["mkdir"]);
    assert_eq!(r.syscalls[0].errno_ret, Some(13));
    assert_eq!(r.syscalls[1].args[0].value_two, 2048);
    // runtime-spec form: docker-only keys are gone
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["syscalls"][0],
        serde_json::json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})
    );
    assert!(json.get("defaultErrnoRet").is_none());
}

#[test]
fn invalid_profiles_are_refused_with_the_reason() {
    let bad = |json: &str, want: &str| {
        let e = SeccompProfile::from_json(json.as_bytes())
            .and_then(|p| p.resolve_for(DOCKER_CAPS, &amd64()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{json}: {e}");
    };
    bad("{", "docker's JSON profile format");
    bad(
        r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#,
        "docker's JSON profile format",
    );
    bad(r#"{"syscalls": []}"#, "no defaultAction");
    bad(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        "both architectures and archMap",
    );
    bad(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#,
        "both name and names",
    );
    bad(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        "SCMP_ACT_NOTIFY",
    );
    bad(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        "index 6",
    );
    bad(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
            "includes": {"minKernel": "new"}}]}"#,
        "minKernel",
    );
    bad(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}"#,
        "names no system call",
    );
}

#[test]
fn security_opt_values() {
    assert_eq!(
        Seccomp::from_security_opt("seccomp=unconfined").unwrap(),
        Seccomp::Unconfined
    );
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("p.json");
    std::fs::write(&f, CUSTOM).unwrap();
    let s = Seccomp::from_security_opt(&format!("seccomp={}", f.display())).unwrap();
    assert_eq!(s.profile().unwrap().default_action, Some(Action::Allow));
    let e = Seccomp::from_security_opt(&format!("seccomp={}", t.path().join("nope").display()))
        .unwrap_err();
    assert!(matches!(e, SeccompError::Read { .. }), "{e}");
    std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).unwrap();
    let e = Seccomp::from_security_opt(&format!("seccomp={}", f.display())).unwrap_err();
    assert!(e.to_string().contains("SCMP_ACT_NOTIFY"), "{e}");
    for opt in [
        "apparmor=unconfined",
        "seccomp=",
        "label=disable",
        "seccomp",
    ] {
        let e = Seccomp::from_security_opt(opt).unwrap_err();
        assert!(matches!(e, SeccompError::Option(_)), "{opt}: {e}");
    }
    assert!(Seccomp::Unconfined.for_run().unwrap().is_none());
    assert!(Seccomp::Default.for_run().unwrap().is_some());
}

#[test]
fn kernel_versions() {
    assert_eq!(kernel_version("4.8").unwrap(), (4, 8));
    assert_eq!(kernel_version("6").unwrap(), (6, 0));
    assert!(kernel_version("x.1").is_err());
    assert!((6, 18) >= kernel_version("4.8").unwrap());
    assert!((4, 10) >= kernel_version("4.8").unwrap());
    assert!((3, 19) < kernel_version("4.8").unwrap());
}

/// A classic BPF interpreter for the instructions seccompiler emits, run on
/// a `struct seccomp_data`.
#[cfg(target_arch = "x86_64")]
mod interpret {
    use seccompiler::sock_filter;

    pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    pub const ALLOW: u32 = 0x7fff_0000;
    pub const KILL_PROCESS: u32 = 0x8000_0000;
    pub const LOG: u32 = 0x7ffc_0000;

    pub fn errno(e: u32) -> u32 {
        0x0005_0000 | e
    }

    fn data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&nr.to_le_bytes());
        d.extend_from_slice(&arch.to_le_bytes());
        d.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            d.extend_from_slice(&a.to_le_bytes());
        }
        d
    }

    fn run(prog: &[sock_filter], data: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = &prog[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { i.jt } else { i.jf });
            match i.code {
                0x20 => {
                    let k = i.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x54 => a &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += jump(a == i.k),
                0x25 => pc += jump(a > i.k),
                0x35 => pc += jump(a >= i.k),
                0x45 => pc += jump(a & i.k != 0),
                0x06 => return i.k,
                op => panic!("opcode {op:#x} not interpreted"),
            }
        }
    }

    /// What the kernel answers with all `programs` installed in order: the
    /// most restrictive action, the latest filter's on a tie.
    pub fn eval(programs: &[Vec<sock_filter>], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let d = data(arch, nr, args);
        let mut best: Option<u32> = None;
        for p in programs.iter().rev() {
            let r = run(p, &d);
            let rank = |v: u32| (v & 0xffff_0000) as i32;
            if best.is_none_or(|b| rank(r) < rank(b)) {
                best = Some(r);
            }
        }
        best.unwrap_or(ALLOW)
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compiled_default_profile_answers_like_dockers() {
    use interpret::*;
    let p = SeccompProfile::docker_default()
        .resolve_for(DOCKER_CAPS, &amd64())
        .unwrap();
    let programs = compile(&p).unwrap();
    assert_eq!(programs.len(), 2, "base + the ENOSYS filter");
    let call = |nr: i64, args: [u64; 6]| eval(&programs, AUDIT_ARCH_X86_64, nr as u32, args);
    let none = [0u64; 6];
    let eperm = errno(1);
    assert_eq!(call(libc::SYS_read, none), ALLOW);
    assert_eq!(call(libc::SYS_execve, none), ALLOW);
    assert_eq!(call(libc::SYS_chroot, none), ALLOW);
    assert_eq!(call(libc::SYS_keyctl, none), eperm);
    assert_eq!(call(libc::SYS_add_key, none), eperm);
    assert_eq!(call(libc::SYS_mount, none), eperm);
    assert_eq!(call(libc::SYS_unshare, [0x1000_0000, 0, 0, 0, 0, 0]), eperm);
    assert_eq!(call(libc::SYS_clone3, none), errno(38));
    // clone: a thread or a fork is fine, a new user namespace is not
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD) as u64;
    assert_eq!(call(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        call(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
        ALLOW
    );
    for ns in [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWPID,
    ] {
        let flags = (ns | libc::SIGCHLD) as u64;
        assert_eq!(
            call(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]),
            eperm,
            "{ns:#x}"
        );
    }
    // personality: the query and the listed personas only
    assert_eq!(
        call(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(call(libc::SYS_personality, [0x8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        call(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]),
        eperm
    );
    // socket: anything but AF_VSOCK
    assert_eq!(call(libc::SYS_socket, [2, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(libc::SYS_socket, [40, 1, 0, 0, 0, 0]), eperm);
    // x32 system calls (nr | 0x40000000) are not in the filter
    assert_eq!(call(libc::SYS_read | 0x4000_0000, none), eperm);
    // another ABI of this CPU (32-bit int 0x80): killed
    assert_eq!(eval(&programs, AUDIT_ARCH_I386, 3, none), KILL_PROCESS);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compiled_custom_profile_keeps_each_rules_action() {
    use interpret::*;
    let profile = SeccompProfile::from_json(
        br#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 2048, "valueTwo": 2048, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"},
                      {"index": 1, "value": 5, "op": "SCMP_CMP_LE"}]}
        ]}"#,
    )
    .unwrap()
    .resolve_for(DOCKER_CAPS, &amd64())
    .unwrap();
    let programs = compile(&profile).unwrap();
    // default ALLOW: no base filter; one per action (EACCES, EPERM, LOG)
    assert_eq!(programs.len(), 3);
    let call = |nr: i64, args: [u64; 6]| eval(&programs, AUDIT_ARCH_X86_64, nr as u32, args);
    let none = [0u64; 6];
    assert_eq!(call(libc::SYS_read, none), ALLOW);
    assert_eq!(call(libc::SYS_mkdir, none), errno(13));
    assert_eq!(call(libc::SYS_chmod, [0, 0o4755, 0, 0, 0, 0]), errno(1));
    assert_eq!(call(libc::SYS_chmod, [0, 0o755, 0, 0, 0, 0]), ALLOW);
    // two conditions on one argument: either one (runc's reading)
    assert_eq!(call(libc::SYS_kill, [1, 9, 0, 0, 0, 0]), LOG);
    assert_eq!(call(libc::SYS_kill, [1, 15, 0, 0, 0, 0]), LOG);
    assert_eq!(call(libc::SYS_kill, [1, 2, 0, 0, 0, 0]), ALLOW);
    // valueTwo outside the mask never matches (libseccomp)
    assert_eq!(call(libc::SYS_getpid, [3, 0, 0, 0, 0, 0]), ALLOW);
    // conditions on different arguments: all of them
    assert_eq!(call(libc::SYS_rmdir, [6, 5, 0, 0, 0, 0]), errno(1));
    assert_eq!(call(libc::SYS_rmdir, [6, 6, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(libc::SYS_rmdir, [5, 5, 0, 0, 0, 0]), ALLOW);
    // all 64 bits are compared, as libseccomp does
    assert_eq!(
        call(libc::SYS_chmod, [0, (1 << 32) | 0o4755, 0, 0, 0, 0]),
        errno(1)
    );
    // an allow-everything profile installs nothing
    let open = SeccompProfile::from_json(br#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)
        .unwrap()
        .resolve_for(DOCKER_CAPS, &amd64())
        .unwrap();
    assert!(compile(&open).unwrap().is_empty());
}
