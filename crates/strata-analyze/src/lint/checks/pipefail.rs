//! SL008 a pipe in a shell-form RUN whose shell does not run with
//! `pipefail` (practice 4: `curl URL | tar -x` must fail when the download
//! does).
//!
//! The shell is the stage's `SHELL` (inherited from the stage it is built
//! `FROM`, if any; `/bin/sh -c` by default). No finding when that shell
//! already has `-o pipefail`, when it is one without the option (cmd,
//! PowerShell, fish, csh, dash...), for exec-form RUNs (no shell), or when
//! the RUN itself turns pipefail on (`set -o pipefail`, `bash -o pipefail
//! -c ...`).

use strata_dockerfile::{InstructionKind, ShellOrExec};

use super::super::rules::*;
use strata_dockerfile::shell::Lexer;

use super::super::shell::{parse_script, Command, Logical, Sep};
use super::super::{Finding, Model};
use super::show;

/// What a stage's shell does with pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeShell {
    /// `/bin/sh -c` (not set): a POSIX shell, pipefail off.
    Default,
    /// A shell that has the option, without it (`SHELL ["/bin/bash", "-c"]`).
    WithoutOption,
    /// A shell running with `-o pipefail`.
    Pipefail,
    /// A shell that has no pipefail option at all.
    NoSuchOption,
}

/// Shells with no `pipefail` option (Windows shells, fish, csh, Debian's
/// dash).
const NO_PIPEFAIL: &[&str] = &[
    "cmd",
    "powershell",
    "pwsh",
    "fish",
    "csh",
    "tcsh",
    "nu",
    "dash",
    "elvish",
    "xonsh",
];

/// Whether `args` turn pipefail on: `-o pipefail`, also in a cluster
/// (`-eo pipefail`, `-euxo pipefail`).
pub(crate) fn sets_pipefail<'a>(args: impl IntoIterator<Item = &'a str>) -> bool {
    let mut prev: Option<&str> = None;
    for a in args {
        if a == "pipefail"
            && prev.is_some_and(|p| p.starts_with('-') && !p.starts_with("--") && p.ends_with('o'))
        {
            return true;
        }
        prev = Some(a);
    }
    false
}

/// Classifies a `SHELL` instruction's argument vector.
pub(crate) fn classify(argv: &[String]) -> PipeShell {
    let prog = argv
        .first()
        .map(|p| {
            let base = p.rsplit(['/', '\\']).next().unwrap_or(p);
            let base = base.to_ascii_lowercase();
            base.strip_suffix(".exe").unwrap_or(&base).to_string()
        })
        .unwrap_or_default();
    if NO_PIPEFAIL.contains(&prog.as_str()) {
        PipeShell::NoSuchOption
    } else if sets_pipefail(argv.iter().map(String::as_str)) {
        PipeShell::Pipefail
    } else {
        PipeShell::WithoutOption
    }
}

/// Whether the RUN's own commands turn pipefail on for `piped`: a `set -o
/// pipefail` before it, or a shell started with the option whose script
/// holds it (`bash -o pipefail -c 'a | b'`; not `a | bash -o pipefail`).
fn covered(cmds: &[Command], piped: &Command) -> bool {
    cmds.iter().any(|c| {
        let p = c.program();
        if !sets_pipefail(c.args().iter().map(|w| w.text.as_str())) {
            return false;
        }
        if p == "set" {
            c.start <= piped.start
        } else if matches!(p.as_str(), "bash" | "sh" | "ash" | "zsh" | "ksh" | "mksh") {
            c.start < piped.start && piped.end <= c.end
        } else {
            false
        }
    })
}

/// The scripts of the command substitutions (`$(...)`, backquotes) in a
/// word, outermost first (arithmetic `$((...))` is not one).
fn substitutions(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'(') && b.get(i + 2) != Some(&b'(') {
            let mut depth = 0usize;
            let mut quote: Option<u8> = None;
            let mut j = i + 1;
            while j < b.len() {
                match (quote, b[j]) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'\'') | (None, b'"') => quote = Some(b[j]),
                    (None, b'(') => depth += 1,
                    (None, b')') => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let inner = &text[i + 2..j.min(b.len())];
            out.push(inner.to_string());
            out.extend(substitutions(inner));
            i = j + 1;
        } else if b[i] == b'`' {
            let end = text[i + 1..]
                .find('`')
                .map(|k| i + 1 + k)
                .unwrap_or(b.len());
            out.push(text[i + 1..end].to_string());
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether a command has a pipe inside a command substitution
/// (`arch="$(dpkg --print-architecture | awk ...)"`).
fn piped_substitution(c: &Command, lexer: &Lexer) -> bool {
    c.words
        .iter()
        .map(|w| w.text.as_str())
        .chain(c.assigns.iter().map(String::as_str))
        .flat_map(substitutions)
        .any(|script| {
            let lg = Logical {
                map: vec![0; script.len()],
                text: script,
            };
            parse_script(&lg, lexer, &[])
                .iter()
                .any(|c| c.sep == Sep::Pipe)
        })
}

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    let lexer = Lexer::new(m.df.escape);
    let mut final_shell: Vec<PipeShell> = Vec::with_capacity(m.stages.len());
    for st in &m.stages {
        let mut shell = st
            .parent
            .and_then(|p| final_shell.get(p).copied())
            .unwrap_or(PipeShell::Default);
        // The image the stages are built on, for the fix (alpine has ash,
        // not bash).
        let mut root = st;
        let mut guard = 0;
        while let (Some(p), true) = (root.parent, guard < m.stages.len()) {
            root = &m.stages[p];
            guard += 1;
        }
        let busybox = {
            let b = root.base.to_ascii_lowercase();
            b.contains("alpine") || b.contains("busybox")
        };
        for ins in &st.insts {
            let run = match &ins.inst.kind {
                InstructionKind::Shell(argv) => {
                    shell = classify(argv);
                    continue;
                }
                InstructionKind::Run(r) => r,
                _ => continue,
            };
            if matches!(run.cmd, ShellOrExec::Exec(_))
                || matches!(shell, PipeShell::Pipefail | PipeShell::NoSuchOption)
            {
                continue;
            }
            let cmds = &ins.cmds;
            let piped = cmds
                .iter()
                .position(|c| c.sep == Sep::Pipe && !covered(cmds, c));
            let (left, right) = match piped {
                Some(k) => (&cmds[k], cmds.get(k + 1)),
                None => match cmds
                    .iter()
                    .find(|c| piped_substitution(c, &lexer) && !covered(cmds, c))
                {
                    Some(c) => (c, None),
                    None => continue,
                },
            };
            let end = right.map(|r| r.end).unwrap_or(left.end).max(left.end);
            let message = match right {
                Some(r) => format!(
                    "{} pipes into {}: without pipefail the RUN succeeds when `{}` fails, since only `{}`'s status counts",
                    show(left),
                    show(r),
                    left.program(),
                    r.program()
                ),
                None => format!(
                    "{} runs a pipe in a command substitution: without pipefail a failure before its last command is hidden",
                    show(left)
                ),
            };
            let mut f = m.finding(
                &PIPE_WITHOUT_PIPEFAIL,
                left.start,
                end,
                Some(ins.node()),
                message,
            );
            let (sh, path) = if busybox {
                ("ash", "/bin/ash")
            } else {
                ("bash", "/bin/bash")
            };
            f.fix.description = match shell {
                PipeShell::WithoutOption => {
                    "add `-o pipefail` to the SHELL, e.g. `SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]`".to_string()
                }
                _ => format!(
                    "put `SHELL [\"{path}\", \"-o\", \"pipefail\", \"-c\"]` before this RUN ({sh} has pipefail; Debian's /bin/sh, dash, does not), or begin the RUN with `set -o pipefail &&` where /bin/sh supports it"
                ),
            };
            out.push(f);
        }
        final_shell.push(shell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_command_substitutions() {
        assert_eq!(
            substitutions("a=\"$(dpkg --print-architecture | awk -F- '{ print $NF }')\""),
            ["dpkg --print-architecture | awk -F- '{ print $NF }'"]
        );
        assert_eq!(substitutions("$(a $(b | c))"), ["a $(b | c)", "b | c"]);
        assert_eq!(
            substitutions("x`uname -m | tr a b`y"),
            ["uname -m | tr a b"]
        );
        assert!(substitutions("$((1 + 2)) ${x} plain").is_empty());
    }

    #[test]
    fn reads_shells_and_options() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], PipeShell)] = &[
            (&["/bin/bash", "-o", "pipefail", "-c"], PipeShell::Pipefail),
            (&["/bin/ash", "-eo", "pipefail", "-c"], PipeShell::Pipefail),
            (&["bash", "-euxo", "pipefail", "-c"], PipeShell::Pipefail),
            (&["/bin/bash", "-c"], PipeShell::WithoutOption),
            (&["/bin/sh", "-c"], PipeShell::WithoutOption),
            (&["bash", "+o", "pipefail", "-c"], PipeShell::WithoutOption),
            (&["bash", "--posix", "pipefail"], PipeShell::WithoutOption),
            (&["pwsh", "-Command"], PipeShell::NoSuchOption),
            (
                &["powershell.exe", "-NoProfile", "-Command"],
                PipeShell::NoSuchOption,
            ),
            (&["cmd", "/S", "/C"], PipeShell::NoSuchOption),
            (&["C:\\Windows\\cmd.exe", "/C"], PipeShell::NoSuchOption),
            (&["/usr/bin/fish", "-c"], PipeShell::NoSuchOption),
            (&["/bin/dash", "-c"], PipeShell::NoSuchOption),
        ];
        for (argv, want) in cases {
            assert_eq!(classify(&v(argv)), *want, "{argv:?}");
        }
    }
}
