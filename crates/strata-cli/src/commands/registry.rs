//! push, pull, login, logout, serve: thin wrappers over strata-registry,
//! plus progress rendering (bars on a terminal, plain lines when piped).

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustix::termios::{LocalModes, OptionalActions};
use strata_oci::{Digest, Platform, Reference, Store};
use strata_registry::{
    registry_host, AuthConfig, BlobOutcome, Client, ClientOptions, Credential, Event, Progress,
    ServeOptions,
};

use crate::cli::*;
use crate::render::hinted;
use crate::settings::Settings;

use super::{open_store, CmdResult};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

use crate::render::human_bytes as human;

/// Renders events: indicatif bars on a terminal, one line per blob event
/// when piped, nothing when quiet.
struct Render {
    mode: Mode,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    multi: MultiProgress,
    pull: bool,
    /// Lines go to standard error (a build's standard output is its own:
    /// the image ID, or JSON events).
    stderr: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Plain,
    Tty,
}

impl Render {
    fn new(s: &Settings, pull: bool) -> Render {
        let mode = if s.quiet {
            Mode::Quiet
        } else if s.stderr_tty {
            Mode::Tty
        } else {
            Mode::Plain
        };
        let multi = MultiProgress::with_draw_target(if mode == Mode::Tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Render {
            mode,
            bars: Mutex::new(HashMap::new()),
            multi,
            pull,
            stderr: false,
        }
    }

    fn line(&self, text: String) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain if self.stderr => eprintln!("{text}"),
            Mode::Plain => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            Mode::Tty => {
                let _ = self.multi.println(text);
            }
        }
    }
}

impl Progress for Render {
    fn event(&self, e: &Event) {
        match e {
            Event::Resolved { reference, digest } if self.pull => {
                self.line(format!("{}: resolved to {digest}", reference.familiar()));
            }
            Event::Resolved { .. } => {}
            Event::BlobStart {
                digest,
                size,
                offset,
                ..
            } => {
                let verb = if self.pull { "Downloading" } else { "Pushing" };
                match self.mode {
                    Mode::Tty => {
                        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
                        let bar = bars.entry(digest.clone()).or_insert_with(|| {
                            let b = self.multi.add(ProgressBar::new(*size));
                            b.set_style(
                                ProgressStyle::with_template(
                                    "{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                                )
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                            );
                            b.set_prefix(digest.short().to_owned());
                            b.set_message(verb);
                            b
                        });
                        bar.set_position(*offset);
                    }
                    Mode::Plain if *offset > 0 => self.line(format!(
                        "{}: {verb} (resuming at {} of {})",
                        digest.short(),
                        human(*offset),
                        human(*size)
                    )),
                    Mode::Plain => {
                        self.line(format!("{}: {verb} {}", digest.short(), human(*size)))
                    }
                    Mode::Quiet => {}
                }
            }
            Event::BlobBytes { digest, bytes } => {
                if self.mode == Mode::Tty {
                    if let Some(b) = self
                        .bars
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(digest)
                    {
                        b.inc(*bytes);
                    }
                }
            }
            Event::BlobDone { digest, outcome } => {
                let text = match outcome {
                    BlobOutcome::Uploaded => "Pushed".to_owned(),
                    BlobOutcome::Exists => "Layer already exists".to_owned(),
                    BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
                    BlobOutcome::Downloaded => "Pull complete".to_owned(),
                    BlobOutcome::AlreadyPresent => "Already exists".to_owned(),
                };
                let bar = self
                    .bars
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(digest);
                if let Some(b) = bar {
                    b.finish_and_clear();
                    self.multi.remove(&b);
                }
                self.line(format!("{}: {text}", digest.short()));
            }
            Event::Retry {
                what,
                reason,
                attempt,
                delay,
            } => {
                if self.mode != Mode::Quiet {
                    self.multi.suspend(|| {
                        eprintln!(
                            "retrying {what} in {:.1}s (attempt {attempt}: {reason})",
                            delay.as_secs_f64()
                        )
                    });
                }
            }
        }
    }
}

fn client_options(insecure: &[String], jobs: usize, progress: Arc<dyn Progress>) -> ClientOptions {
    ClientOptions {
        insecure_registries: insecure.to_vec(),
        jobs: jobs.max(1),
        auth: AuthConfig::from_env(),
        progress,
        ..ClientOptions::default()
    }
}

pub fn push(args: PushArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let dest_s = args
        .destination
        .clone()
        .unwrap_or_else(|| args.image.clone());
    let dest: Reference = dest_s
        .parse()
        .map_err(|e| crate::render::usage(format!("invalid destination {dest_s:?}: {e}")))?;
    if args.destination.is_none()
        && !args.image.contains('/')
        && dest.domain() == strata_oci::DEFAULT_DOMAIN
    {
        // `strata push app` would go to Docker Hub; that is rarely meant.
        tracing::info!("pushing to docker.io");
    }
    let render = Arc::new(Render::new(s, false));
    let mut opts = client_options(
        &args.registry.insecure_registries,
        args.jobs,
        render.clone(),
    );
    opts.chunk_size = args.chunk_size;
    opts.monolithic_max = args.chunk_size;
    let client = Client::new(opts)?;
    let start = Instant::now();
    let rt = runtime()?;
    let summary = rt
        .block_on(client.push(&store, &args.image, &dest))
        .with_context(|| format!("cannot push {} to {}", args.image, dest.familiar()))?;
    let _ = render.multi.clear();
    let tag = dest.tag().unwrap_or("latest");
    if !s.quiet {
        outln!("{tag}: digest: {} size: {}", summary.digest, summary.size);
    }
    outln!(
        "pushed {}: {} uploaded, {} skipped (already exist), {} mounted, {} sent ({} bytes) in {:.1}s",
        dest.familiar(),
        summary.uploaded,
        summary.skipped,
        summary.mounted,
        human(summary.bytes_sent),
        summary.bytes_sent,
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Pushes an image of the store to `dest` (`strata build --push`).
pub(crate) fn push_image(
    s: &Settings,
    store: &Store,
    image: &strata_oci::Image,
    dest: &Reference,
    insecure: &[String],
) -> anyhow::Result<()> {
    let mut render = Render::new(s, false);
    render.stderr = true;
    let render = Arc::new(render);
    let client = Client::new(client_options(insecure, 4, render.clone()))?;
    let start = Instant::now();
    // An image reached through an index is pushed as that index, whole.
    let source = match &image.index {
        Some(index) => index.digest.to_string(),
        None => image.id().to_string(),
    };
    let summary = runtime()?
        .block_on(client.push(store, &source, dest))
        .with_context(|| format!("cannot push to {}", dest.familiar()))?;
    let _ = render.multi.clear();
    if !s.quiet {
        eprintln!(
            "pushed {}: {} uploaded, {} skipped (already exist), {} mounted, {} sent ({} bytes) in {:.1}s",
            dest.familiar(),
            summary.uploaded,
            summary.skipped,
            summary.mounted,
            human(summary.bytes_sent),
            summary.bytes_sent,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Base images for the builder: from the store, else pulled (like
/// `docker build` does for a FROM it does not have).
pub(crate) struct PullResolver {
    settings: Settings,
    insecure: Vec<String>,
}

impl PullResolver {
    pub(crate) fn new(settings: &Settings, insecure: &[String]) -> PullResolver {
        PullResolver {
            settings: settings.clone(),
            insecure: insecure.to_vec(),
        }
    }
}

impl strata_build::BaseResolver for PullResolver {
    fn resolve(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
    ) -> Result<strata_oci::Image, Box<dyn std::error::Error + Send + Sync>> {
        // The store's image when it is for `platform` (an index's entry,
        // or a single image whose config says so); else a pull.
        let local = match store.find_image_for(reference, Some(platform)) {
            Ok(img) => {
                let has = img.config.platform();
                if img.config.architecture.is_empty() || platform.matches(&has) {
                    return Ok(img);
                }
                Some(has)
            }
            Err(e) if !e.is_not_found() => return Err(Box::new(e)),
            Err(_) => None,
        };
        let r: Reference = reference.parse()?;
        let render = Arc::new(Render::new(&self.settings, true));
        let mut opts = client_options(&self.insecure, 4, render.clone());
        opts.platform = Some(platform.clone());
        let client = Client::new(opts)?;
        let summary = match runtime()?.block_on(client.pull(store, &r)) {
            Ok(summary) => summary,
            Err(e) => match local {
                Some(has) => {
                    return Err(format!(
                        "{reference} in the store is for {has}, not {platform}, and pulling \
                         {platform} failed ({e}); import one with `strata import --platform \
                         {platform}` or pull it"
                    )
                    .into())
                }
                None => return Err(Box::new(e)),
            },
        };
        let _ = render.multi.clear();
        if !self.settings.quiet {
            eprintln!(
                "pulled {}: {} downloaded, {} already present",
                r.familiar(),
                summary.downloaded,
                summary.present
            );
        }
        Ok(store.find_image_for(reference, Some(platform))?)
    }
}

pub fn pull(args: PullArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let reference: Reference = args.reference.parse().map_err(|e| {
        crate::render::usage(format!("invalid reference {:?}: {e}", args.reference))
    })?;
    let platform = match &args.platform {
        Some(p) => Some(super::parse_platform("--platform", p)?),
        None => None,
    };
    let render = Arc::new(Render::new(s, true));
    let mut opts = client_options(
        &args.registry.insecure_registries,
        args.jobs,
        render.clone(),
    );
    opts.platform = platform;
    let client = Client::new(opts)?;
    let start = Instant::now();
    let rt = runtime()?;
    let summary = rt
        .block_on(client.pull(&store, &reference))
        .with_context(|| format!("cannot pull {}", reference.familiar()))?;
    let _ = render.multi.clear();
    if !s.quiet {
        outln!("Digest: {}", summary.digest);
    }
    outln!(
        "pulled {}: {} downloaded, {} already present, {} received in {:.1}s",
        reference.familiar(),
        summary.downloaded,
        summary.present,
        human(summary.bytes_received),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_password(stdin_flag: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin_flag || !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    eprint!("Password: ");
    let _ = std::io::stderr().flush();
    // Echo off while the password is typed, restored afterwards (also
    // when reading fails).
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if let Some(term) = &saved {
        let mut silent = term.clone();
        silent.local_modes.remove(LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &silent);
    }
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    if let Some(term) = &saved {
        let _ = rustix::termios::tcsetattr(&stdin, OptionalActions::Now, term);
    }
    eprintln!();
    res.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub fn login(args: LoginArgs, s: &Settings) -> CmdResult {
    let registry = registry_host(&args.registry);
    let username = match args.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() && !args.password_stdin => {
            eprint!("Username: ");
            let _ = std::io::stderr().flush();
            let mut u = String::new();
            std::io::stdin().lock().read_line(&mut u)?;
            u.trim().to_owned()
        }
        None => {
            return Err(hinted(
                "no username given",
                "pass -u USER (and --password-stdin to read the password from standard input)",
            ))
        }
    };
    if username.is_empty() {
        bail!("the username is empty");
    }
    let password = read_password(args.password_stdin)?;
    if password.is_empty() {
        bail!("the password is empty");
    }
    let cred = Credential { username, password };
    let mut auth = AuthConfig::from_env();
    let check = AuthConfig {
        env_credential: Some(cred.clone()),
        ..auth.clone()
    };
    let opts = ClientOptions {
        insecure_registries: args.options.insecure_registries.clone(),
        auth: check,
        retries: 2,
        ..ClientOptions::default()
    };
    let client = Client::new(opts)?;
    runtime()?
        .block_on(client.check_login(&registry))
        .with_context(|| format!("cannot log in to {registry}"))?;
    auth.env_credential = None;
    let path = auth.store(&registry, &cred)?;
    if !s.quiet {
        eprintln!("credentials saved in {}", path.display());
    }
    outln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs, _s: &Settings) -> CmdResult {
    let registry = registry_host(&args.registry);
    let auth = AuthConfig::from_env();
    if auth.remove(&registry)? {
        outln!("Removing login credentials for {registry}");
    } else {
        outln!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn serve(args: ServeArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    if args.anonymous_pull && args.htpasswd.is_none() {
        return Err(hinted(
            "--anonymous-pull only makes sense with --htpasswd",
            "without --htpasswd everyone may pull already",
        ));
    }
    let quiet = s.quiet;
    let hook: strata_registry::RequestHook = Arc::new(move |l: &strata_registry::RequestLog| {
        if !quiet {
            let bytes = l.bytes_in.max(l.bytes_out);
            eprintln!(
                "{} {} {} {} {}ms",
                l.method,
                l.path,
                l.status,
                bytes,
                l.duration.as_millis()
            );
        }
    });
    let opts = ServeOptions {
        addr: args.addr.clone(),
        htpasswd: args.htpasswd.clone(),
        read_only: args.read_only,
        anonymous_pull: args.anonymous_pull,
        push_users: args.push_users.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        upload_ttl: Duration::from_secs(args.upload_ttl.max(1)),
        max_blob_size: args.max_blob_size,
        max_uploads: args.max_uploads.max(1),
        max_auth_failures: args.max_auth_failures,
        on_request: Some(hook),
    };
    let tls = opts.tls_cert.is_some();
    let rt = runtime()?;
    rt.block_on(async {
        let server = strata_registry::Server::bind(store, opts).await?;
        eprintln!(
            "strata serve: listening on {}://{} (store {})",
            if tls { "https" } else { "http" },
            server.local_addr(),
            s.root.display()
        );
        server.run().await
    })
    .context("strata serve failed")?;
    eprintln!("strata serve: stopped");
    Ok(ExitCode::SUCCESS)
}
