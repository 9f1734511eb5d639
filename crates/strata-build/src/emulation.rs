//! Foreign-architecture RUN (and `strata run` of another CPU's image): the
//! kernel runs another CPU's binaries through qemu user-mode emulation
//! registered in binfmt_misc (`/proc/sys/fs/binfmt_misc/qemu-<arch>`).
//! strata checks the registration before the first RUN for such a platform
//! (and before a container of it starts), so a missing qemu is one clear
//! error naming the fix rather than "exec format error" deep in a step.
//!
//! The registration must carry the `F` (fix-binary) flag: the kernel then
//! opens the interpreter when it is registered, and a RUN's sandbox (its
//! own root file system, without `/usr/bin/qemu-*`) still finds it.
//! Debian's `qemu-user-static` + `binfmt-support` (or `qemu-user-binfmt`,
//! through systemd-binfmt) register them so.

use std::path::Path;

use strata_oci::Platform;

/// Why another architecture's binaries cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// No qemu is known for the architecture.
    #[error("strata knows no qemu emulator for {platform}")]
    Unsupported {
        /// The platform.
        platform: String,
    },
    /// binfmt_misc is not mounted (or not readable).
    #[error(
        "{platform} binaries need qemu user-mode emulation, and binfmt_misc is not available \
         ({dir} is not mounted)"
    )]
    NoBinfmt {
        /// The platform.
        platform: String,
        /// The binfmt_misc directory looked at.
        dir: String,
    },
    /// No (enabled) entry for the architecture.
    #[error(
        "{platform} binaries need qemu user-mode emulation, and no {entry} is {state} in \
         binfmt_misc"
    )]
    NotRegistered {
        /// The platform.
        platform: String,
        /// The entry's path.
        entry: String,
        /// "registered" or "enabled".
        state: &'static str,
    },
    /// Registered without the F flag: the interpreter would be looked up
    /// inside the RUN's root file system.
    #[error(
        "{platform} binaries need qemu user-mode emulation, and {entry} is registered without \
         the F (fix-binary) flag, so the kernel would look for {interpreter} inside the image"
    )]
    NotFixBinary {
        /// The platform.
        platform: String,
        /// The entry's path.
        entry: String,
        /// The interpreter it names.
        interpreter: String,
    },
}

impl EmulationError {
    /// How to fix it (Debian packages and the command).
    pub fn hint(&self) -> String {
        let install = "install qemu and its binfmt_misc registrations: \
                       `apt-get install qemu-user-static binfmt-support` (or `apt-get install \
                       qemu-user-binfmt`); in a container, run it on the host, or register \
                       them with `docker run --privileged --rm tonistiigi/binfmt --install all`";
        match self {
            EmulationError::Unsupported { .. } => {
                "run it on such a machine; in a build, build this stage with FROM \
                 --platform=$BUILDPLATFORM and cross-compile, or drop the platform"
                    .to_owned()
            }
            EmulationError::NoBinfmt { dir, .. } => {
                format!("mount it with `mount -t binfmt_misc binfmt_misc {dir}`, then {install}")
            }
            EmulationError::NotRegistered { entry, state, .. } if *state == "enabled" => {
                format!("enable it with `echo 1 > {entry}`")
            }
            EmulationError::NotRegistered { .. } => install.to_owned(),
            EmulationError::NotFixBinary { .. } => format!(
                "re-register with the F flag: `update-binfmts --disable` and {install} (Debian's \
                 registrations have it), or cross-compile in a FROM --platform=$BUILDPLATFORM \
                 stage"
            ),
        }
    }
}

impl miette::Diagnostic for EmulationError {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.hint()))
    }
}

/// The kernel's binfmt_misc directory.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Checks that binaries for `platform` run here: natively, or through an
/// enabled qemu binfmt_misc entry with the F flag under `binfmt_dir`.
pub fn check(platform: &Platform, binfmt_dir: &Path) -> Result<(), EmulationError> {
    if platform.runs_natively() {
        return Ok(());
    }
    let name = platform.to_string();
    let Some(arch) = platform.qemu_arch() else {
        return Err(EmulationError::Unsupported { platform: name });
    };
    if !binfmt_dir.join("status").exists() {
        return Err(EmulationError::NoBinfmt {
            platform: name,
            dir: binfmt_dir.display().to_string(),
        });
    }
    let entry = binfmt_dir.join(format!("qemu-{arch}"));
    let Ok(text) = std::fs::read_to_string(&entry) else {
        return Err(EmulationError::NotRegistered {
            platform: name,
            entry: entry.display().to_string(),
            state: "registered",
        });
    };
    let mut enabled = false;
    let mut flags = "";
    let mut interpreter = "";
    for line in text.lines() {
        if line == "enabled" {
            enabled = true;
        } else if let Some(f) = line.strip_prefix("flags:") {
            flags = f.trim();
        } else if let Some(i) = line.strip_prefix("interpreter ") {
            interpreter = i.trim();
        }
    }
    if !enabled {
        return Err(EmulationError::NotRegistered {
            platform: name,
            entry: entry.display().to_string(),
            state: "enabled",
        });
    }
    if !flags.contains('F') {
        return Err(EmulationError::NotFixBinary {
            platform: name,
            entry: entry.display().to_string(),
            interpreter: interpreter.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm64() -> Platform {
        // A platform foreign to this machine, whatever it is.
        if Platform::host().architecture == "arm64" {
            "linux/amd64".parse().unwrap()
        } else {
            "linux/arm64".parse().unwrap()
        }
    }

    fn entry(dir: &Path, body: &str) {
        let name = format!("qemu-{}", arm64().qemu_arch().unwrap());
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn registrations_are_read_as_the_kernel_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = arm64();
        assert!(check(&Platform::host(), Path::new("/nonexistent")).is_ok());
        let e = check(&p, &dir.path().join("none")).unwrap_err();
        assert!(matches!(e, EmulationError::NoBinfmt { .. }), "{e}");
        assert!(e.hint().contains("mount -t binfmt_misc"));
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let e = check(&p, dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                EmulationError::NotRegistered {
                    state: "registered",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.hint().contains("qemu-user-static binfmt-support"),
            "{}",
            e.hint()
        );
        entry(
            dir.path(),
            "disabled\ninterpreter /usr/libexec/qemu-binfmt/q\nflags: OCF\noffset 0\n",
        );
        let e = check(&p, dir.path()).unwrap_err();
        assert!(e.hint().contains("echo 1 >"), "{}", e.hint());
        entry(
            dir.path(),
            "enabled\ninterpreter /usr/bin/qemu-x\nflags: \noffset 0\nmagic 7f454c46\n",
        );
        let e = check(&p, dir.path()).unwrap_err();
        assert!(e.to_string().contains("/usr/bin/qemu-x"), "{e}");
        entry(
            dir.path(),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/q\nflags: POCF\noffset 0\n",
        );
        assert_eq!(check(&p, dir.path()), Ok(()));
        let e = check(&"linux/wasm".parse().unwrap(), dir.path()).unwrap_err();
        assert!(matches!(e, EmulationError::Unsupported { .. }));
    }
}
