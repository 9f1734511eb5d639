//! Platforms (`os/arch[/variant]`): parsed from what users type and
//! normalised as containerd does, so that `arm64`, `linux/aarch64` and
//! `linux/arm64/v8` are one platform and `armhf` is `linux/arm/v7`.
//!
//! This is the one place strata turns a platform string into a [`Platform`]:
//! `--platform` of build, pull, import and run, the `FROM --platform` of a
//! Dockerfile, and the automatic `TARGETPLATFORM`/`BUILDPLATFORM` args.
//!
//! ```
//! use strata_oci::Platform;
//!
//! let p: Platform = "linux/aarch64".parse().unwrap();
//! assert_eq!(p.to_string(), "linux/arm64");
//! let list = Platform::parse_list("linux/amd64, linux/arm/v7").unwrap();
//! assert_eq!(list[1].variant.as_deref(), Some("v7"));
//! assert!("linux/amd64,linux".parse::<Platform>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A platform: operating system and CPU architecture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (GOARCH names: amd64, arm64, arm, 386, ppc64le, s390x, riscv64).
    pub architecture: String,
    /// Operating system (GOOS names: linux, windows).
    pub os: String,
    /// Operating system version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant (v7, v8...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Operating systems (GOOS values) a platform may name.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// Architectures (GOARCH values, after normalisation) a platform may name.
const KNOWN_ARCH: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc64",
    "ppc64le", "riscv64", "s390x", "sparc64", "wasm",
];

/// Why a string is not a platform: the whole input and the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid platform {input:?}: {reason} (expected os/arch[/variant], like linux/amd64 or \
     linux/arm/v7)"
)]
pub struct PlatformError {
    /// What was given.
    pub input: String,
    /// What is wrong with it, naming the part.
    pub reason: String,
}

impl PlatformError {
    fn new(input: &str, reason: impl Into<String>) -> PlatformError {
        PlatformError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// containerd's `normalizeArch`: the GOARCH name and the canonical variant
/// (`None` where the variant is the architecture's default).
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.map(str::to_ascii_lowercase);
    let v = variant.as_deref();
    let (a, v): (&str, Option<String>) = match arch.as_str() {
        "i386" | "i686" | "x86" => ("386", None),
        "x86_64" | "x86-64" | "amd64" => ("amd64", v.filter(|v| *v != "v1").map(str::to_owned)),
        "aarch64" | "arm64" => (
            "arm64",
            match v {
                Some("8") | Some("v8") | Some("v8.0") | None => None,
                Some("9") | Some("9.0") | Some("v9.0") => Some("v9".to_owned()),
                Some(o) => Some(o.to_owned()),
            },
        ),
        "armhf" => ("arm", Some("v7".to_owned())),
        "armel" => ("arm", Some("v6".to_owned())),
        "arm" => (
            "arm",
            Some(match v {
                None | Some("7") => "v7".to_owned(),
                Some(n @ ("5" | "6" | "8")) => format!("v{n}"),
                Some(o) => o.to_owned(),
            }),
        ),
        "ppc64el" => ("ppc64le", v.map(str::to_owned)),
        "mips64el" => ("mips64le", v.map(str::to_owned)),
        "mipsel" => ("mipsle", v.map(str::to_owned)),
        "loongarch64" => ("loong64", v.map(str::to_owned)),
        other => return (other.to_owned(), variant),
    };
    (a.to_owned(), v)
}

fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".to_owned(),
        o => o.to_owned(),
    }
}

fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl Platform {
    /// A platform with only os, architecture and variant, normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, variant) = normalize_arch(architecture, variant);
        Platform {
            architecture,
            os: normalize_os(os),
            os_version: None,
            os_features: Vec::new(),
            variant,
        }
    }

    /// The platform strata runs on (linux and the GOARCH name of this CPU).
    pub fn host() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None)
    }

    /// The same platform with containerd's canonical names (`aarch64` ->
    /// `arm64`, arm64's `v8` dropped, arm's default `v7` written out).
    pub fn normalized(&self) -> Platform {
        let mut p = Platform::new(&self.os, &self.architecture, self.variant.as_deref());
        p.os_version = self.os_version.clone();
        p.os_features = self.os_features.clone();
        p
    }

    /// Parses a comma-separated list (`linux/amd64,linux/arm64`), each
    /// normalised, duplicates dropped, in the order given.
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, PlatformError> {
        let mut out: Vec<Platform> = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(PlatformError::new(s, "an empty entry in the list"));
            }
            let p: Platform = part.parse()?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Whether an index entry for `other` can serve a request for `self`
    /// (os and architecture equal once normalised; variant equal when both
    /// name one).
    pub fn matches(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        if a.os != b.os || a.architecture != b.architecture {
            return false;
        }
        match (&a.variant, &b.variant) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
    }

    /// Whether this CPU runs the platform's binaries natively (same
    /// architecture as the host, or 32-bit x86 / arm on their 64-bit hosts).
    pub fn runs_natively(&self) -> bool {
        let host = Platform::host();
        let me = self.normalized();
        me.architecture == host.architecture
            || matches!(
                (host.architecture.as_str(), me.architecture.as_str()),
                ("amd64", "386")
            )
    }

    /// The name qemu (and its binfmt_misc entry, `qemu-NAME`) gives this
    /// architecture, when qemu emulates it.
    pub fn qemu_arch(&self) -> Option<&'static str> {
        let me = self.normalized();
        Some(match me.architecture.as_str() {
            "amd64" => "x86_64",
            "386" => "i386",
            "arm64" => "aarch64",
            "arm" => "arm",
            "ppc64le" => "ppc64le",
            "ppc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "mips64le" => "mips64el",
            "mips64" => "mips64",
            "mipsle" => "mipsel",
            "mips" => "mips",
            "loong64" => "loongarch64",
            "sparc64" => "sparc64",
            _ => return None,
        })
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// containerd's `platforms.Parse` then `Normalize`: `os/arch[/variant]`,
    /// or a lone OS (the host's architecture) or a lone architecture (linux).
    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let err = |reason: String| PlatformError::new(s, reason);
        if s.contains(',') {
            return Err(err(format!(
                "{s:?} is a list; this option takes one platform"
            )));
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 {
            return Err(err(format!(
                "{} parts; at most 3 (os/arch/variant)",
                parts.len()
            )));
        }
        for (i, part) in parts.iter().enumerate() {
            let what = match (parts.len(), i) {
                (1, _) => "os or architecture",
                (_, 0) => "os",
                (_, 1) => "architecture",
                _ => "variant",
            };
            if part.is_empty() {
                return Err(err(format!("the {what} is empty")));
            }
            if !valid_component(part) {
                return Err(err(format!(
                    "{part:?} is not a valid {what} (letters, digits, '_', '-', '.')"
                )));
            }
        }
        let (os, arch, variant) = match parts.as_slice() {
            [one] => {
                let lower = normalize_os(one);
                if KNOWN_OS.contains(&lower.as_str()) {
                    let host = Platform::host();
                    (lower, host.architecture, host.variant)
                } else {
                    ("linux".to_owned(), (*one).to_owned(), None)
                }
            }
            [os, arch] => (normalize_os(os), (*arch).to_owned(), None),
            [os, arch, v] => (normalize_os(os), (*arch).to_owned(), Some((*v).to_owned())),
            _ => return Err(err("empty".to_owned())),
        };
        if !KNOWN_OS.contains(&os.as_str()) {
            return Err(err(if parts.len() == 1 {
                format!("{os:?} is not a known operating system or architecture")
            } else {
                format!(
                    "{:?} is not a known operating system ({})",
                    parts[0], "linux, windows, darwin, freebsd..."
                )
            }));
        }
        let p = Platform::new(&os, &arch, variant.as_deref());
        if !KNOWN_ARCH.contains(&p.architecture.as_str()) {
            if parts.len() == 1 {
                return Err(err(format!(
                    "{arch:?} is not a known operating system or architecture"
                )));
            }
            return Err(err(format!(
                "{arch:?} is not a known architecture (amd64, arm64, arm, 386, ppc64le, \
                 s390x, riscv64...)"
            )));
        }
        Ok(p)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        s.parse::<Platform>().map(|p| p.to_string()).unwrap()
    }

    #[test]
    fn normalised_as_containerd() {
        let host = Platform::host().to_string();
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/arm64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("arm64", "linux/arm64"),
            ("aarch64", "linux/arm64"),
            ("linux/arm64/v9.0", "linux/arm64/v9"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/ppc64el", "linux/ppc64le"),
            ("linux/riscv64", "linux/riscv64"),
            ("linux", host.as_str()),
        ] {
            assert_eq!(p(input), want, "{input}");
        }
    }

    #[test]
    fn malformed_is_refused_naming_the_part() {
        for (input, part) in [
            ("linux/amd64,linux/arm64", "is a list"),
            ("amd64,linux", "is a list"),
            ("linux/", "architecture is empty"),
            ("/amd64", "os is empty"),
            ("linux//v7", "architecture is empty"),
            ("linux/arm/", "variant is empty"),
            ("linux/amd64/v1/x", "4 parts"),
            ("linux/amd 64", "\"amd 64\" is not a valid architecture"),
            ("linux/pentium", "\"pentium\" is not a known architecture"),
            ("lnux/amd64", "\"lnux\" is not a known operating system"),
            (
                "foo",
                "\"foo\" is not a known operating system or architecture",
            ),
            ("", "is empty"),
        ] {
            let e = input.parse::<Platform>().unwrap_err().to_string();
            assert!(e.contains(part), "{input}: {e}");
        }
        let e = Platform::parse_list("linux/amd64,,linux/arm64").unwrap_err();
        assert!(e.to_string().contains("empty entry"), "{e}");
        let e = Platform::parse_list("linux/amd64,linux/armv7").unwrap_err();
        assert!(e.to_string().contains("\"armv7\""), "{e}");
    }

    #[test]
    fn lists_parse_each_and_drop_duplicates() {
        let l = Platform::parse_list("linux/amd64, linux/arm64,linux/aarch64/v8").unwrap();
        let s: Vec<String> = l.iter().map(|p| p.to_string()).collect();
        assert_eq!(s, ["linux/amd64", "linux/arm64"]);
    }

    #[test]
    fn matching_and_emulation_names() {
        let arm: Platform = "linux/arm64".parse().unwrap();
        let v8 = Platform {
            variant: Some("v8".into()),
            ..arm.clone()
        };
        assert!(arm.matches(&v8) && v8.matches(&arm));
        assert!(!arm.matches(&"linux/amd64".parse().unwrap()));
        let v6: Platform = "linux/arm/v6".parse().unwrap();
        assert!(!v6.matches(&"linux/arm/v7".parse().unwrap()));
        assert_eq!(arm.qemu_arch(), Some("aarch64"));
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap().qemu_arch(),
            Some("x86_64")
        );
        assert!(Platform::host().runs_natively());
    }
}
