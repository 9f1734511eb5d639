//! Instructions that only change the image config (ENV, LABEL, CMD...),
//! the step dispatcher, and their helpers.

use super::*;
use crate::config_change::{expand_ports, healthcheck, ConfigChange};

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
                    ConfigChange::Env(k.clone(), v.clone())
                        .apply(&mut st.config, &mut st.cmd_set)?;
                    text.push_str(&format!(" {k}={v}"));
                }
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Label(pairs) => {
                let mut text = String::from("LABEL");
                for kv in pairs {
                    let (k, v) = self.expand_kv(st, kv)?;
                    ConfigChange::Label(k.clone(), v.clone())
                        .apply(&mut st.config, &mut st.cmd_set)?;
                    text.push_str(&format!(" {k}={v}"));
                }
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Maintainer(m) => {
                let v = self.expand(st, &m.value)?;
                ConfigChange::Maintainer(v.clone()).apply(&mut st.config, &mut st.cmd_set)?;
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
                    let ports = expand_ports(&v)?;
                    ConfigChange::Expose(ports.clone()).apply(&mut st.config, &mut st.cmd_set)?;
                    list.extend(ports);
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
                    ConfigChange::Volume(v.clone()).apply(&mut st.config, &mut st.cmd_set)?;
                    list.push(v);
                }
                let text = format!("VOLUME [{}]", list.join(" "));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::User(u) => {
                let v = self.expand(st, &u.value)?;
                ConfigChange::User(v.clone()).apply(&mut st.config, &mut st.cmd_set)?;
                meta(self, st, format!("USER {v}"), Some(format!("USER {v}")))
            }
            InstructionKind::Cmd(c) => {
                let args = self.command_args(st, c);
                ConfigChange::Cmd(args.clone()).apply(&mut st.config, &mut st.cmd_set)?;
                let text = format!("CMD {}", go_list(&args));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Entrypoint(c) => {
                let args = self.command_args(st, c);
                ConfigChange::Entrypoint(args.clone()).apply(&mut st.config, &mut st.cmd_set)?;
                let text = format!("ENTRYPOINT {}", go_list(&args));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Shell(sh) => {
                ConfigChange::Shell(sh.clone()).apply(&mut st.config, &mut st.cmd_set)?;
                let text = format!("SHELL [{}]", sh.join(" "));
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::StopSignal(s) => {
                let v = self.expand(st, &s.value)?;
                ConfigChange::StopSignal(v.clone()).apply(&mut st.config, &mut st.cmd_set)?;
                meta(
                    self,
                    st,
                    format!("STOPSIGNAL {v}"),
                    Some(format!("STOPSIGNAL {v}")),
                )
            }
            InstructionKind::Healthcheck(h) => {
                let hc = healthcheck(h);
                let text = format!(
                    "HEALTHCHECK {}",
                    go_list(hc.test.as_deref().unwrap_or_default())
                );
                ConfigChange::Healthcheck(hc).apply(&mut st.config, &mut st.cmd_set)?;
                meta(self, st, text.clone(), Some(text))
            }
            InstructionKind::Onbuild(o) => {
                ConfigChange::Onbuild(o.expression.clone())
                    .apply(&mut st.config, &mut st.cmd_set)?;
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
        (self.sink)(Event::StepKey {
            id,
            key: st.key.clone(),
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lists() {
        assert_eq!(
            go_list(&["sh".into(), "-c".into(), "a \"b\"".into()]),
            r#"["sh" "-c" "a \"b\""]"#
        );
    }
}
