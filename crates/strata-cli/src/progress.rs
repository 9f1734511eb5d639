//! Rendering build events: a live view on a terminal, plain lines when
//! piped (one per event, prefixed with the step so parallel stages stay
//! readable), or one JSON object a line.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_build::{Event, Explanation, StepId};

use crate::render::human_bytes;

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing (`-q`).
    Quiet,
    /// Plain lines on standard error.
    Plain,
    /// A live view on standard error.
    Tty,
    /// JSON lines on standard output.
    Json,
}

struct Step {
    label: String,
    text: String,
    bar: Option<ProgressBar>,
    cached: bool,
}

/// Receives build events from any thread and renders them.
pub struct BuildProgress {
    mode: Mode,
    explain: bool,
    /// Colours in the live view (a terminal, and `NO_COLOR` unset).
    color: bool,
    multi: Option<MultiProgress>,
    steps: Mutex<HashMap<StepId, Step>>,
}

fn one_line(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    let mut out: String = first.chars().take(max).collect();
    if first.chars().count() > max || s.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

impl BuildProgress {
    /// A renderer; `explain` shows the reason for every step, not only misses.
    pub fn new(mode: Mode, explain: bool) -> BuildProgress {
        let multi = (mode == Mode::Tty).then(|| {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            m.set_move_cursor(true);
            m
        });
        BuildProgress {
            mode,
            explain,
            color: mode == Mode::Tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            multi,
            steps: Mutex::new(HashMap::new()),
        }
    }

    /// A line that stays: on a terminal the live bars are taken down, the
    /// line written (ending in a newline) and the bars drawn again below it.
    fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => m.suspend(|| {
                let _ = writeln!(std::io::stderr(), "{line}");
            }),
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    /// Handle one event.
    pub fn event(&self, event: Event) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                if let Ok(s) = serde_json::to_string(&event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{s}");
                    let _ = out.flush();
                }
            }
            Mode::Plain | Mode::Tty => self.human(event),
        }
    }

    fn human(&self, event: Event) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Platform { platform, n, of } => {
                self.println(&format!("building for {platform} ({n} of {of})"));
            }
            Event::Plan {
                stages, steps: n, ..
            } => {
                if stages.len() > 1 {
                    self.println(&format!(
                        "building {} stages ({}), {n} steps",
                        stages.len(),
                        stages.join(", ")
                    ));
                }
            }
            Event::StepStarted {
                id, label, text, ..
            } => {
                let text = one_line(&text, 100);
                let bar = self.multi.as_ref().map(|m| {
                    let b = m.add(ProgressBar::new_spinner());
                    let template = if self.color {
                        "{spinner:.cyan} {prefix:.bold} {msg} {elapsed:.dim}"
                    } else {
                        "{spinner} {prefix} {msg} {elapsed}"
                    };
                    b.set_style(
                        ProgressStyle::with_template(template)
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(label.clone());
                    b.set_message(text.clone());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                if bar.is_none() {
                    self.println(&format!("{label} {text}"));
                }
                steps.insert(
                    id,
                    Step {
                        label,
                        text,
                        bar,
                        cached: false,
                    },
                );
            }
            Event::StepCached { id, explanation } => {
                if let Some(s) = steps.get_mut(&id) {
                    s.cached = true;
                    if self.explain || s.bar.is_none() {
                        let why = if self.explain {
                            format!(": {explanation}")
                        } else {
                            String::new()
                        };
                        if s.bar.is_none() {
                            self.println(&format!("{} CACHED{why}", s.label));
                        } else if self.explain {
                            self.println(&format!("  {} cached{why}", s.label));
                        }
                    }
                }
            }
            Event::StepMiss { id, explanation } => {
                if let Some(s) = steps.get(&id) {
                    let line = match explanation {
                        Explanation::FirstBuild if !self.explain => None,
                        e => Some(format!("{} rebuilding: {e}", s.label)),
                    };
                    if let Some(l) = line {
                        self.println(&l);
                    }
                }
            }
            Event::Output { id, line, .. } => {
                if let Some(s) = steps.get(&id) {
                    match &s.bar {
                        Some(b) => b.set_message(format!("{} | {}", s.text, one_line(&line, 80))),
                        None => self.println(&format!("{} | {line}", s.label)),
                    }
                }
            }
            Event::Transfer {
                id,
                what,
                bytes,
                total,
            } => {
                if let Some(s) = steps.get(&id) {
                    let t = total
                        .map(|t| format!(" / {}", human_bytes(t)))
                        .unwrap_or_default();
                    match &s.bar {
                        Some(b) => b.set_message(format!("{} {}{t}", s.text, human_bytes(bytes))),
                        None => {
                            self.println(&format!("{} {what}: {}{t}", s.label, human_bytes(bytes)))
                        }
                    }
                }
            }
            Event::StepDone {
                id,
                cached,
                duration,
                layer,
            } => {
                if let Some(s) = steps.remove(&id) {
                    let size = layer
                        .as_ref()
                        .map(|(_, n)| format!(" layer {}", human_bytes(*n)))
                        .unwrap_or_default();
                    let status = if s.cached {
                        "CACHED".to_owned()
                    } else if cached {
                        // Config-only step.
                        String::new()
                    } else {
                        format!("DONE {:.1}s{size}", duration.as_secs_f64())
                    };
                    match s.bar {
                        Some(b) => {
                            b.finish_and_clear();
                            let mark = if s.cached { "=" } else { "✔" };
                            self.println(
                                format!("{mark} {} {} {status}", s.label, s.text).trim_end(),
                            );
                        }
                        None => {
                            if !s.cached && !status.is_empty() {
                                self.println(&format!("{} {status}", s.label));
                            }
                        }
                    }
                }
            }
            Event::CacheExported {
                cache,
                entries,
                present,
                blobs_sent,
                bytes_sent,
            } => {
                self.println(&format!(
                    "exported the build cache to {cache}: {entries} entries written, {present} already there, {blobs_sent} layers sent ({})",
                    human_bytes(bytes_sent)
                ));
            }
            Event::Warning { message, line } => {
                let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
                self.println(&format!("warning: {message}{at}"));
            }
            Event::Done {
                id,
                ran,
                cached,
                duration,
                ..
            } => {
                self.println(&format!(
                    "built {} in {:.1}s: {ran} step(s) ran, {cached} cached",
                    id,
                    duration.as_secs_f64()
                ));
            }
            Event::StepKey { .. } => {}
        }
    }

    /// Clears any live bars (after an error).
    pub fn clear(&self) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        for (_, s) in steps.drain() {
            if let Some(b) = s.bar {
                b.abandon();
            }
        }
    }
}
