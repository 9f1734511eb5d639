//! RUN: the command line, environment, mounts (cache, secret, bind,
//! tmpfs), and running it on an overlay of the stage's snapshots.

use super::*;

impl Shared<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        st: &mut StageState,
        id: StepId,
        label: &str,
        ins: &Instruction,
        r: &Run,
        t: Instant,
        line: usize,
    ) -> Result<()> {
        // Wall-clock start, before mounts are materialised: anything with a
        // newer mtime in the layer was made by this step (see execute_run).
        let started = std::time::SystemTime::now();
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
            strata_dockerfile::NetworkMode::Default => self.opts.network,
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
        self.key_timestamps(&mut inputs);
        // The seccomp profile decides which calls the step may make, so what
        // it can produce: keyed (a step cached unconfined is not reused by a
        // confined build).
        let seccomp = match &self.opts.seccomp {
            strata_sandbox::Seccomp::Default => "default".to_owned(),
            strata_sandbox::Seccomp::Unconfined => "unconfined".to_owned(),
            strata_sandbox::Seccomp::Profile(p) => {
                format!("profile {}", Digest::sha256(format!("{p:?}").as_bytes()))
            }
        };
        inputs.fields.insert("seccomp".into(), seccomp);
        // Mounts: keyed now, made only if the step runs.
        let mut mounts = RunMounts::default();
        for m in &r.mounts {
            // Every option's value is expanded, as BuildKit does
            // (`uid=$UID`, `target=$HOME/.cache`).
            let expand = |v: &str| self.expand(st, v).map_err(|e| e.to_string());
            let m = MountSpec::parse(&m.raw, Some(&expand))
                .map_err(|e| Error::invalid(format!("invalid --mount={}: {e}", m.raw)))?;
            self.plan_mount(st, &m, &mut inputs, &mut mounts)?;
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
            .collect();
        self.layer_step(
            st,
            id,
            label,
            inputs,
            StepKind::default(),
            hit,
            t,
            history,
            line,
            move |s, st| {
                s.check_emulation(st)?;
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
                    started,
                )
            },
        )
        .map(drop)
    }

    /// Adds what mount `m` is to the step's key, and what to make for it
    /// (nothing is copied or created until the step runs).
    pub(super) fn plan_mount(
        &self,
        st: &StageState,
        m: &MountSpec,
        inputs: &mut Inputs,
        mounts: &mut RunMounts,
    ) -> Result<()> {
        let workdir = st.workdir();
        let abs = |p: &str| -> String {
            if p.starts_with('/') {
                p.to_owned()
            } else {
                format!("{}/{}", workdir.trim_end_matches('/'), p)
            }
        };
        let target = m.target.clone();
        match m.kind {
            MountType::Cache => {
                let target = abs(&target
                    .ok_or_else(|| Error::invalid("RUN --mount=type=cache needs target="))?);
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                // One cache directory per id and initial owner and mode (as
                // BuildKit keys a cache mount by the directory it starts as).
                let (uid, gid, mode) = (
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                    m.mode.unwrap_or(0o755),
                );
                let sharing = match m.sharing {
                    None | Some(strata_dockerfile::CacheSharing::Shared) => "shared",
                    Some(strata_dockerfile::CacheSharing::Private) => "private",
                    Some(strata_dockerfile::CacheSharing::Locked) => "locked",
                };
                inputs.fields.insert(
                    format!("mount:{target}"),
                    format!(
                        "cache id={id} uid={uid} gid={gid} mode={mode:o} sharing={sharing} readonly={}",
                        m.readonly
                    ),
                );
                mounts.pending.push(Pending::Cache {
                    id,
                    uid,
                    gid,
                    mode,
                    locked: sharing == "locked",
                    target,
                    readonly: m.readonly,
                });
            }
            MountType::Tmpfs => {
                let target = abs(&target
                    .ok_or_else(|| Error::invalid("RUN --mount=type=tmpfs needs target="))?);
                let size = m.size.as_deref().map(parse_size).transpose()?;
                inputs
                    .fields
                    .insert(format!("mount:{target}"), format!("tmpfs size={size:?}"));
                mounts
                    .pending
                    .push(Pending::Ready(strata_sandbox::Mount::tmpfs(target, size)));
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
                let (uid, gid, mode) = (
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                    m.mode.unwrap_or(0o400),
                );
                let file_target = (m.env.is_none() || target.is_some()).then(|| {
                    target
                        .as_deref()
                        .map(abs)
                        .unwrap_or_else(|| format!("/run/secrets/{id}"))
                });
                // The key holds what the step is (a secret with this id,
                // mounted here, with this mode), never whether the user
                // gave it this time, nor its value: as BuildKit does, a
                // build with or without the secret finds the same entry.
                if let Some(var) = &m.env {
                    inputs.fields.insert(
                        format!("secret-env:{var}"),
                        format!("id={id} required={}", m.required),
                    );
                }
                if let Some(t) = &file_target {
                    inputs.fields.insert(
                        format!("mount:{t}"),
                        format!(
                            "secret id={id} uid={uid} gid={gid} mode={mode:o} required={}",
                            m.required
                        ),
                    );
                }
                let Some(src) = self.opts.secrets.get(&id) else {
                    if m.required {
                        return Err(Error::invalid(format!(
                            "secret {id} is required but was not given (strata build --secret id={id},src=FILE)"
                        )));
                    }
                    return Ok(());
                };
                mounts.pending.push(Pending::Secret {
                    id,
                    source: src.clone(),
                    env: m.env.clone(),
                    target: file_target,
                    uid,
                    gid,
                    mode,
                });
            }
            MountType::Bind => {
                let target =
                    abs(&target
                        .ok_or_else(|| Error::invalid("RUN --mount=type=bind needs target="))?);
                let source = m.source.clone().unwrap_or_else(|| "/".into());
                let (pending, desc) = match &m.from {
                    None => {
                        // The context, filtered by .dockerignore: only admitted
                        // files are visible.
                        let rel = strata_layer::clean_components(&source).join("/");
                        let rel = if rel.is_empty() { ".".to_owned() } else { rel };
                        let entry = self.ctx.resolve(&rel)?.clone();
                        let index = self.ctx.index_paths(&[entry.path.as_str()])?;
                        let preserve = self.opts.preserve_timestamps;
                        let digest = crate::fetch::context_bind_digest(&index, preserve);
                        let desc = format!("bind context:{rel} mode={:o} {digest}", entry.mode);
                        let time = (!preserve).then(|| self.epoch());
                        (
                            Pending::Context {
                                entry,
                                time,
                                target,
                                readonly: m.readonly,
                            },
                            desc,
                        )
                    }
                    Some(f) => {
                        let (layers, key) = match self.plan.resolve_from(st.index, f) {
                            FromRef::Stage(i) => {
                                let r = self.stage_result(i)?;
                                (r.view.clone(), r.key.clone())
                            }
                            FromRef::Image(r) => {
                                let img = self.image(&r)?;
                                (img.view.clone(), img.key.clone())
                            }
                        };
                        let desc = format!("bind from:{} source={source}", key.hex());
                        let view = MergedView::of(layers);
                        (
                            Pending::View {
                                view,
                                source,
                                target,
                                readonly: m.readonly,
                            },
                            desc,
                        )
                    }
                };
                inputs.fields.insert(
                    format!("mount:{}", pending_target(&pending)),
                    format!("{desc} rw={}", !m.readonly),
                );
                mounts.pending.push(pending);
            }
            MountType::Ssh => {
                return Err(Error::invalid(
                    "RUN --mount=type=ssh needs an SSH agent socket, which strata does not forward; use a secret mount with a deploy key instead",
                ));
            }
        }
        Ok(())
    }

    /// Makes the planned mounts (the step runs): cache directories, copies
    /// of the context or of a stage, private copies of secrets.
    fn make_mounts(&self, id: StepId, planned: RunMounts) -> Result<MadeMounts> {
        let mut made = MadeMounts::default();
        for (n, p) in planned.pending.into_iter().enumerate() {
            match p {
                Pending::Ready(m) => made.mounts.push(m),
                Pending::Cache {
                    id: cid,
                    uid,
                    gid,
                    mode,
                    locked,
                    target,
                    readonly,
                } => {
                    let key = Cache::mount_key(&cid, uid, gid, mode);
                    let dir = self.cache.mount_dir_with(&cid, uid, gid, mode, |tmp| {
                        self.import_mount(&key, tmp);
                        Ok(())
                    })?;
                    lock(&self.used_mounts).insert(key, dir.clone());
                    if locked {
                        let f = fs::File::open(&dir).map_err(|e| Error::io("open", &dir, e))?;
                        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                            .map_err(|e| Error::io("lock", &dir, e.into()))?;
                        made.holds.push(f);
                    }
                    made.cache_dirs.push(dir.clone());
                    made.mounts
                        .push(strata_sandbox::Mount::bind(dir, target, readonly));
                }
                Pending::Context {
                    entry,
                    time,
                    target,
                    readonly,
                } => {
                    // Read-only: the store's synced copy (only what changed
                    // since the last use is copied); writable: a copy of its own.
                    let bind = if readonly {
                        let tree =
                            crate::bindtree::bind_tree(self.cache.dir(), &self.ctx, &entry, time)?;
                        let path = tree.path.clone();
                        made.binds.push(tree);
                        path
                    } else {
                        let dir = self.tmp.join(format!("bind-{}-{}-{n}", id.stage, id.step));
                        made.temp.push(dir.clone());
                        crate::fetch::materialize_context(&self.ctx, &entry, &dir, time)?
                    };
                    made.mounts
                        .push(strata_sandbox::Mount::bind(bind, target, readonly));
                }
                Pending::View {
                    view,
                    source,
                    target,
                    readonly,
                } => {
                    let dir = self.tmp.join(format!("bind-{}-{}-{n}", id.stage, id.step));
                    made.temp.push(dir.clone());
                    let bind = crate::fetch::materialize_view(&view, &source, &dir, readonly)?;
                    made.mounts
                        .push(strata_sandbox::Mount::bind(bind, target, readonly));
                }
                Pending::Secret {
                    id: sid,
                    source,
                    env,
                    target,
                    uid,
                    gid,
                    mode,
                } => {
                    let data = match &source {
                        SecretSource::File(p) => {
                            fs::read(p).map_err(|e| Error::io("read secret", p, e))?
                        }
                        SecretSource::Env(var) => std::env::var(var)
                            .map_err(|_| {
                                Error::invalid(format!(
                                    "secret {sid}: environment variable {var} is not set"
                                ))
                            })?
                            .into_bytes(),
                    };
                    if let Some(var) = &env {
                        let v = String::from_utf8_lossy(&data);
                        made.env.push(format!("{var}={}", v.trim_end_matches('\n')));
                    }
                    if let Some(target) = target {
                        // Bind a private copy, so the mode asked for applies
                        // and the host file is never writable from the build.
                        let copy_path = self
                            .tmp
                            .join(format!("secret-{}-{}-{n}", id.stage, id.step));
                        made.temp.push(copy_path.clone());
                        write_private(&copy_path, &data)?;
                        use std::os::unix::fs::PermissionsExt;
                        fs::set_permissions(&copy_path, fs::Permissions::from_mode(mode))
                            .map_err(|e| Error::io("chmod", &copy_path, e))?;
                        std::os::unix::fs::chown(&copy_path, Some(uid), Some(gid))
                            .map_err(|e| Error::io("chown", &copy_path, e))?;
                        made.mounts
                            .push(strata_sandbox::Mount::bind(copy_path, target, true));
                    }
                }
            }
        }
        Ok(made)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn execute_run(
        &self,
        st: &StageState,
        id: StepId,
        view: &MergedView,
        argv: Vec<String>,
        env: Vec<String>,
        user: &str,
        workdir: String,
        network: Network,
        planned: RunMounts,
        script: Option<(String, String)>,
        command_text: String,
        started: std::time::SystemTime,
    ) -> Result<Option<LayerRecord>> {
        let resolved_user = crate::container::resolve_user(view, user)?.user;
        let mut made = self.make_mounts(id, planned)?;
        let mut env = env;
        env.extend(made.env.iter().cloned());
        let mut mounts = std::mem::take(&mut made.mounts);
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
        let started = started
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let active = format!(
            "run-{}-{}-{}-{}",
            std::process::id(),
            id.stage,
            id.step,
            started.as_nanos()
        );
        let _hold = self.store.hold_active(&active)?;
        let rootfs =
            crate::container::prepare_rootfs(&self.snap, &active, &st.layers, self.rootfs_kind)?;
        let guard = ActiveSnapshot {
            snap: &self.snap,
            key: active.clone(),
            armed: true,
        };
        // Times the files in cache mounts carry, before and after the run:
        // a copy out of a cache that keeps them must not bring this
        // machine's history into the layer.
        let mut foreign = std::collections::BTreeSet::new();
        mtimes_under(&made.cache_dirs, &mut foreign)?;
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
        spec.seccomp = self.opts.seccomp.clone();
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
        // What the command wrote gets SOURCE_DATE_EPOCH; what it unpacked
        // keeps the mtime its input carried (see `Timestamps::Clamp`). One
        // second of slack covers the file system's coarse clock. Copies made
        // for rw bind mounts are newer than `started`, so a `cp -a` out of
        // them is stamped too.
        // This holds with `--timestamps preserve` too: it keeps the
        // context's times, but the build's own clock never enters a layer.
        let mut layer_opts = self.layer_opts.clone();
        let since = i64::try_from(started.as_secs()).unwrap_or(i64::MAX) - 1;
        layer_opts.timestamps = strata_layer::Timestamps::Clamp {
            since,
            to: self.epoch(),
        };
        mtimes_under(&made.cache_dirs, &mut foreign)?;
        layer_opts.foreign_times = foreign;
        let info = self.snap.commit(&active, &layer_opts)?;
        let mut guard = guard;
        guard.armed = false;
        Ok(layer_record(info))
    }
}

/// Removes an active snapshot unless disarmed (after a successful commit),
/// so a failed RUN leaves no half layer behind.
pub(super) struct ActiveSnapshot<'a> {
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

/// Whether a shell-form RUN is only a heredoc marker (`<<EOF`, `<<-"EOF"`).
pub(super) fn is_heredoc_marker(cmd: &str) -> bool {
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

/// `size=` of a tmpfs: bytes, or with k/m/g suffixes.
pub(super) fn parse_size(s: &str) -> Result<u64> {
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

pub(super) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
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
}

/// A mount of a RUN step, keyed but not made yet.
pub(super) enum Pending {
    /// Nothing to make (tmpfs).
    Ready(strata_sandbox::Mount),
    /// `type=cache`: a persistent directory of the store.
    Cache {
        id: String,
        uid: u32,
        gid: u32,
        mode: u32,
        locked: bool,
        target: String,
        readonly: bool,
    },
    /// `type=bind` of the context.
    Context {
        entry: strata_context::Entry,
        time: Option<i64>,
        target: String,
        readonly: bool,
    },
    /// `type=bind,from=`: a stage or image.
    View {
        view: MergedView,
        source: String,
        target: String,
        readonly: bool,
    },
    /// `type=secret`, as a file and/or an environment variable.
    Secret {
        id: String,
        source: SecretSource,
        env: Option<String>,
        target: Option<String>,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

fn pending_target(p: &Pending) -> &str {
    match p {
        Pending::Ready(m) => &m.target,
        Pending::Cache { target, .. }
        | Pending::Context { target, .. }
        | Pending::View { target, .. } => target,
        Pending::Secret { target, .. } => target.as_deref().unwrap_or(""),
    }
}

/// The mounts of a RUN step, planned.
#[derive(Default)]
pub(super) struct RunMounts {
    pending: Vec<Pending>,
}

/// The mounts of a RUN step, made.
#[derive(Default)]
struct MadeMounts {
    mounts: Vec<strata_sandbox::Mount>,
    /// Secrets exposed as environment variables.
    env: Vec<String>,
    /// Locks held for the run (`sharing=locked`).
    holds: Vec<fs::File>,
    /// Cache directories (their files' times may be copied out).
    cache_dirs: Vec<PathBuf>,
    /// Copies made for the run (binds, secrets), removed after it.
    temp: Vec<PathBuf>,
    /// Synced copies of the context in use (read-only binds).
    binds: Vec<crate::bindtree::BindTree>,
}

impl Drop for MadeMounts {
    fn drop(&mut self) {
        for p in &self.temp {
            if p.is_dir() {
                let _ = strata_oci::remove_tree(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}

/// Adds the mtime (whole seconds) of everything under `dirs` to `times`.
fn mtimes_under(dirs: &[PathBuf], times: &mut std::collections::BTreeSet<i64>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(|e| Error::io("list", &d, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io("list", &d, e))?;
            let meta = e
                .metadata()
                .map_err(|err| Error::io("stat", e.path(), err))?;
            times.insert(meta.mtime());
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}
