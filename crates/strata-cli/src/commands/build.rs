//! `strata build`: resolve the flags, run the builder, render its events,
//! then tag and export the result.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use strata_build::{BuildOptions, ContextSpec, SecretSource};
use strata_oci::SaveItem;

use crate::cli::{ArchiveFormat, BuildArgs, Isolation, Progress, Timestamps};
use crate::progress::{BuildProgress, Mode};
use crate::render::human_bytes;
use crate::settings::Settings;

use super::{parse_ref, CmdResult};
use crate::render::usage;

/// Where `--output` sends the image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Oci(PathBuf),
    Docker(PathBuf),
    Registry,
    /// The final stage's file system, unpacked into a directory.
    Local(PathBuf),
    /// The same as one tar (`-`: standard output).
    Tar(PathBuf),
}

fn parse_kv_list(spec: &str) -> BTreeMap<String, String> {
    spec.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (p.trim().to_owned(), String::new()),
        })
        .collect()
}

fn parse_output(spec: &str) -> anyhow::Result<Output> {
    // docker's shorthands: `-o DIR` and `-o -`.
    if spec == "-" {
        return Ok(Output::Tar(PathBuf::from("-")));
    }
    if !spec.contains('=') {
        return Ok(Output::Local(PathBuf::from(spec)));
    }
    let kv = parse_kv_list(spec);
    let dest = || -> anyhow::Result<PathBuf> {
        kv.get("dest")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| usage(format!("--output {spec}: dest= is missing")))
    };
    match kv.get("type").map(String::as_str) {
        Some("oci") => Ok(Output::Oci(dest()?)),
        Some("docker") => Ok(Output::Docker(dest()?)),
        Some("local") => Ok(Output::Local(dest()?)),
        Some("tar") => Ok(Output::Tar(dest()?)),
        Some("registry") | Some("image") if kv.get("push").is_none_or(|p| p != "false") => Ok(Output::Registry),
        Some(t) => Err(usage(format!("--output {spec}: unknown type {t:?} (oci, docker, registry, local or tar)"))),
        None => Err(usage(format!("--output {spec}: type= is missing (type=oci,dest=DIR | type=docker,dest=FILE | type=registry)"))),
    }
}

fn parse_secret(spec: &str) -> anyhow::Result<(String, SecretSource)> {
    let kv = parse_kv_list(spec);
    let id = kv
        .get("id")
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| usage(format!("--secret {spec}: id= is missing")))?;
    let src = kv.get("src").or_else(|| kv.get("source"));
    let source = match (src, kv.get("env")) {
        (Some(f), _) => SecretSource::File(PathBuf::from(f)),
        (None, Some(var)) => SecretSource::Env(var.clone()),
        (None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None) => return Err(usage(format!("--secret {spec}: give src=FILE or env=VAR"))),
    };
    if let SecretSource::File(p) = &source {
        if !p.is_file() {
            bail!("--secret {spec}: {} is not a readable file", p.display());
        }
    }
    Ok((id, source))
}

/// `K=V`, or `K` to take the value from the environment (skipped when unset).
fn parse_build_args(args: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    out
}

/// Below this much free space on the store's disk, a failed build says so.
const LOW_SPACE: u64 = 64 << 20;

pub fn build(args: BuildArgs, s: &Settings) -> CmdResult {
    let store = super::open_store_reaching(s, &args.insecure_registries)?;
    // Keeps what the build writes (manifest, config) from a concurrent
    // prune until it is tagged, after the builder's own lease is gone.
    let _lease = store.lease("build")?;
    let tags = args
        .tags
        .iter()
        .map(|t| parse_ref(t).map_err(|e| usage(format!("invalid tag {t:?}: {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outputs = args
        .outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let push = args.push || outputs.contains(&Output::Registry);
    if push && tags.is_empty() {
        return Err(usage("--push needs a name: add -t REGISTRY/NAME:TAG"));
    }
    // The context: a directory, or fetched / read / unpacked into the
    // store's scratch space (removed when the build ends).
    let spec = ContextSpec::parse(&args.context);
    let dockerfile_stdin = args.file.as_deref() == Some(std::path::Path::new("-"));
    if dockerfile_stdin && spec == ContextSpec::Stdin {
        return Err(usage(
            "the Dockerfile and the context cannot both come from standard input",
        ));
    }
    let scratch = store.root().join("tmp").join(format!(
        "context-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let context = strata_build::resolve_context(&spec, &scratch, &mut std::io::stdin().lock())
        .with_context(|| format!("cannot get the build context {}", args.context))?;
    let mut opts = BuildOptions::new(&context.dir);
    opts.dockerfile_text = context.dockerfile_text.clone();
    if dockerfile_stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .context("cannot read the Dockerfile from standard input")?;
        opts.dockerfile_text = Some(text);
    } else if let Some(f) = &args.file {
        // A relative -f is relative to the context for a fetched context
        // (`strata build -f web/Dockerfile https://...git`), as docker does.
        opts.dockerfile = Some(if spec.is_remote() && f.is_relative() {
            context.dir.join(f)
        } else {
            f.clone()
        });
    }
    opts.build_args = parse_build_args(&args.build_args);
    opts.target = args.target.clone();
    opts.no_cache = args.no_cache;
    opts.no_cache_filter = args.no_cache_filter.clone();
    opts.network = args.network;
    for spec in &args.secrets {
        let (id, src) = parse_secret(spec)?;
        opts.secrets.insert(id, src);
    }
    let epoch = opts
        .build_args
        .get("SOURCE_DATE_EPOCH")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(s.epoch);
    opts.epoch = epoch;
    opts.preserve_timestamps = args.timestamps == Timestamps::Preserve;
    let platforms = match args.platform.as_deref() {
        Some(p) => super::parse_platforms("--platform", p)?,
        None => Vec::new(),
    };
    if platforms.len() > 1 {
        for o in &outputs {
            if let Output::Docker(_) | Output::Tar(_) = o {
                return Err(usage(
                    "a docker-archive or a tar output holds one platform: build with one \
                     --platform, or use --output type=oci,dest=DIR for all of them",
                ));
            }
        }
    }
    opts.platform = platforms.first().cloned();
    opts.isolation = match args.isolation {
        Isolation::Auto => strata_sandbox::Isolation::Auto,
        Isolation::Oci => strata_sandbox::Isolation::Oci,
        Isolation::Builtin => strata_sandbox::Isolation::Builtin,
        Isolation::Runc => strata_sandbox::Isolation::Runc,
        Isolation::Crun => strata_sandbox::Isolation::Crun,
    };
    if let Some(seccomp) = args.security_opt.last() {
        opts.seccomp = seccomp.clone();
    }
    opts.snapshots = s.snapshots;
    opts.state_dir = Some(s.run_dir.clone());
    opts.binfmt_dir = s.binfmt_dir.clone();
    // Remote build caches: looked up after the store's own, exported after
    // the build (docs/cache.md).
    for spec in &args.cache_from {
        let (cache, attrs) =
            super::cache::open_build_cache(spec, &args.insecure_registries, &store, true)?;
        for (k, v) in attrs {
            match (k.as_str(), v.as_str()) {
                ("mounts", "true") => opts.mounts_from.push(opts.cache_from.0.len()),
                ("mounts", "false") => {}
                _ => {
                    return Err(usage(format!(
                        "--cache-from {spec}: {k}={v} is not mounts=true|false"
                    )))
                }
            }
        }
        opts.cache_from.0.push(cache);
    }
    for spec in &args.cache_to {
        let (cache, attrs) =
            super::cache::open_build_cache(spec, &args.insecure_registries, &store, false)?;
        let mut export = strata_build::CacheExport {
            cache,
            max: false,
            ignore_error: false,
            mounts: false,
        };
        for (k, v) in attrs {
            match (k.as_str(), v.as_str()) {
                ("mode", "max") => export.max = true,
                ("mode", "min") => export.max = false,
                ("ignore-error", "true") => export.ignore_error = true,
                ("ignore-error", "false") => export.ignore_error = false,
                ("mounts", "true") => export.mounts = true,
                ("mounts", "false") => export.mounts = false,
                _ => {
                    return Err(usage(format!(
                        "--cache-to {spec}: {k}={v} is not one of mode=min|max, ignore-error=true|false, mounts=true|false"
                    )))
                }
            }
        }
        opts.cache_to.push(export);
    }
    // Pushed and nothing else read: the layers a registry cache gives stay
    // there (the push mounts them), the final image's too.
    opts.lazy_final = push && args.sbom.is_none() && outputs.iter().all(|o| *o == Output::Registry);
    let mode = if s.quiet {
        Mode::Quiet
    } else {
        match args.progress {
            Progress::Plain => Mode::Plain,
            Progress::Tty => Mode::Tty,
            Progress::Json => Mode::Json,
            Progress::Auto if s.stderr_tty => Mode::Tty,
            Progress::Auto => Mode::Plain,
        }
    };
    if mode == Mode::Plain || mode == Mode::Tty {
        // The summary after the build reads each new layer's files from
        // what was recorded while it was written, not from its blob.
        opts.layer_tap = Some(strata_analyze::image::summary_tap(&store));
    }
    let progress = BuildProgress::new(mode, args.explain);
    let pull = super::registry::PullResolver::new(s, &args.insecure_registries);
    if platforms.len() > 1 {
        if args.provenance.is_some() || args.sbom.is_some() {
            return Err(usage(
                "--sbom and --provenance describe one image: build each platform with its own \
                 --platform, or attach them afterwards with `strata sbom --attach`",
            ));
        }
        let multi = Multi {
            store: &store,
            opts: &opts,
            platforms: &platforms,
            tags: &tags,
            outputs: &outputs,
            push,
            mode,
        };
        return multi.run(&args, s, &progress, &pull);
    }
    let resolver = super::supply::RecordingResolver {
        inner: &pull,
        seen: std::sync::Mutex::new(Vec::new()),
    };
    let recorder = strata_build::provenance::Recorder::default();
    let want_provenance = args.provenance.is_some();
    let result = strata_build::build(&store, &opts, &resolver, &|e| {
        if want_provenance {
            recorder.record(&e);
        }
        progress.event(e)
    });
    let out = match result {
        Ok(o) => o,
        Err(e) => {
            progress.clear();
            // A step's own program reports a full disk in its own words
            // ("I/O error"): say where the space ran out.
            let low = store.available_space().is_ok_and(|n| n < LOW_SPACE);
            let context = if low {
                format!(
                    "build failed, and there is no space left on the disk of the store at {} \
                     ({} free)",
                    store.root().display(),
                    human_bytes(store.available_space().unwrap_or(0))
                )
            } else {
                "build failed".to_owned()
            };
            return Err(anyhow::Error::new(e).context(context));
        }
    };
    let image = out.image;
    if args.sbom.is_some() || args.provenance.is_some() {
        let facts = super::supply::BuildFacts {
            name: tags
                .first()
                .map(|t| t.familiar())
                .unwrap_or_else(|| image.id().to_string()),
            opts: &opts,
            epoch,
            recorder: &recorder,
            bases: resolver
                .seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        super::supply::after_build(&store, &image, args.sbom, args.provenance, &facts)?;
    }
    for t in &tags {
        store
            .tag(t, &image.descriptor)
            .with_context(|| format!("cannot tag {t}"))?;
        if mode == Mode::Plain || mode == Mode::Tty {
            eprintln!("tagged {}", t.familiar());
        }
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, image.id().to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    for o in &outputs {
        let items = [SaveItem {
            image: image.clone(),
            names: tags.clone(),
        }];
        match o {
            Output::Oci(dest) => super::image::export(&store, &items, dest, ArchiveFormat::Oci)?,
            Output::Docker(dest) => {
                super::image::export(&store, &items, dest, ArchiveFormat::Docker)?
            }
            Output::Registry => {}
            Output::Local(dir) => strata_layer::unpack_layers(&store, &image.layers, dir)
                .with_context(|| format!("cannot write the build's files to {}", dir.display()))?,
            Output::Tar(dest) => {
                let scratch = scratch.with_extension("rootfs");
                let what = || {
                    format!(
                        "cannot write the build's files as a tar to {}",
                        dest.display()
                    )
                };
                if dest.as_os_str() == "-" {
                    let out = std::io::BufWriter::new(std::io::stdout().lock());
                    let mut out =
                        strata_layer::write_rootfs_tar(&store, &image.layers, &scratch, out)
                            .with_context(what)?;
                    std::io::Write::flush(&mut out).with_context(what)?;
                } else {
                    // Written beside the destination and renamed: a killed
                    // build never leaves half a tar under the name.
                    let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
                    let f = std::fs::File::create(&tmp).with_context(what)?;
                    let written =
                        strata_layer::write_rootfs_tar(&store, &image.layers, &scratch, f)
                            .map_err(anyhow::Error::from)
                            .and_then(|f| Ok(f.sync_all()?))
                            .and_then(|()| Ok(std::fs::rename(&tmp, dest)?));
                    if written.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    written.with_context(what)?;
                }
            }
        }
    }
    if push {
        for t in &tags {
            super::registry::push_image(s, &store, &image, t, &args.insecure_registries)?;
        }
    }
    // Layers left in the registry they were pushed to are not downloaded
    // to be summed up.
    let all_local = image
        .layers
        .iter()
        .all(|l| store.remote_blob(&l.descriptor.digest).is_none());
    if (mode == Mode::Plain || mode == Mode::Tty) && all_local {
        // One screen of what analyze finds; a failure here never fails the build.
        let name = tags
            .first()
            .map(|t| t.familiar())
            .unwrap_or_else(|| image.id().to_string());
        match strata_analyze::image::build_summary(&store, &image, &name, &out.history_lines) {
            Ok(summary) => eprint!("{summary}"),
            Err(e) => tracing::warn!("post-build analysis skipped: {:#}", anyhow::Error::new(e)),
        }
    }
    // With the files going to standard output, the ID must not follow them.
    let stdout_taken = outputs
        .iter()
        .any(|o| matches!(o, Output::Tar(d) if d.as_os_str() == "-"));
    if mode == Mode::Quiet && !stdout_taken {
        outln!("{}", image.id());
    }
    // The image is built and tagged; a failed cache export still fails the
    // command (the export was asked for), as BuildKit's does.
    if let Some(e) = out.cache_export_error {
        return Err(anyhow::Error::new(e));
    }
    Ok(ExitCode::SUCCESS)
}

/// A build for several platforms: one index, tagged, exported, pushed.
struct Multi<'a> {
    store: &'a strata_oci::Store,
    opts: &'a BuildOptions,
    platforms: &'a [strata_oci::Platform],
    tags: &'a [strata_oci::Reference],
    outputs: &'a [Output],
    push: bool,
    mode: Mode,
}

impl Multi<'_> {
    fn run(
        &self,
        args: &BuildArgs,
        s: &Settings,
        progress: &BuildProgress,
        resolver: &super::registry::PullResolver,
    ) -> CmdResult {
        let store = self.store;
        let human = self.mode == Mode::Plain || self.mode == Mode::Tty;
        let out = strata_build::build_platforms(store, self.opts, self.platforms, resolver, &|e| {
            progress.event(e)
        })
        .map_err(|e| {
            progress.clear();
            anyhow::Error::new(e).context("build failed")
        })?;
        let index = &out.index;
        for t in self.tags {
            store
                .tag(t, index)
                .with_context(|| format!("cannot tag {t}"))?;
            if human {
                eprintln!(
                    "tagged {} (index of {} platforms)",
                    t.familiar(),
                    out.builds.len()
                );
            }
        }
        if let Some(path) = &args.iidfile {
            std::fs::write(path, index.digest.to_string())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        // The image the index offers this machine (or its first).
        let image = store.image(index, None)?;
        for o in self.outputs {
            let items = [SaveItem {
                image: image.clone(),
                names: self.tags.to_vec(),
            }];
            match o {
                Output::Oci(dest) => super::image::export(store, &items, dest, ArchiveFormat::Oci)?,
                // One directory per platform, named as buildx names them.
                Output::Local(dir) => {
                    for (p, b) in &out.builds {
                        let mut name = format!("{}_{}", p.os, p.architecture);
                        if let Some(v) = &p.variant {
                            name.push_str(&format!("_{v}"));
                        }
                        let sub = dir.join(name);
                        strata_layer::unpack_layers(store, &b.image.layers, &sub).with_context(
                            || format!("cannot write the build's files to {}", sub.display()),
                        )?;
                    }
                }
                Output::Registry => {}
                // Refused before the build.
                Output::Docker(_) | Output::Tar(_) => {}
            }
        }
        if self.push {
            for t in self.tags {
                super::registry::push_image(s, store, &image, t, &args.insecure_registries)?;
            }
        }
        if self.mode == Mode::Quiet {
            outln!("{}", index.digest);
        } else if human {
            for (p, b) in &out.builds {
                eprintln!("  {p}: {} ({})", b.image.descriptor.digest, b.image.id());
            }
            eprintln!("index {}", index.digest);
        }
        for (_, b) in &out.builds {
            if let Some(e) = &b.cache_export_error {
                return Err(anyhow::anyhow!("{e}"));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(
            parse_output("type=oci,dest=out").unwrap(),
            Output::Oci("out".into())
        );
        assert_eq!(
            parse_output("type=docker,dest=a.tar").unwrap(),
            Output::Docker("a.tar".into())
        );
        assert_eq!(parse_output("type=registry").unwrap(), Output::Registry);
        assert_eq!(parse_output("out").unwrap(), Output::Local("out".into()));
        assert_eq!(
            parse_output("type=local,dest=d").unwrap(),
            Output::Local("d".into())
        );
        assert_eq!(parse_output("-").unwrap(), Output::Tar("-".into()));
        assert_eq!(
            parse_output("type=tar,dest=f.tar").unwrap(),
            Output::Tar("f.tar".into())
        );
        assert!(parse_output("type=oci").is_err());
        assert!(parse_output("dest=x").is_err());
        assert!(parse_output("type=tarball,dest=x").is_err());
    }

    #[test]
    fn secrets() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let spec = format!("id=tok,src={}", f.path().display());
        assert_eq!(parse_secret(&spec).unwrap().0, "tok");
        assert_eq!(
            parse_secret("id=x,env=HOME").unwrap().1,
            SecretSource::Env("HOME".into())
        );
        assert!(parse_secret("src=/etc/hostname").is_err());
        assert!(parse_secret("id=x,src=/nonexistent/file").is_err());
    }

    #[test]
    fn build_args() {
        let a = parse_build_args(&["A=1".into(), "B=".into(), "STRATA_SURELY_UNSET_VAR".into()]);
        assert_eq!(a.get("A").map(String::as_str), Some("1"));
        assert_eq!(a.get("B").map(String::as_str), Some(""));
        assert!(!a.contains_key("STRATA_SURELY_UNSET_VAR"));
    }
}
