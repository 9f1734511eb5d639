//! Containers from images: the process an image's config describes, with
//! `docker run`'s overrides applied, and its root filesystem from the
//! snapshotter, as containerd's `pkg/oci/spec_opts.go` (`WithImageConfig`,
//! `WithUser`) and BuildKit's `executor/oci/spec.go` do.
//!
//! `strata run` passes its flags as [`Overrides`] and gets a
//! [`strata_sandbox::RunSpec`]; the builder's RUN shares the user
//! resolution ([`resolve_user`]) and the root filesystem
//! ([`prepare_rootfs`], [`rootfs_from_mounts`]): an overlay of the layer
//! snapshots with a fresh upper directory, or a full copy where overlayfs
//! cannot be mounted ([`SnapshotMode::resolve`]).
//!
//! ```
//! use strata_build::container::{process_spec, Overrides};
//! use strata_build::MergedView;
//! use strata_oci::ContainerConfig;
//! use strata_sandbox::RootFs;
//!
//! let config = ContainerConfig {
//!     entrypoint: Some(vec!["/bin/echo".into()]),
//!     cmd: Some(vec!["hello".into()]),
//!     env: Some(vec!["PATH=/bin".into()]),
//!     ..Default::default()
//! };
//! let o = Overrides { args: vec!["bye".into()], ..Default::default() };
//! let spec = process_spec(&config, &MergedView::default(), RootFs::Dir("/rootfs".into()), &o, |_| None).unwrap();
//! assert_eq!(spec.args, ["/bin/echo", "bye"]);
//! assert_eq!(spec.env, ["PATH=/bin", "HOME=/root"]);
//! ```

use std::path::{Path, PathBuf};

use strata_layer::{MergedView, Snapshotter};
use strata_oci::{ContainerConfig, Layer};
use strata_sandbox::{
    container_args, merge_env, resolve_user_with, Mount, ResolvedUser, RootFs, RunSpec, User,
    UserError,
};

use crate::options::{RootfsKind, SnapshotMode};

/// What `docker run` flags change in the image's config. Everything else
/// (mounts, network, terminal) is set on the returned spec by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Arguments after the image: replace CMD.
    pub args: Vec<String>,
    /// `--entrypoint` (`""` clears the image's ENTRYPOINT).
    pub entrypoint: Option<String>,
    /// `-e` and `--env-file` entries in order (`K=V`, or `K` to take K from
    /// the host).
    pub env: Vec<String>,
    /// `-u name|uid[:group|gid]`.
    pub user: Option<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
}

/// Why a container cannot be made from an image.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Neither the image nor the command line names a command.
    #[error("no command specified: the image has no ENTRYPOINT or CMD and none was given")]
    NoCommand,
    /// The user does not resolve through the image's /etc/passwd and /etc/group.
    #[error("cannot run as user {spec:?}")]
    User {
        /// The user spec.
        spec: String,
        /// Why.
        source: UserError,
    },
    /// A relative working directory.
    #[error("the working directory {0:?} is invalid: it needs to be an absolute path")]
    Workdir(String),
    /// The snapshotter failed (extracting a layer, preparing a snapshot).
    #[error("cannot prepare the root filesystem")]
    Snapshot(#[from] strata_layer::Error),
    /// The snapshotter returned mounts this module cannot turn into a root.
    #[error("unusable root filesystem mounts: {0}")]
    Mounts(String),
    /// A `-v`, `--mount` or `--env-file` argument is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Reading a file named on the command line, or creating a volume, failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Resolves a docker user spec against the image's /etc/passwd and
/// /etc/group as `view` shows them (never the host's). An empty spec is
/// root with home `/root`.
pub fn resolve_user(view: &MergedView, spec: &str) -> Result<ResolvedUser, ContainerError> {
    if spec.is_empty() {
        return Ok(ResolvedUser {
            user: User::root(),
            home: "/root".to_owned(),
        });
    }
    let passwd = view.read_small("/etc/passwd");
    let group = view.read_small("/etc/group");
    resolve_user_with(spec, passwd.as_deref(), group.as_deref()).map_err(|source| {
        ContainerError::User {
            spec: spec.to_owned(),
            source,
        }
    })
}

/// The spec of a container of an image with `config`, whose files `view`
/// shows, running on `rootfs`: docker's ENTRYPOINT/CMD rules, the image's
/// environment merged with the overrides (`HOME` from the user's passwd
/// entry, docker's default `PATH` when the image has none), the user
/// resolved through the image's /etc/passwd, the working directory (`/`
/// when unset). `host_env` answers `-e K` without a value.
pub fn process_spec(
    config: &ContainerConfig,
    view: &MergedView,
    rootfs: RootFs,
    o: &Overrides,
    host_env: impl Fn(&str) -> Option<String>,
) -> Result<RunSpec, ContainerError> {
    let argv = container_args(
        config.entrypoint.as_deref().unwrap_or_default(),
        config.cmd.as_deref().unwrap_or_default(),
        &o.args,
        o.entrypoint.as_deref(),
    );
    if argv.is_empty() || argv[0].is_empty() {
        return Err(ContainerError::NoCommand);
    }
    let user_spec = o
        .user
        .clone()
        .or_else(|| config.user.clone())
        .unwrap_or_default();
    let user = resolve_user(view, &user_spec)?;
    let env = merge_env(
        config.env.as_deref().unwrap_or_default(),
        &o.env,
        host_env,
        &user.home,
    );
    let cwd = o
        .workdir
        .clone()
        .or_else(|| config.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(ContainerError::Workdir(cwd));
    }
    let mut spec = RunSpec::new(rootfs, argv);
    spec.env = env;
    spec.cwd = cwd;
    spec.user = user.user;
    Ok(spec)
}

impl SnapshotMode {
    /// The snapshotter to use: for `Auto`, `Err(why)` when neither the
    /// kernel's overlayfs nor (rootless) fuse-overlayfs can be used here
    /// (the caller falls back to copy and may say why).
    pub fn resolve(self) -> Result<RootfsKind, String> {
        match self {
            SnapshotMode::Overlay => Ok(RootfsKind::Overlay),
            SnapshotMode::FuseOverlayfs => Ok(RootfsKind::FuseOverlayfs),
            SnapshotMode::Copy => Ok(RootfsKind::Copy),
            SnapshotMode::Auto => auto_choice(
                overlay_unusable(),
                rustix::process::geteuid().is_root() && strata_layer::in_user_namespace(),
                strata_sandbox::fuse::unusable,
            ),
        }
    }
}

/// `Auto`: the kernel's overlay unless `overlay_unusable` says why not;
/// then, for root in a user namespace (`userns`: rootless; elsewhere
/// nothing can be mounted, or the kernel's overlay can), fuse-overlayfs
/// unless `fuse_unusable` says why not; else copy (`Err`, both reasons).
fn auto_choice(
    overlay_unusable: Option<&str>,
    userns: bool,
    fuse_unusable: impl FnOnce() -> Option<String>,
) -> Result<RootfsKind, String> {
    match overlay_unusable {
        None => Ok(RootfsKind::Overlay),
        Some(why) if userns => match fuse_unusable() {
            None => Ok(RootfsKind::FuseOverlayfs),
            Some(fuse) => Err(format!("{why}, and {fuse}")),
        },
        Some(why) => Err(why.to_owned()),
    }
}

/// Why overlayfs cannot be mounted here, or `None` when it can (root, or
/// root in a user namespace on Linux >= 5.11, which mounts it `userxattr`;
/// and the kernel has it).
pub(crate) fn overlay_unusable() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root (nor in a user namespace)");
    }
    if strata_layer::in_user_namespace() && !kernel_at_least(&kernel_release(), 5, 11) {
        return Some("overlayfs in a user namespace needs Linux >= 5.11 (userxattr)");
    }
    let has = std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.trim_end().ends_with("overlay")))
        .unwrap_or(false);
    (!has).then_some("the kernel has no overlayfs (modprobe overlay)")
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
}

/// Whether a kernel release (`6.1.0-13-amd64`) is at least `major.minor`.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Prepares snapshot `key` on top of `layers` (bottom first): an overlay
/// (the kernel's, or one fuse-overlayfs serves) or a full copy, as `kind`
/// says; returns the root filesystem for the sandbox, which mounts it.
/// Nothing is left behind on failure. The caller removes the snapshot with
/// [`Snapshotter::remove`] (or commits it).
pub fn prepare_rootfs(
    snap: &Snapshotter,
    key: &str,
    layers: &[Layer],
    kind: RootfsKind,
) -> Result<RootFs, ContainerError> {
    let mounts = match kind {
        RootfsKind::Overlay | RootfsKind::FuseOverlayfs => snap.prepare(key, layers)?,
        RootfsKind::Copy => snap.prepare_copy(key, layers)?,
    };
    let rootfs = rootfs_from_mounts(&mounts).inspect_err(|_| {
        let _ = snap.remove(key);
    })?;
    Ok(match (kind, rootfs) {
        (
            RootfsKind::FuseOverlayfs,
            RootFs::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            },
        ) => RootFs::FuseOverlay {
            lowerdirs,
            upperdir,
            workdir,
        },
        (_, rootfs) => rootfs,
    })
}

/// The sandbox's root filesystem from the snapshotter's mounts: an overlay
/// (`lowerdir=`, `upperdir=`, `workdir=`) or a bind of a directory.
pub fn rootfs_from_mounts(mounts: &[strata_layer::Mount]) -> Result<RootFs, ContainerError> {
    let m = match mounts {
        [m] => m,
        [] => return Err(ContainerError::Mounts("no mount".into())),
        _ => {
            return Err(ContainerError::Mounts(format!(
                "{} mounts where one was expected",
                mounts.len()
            )))
        }
    };
    match m.kind.as_str() {
        "bind" => Ok(RootFs::Dir(m.source.clone())),
        "overlay" => {
            let mut lower = Vec::new();
            let mut upper = None;
            let mut work = None;
            for o in &m.options {
                if let Some(v) = o.strip_prefix("lowerdir=") {
                    lower = v.split(':').map(PathBuf::from).collect();
                } else if let Some(v) = o.strip_prefix("upperdir=") {
                    upper = Some(PathBuf::from(v));
                } else if let Some(v) = o.strip_prefix("workdir=") {
                    work = Some(PathBuf::from(v));
                }
            }
            match (upper, work) {
                (Some(upperdir), Some(workdir)) => Ok(RootFs::Overlay {
                    lowerdirs: lower,
                    upperdir,
                    workdir,
                }),
                _ => Err(ContainerError::Mounts(
                    "an overlay without upperdir and workdir is read-only".into(),
                )),
            }
        }
        k => Err(ContainerError::Mounts(format!("mount type {k:?}"))),
    }
}

/// `-v` / `--volume` as docker reads it: `SRC:CTR[:OPTS]` where SRC is an
/// absolute or relative host path (`./data`, resolved against `cwd`) for a
/// bind, or a name (`cache`) for a named volume kept under `volumes`
/// (`volumes/NAME/_data`, created when missing); OPTS: `ro`, `rw`. A lone
/// `CTR` is an anonymous volume.
pub fn parse_volume(spec: &str, cwd: &Path, volumes: &Path) -> Result<Mount, ContainerError> {
    let bad = |why: &str| ContainerError::Invalid(format!("invalid volume {spec:?}: {why}"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, ctr, mode) = match parts.as_slice() {
        [c] => ("", *c, ""),
        [s, c] => (*s, *c, ""),
        [s, c, m] => (*s, *c, *m),
        _ => return Err(bad("expected SOURCE:CONTAINER[:ro|rw]")),
    };
    if !ctr.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    let mut readonly = false;
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" | "readonly" => readonly = true,
            "rw" => readonly = false,
            o => return Err(bad(&format!("unknown option {o:?}"))),
        }
    }
    let source = volume_source(src, cwd, volumes).map_err(|e| match e {
        ContainerError::Invalid(why) => bad(&why),
        e => e,
    })?;
    Ok(Mount::bind(source, ctr, readonly))
}

/// A host path (absolute, or relative when it starts with `.` or contains
/// a `/`), or a volume name ("" for an anonymous volume).
fn volume_source(src: &str, cwd: &Path, volumes: &Path) -> Result<PathBuf, ContainerError> {
    if src.starts_with('/') {
        return Ok(PathBuf::from(src));
    }
    if src.starts_with('.') || src.contains('/') || src == "~" || src.starts_with("~/") {
        if src.starts_with('~') {
            return Err(ContainerError::Invalid(
                "'~' is not expanded; give an absolute or ./relative path".into(),
            ));
        }
        return Ok(cwd.join(src));
    }
    let name = if src.is_empty() {
        anonymous_volume_name()
    } else {
        if !src
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            || !src.as_bytes()[0].is_ascii_alphanumeric()
        {
            return Err(ContainerError::Invalid(format!(
                "{src:?} is not a valid volume name (letters, digits, '_', '.', '-'); a host path must start with '/' or '.'"
            )));
        }
        src.to_owned()
    };
    let dir = volumes.join(name).join("_data");
    std::fs::create_dir_all(&dir).map_err(|source| ContainerError::Io {
        action: "create the volume",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn anonymous_volume_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = strata_oci::Digest::sha256(format!("{}-{nanos}", std::process::id()).as_bytes());
    d.hex().to_owned()
}

/// `--mount` as docker reads it: comma-separated `key=value` pairs,
/// `type=bind|volume|tmpfs` (default `volume`), `source`/`src`,
/// `target`/`destination`/`dst`, `readonly`/`ro` (with an optional
/// `=true|false`), `tmpfs-size` (bytes, or with k/m/g). Relative bind
/// sources resolve against `cwd`; volumes live under `volumes`.
pub fn parse_mount(spec: &str, cwd: &Path, volumes: &Path) -> Result<Mount, ContainerError> {
    let bad = |why: String| ContainerError::Invalid(format!("invalid --mount {spec:?}: {why}"));
    let mut kind = "volume".to_owned();
    let mut source = None;
    let mut target = None;
    let mut readonly = false;
    let mut size = None;
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (field.trim(), None),
        };
        match (k, v) {
            ("type", Some(v)) => kind = v.to_owned(),
            ("source" | "src", Some(v)) => source = Some(v.to_owned()),
            ("target" | "destination" | "dst", Some(v)) => target = Some(v.to_owned()),
            ("readonly" | "ro", None) => readonly = true,
            ("readonly" | "ro", Some(v)) => {
                readonly = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("invalid value for {k}: {v:?}"))),
                }
            }
            ("tmpfs-size", Some(v)) => {
                size = Some(parse_size(v).ok_or_else(|| bad(format!("invalid size {v:?}")))?)
            }
            // Accepted and ignored, as they change nothing here.
            ("bind-propagation" | "consistency" | "volume-nocopy", _) => {}
            _ => return Err(bad(format!("unknown option {field:?}"))),
        }
    }
    let target = target.ok_or_else(|| bad("target= is required".into()))?;
    if !target.starts_with('/') {
        return Err(bad("the target must be an absolute path".into()));
    }
    match kind.as_str() {
        "bind" => {
            let src = source.ok_or_else(|| bad("type=bind needs source=".into()))?;
            let path = if src.starts_with('/') {
                PathBuf::from(&src)
            } else {
                cwd.join(&src)
            };
            if !path.exists() {
                return Err(bad(format!(
                    "bind source path does not exist: {}",
                    path.display()
                )));
            }
            Ok(Mount::bind(path, target, readonly))
        }
        "volume" => {
            let src = source.unwrap_or_default();
            if src.starts_with('/') || src.starts_with('.') {
                return Err(bad(
                    "a volume's source is a name; use type=bind for a host path".into(),
                ));
            }
            let dir = volume_source(&src, cwd, volumes).map_err(|e| match e {
                ContainerError::Invalid(why) => bad(why),
                e => e,
            })?;
            Ok(Mount::bind(dir, target, readonly))
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(bad("type=tmpfs takes no source".into()));
            }
            Ok(Mount::tmpfs(target, size))
        }
        k => Err(bad(format!(
            "type={k} is not supported (bind, volume, tmpfs)"
        ))),
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// The entries of an `--env-file`, as docker reads one: a `K=V` or `K`
/// entry per line (`K` alone takes K from the host), blank lines and lines
/// starting with `#` skipped, leading whitespace of the key trimmed, the
/// value kept as written (no quotes removed).
pub fn parse_env_file(text: &str, file: &Path) -> Result<Vec<String>, ContainerError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split_once('=').map_or(line, |(k, _)| k);
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(ContainerError::Invalid(format!(
                "{}:{}: variable {key:?} contains whitespace or is empty",
                file.display(),
                n + 1
            )));
        }
        out.push(line.to_owned());
    }
    Ok(out)
}

/// Where docker puts its init in a container.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// A statically linked init on the host that `--init` can bind into any
/// image (tini-static, catatonit, docker-init), looked up in `PATH` and
/// the usual directories.
pub fn find_init() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/bin", "/usr/libexec/docker", "/usr/libexec/podman"] {
        dirs.push(d.into());
    }
    for name in ["tini-static", "docker-init", "catatonit"] {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Makes `init` (a static binary on the host, see [`find_init`]) pid 1 of
/// the container: bound read-only at [`INIT_PATH`], the command after `--`.
/// tini also registers as a subreaper (`-s`), so it reaps orphans even
/// where it is not pid 1 (under the built-in executor's own pid 1).
pub fn with_init(spec: &mut RunSpec, init: &Path) {
    spec.mounts.push(Mount::bind(init, INIT_PATH, true));
    let mut args = vec![INIT_PATH.to_owned()];
    if init
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("tini"))
    {
        args.push("-s".to_owned());
    }
    args.push("--".to_owned());
    args.append(&mut spec.args);
    spec.args = args;
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_sandbox::{MountKind, DEFAULT_PATH_ENV};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A one-layer view with these files.
    fn view(files: &[(&str, &str)]) -> (tempfile::TempDir, MergedView) {
        let t = tempfile::tempdir().unwrap();
        for (p, body) in files {
            let p = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let v = MergedView::new(vec![t.path().to_path_buf()]);
        (t, v)
    }

    fn rootfs() -> RootFs {
        RootFs::Dir("/r".into())
    }

    #[test]
    fn entrypoint_cmd_and_args() {
        let (_t, v) = view(&[]);
        let config = ContainerConfig {
            entrypoint: Some(s(&["ping"])),
            cmd: Some(s(&["-c", "3", "8.8.8.8"])),
            ..Default::default()
        };
        type Case<'a> = (&'a [&'a str], Option<&'a str>, &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], None, &["ping", "-c", "3", "8.8.8.8"]),
            (&["1.1.1.1"], None, &["ping", "1.1.1.1"]),
            (&[], Some("sh"), &["sh"]),
            (&["-c", "id"], Some("sh"), &["sh", "-c", "id"]),
        ];
        for (args, ep, want) in cases {
            let o = Overrides {
                args: s(args),
                entrypoint: ep.map(str::to_owned),
                ..Default::default()
            };
            let spec = process_spec(&config, &v, rootfs(), &o, |_| None).unwrap();
            assert_eq!(spec.args, s(want), "{args:?} {ep:?}");
        }
        // --entrypoint "" and no CMD: nothing to run
        let o = Overrides {
            entrypoint: Some(String::new()),
            ..Default::default()
        };
        let bare = ContainerConfig::default();
        assert!(matches!(
            process_spec(&bare, &v, rootfs(), &o, |_| None),
            Err(ContainerError::NoCommand)
        ));
    }

    #[test]
    fn user_env_and_workdir() {
        let (_t, v) = view(&[
            (
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            ),
            ("/etc/group", "root:x:0:\nstaff:x:50:app\n"),
        ]);
        let config = ContainerConfig {
            cmd: Some(s(&["sh"])),
            user: Some("app".into()),
            env: Some(s(&["A=1", "B=2"])),
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        let spec = process_spec(&config, &v, rootfs(), &Overrides::default(), |_| None).unwrap();
        assert_eq!(
            (
                spec.user.uid,
                spec.user.gid,
                spec.user.additional_gids.clone()
            ),
            (1000, 1000, vec![50])
        );
        // no PATH in the image: docker's default goes first; HOME from passwd
        assert_eq!(spec.env, [DEFAULT_PATH_ENV, "A=1", "B=2", "HOME=/home/app"]);
        assert_eq!(spec.cwd, "/srv");
        let o = Overrides {
            user: Some("0:staff".into()),
            env: s(&["B=3", "C", "A"]),
            workdir: Some("/tmp".into()),
            ..Default::default()
        };
        let spec = process_spec(&config, &v, rootfs(), &o, |k| {
            (k == "C").then(|| "host".to_owned())
        })
        .unwrap();
        assert_eq!((spec.user.uid, spec.user.gid), (0, 50));
        assert_eq!(spec.env, [DEFAULT_PATH_ENV, "B=3", "C=host", "HOME=/root"]);
        assert_eq!(spec.cwd, "/tmp");
        // errors: unknown user, relative workdir
        let o = Overrides {
            user: Some("nobody".into()),
            ..Default::default()
        };
        let e = process_spec(&config, &v, rootfs(), &o, |_| None).unwrap_err();
        assert!(matches!(e, ContainerError::User { .. }), "{e}");
        let o = Overrides {
            workdir: Some("rel".into()),
            ..Default::default()
        };
        let e = process_spec(&config, &v, rootfs(), &o, |_| None).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        // no user anywhere: root, /root, without reading any file
        let (_t2, empty) = view(&[]);
        let c = ContainerConfig {
            cmd: Some(s(&["sh"])),
            ..Default::default()
        };
        let spec = process_spec(&c, &empty, rootfs(), &Overrides::default(), |_| None).unwrap();
        assert_eq!(spec.user, User::root());
        assert_eq!(spec.cwd, "/");
        assert!(spec.env.contains(&"HOME=/root".to_owned()));
    }

    #[test]
    fn kernel_versions_for_overlay_in_a_user_namespace() {
        for (r, ok) in [
            ("5.11.0", true),
            ("6.18.44-fc-v1300", true),
            ("5.10.0-28-amd64", false),
            ("4.19.0", false),
            ("", false),
        ] {
            assert_eq!(kernel_at_least(r, 5, 11), ok, "{r}");
        }
    }

    #[test]
    fn rootfs_from_overlay_and_copy_mounts() {
        let overlay = strata_layer::Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: s(&[
                "lowerdir=/s/b:/s/a",
                "upperdir=/s/.active/k/upper",
                "workdir=/s/.active/k/work",
                "index=off",
            ]),
        };
        assert_eq!(
            rootfs_from_mounts(std::slice::from_ref(&overlay)).unwrap(),
            RootFs::Overlay {
                lowerdirs: vec!["/s/b".into(), "/s/a".into()],
                upperdir: "/s/.active/k/upper".into(),
                workdir: "/s/.active/k/work".into(),
            }
        );
        let copy = strata_layer::Mount {
            kind: "bind".into(),
            source: "/s/.active/k/root".into(),
            options: s(&["rbind", "rw"]),
        };
        assert_eq!(
            rootfs_from_mounts(&[copy]).unwrap(),
            RootFs::Dir("/s/.active/k/root".into())
        );
        let view_only = strata_layer::Mount {
            options: s(&["lowerdir=/a:/b"]),
            ..overlay.clone()
        };
        assert!(rootfs_from_mounts(&[view_only]).is_err());
        assert!(rootfs_from_mounts(&[]).is_err());
        assert!(rootfs_from_mounts(&[overlay.clone(), overlay]).is_err());
    }

    #[test]
    fn rootfs_from_the_snapshotter_overlay_or_copy() {
        let t = tempfile::tempdir().unwrap();
        let store = strata_oci::Store::open(t.path().join("store")).unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let info = strata_layer::write_layer_to_store(
            &store,
            strata_layer::LayerSource::Dir(&src),
            &strata_layer::LayerOptions::new(strata_oci::Compression::Gzip),
        )
        .unwrap();
        let layer = Layer {
            descriptor: info.descriptor(),
            diff_id: info.diff_id.clone(),
        };
        let snap = Snapshotter::new(&store).unwrap();
        let layers = std::slice::from_ref(&layer);
        // overlay: the layer's snapshot below a fresh upper directory
        match prepare_rootfs(&snap, "c-overlay", layers, RootfsKind::Overlay).unwrap() {
            RootFs::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            } => {
                assert_eq!(lowerdirs, [snap.path(&layer.diff_id)]);
                assert!(upperdir.is_dir() && workdir.is_dir());
                assert_eq!(upperdir, snap.writable_dir("c-overlay"));
            }
            other => panic!("{other:?}"),
        }
        // fuse-overlayfs: the same directories, for the executor to mount
        match prepare_rootfs(&snap, "c-fuse", layers, RootfsKind::FuseOverlayfs).unwrap() {
            RootFs::FuseOverlay {
                lowerdirs,
                upperdir,
                workdir,
            } => {
                assert_eq!(lowerdirs, [snap.path(&layer.diff_id)]);
                assert!(upperdir.is_dir() && workdir.is_dir());
                assert_eq!(upperdir, snap.writable_dir("c-fuse"));
            }
            other => panic!("{other:?}"),
        }
        // copy: a directory holding the image's files
        match prepare_rootfs(&snap, "c-copy", layers, RootfsKind::Copy).unwrap() {
            RootFs::Dir(d) => {
                assert!(d.join("etc/passwd").is_file());
                assert_eq!(d, snap.writable_dir("c-copy"));
            }
            other => panic!("{other:?}"),
        }
        // a key in use fails and leaves the first one alone
        assert!(prepare_rootfs(&snap, "c-copy", layers, RootfsKind::Copy).is_err());
        assert!(snap.writable_dir("c-copy").join("etc/passwd").is_file());
        for k in ["c-overlay", "c-fuse", "c-copy"] {
            snap.remove(k).unwrap();
            assert!(!snap.writable_dir(k).exists());
        }
    }

    #[test]
    fn auto_picks_overlay_then_fuse_overlayfs_rootless_then_copy() {
        let old = Some("overlayfs in a user namespace needs Linux >= 5.11 (userxattr)");
        let fuse_ok = || None;
        let no_fuse = || Some("fuse-overlayfs is not installed".to_owned());
        assert_eq!(auto_choice(None, true, no_fuse), Ok(RootfsKind::Overlay));
        assert_eq!(
            auto_choice(old, true, fuse_ok),
            Ok(RootfsKind::FuseOverlayfs)
        );
        assert_eq!(
            auto_choice(old, true, no_fuse),
            Err("overlayfs in a user namespace needs Linux >= 5.11 (userxattr), and fuse-overlayfs is not installed".to_owned())
        );
        // Not in a user namespace: fuse-overlayfs is not considered.
        let e = auto_choice(Some("not running as root"), false, fuse_ok);
        assert_eq!(e, Err("not running as root".to_owned()));
    }

    #[test]
    fn snapshot_modes() {
        assert_eq!(SnapshotMode::Overlay.resolve(), Ok(RootfsKind::Overlay));
        assert_eq!(
            SnapshotMode::FuseOverlayfs.resolve(),
            Ok(RootfsKind::FuseOverlayfs)
        );
        assert_eq!(SnapshotMode::Copy.resolve(), Ok(RootfsKind::Copy));
        let auto = SnapshotMode::Auto.resolve();
        assert_eq!(
            auto == Ok(RootfsKind::Overlay),
            overlay_unusable().is_none()
        );
    }

    #[test]
    fn volumes_relative_named_and_anonymous() {
        let t = tempfile::tempdir().unwrap();
        let cwd = Path::new("/work/app");
        let vols = t.path().join("volumes");
        assert_eq!(
            parse_volume("/a:/b:ro", cwd, &vols).unwrap(),
            Mount::bind("/a", "/b", true)
        );
        assert_eq!(
            parse_volume("./data:/data", cwd, &vols).unwrap(),
            Mount::bind("/work/app/./data", "/data", false)
        );
        assert_eq!(
            parse_volume("sub/dir:/d:rw", cwd, &vols).unwrap(),
            Mount::bind("/work/app/sub/dir", "/d", false)
        );
        let named = parse_volume("cache:/c", cwd, &vols).unwrap();
        assert_eq!(named, Mount::bind(vols.join("cache/_data"), "/c", false));
        assert!(vols.join("cache/_data").is_dir());
        let anon = parse_volume("/anon", cwd, &vols).unwrap();
        assert!(matches!(&anon.kind, MountKind::Bind { source, .. } if source.starts_with(&vols)));
        for bad in ["/a:b", "/a:/b:rx", "/a:/b:ro:x", "~/x:/x", "-bad:/x"] {
            assert!(parse_volume(bad, cwd, &vols).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flags() {
        let t = tempfile::tempdir().unwrap();
        let cwd = t.path();
        std::fs::create_dir(cwd.join("src")).unwrap();
        let vols = t.path().join("volumes");
        assert_eq!(
            parse_mount("type=bind,source=./src,target=/s,readonly", cwd, &vols).unwrap(),
            Mount::bind(cwd.join("./src"), "/s", true)
        );
        assert_eq!(
            parse_mount("type=bind,src=src,dst=/s,ro=false", cwd, &vols).unwrap(),
            Mount::bind(cwd.join("src"), "/s", false)
        );
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=64m", cwd, &vols).unwrap(),
            Mount::tmpfs("/t", Some(64 << 20))
        );
        assert_eq!(
            parse_mount("source=data,target=/data", cwd, &vols).unwrap(),
            Mount::bind(vols.join("data/_data"), "/data", false)
        );
        for bad in [
            "type=bind,source=/nonexistent-strata,target=/x",
            "type=bind,target=/x",
            "type=tmpfs,source=x,target=/t",
            "type=nfs,target=/x",
            "type=bind,source=src",
            "type=bind,source=src,target=rel",
            "type=volume,source=/abs,target=/x",
            "type=bind,source=src,target=/x,bogus=1",
            "type=tmpfs,target=/t,tmpfs-size=lots",
        ] {
            assert!(parse_mount(bad, cwd, &vols).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files() {
        let f = Path::new("app.env");
        let got = parse_env_file("# comment\n\nA=1\n  B=two words\nC\nD=\"q\"\n", f).unwrap();
        assert_eq!(got, ["A=1", "B=two words", "C", "D=\"q\""]);
        let e = parse_env_file("A=1\nBAD KEY=2\n", f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("app.env:2"), "{e}");
        assert!(parse_env_file("=x\n", f).is_err());
    }

    #[test]
    fn init_goes_first() {
        let mut spec = RunSpec::new(rootfs(), s(&["sh", "-c", "true"]));
        with_init(&mut spec, Path::new("/usr/bin/tini-static"));
        assert_eq!(spec.args, [INIT_PATH, "-s", "--", "sh", "-c", "true"]);
        assert_eq!(
            spec.mounts,
            [Mount::bind("/usr/bin/tini-static", INIT_PATH, true)]
        );
        let mut spec = RunSpec::new(rootfs(), s(&["true"]));
        with_init(&mut spec, Path::new("/usr/libexec/podman/catatonit"));
        assert_eq!(spec.args, [INIT_PATH, "--", "true"]);
    }
}
