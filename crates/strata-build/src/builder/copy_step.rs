//! COPY, ADD and WORKDIR: the steps that write files into a layer
//! without running anything.

use super::*;

impl Shared<'_> {
    pub(super) fn workdir(
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
        let comps = strata_layer::clean_components(&joined);
        let wd = format!("/{}", comps.join("/"));
        st.cfg().working_dir = Some(wd.clone());
        let history = format!("WORKDIR {wd}");
        // Below a layer left in a registry, a WORKDIR made before (owned by
        // root) is looked up before the view is read, so a hit never
        // fetches the layers below.
        if wd != "/" && st.user().is_empty() && !st.no_cache && self.below_remote(st) {
            let mut inputs = Inputs::new(tag::WORKDIR, &st.key, history.clone());
            inputs.fields.insert("owner".into(), "0:0".into());
            self.key_timestamps(&mut inputs);
            let hit = Explanation::Hit {
                files: 0,
                touched: 0,
            };
            let early = self.cached_step(st, id, label, inputs, false, hit, t, &history, line)?;
            if let Early::Done = early {
                return Ok(());
            }
        }
        let view = st.merged();
        let resolved = view
            .resolve(&wd, true)
            .map_err(|e| Error::invalid(format!("cannot resolve WORKDIR {wd}: {e}")))?;
        let exists = view
            .stat_exact(&resolved)
            .map_err(|e| Error::invalid(format!("cannot look up WORKDIR {wd}: {e}")))?
            .is_some();
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
        self.key_timestamps(&mut inputs);
        let mut entries = Vec::new();
        for n in 1..=resolved.len() {
            let c = &resolved[..n];
            let mut e = strata_layer::Entry::new(c.join("/"), strata_layer::EntryKind::Dir);
            let found = view
                .stat_exact(c)
                .map_err(|e| Error::invalid(format!("cannot look up WORKDIR {wd}: {e}")))?;
            match found {
                Some(m) => {
                    e.mode = m.mode();
                    e.uid = m.uid();
                    e.gid = m.gid();
                    e.mtime = m.mtime();
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
            StepKind::default(),
            Explanation::Hit {
                files: 0,
                touched: 0,
            },
            t,
            history,
            line,
            move |s, _| s.write_entries(id, entries),
        )
        .map(drop)
    }

    /// `user[:group]` to ids through the stage's /etc/passwd and /etc/group.
    pub(super) fn resolve_owner(&self, view: &MergedView, spec: &str) -> Result<Owner> {
        let passwd = view.read_small("/etc/passwd");
        let group = view.read_small("/etc/group");
        let r = strata_sandbox::resolve_user_with(spec, passwd.as_deref(), group.as_deref())?;
        Ok(Owner {
            uid: r.user.uid,
            gid: r.user.gid,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy(
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

        // What the key hashes besides the sources.
        let parent = st.key.clone();
        let stage_workdir = st.workdir();
        let make_inputs = |files: BTreeMap<String, String>| {
            let mut inputs = Inputs::new(tag::COPY, &parent, canonical.clone());
            inputs.files = files;
            inputs
                .fields
                .insert("workdir".into(), stage_workdir.clone());
            self.key_timestamps(&mut inputs);
            // The ids --chown resolved to, not the names: a base image that
            // gives `app` another uid makes another layer (with --link too).
            if let Some(o) = owner {
                inputs
                    .fields
                    .insert("owner".into(), format!("{}:{}", o.uid, o.gid));
            }
            if is_add {
                // Whether archives are unpacked, as the flag and the source
                // kind decide it (a local archive by default, a URL never).
                inputs.fields.insert(
                    "unpack".into(),
                    format!(
                        "local={} url={}",
                        c.unpack.unwrap_or(true),
                        c.unpack.unwrap_or(false)
                    ),
                );
            }
            // --link: the layer does not depend on what is below it, so it
            // is looked up without the parent key (a new base reuses it);
            // the chain key still includes the parent.
            if c.link {
                inputs.parent.clear();
            }
            inputs
        };

        // COPY --from is looked up first by the layers it copies from, so a
        // hit (from a remote cache, say) never reads them: they may be in
        // a registry still. The entry names the key of the files copied,
        // which the chain continues with, as if it had been looked up so.
        let source = match &c.from {
            Some(f) => Some(match self.plan.resolve_from(st.index, &f.value) {
                FromRef::Stage(i) => self.stage_result(i)?,
                FromRef::Image(r) => self.image(&r)?,
            }),
            None => None,
        };
        let by_layers = match &source {
            Some(src) if urls.is_empty() && !st.no_cache => {
                let mut k = make_inputs(BTreeMap::new());
                let ids: Vec<String> = src.layers.iter().map(|l| l.diff_id.to_string()).collect();
                k.fields.insert("lookup".into(), "by source layers".into());
                k.fields.insert("source-layers".into(), ids.join(","));
                for (name, content) in &heredocs {
                    k.fields
                        .insert(format!("<<{name}"), Digest::sha256(content).to_string());
                }
                Some(k)
            }
            _ => None,
        };
        if let Some(k) = &by_layers {
            let hit = Explanation::Hit {
                files: 0,
                touched: 0,
            };
            let early =
                self.cached_step(st, id, label, k.clone(), c.link, hit, t, &history, line)?;
            if let Early::Done = early {
                return Ok(());
            }
        }

        let scratch = self.tmp.join(format!("copy-{}-{}", id.stage, id.step));
        let _scratch_guard = RemoveOnDrop(scratch.clone());
        fs::create_dir_all(&scratch).map_err(|e| Error::io("create", &scratch, e))?;

        // Below a layer left in a registry, the key comes first: a hit
        // never needs the destination's files (nor fetches them).
        let mut missed = None;
        let key_first = c.from.is_none()
            && !is_add
            && urls.is_empty()
            && heredocs.is_empty()
            && !local.is_empty()
            && !st.no_cache
            && self.below_remote(st);
        if key_first {
            let req = CopyRequest {
                sources: local.clone(),
                heredocs: Vec::new(),
                dest: dest.clone(),
                workdir: st.workdir(),
                owner,
                chmod,
                parents: c.parents,
                exclude: exclude.clone(),
                unpack: false,
                preserve_times: self.opts.preserve_timestamps,
                tmp: &scratch,
            };
            let p = copy::source_files(&req, &self.ctx)?;
            let hit = Explanation::Hit {
                files: p.files.len(),
                touched: p.rehashed,
            };
            let inputs = make_inputs(p.files);
            match self.cached_step(st, id, label, inputs, c.link, hit, t, &history, line)? {
                Early::Done => return Ok(()),
                Early::Missed(m) => missed = Some(m),
            }
        }
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
        let from_view = source.as_ref().map(|r| MergedView::of(r.view.clone()));
        let preserve = self.opts.preserve_timestamps;
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
        // With --from, the copied files' content is hashed: a source stage
        // that rebuilt to the same files keeps this step cached.
        let inputs = make_inputs(std::mem::take(&mut plan.files));
        let content_key = inputs.key();
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
            StepKind {
                link: c.link,
                found: None,
                missed,
            },
            hit,
            t,
            history,
            line,
            move |s, _| s.write_entries(id, entries),
        );
        for d in plan.temp_dirs {
            let _ = strata_oci::remove_tree(&d);
        }
        let layer = result?;
        // Found by its source's layers next time.
        if let Some(k) = by_layers {
            let key = k.key();
            let entry = CacheEntry {
                layer: layer.clone(),
                chain: Some(content_key.clone()),
            };
            self.cache.put(&key, &entry)?;
            if !self.opts.cache_to.is_empty() {
                lock(&self.exports).push(ExportItem {
                    stage: id.stage,
                    key,
                    layer,
                    from: None,
                    chain: Some(content_key),
                });
            }
        }
        Ok(())
    }
}
