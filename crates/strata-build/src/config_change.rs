//! What the config-only instructions (ENV, LABEL, CMD, ENTRYPOINT, EXPOSE,
//! VOLUME, USER, WORKDIR, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD,
//! MAINTAINER) do to an image config, in one place: the builder's meta steps
//! apply them while building, and `strata import --change` applies them to
//! an imported root filesystem ([`apply_change`]), reading the instruction
//! with the Dockerfile parser as docker's `import --change` does.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_dockerfile::shell::Lexer;
use strata_dockerfile::{InstructionKind, ShellOrExec};
use strata_oci::{ContainerConfig, ImageConfig};

use crate::error::{Error, Result};

/// One config-only instruction, its words already expanded.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange {
    /// `ENV key=value` (one pair; an existing key is replaced in place).
    Env(String, String),
    /// `LABEL key=value` (one pair).
    Label(String, String),
    /// `MAINTAINER name` (the config's author).
    Maintainer(String),
    /// `EXPOSE`: ports as `80/tcp` (a range written `8000-8001` is one
    /// entry per port).
    Expose(Vec<String>),
    /// `VOLUME path` (one path; empty is an error).
    Volume(String),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path` (relative to the current one).
    Workdir(String),
    /// `CMD`: the full argv (shell form already wrapped in the shell).
    Cmd(Vec<String>),
    /// `ENTRYPOINT`: the full argv; resets a CMD not set by this build.
    Entrypoint(Vec<String>),
    /// `SHELL`.
    Shell(Vec<String>),
    /// `STOPSIGNAL` (checked to be a signal).
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(strata_oci::Healthcheck),
    /// `ONBUILD` trigger text.
    Onbuild(String),
}

impl ConfigChange {
    /// Apply to `config`. `cmd_set` says whether CMD was set by the
    /// instructions applied so far (a new ENTRYPOINT resets an inherited CMD
    /// only, as docker does); CMD sets it.
    pub fn apply(&self, config: &mut ImageConfig, cmd_set: &mut bool) -> Result<()> {
        if let ConfigChange::Maintainer(m) = self {
            config.author = Some(m.clone());
            return Ok(());
        }
        let cfg = config.config.get_or_insert_with(ContainerConfig::default);
        match self {
            ConfigChange::Maintainer(_) => {}
            ConfigChange::Env(k, v) => {
                let env = cfg.env.get_or_insert_with(Vec::new);
                let entry = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(k.as_str()))
                {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
            ConfigChange::Label(k, v) => {
                cfg.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k.clone(), v.clone());
            }
            ConfigChange::Expose(ports) => {
                let exposed = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in ports {
                    exposed.insert(p.clone(), serde_json::json!({}));
                }
            }
            ConfigChange::Volume(v) => {
                if v.is_empty() {
                    return Err(Error::invalid(
                        "VOLUME specified can not be an empty string",
                    ));
                }
                cfg.volumes
                    .get_or_insert_with(BTreeMap::new)
                    .insert(v.clone(), serde_json::json!({}));
            }
            ConfigChange::User(u) => cfg.user = Some(u.clone()),
            ConfigChange::Workdir(w) => {
                let joined = if w.starts_with('/') {
                    w.clone()
                } else {
                    let cur = cfg.working_dir.as_deref().unwrap_or("/");
                    format!("{}/{w}", cur.trim_end_matches('/'))
                };
                let comps = strata_layer::clean_components(&joined);
                cfg.working_dir = Some(format!("/{}", comps.join("/")));
            }
            ConfigChange::Cmd(args) => {
                cfg.cmd = Some(args.clone());
                cfg.args_escaped = Some(true);
                *cmd_set = true;
            }
            ConfigChange::Entrypoint(args) => {
                cfg.entrypoint = Some(args.clone());
                if !*cmd_set {
                    // A new ENTRYPOINT resets the CMD inherited from the base.
                    cfg.cmd = None;
                }
            }
            ConfigChange::Shell(sh) => cfg.shell = Some(sh.clone()),
            ConfigChange::StopSignal(s) => {
                check_signal(s)?;
                cfg.stop_signal = Some(s.clone());
            }
            ConfigChange::Healthcheck(h) => cfg.healthcheck = Some(h.clone()),
            ConfigChange::Onbuild(e) => cfg.on_build.get_or_insert_with(Vec::new).push(e.clone()),
        }
        Ok(())
    }
}

/// Instructions `import --change` accepts (docker's list).
const CHANGEABLE: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Apply one Dockerfile instruction given to `strata import --change`
/// (`CMD ["sh"]`, `ENV A=1`, `EXPOSE 80/tcp`...) to `config`, as docker's
/// `import --change` does: the instruction is read by the Dockerfile parser,
/// its words expanded with the config's ENV, and applied as the builder
/// applies it.
pub fn apply_change(config: &mut ImageConfig, change: &str) -> Result<()> {
    // On error the config is left as it was.
    let mut edited = config.clone();
    apply_change_to(&mut edited, change)
        .map_err(|why| Error::invalid(format!("--change {change:?}: {why}")))?;
    *config = edited;
    Ok(())
}

fn apply_change_to(config: &mut ImageConfig, change: &str) -> Result<(), String> {
    let df = strata_dockerfile::parse_named("--change", &format!("FROM scratch\n{change}\n"))
        .map_err(|e| e.kind.to_string())?;
    let stages = df.stages().map_err(|e| e.kind.to_string())?;
    let ins = match stages.stages.as_slice() {
        [stage] if stage.instructions.len() == 1 => &stage.instructions[0],
        [stage] if stage.instructions.is_empty() => return Err("no instruction".into()),
        _ => return Err("one instruction per --change".into()),
    };
    let keyword = ins.keyword.to_ascii_uppercase();
    if !CHANGEABLE.contains(&keyword.as_str()) {
        return Err(format!(
            "{keyword} cannot be changed on import (only {})",
            CHANGEABLE.join(", ")
        ));
    }
    let env = |config: &ImageConfig| -> BTreeMap<String, String> {
        config
            .config
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .into_iter()
            .flatten()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    };
    let lexer = Lexer::new('\\');
    let expand = |config: &ImageConfig, w: &str| -> Result<String, String> {
        lexer
            .process_word(w, &env(config))
            .map(|w| w.value)
            .map_err(|e| e.to_string())
    };
    let shell = |config: &ImageConfig| -> Vec<String> {
        config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()])
    };
    let command = |config: &ImageConfig, c: &ShellOrExec| match c {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => {
            let mut argv = shell(config);
            argv.push(s.clone());
            argv
        }
    };
    // An import has no base: a CMD in the config came from an earlier
    // --change, and a later ENTRYPOINT keeps it (docker applies the
    // changes as one Dockerfile).
    let mut cmd_set = config.config.as_ref().is_some_and(|c| c.cmd.is_some());
    let mut changes = Vec::new();
    match &ins.kind {
        InstructionKind::Env(kvs) => {
            // Applied pair by pair, as the builder's ENV is.
            for kv in kvs {
                let c = ConfigChange::Env(
                    expand(config, &kv.key.value)?,
                    expand(config, &kv.value.value)?,
                );
                c.apply(config, &mut cmd_set).map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        InstructionKind::Label(kvs) => {
            for kv in kvs {
                changes.push(ConfigChange::Label(
                    expand(config, &kv.key.value)?,
                    expand(config, &kv.value.value)?,
                ));
            }
        }
        InstructionKind::Expose(ports) => {
            let mut all = Vec::new();
            for p in ports {
                all.extend(expand_ports(&expand(config, &p.value)?).map_err(|e| e.to_string())?);
            }
            changes.push(ConfigChange::Expose(all));
        }
        InstructionKind::Volume(vols) => {
            for v in vols {
                changes.push(ConfigChange::Volume(expand(config, &v.value)?));
            }
        }
        InstructionKind::User(u) => changes.push(ConfigChange::User(expand(config, &u.value)?)),
        InstructionKind::Workdir(w) => {
            changes.push(ConfigChange::Workdir(expand(config, &w.value)?))
        }
        InstructionKind::StopSignal(s) => {
            changes.push(ConfigChange::StopSignal(expand(config, &s.value)?))
        }
        InstructionKind::Cmd(c) => changes.push(ConfigChange::Cmd(command(config, c))),
        InstructionKind::Entrypoint(c) => {
            changes.push(ConfigChange::Entrypoint(command(config, c)))
        }
        InstructionKind::Healthcheck(h) => changes.push(ConfigChange::Healthcheck(healthcheck(h))),
        InstructionKind::Onbuild(o) => changes.push(ConfigChange::Onbuild(o.expression.clone())),
        _ => return Err(format!("{keyword} cannot be changed on import")),
    }
    for c in &changes {
        c.apply(config, &mut cmd_set).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A Dockerfile HEALTHCHECK as the config stores it.
pub(crate) fn healthcheck(h: &strata_dockerfile::Healthcheck) -> strata_oci::Healthcheck {
    match h {
        strata_dockerfile::Healthcheck::None => strata_oci::Healthcheck {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        },
        strata_dockerfile::Healthcheck::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match test {
                ShellOrExec::Exec(v) => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(v.iter().cloned());
                    t
                }
                ShellOrExec::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
            };
            let ns = |d: &Option<Duration>| d.map(|d| d.as_nanos() as i64);
            strata_oci::Healthcheck {
                test: Some(test),
                interval: ns(interval),
                timeout: ns(timeout),
                start_period: ns(start_period),
                start_interval: ns(start_interval),
                retries: retries.map(i64::from),
                ..Default::default()
            }
        }
    }
}

/// `EXPOSE` values: `80`, `80/udp`, `8000-8002/tcp` -> `80/tcp`...
pub(crate) fn expand_ports(v: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for word in v.split_whitespace() {
        let (ports, proto) = match word.split_once('/') {
            Some((p, proto)) => (p, proto.to_ascii_lowercase()),
            None => (word, "tcp".to_owned()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(Error::invalid(format!("invalid proto: {proto}")));
        }
        let bad = || Error::invalid(format!("invalid containerPort: {ports}"));
        let (lo, hi) = match ports.split_once('-') {
            Some((a, b)) => (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let p = ports.parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        if hi < lo {
            return Err(bad());
        }
        for p in lo..=hi {
            out.push(format!("{p}/{proto}"));
        }
    }
    Ok(out)
}

/// A signal name or number STOPSIGNAL accepts.
pub(crate) fn check_signal(s: &str) -> Result<()> {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
        "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP",
        "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    if let Ok(n) = s.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(());
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        return Ok(());
    }
    Err(Error::invalid(format!("invalid signal: {s}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn changes_as_docker_import_applies_them() {
        let mut c = ImageConfig::default();
        for ch in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init --verbose",
            r#"ENV A=1 B="two words""#,
            "ENV C three words",
            "ENV A=replaced D=$B",
            "EXPOSE 80 53/udp 8000-8001",
            r#"LABEL org.x="y z" k=v"#,
            "USER app",
            "WORKDIR /srv",
            "WORKDIR www",
            "VOLUME /data /cache",
            r#"VOLUME ["/json"]"#,
            "STOPSIGNAL SIGQUIT",
            "HEALTHCHECK --interval=5s CMD true",
            "onbuild RUN make",
        ] {
            apply_change(&mut c, ch).unwrap_or_else(|e| panic!("{ch}: {e}"));
        }
        let cc = c.config.clone().unwrap();
        assert_eq!(cc.cmd.as_deref().unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(
            cc.entrypoint.as_deref().unwrap(),
            ["/bin/sh", "-c", "/init --verbose"]
        );
        assert_eq!(
            cc.env.as_deref().unwrap(),
            ["A=replaced", "B=two words", "C=three words", "D=two words"]
        );
        let ports = cc.exposed_ports.as_ref().unwrap();
        for p in ["80/tcp", "53/udp", "8000/tcp", "8001/tcp"] {
            assert!(ports.contains_key(p), "{p}");
        }
        assert_eq!(cc.labels.as_ref().unwrap()["org.x"], "y z");
        assert_eq!(cc.user.as_deref(), Some("app"));
        assert_eq!(cc.working_dir.as_deref(), Some("/srv/www"));
        assert_eq!(cc.volumes.as_ref().unwrap().len(), 3);
        assert_eq!(cc.stop_signal.as_deref(), Some("SIGQUIT"));
        let hc = cc.healthcheck.as_ref().unwrap();
        assert_eq!(hc.test.as_deref().unwrap(), ["CMD-SHELL", "true"]);
        assert_eq!(hc.interval, Some(5_000_000_000));
        assert_eq!(cc.on_build.as_deref().unwrap(), ["RUN make"]);

        // ENTRYPOINT keeps a CMD given before it, resets none otherwise.
        let mut c = ImageConfig::default();
        apply_change(&mut c, "CMD x").unwrap();
        apply_change(&mut c, "ENTRYPOINT [\"e\"]").unwrap();
        assert!(c.config.as_ref().unwrap().cmd.is_some());

        for (bad, want) in [
            ("RUN echo", "RUN cannot be changed"),
            ("FROM x", "one instruction"),
            ("SHELL [\"sh\"]", "SHELL cannot be changed"),
            ("EXPOSE abc", "invalid containerPort"),
            ("ENV", "ENV"),
            ("LABEL =x", "LABEL"),
            ("STOPSIGNAL SIGNOPE", "invalid signal"),
            ("USER a\nUSER b", "one instruction"),
            ("", "no instruction"),
        ] {
            let e = match apply_change(&mut c, bad) {
                Ok(()) => panic!("{bad:?} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        // A change that fails half-way leaves the config as it was.
        let before = c.clone();
        assert!(apply_change(&mut c, "ENV Z=1 Y=${UNSET:?boom}").is_err());
        assert_eq!(c, before);
    }

    #[test]
    fn ports() {
        assert_eq!(expand_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(
            expand_ports("53/UDP 8000-8001").unwrap(),
            ["53/udp", "8000/tcp", "8001/tcp"]
        );
        assert!(expand_ports("http").is_err());
        assert!(expand_ports("80/xyz").is_err());
    }

    #[test]
    fn signals() {
        assert!(check_signal("SIGTERM").is_ok());
        assert!(check_signal("kill").is_ok());
        assert!(check_signal("9").is_ok());
        assert!(check_signal("SIGNOPE").is_err());
        assert!(check_signal("0").is_err());
    }
}
