//! One module per group of subcommands; `main` resolves settings once and
//! dispatches.

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue};
use clap::Parser;

use crate::cli::{
    CacheCommand, Cli, Command, ContainerCommand, ContextCommand, ImageCommand, ManifestCommand,
    StoreCommand, SystemCommand,
};
use crate::render;
use crate::settings::Settings;

/// `println!` for command output: to the locked standard output, with the
/// error returned (`?`) instead of a panic, so a closed pipe
/// (`strata images | head -1`) ends the command quietly in `main`.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?;
    }};
}

/// `print!` for command output; see `outln!`.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*)?;
    }};
}

mod analyze;
mod build;
mod cache;
mod container;
mod context;
mod image;
mod lint;
mod manifest;
mod parse;
mod registry;
mod run;
mod signals;
mod supervise;
mod supply;
mod system;

/// What a command returns: its exit code (0 unless it has its own, like
/// `run`, `lint` or `analyze --ci`), or an error (exit code 1, or 2 for a
/// usage error: see [`render::usage`]).
pub type CmdResult = anyhow::Result<ExitCode>;

pub fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2; an unknown command
    // gets a suggestion only when it is a small typo of a harmless one.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidSubcommand => {
            eprint!("{}", unknown_command(&e));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    // Rootless: everything that touches the store or runs containers does
    // it in a user namespace of its own (still one thread here, as
    // `rootless::enter` needs).
    if strata_sandbox::rootless::needed() && needs_user_namespace(&cli.command) {
        let joined = match supervisor_to_join(&cli) {
            Some(pid) => strata_sandbox::rootless::join(pid),
            None => Ok(false),
        };
        let entered = match joined {
            Ok(true) => Ok(None),
            Ok(false) => strata_sandbox::rootless::enter(),
            Err(e) => Err(e),
        };
        match entered {
            Ok(Some(code)) => return ExitCode::from(code),
            Ok(None) => {}
            Err(e) => {
                let err = anyhow::Error::new(e).context("cannot run rootless");
                eprint!("{}", render::error_report(&err));
                return ExitCode::from(1);
            }
        }
    }
    let settings = Settings::resolve(&cli.global);
    init_logging(&settings);
    match dispatch(cli.command, &settings) {
        Ok(code) => code,
        // The reader went away (`strata images | head -1`): nothing to say.
        Err(err) if render::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", render::error_report(&err));
            // With only the user's own id mapped, a chown (a RUN step's,
            // or a base layer's owners) fails: say how to get more ids.
            if let Some(hint) = strata_sandbox::rootless::current().and_then(|r| r.hint()) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(render::exit_code(&err))
        }
    }
}

/// Rootless: the container supervisor whose user namespace a container
/// command joins ([`strata_sandbox::rootless::join`]) to reach its
/// container: that of the first named container that runs, else that of
/// any running container, so that a user's containers share one user
/// namespace while any of them runs (`stop a b` reaches both).
fn supervisor_to_join(cli: &Cli) -> Option<i32> {
    let names: &[String] = match &cli.command {
        Command::Exec(a) => std::slice::from_ref(&a.container),
        Command::Stop(a) => &a.containers,
        Command::Kill(a) => &a.containers,
        Command::Rm(a) => &a.containers,
        Command::Run(_) | Command::Container(_) => &[],
        _ => return None,
    };
    let root = Settings::resolve(&cli.global).root;
    let running = |f: &container::Found| {
        let pid = f.state().supervisor;
        (pid > 0 && f.dir.supervised()).then_some(pid)
    };
    names
        .iter()
        .filter_map(|n| container::find(&root, n).ok())
        .find_map(|f| running(&f))
        .or_else(|| container::list(&root).ok()?.iter().find_map(running))
}

/// Commands that neither read the store nor run anything stay outside the
/// user namespace (they work without subordinate ids or `newuidmap`).
fn needs_user_namespace(command: &Command) -> bool {
    !matches!(
        command,
        Command::Parse(_)
            | Command::Context(_)
            | Command::Lint(_)
            | Command::Version
            | Command::Login(_)
            | Command::Logout(_)
    )
}

/// Verbs never suggested for a typo: running them by accident loses data or
/// stops work.
const NEVER_SUGGESTED: &[&str] = &["rm", "rmi", "prune", "kill", "stop", "logout"];

/// clap's message for an unknown subcommand, with its "a similar
/// subcommand exists" tip kept only for a one-letter typo (a wrong,
/// missing, extra or swapped letter, the first one right) of a verb that is not in
/// [`NEVER_SUGGESTED`]: `rm` never becomes `rmi`, `ps` never `push`,
/// `system` never `store`.
fn unknown_command(e: &clap::Error) -> String {
    let typed = match e.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let suggestion = match e.get(ContextKind::SuggestedSubcommand) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    }
    .into_iter()
    .find(|c| {
        !NEVER_SUGGESTED.contains(&c.as_str())
            && typo_distance(&typed, c) <= 1
            && c.chars().next() == typed.chars().next()
    });
    let text = e.render().to_string();
    let mut out = String::new();
    let mut skip_blank = false;
    for line in text.lines() {
        if line.contains("tip:") && line.contains("similar subcommand")
            || line.contains("tip: to pass") && line.contains("as a value")
        {
            skip_blank = true;
            continue;
        }
        if skip_blank && line.trim().is_empty() {
            skip_blank = false;
            continue;
        }
        skip_blank = false;
        out.push_str(line);
        out.push('\n');
        if line.starts_with("error:") {
            out.push('\n');
            if let Some(s) = &suggestion {
                out.push_str(&format!("  tip: a similar subcommand exists: '{s}'\n\n"));
            }
        }
    }
    // clap leaves one blank line after the error line; we added ours.
    out.replace("\n\n\n", "\n\n")
}

/// Optimal string alignment distance (edits, with swapped neighbours as one).
fn typo_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

fn init_logging(settings: &Settings) {
    let default = match (settings.quiet, settings.verbosity) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal, and never with NO_COLOR set (no escape
    // codes in a pipe or a CI log).
    let color = settings.stderr_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

fn dispatch(command: Command, s: &Settings) -> CmdResult {
    match command {
        Command::Parse(a) => parse::parse(a, s),
        Command::Context(ContextCommand::Ls(a)) => context::ls(a, s),
        Command::Build(a) => build::build(*a, s),
        Command::Run(a) => run::run(*a, s),
        Command::Ps(a) => container::ps(a, s),
        Command::Logs(a) => container::logs(a, s),
        Command::Exec(a) => container::exec(a, s),
        Command::Stop(a) => container::stop(a, s),
        Command::Kill(a) => container::kill(a, s),
        Command::Rm(a) => container::rm(a, s),
        Command::Container(ContainerCommand::Prune(a)) => container::prune(a, s),
        Command::Container(ContainerCommand::Ls(a)) => container::ps(a, s),
        Command::Supervise(a) => supervise::supervise(a, s),
        Command::Images(a) => image::images(a, s),
        Command::Inspect(a) if a.referrers => supply::referrers(a, s),
        Command::Inspect(a) => image::inspect(a, s),
        Command::Sbom(a) => supply::sbom(a, s),
        Command::Sign(a) => supply::sign(a, s),
        Command::Verify(a) => supply::verify(a, s),
        Command::History(a) => image::history(a, s),
        Command::Import(a) => image::import(a, s),
        Command::Save(a) => image::save(a, s),
        Command::Load(a) => image::load(a, s),
        Command::Tag(a) => image::tag(a, s),
        Command::Rmi(a) => image::rmi(a, s),
        Command::Prune(a) => image::prune(a, s),
        Command::Store(StoreCommand::Verify(a)) => image::verify(a, s),
        Command::Push(a) => registry::push(a, s),
        Command::Pull(a) => registry::pull(a, s),
        Command::Login(a) => registry::login(a, s),
        Command::Logout(a) => registry::logout(a, s),
        Command::Serve(a) => registry::serve(a, s),
        Command::Lint(a) => lint::lint(a, s),
        Command::Analyze(a) => analyze::analyze(a, s),
        Command::Diff(a) => analyze::diff(a, s),
        Command::Version => system::version(s),
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => system::info(a, s),
        Command::System(SystemCommand::Df(a)) => system::df(a, s),
        Command::System(SystemCommand::Prune(a)) => image::prune(a, s),
        Command::Image(ImageCommand::Ls(a)) => image::images(a, s),
        Command::Image(ImageCommand::Rm(a)) => image::rmi(a, s),
        Command::Image(ImageCommand::Inspect(a)) if a.referrers => supply::referrers(a, s),
        Command::Image(ImageCommand::Inspect(a)) => image::inspect(a, s),
        Command::Image(ImageCommand::History(a)) => image::history(a, s),
        Command::Image(ImageCommand::Tag(a)) => image::tag(a, s),
        Command::Image(ImageCommand::Prune(a)) => image::prune(a, s),
        Command::Cache(CacheCommand::Ls(a)) => cache::ls(a, s),
        Command::Cache(CacheCommand::Prune(a)) => cache::prune(a, s),
        Command::Manifest(ManifestCommand::Create(a)) => manifest::create(a, s),
        Command::Manifest(ManifestCommand::Inspect(a)) => manifest::inspect(a, s),
        Command::Manifest(ManifestCommand::Push(a)) => registry::push(a, s),
    }
}

/// The store named by `--root` / `STRATA_ROOT`. Layers a build left in a
/// registry are downloaded when something reads them.
pub(crate) fn open_store(s: &Settings) -> anyhow::Result<strata_oci::Store> {
    open_store_reaching(s, &[])
}

/// [`open_store`], reaching `insecure` registries over plain HTTP too when
/// it downloads a layer left in a registry.
pub(crate) fn open_store_reaching(
    s: &Settings,
    insecure: &[String],
) -> anyhow::Result<strata_oci::Store> {
    use anyhow::Context as _;
    let store = strata_oci::Store::open(&s.root)
        .with_context(|| format!("cannot open the store at {}", s.root.display()))?;
    let fetcher = strata_registry::OriginFetcher::new(strata_registry::ClientOptions {
        insecure_registries: insecure.to_vec(),
        auth: strata_registry::AuthConfig::from_env(),
        ..strata_registry::ClientOptions::default()
    });
    Ok(store.with_fetcher(std::sync::Arc::new(fetcher)))
}

/// An image reference from the command line.
pub(crate) fn parse_ref(s: &str) -> anyhow::Result<strata_oci::Reference> {
    s.parse::<strata_oci::Reference>()
        .map_err(anyhow::Error::new)
}

/// One platform from the command line (`--platform`), normalised; a bad
/// one is a usage error naming the part at fault.
pub(crate) fn parse_platform(flag: &str, s: &str) -> anyhow::Result<strata_oci::Platform> {
    s.parse::<strata_oci::Platform>()
        .map_err(|e| crate::render::usage(format!("{flag}: {e}")))
}

/// Several platforms (`linux/amd64,linux/arm64`), normalised, duplicates
/// dropped; a bad entry is a usage error naming it.
pub(crate) fn parse_platforms(flag: &str, s: &str) -> anyhow::Result<Vec<strata_oci::Platform>> {
    strata_oci::Platform::parse_list(s).map_err(|e| crate::render::usage(format!("{flag}: {e}")))
}

/// Placeholder while a command is being written on its own branch; every
/// call site is replaced by the issue that owns the command.
pub(crate) fn unbuilt(name: &str) -> CmdResult {
    Err(anyhow::anyhow!("`strata {name}` is not built yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidSubcommand);
        unknown_command(&e)
    }

    #[test]
    fn suggestions_are_conservative() {
        // unrelated or dangerous: no suggestion at all
        for typed in ["network", "rmx", "prun", "killl", "stp", "volume"] {
            let m = message(&["strata", typed]);
            assert!(
                m.contains(&format!("unrecognized subcommand '{typed}'")),
                "{m}"
            );
            assert!(!m.contains("tip:"), "{typed}: {m}");
        }
        // a one-letter typo of a harmless verb
        let m = message(&["strata", "biuld"]);
        assert!(
            m.contains("tip: a similar subcommand exists: 'build'"),
            "{m}"
        );
        let m = message(&["strata", "imagse"]);
        assert!(m.contains("'images'"), "{m}");
        assert!(m.contains("Usage: strata"), "{m}");
        assert!(!m.contains("\n\n\n"), "{m:?}");
    }

    #[test]
    fn typo_distances() {
        assert_eq!(typo_distance("biuld", "build"), 1);
        assert_eq!(typo_distance("ps", "push"), 2);
        assert_eq!(typo_distance("rm", "rmi"), 1);
        assert_eq!(typo_distance("system", "store"), 4);
    }
}
