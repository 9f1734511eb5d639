//! Docker's defaults: capabilities, masked and read-only paths, rlimits.

/// Docker's default capability set (moby `oci/caps/defaults.go`), by name.
pub const DEFAULT_CAPS: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// [`DEFAULT_CAPS`] as a bit mask (as shown in `CapEff` of /proc/PID/status:
/// `00000000a80425fb`).
pub const DEFAULT_CAP_MASK: u64 = {
    let mut m = 0u64;
    let mut i = 0;
    while i < DEFAULT_CAPS.len() {
        m |= 1 << DEFAULT_CAPS[i].1;
        i += 1;
    }
    m
};

/// Paths docker hides: files get /dev/null bound over them, directories an
/// empty read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths docker makes read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host devices made available in the container's /dev.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// RLIMIT_NOFILE (soft, hard): low soft limit for old programs that loop
/// over every fd, generous hard limit (systemd's choice).
pub const NOFILE_LIMIT: (u64, u64) = (1024, 524288);

/// [`NOFILE_LIMIT`] capped by the caller's own hard limit (raising it needs
/// CAP_SYS_RESOURCE, which strata may not have).
pub(crate) fn nofile_limit() -> (u64, u64) {
    let own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    // `None` is RLIM_INFINITY
    let hard = own
        .maximum
        .map_or(NOFILE_LIMIT.1, |max| NOFILE_LIMIT.1.min(max));
    (NOFILE_LIMIT.0.min(hard), hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_mask_matches_docker() {
        // `docker run --rm busybox grep CapEff /proc/self/status`
        assert_eq!(DEFAULT_CAP_MASK, 0xa80425fb);
        assert_eq!(DEFAULT_CAPS.len(), 14);
    }
}
