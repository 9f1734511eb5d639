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
                    started,
                )
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_mount(
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
        mut mounts: Vec<strata_sandbox::Mount>,
        script: Option<(String, String)>,
        command_text: String,
        started: std::time::SystemTime,
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
        let mut layer_opts = self.layer_opts.clone();
        if let strata_layer::Timestamps::Epoch(to) = layer_opts.timestamps {
            let since = i64::try_from(started.as_secs()).unwrap_or(i64::MAX) - 1;
            layer_opts.timestamps = strata_layer::Timestamps::Clamp { since, to };
        }
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

/// The sandbox's root filesystem from the snapshotter's mounts.
pub(super) fn rootfs_from(mounts: &[strata_layer::Mount]) -> Result<RootFs> {
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
