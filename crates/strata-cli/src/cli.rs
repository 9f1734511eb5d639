//! The whole command-line surface, in one place (clap derive types only).
//!
//! Each subcommand's arguments are a plain struct; the code that runs it lives
//! in `commands/<name>.rs` and receives the struct plus the resolved
//! [`crate::settings::Settings`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// strata: build, store, move and analyse container images, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Store directory [default: $XDG_DATA_HOME/strata, or /var/lib/strata as root]
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Print less (errors and final results only)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more (repeat for debug logs). Long form only: `-v` is
    /// `run`'s volume flag, as in docker.
    #[arg(long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse a Dockerfile and print its syntax tree
    Parse(ParseArgs),
    /// Inspect the build context
    #[command(subcommand)]
    Context(ContextCommand),
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// Run a command in a new container from an image
    Run(Box<RunArgs>),
    /// List containers
    Ps(PsArgs),
    /// Show a container's output
    Logs(LogsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after a grace period)
    Stop(StopArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Remove containers
    Rm(RmArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// A container's supervisor (started by `run`; not for direct use)
    #[command(name = "container-supervisor", hide = true)]
    Supervise(SuperviseArgs),
    /// List images in the store
    Images(ImagesArgs),
    /// Show an image's config, manifest and layers as JSON
    Inspect(InspectArgs),
    /// Show the history of an image, one row per instruction
    History(HistoryArgs),
    /// Write a software bill of materials from the image's package databases
    Sbom(SbomArgs),
    /// Sign an image (ECDSA P-256, cosign's payload), stored as a referrer
    Sign(SignArgs),
    /// Verify an image's signature with a public key
    Verify(VerifyArgs),
    /// Create a one-layer image from a root filesystem tarball
    Import(ImportArgs),
    /// Save images to a docker-archive or OCI layout
    Save(SaveArgs),
    /// Load images from a docker-archive or OCI layout
    Load(LoadArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove image names (and the image when no name is left)
    Rmi(RmiArgs),
    /// Remove unreferenced blobs, snapshots and cache entries
    Prune(PruneArgs),
    /// Check the store
    #[command(subcommand)]
    Store(StoreCommand),
    /// Push an image to a registry
    Push(PushArgs),
    /// Pull an image from a registry
    Pull(PullArgs),
    /// Store credentials for a registry
    Login(LoginArgs),
    /// Remove stored credentials for a registry
    Logout(LogoutArgs),
    /// Serve the store as an OCI registry
    Serve(ServeArgs),
    /// Check a Dockerfile for what makes images big and rebuilds slow
    Lint(LintArgs),
    /// Show where the bytes of an image go, and what to do about it
    Analyze(AnalyzeArgs),
    /// Compare two images layer by layer
    Diff(DiffArgs),
    /// Show strata's version
    Version,
    /// Show what strata uses on this host (store, snapshotter, executor) and why
    Info(InfoArgs),
    /// Manage images (docker's `image` verbs)
    #[command(subcommand)]
    Image(ImageCommand),
    /// Store-wide commands
    #[command(subcommand)]
    System(SystemCommand),
    /// List and prune build caches: the store's, a registry's, an OCI layout's
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Assemble, inspect and push multi-platform indexes (docker manifest)
    #[command(subcommand)]
    Manifest(ManifestCommand),
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Make an index (a manifest list) of images in the store, and tag it
    Create(ManifestCreateArgs),
    /// Show an index (or a manifest) as stored
    Inspect(ManifestInspectArgs),
    /// Push an index, with every platform's image
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct ManifestCreateArgs {
    /// Name to tag the index with
    pub list: String,
    /// Images in the store (an index brings all its platforms); one per platform
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ManifestInspectArgs {
    /// Index or image in the store
    pub list: String,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the entries of a build cache
    #[command(alias = "list")]
    Ls(CacheLsArgs),
    /// Remove the entries of a build cache written some time ago
    Prune(CachePruneArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "CACHE is a registry cache (REGISTRY/REPO[:TAG], the tag defaulting to `cache`; or type=registry,ref=REF) or an OCI layout directory (DIR: a path that exists or starts with . or /; or type=local,src=DIR). Without it, the store's own build cache."
)]
pub struct CacheLsArgs {
    /// The cache [default: the store's build cache]
    pub cache: Option<String>,
    /// Format: table (default), json (one object a line), or a Go template such as '{{.Key}} {{.Layer}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Show whole keys and digests
    #[arg(long)]
    pub no_trunc: bool,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

#[derive(Debug, Args)]
#[command(
    after_help = "CACHE is as for `strata cache ls`. In a registry, entries are manifests deleted by digest (the registry must allow deletes; docker-registry: REGISTRY_STORAGE_DELETE_ENABLED=true) and their layers are freed by the registry's own garbage collection. The store's build cache loses the entries whose files are that old, then unreferenced blobs are collected (never blobs an image uses)."
)]
pub struct CachePruneArgs {
    /// The cache [default: the store's build cache]
    pub cache: Option<String>,
    /// Remove entries written this long ago or earlier: 720h, 30d, 2w, 90m, 1d12h, 0s (all)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: std::time::Duration,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

/// `720h`, `30d`, `2w`, `90m`, `45s`, `1d12h` (units s, m, h, d, w; summed).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {s:?} (like 720h, 30d, 2w, 90m or 1d12h)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    match num.as_str() {
        "" => {}
        // A bare number: only 0 (as in `--older-than 0`).
        "0" if total == 0 => {}
        _ => return Err(bad()),
    }
    Ok(std::time::Duration::from_secs(total))
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Remove image names (and the image when no name is left)
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Show an image's config, manifest and layers as JSON
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove unreferenced blobs, snapshots and cache entries
    Prune(PruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show where the store's bytes go
    Df(SystemDfArgs),
    /// Show what strata uses on this host
    Info(InfoArgs),
    /// Remove unreferenced blobs, snapshots and cache entries
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Format: json, or a Go template (`{{.Snapshotter}}`)
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct SystemDfArgs {
    /// Format: table (default), json, or a Go template
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Dockerfile to read ("-" for standard input)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "Dockerfile"
    )]
    pub file: PathBuf,
    /// Print BuildKit's Node.Dump() format, one node a line
    #[arg(long)]
    pub dump: bool,
    /// Print the syntax tree (with spans) as JSON
    #[arg(long, conflicts_with = "dump")]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List the files the builder receives, one path a line, sorted
    Ls(ContextLsArgs),
}

#[derive(Debug, Args)]
pub struct ContextLsArgs {
    /// Context directory
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Dockerfile (selects NAME.Dockerfile.dockerignore when present)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Also print type, mode, size and sha256 of each entry
    #[arg(short, long)]
    pub long: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Plain,
    Tty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Timestamps {
    /// Every time the build produces is SOURCE_DATE_EPOCH (or 0); files a RUN unpacks keep older packaged mtimes
    Epoch,
    /// Keep file modification times from the context
    Preserve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Pick the OCI runtime when one is installed, else built-in
    Auto,
    /// runc or crun with a generated config.json
    Oci,
    /// strata's own namespace sandbox
    Builtin,
    /// runc (rootless too: in strata's user namespace, without cgroups)
    Runc,
    /// crun (rootless too: in strata's user namespace, without cgroups)
    Crun,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context: a directory, `-` (standard input: a Dockerfile, or a
    /// context tarball), a git URL (`https://host/repo.git#ref:dir`,
    /// `git@host:repo.git`), or an HTTP(S) URL of a tarball or Dockerfile
    pub context: String,
    /// Name (and tag) of the image; may be repeated
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// Dockerfile [default: CONTEXT/Dockerfile]; `-` reads it from standard input
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (K=V, or K to take it from the environment)
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Build only up to this stage
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for these stages
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Where to write the result: type=oci,dest=DIR | type=docker,dest=FILE | type=registry |
    /// type=local,dest=DIR (the final stage's files) | type=tar,dest=FILE (them as one tar;
    /// dest=- for standard output) | DIR (type=local) | - (type=tar to standard output)
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Push the tagged image(s) after the build
    #[arg(long)]
    pub push: bool,
    /// How to show progress
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Progress,
    /// Write the image ID (config digest) to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Store an SBOM of the image as a referrer
    #[arg(long, value_enum, value_name = "spdx|cyclonedx")]
    pub sbom: Option<SbomFormat>,
    /// Store build provenance (in-toto, SLSA v1) as a referrer
    #[arg(long, value_enum, value_name = "min|max")]
    pub provenance: Option<ProvenanceMode>,
    /// Explain, for every step, why it was cached or rebuilt
    #[arg(long)]
    pub explain: bool,
    /// Network for RUN instructions: host or none
    #[arg(long, default_value = "host", value_name = "host|none")]
    pub network: strata_sandbox::Network,
    /// A secret for RUN --mount=type=secret (id=ID,src=FILE or id=ID,env=VAR)
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// Import build cache (type=registry,ref=REF | type=local,src=DIR), [,mounts=true]: also seed RUN cache mounts
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Export build cache (type=registry,ref=REF | type=local,dest=DIR)[,mode=min|max][,ignore-error=true][,mounts=true]
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// File timestamps in layers
    #[arg(long, value_enum, default_value = "epoch")]
    pub timestamps: Timestamps,
    /// Set the target platform recorded in the image (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Executor for RUN instructions
    #[arg(long, value_enum, default_value = "auto")]
    pub isolation: Isolation,
    /// Security options for RUN instructions: seccomp=unconfined | seccomp=FILE
    /// (a profile in docker's JSON format) [default: docker's seccomp profile]
    #[arg(long = "security-opt", value_name = "OPT", value_parser = parse_security_opt)]
    pub security_opt: Vec<strata_sandbox::Seccomp>,
    /// Allow plain HTTP to this registry (for --push and registry caches)
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the command's, or 125 when strata itself fails (no such image, bad flags), 126 when the command cannot be executed, 127 when it is not found.\n\nNetworking: the host's network by default; --network none gives the container a loopback interface only. -p HOST:CTR publishes a TCP port: the container gets a network namespace of its own and strata forwards connections from the host port to the container's 127.0.0.1:CTR (a user-space proxy, as rootless podman does). A server must listen on 127.0.0.1 or 0.0.0.0 in the container; UDP is not forwarded."
)]
pub struct RunArgs {
    /// Image to run
    pub image: String,
    /// Command and arguments (replace the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep standard input open (attached to the container's)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Name of the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (K=V, or K to take it from the environment)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (K=V lines)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Override the image's ENTRYPOINT
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid])
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    // The help texts below hold `[...]` for optional parts, not links.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Bind mount a host path or a named volume (SRC:CTR[:ro]; SRC is an absolute or ./relative path, or a volume name)
    #[arg(short = 'v', long = "volume", value_name = "SRC:CTR")]
    pub volumes: Vec<String>,
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Attach a mount: type=bind|volume|tmpfs,source=SRC,target=CTR[,readonly][,tmpfs-size=N]
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// Run an init (tini) as pid 1 that reaps zombies and forwards signals
    #[arg(long)]
    pub init: bool,
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Publish a container's TCP port to the host ([IP:]HOST:CTR)
    #[arg(short = 'p', long = "publish", value_name = "HOST:CTR")]
    pub publish: Vec<String>,
    /// Network: host (default) or none
    #[arg(long, value_name = "host|none")]
    pub network: Option<strata_sandbox::Network>,
    /// Executor
    #[arg(long, value_enum, default_value = "auto")]
    pub isolation: Isolation,
    /// Container hostname [default: the container ID's first 12 characters]
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Platform to run (os/arch[/variant]): chosen from a multi-platform
    /// image, checked against a single-platform one; another CPU's runs
    /// under qemu [default: the host's]
    #[arg(long)]
    pub platform: Option<String>,
    /// Security options: seccomp=unconfined | seccomp=FILE (a profile in
    /// docker's JSON format) [default: docker's seccomp profile]
    #[arg(long = "security-opt", value_name = "OPT", value_parser = checked_security_opt)]
    pub security_opt: Vec<String>,
}

/// A `--security-opt` value checked as [`parse_security_opt`] does, kept as
/// written (a container's record keeps it for its supervisor).
fn checked_security_opt(s: &str) -> Result<String, String> {
    parse_security_opt(s).map(|_| s.to_owned())
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Show only container IDs
    #[arg(long = "ids")]
    pub ids_only: bool,
    /// Do not truncate IDs and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// Format: table (default), json (one object a line), `table TEMPLATE`
    /// or a Go template such as '{{.Names}} {{.Status}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container name or ID
    pub container: String,
    /// Follow the output until the container exits
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container name or ID
    pub container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Keep standard input open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (K=V, or K to take it from the environment)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// User (name|uid[:group|gid]) [default: the container's]
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Working directory [default: the container's]
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Containers (names or IDs)
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Seconds to wait before killing
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Signal to stop with [default: the image's STOPSIGNAL, else SIGTERM]
    #[arg(short = 's', long)]
    pub signal: Option<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Containers (names or IDs)
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Signal to send (name or number)
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Containers (names or IDs)
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Remove every stopped container
    Prune(ContainerPruneArgs),
    /// List containers (as `ps`)
    #[command(alias = "list", name = "ls")]
    Ls(PsArgs),
}

#[derive(Debug, Args)]
pub struct ContainerPruneArgs {
    /// Do not ask (accepted for docker compatibility; strata never asks)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Container ID
    pub id: String,
    /// Descriptor to report progress on
    #[arg(long)]
    pub status_fd: Option<i32>,
    /// Standard input is the client's (attached)
    #[arg(long)]
    pub attach_stdin: bool,
    /// Standard output and error are the client's (attached)
    #[arg(long)]
    pub attach_output: bool,
}

/// One `--security-opt` value; the last seccomp option given wins, as in docker.
pub fn parse_security_opt(s: &str) -> Result<strata_sandbox::Seccomp, String> {
    strata_sandbox::Seccomp::from_security_opt(s).map_err(|e| {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            msg.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        msg
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag): `app`, `app:1.0`
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
    /// Show all images (accepted for docker compatibility: strata keeps no
    /// intermediate images)
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Format: table (default), json (one object a line), `table TEMPLATE`
    /// or a Go template such as '{{.Repository}}:{{.Tag}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Show only image IDs (the global -q/--quiet does the same, as `docker images -q`)
    #[arg(long = "ids")]
    pub ids_only: bool,
    /// Do not truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images to inspect
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Format: json (default) or a Go template over the inspect object
    /// (`{{.Id}}`, `{{json .Config.Env}}`)
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Platform to show from a multi-platform image (os/arch[/variant]) [default: the host's]
    #[arg(long)]
    pub platform: Option<String>,
    /// List the image's referrers (SBOMs, provenance, signatures) instead
    #[arg(long)]
    pub referrers: bool,
}

/// SBOM document formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON
    Spdx,
    /// CycloneDX 1.5 JSON
    Cyclonedx,
}

/// How much `--provenance` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProvenanceMode {
    /// Inputs and result
    Min,
    /// Also each step's cache key and whether it ran
    Max,
}

#[derive(Debug, Args)]
pub struct SbomArgs {
    /// Image
    pub image: String,
    /// Document format
    #[arg(long, value_enum, default_value = "spdx")]
    pub format: SbomFormat,
    /// Also store it as a referrer of the image
    #[arg(long)]
    pub attach: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Private key (PKCS#8 PEM, ECDSA P-256)
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Create KEY and KEY.pub first (refuses to overwrite)
    #[arg(long)]
    pub generate_key: bool,
    /// Image to sign (optional with --generate-key)
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Public key (PEM)
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,
    /// Image
    pub image: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Image
    pub image: String,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format: table (default), json (one object a line), `table TEMPLATE`
    /// or a Go template such as '{{.CreatedBy}}'
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Print sizes in bytes
    #[arg(short = 'H', long = "human", default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Root filesystem tarball (plain, gzip or zstd; "-" for standard input)
    pub tarball: PathBuf,
    /// Name for the new image
    pub reference: String,
    /// Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message recorded in the history
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Platform of the root filesystem (os/arch[/variant]) [default: the host's]
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// docker-archive (what `docker save` writes; `docker load` reads it)
    Docker,
    /// OCI image layout (a directory, or a tar when -o ends in .tar)
    Oci,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Output file (or directory for an OCI layout)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker")]
    pub format: ArchiveFormat,
    /// Platform a docker-archive holds of a multi-platform image (os/arch[/variant])
    /// [default: the host's; an OCI layout holds them all]
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Archive to read: docker-archive tar, OCI layout tar or directory ("-" for standard input)
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image
    pub source: String,
    /// New name
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to remove
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove the image even when several names point at it
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove the build cache and untagged images
    #[arg(short, long)]
    pub all: bool,
    /// Show what would be removed without removing it
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Re-hash every blob and check every reference
    Verify(StoreVerifyArgs),
}

#[derive(Debug, Args)]
pub struct StoreVerifyArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct RegistryOptions {
    /// Allow plain HTTP (and unverified TLS) to this registry
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image in the store
    pub image: String,
    /// Destination reference [default: the image's name]
    pub destination: Option<String>,
    #[command(flatten)]
    pub registry: RegistryOptions,
    /// Blobs transferred at once
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Blobs larger than this are uploaded in chunks of this size (e.g. 16M)
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub chunk_size: u64,
}

/// `16M`, `512K`, `1G` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {s:?} (like 16M, 512K or a byte count)"))
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Reference (name, name:tag or name@digest)
    pub reference: String,
    /// Platform to choose from an index (os/arch[/variant]) [default: the host's]
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryOptions,
    /// Blobs transferred at once
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Credentials are saved (mode 0600) in $REGISTRY_AUTH_FILE, else $XDG_CONFIG_HOME/strata/auth.json (~/.config/strata/auth.json).\npush/pull read STRATA_REGISTRY_USER + STRATA_REGISTRY_PASSWORD first, then that file, then ~/.docker/config.json ($DOCKER_CONFIG): credHelpers, auths, credsStore."
)]
pub struct LoginArgs {
    /// Registry host (e.g. localhost:5000)
    pub registry: String,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub options: RegistryOptions,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub addr: String,
    /// htpasswd file (bcrypt) for Basic auth
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// Refuse every write
    #[arg(long)]
    pub read_only: bool,
    /// With --htpasswd: let anonymous clients pull
    #[arg(long)]
    pub anonymous_pull: bool,
    /// TLS certificate (PEM)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With --htpasswd: only these users may push (others get DENIED); default: every user
    #[arg(long = "push-user", value_name = "USER")]
    pub push_users: Vec<String>,
    /// Cancel uploads idle this many seconds
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub upload_ttl: u64,
    /// Refuse blobs bigger than this (413)
    #[arg(long, default_value = "32G", value_parser = parse_size, value_name = "SIZE")]
    pub max_blob_size: u64,
    /// Uploads in progress at once; beyond, clients are told to retry (429)
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_uploads: usize,
    /// With --htpasswd: failed logins per client address and minute before it must wait (429)
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_auth_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LintFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Severity {
    Info,
    Warning,
    Error,
    /// Never fail
    None,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Dockerfile(s) to check
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Build context (for .dockerignore and lock-file checks) [default: the Dockerfile's directory]
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: LintFormat,
    /// Exit 1 when a finding is at least this severe
    #[arg(long, value_enum, default_value = "warning")]
    pub failure_threshold: Severity,
    /// Apply the safe fixes and print the diff
    #[arg(long)]
    pub fix: bool,
    /// Config file [default: .strata-lint.toml beside the Dockerfile, if any]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Set a build-time variable for ARG resolution
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Rule ids (or aliases) to ignore
    #[arg(long = "ignore", value_name = "ID")]
    pub ignore: Vec<String>,
    /// The stage that becomes the image [default: the last one]
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnalyzeFormat {
    Text,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Image: store ref, oci:DIR, docker-archive:FILE or registry ref
    pub image: String,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: AnalyzeFormat,
    /// Write the report here (default: standard output; HTML defaults to IMAGE-analysis.html)
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Exit 1 when a threshold is crossed
    #[arg(long)]
    pub ci: bool,
    /// --ci: lowest efficiency accepted (0..1)
    #[arg(long, default_value_t = 0.9)]
    pub lowest_efficiency: f64,
    /// --ci: most wasted bytes accepted (e.g. 20MB)
    #[arg(long, default_value = "20MB")]
    pub highest_wasted_bytes: String,
    /// --ci: most wasted share of the layers the Dockerfile added accepted (0..1)
    #[arg(long, default_value_t = 0.1)]
    pub highest_user_wasted_percent: f64,
    /// Dockerfile used to build the image, for attribution
    #[arg(short = 'f', long = "file")]
    pub dockerfile: Option<PathBuf>,
    /// How many wasted paths to list
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub registry: RegistryOptions,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The image a registry already holds
    pub from: String,
    /// The image to compare with it
    pub to: String,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Also list changed files
    #[arg(long)]
    pub files: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap checks flag clashes (like a global `-v` against `run -v`) only
    /// when a command is used; this checks them all.
    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        for (s, want) in [
            ("720h", Some(720 * 3600)),
            ("30d", Some(30 * 86_400)),
            ("2w", Some(14 * 86_400)),
            ("90m", Some(5400)),
            ("45s", Some(45)),
            ("1d12h", Some(36 * 3600)),
            ("0s", Some(0)),
            ("0", Some(0)),
            ("30", None),
            ("", None),
            ("h", None),
            ("3x", None),
            ("1.5h", None),
            ("99999999999999999999w", None),
        ] {
            assert_eq!(parse_duration(s).ok().map(|d| d.as_secs()), want, "{s:?}");
        }
    }
}
