//! Seccomp: docker's default profile, `--security-opt seccomp=unconfined|FILE`,
//! and what each executor makes of it.
//!
//! One source of truth: a [`SeccompProfile`] in docker's JSON profile
//! format (`defaultAction`, `archMap`, `syscalls` with `includes` /
//! `excludes` by capability, architecture and kernel version). Docker's
//! default profile is a table in `default.rs`; a user's FILE is parsed into
//! the same type. [`SeccompProfile::resolve`] turns it, as docker does
//! before it starts a container, into the runtime-spec form for this host
//! ([`LinuxSeccomp`]: the architectures of this CPU, the rules whose
//! conditions hold for the container's capabilities and this kernel). The
//! OCI executor writes that into `config.json` (`linux.seccomp`; runc and
//! crun compile it with libseccomp); the built-in executor compiles it to
//! BPF with `seccompiler` (`bpf.rs`) and installs it just before `execve`.

mod bpf;
mod default;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) use bpf::{compile, Program};

/// The seccomp confinement of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile in docker's JSON format (`--security-opt seccomp=FILE`).
    Profile(Arc<SeccompProfile>),
}

impl Seccomp {
    /// Parses one `--security-opt` value as docker does for seccomp:
    /// `seccomp=unconfined`, or `seccomp=FILE` (read and checked now). Other security
    /// options are refused: strata always sets `no-new-privileges` and has no
    /// AppArmor or SELinux labels to choose.
    pub fn from_security_opt(opt: &str) -> Result<Seccomp, SeccompError> {
        let Some((key, value)) = opt.split_once(['=', ':']) else {
            return Err(SeccompError::Option(opt.to_owned()));
        };
        if key != "seccomp" {
            return Err(SeccompError::Option(opt.to_owned()));
        }
        match value {
            "unconfined" => Ok(Seccomp::Unconfined),
            "" => Err(SeccompError::Option(opt.to_owned())),
            file => {
                let seccomp = Seccomp::Profile(Arc::new(SeccompProfile::load(Path::new(file))?));
                // refuse a profile that cannot be applied now, not at run time
                seccomp.for_run()?;
                Ok(seccomp)
            }
        }
    }

    /// The runtime-spec form for a run (docker's default capabilities, this
    /// host), or `None` when unconfined.
    pub(crate) fn for_run(&self) -> Result<Option<LinuxSeccomp>, SeccompError> {
        let caps: Vec<&str> = crate::defaults::DEFAULT_CAPS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        self.profile().map(|p| p.resolve(&caps)).transpose()
    }

    /// The BPF programs the built-in sandbox installs for this run (none
    /// when unconfined). Compiling docker's profile takes well under a
    /// millisecond, so it is done for every run.
    pub(crate) fn programs(&self) -> Result<Vec<Program>, SeccompError> {
        match self.for_run()? {
            Some(profile) => compile(&profile),
            None => Ok(Vec::new()),
        }
    }

    /// The profile in force, if any.
    pub fn profile(&self) -> Option<&SeccompProfile> {
        match self {
            Seccomp::Default => Some(default::docker_default()),
            Seccomp::Unconfined => None,
            Seccomp::Profile(p) => Some(p),
        }
    }
}

/// A seccomp profile or option could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A `--security-opt` strata does not support.
    #[error(
        "unsupported security option {0:?} (strata supports seccomp=unconfined and seccomp=FILE)"
    )]
    Option(String),
    /// The profile file could not be read.
    #[error("cannot read the seccomp profile {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The profile is not valid JSON of docker's profile format.
    #[error("the seccomp profile is not in docker's JSON profile format")]
    Parse(#[source] serde_json::Error),
    /// The profile is well-formed JSON but cannot be applied.
    #[error("invalid seccomp profile: {0}")]
    Invalid(String),
    /// The built-in sandbox cannot compile the profile to BPF.
    #[error("cannot compile the seccomp profile to BPF")]
    Compile(#[source] seccompiler::Error),
}

/// What the kernel does with a matching system call (`SCMP_ACT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `SCMP_ACT_ALLOW`.
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    /// `SCMP_ACT_ERRNO`: fail with `errnoRet` (EPERM when absent).
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    /// `SCMP_ACT_KILL` (the thread; an alias of `SCMP_ACT_KILL_THREAD`).
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    /// `SCMP_ACT_KILL_THREAD`.
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    /// `SCMP_ACT_KILL_PROCESS`.
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    /// `SCMP_ACT_TRAP`: SIGSYS.
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    /// `SCMP_ACT_TRACE`: notify a ptrace tracer.
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    /// `SCMP_ACT_LOG`: allow and log.
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    /// `SCMP_ACT_NOTIFY`: a user-space agent decides (unsupported here).
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

/// How an argument is compared (`SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `SCMP_CMP_NE`.
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    /// `SCMP_CMP_LT`.
    #[serde(rename = "SCMP_CMP_LT")]
    LessThan,
    /// `SCMP_CMP_LE`.
    #[serde(rename = "SCMP_CMP_LE")]
    LessEqual,
    /// `SCMP_CMP_EQ`.
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    /// `SCMP_CMP_GE`.
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterEqual,
    /// `SCMP_CMP_GT`.
    #[serde(rename = "SCMP_CMP_GT")]
    GreaterThan,
    /// `SCMP_CMP_MASKED_EQ`: `(arg & value) == valueTwo`.
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

/// A condition on one system call argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Argument number (0-5).
    pub index: u32,
    /// The value compared with (the mask for `MaskedEqual`).
    pub value: u64,
    /// The masked value for `MaskedEqual`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value_two: u64,
    /// The comparison.
    pub op: Op,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// When a rule of docker's format applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capability names (`CAP_SYS_ADMIN`): all of them for `includes`, any
    /// of them for `excludes`.
    #[serde(default)]
    pub caps: Vec<String>,
    /// Go architecture names (`amd64`, `arm64`, `x86`...).
    #[serde(default)]
    pub arches: Vec<String>,
    /// A kernel version, `major.minor`.
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// One rule of docker's format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// A single name (older profiles).
    #[serde(default)]
    pub name: Option<String>,
    /// The system calls the rule is about.
    #[serde(default)]
    pub names: Vec<String>,
    /// What happens when one is made and the arguments match.
    pub action: Option<Action>,
    /// The errno for `SCMP_ACT_ERRNO` (and the data for `SCMP_ACT_TRACE`).
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Conditions on the arguments (all must hold).
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    /// The rule is kept only when these hold.
    #[serde(default)]
    pub includes: Option<Filter>,
    /// The rule is dropped when any of these holds.
    #[serde(default)]
    pub excludes: Option<Filter>,
}

/// An architecture and the ones its CPUs also run (docker's `archMap`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// `SCMP_ARCH_X86_64`...
    pub architecture: String,
    /// `SCMP_ARCH_X86`, `SCMP_ARCH_X32`...
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// A seccomp profile in docker's JSON format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    /// What happens to a system call no rule matches.
    pub default_action: Option<Action>,
    /// The errno for a default action of `SCMP_ACT_ERRNO` (EPERM when absent).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures, runtime-spec style (exclusive with `archMap`).
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Architectures by host CPU.
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
    /// A notification listener (`SCMP_ACT_NOTIFY`); unsupported.
    #[serde(default)]
    pub listener_path: Option<String>,
}

impl SeccompProfile {
    /// Docker's default profile.
    pub fn docker_default() -> &'static SeccompProfile {
        default::docker_default()
    }

    /// Reads a profile in docker's JSON format.
    pub fn load(path: &Path) -> Result<SeccompProfile, SeccompError> {
        let bytes = std::fs::read(path).map_err(|source| SeccompError::Read {
            path: path.to_owned(),
            source,
        })?;
        SeccompProfile::from_json(&bytes)
    }

    /// Parses a profile in docker's JSON format.
    pub fn from_json(bytes: &[u8]) -> Result<SeccompProfile, SeccompError> {
        serde_json::from_slice(bytes).map_err(SeccompError::Parse)
    }

    /// The profile as it applies to a container with the capabilities
    /// `caps` (names) on this host, in the runtime-spec form (what docker
    /// hands to runc).
    pub fn resolve(&self, caps: &[&str]) -> Result<LinuxSeccomp, SeccompError> {
        self.resolve_for(caps, &Host::this())
    }

    fn resolve_for(&self, caps: &[&str], host: &Host) -> Result<LinuxSeccomp, SeccompError> {
        let bad = |m: String| Err(SeccompError::Invalid(m));
        let Some(default_action) = self.default_action else {
            return bad("no defaultAction".into());
        };
        if default_action == Action::Notify || self.listener_path.is_some() {
            return bad("SCMP_ACT_NOTIFY (a seccomp agent) is not supported".into());
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return bad("both architectures and archMap are given".into());
        }
        let architectures = if self.arch_map.is_empty() {
            self.architectures.clone()
        } else {
            self.arch_map
                .iter()
                .filter(|a| a.architecture == host.scmp_arch)
                .flat_map(|a| {
                    std::iter::once(a.architecture.clone())
                        .chain(a.sub_architectures.iter().flatten().cloned())
                })
                .collect()
        };
        let mut syscalls = Vec::new();
        for (i, rule) in self.syscalls.iter().enumerate() {
            let names = match (&rule.name, rule.names.is_empty()) {
                (Some(_), false) => {
                    return bad(format!("rule {i} has both name and names"));
                }
                (Some(n), true) => vec![n.clone()],
                (None, _) => rule.names.clone(),
            };
            if names.is_empty() {
                return bad(format!("rule {i} names no system call"));
            }
            let Some(action) = rule.action else {
                return bad(format!("rule {i} ({}) has no action", names[0]));
            };
            if action == Action::Notify {
                return bad("SCMP_ACT_NOTIFY (a seccomp agent) is not supported".into());
            }
            for a in rule.args.iter().flatten() {
                if a.index > 5 {
                    return bad(format!("rule {i}: argument index {} is past 5", a.index));
                }
            }
            if let Some(ex) = &rule.excludes {
                if ex.arches.iter().any(|a| *a == host.go_arch)
                    || ex.caps.iter().any(|c| caps.contains(&c.as_str()))
                    || ex
                        .min_kernel
                        .as_deref()
                        .map(kernel_version)
                        .transpose()?
                        .is_some_and(|v| host.kernel >= v)
                {
                    continue;
                }
            }
            if let Some(inc) = &rule.includes {
                if (!inc.arches.is_empty() && !inc.arches.iter().any(|a| *a == host.go_arch))
                    || !inc.caps.iter().all(|c| caps.contains(&c.as_str()))
                    || inc
                        .min_kernel
                        .as_deref()
                        .map(kernel_version)
                        .transpose()?
                        .is_some_and(|v| host.kernel < v)
                {
                    continue;
                }
            }
            syscalls.push(LinuxSyscall {
                names,
                action,
                errno_ret: rule.errno_ret,
                args: rule.args.clone().unwrap_or_default(),
            });
        }
        Ok(LinuxSeccomp {
            default_action,
            default_errno_ret: self.default_errno_ret,
            architectures,
            syscalls,
        })
    }
}

/// `"4.8"` as (4, 8).
fn kernel_version(v: &str) -> Result<(u32, u32), SeccompError> {
    let mut parts = v.trim().split('.');
    let mut num = || -> Option<u32> { parts.next()?.trim().parse().ok() };
    match (num(), num()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        (Some(major), None) => Ok((major, 0)),
        _ => Err(SeccompError::Invalid(format!(
            "minKernel {v:?} is not a kernel version (major.minor)"
        ))),
    }
}

/// What a profile is resolved against.
struct Host {
    /// Docker's (Go's) name of this CPU architecture: `amd64`, `arm64`...
    go_arch: &'static str,
    /// libseccomp's name: `SCMP_ARCH_X86_64`...
    scmp_arch: &'static str,
    /// The running kernel, (major, minor).
    kernel: (u32, u32),
}

impl Host {
    fn this() -> Host {
        let (go_arch, scmp_arch) = native_arch();
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        // "6.1.0-18-amd64": the leading numbers
        let numeric: String = release
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        Host {
            go_arch,
            scmp_arch,
            kernel: kernel_version(&numeric).unwrap_or((0, 0)),
        }
    }
}

/// (Go name, libseccomp name) of the architecture strata was built for.
pub(crate) fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
        "mips64" => ("mips64", "SCMP_ARCH_MIPS64"),
        other => (other, "SCMP_ARCH_NATIVE"),
    }
}

/// A resolved profile in the OCI runtime-spec form (`linux.seccomp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxSeccomp {
    /// What happens to a system call no rule matches.
    pub default_action: Action,
    /// Its errno, for `SCMP_ACT_ERRNO`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// libseccomp architecture names.
    pub architectures: Vec<String>,
    /// The rules that apply.
    pub syscalls: Vec<LinuxSyscall>,
}

/// One rule of [`LinuxSeccomp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxSyscall {
    /// System call names.
    pub names: Vec<String>,
    /// The action.
    pub action: Action,
    /// Its errno (or trace data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Conditions on the arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
}

#[cfg(test)]
mod tests;
