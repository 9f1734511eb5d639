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
    parse_named, BuildStages, CopyAdd, Healthcheck, Instruction, InstructionKind, KeyValue,
    MountSpec, MountType, Run, ShellOrExec,
};
use strata_layer::{LayerOptions, Snapshotter};
use strata_oci::{
    format_rfc3339, media_type, ContainerConfig, Descriptor, Digest, History, Image, ImageConfig,
    Layer, Manifest, Platform, Store,
};
use strata_sandbox::{Capture, Executor, Network, RootFs, RunSpec, Stdio};

use crate::cache::{Cache, CacheEntry, LayerRecord, StepRecord};
use crate::copy::{self, CopyRequest, Owner, Source};
use crate::error::{Error, ErrorKind, Location, Result};
use crate::event::{Event, EventSink, StepId, Stream};
use crate::explain::{changed, compare, Explanation};
use crate::key::{tag, Inputs};
use crate::options::{BuildOptions, NetworkMode, SecretSource, SnapshotMode, Timestamps};
use crate::plan::{Base, FromRef, Plan, PROXY_ARGS};
use crate::rootfs::MergedView;

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
}

/// Where an image built here came from: for each history entry made from
/// this Dockerfile, the Dockerfile line (for `strata analyze` attribution).
/// Kept beside the store (`<root>/build-info/<image id hex>.json`), not in
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
    fn path(store: &Store, id: &Digest) -> PathBuf {
        store
            .root()
            .join("build-info")
            .join(format!("{}.json", id.hex()))
    }

    /// The record for image `id`, if strata built it here.
    pub fn load(store: &Store, id: &Digest) -> Option<BuildInfo> {
        serde_json::from_slice(&fs::read(Self::path(store, id)).ok()?).ok()
    }

    fn save(&self, store: &Store, id: &Digest) -> Result<()> {
        let p = Self::path(store, id);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).map_err(|e| Error::io("create", d, e))?;
        }
        crate::cache::write_atomic(&p, &serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}

/// A finished stage.
#[derive(Debug, Clone)]
struct StageOut {
    config: ImageConfig,
    layers: Vec<Layer>,
    /// Snapshot directories, top first.
    view: Vec<PathBuf>,
    key: Digest,
    /// history index -> Dockerfile line (this Dockerfile's steps only).
    lines: BTreeMap<usize, usize>,
}

/// A stage being built.
struct StageState {
    index: usize,
    label: String,
    total: usize,
    config: ImageConfig,
    layers: Vec<Layer>,
    view: Vec<PathBuf>,
    key: Digest,
    /// ARGs declared in this stage, in order, with their values.
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    first_change: Option<(String, String)>,
    no_cache: bool,
    lines: BTreeMap<usize, usize>,
}

impl StageState {
    fn step_label(&self, step: usize) -> String {
        if self.label.is_empty() {
            format!("[{step}/{}]", self.total)
        } else {
            format!("[{} {step}/{}]", self.label, self.total)
        }
    }

    fn cfg(&mut self) -> &mut ContainerConfig {
        self.config
            .config
            .get_or_insert_with(ContainerConfig::default)
    }

    /// Variables for expansion: build args in scope, then ENV over them.
    fn expand_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (k, v) in &self.args {
            if let Some(v) = v {
                env.insert(k.clone(), v.clone());
            }
        }
        for e in self.env_list() {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            env.insert(k.to_owned(), v.to_owned());
        }
        env
    }

    fn env_list(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let env = self.cfg().env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    fn user(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()])
    }

    fn merged(&self) -> MergedView {
        MergedView::new(self.view.clone())
    }

    fn push_history(&mut self, created_by: String, empty: bool, epoch: i64, line: usize) {
        let h = History {
            created: Some(format_rfc3339(epoch)),
            created_by: Some(created_by),
            comment: Some(HISTORY_COMMENT.to_owned()),
            empty_layer: empty,
            ..History::default()
        };
        self.config.history.push(h);
        self.lines.insert(self.config.history.len() - 1, line);
    }
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
    overlay: bool,
    ran: AtomicUsize,
    cached: AtomicUsize,
    results: Mutex<HashMap<usize, Arc<StageOut>>>,
    done: Condvar,
    failed: AtomicBool,
    images: Mutex<HashMap<String, Arc<StageOut>>>,
    warnings: Mutex<Vec<String>>,
    layer_opts: LayerOptions,
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
    let text = fs::read_to_string(&dockerfile)
        .map_err(|e| Error::io("read the Dockerfile", &dockerfile, e))?;
    let shown = dockerfile
        .strip_prefix(&context_dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| dockerfile.clone());
    let shown = shown.display().to_string();
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
    let ctx = Context::open(
        &context_dir,
        ContextOptions {
            dockerfile: Some(dockerfile.clone()),
            state_dir: Some(store.root().join("context-cache")),
        },
    )?;
    let cache = Cache::open(store)?;
    let snap = Snapshotter::new(store)?;
    let tmp = store.root().join("tmp").join(format!(
        "build-{}-{}",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    fs::create_dir_all(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let _tmp_guard = RemoveOnDrop(tmp.clone());
    let executor = strata_sandbox::pick(opts.isolation, store.root().join("run"))?;
    let overlay = match opts.snapshots {
        SnapshotMode::Overlay => true,
        SnapshotMode::Copy => false,
        SnapshotMode::Auto => overlay_usable(),
    };
    let dockerfile_abs = fs::canonicalize(&dockerfile).unwrap_or(dockerfile);
    let identity = format!("{}\0{}", context_dir.display(), dockerfile_abs.display());
    let dockerfile = dockerfile_abs;
    let mut layer_opts = LayerOptions::new(opts.compression);
    layer_opts.timestamps = match opts.timestamps {
        Timestamps::Epoch(e) => strata_layer::Timestamps::Epoch(e),
        Timestamps::Preserve(_) => strata_layer::Timestamps::Preserve,
    };
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
        overlay,
        ran: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        results: Mutex::new(HashMap::new()),
        done: Condvar::new(),
        failed: AtomicBool::new(false),
        images: Mutex::new(HashMap::new()),
        warnings: Mutex::new(Vec::new()),
        layer_opts,
    };
    shared.warn_unused_args();
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
    });
    let target = shared.run_stages()?;
    let output = shared.finish(&target, started)?;
    Ok(output)
}

/// Whether overlayfs can be mounted here (root, and the kernel has it).
fn overlay_usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.trim_end().ends_with("overlay")))
        .unwrap_or(false)
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

    fn epoch(&self) -> i64 {
        self.opts.timestamps.epoch()
    }

    /// An image, resolved once per build, with its layers extracted.
    fn image(&self, reference: &str) -> Result<Arc<StageOut>> {
        if let Some(img) = lock(&self.images).get(reference) {
            return Ok(img.clone());
        }
        let image = self
            .resolver
            .resolve(self.store, reference, &self.plan.platform)
            .map_err(|cause| ErrorKind::BaseImageNotFound {
                reference: reference.to_owned(),
                cause: Some(cause),
            })?;
        let mut view = Vec::new();
        {
            let mut lease = lock(&self.lease);
            lease.add_digest(&image.descriptor.digest)?;
            for l in &image.layers {
                lease.add_digest(&l.descriptor.digest)?;
                lease.add_snapshot(l.diff_id.hex())?;
            }
        }
        for l in &image.layers {
            view.push(self.snap.ensure_layer(l)?);
        }
        view.reverse();
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
        lock(&self.images).insert(reference.to_owned(), out.clone());
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
            no_cache,
            lines: BTreeMap::new(),
        };
        // Step 1: FROM.
        let id = StepId {
            stage: index,
            step: 0,
        };
        let t = Instant::now();
        (self.sink)(Event::StepStarted {
            id,
            label: st.step_label(1),
            text: stage.original.clone(),
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
                    .image(r)
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
            .insert("platform".into(), self.plan.platform.to_string());
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
        if st.config.os.is_empty() || self.opts.platform.is_some() {
            st.config.os = self.plan.platform.os.clone();
            st.config.architecture = self.plan.platform.architecture.clone();
            st.config.variant = self.plan.platform.variant.clone();
        }
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

    fn expand(&self, st: &StageState, word: &str) -> Result<String> {
        Ok(Lexer::new(self.escape)
            .process_word(word, &st.expand_env())?
            .value)
    }

    /// One instruction.
    fn step(
        &self,
        st: &mut StageState,
        id: StepId,
        n: usize,
        ins: &Instruction,
        line: usize,
    ) -> Result<()> {
        let t = Instant::now();
        let label = st.step_label(n);
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

    fn expand_kv(&self, st: &StageState, kv: &KeyValue) -> Result<(String, String)> {
        let k = self.expand(st, &kv.key.value)?;
        let v = self.expand(st, &kv.value.value)?;
        Ok((k, v))
    }

    fn command_args(&self, st: &StageState, c: &ShellOrExec) -> Vec<String> {
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
    fn meta_step(
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
    fn meta_inputs_step(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        inputs: Inputs,
        t: Instant,
    ) -> Result<()> {
        self.track_change(st, id, label, &inputs);
        self.record(id, &inputs);
        st.key = inputs.key();
        (self.sink)(Event::StepDone {
            id,
            cached: true,
            duration: t.elapsed(),
            layer: None,
        });
        Ok(())
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
        let record_id = self.step_record_id(id);
        let prev = self.cache.step(&record_id);
        if let Some(p) = &prev {
            if st.first_change.is_none() {
                let mut a = p.inputs.clone();
                let mut b = inputs.clone();
                a.parent.clear();
                b.parent.clear();
                if let Some(changes) = compare(&a, &b) {
                    st.first_change = Some((label.to_owned(), changed(changes).to_string()));
                }
            }
        }
        prev
    }

    /// Records the inputs of a step that completed, for the next build's
    /// explanations.
    fn record(&self, id: StepId, inputs: &Inputs) {
        let _ = self.cache.put_step(
            &self.step_record_id(id),
            &StepRecord {
                key: inputs.key().hex().to_owned(),
                inputs: inputs.clone(),
            },
        );
    }

    /// A step that may make a layer: looked up by key, else `make` runs.
    #[allow(clippy::too_many_arguments)]
    fn layer_step(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        inputs: Inputs,
        chain_key: Option<Digest>,
        hit: Explanation,
        t: Instant,
        history: String,
        line: usize,
        make: impl FnOnce(&Self, &StageState) -> Result<Option<LayerRecord>>,
    ) -> Result<()> {
        let key = inputs.key();
        let prev = self.track_change(st, id, label, &inputs);
        let lookup = if st.no_cache {
            None
        } else {
            self.cache.get(&key)
        };
        let (layer, cached) = match lookup {
            Some(Ok(entry)) => {
                (self.sink)(Event::StepCached {
                    id,
                    explanation: hit,
                });
                (entry.layer, true)
            }
            other => {
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
                    match &prev {
                        None => Explanation::FirstBuild,
                        Some(p) if p.inputs.parent != inputs.parent => match &st.first_change {
                            Some((step, summary)) => Explanation::EarlierStep {
                                step: step.clone(),
                                summary: summary.clone(),
                            },
                            None => Explanation::EarlierStep {
                                step: "an earlier stage".into(),
                                summary: "its result changed".into(),
                            },
                        },
                        Some(p) => compare(&p.inputs, &inputs)
                            .map(changed)
                            .unwrap_or(Explanation::Evicted),
                    }
                };
                (self.sink)(Event::StepMiss { id, explanation });
                let layer = make(self, st)?;
                self.cache.put(
                    &key,
                    &CacheEntry {
                        layer: layer.clone(),
                    },
                )?;
                (layer, false)
            }
        };
        self.record(id, &inputs);
        if cached {
            self.cached.fetch_add(1, Ordering::Relaxed);
        } else {
            self.ran.fetch_add(1, Ordering::Relaxed);
        }
        let mut done_layer = None;
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
                let dir = self.snap.ensure_layer(&layer)?;
                st.view.insert(0, dir);
                done_layer = Some((layer.descriptor.digest.clone(), layer.descriptor.size));
                st.config.rootfs.diff_ids.push(layer.diff_id.clone());
                st.layers.push(layer);
                st.push_history(history, false, self.epoch(), line);
            }
            None => st.push_history(history, true, self.epoch(), line),
        }
        st.key = chain_key.unwrap_or(key);
        (self.sink)(Event::StepDone {
            id,
            cached,
            duration: t.elapsed(),
            layer: done_layer,
        });
        Ok(())
    }

    /// Writes `entries` as a layer (None when there is nothing to write).
    fn write_entries(&self, entries: Vec<strata_layer::Entry>) -> Result<Option<LayerRecord>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let info = strata_layer::write_layer_to_store(
            self.store,
            strata_layer::LayerSource::Entries(entries),
            &self.layer_opts,
        )?;
        Ok(layer_record(info))
    }

    fn workdir(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        w: &strata_dockerfile::Spanned<String>,
        t: Instant,
        line: usize,
    ) -> Result<()> {
        let v = self.expand(st, &w.value)?;
        let joined = if v.starts_with('/') {
            v.clone()
        } else {
            format!("{}/{}", st.workdir().trim_end_matches('/'), v)
        };
        let comps = crate::rootfs::clean_components(&joined);
        let wd = format!("/{}", comps.join("/"));
        st.cfg().working_dir = Some(wd.clone());
        let view = st.merged();
        let resolved = view
            .resolve(&wd, true)
            .map_err(|e| Error::invalid(format!("cannot resolve WORKDIR {wd}: {e}")))?;
        let exists = view.lookup_exact(&resolved).is_some();
        let history = format!("WORKDIR {wd}");
        if wd == "/" || exists {
            return self.meta_step(st, id, label, history.clone(), t).map(|()| {
                st.push_history(history, true, self.epoch(), line);
            });
        }
        // Create it (and missing parents), owned by the current USER.
        let user = st.user();
        let owner = if user.is_empty() {
            Owner { uid: 0, gid: 0 }
        } else {
            self.resolve_owner(&view, &user)?
        };
        let mut inputs = Inputs::new(tag::WORKDIR, &st.key, history.clone());
        inputs
            .fields
            .insert("owner".into(), format!("{}:{}", owner.uid, owner.gid));
        let mut entries = Vec::new();
        for n in 1..=resolved.len() {
            let c = &resolved[..n];
            let mut e = strata_layer::Entry::new(c.join("/"), strata_layer::EntryKind::Dir);
            match view.lookup_exact(c) {
                Some(f) => {
                    use std::os::unix::fs::MetadataExt;
                    e.mode = f.meta.mode() & 0o7777;
                    e.uid = f.meta.uid();
                    e.gid = f.meta.gid();
                    e.mtime = f.meta.mtime();
                }
                None => {
                    e.mode = 0o755;
                    e.uid = owner.uid;
                    e.gid = owner.gid;
                    e.mtime = self.epoch();
                }
            }
            entries.push(e);
        }
        self.layer_step(
            st,
            id,
            label,
            inputs,
            None,
            Explanation::Hit {
                files: 0,
                touched: 0,
            },
            t,
            history,
            line,
            move |s, _| s.write_entries(entries),
        )
    }

    /// `user[:group]` to ids through the stage's /etc/passwd and /etc/group.
    fn resolve_owner(&self, view: &MergedView, spec: &str) -> Result<Owner> {
        let passwd = view.read_small("/etc/passwd");
        let group = view.read_small("/etc/group");
        let r = strata_sandbox::resolve_user_with(spec, passwd.as_deref(), group.as_deref())?;
        Ok(Owner {
            uid: r.user.uid,
            gid: r.user.gid,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        ins: &Instruction,
        c: &CopyAdd,
        is_add: bool,
        t: Instant,
        line: usize,
    ) -> Result<()> {
        let keyword = if is_add { "ADD" } else { "COPY" };
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(st, &s.value)?);
        }
        let dest = self.expand(st, &c.dest.value)?;
        let chown = match &c.chown {
            Some(v) => Some(self.expand(st, &v.value)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(v) => Some(copy::parse_chmod(&self.expand(st, &v.value)?)?),
            None => None,
        };
        let mut exclude = Vec::new();
        for e in &c.exclude {
            exclude.push(self.expand(st, &e.value)?);
        }
        let env = st.expand_env();
        let mut heredocs = Vec::new();
        for h in &c.heredocs {
            let content = if h.expand {
                Lexer::new('\\')
                    .skip_process_quotes(true)
                    .process_word(&h.content, &env)?
                    .value
            } else {
                h.content.clone()
            };
            heredocs.push((h.name.clone(), content.into_bytes()));
        }
        let view = st.merged();
        let owner = match &chown {
            Some(spec) => Some(self.resolve_owner(&view, spec)?),
            None => None,
        };
        // ADD URLs are downloaded into a scratch dir and copied from there.
        let (urls, local): (Vec<String>, Vec<String>) = sources
            .into_iter()
            .partition(|s| is_add && (s.starts_with("http://") || s.starts_with("https://")));
        if is_add
            && local
                .iter()
                .any(|s| s.starts_with("git@") || s.ends_with(".git"))
        {
            return Err(Error::invalid(
                "ADD of a git repository needs git in the builder; clone it in a RUN step or in the context instead",
            ));
        }
        let mut canonical = keyword.to_owned();
        for (flag, v) in [
            ("--chown", &chown),
            ("--from", &c.from.as_ref().map(|f| f.value.clone())),
        ] {
            if let Some(v) = v {
                canonical.push_str(&format!(" {flag}={v}"));
            }
        }
        if let Some(m) = chmod {
            canonical.push_str(&format!(" --chmod={m:04o}"));
        }
        if c.link {
            canonical.push_str(" --link");
        }
        if c.parents {
            canonical.push_str(" --parents");
        }
        for e in &exclude {
            canonical.push_str(&format!(" --exclude={e}"));
        }
        if let Some(cs) = &c.checksum {
            canonical.push_str(&format!(" --checksum={}", cs.value));
        }
        for s in local.iter().chain(urls.iter()) {
            canonical.push(' ');
            canonical.push_str(s);
        }
        for (name, _) in &heredocs {
            canonical.push_str(&format!(" <<{name}"));
        }
        canonical.push(' ');
        canonical.push_str(&dest);
        let history = format!("{canonical} # buildkit");

        let scratch = self.tmp.join(format!("copy-{}-{}", id.stage, id.step));
        let _scratch_guard = RemoveOnDrop(scratch.clone());
        fs::create_dir_all(&scratch).map_err(|e| Error::io("create", &scratch, e))?;
        let mut downloaded = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let checksum = match &c.checksum {
                Some(v) => Some(
                    self.expand(st, &v.value)?
                        .parse::<Digest>()
                        .map_err(|e| Error::invalid(format!("invalid --checksum: {e}")))?,
                ),
                None => None,
            };
            let dir = scratch.join(format!("url-{i}"));
            let file = crate::fetch::download(url, &dir, checksum.as_ref(), &|bytes, total| {
                (self.sink)(Event::Transfer {
                    id,
                    what: url.clone(),
                    bytes,
                    total,
                })
            })?;
            downloaded.push(file);
        }
        let (from_view, from_key) = match &c.from {
            Some(f) => match self.plan.resolve_from(st.index, &f.value) {
                FromRef::Stage(i) => {
                    let r = self.stage_result(i)?;
                    (Some(MergedView::new(r.view.clone())), Some(r.key.clone()))
                }
                FromRef::Image(r) => {
                    let img = self.image(&r)?;
                    (
                        Some(MergedView::new(img.view.clone())),
                        Some(img.key.clone()),
                    )
                }
            },
            None => (None, None),
        };
        let preserve = matches!(self.opts.timestamps, Timestamps::Preserve(_));
        let target = if c.link { None } else { Some(&view) };
        let workdir = st.workdir();
        let mut req = CopyRequest {
            sources: local,
            heredocs,
            dest: dest.clone(),
            workdir,
            owner,
            chmod,
            parents: c.parents,
            exclude,
            unpack: is_add && c.unpack.unwrap_or(true),
            preserve_times: preserve,
            tmp: &scratch,
        };
        let mut plan = match &from_view {
            Some(v) => copy::plan(&req, Source::View(v), target)?,
            None if req.sources.is_empty() && !req.heredocs.is_empty() && downloaded.is_empty() => {
                copy::plan(&req, Source::View(&MergedView::default()), target)?
            }
            None if req.sources.is_empty() && !downloaded.is_empty() => copy::CopyPlan::default(),
            None => copy::plan(&req, Source::Context(&self.ctx), target)?,
        };
        if !downloaded.is_empty() {
            // Downloads: a file each, mode 0600 as Docker does, never unpacked
            // unless --unpack.
            req.sources = downloaded
                .iter()
                .map(|p| {
                    p.strip_prefix(&scratch)
                        .map(|r| r.display().to_string())
                        .unwrap_or_default()
                })
                .collect();
            req.heredocs.clear();
            req.unpack = c.unpack.unwrap_or(false);
            if req.chmod.is_none() {
                req.chmod = Some(0o600);
            }
            let scratch_view = MergedView::new(vec![scratch.clone()]);
            let mut extra = copy::plan(&req, Source::View(&scratch_view), target)?;
            for (u, (_, desc)) in urls.iter().zip(std::mem::take(&mut extra.files)) {
                plan.files.insert(u.clone(), desc);
            }
            plan.entries.extend(extra.entries);
            plan.entries.sort_by(|a, b| a.path.cmp(&b.path));
            plan.entries.dedup_by(|a, b| a.path == b.path);
        }
        let file_count = plan.files.len();
        let touched = plan.rehashed;
        let mut inputs = Inputs::new(tag::COPY, &st.key, canonical);
        inputs.files = std::mem::take(&mut plan.files);
        inputs.fields.insert("workdir".into(), st.workdir());
        // With --from, the copied files' content is hashed: a source stage
        // that rebuilt to the same files keeps this step cached.
        let _ = from_key;
        if preserve {
            inputs.fields.insert("timestamps".into(), "preserve".into());
        }
        // --link: the layer does not depend on what is below it, so it is
        // looked up without the parent key (a new base reuses it); the chain
        // key still includes the parent.
        let chain_key = if c.link {
            inputs.parent.clear();
            Some(Inputs::new(tag::COPY, &st.key, inputs.key().to_string()).key())
        } else {
            None
        };
        let entries = std::mem::take(&mut plan.entries);
        let hit = Explanation::Hit {
            files: file_count,
            touched,
        };
        let _ = ins;
        let result = self.layer_step(
            st,
            id,
            label,
            inputs,
            chain_key,
            hit,
            t,
            history,
            line,
            move |s, _| s.write_entries(entries),
        );
        for d in plan.temp_dirs {
            let _ = strata_oci::remove_tree(&d);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        ins: &Instruction,
        r: &Run,
        t: Instant,
        line: usize,
    ) -> Result<()> {
        let view = st.merged();
        // The command line.
        let mut script: Option<(String, String)> = None; // (file name, content)
        let argv: Vec<String> = match &r.cmd {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(cmd) => {
                let mut text = cmd.clone();
                if !r.heredocs.is_empty() {
                    if is_heredoc_marker(cmd) && r.heredocs.len() == 1 {
                        let h = &r.heredocs[0];
                        let data = if h.chomp {
                            strata_dockerfile::chomp_heredoc_content(&h.content)
                        } else {
                            h.content.clone()
                        };
                        if data.starts_with("#!") {
                            script = Some((h.name.clone(), data));
                        } else {
                            text = data;
                        }
                    } else {
                        for h in &r.heredocs {
                            text.push('\n');
                            text.push_str(&h.content);
                            text.push_str(&h.name);
                        }
                    }
                }
                match &script {
                    Some((name, _)) => vec![format!("/dev/pipes/{name}")],
                    None => {
                        let mut sh = st.shell();
                        sh.push(text);
                        sh
                    }
                }
            }
        };
        // Environment: ENV, then build args in scope that ENV does not set.
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut args_in_scope: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &st.args {
            if let Some(v) = v {
                args_in_scope.insert(k.clone(), v.clone());
                env.insert(k.clone(), v.clone());
            }
        }
        let config_env = st.env_list();
        for e in &config_env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            env.insert(k.to_owned(), v.to_owned());
        }
        let mut proxies = BTreeMap::new();
        for p in PROXY_ARGS {
            if let Some(v) = self.opts.build_args.get(*p) {
                if !env.contains_key(*p) {
                    proxies.insert(p.to_string(), v.clone());
                }
            }
        }
        let user = st.user();
        let workdir = st.workdir();
        let network = match r.network {
            strata_dockerfile::NetworkMode::None => Network::None,
            strata_dockerfile::NetworkMode::Host => Network::Host,
            strata_dockerfile::NetworkMode::Default => match self.opts.network {
                NetworkMode::Host => Network::Host,
                NetworkMode::None => Network::None,
            },
        };
        let mut inputs = Inputs::new(
            tag::RUN,
            &st.key,
            format!("RUN {}", serde_json::to_string(&argv).unwrap_or_default()),
        );
        inputs.env = env.clone();
        inputs.args = args_in_scope.clone();
        inputs.fields.insert("user".into(), user.clone());
        inputs.fields.insert("workdir".into(), workdir.clone());
        inputs.fields.insert(
            "network".into(),
            if network == Network::None {
                "none"
            } else {
                "host"
            }
            .into(),
        );
        if r.security == strata_dockerfile::SecurityMode::Insecure {
            return Err(Error::invalid(
                "RUN --security=insecure is not allowed: strata builds in the default sandbox",
            ));
        }
        if let Some((name, data)) = &script {
            inputs.fields.insert(format!("script:{name}"), data.clone());
        }
        // Mounts.
        let mut mounts = Vec::new();
        let mut secret_env = Vec::new();
        let mut holds = Vec::new(); // locks and temp dirs kept for the run
        for m in &r.mounts {
            self.plan_mount(
                st,
                &view,
                m,
                &mut inputs,
                &mut mounts,
                &mut secret_env,
                &mut holds,
            )?;
        }
        let history = {
            let mut parts = Vec::new();
            if !st.args.is_empty() {
                parts.push(format!("|{}", st.args.len()));
                for (k, v) in &st.args {
                    let v = env
                        .get(k)
                        .cloned()
                        .or_else(|| v.clone())
                        .unwrap_or_default();
                    parts.push(format!("{k}={v}"));
                }
            }
            parts.extend(argv.iter().cloned());
            format!("RUN {} # buildkit", parts.join(" "))
        };
        let command_text = ins.original.clone();
        let hit = Explanation::Hit {
            files: 0,
            touched: 0,
        };
        let run_env: Vec<String> = env
            .iter()
            .chain(proxies.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .chain(secret_env.iter().cloned())
            .collect();
        self.layer_step(
            st,
            id,
            label,
            inputs,
            None,
            hit,
            t,
            history,
            line,
            move |s, st| {
                s.execute_run(
                    st,
                    id,
                    &view,
                    argv,
                    run_env,
                    &user,
                    workdir,
                    network,
                    mounts,
                    script,
                    command_text,
                )
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_mount(
        &self,
        st: &StageState,
        view: &MergedView,
        m: &MountSpec,
        inputs: &mut Inputs,
        mounts: &mut Vec<strata_sandbox::Mount>,
        secret_env: &mut Vec<String>,
        holds: &mut Vec<Box<dyn std::any::Any>>,
    ) -> Result<()> {
        let workdir = st.workdir();
        let abs = |p: &str| -> String {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("{}/{}", workdir.trim_end_matches('/'), p)
            }
        };
        let target = m
            .target
            .as_deref()
            .map(|t| self.expand(st, t))
            .transpose()?;
        match m.kind {
            MountType::Cache => {
                let target = abs(&target
                    .ok_or_else(|| Error::invalid("RUN --mount=type=cache needs target="))?);
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let dir = self.cache.mount_dir(&id)?;
                if m.mode.is_some() || m.uid.is_some() || m.gid.is_some() {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = fs::set_permissions(
                        &dir,
                        fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
                    );
                    let _ = rustix::fs::chown(
                        &dir,
                        Some(rustix::fs::Uid::from_raw(m.uid.unwrap_or(0))),
                        Some(rustix::fs::Gid::from_raw(m.gid.unwrap_or(0))),
                    );
                }
                if m.sharing == Some(strata_dockerfile::CacheSharing::Locked) {
                    let f = fs::File::open(&dir).map_err(|e| Error::io("open", &dir, e))?;
                    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                        .map_err(|e| Error::io("lock", &dir, e.into()))?;
                    holds.push(Box::new(f));
                }
                inputs.fields.insert(
                    format!("mount:{target}"),
                    format!("cache id={id} readonly={}", m.readonly),
                );
                mounts.push(strata_sandbox::Mount::bind(dir, target, m.readonly));
            }
            MountType::Tmpfs => {
                let target = abs(&target
                    .ok_or_else(|| Error::invalid("RUN --mount=type=tmpfs needs target="))?);
                let size = m.size.as_deref().map(parse_size).transpose()?;
                inputs
                    .fields
                    .insert(format!("mount:{target}"), format!("tmpfs size={size:?}"));
                mounts.push(strata_sandbox::Mount::tmpfs(target, size));
            }
            MountType::Secret => {
                let id = match (&m.id, &target) {
                    (Some(id), _) => id.clone(),
                    (None, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_owned(),
                    (None, None) => {
                        return Err(Error::invalid(
                            "RUN --mount=type=secret needs id= or target=",
                        ))
                    }
                };
                let Some(src) = self.opts.secrets.get(&id) else {
                    if m.required {
                        return Err(Error::invalid(format!(
                            "secret {id} is required but was not given (strata build --secret id={id},src=FILE)"
                        )));
                    }
                    return Ok(());
                };
                // The secret's value never enters the key, the history or the
                // config: only that a secret with this id was mounted.
                let value_path = match src {
                    SecretSource::File(p) => p.clone(),
                    SecretSource::Env(var) => {
                        let v = std::env::var(var).map_err(|_| {
                            Error::invalid(format!(
                                "secret {id}: environment variable {var} is not set"
                            ))
                        })?;
                        let p = self
                            .tmp
                            .join(format!("secret-{}", Digest::sha256(id.as_bytes()).short()));
                        write_private(&p, v.as_bytes())?;
                        p
                    }
                };
                if let Some(var) = &m.env {
                    let v = fs::read_to_string(&value_path)
                        .map_err(|e| Error::io("read secret", &value_path, e))?;
                    secret_env.push(format!("{var}={}", v.trim_end_matches('\n')));
                    inputs
                        .fields
                        .insert(format!("secret-env:{var}"), id.clone());
                }
                if m.env.is_none() || target.is_some() {
                    let target = target
                        .map(|t| abs(&t))
                        .unwrap_or_else(|| format!("/run/secrets/{id}"));
                    // Bind a private copy, so the mode asked for applies and
                    // the host file is never writable from the build.
                    let copy_path = self.tmp.join(format!(
                        "secret-{}-{}",
                        Digest::sha256(id.as_bytes()).short(),
                        mounts.len()
                    ));
                    let data = fs::read(&value_path)
                        .map_err(|e| Error::io("read secret", &value_path, e))?;
                    write_private(&copy_path, &data)?;
                    {
                        use std::os::unix::fs::PermissionsExt;
                        let _ = fs::set_permissions(
                            &copy_path,
                            fs::Permissions::from_mode(m.mode.unwrap_or(0o400)),
                        );
                        let _ = rustix::fs::chown(
                            &copy_path,
                            Some(rustix::fs::Uid::from_raw(m.uid.unwrap_or(0))),
                            Some(rustix::fs::Gid::from_raw(m.gid.unwrap_or(0))),
                        );
                    }
                    inputs
                        .fields
                        .insert(format!("mount:{target}"), format!("secret id={id}"));
                    mounts.push(strata_sandbox::Mount::bind(copy_path, target, true));
                }
            }
            MountType::Bind => {
                let target =
                    abs(&target
                        .ok_or_else(|| Error::invalid("RUN --mount=type=bind needs target="))?);
                let source = m
                    .source
                    .as_deref()
                    .map(|s| self.expand(st, s))
                    .transpose()?
                    .unwrap_or_else(|| "/".into());
                let dir = self.tmp.join(format!("bind-{}", mounts.len()));
                let (bind, desc) = match &m.from {
                    None => {
                        // The context, filtered by .dockerignore: only admitted
                        // files are visible.
                        let rel = crate::rootfs::clean_components(&source).join("/");
                        let rel = if rel.is_empty() { ".".to_owned() } else { rel };
                        let entry = self.ctx.resolve(&rel)?.clone();
                        let index = self.ctx.index_paths(&[entry.path.as_str()])?;
                        let bind =
                            crate::fetch::materialize_context(&self.ctx, &entry, &dir, m.readonly)?;
                        (bind, format!("bind context:{rel} {}", index.digest()))
                    }
                    Some(f) => {
                        let (v, key) = match self.plan.resolve_from(st.index, f) {
                            FromRef::Stage(i) => {
                                let r = self.stage_result(i)?;
                                (MergedView::new(r.view.clone()), r.key.clone())
                            }
                            FromRef::Image(r) => {
                                let img = self.image(&r)?;
                                (MergedView::new(img.view.clone()), img.key.clone())
                            }
                        };
                        let bind = crate::fetch::materialize_view(&v, &source, &dir, m.readonly)?;
                        (bind, format!("bind from:{} source={source}", key.hex()))
                    }
                };
                inputs.fields.insert(
                    format!("mount:{target}"),
                    format!("{desc} rw={}", !m.readonly),
                );
                mounts.push(strata_sandbox::Mount::bind(bind, target, m.readonly));
            }
            MountType::Ssh => {
                return Err(Error::invalid(
                    "RUN --mount=type=ssh needs an SSH agent socket, which strata does not forward; use a secret mount with a deploy key instead",
                ));
            }
        }
        let _ = view;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_run(
        &self,
        st: &StageState,
        id: StepId,
        view: &MergedView,
        argv: Vec<String>,
        env: Vec<String>,
        user: &str,
        workdir: String,
        network: Network,
        mut mounts: Vec<strata_sandbox::Mount>,
        script: Option<(String, String)>,
        command_text: String,
    ) -> Result<Option<LayerRecord>> {
        let resolved_user = if user.is_empty() {
            strata_sandbox::User::root()
        } else {
            let passwd = view.read_small("/etc/passwd");
            let group = view.read_small("/etc/group");
            strata_sandbox::resolve_user_with(user, passwd.as_deref(), group.as_deref())?.user
        };
        if let Some((name, data)) = &script {
            let p = self.tmp.join(format!("script-{}-{}", id.stage, id.step));
            fs::write(&p, data).map_err(|e| Error::io("write", &p, e))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o755));
            mounts.push(strata_sandbox::Mount::bind(
                p,
                format!("/dev/pipes/{name}"),
                true,
            ));
        }
        let active = format!(
            "run-{}-{}-{}-{}",
            std::process::id(),
            id.stage,
            id.step,
            Instant::now().elapsed().as_nanos()
        );
        let snap_mounts = if self.overlay {
            self.snap.prepare(&active, &st.layers)?
        } else {
            self.snap.prepare_copy(&active, &st.layers)?
        };
        let guard = ActiveSnapshot {
            snap: &self.snap,
            key: active.clone(),
            armed: true,
        };
        let rootfs = rootfs_from(&snap_mounts)?;
        let (tx, rx) = std::sync::mpsc::channel::<(Stream, String)>();
        let tx = Mutex::new(tx);
        let capture = Capture::with_callback(20, move |stream, line| {
            let s = match stream {
                strata_sandbox::Stream::Stdout => Stream::Stdout,
                strata_sandbox::Stream::Stderr => Stream::Stderr,
            };
            let _ = lock(&tx).send((s, line.to_owned()));
        });
        let mut spec = RunSpec::new(rootfs, argv);
        spec.env = env;
        spec.cwd = workdir;
        spec.user = resolved_user;
        spec.network = network;
        spec.mounts = mounts;
        spec.stdio = Stdio::Capture(capture.clone());
        spec.hostname = "buildkitsandbox".to_owned();
        let finished = AtomicBool::new(false);
        let status = std::thread::scope(|scope| {
            let sink = self.sink;
            let finished = &finished;
            scope.spawn(move || loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok((stream, line)) => sink(Event::Output { id, stream, line }),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if finished.load(Ordering::SeqCst) {
                            while let Ok((stream, line)) = rx.try_recv() {
                                sink(Event::Output { id, stream, line });
                            }
                            break;
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            });
            let status = self.executor.run(&spec);
            finished.store(true, Ordering::SeqCst);
            status
        });
        let status = status?;
        if !status.success() {
            let output = capture.tail(10).into_iter().map(|(_, l)| l).collect();
            return Err(ErrorKind::RunFailed {
                command: command_text,
                code: status.code(),
                output,
            }
            .into());
        }
        let info = self.snap.commit(&active, &self.layer_opts)?;
        let mut guard = guard;
        guard.armed = false;
        Ok(layer_record(info))
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
        })
    }
}

/// Removes an active snapshot unless disarmed (after a successful commit),
/// so a failed RUN leaves no half layer behind.
struct ActiveSnapshot<'a> {
    snap: &'a Snapshotter,
    key: String,
    armed: bool,
}

impl Drop for ActiveSnapshot<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.snap.remove(&self.key);
        }
    }
}

fn layer_record(info: strata_layer::LayerInfo) -> Option<LayerRecord> {
    if info.diff_id.to_string() == EMPTY_LAYER_DIFF_ID {
        return None;
    }
    Some(LayerRecord {
        descriptor: info.descriptor(),
        diff_id: info.diff_id,
    })
}

/// The sandbox's root filesystem from the snapshotter's mounts.
fn rootfs_from(mounts: &[strata_layer::Mount]) -> Result<RootFs> {
    let m = mounts
        .first()
        .ok_or_else(|| Error::invalid("the snapshotter returned no mount"))?;
    if m.kind == "bind" {
        return Ok(RootFs::Dir(m.source.clone()));
    }
    let mut lower = Vec::new();
    let mut upper = None;
    let mut work = None;
    for o in &m.options {
        if let Some(v) = o.strip_prefix("lowerdir=") {
            lower = v.split(':').map(PathBuf::from).collect();
        } else if let Some(v) = o.strip_prefix("upperdir=") {
            upper = Some(PathBuf::from(v));
        } else if let Some(v) = o.strip_prefix("workdir=") {
            work = Some(PathBuf::from(v));
        }
    }
    match (upper, work) {
        (Some(upperdir), Some(workdir)) => Ok(RootFs::Overlay {
            lowerdirs: lower,
            upperdir,
            workdir,
        }),
        _ => Err(Error::invalid(
            "the snapshotter returned an overlay without upperdir",
        )),
    }
}

/// Whether a shell-form RUN is only a heredoc marker (`<<EOF`, `<<-"EOF"`).
fn is_heredoc_marker(cmd: &str) -> bool {
    let Some(rest) = cmd.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let word = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(rest);
    !word.is_empty() && word.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// An ONBUILD trigger as an instruction.
fn parse_trigger(trigger: &str) -> Result<Instruction> {
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
fn go_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| strata_dockerfile::go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

/// `EXPOSE` values: `80`, `80/udp`, `8000-8002/tcp` -> `80/tcp`...
fn expand_ports(v: &str) -> Result<Vec<String>> {
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
fn check_signal(s: &str) -> Result<()> {
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

/// `size=` of a tmpfs: bytes, or with k/m/g suffixes.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => {
            let mult = match t[i..].trim_end_matches('b').trim_end_matches('i') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                _ => return Err(Error::invalid(format!("invalid size {s:?}"))),
            };
            (&t[..i], mult)
        }
        None => (t.as_str(), 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| Error::invalid(format!("invalid size {s:?}")))
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    f.write_all(data).map_err(|e| Error::io("write", path, e))
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
    fn heredoc_markers() {
        assert!(is_heredoc_marker("<<EOF"));
        assert!(is_heredoc_marker("<<-\"EOT\""));
        assert!(!is_heredoc_marker("<<EOF cat"));
        assert!(!is_heredoc_marker("cat <<EOF"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn go_lists() {
        assert_eq!(
            go_list(&["sh".into(), "-c".into(), "a \"b\"".into()]),
            r#"["sh" "-c" "a \"b\""]"#
        );
    }
}
