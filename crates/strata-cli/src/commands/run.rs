//! `strata run`: docker run semantics over the store. The image's layers are
//! the overlay's read-only lower directories (their snapshots); a fresh
//! upper directory is the container's writable layer, removed with `--rm`.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use strata_build::MergedView;
use strata_layer::Snapshotter;
use strata_sandbox::{container_args, merge_env, parse_volume, Network, RootFs, RunSpec, Stdio};

use crate::cli::{Isolation, NetworkMode, RunArgs};
use crate::settings::Settings;

use super::{open_store, CmdResult};

pub fn run(args: RunArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let image = store.find_image(&args.image).map_err(|e| {
        if e.is_not_found() {
            crate::render::hinted(
                format!("no such image: {}", args.image),
                "`strata images` lists the images in the store; build, pull, import or load one first",
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot read image {}", args.image))
        }
    })?;
    let snap = Snapshotter::new(&store)?;
    let mut lease = store.lease("run")?;
    for l in &image.layers {
        lease.add_digest(&l.descriptor.digest)?;
        lease.add_snapshot(l.diff_id.hex())?;
    }
    let lowerdirs = snap
        .lowerdirs(&image)
        .context("cannot extract the image's layers")?;
    let config = image.config.config.clone().unwrap_or_default();

    // Command: docker's ENTRYPOINT / CMD / arguments rules.
    let argv = container_args(
        config.entrypoint.as_deref().unwrap_or_default(),
        config.cmd.as_deref().unwrap_or_default(),
        &args.args,
        args.entrypoint.as_deref(),
    );
    if argv.is_empty() {
        bail!("no command: the image has no ENTRYPOINT or CMD and none was given");
    }
    let view = MergedView::new(lowerdirs.clone());
    let user_spec = args
        .user
        .clone()
        .or_else(|| config.user.clone())
        .unwrap_or_default();
    let (user, home) = if user_spec.is_empty() {
        (strata_sandbox::User::root(), "/root".to_owned())
    } else {
        let passwd = view.read_small("/etc/passwd");
        let group = view.read_small("/etc/group");
        let r = strata_sandbox::resolve_user_with(&user_spec, passwd.as_deref(), group.as_deref())
            .with_context(|| format!("cannot run as user {user_spec:?}"))?;
        (r.user, r.home)
    };
    let env = merge_env(
        config.env.as_deref().unwrap_or_default(),
        &args.env,
        |k| std::env::var(k).ok(),
        &home,
    );
    let mut mounts = Vec::new();
    for v in &args.volumes {
        mounts.push(parse_volume(v).map_err(|e| crate::render::usage(format!("-v {v}: {e}")))?);
    }

    let key = format!(
        "ctr-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let _hold = store.hold_active(&key)?;
    let snap_mounts = snap.prepare(&key, &image.layers)?;
    let upper = snap.writable_dir(&key);
    let work = upper.with_file_name("work");
    let _ = snap_mounts;
    let rootfs = RootFs::Overlay {
        lowerdirs,
        upperdir: upper.clone(),
        workdir: work,
    };
    let mut spec = RunSpec::new(rootfs, argv);
    spec.env = env;
    spec.cwd = args
        .workdir
        .clone()
        .or(config.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    spec.user = user;
    spec.mounts = mounts;
    spec.network = match args.network {
        NetworkMode::Host => Network::Host,
        NetworkMode::None => Network::None,
    };
    if let Some(h) = &args.hostname {
        spec.hostname = h.clone();
    } else {
        spec.hostname = image.id().short().to_owned();
    }
    spec.stdio = Stdio::Inherit;
    if let Some(seccomp) = args.security_opt.last() {
        spec.seccomp = seccomp.clone();
    }
    let isolation = match args.isolation {
        Isolation::Auto => strata_sandbox::Isolation::Auto,
        Isolation::Oci => strata_sandbox::Isolation::Oci,
        Isolation::Builtin => strata_sandbox::Isolation::Builtin,
    };
    let executor = strata_sandbox::pick(isolation, store.root().join("run"))?;
    let status = executor.run(&spec);
    if args.rm {
        snap.remove(&key)
            .with_context(|| format!("cannot remove the container layer {key}"))?;
    } else if !s.quiet {
        eprintln!(
            "container layer kept in {} (`strata prune` removes it)",
            upper.display()
        );
    }
    let status = status.context("cannot run the container")?;
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}
