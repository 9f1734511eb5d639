//! One module per group of subcommands; `main` resolves settings once and
//! dispatches.

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{
    CacheCommand, Cli, Command, ContextCommand, ImageCommand, StoreCommand, SystemCommand,
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
mod context;
mod image;
mod lint;
mod parse;
mod registry;
mod run;
mod system;

/// What a command returns: its exit code (0 unless it has its own, like
/// `run`, `lint` or `analyze --ci`), or an error (exit code 1, or 2 for a
/// usage error: see [`render::usage`]).
pub type CmdResult = anyhow::Result<ExitCode>;

pub fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let cli = Cli::parse();
    let settings = Settings::resolve(&cli.global);
    init_logging(&settings);
    match dispatch(cli.command, &settings) {
        Ok(code) => code,
        // The reader went away (`strata images | head -1`): nothing to say.
        Err(err) if render::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", render::error_report(&err));
            ExitCode::from(render::exit_code(&err))
        }
    }
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
        Command::Run(a) => run::run(a, s),
        Command::Images(a) => image::images(a, s),
        Command::Inspect(a) => image::inspect(a, s),
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
        Command::Image(ImageCommand::Inspect(a)) => image::inspect(a, s),
        Command::Image(ImageCommand::History(a)) => image::history(a, s),
        Command::Image(ImageCommand::Tag(a)) => image::tag(a, s),
        Command::Image(ImageCommand::Prune(a)) => image::prune(a, s),
        Command::Cache(CacheCommand::Ls(a)) => cache::ls(a, s),
        Command::Cache(CacheCommand::Prune(a)) => cache::prune(a, s),
    }
}

/// The store named by `--root` / `STRATA_ROOT`.
pub(crate) fn open_store(s: &Settings) -> anyhow::Result<strata_oci::Store> {
    use anyhow::Context as _;
    strata_oci::Store::open(&s.root)
        .with_context(|| format!("cannot open the store at {}", s.root.display()))
}

/// An image reference from the command line.
pub(crate) fn parse_ref(s: &str) -> anyhow::Result<strata_oci::Reference> {
    s.parse::<strata_oci::Reference>()
        .map_err(anyhow::Error::new)
}

/// Placeholder while a command is being written on its own branch; every
/// call site is replaced by the issue that owns the command.
pub(crate) fn unbuilt(name: &str) -> CmdResult {
    Err(anyhow::anyhow!("`strata {name}` is not built yet"))
}
