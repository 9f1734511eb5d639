//! Instructions that only change the image config (ENV, LABEL, CMD...),
//! the step dispatcher, and their helpers.

use super::*;

impl Shared<'_> {
    pub(super) fn expand(&self, st: &StageState, word: &str) -> Result<String> {
        Ok(Lexer::new(self.escape)
            .process_word(word, &st.expand_env())?
            .value)
    }

    /// One instruction.
    pub(super) fn step(
        &self,
        st: &mut StageState,
        id: StepId,
        n: usize,
        ins: &Instruction,
        line: usize,
    ) -> Result<()> {
        let t = Instant::now();
        let label = st.step_label(n);
        let nth = st.seen.entry(ins.original.clone()).or_insert(0);
        *nth += 1;
        st.current = Some((ins.original.clone(), *nth));
        (self.sink)(Event::StepStarted {
            id,
            label: label.clone(),
            text: ins.original.clone(),
            line,
        });
        let epoch = self.epoch();
        let meta = |s: &Shared<'_>,
                    st: &mut StageState,
                    text: String,
                    history: Option<String>|
         -> Result<()> {
            s.meta_step(st, id, &label, text, t)?;
            if let Some(h) = history {
                st.push_history(h, true, epoch, line);
            }
            Ok(())
        };
        match &ins.kind {
            InstructionKind::Env(pairs) => {
                let mut text = String::from("ENV");
                for kv in pairs {
                    let (k, v) = self.expand_kv(st, kv)?;
                    st.set_env(&k, &v);
                    text.push_str(&format!(" {k}={v}"));
                }
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Label(pairs) => {
                let mut text = String::from("LABEL");
                for kv in pairs {
                    let (k, v) = self.expand_kv(st, kv)?;
                    st.cfg()
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k.clone(), v.clone());
                    text.push_str(&format!(" {k}={v}"));
                }
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Maintainer(m) => {
                let v = self.expand(st, &m.value)?;
                st.config.author = Some(v.clone());
                meta(
                    self,
                    st,
                    format!("MAINTAINER {v}"),
                    Some(format!("MAINTAINER {v}")),
                )
            }
            InstructionKind::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    let v = self.expand(st, &p.value)?;
                    for port in expand_ports(&v)? {
                        st.cfg()
                            .exposed_ports
                            .get_or_insert_with(BTreeMap::new)
                            .insert(port.clone(), serde_json::json!({}));
                        list.push(port);
                    }
                }
                let text = format!("EXPOSE {}", list.join(" "));
                meta(
                    self,
                    st,
                    text.clone(),
                    Some(format!(
                        "EXPOSE map[{}]",
                        list.iter()
                            .map(|p| format!("{p}:{{}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )),
                )
            }
            InstructionKind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(st, &v.value)?;
                    if v.is_empty() {
                        return Err(Error::invalid(
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    st.cfg()
                        .volumes
                        .get_or_insert_with(BTreeMap::new)
                        .insert(v.clone(), serde_json::json!({}));
                    list.push(v);
                }
                let text = format!("VOLUME [{}]", list.join(" "));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::User(u) => {
                let v = self.expand(st, &u.value)?;
                st.cfg().user = Some(v.clone());
                meta(self, st, format!("USER {v}"), Some(format!("USER {v}")))
            }
            InstructionKind::Cmd(c) => {
                let args = self.command_args(st, c);
                st.cfg().cmd = Some(args.clone());
                st.cfg().args_escaped = Some(true);
                st.cmd_set = true;
                let text = format!("CMD {}", go_list(&args));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Entrypoint(c) => {
                let args = self.command_args(st, c);
                st.cfg().entrypoint = Some(args.clone());
                if !st.cmd_set {
                    // A new ENTRYPOINT resets the CMD inherited from the base.
                    st.cfg().cmd = None;
                }
                let text = format!("ENTRYPOINT {}", go_list(&args));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Shell(sh) => {
                st.cfg().shell = Some(sh.clone());
                let text = format!("SHELL [{}]", sh.join(" "));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::StopSignal(s) => {
                let v = self.expand(st, &s.value)?;
                check_signal(&v)?;
                st.cfg().stop_signal = Some(v.clone());
                meta(
                    self,
                    st,
                    format!("STOPSIGNAL {v}"),
                    Some(format!("STOPSIGNAL {v}")),
                )
            }
            InstructionKind::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => strata_oci::Healthcheck {
                        test: Some(vec!["NONE".to_owned()]),
                        ..Default::default()
                    },
                    Healthcheck::Cmd {
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
                };
                let text = format!(
                    "HEALTHCHECK {}",
                    go_list(hc.test.as_deref().unwrap_or_default())
                );
                st.cfg().healthcheck = Some(hc);
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Onbuild(o) => {
                st.cfg()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.expression.clone());
                meta(self, st, format!("ONBUILD {}", o.expression), None)
            }
            InstructionKind::Arg(defs) => {
                let mut parts = Vec::new();
                let names: Vec<&str> = defs.iter().map(|d| d.name.value.as_str()).collect();
                let mut inputs =
                    Inputs::new(tag::META, &st.key, format!("ARG {}", names.join(" ")));
                for d in defs {
                    let name = d.name.value.clone();
                    let value = match self.opts.build_args.get(&name) {
                        Some(v) => Some(v.clone()),
                        None => match &d.default {
                            Some(def) => Some(self.expand(st, &def.value)?),
                            None => self.plan.global_args.get(&name).cloned(),
                        },
                    };
                    parts.push(match &value {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                    // Values go in as build args, so a changed value is
                    // explained as such.
                    inputs.args.insert(
                        name.clone(),
                        value.clone().unwrap_or_else(|| "<unset>".into()),
                    );
                    st.args.retain(|(k, _)| k != &name);
                    st.args.push((name, value));
                }
                let text = format!("ARG {}", parts.join(" "));
                self.meta_inputs_step(st, id, &label, inputs, t)?;
                st.push_history(text, true, epoch, line);
                Ok(())
            }
            InstructionKind::Workdir(w) => self.workdir(st, id, &label, w, t, line),
            InstructionKind::Run(r) => self.run(st, id, &label, ins, r, t, line),
            InstructionKind::Copy(c) => self.copy(st, id, &label, ins, c, false, t, line),
            InstructionKind::Add(c) => self.copy(st, id, &label, ins, c, true, t, line),
        }
    }

    pub(super) fn expand_kv(&self, st: &StageState, kv: &KeyValue) -> Result<(String, String)> {
        let k = self.expand(st, &kv.key.value)?;
        let v = self.expand(st, &kv.value.value)?;
        Ok((k, v))
    }

    pub(super) fn command_args(&self, st: &StageState, c: &ShellOrExec) -> Vec<String> {
        match c {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut sh = st.shell();
                sh.push(s.clone());
                sh
            }
        }
    }

    /// A config-only step: chained into the key, recorded for explain.
    pub(super) fn meta_step(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        text: String,
        t: Instant,
    ) -> Result<()> {
        let inputs = Inputs::new(tag::META, &st.key, text);
        self.meta_inputs_step(st, id, label, inputs, t)
    }

    /// A config-only step with its inputs already made.
    pub(super) fn meta_inputs_step(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        inputs: Inputs,
        t: Instant,
    ) -> Result<()> {
        self.track_change(st, id, label, &inputs);
        self.record(st, id, &inputs);
        st.key = inputs.key();
        (self.sink)(Event::StepDone {
            id,
            cached: true,
            duration: t.elapsed(),
            layer: None,
        });
        Ok(())
    }
}

/// An ONBUILD trigger as an instruction.
pub(super) fn parse_trigger(trigger: &str) -> Result<Instruction> {
    let df =
        strata_dockerfile::parse_named("ONBUILD trigger", &format!("FROM scratch\n{trigger}\n"))?;
    let stages = df.stages()?;
    let ins = stages
        .stages
        .first()
        .and_then(|s| s.instructions.first())
        .cloned()
        .ok_or_else(|| {
            Error::invalid(format!("ONBUILD trigger {trigger:?} is not an instruction"))
        })?;
    if matches!(
        ins.kind,
        InstructionKind::Onbuild(_) | InstructionKind::Maintainer(_)
    ) {
        return Err(Error::invalid(format!(
            "{trigger:?} isn't allowed as an ONBUILD trigger"
        )));
    }
    Ok(ins)
}

/// Go's `%q` of a string slice: `["sh" "-c" "x"]`.
pub(super) fn go_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| strata_dockerfile::go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

/// `EXPOSE` values: `80`, `80/udp`, `8000-8002/tcp` -> `80/tcp`...
pub(super) fn expand_ports(v: &str) -> Result<Vec<String>> {
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
pub(super) fn check_signal(s: &str) -> Result<()> {
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
    use super::*;

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
    #[test]
    fn go_lists() {
        assert_eq!(
            go_list(&["sh".into(), "-c".into(), "a \"b\"".into()]),
            r#"["sh" "-c" "a \"b\""]"#
        );
    }
}
