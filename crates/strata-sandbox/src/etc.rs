//! The generated /etc/hosts, /etc/hostname and /etc/resolv.conf.

use std::path::{Path, PathBuf};

use crate::error::SandboxError;
use crate::spec::{Network, RunSpec};

/// Paths (inside the container) of the generated files, with their host copies.
pub(crate) struct EtcFiles {
    pub files: Vec<(&'static str, PathBuf)>,
}

/// Writes hosts, hostname and resolv.conf for `spec` into `dir`.
pub(crate) fn write_etc_files(dir: &Path, spec: &RunSpec) -> Result<EtcFiles, SandboxError> {
    let hostname = &spec.hostname;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    );
    // With the host's network, the host's resolver configuration works as is
    // (apt, pip); a network-less container gets it too (harmless, and what
    // docker does), it just cannot reach anything.
    let resolv = match std::fs::read("/etc/resolv.conf") {
        Ok(b) if spec.network == Network::Host || !b.is_empty() => b,
        _ => b"nameserver 127.0.0.1\n".to_vec(),
    };
    let mut files = Vec::new();
    for (target, name, body) in [
        ("/etc/hosts", "hosts", hosts.into_bytes()),
        (
            "/etc/hostname",
            "hostname",
            format!("{hostname}\n").into_bytes(),
        ),
        ("/etc/resolv.conf", "resolv.conf", resolv),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|e| SandboxError::prepare(&path, e))?;
        files.push((target, path));
    }
    Ok(EtcFiles { files })
}
