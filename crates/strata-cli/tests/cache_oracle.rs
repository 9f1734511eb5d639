//! The cache oracle: a cached build must give exactly the image a cold build
//! gives (DESIGN.md decision 1: a step's output bytes are a function of its
//! key).
//!
//! The harness generates build histories: a multi-stage Dockerfile drawn
//! from a table of instruction variants (every COPY/ADD flag, every
//! `RUN --mount` option, ARG/ENV, USER, WORKDIR), a context (files, modes,
//! owners, a symlink, a hard link, an empty directory, an archive,
//! `.dockerignore`), build args (incl. `SOURCE_DATE_EPOCH`), `--timestamps`,
//! `--platform`, `--target` and the base image's content under one tag. Then
//! it applies single changes, one at a time. After each change it builds
//!
//! - incrementally in a warm store, and
//! - cold, in a fresh store, from a copy of the context at another path
//!   whose files have other owners and (unless `--timestamps preserve`)
//!   other mtimes, with the other snapshotter every other time,
//!
//! and requires the same image ID; then it rebuilds the warm store without a
//! change and requires every step cached (the fix for a false hit may never
//! be "stop caching").
//!
//! CI runs a small fixed-seed sample. A longer run:
//!
//! ```sh
//! STRATA_ORACLE_HISTORIES=200 STRATA_ORACLE_CHANGES=12 STRATA_ORACLE_SEED=1 \
//!   cargo test -p strata-cli --test cache_oracle -- --nocapture
//! ```
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The Dockerfile, slot by slot: each slot is one of its variants ("" means
/// the slot is absent). A change picks another variant for one slot.
const SLOTS: &[(&str, &[&str])] = &[
    ("global arg", &["ARG BASE=busybox"]),
    (
        "independent stage",
        &["", "FROM busybox AS zero\nRUN echo zero > /z"],
    ),
    ("from", &["FROM $BASE AS one"]),
    ("arg", &["ARG V=1", "ARG V=2", "ARG V"]),
    ("env", &["", "ENV E=$V", "ENV E=fixed"]),
    ("workdir", &["", "WORKDIR /w", "WORKDIR /w/deep"]),
    (
        "copy",
        &[
            "COPY src/ /app/",
            "COPY --chmod=750 src/ /app/",
            "COPY --chown=app src/ /app/",
            "COPY --chown=1000:1000 src/ /app/",
            "COPY --chown=app:app --chmod=600 src/ /app/",
            "COPY --link src/ /app/",
            "COPY --link --chown=app src/ /app/",
            "COPY --link --chown=app:app --chmod=755 src/ /app/",
            "COPY --parents src/a.txt src/sub/ /app/",
            "COPY --exclude=*.log src/ /app/",
            "COPY src/a.txt src/link /app/",
            "COPY . /app/",
            "COPY <<EOF /app/here.txt\nvalue $V\nEOF",
        ],
    ),
    (
        "add",
        &[
            "",
            "ADD x.tar.gz /t/",
            "ADD --unpack=false x.tar.gz /t/",
            "ADD --unpack=true x.tar.gz /t/",
            "ADD --chown=app x.tar.gz /t/",
            "ADD --link x.tar.gz /t/",
            "ADD --link --chown=app:app x.tar.gz /t/",
            "ADD --chmod=640 x.tar.gz /t/",
        ],
    ),
    (
        "run",
        &[
            "RUN echo \"$V $E\" > /v.txt",
            "RUN ls -lnR /app > /ls.txt",
            "RUN mkdir -p /d/e && echo one > /d/f && touch -d @100000 /d/old && ln -s f /d/l",
            "RUN --network=none echo none > /n",
            "RUN touch -d @200000 /app/a.txt",
            "RUN chown 1000:1000 /app/a.txt && chmod 600 /app/a.txt",
            "RUN mv /app /moved",
            "RUN rm -rf /app && mkdir /app && echo new > /app/only",
            "RUN rm /app/a.txt",
        ],
    ),
    (
        "mount",
        &[
            "",
            "RUN --mount=type=bind,target=/m cp -a /m/src /bound",
            "RUN --mount=type=bind,source=src,target=/m cp -a /m/. /bound/",
            "RUN --mount=type=bind,source=src,target=/m,rw cp -a /m/. /bound/ && touch /m/new",
            "RUN --mount=type=bind,source=src/a.txt,target=/m.txt cp -p /m.txt /mcopy",
            "RUN --mount=type=cache,target=/c stat -c '%u %g %a' /c > /cstat",
            "RUN --mount=type=cache,target=/c,uid=1000,gid=1000,mode=0750 stat -c '%u %g %a' /c > /cstat",
            "RUN --mount=type=cache,target=/c,uid=2000 stat -c '%u %g %a' /c > /cstat",
            "RUN --mount=type=cache,target=/c,gid=3000,mode=0700 stat -c '%u %g %a' /c > /cstat",
            "RUN --mount=type=cache,target=/c,sharing=locked stat -c '%u %g %a' /c > /cstat",
            "RUN --mount=type=cache,target=/c,sharing=private stat -c '%u %g %a' /c > /cstat",
            "RUN --mount=type=cache,id=k,target=/c sh -c 'echo $V > /c/v && cp -p /c/v /v'",
            "RUN --mount=type=cache,id=once,target=/c sh -c 'test -f /c/once || echo x > /c/once; cp -p /c/once /once'",
            "RUN --mount=type=tmpfs,target=/t sh -c 'echo x > /t/x && cp -a /t /tcopy'",
            "RUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null && echo ok > /sec",
            "RUN rm -rf /d && mkdir -p /d && echo two > /d/g",
        ],
    ),
    ("user", &["", "USER app", "USER 1000:1000"]),
    (
        "run as user",
        &[
            "",
            "RUN id > /tmp/id",
            "RUN echo $V > /tmp/v && ls -ln /tmp > /tmp/ls",
        ],
    ),
    ("second stage", &["FROM busybox AS two"]),
    (
        "copy from",
        &[
            "COPY --from=one /app /from-one",
            "COPY --from=one --chown=app /app /from-one",
            "COPY --from=one --chmod=700 /app /from-one",
            "COPY --link --from=one /app /from-one",
            "COPY --from=busybox /etc/passwd /p",
            "COPY --from=one /etc/passwd /tmp/ /all/",
        ],
    ),
    (
        "run from",
        &[
            "",
            "RUN --mount=type=bind,from=one,source=/app,target=/m cp -a /m /m2",
            "RUN --mount=type=bind,from=one,target=/m ls -lnR /m/tmp > /l",
            "RUN cat /etc/passwd > /pw",
        ],
    ),
];

/// `.dockerignore` lines a change can add or remove.
const IGNORES: &[&str] = &[
    "src/*.log",
    "src/sub",
    "!src/sub/keep.txt",
    "other.txt",
    "**/*.tmp",
];

/// Base image variants under one tag: the users differ (app's uid).
const BASES: &[(&str, &str)] = &[
    (
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        "root:x:0:\napp:x:1000:\n",
    ),
    (
        "root:x:0:0:root:/root:/bin/sh\napp:x:1500:1600::/home/app:/bin/sh\n",
        "root:x:0:\napp:x:1600:\n",
    ),
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    File(Vec<u8>, u32),
    Link(String),
    Hard(String),
    Dir(u32),
}

/// Everything one build depends on.
#[derive(Clone, Debug)]
struct World {
    files: BTreeMap<String, Node>,
    ignore: BTreeSet<&'static str>,
    slots: Vec<usize>,
    args: BTreeMap<&'static str, String>,
    preserve: bool,
    platform: bool,
    target: Option<&'static str>,
    base: usize,
    archive: u32,
    /// Base of the warm context's mtimes (a "touch" moves it).
    mtime: i64,
    /// Host owner of one context file (never part of a COPY).
    owner: u32,
}

impl World {
    fn new(rng: &mut Rng) -> World {
        let mut files = BTreeMap::new();
        files.insert("src/a.txt".into(), Node::File(b"alpha\n".to_vec(), 0o644));
        files.insert("src/b.log".into(), Node::File(b"log\n".to_vec(), 0o644));
        files.insert(
            "src/run.sh".into(),
            Node::File(b"#!/bin/sh\n".to_vec(), 0o755),
        );
        files.insert("src/sub/c.txt".into(), Node::File(b"c\n".to_vec(), 0o644));
        files.insert(
            "src/sub/keep.txt".into(),
            Node::File(b"keep\n".to_vec(), 0o600),
        );
        files.insert("src/link".into(), Node::Link("a.txt".into()));
        files.insert("src/hard".into(), Node::Hard("src/a.txt".into()));
        files.insert("src/empty".into(), Node::Dir(0o755));
        files.insert("other.txt".into(), Node::File(b"other\n".to_vec(), 0o644));
        let slots = SLOTS.iter().map(|(_, v)| rng.below(v.len())).collect();
        World {
            files,
            ignore: BTreeSet::new(),
            slots,
            args: BTreeMap::new(),
            preserve: false,
            platform: false,
            target: None,
            base: 0,
            archive: 1,
            mtime: 1_600_000_000,
            owner: 0,
        }
    }

    fn dockerfile(&self) -> String {
        let mut out = String::new();
        for ((_, variants), &v) in SLOTS.iter().zip(&self.slots) {
            if !variants[v].is_empty() {
                out.push_str(variants[v]);
                out.push('\n');
            }
        }
        out
    }

    /// Applies one random change; returns what it was.
    fn change(&mut self, rng: &mut Rng) -> String {
        loop {
            if let Some(what) = self.try_change(rng) {
                return what;
            }
        }
    }

    fn try_change(&mut self, rng: &mut Rng) -> Option<String> {
        Some(match rng.below(17) {
            0..=4 => {
                let i = rng.below(SLOTS.len());
                let (name, variants) = SLOTS[i];
                if variants.len() < 2 {
                    return None;
                }
                let mut v = rng.below(variants.len());
                if v == self.slots[i] {
                    v = (v + 1) % variants.len();
                }
                self.slots[i] = v;
                format!("Dockerfile {name}: {:?}", variants[v])
            }
            5 => {
                let path = *rng.pick(&["src/a.txt", "src/b.log", "src/sub/c.txt", "other.txt"]);
                let n = rng.next() % 1000;
                self.files.insert(
                    path.into(),
                    Node::File(format!("v{n}\n").into_bytes(), 0o644),
                );
                format!("content of {path}")
            }
            6 => {
                let path = *rng.pick(&["src/a.txt", "src/run.sh", "src/sub/keep.txt"]);
                let mode = *rng.pick(&[0o644u32, 0o755, 0o600, 0o640]);
                match self.files.get_mut(path) {
                    Some(Node::File(_, m)) if *m != mode => *m = mode,
                    _ => return None,
                }
                format!("mode of {path} to {mode:o}")
            }
            7 => {
                self.mtime += 1 + (rng.next() % 100_000) as i64;
                "touch every file".into()
            }
            8 => {
                let t = match self.files.get("src/link") {
                    Some(Node::Link(t)) if t == "a.txt" => "sub/c.txt",
                    _ => "a.txt",
                };
                self.files.insert("src/link".into(), Node::Link(t.into()));
                format!("symlink src/link -> {t}")
            }
            9 => {
                let now = match self.files.get("src/hard") {
                    Some(Node::Hard(_)) => {
                        let data = match self.files.get("src/a.txt") {
                            Some(Node::File(d, _)) => d.clone(),
                            _ => b"alpha\n".to_vec(),
                        };
                        Node::File(data, 0o644)
                    }
                    _ => Node::Hard("src/a.txt".into()),
                };
                let what = format!("src/hard is now {:?}", now);
                self.files.insert("src/hard".into(), now);
                what
            }
            10 => {
                if self.files.remove("src/empty").is_none() {
                    self.files.insert("src/empty".into(), Node::Dir(0o755));
                    "empty dir src/empty added".into()
                } else {
                    "empty dir src/empty removed".into()
                }
            }
            11 => {
                let line = *rng.pick(IGNORES);
                if !self.ignore.remove(line) {
                    self.ignore.insert(line);
                }
                format!(".dockerignore toggles {line:?}")
            }
            12 => {
                self.archive += 1;
                format!("x.tar.gz content v{}", self.archive)
            }
            13 => {
                let (name, values): (&'static str, &[&str]) = match rng.below(3) {
                    0 => ("V", &["1", "2", "three"]),
                    1 => ("SOURCE_DATE_EPOCH", &["0", "1000000", "1700000000"]),
                    _ => ("E", &["ignored"]),
                };
                if rng.below(3) == 0 {
                    self.args.remove(name)?;
                    format!("--build-arg {name} removed")
                } else {
                    let v = rng.pick(values).to_string();
                    if self.args.get(name) == Some(&v) {
                        return None;
                    }
                    self.args.insert(name, v.clone());
                    format!("--build-arg {name}={v}")
                }
            }
            14 => match rng.below(3) {
                0 => {
                    self.preserve = !self.preserve;
                    format!("--timestamps preserve: {}", self.preserve)
                }
                1 => {
                    self.platform = !self.platform;
                    format!("--platform linux/amd64: {}", self.platform)
                }
                _ => {
                    let t = *rng.pick(&[None, Some("one"), Some("two")]);
                    if t == self.target {
                        return None;
                    }
                    self.target = t;
                    format!("--target {t:?}")
                }
            },
            15 => {
                self.base = (self.base + 1) % BASES.len();
                format!("base image content (variant {})", self.base)
            }
            _ => {
                self.owner = if self.owner == 0 { 4321 } else { 0 };
                format!("host owner of src/a.txt: {}", self.owner)
            }
        })
    }

    /// Writes the context into `dir` (emptied first). Files get mtimes
    /// from `mtime`, and `uid` as owner when given (else the world's).
    fn write_context(&self, dir: &Path, mtime: i64, uid: Option<u32>) {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("Dockerfile"), self.dockerfile()).unwrap();
        let ignore: Vec<&str> = self.ignore.iter().copied().collect();
        fs::write(dir.join(".dockerignore"), ignore.join("\n")).unwrap();
        fs::write(dir.join("x.tar.gz"), archive(self.archive)).unwrap();
        // Hard links after their targets.
        let mut later = Vec::new();
        for (path, node) in &self.files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            match node {
                Node::File(data, mode) => {
                    fs::write(&p, data).unwrap();
                    fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
                }
                Node::Link(t) => symlink(t, &p).unwrap(),
                Node::Dir(mode) => {
                    fs::create_dir_all(&p).unwrap();
                    fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
                }
                Node::Hard(of) => later.push((p, dir.join(of))),
            }
        }
        for (p, of) in later {
            fs::hard_link(of, p).unwrap();
        }
        let owner = uid.unwrap_or(self.owner);
        let _ = std::os::unix::fs::lchown(dir.join("src/a.txt"), Some(owner), Some(owner));
        if uid.is_some() {
            for e in walk(dir) {
                let _ = std::os::unix::fs::lchown(&e, Some(owner), Some(owner));
            }
        }
        // Deterministic mtimes, deepest first so directory times stick.
        let mut all = walk(dir);
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for (i, p) in all.iter().enumerate() {
            let t = filetime::FileTime::from_unix_time(mtime + (i as i64 % 7) * 3600, 0);
            let _ = filetime::set_symlink_file_times(p, t, t);
        }
    }

    fn build_args(&self, ctx: &Path, secret: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec!["build".into(), "--progress".into(), "json".into()];
        for (k, v) in &self.args {
            a.push("--build-arg".into());
            a.push(format!("{k}={v}"));
        }
        if self.preserve {
            a.extend(["--timestamps".into(), "preserve".into()]);
        }
        if self.platform {
            a.extend(["--platform".into(), "linux/amd64".into()]);
        }
        if let Some(t) = self.target {
            a.extend(["--target".into(), t.into()]);
        }
        a.push("--secret".into());
        a.push(format!("id=s,src={}", secret.display()));
        a.push(ctx.display().to_string());
        a
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// A gzip tar, fixed bytes for a version: a file, a directory, a symlink
/// and a hard link.
fn archive(version: u32) -> Vec<u8> {
    let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(1_000_000);
    b.append_data(&mut h, "pkg/", std::io::empty()).unwrap();
    let body = format!("version {version}\n");
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    h.set_mtime(1_000_000 + u64::from(version));
    b.append_data(&mut h, "pkg/v.txt", body.as_bytes()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_mtime(1_000_000);
    b.append_link(&mut h, "pkg/l", "v.txt").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(1_000_000);
    b.append_link(&mut h, "pkg/h", "pkg/v.txt").unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// What a build gave.
#[derive(Debug, PartialEq)]
enum Outcome {
    Image { id: String, ran: u64 },
    Failed(String),
}

fn build(root: &Path, args: &[String], snapshotter: Option<&str>) -> Outcome {
    let mut c = cmd(root);
    if let Some(s) = snapshotter {
        c.env("STRATA_SNAPSHOTTER", s);
    }
    let out = c.args(args).output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // Keep the error's first line (the cause), not paths or timings.
        let first = err
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or("")
            .to_owned();
        return Outcome::Failed(first);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["event"] == "done" {
            return Outcome::Image {
                id: v["id"].as_str().unwrap().to_owned(),
                ran: v["ran"].as_u64().unwrap(),
            };
        }
    }
    panic!("no done event in {text}");
}

/// A store with the base image variant `base` imported as `busybox`.
fn import_base(root: &Path, tars: &[PathBuf], base: usize) {
    ok(
        root,
        &[
            "import",
            tars[base].to_str().unwrap(),
            "busybox",
            "-c",
            r#"CMD ["sh"]"#,
            "-c",
            "ENV PATH=/bin:/usr/bin",
        ],
    );
}

/// Entries of a layer: path -> description (type, mode, owner, mtime, size,
/// content digest prefix or link target).
fn layer_entries(root: &Path, digest: &str) -> BTreeMap<String, String> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let f = fs::File::open(root.join("blobs/sha256").join(hex)).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header().clone();
        let link = e
            .link_name()
            .ok()
            .flatten()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let sum: u32 = data
            .iter()
            .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(*b as u32));
        out.insert(
            path,
            format!(
                "{:?} {:o} {}:{} mtime={} size={} sum={sum:08x} link={link}",
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                data.len()
            ),
        );
    }
    out
}

/// Why two images differ, for the failure message.
fn diagnose(warm: &Path, cold: &Path) -> String {
    let mut s = String::new();
    let a = inspect(warm, "oracle");
    let b = inspect(cold, "oracle");
    let la = a["Layers"].as_array().cloned().unwrap_or_default();
    let lb = b["Layers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(s, "warm layers: {}, cold layers: {}", la.len(), lb.len());
    for (i, (x, y)) in la.iter().zip(&lb).enumerate() {
        if x["DiffID"] == y["DiffID"] {
            continue;
        }
        let _ = writeln!(s, "layer {i} differs:");
        let ea = layer_entries(warm, x["Digest"].as_str().unwrap());
        let eb = layer_entries(cold, y["Digest"].as_str().unwrap());
        let keys: BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
        let mut n = 0;
        for k in keys {
            if ea.get(k) != eb.get(k) {
                let _ = writeln!(
                    s,
                    "  {k}\n    warm: {:?}\n    cold: {:?}",
                    ea.get(k),
                    eb.get(k)
                );
                n += 1;
                if n > 12 {
                    break;
                }
            }
        }
    }
    for field in ["Config", "Os", "Architecture", "Created"] {
        if a[field] != b[field] {
            let _ = writeln!(
                s,
                "{field} differs:\n  warm: {}\n  cold: {}",
                a[field], b[field]
            );
        }
    }
    let ha = ok(
        warm,
        &["history", "--no-trunc", "--format", "json", "oracle"],
    );
    let hb = ok(
        cold,
        &["history", "--no-trunc", "--format", "json", "oracle"],
    );
    if ha != hb {
        let _ = writeln!(s, "history differs:\n  warm: {ha}\n  cold: {hb}");
    }
    s
}

struct Oracle {
    dir: tempfile::TempDir,
    tars: Vec<PathBuf>,
    secret: PathBuf,
    builds: usize,
}

impl Oracle {
    fn new() -> Option<Oracle> {
        if !strata_testkit::require_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut tars = Vec::new();
        for (i, (passwd, group)) in BASES.iter().enumerate() {
            let p = dir.path().join(format!("base{i}.tar"));
            if !strata_testkit::busybox_rootfs_tar_with(&p, passwd, group) {
                return None;
            }
            tars.push(p);
        }
        let secret = dir.path().join("secret");
        fs::write(&secret, "hunter2").unwrap();
        Some(Oracle {
            dir,
            tars,
            secret,
            builds: 0,
        })
    }

    /// One history: returns the number of changes checked.
    fn history(&mut self, seed: u64, changes: usize) -> usize {
        let mut rng = Rng::new(seed);
        let mut world = World::new(&mut rng);
        let top = self.dir.path().join(format!("h{seed}"));
        let warm = top.join("warm");
        let ctx = top.join("ctx");
        import_base(&warm, &self.tars, world.base);
        let mut log = vec![format!(
            "seed {seed}, initial Dockerfile:\n{}",
            world.dockerfile()
        )];
        for step in 0..=changes {
            if step > 0 {
                let what = world.change(&mut rng);
                if what.starts_with("base image") {
                    import_base(&warm, &self.tars, world.base);
                }
                log.push(format!("change {step}: {what}"));
            }
            world.write_context(&ctx, world.mtime, None);
            let args = world.build_args(&ctx, &self.secret);
            let w = build(&warm, &args, None);
            // Cold: a fresh store, the context elsewhere with other owners
            // and (unless preserved) other mtimes, the other snapshotter
            // every other time.
            let cold = top.join(format!("cold{step}"));
            import_base(&cold, &self.tars, world.base);
            let cctx = top.join(format!("cctx{step}"));
            let mtime = if world.preserve {
                world.mtime
            } else {
                world.mtime + 987_654
            };
            world.write_context(&cctx, mtime, Some(31337));
            let cargs = world.build_args(&cctx, &self.secret);
            let snap = if step % 2 == 1 { "copy" } else { "overlay" };
            let c = build(&cold, &cargs, Some(snap));
            self.builds += 2;
            let same = match (&w, &c) {
                (Outcome::Image { id: a, .. }, Outcome::Image { id: b, .. }) => a == b,
                (Outcome::Failed(_), Outcome::Failed(_)) => true,
                _ => false,
            };
            if !same {
                let detail = match (&w, &c) {
                    (Outcome::Image { .. }, Outcome::Image { .. }) => {
                        ok(&warm, &["tag", &id_of(&w), "oracle"]);
                        ok(&cold, &["tag", &id_of(&c), "oracle"]);
                        diagnose(&warm, &cold)
                    }
                    _ => String::new(),
                };
                panic!(
                    "incremental build != cold build ({snap} snapshotter cold)\n{}\nDockerfile now:\n{}\nargs: {:?}\nwarm: {w:?}\ncold: {c:?}\n{detail}",
                    log.join("\n"),
                    world.dockerfile(),
                    args
                );
            }
            let _ = fs::remove_dir_all(&cold);
            let _ = fs::remove_dir_all(&cctx);
            // Nothing changed: every step comes from the cache.
            if let Outcome::Image { id, .. } = &w {
                let again = build(&warm, &args, None);
                self.builds += 1;
                match &again {
                    Outcome::Image { id: id2, ran } if id2 == id && *ran == 0 => {}
                    other => panic!(
                        "an unchanged rebuild was not fully cached: {other:?} (first {w:?})\n{}\nDockerfile:\n{}",
                        log.join("\n"),
                        world.dockerfile()
                    ),
                }
            }
        }
        let _ = fs::remove_dir_all(&top);
        changes
    }
}

fn id_of(o: &Outcome) -> String {
    match o {
        Outcome::Image { id, .. } => id.clone(),
        Outcome::Failed(e) => panic!("no image: {e}"),
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn incremental_builds_equal_cold_builds() {
    let Some(mut oracle) = Oracle::new() else {
        return;
    };
    let histories = env_num("STRATA_ORACLE_HISTORIES", 3);
    let changes = env_num("STRATA_ORACLE_CHANGES", 6) as usize;
    let seed = env_num("STRATA_ORACLE_SEED", 20261207);
    let mut checked = 0;
    for h in 0..histories {
        checked += oracle.history(seed.wrapping_add(h), changes);
    }
    eprintln!(
        "cache oracle: {histories} histories, {checked} changes, {} builds, no difference",
        oracle.builds
    );
}
