//! The build itself: stages run (independent ones in parallel), each
//! instruction evaluated against the cache, layers written into the store.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use miette::NamedSource;
use strata_context::{Context, ContextOptions};
use strata_dockerfile::shell::Lexer;
use strata_dockerfile::{
    parse_named, BuildStages, CopyAdd, Instruction, InstructionKind, KeyValue, MountSpec,
    MountType, Run, ShellOrExec,
};
use strata_layer::{LayerOptions, Snapshotter, ViewLayer};
use strata_oci::{
    format_rfc3339, media_type, ContainerConfig, Descriptor, Digest, History, Image, ImageConfig,
    Layer, Manifest, Platform, Store,
};
use strata_sandbox::{Capture, Executor, Network, RunSpec, Stdio};

use crate::cache::{Cache, CacheEntry, LayerRecord, StepRecord};
use crate::copy::{self, CopyRequest, Owner, Source};
use crate::error::{Error, ErrorKind, Location, Result};
use crate::event::{Event, EventSink, StepId, Stream};
use crate::explain::{changed, compare, Explanation};
use crate::key::{tag, Inputs};
use crate::options::{BuildOptions, SecretSource};
use crate::plan::{Base, FromRef, Plan, PROXY_ARGS};
use strata_layer::MergedView;

mod copy_step;
mod meta;
mod platform;
mod run;
mod stage;

use meta::parse_trigger;
use stage::StageState;

/// diffID of a layer with no entries (1024 zero bytes): a step that changed
/// nothing makes no layer, as BuildKit does.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// PATH given to images that have none (BuildKit's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// History comment BuildKit writes; kept for tools that look for it.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// Finds (or fetches) base images and `--from` images.
pub trait BaseResolver: Send + Sync {
    /// The image for `reference`, in `store` once this returns.
    fn resolve(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
    ) -> std::result::Result<Image, Box<dyn std::error::Error + Send + Sync>>;
}

/// Resolves images from the store only.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreResolver;

impl BaseResolver for StoreResolver {
    fn resolve(
        &self,
        store: &Store,
        reference: &str,
        _platform: &Platform,
    ) -> std::result::Result<Image, Box<dyn std::error::Error + Send + Sync>> {
        store.find_image(reference).map_err(|e| Box::new(e) as _)
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image (already in the store, untagged unless the caller tags it).
    pub image: Image,
    /// Layer steps that ran.
    pub ran: usize,
    /// Layer steps that came from the cache.
    pub cached: usize,
    /// Non-fatal warnings (also sent as events).
    pub warnings: Vec<String>,
    /// The Dockerfile's history lines of the final image, for attribution:
    /// history index -> Dockerfile line.
    pub history_lines: BTreeMap<usize, usize>,
    /// A `--cache-to` export that failed (without `ignore-error=true`): the
    /// image is built and stored, the caller tags it and then reports this.
    pub cache_export_error: Option<std::sync::Arc<Error>>,
}

/// Where an image built here came from: for each history entry made from
/// this Dockerfile, the Dockerfile line (for `strata analyze` attribution).
/// Kept beside the store (its `build-info` sidecar, by image ID), not in
/// the image, so it never changes a digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildInfo {
    /// The Dockerfile's absolute path.
    pub dockerfile: String,
    /// The context directory.
    pub context: String,
    /// History index (in the image config) -> 1-based Dockerfile line.
    pub lines: BTreeMap<usize, usize>,
}

impl BuildInfo {
    /// The store's sidecar kind these records are kept under.
    pub const SIDECAR: &'static str = "build-info";

    /// The record for image `id`, if strata built it here.
    pub fn load(store: &Store, id: &Digest) -> Option<BuildInfo> {
        let bytes = store.sidecar(Self::SIDECAR).ok()?.get(id, None).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, store: &Store, id: &Digest) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        Ok(store.sidecar(Self::SIDECAR)?.put(id, None, &bytes)?)
    }
}

/// A finished stage.
#[derive(Debug, Clone)]
struct StageOut {
    config: ImageConfig,
    layers: Vec<Layer>,
    /// The layers as a merged view sees them, top first.
    view: Vec<ViewLayer>,
    key: Digest,
    /// history index -> Dockerfile line (this Dockerfile's steps only).
    lines: BTreeMap<usize, usize>,
}

/// Everything the stages share.
struct Shared<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    plan: Plan,
    parsed: BuildStages,
    escape: char,
    source: Arc<NamedSource<String>>,
    /// Identifies this Dockerfile + context for step records.
    identity: String,
    dockerfile: PathBuf,
    ctx: Context,
    cache: Cache,
    snap: Snapshotter,
    executor: Box<dyn Executor>,
    resolver: &'a dyn BaseResolver,
    sink: EventSink<'a>,
    lease: Mutex<strata_oci::Lease>,
    tmp: PathBuf,
    rootfs_kind: crate::RootfsKind,
    ran: AtomicUsize,
    cached: AtomicUsize,
    results: Mutex<HashMap<usize, Arc<StageOut>>>,
    done: Condvar,
    failed: AtomicBool,
    images: Mutex<HashMap<String, Arc<StageOut>>>,
    warnings: Mutex<Vec<String>>,
    layer_opts: LayerOptions,
    /// Remote caches (`--cache-from`) found unusable: warned once, then
    /// skipped.
    remote_down: Mutex<Vec<bool>>,
    /// Every layer step's result, for `--cache-to`.
    exports: Mutex<Vec<ExportItem>>,
    /// The final image's stages: the target and the stages it is FROM.
    final_stages: Vec<usize>,
    /// The cache mounts steps used (key, directory), for `mounts=true`.
    used_mounts: Mutex<BTreeMap<Digest, PathBuf>>,
}

/// The final image's stages: the target and the stages it is FROM.
fn final_stages(plan: &Plan) -> Vec<usize> {
    let mut chain = vec![plan.target];
    while let Some(Base::Stage(i)) = chain.last().map(|&s| &plan.stages[s].base) {
        chain.push(*i);
    }
    chain
}

/// The store's cache's answer for a key: an entry, `Err` for one whose
/// layer is gone, `None` for none.
type LocalLookup = Option<std::result::Result<CacheEntry, ()>>;

/// What [`Shared::cached_step`] did.
pub(super) enum Early {
    /// The step hit and is done.
    Done,
    /// It missed in the store and in these remote caches.
    Missed(Vec<String>),
}

/// How a layer step is looked up and chained.
#[derive(Debug, Default)]
pub(super) struct StepKind {
    /// A `COPY --link`: looked up without its parent, chained with it.
    pub(super) link: bool,
    /// Already found (by another key): not looked up again.
    pub(super) found: Option<Found>,
    /// Already looked up by this key and missed, in the store and in these
    /// remote caches: not asked again.
    pub(super) missed: Option<Vec<String>>,
}

/// A layer step's result, as `--cache-to` exports it.
#[derive(Debug, Clone)]
struct ExportItem {
    stage: usize,
    key: Digest,
    layer: Option<LayerRecord>,
    /// The `--cache-from` cache (index) it came from.
    from: Option<usize>,
    /// The key the chain continues with, when not `key`.
    chain: Option<Digest>,
}

/// A step found in a cache: the store's, or a `--cache-from` one.
#[derive(Debug, Clone)]
pub(super) struct Found {
    layer: Option<LayerRecord>,
    explanation: Explanation,
    /// The `--cache-from` cache (index) it came from.
    from: Option<usize>,
    /// The key the chain continues with, when not the key looked up.
    chain: Option<Digest>,
}

/// Builds the Dockerfile in `opts`, sending progress to `sink`.
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    resolver: &dyn BaseResolver,
    sink: EventSink<'_>,
) -> Result<BuildOutput> {
    let started = Instant::now();
    let context_dir = fs::canonicalize(&opts.context)
        .map_err(|e| Error::io("open the build context", &opts.context, e))?;
    let dockerfile = match &opts.dockerfile {
        Some(p) => p.clone(),
        None => context_dir.join("Dockerfile"),
    };
    // A Dockerfile given as text (`-f -`) is named as docker names it.
    let (text, shown) = match &opts.dockerfile_text {
        Some(t) => (t.clone(), "Dockerfile".to_owned()),
        None => {
            let text = fs::read_to_string(&dockerfile)
                .map_err(|e| Error::io("read the Dockerfile", &dockerfile, e))?;
            let shown = dockerfile
                .strip_prefix(&context_dir)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| dockerfile.clone());
            (text, shown.display().to_string())
        }
    };
    let df = parse_named(&shown, &text)?;
    let parsed = df.stages()?;
    let escape = df.escape;
    let source = Arc::new(NamedSource::new(shown.clone(), text.clone()));
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let plan = Plan::new(
        &parsed,
        escape,
        &opts.build_args,
        opts.target.as_deref(),
        platform,
    )?;
    let final_stages = final_stages(&plan);
    let ctx = Context::open(
        &context_dir,
        ContextOptions {
            // Only a Dockerfile with a name has a NAME.dockerignore.
            dockerfile: opts.dockerfile_text.is_none().then(|| dockerfile.clone()),
            state_dir: Some(store.root().join("context-cache")),
        },
    )?;
    let cache = Cache::open(store)?;
    let snap = Snapshotter::new(store)?;
    // Held (and removed by the next strata command if this one is killed):
    // it holds the copies of --secret files.
    let tmp_dir = store.temp_dir("build")?;
    let tmp = tmp_dir.path().to_owned();
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| store.root().join("run"));
    let executor = strata_sandbox::pick(opts.isolation, state_dir)?;
    let (rootfs_kind, fallback) = match opts.snapshots.resolve() {
        Ok(kind) => (kind, None),
        Err(why) => (crate::RootfsKind::Copy, Some(why)),
    };
    let dockerfile_abs = fs::canonicalize(&dockerfile).unwrap_or(dockerfile);
    let mut identity = format!("{}\0{}", context_dir.display(), dockerfile_abs.display());
    // Each target platform's graph explains itself against its own last
    // build (a multi-platform build does not compare arm64 with amd64).
    if plan.platform != Platform::host() {
        identity.push_str(&format!("\0{}", plan.platform));
    }
    let dockerfile = dockerfile_abs;
    let mut layer_opts = LayerOptions::new(opts.compression);
    layer_opts.timestamps = if opts.preserve_timestamps {
        strata_layer::Timestamps::Preserve
    } else {
        strata_layer::Timestamps::Epoch(opts.epoch)
    };
    layer_opts.tap = opts.layer_tap.clone();
    let shared = Shared {
        store,
        opts,
        plan,
        parsed,
        escape,
        source,
        identity,
        dockerfile,
        ctx,
        cache,
        snap,
        executor,
        resolver,
        sink,
        lease: Mutex::new(store.lease("build")?),
        tmp,
        rootfs_kind,
        ran: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        results: Mutex::new(HashMap::new()),
        done: Condvar::new(),
        failed: AtomicBool::new(false),
        images: Mutex::new(HashMap::new()),
        warnings: Mutex::new(Vec::new()),
        layer_opts,
        remote_down: Mutex::new(vec![false; opts.cache_from.0.len()]),
        exports: Mutex::new(Vec::new()),
        final_stages,
        used_mounts: Mutex::new(BTreeMap::new()),
    };
    shared.warn_unused_args();
    if let Some(why) = fallback {
        shared.warn(
            format!("{why}: RUN steps use the copy snapshotter (slower, same layers)"),
            None,
        );
    }
    let steps: usize = shared
        .plan
        .needed
        .iter()
        .map(|&i| shared.parsed.stages[i].instructions.len() + 1)
        .sum();
    (shared.sink)(Event::Plan {
        stages: shared
            .plan
            .needed
            .iter()
            .map(|&i| shared.plan.stages[i].label.clone())
            .collect(),
        steps,
        snapshotter: shared.rootfs_kind.name(),
    });
    let target = shared.run_stages()?;
    let output = shared.finish(&target, started)?;
    Ok(output)
}

/// How RUN steps will get their root filesystem under `mode`, and why (for
/// `strata info` and the build's warning).
pub fn snapshotter_choice(mode: crate::SnapshotMode) -> (crate::RootfsKind, String) {
    use crate::RootfsKind;
    let forced = "asked for with STRATA_SNAPSHOTTER".to_owned();
    match mode {
        crate::SnapshotMode::Overlay => (RootfsKind::Overlay, forced),
        crate::SnapshotMode::FuseOverlayfs => (RootfsKind::FuseOverlayfs, forced),
        crate::SnapshotMode::Copy => (RootfsKind::Copy, forced),
        crate::SnapshotMode::Auto => match mode.resolve() {
            Ok(RootfsKind::Overlay) if strata_layer::in_user_namespace() => (
                RootfsKind::Overlay,
                "the kernel's overlayfs, in the user namespace (userxattr)".to_owned(),
            ),
            Ok(RootfsKind::FuseOverlayfs) => (
                RootfsKind::FuseOverlayfs,
                format!(
                    "{}: fuse-overlayfs in the user namespace",
                    crate::container::overlay_unusable()
                        .unwrap_or("the kernel's overlayfs cannot be used")
                ),
            ),
            Ok(kind) => (kind, "the kernel's overlayfs".to_owned()),
            Err(why) => (RootfsKind::Copy, why),
        },
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = strata_oci::remove_tree(&self.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared<'_> {
    fn warn(&self, message: String, line: Option<usize>) {
        (self.sink)(Event::Warning {
            message: message.clone(),
            line,
        });
        lock(&self.warnings).push(message);
    }

    fn warn_unused_args(&self) {
        let mut declared = self.plan.meta_arg_names.clone();
        for &i in &self.plan.needed {
            for ins in &self.parsed.stages[i].instructions {
                if let InstructionKind::Arg(defs) = &ins.kind {
                    for d in defs {
                        declared.insert(d.name.value.clone());
                    }
                }
            }
        }
        let unused: Vec<&str> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !declared.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .filter(|k| {
                !self.plan.global_args.contains_key(*k)
                    || k.starts_with("TARGET")
                    || k.starts_with("BUILD")
            })
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            self.warn(
                format!(
                    "one or more build args were not consumed: {}",
                    unused.join(", ")
                ),
                None,
            );
        }
    }

    /// Builds the needed stages (independent ones at the same time) and
    /// returns the target's result.
    fn run_stages(&self) -> Result<Arc<StageOut>> {
        let needed = self.plan.needed.clone();
        if !self.opts.parallel || needed.len() == 1 {
            for &i in &needed {
                let out = self.build_stage(i)?;
                lock(&self.results).insert(i, Arc::new(out));
            }
        } else {
            let first_error: Mutex<Option<Error>> = Mutex::new(None);
            std::thread::scope(|scope| {
                for &i in &needed {
                    let first_error = &first_error;
                    scope.spawn(move || {
                        if !self.wait_for_deps(i) {
                            return;
                        }
                        match self.build_stage(i) {
                            Ok(out) => {
                                lock(&self.results).insert(i, Arc::new(out));
                            }
                            Err(e) => {
                                self.failed.store(true, Ordering::SeqCst);
                                let mut slot = lock(first_error);
                                if slot.is_none() {
                                    *slot = Some(e);
                                }
                            }
                        }
                        self.done.notify_all();
                    });
                }
            });
            let first = lock(&first_error).take();
            if let Some(e) = first {
                return Err(e);
            }
        }
        lock(&self.results)
            .get(&self.plan.target)
            .cloned()
            .ok_or_else(|| Error::invalid("the target stage was not built"))
    }

    /// Waits until every dependency of stage `i` is built; false when the
    /// build failed meanwhile.
    fn wait_for_deps(&self, i: usize) -> bool {
        let deps = &self.plan.stages[i].deps;
        let mut results = lock(&self.results);
        loop {
            if self.failed.load(Ordering::SeqCst) {
                return false;
            }
            if deps.iter().all(|d| results.contains_key(d)) {
                return true;
            }
            results = self
                .done
                .wait_timeout(results, Duration::from_millis(200))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn stage_result(&self, i: usize) -> Result<Arc<StageOut>> {
        if let Some(r) = lock(&self.results).get(&i) {
            return Ok(r.clone());
        }
        Err(Error::invalid(format!(
            "stage {} is used before it is built",
            self.plan.stages[i].label
        )))
    }

    fn location(&self, st: &StageState, step: usize, span: strata_dockerfile::Span) -> Location {
        Location {
            source: self.source.clone(),
            offset: span.offset,
            len: span.len,
            line: span.line,
            step: st.step_label(step),
        }
    }

    fn step_record_id(&self, id: StepId) -> Digest {
        Digest::sha256(format!("{}\0{}\0{}", self.identity, id.stage, id.step).as_bytes())
    }

    /// The same step found by what it says rather than where it is (its
    /// stage's name or index, its text, which occurrence of that text): a
    /// step inserted above does not make every later step compare itself
    /// with its predecessor's record.
    fn text_record_id(&self, st: &StageState) -> Option<Digest> {
        let (text, n) = st.current.as_ref()?;
        let stage = self.plan.stages[st.index]
            .name
            .clone()
            .unwrap_or_else(|| st.index.to_string());
        Some(Digest::sha256(
            format!("{}\0{stage}\0{text}\0{n}", self.identity).as_bytes(),
        ))
    }

    fn epoch(&self) -> i64 {
        self.opts.epoch
    }

    /// Every layer-making step's key holds the timestamp mode and epoch:
    /// they decide the mtimes its layer records.
    fn key_timestamps(&self, inputs: &mut Inputs) {
        let e = self.opts.epoch;
        let v = if self.opts.preserve_timestamps {
            format!("preserve, epoch {e}")
        } else {
            format!("epoch {e}")
        };
        inputs.fields.insert("timestamps".into(), v);
    }

    /// An image for the target platform (`--from`), resolved once per
    /// build, with its layers extracted.
    fn image(&self, reference: &str) -> Result<Arc<StageOut>> {
        self.image_for(reference, &self.plan.platform)
    }

    /// An image for `platform`, resolved once per build.
    fn image_for(&self, reference: &str, platform: &Platform) -> Result<Arc<StageOut>> {
        let cache_name = format!("{reference}\0{platform}");
        if let Some(img) = lock(&self.images).get(&cache_name) {
            return Ok(img.clone());
        }
        let image = self
            .resolver
            .resolve(self.store, reference, platform)
            .map_err(|cause| ErrorKind::BaseImageNotFound {
                reference: reference.to_owned(),
                cause: Some(cause),
            })?;
        {
            let mut lease = lock(&self.lease);
            lease.add_digest(&image.descriptor.digest)?;
            for l in &image.layers {
                lease.add_digest(&l.descriptor.digest)?;
                lease.add_snapshot(l.diff_id.hex())?;
            }
        }
        // Extracted when a step needs their files, not before.
        let view = image
            .layers
            .iter()
            .rev()
            .map(|l| ViewLayer::layer(&self.snap, l))
            .collect();
        let mut config = image.config.clone();
        config.created = None;
        let key = Inputs::new(tag::FROM, &Digest::sha256(b""), format!("FROM {reference}"));
        let mut key = key;
        key.fields.insert("image".into(), image.id().to_string());
        let out = Arc::new(StageOut {
            config,
            layers: image.layers.clone(),
            view,
            key: key.key(),
            lines: BTreeMap::new(),
        });
        lock(&self.images).insert(cache_name, out.clone());
        Ok(out)
    }

    fn build_stage(&self, index: usize) -> Result<StageOut> {
        let planned = &self.plan.stages[index];
        let stage = &self.parsed.stages[index];
        let multi = self.parsed.stages.len() > 1;
        let no_cache = self.opts.no_cache
            || self.opts.no_cache_filter.iter().any(|f| {
                f.eq_ignore_ascii_case(&planned.label)
                    || planned.name.as_deref() == Some(f.to_ascii_lowercase().as_str())
                    || f.parse::<usize>().ok() == Some(index)
            });
        let mut st = StageState {
            index,
            label: if multi {
                planned.label.clone()
            } else {
                String::new()
            },
            total: stage.instructions.len() + 1,
            config: ImageConfig::default(),
            layers: Vec::new(),
            view: Vec::new(),
            key: Digest::sha256(b""),
            args: Vec::new(),
            cmd_set: false,
            first_change: None,
            has_records: false,
            current: None,
            seen: HashMap::new(),
            no_cache,
            lines: BTreeMap::new(),
        };
        // Step 1: FROM.
        let id = StepId {
            stage: index,
            step: 0,
        };
        let t = Instant::now();
        // The FROM line as resolved (`FROM ${BASE}` shows the image).
        let from_text = {
            let what = match &planned.base {
                Base::Scratch => "scratch".to_owned(),
                Base::Stage(i) => self.plan.stages[*i].label.clone(),
                Base::Image(r) => r.clone(),
            };
            match &planned.name {
                Some(n) => format!("FROM {what} AS {n}"),
                None => format!("FROM {what}"),
            }
        };
        (self.sink)(Event::StepStarted {
            id,
            label: st.step_label(1),
            text: from_text,
            line: stage.span.line,
        });
        let (base, base_text) = match &planned.base {
            Base::Scratch => (None, "scratch".to_owned()),
            Base::Stage(i) => (
                Some(self.stage_result(*i)?),
                format!("stage {}", self.plan.stages[*i].label),
            ),
            Base::Image(r) => {
                let img = self
                    .image_for(r, &planned.platform)
                    .map_err(|e| e.at(|| self.location(&st, 1, stage.span)))?;
                (Some(img), r.clone())
            }
        };
        let mut inputs = Inputs::new(tag::FROM, &Digest::sha256(b""), format!("FROM {base_text}"));
        if let Some(b) = &base {
            st.config = b.config.clone();
            st.layers = b.layers.clone();
            st.view = b.view.clone();
            inputs.fields.insert("base".into(), b.key.hex().to_owned());
            if let Base::Stage(_) = planned.base {
                st.lines = b.lines.clone();
            }
        } else {
            st.config.rootfs.kind = "layers".to_owned();
        }
        inputs
            .fields
            .insert("platform".into(), planned.platform.to_string());
        let record_id = self.step_record_id(id);
        if let Some(prev) = self.cache.step(&record_id) {
            if prev.inputs != inputs {
                let summary = match (prev.inputs.fields.get("base"), inputs.fields.get("base")) {
                    (Some(o), Some(n))
                        if o != n && prev.inputs.instruction == inputs.instruction =>
                    {
                        format!(
                            "base {base_text} changed ({} -> {})",
                            &o[..12.min(o.len())],
                            &n[..12.min(n.len())]
                        )
                    }
                    _ => compare(&prev.inputs, &inputs)
                        .map(|c| changed(c).to_string())
                        .unwrap_or_default(),
                };
                st.first_change = Some((st.step_label(1), summary));
            }
        }
        st.key = inputs.key();
        self.cache.put_step(
            &record_id,
            &StepRecord {
                key: st.key.hex().to_owned(),
                inputs,
            },
        )?;
        // The stage's own settings: no ONBUILD inherited, PATH always set,
        // the platform recorded.
        let onbuild = st
            .config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
        if !st.env_list().iter().any(|e| e.starts_with("PATH=")) {
            st.set_env("PATH", DEFAULT_PATH);
        }
        if st.config.os.is_empty() || self.opts.platform.is_some() || planned.platform_flag {
            st.config.os = planned.platform.os.clone();
            st.config.architecture = planned.platform.architecture.clone();
            st.config.variant = planned.platform.variant.clone();
        }
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
        // ONBUILD triggers of the base image run first.
        for (n, trigger) in onbuild.iter().enumerate() {
            let ins =
                parse_trigger(trigger).map_err(|e| e.at(|| self.location(&st, 1, stage.span)))?;
            let id = StepId {
                stage: index,
                step: 1000 + n,
            };
            self.step(&mut st, id, 1, &ins, stage.span.line)
                .map_err(|e| e.at(|| self.location(&st, 1, stage.span)))?;
        }
        for (i, ins) in stage.instructions.iter().enumerate() {
            let id = StepId {
                stage: index,
                step: i + 1,
            };
            self.step(&mut st, id, i + 2, ins, ins.span.line)
                .map_err(|e| e.at(|| self.location(&st, i + 2, ins.span)))?;
        }
        Ok(StageOut {
            config: st.config,
            layers: st.layers,
            view: st.view,
            key: st.key,
            lines: st.lines,
        })
    }

    /// Notes the first step of the stage whose own inputs differ from its
    /// last build (what explains the misses after it), and records these.
    fn track_change(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        inputs: &Inputs,
    ) -> Option<StepRecord> {
        let prev = self
            .text_record_id(st)
            .and_then(|t| self.cache.step(&t))
            .or_else(|| self.cache.step(&self.step_record_id(id)));
        if st.first_change.is_none() {
            match &prev {
                Some(p) => {
                    if let Some(changes) = own_changes(&p.inputs, inputs) {
                        st.first_change = Some((label.to_owned(), changed(changes).to_string()));
                    }
                }
                // A step with no record among steps that have one: new.
                None if st.has_records => {
                    st.first_change = Some((label.to_owned(), "a new step".to_owned()));
                }
                None => {}
            }
        }
        st.has_records |= prev.is_some();
        prev
    }

    /// Records the inputs of a step that completed, for the next build's
    /// explanations.
    fn record(&self, st: &StageState, id: StepId, inputs: &Inputs) {
        let record = StepRecord {
            key: inputs.key().hex().to_owned(),
            inputs: inputs.clone(),
        };
        let _ = self.cache.put_step(&self.step_record_id(id), &record);
        if let Some(t) = self.text_record_id(st) {
            let _ = self.cache.put_step(&t, &record);
        }
    }

    /// A step that may make a layer: looked up by key, else `make` runs.
    #[allow(clippy::too_many_arguments)]
    fn layer_step(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        inputs: Inputs,
        step: StepKind,
        hit: Explanation,
        t: Instant,
        history: String,
        line: usize,
        make: impl FnOnce(&Self, &StageState) -> Result<Option<LayerRecord>>,
    ) -> Result<Option<LayerRecord>> {
        let key = inputs.key();
        let prev = self.track_change(st, id, label, &inputs);
        let mut remote_misses = Vec::new();
        let (lookup, found) = match (step.found, step.missed) {
            (Some(f), _) => (None, Some(f)),
            (None, _) if st.no_cache => (None, None),
            (None, Some(missed)) => {
                remote_misses = missed;
                (self.cache.get(&key), None)
            }
            (None, None) => self.lookup(id.stage, &key, hit, &mut remote_misses)?,
        };
        let mut from = None;
        let mut chain = None;
        let (layer, cached) = match (found, lookup) {
            (Some(found), _) => {
                from = found.from;
                chain = found.chain;
                (self.sink)(Event::StepCached {
                    id,
                    explanation: found.explanation,
                });
                (found.layer, true)
            }
            (None, other) => {
                let explanation = if st.no_cache {
                    Explanation::NoCache {
                        flag: if self.opts.no_cache {
                            "--no-cache".into()
                        } else {
                            "--no-cache-filter".into()
                        },
                    }
                } else if matches!(other, Some(Err(()))) {
                    Explanation::Evicted
                } else if prev.as_ref().is_some_and(|p| p.inputs == inputs) {
                    Explanation::Unfinished
                } else {
                    // What changed in this step itself comes first; an
                    // earlier step is named only when this one is the same.
                    match &prev {
                        None => Explanation::FirstBuild,
                        Some(p) => match own_changes(&p.inputs, &inputs) {
                            Some(c) => changed(c),
                            None if p.inputs.parent != inputs.parent => match &st.first_change {
                                Some((step, summary)) if step != label => {
                                    Explanation::EarlierStep {
                                        step: step.clone(),
                                        summary: summary.clone(),
                                    }
                                }
                                _ => Explanation::EarlierStep {
                                    step: "an earlier stage".into(),
                                    summary: "its result changed".into(),
                                },
                            },
                            None => Explanation::Evicted,
                        },
                    }
                };
                let explanation = if remote_misses.is_empty() {
                    explanation
                } else {
                    Explanation::NotInRemote {
                        local: Box::new(explanation),
                        caches: remote_misses,
                    }
                };
                (self.sink)(Event::StepMiss { id, explanation });
                let layer = make(self, st)?;
                self.cache.put(
                    &key,
                    &CacheEntry {
                        layer: layer.clone(),
                        chain: None,
                    },
                )?;
                (layer, false)
            }
        };
        self.record(st, id, &inputs);
        if !self.opts.cache_to.is_empty() {
            lock(&self.exports).push(ExportItem {
                stage: id.stage,
                key: key.clone(),
                layer: layer.clone(),
                from,
                chain: chain.clone(),
            });
        }
        if cached {
            self.cached.fetch_add(1, Ordering::Relaxed);
        } else {
            self.ran.fetch_add(1, Ordering::Relaxed);
        }
        let mut done_layer = None;
        let result = layer.clone();
        match layer {
            Some(l) => {
                let layer = Layer {
                    descriptor: l.descriptor.clone(),
                    diff_id: l.diff_id.clone(),
                };
                {
                    let mut lease = lock(&self.lease);
                    lease.add_digest(&layer.descriptor.digest)?;
                    lease.add_snapshot(layer.diff_id.hex())?;
                }
                // Extracted (or made) by now only if a later step needs its
                // files; lookups use its index meanwhile.
                st.view.insert(0, ViewLayer::layer(&self.snap, &layer));
                done_layer = Some((layer.descriptor.digest.clone(), layer.descriptor.size));
                st.config.rootfs.diff_ids.push(layer.diff_id.clone());
                st.layers.push(layer);
                st.push_history(history, false, self.epoch(), line);
            }
            None => st.push_history(history, true, self.epoch(), line),
        }
        // The chain continues with the key of what the step made; a --link
        // COPY's layer was looked up without its parent, the chain keeps it.
        let base = chain.unwrap_or(key);
        st.key = if step.link {
            Inputs::new(tag::COPY, &st.key, base.to_string()).key()
        } else {
            base
        };
        (self.sink)(Event::StepKey {
            id,
            key: st.key.clone(),
        });
        (self.sink)(Event::StepDone {
            id,
            cached,
            duration: t.elapsed(),
            layer: done_layer,
        });
        Ok(result)
    }

    /// Whether a layer of the stage is left in a registry (reading the
    /// stage's files would download it).
    pub(super) fn below_remote(&self, st: &StageState) -> bool {
        st.layers
            .iter()
            .any(|l| self.store.remote_blob(&l.descriptor.digest).is_some())
    }

    /// Looks a step up by `inputs` before anything reads the stage's files
    /// (see [`Shared::below_remote`]): on a hit the step is done, cached;
    /// on a miss the remote caches asked are returned, for the step's own
    /// lookup by the same key not to ask them again.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cached_step(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        inputs: Inputs,
        link: bool,
        hit: Explanation,
        t: Instant,
        history: &str,
        line: usize,
    ) -> Result<Early> {
        let mut misses = Vec::new();
        let (_, found) = self.lookup(id.stage, &inputs.key(), hit.clone(), &mut misses)?;
        let Some(found) = found else {
            return Ok(Early::Missed(misses));
        };
        let step = StepKind {
            link,
            found: Some(found),
            missed: None,
        };
        let nothing =
            |_: &Self, _: &StageState| Err(Error::invalid("a cached step has nothing to make"));
        self.layer_step(
            st,
            id,
            label,
            inputs,
            step,
            hit,
            t,
            history.to_owned(),
            line,
            nothing,
        )?;
        Ok(Early::Done)
    }

    /// Looks `key` up in the store's cache, then in the remote caches
    /// (`--cache-from`) in order. Returns the store's own answer (an entry,
    /// or `Err` for one whose layer is gone) and what was found; `misses`
    /// receives the remote caches asked without a hit.
    fn lookup(
        &self,
        stage: usize,
        key: &Digest,
        hit: Explanation,
        misses: &mut Vec<String>,
    ) -> Result<(LocalLookup, Option<Found>)> {
        let local = self.cache.get(key);
        if let Some(Ok(entry)) = &local {
            let found = Found {
                layer: entry.layer.clone(),
                explanation: hit,
                from: None,
                chain: entry.chain.clone(),
            };
            return Ok((local, Some(found)));
        }
        let remote = self.remote_hit(stage, key, misses)?;
        Ok((local, remote))
    }

    /// Looks `key` up in the remote caches (`--cache-from`), in order. A hit
    /// is recorded in the store's cache, its layer fetched (verified) into
    /// the store. A cache that cannot answer is warned about once and
    /// skipped from then on: a cache is an accelerator, never a reason for
    /// a build to fail. `misses` receives the caches asked without a hit.
    #[allow(clippy::type_complexity)]
    fn remote_hit(
        &self,
        stage: usize,
        key: &Digest,
        misses: &mut Vec<String>,
    ) -> Result<Option<Found>> {
        for (i, cache) in self.opts.cache_from.0.iter().enumerate() {
            let name = cache.describe();
            if lock(&self.remote_down)[i] {
                continue;
            }
            let entry = match cache.lookup(key) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    misses.push(name);
                    continue;
                }
                Err(e) => {
                    lock(&self.remote_down)[i] = true;
                    self.warn(
                        format!(
                            "cache {name} cannot be used, building without it: {}",
                            chain_text(&*e)
                        ),
                        None,
                    );
                    continue;
                }
            };
            let layer = match entry.record.layer {
                Some((descriptor, diff_id)) => {
                    lock(&self.lease).add_digest(&descriptor.digest)?;
                    // Lazy: a layer from a registry stays there until
                    // something reads it, unless the image will have it.
                    // A push to that registry mounts it.
                    let lazy = cache.mount_source().is_some()
                        && (self.opts.lazy_final || !self.final_stages.contains(&stage));
                    if lazy && !self.store.has(&descriptor.digest) {
                        self.store.note_remote(&descriptor)?;
                    } else if !self.store.has(&descriptor.digest) {
                        if let Err(e) = cache.fetch_blob(self.store, &descriptor) {
                            self.warn(
                                format!(
                                    "cache {name}: cannot fetch layer {}, building the step: {}",
                                    descriptor.digest,
                                    chain_text(&*e)
                                ),
                                None,
                            );
                            misses.push(name);
                            continue;
                        }
                    }
                    Some(LayerRecord {
                        descriptor,
                        diff_id,
                    })
                }
                None => None,
            };
            self.cache.put(
                key,
                &CacheEntry {
                    layer: layer.clone(),
                    chain: entry.record.chain.clone(),
                },
            )?;
            return Ok(Some(Found {
                layer,
                explanation: Explanation::Remote { cache: name },
                from: Some(i),
                chain: entry.record.chain,
            }));
        }
        Ok(None)
    }

    /// Seeds a new cache mount directory `dir` with the contents the
    /// `mounts=true` caches of `--cache-from` keep for `key`, the first
    /// that has them. A cache that cannot give them is warned about: the
    /// step runs with an empty cache, as it would without.
    fn import_mount(&self, key: &Digest, dir: &Path) {
        for &i in &self.opts.mounts_from {
            let Some(cache) = self.opts.cache_from.0.get(i) else {
                continue;
            };
            if lock(&self.remote_down).get(i).copied().unwrap_or(true) {
                continue;
            }
            let name = cache.describe();
            let got = (|| -> std::result::Result<bool, String> {
                let Some(entry) = cache.lookup(key).map_err(|e| chain_text(&*e))? else {
                    return Ok(false);
                };
                let Some((descriptor, diff_id)) = entry.record.layer else {
                    return Ok(true);
                };
                let mut lease = lock(&self.lease);
                lease
                    .add_digest(&descriptor.digest)
                    .map_err(|e| e.to_string())?;
                drop(lease);
                if !self.store.has(&descriptor.digest) {
                    cache
                        .fetch_blob(self.store, &descriptor)
                        .map_err(|e| chain_text(&*e))?;
                }
                let layer = Layer {
                    descriptor,
                    diff_id,
                };
                strata_layer::unpack_layers(self.store, &[layer], dir)
                    .map_err(|e| chain_text(&e))?;
                Ok(true)
            })();
            match got {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    self.warn(
                        format!("cache {name}: cannot restore a cache mount, the step starts with it empty: {e}"),
                        None,
                    );
                    // Whatever was unpacked is dropped: empty, not half full.
                    if let Ok(rd) = fs::read_dir(dir) {
                        for e in rd.flatten() {
                            let _ = strata_oci::remove_tree(&e.path());
                        }
                    }
                }
            }
        }
    }

    /// The contents of the cache mounts the build used, as records for a
    /// `mounts=true` export (a layer each, or none for an empty one).
    fn mount_records(&self) -> Result<Vec<strata_oci::CacheRecord>> {
        let used = lock(&self.used_mounts).clone();
        let mut out = Vec::new();
        for (key, dir) in used {
            let info = self.snap.write_layer(
                strata_layer::LayerSource::Dir(&dir),
                &self.layer_opts,
                false,
            )?;
            let layer = layer_record(info);
            if let Some(l) = &layer {
                lock(&self.lease).add_digest(&l.descriptor.digest)?;
            }
            out.push(strata_oci::CacheRecord {
                key,
                layer: layer.map(|l| (l.descriptor, l.diff_id)),
                chain: None,
            });
        }
        Ok(out)
    }

    /// Exports the build's steps to every `--cache-to` cache: all of them
    /// (`mode=max`) or those whose layers are in the final image (`min`).
    fn export_caches(&self) -> Result<()> {
        if self.opts.cache_to.is_empty() {
            return Ok(());
        }
        let chain = &self.final_stages;
        let items = lock(&self.exports).clone();
        let mounts = if self.opts.cache_to.iter().any(|e| e.mounts) {
            self.mount_records()?
        } else {
            Vec::new()
        };
        for exp in &self.opts.cache_to {
            let name = exp.cache.describe();
            let mut seen = std::collections::HashSet::new();
            let records: Vec<strata_oci::CacheRecord> = items
                .iter()
                .filter(|it| exp.max || chain.contains(&it.stage))
                .filter(|it| seen.insert(it.key.clone()))
                .map(|it| strata_oci::CacheRecord {
                    key: it.key.clone(),
                    layer: it
                        .layer
                        .as_ref()
                        .map(|l| (l.descriptor.clone(), l.diff_id.clone())),
                    chain: it.chain.clone(),
                })
                .collect();
            // Hits from this same cache may have their age renewed.
            let mut refresh: Vec<Digest> = items
                .iter()
                .filter(|it| {
                    it.from
                        .and_then(|i| self.opts.cache_from.0.get(i))
                        .is_some_and(|c| c.describe() == name)
                })
                .map(|it| it.key.clone())
                .collect();
            // Cache mounts change: an entry whose contents differ is
            // replaced (a refreshed record with another layer is).
            let mut records = records;
            if exp.mounts {
                records.extend(mounts.iter().cloned());
                refresh.extend(mounts.iter().map(|m| m.key.clone()));
            }
            match exp.cache.export(self.store, &records, &refresh) {
                Ok(r) => (self.sink)(Event::CacheExported {
                    cache: name,
                    entries: r.entries,
                    present: r.present,
                    blobs_sent: r.blobs_sent,
                    bytes_sent: r.bytes_sent,
                }),
                Err(e) if exp.ignore_error => self.warn(
                    format!(
                        "cannot export the build cache to {name}: {}",
                        chain_text(&*e)
                    ),
                    None,
                ),
                Err(source) => {
                    return Err(ErrorKind::CacheExport {
                        cache: name,
                        source,
                    }
                    .into())
                }
            }
        }
        Ok(())
    }

    /// Writes `entries` as the layer of step `id` (None when there is
    /// nothing to write), extracting it on the way when a later step will
    /// need its files.
    fn write_entries(
        &self,
        id: StepId,
        entries: Vec<strata_layer::Entry>,
    ) -> Result<Option<LayerRecord>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let info = self.snap.write_layer(
            strata_layer::LayerSource::Entries(entries),
            &self.layer_opts,
            self.files_needed_after(id),
        )?;
        Ok(layer_record(info))
    }

    /// Whether something after step `id` will need the files of the
    /// layers made so far (not just their metadata): a RUN later in the
    /// stage, or another stage built on this one, copying from it or
    /// mounting it. Such a layer is extracted while it is written; any
    /// other is extracted from its blob on first need, if ever.
    fn files_needed_after(&self, id: StepId) -> bool {
        let instructions = &self.parsed.stages[id.stage].instructions;
        // Steps 1.. are the instructions; ONBUILD triggers (1000..) run
        // before all of them.
        let from = if id.step >= 1000 { 0 } else { id.step };
        let run_later = instructions
            .iter()
            .skip(from)
            .any(|ins| matches!(ins.kind, InstructionKind::Run(_)));
        run_later
            || self
                .plan
                .needed
                .iter()
                .any(|&j| j != id.stage && self.plan.stages[j].deps.contains(&id.stage))
    }

    fn finish(&self, target: &StageOut, started: Instant) -> Result<BuildOutput> {
        let mut config = target.config.clone();
        config.created = Some(format_rfc3339(self.epoch()));
        config.rootfs.kind = "layers".to_owned();
        config.rootfs.diff_ids = target.layers.iter().map(|l| l.diff_id.clone()).collect();
        let config_raw = config.to_json();
        let config_desc = self.store.put_json(media_type::OCI_CONFIG, &config_raw)?;
        let manifest = Manifest::oci(
            config_desc.clone(),
            target.layers.iter().map(|l| l.descriptor.clone()).collect(),
        );
        let manifest_raw = manifest.to_json();
        let manifest_desc: Descriptor = self
            .store
            .put_json(media_type::OCI_MANIFEST, &manifest_raw)?;
        self.store.keep_untagged(&manifest_desc)?;
        let image = self.store.image(&manifest_desc, None)?;
        let info = BuildInfo {
            dockerfile: self.dockerfile.display().to_string(),
            context: self.ctx.root().display().to_string(),
            lines: target.lines.clone(),
        };
        info.save(self.store, image.id())?;
        // The image is stored; then the cache goes out (a failed export
        // fails the build unless `ignore-error=true`, as BuildKit does).
        let cache_export_error = self.export_caches().err().map(std::sync::Arc::new);
        let ran = self.ran.load(Ordering::Relaxed);
        let cached = self.cached.load(Ordering::Relaxed);
        (self.sink)(Event::Done {
            id: image.id().clone(),
            manifest: manifest_desc.digest.clone(),
            ran,
            cached,
            duration: started.elapsed(),
        });
        Ok(BuildOutput {
            image,
            ran,
            cached,
            warnings: lock(&self.warnings).clone(),
            history_lines: target.lines.clone(),
            cache_export_error,
        })
    }
}

pub(super) fn layer_record(info: strata_layer::LayerInfo) -> Option<LayerRecord> {
    if info.diff_id.to_string() == EMPTY_LAYER_DIFF_ID {
        return None;
    }
    Some(LayerRecord {
        descriptor: info.descriptor(),
        diff_id: info.diff_id,
    })
}

/// What differs between two builds of a step, leaving out its parent (an
/// earlier step's change, explained there). When the instruction itself
/// changed, that alone is said: the rest follows from it.
fn own_changes(old: &Inputs, new: &Inputs) -> Option<Vec<crate::explain::Change>> {
    let mut a = old.clone();
    let mut b = new.clone();
    a.parent.clear();
    b.parent.clear();
    compare(&a, &b)
}

/// An error and its causes on one line (`a: b: c`), for a warning.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
