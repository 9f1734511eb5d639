//! Settings resolved once from the command line and the environment, before
//! any command runs (the `lowargs` -> `hiargs` split).

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::GlobalArgs;

/// What every command may need, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store directory.
    pub root: PathBuf,
    /// Print only errors and final results.
    pub quiet: bool,
    /// 0 = normal, 1 = verbose, 2+ = debug.
    pub verbosity: u8,
    /// Standard error is a terminal (live progress is allowed).
    pub stderr_tty: bool,
    /// Standard output is a terminal.
    pub stdout_tty: bool,
    /// `SOURCE_DATE_EPOCH` from the environment (0 when unset): every time a
    /// build or an import records. `--build-arg SOURCE_DATE_EPOCH=` overrides it
    /// for a build.
    pub epoch: i64,
    /// How RUN steps and `strata run` get their root filesystem
    /// (`STRATA_SNAPSHOTTER=overlay|fuse-overlayfs|copy`, else chosen by what the host allows).
    pub snapshots: strata_build::SnapshotMode,
    /// Runtime state (the sandbox's per-run scratch directories):
    /// `<store>/run`, or rootless `$XDG_RUNTIME_DIR/strata` when set.
    pub run_dir: PathBuf,
    /// Where the kernel's binfmt_misc registrations are read
    /// (`STRATA_BINFMT_DIR`, default `/proc/sys/fs/binfmt_misc`).
    pub binfmt_dir: PathBuf,
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> Settings {
        let root = absolute(global.root.clone().unwrap_or_else(default_root));
        Settings {
            run_dir: runtime_dir(rootless(), std::env::var_os("XDG_RUNTIME_DIR"))
                .unwrap_or_else(|| root.join("run")),
            root,
            quiet: global.quiet,
            verbosity: global.verbose,
            stderr_tty: std::io::stderr().is_terminal(),
            stdout_tty: std::io::stdout().is_terminal(),
            epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            snapshots: match std::env::var("STRATA_SNAPSHOTTER").as_deref() {
                Ok("copy") => strata_build::SnapshotMode::Copy,
                Ok("overlay") => strata_build::SnapshotMode::Overlay,
                Ok("fuse-overlayfs") => strata_build::SnapshotMode::FuseOverlayfs,
                _ => strata_build::SnapshotMode::Auto,
            },
            binfmt_dir: std::env::var_os("STRATA_BINFMT_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(strata_build::BINFMT_DIR)),
        }
    }
}

/// `path` made absolute against the working directory (a relative
/// `STRATA_ROOT=./store` works everywhere the store's paths are used, such
/// as overlay mount options, which must be absolute).
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::path::absolute(&path).unwrap_or(path)
}

/// Whether this strata runs rootless: not root, or root in the user
/// namespace it entered as an ordinary user.
fn rootless() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid != 0 || strata_sandbox::rootless::current().is_some()
}

/// Rootless runtime state under `$XDG_RUNTIME_DIR/strata` (a tmpfs of the
/// user's, gone at logout), when that is set; else under the store.
fn runtime_dir(rootless: bool, xdg: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let xdg = PathBuf::from(xdg.filter(|v| !v.is_empty())?);
    (rootless && xdg.is_absolute()).then(|| xdg.join("strata"))
}

/// `/var/lib/strata` as root, else (an ordinary user, also once in its
/// user namespace) `$XDG_DATA_HOME/strata` (`~/.local/share/strata` when
/// XDG_DATA_HOME is unset).
pub fn default_root() -> PathBuf {
    if !rootless() {
        return PathBuf::from("/var/lib/strata");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("strata");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/strata"),
        None => PathBuf::from(".strata"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_state_of_a_rootless_user() {
        let xdg = Some(std::ffi::OsString::from("/run/user/1000"));
        assert_eq!(
            runtime_dir(true, xdg.clone()),
            Some(PathBuf::from("/run/user/1000/strata"))
        );
        assert_eq!(runtime_dir(false, xdg), None);
        assert_eq!(runtime_dir(true, None), None);
        assert_eq!(runtime_dir(true, Some("rel".into())), None);
    }
}
