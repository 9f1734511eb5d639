//! What a build is asked to do, resolved (paths absolute, args parsed).

use std::collections::BTreeMap;
use std::path::PathBuf;

use strata_oci::{Compression, Platform};
use strata_sandbox::{Isolation, Seccomp};

/// Where a secret for `RUN --mount=type=secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the host.
    File(PathBuf),
    /// An environment variable of the strata process.
    Env(String),
}

/// How RUN steps get their root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// The kernel's overlayfs when it can be used (root, or a user
    /// namespace on Linux >= 5.11, and a kernel with overlay); rootless,
    /// else fuse-overlayfs when installed and `/dev/fuse` opens; else copy.
    #[default]
    Auto,
    /// overlayfs: lowerdirs are the layer snapshots, the upper dir is the diff.
    Overlay,
    /// The same overlay served by `fuse-overlayfs`.
    FuseOverlayfs,
    /// A copy of the parent tree and a directory diff (same layer bytes).
    Copy,
}

/// The snapshotter a [`SnapshotMode`] resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// The kernel's overlayfs.
    Overlay,
    /// fuse-overlayfs.
    FuseOverlayfs,
    /// A full copy.
    Copy,
}

impl RootfsKind {
    /// `overlay`, `fuse-overlayfs` or `copy`.
    pub fn name(self) -> &'static str {
        match self {
            RootfsKind::Overlay => "overlay",
            RootfsKind::FuseOverlayfs => "fuse-overlayfs",
            RootfsKind::Copy => "copy",
        }
    }
}

/// Remote build caches (`--cache-from`), tried in order after the store's
/// own cache.
#[derive(Clone, Default)]
pub struct CacheSources(pub Vec<std::sync::Arc<dyn strata_oci::RemoteCache>>);

impl std::fmt::Debug for CacheSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|c| c.describe()))
            .finish()
    }
}

/// A remote build cache to export to (`--cache-to`).
#[derive(Clone)]
pub struct CacheExport {
    /// Where.
    pub cache: std::sync::Arc<dyn strata_oci::RemoteCache>,
    /// `mode=max`: every step of every stage that was built; else (`min`,
    /// the default) the steps whose layers are in the final image.
    pub max: bool,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
    /// `mounts=true`: also the contents of the `RUN --mount=type=cache`
    /// directories the build used (docs/cache.md).
    pub mounts: bool,
}

impl std::fmt::Debug for CacheExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheExport")
            .field("cache", &self.cache.describe())
            .field("max", &self.max)
            .field("ignore_error", &self.ignore_error)
            .field("mounts", &self.mounts)
            .finish()
    }
}

/// Everything a build needs to know.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (default `<context>/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text, when it is not a file (`-f -`, `build -`):
    /// used instead of reading [`BuildOptions::dockerfile`].
    pub dockerfile_text: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Build this stage instead of the last one.
    pub target: Option<String>,
    /// Ignore the cache for every step.
    pub no_cache: bool,
    /// Ignore the cache for these stages (names or indexes).
    pub no_cache_filter: Vec<String>,
    /// Network for RUN steps.
    pub network: strata_sandbox::Network,
    /// Secrets by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// The build's time, Unix seconds (`SOURCE_DATE_EPOCH`, default 0):
    /// the image's creation and history times, and every file time in the
    /// layers unless [`BuildOptions::preserve_timestamps`] (DESIGN.md
    /// decision 2).
    pub epoch: i64,
    /// Files keep their modification times from the context
    /// (`--timestamps preserve`); the image's times are still
    /// [`BuildOptions::epoch`], so only file times vary.
    pub preserve_timestamps: bool,
    /// Target platform (default the host's). RUN for another architecture
    /// runs under qemu registered in binfmt_misc.
    pub platform: Option<Platform>,
    /// Where binfmt_misc registrations are read (checked before a RUN for a
    /// foreign architecture).
    pub binfmt_dir: PathBuf,
    /// Executor for RUN steps.
    pub isolation: Isolation,
    /// Where the executor keeps its per-run scratch files (`<store>/run`
    /// when `None`; a rootless CLI passes `$XDG_RUNTIME_DIR/strata`).
    pub state_dir: Option<std::path::PathBuf>,
    /// Seccomp confinement of RUN steps (docker's default profile).
    pub seccomp: Seccomp,
    /// How RUN steps get their root filesystem.
    pub snapshots: SnapshotMode,
    /// Layer compression.
    pub compression: Compression,
    /// Build independent stages at the same time.
    pub parallel: bool,
    /// Remote caches to look steps up in (`--cache-from`).
    pub cache_from: CacheSources,
    /// Remote caches to export to (`--cache-to`).
    pub cache_to: Vec<CacheExport>,
    /// Leave every layer a registry cache gives in that registry, those of
    /// the final image too (downloaded when something reads them): for a
    /// build that is pushed to the registry holding the cache, which
    /// mounts them there. Else the final image's layers are downloaded.
    pub lazy_final: bool,
    /// The `--cache-from` caches (indexes into `cache_from`) asked for the
    /// contents of a `RUN --mount=type=cache` directory this store does
    /// not have yet (`mounts=true`).
    pub mounts_from: Vec<usize>,
    /// Shown each layer the build writes, uncompressed, while it is
    /// written (the CLI's post-build summary records its files this way).
    pub layer_tap: Option<strata_layer::TapFactory>,
}

impl BuildOptions {
    /// Defaults for a context directory: epoch 0 (the caller resolves
    /// `SOURCE_DATE_EPOCH` and sets [`BuildOptions::epoch`]).
    pub fn new(context: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            context: context.into(),
            dockerfile: None,
            dockerfile_text: None,
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            network: strata_sandbox::Network::Host,
            secrets: BTreeMap::new(),
            epoch: 0,
            preserve_timestamps: false,
            platform: None,
            binfmt_dir: PathBuf::from(crate::emulation::BINFMT_DIR),
            isolation: Isolation::Auto,
            state_dir: None,
            seccomp: Seccomp::Default,
            snapshots: SnapshotMode::Auto,
            compression: Compression::Gzip,
            parallel: true,
            cache_from: CacheSources::default(),
            cache_to: Vec::new(),
            lazy_final: false,
            mounts_from: Vec::new(),
            layer_tap: None,
        }
    }
}
