//! The builder API as a library user calls it (`strata build` calls it the
//! same way): a store in a temporary directory, a context, `build`. Only
//! steps that need no root (FROM scratch, COPY, metadata) are used, so
//! these run everywhere; the CLI's end-to-end tests cover RUN.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use strata_build::{build, BuildOptions, BuildOutput, Event, StoreResolver};
use strata_oci::Store;

/// A context directory holding `files` and a Dockerfile.
fn context(dockerfile: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    dir
}

/// Build with the events collected.
fn run(store: &Store, opts: &BuildOptions) -> (BuildOutput, Vec<Event>) {
    let events = Mutex::new(Vec::new());
    let out = build(store, opts, &StoreResolver, &|e| {
        events.lock().unwrap().push(e);
    })
    .unwrap_or_else(|e| panic!("build failed: {e}"));
    (out, events.into_inner().unwrap())
}

/// The entries of a layer blob: path -> (mtime, content).
fn layer_files(store: &Store, digest: &strata_oci::Digest) -> BTreeMap<String, (u64, Vec<u8>)> {
    let blob = store.open_blob(digest).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    let mut out = BTreeMap::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let path = e.path().unwrap().display().to_string();
        let mtime = e.header().mtime().unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, (mtime, data));
    }
    out
}

const DOCKERFILE: &str =
    "FROM scratch\nCOPY hello.txt /hello.txt\nENV GREETING=hi\nCMD [\"/hello\"]\n";

fn options(ctx: &Path) -> BuildOptions {
    let mut opts = BuildOptions::new(ctx);
    opts.epoch = 86_400;
    opts
}

#[test]
fn from_scratch_copy_makes_an_image_and_a_rebuild_is_all_cache_hits() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let ctx = context(DOCKERFILE, &[("hello.txt", b"hello\n")]);
    let opts = options(ctx.path());

    let (first, events) = run(&store, &opts);
    assert_eq!((first.ran, first.cached), (1, 0));
    assert!(
        !events.iter().any(|e| matches!(e, Event::StepCached { .. })),
        "an empty store has no cache hit"
    );
    let img = &first.image;
    assert_eq!(img.layers.len(), 1);
    let files = layer_files(&store, &img.layers[0].descriptor.digest);
    assert_eq!(
        files.get("hello.txt").map(|f| f.1.as_slice()),
        Some(&b"hello\n"[..])
    );
    let config = img.config.config.clone().unwrap_or_default();
    assert_eq!(config.cmd, Some(vec!["/hello".to_owned()]));
    assert!(config
        .env
        .unwrap_or_default()
        .contains(&"GREETING=hi".to_owned()));
    // Every time in the image is the epoch.
    assert_eq!(img.config.created.as_deref(), Some("1970-01-02T00:00:00Z"));
    assert_eq!(files["hello.txt"].0, 86_400);
    // history index -> Dockerfile line, for analyze.
    assert_eq!(
        first.history_lines,
        BTreeMap::from([(0, 2), (1, 3), (2, 4)])
    );

    // What a no-change rebuild records is what is there: it rewrites
    // (and syncs) none of it.
    let inodes = |dir: &Path| -> BTreeMap<String, u64> {
        use std::os::unix::fs::MetadataExt;
        let mut m = BTreeMap::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    stack.push(p);
                } else if !p.starts_with(dir.join("leases")) {
                    m.insert(p.display().to_string(), meta.ino());
                }
            }
        }
        m
    };
    let before = inodes(store_dir.path());
    let (again, events) = run(&store, &opts);
    assert_eq!(inodes(store_dir.path()), before);
    assert_eq!((again.ran, again.cached), (0, 1));
    assert!(events.iter().any(|e| matches!(e, Event::StepCached { .. })));
    assert_eq!(
        again.image.id(),
        first.image.id(),
        "same inputs, same image"
    );
}

#[test]
fn the_cache_follows_content_not_timestamps() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let ctx = context(DOCKERFILE, &[("hello.txt", b"hello\n")]);
    let opts = options(ctx.path());
    let (first, _) = run(&store, &opts);

    // Same bytes, new mtime: still a hit, still the same image.
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.path().join("hello.txt"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    drop(f);
    let (touched, _) = run(&store, &opts);
    assert_eq!((touched.ran, touched.cached), (0, 1));
    assert_eq!(touched.image.id(), first.image.id());

    // New bytes: the COPY runs again and the image changes.
    std::fs::write(ctx.path().join("hello.txt"), b"hello, world\n").unwrap();
    let (changed, _) = run(&store, &opts);
    assert_eq!((changed.ran, changed.cached), (1, 0));
    assert_ne!(changed.image.id(), first.image.id());
}

#[test]
fn preserved_timestamps_keep_the_contexts_mtimes_only() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let ctx = context(DOCKERFILE, &[("hello.txt", b"hello\n")]);
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.path().join("hello.txt"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    drop(f);
    let mut opts = options(ctx.path());
    let (epoch, _) = run(&store, &opts);
    opts.preserve_timestamps = true;
    let (preserved, _) = run(&store, &opts);
    // Another mode is another cache key.
    assert_eq!((preserved.ran, preserved.cached), (1, 0));
    let img = &preserved.image;
    let files = layer_files(&store, &img.layers[0].descriptor.digest);
    assert_eq!(files["hello.txt"].0, 1_000_000);
    assert_eq!(img.config.created.as_deref(), Some("1970-01-02T00:00:00Z"));
    assert_ne!(img.id(), epoch.image.id());
}

#[test]
fn a_missing_base_image_fails_with_the_reference() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let ctx = context("FROM example.com/nope:1\nCOPY a /a\n", &[("a", b"a")]);
    let Err(err) = build(&store, &options(ctx.path()), &StoreResolver, &|_| {}) else {
        panic!("a base image that is nowhere cannot be built on");
    };
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" / {s}"));
        source = s.source();
    }
    assert!(chain.contains("example.com/nope:1"), "{chain}");
}

/// Every layer the build writes is shown to [`BuildOptions::layer_tap`],
/// whole (its bytes hash to the diffID) and once, after it is stored; a
/// rebuild from the cache writes nothing and shows nothing.
#[test]
fn every_layer_written_goes_through_the_tap() {
    use std::sync::Arc;
    use strata_layer::{LayerInfo, TapFactory, TarTap};

    type Seen = Arc<Mutex<Vec<(strata_oci::Digest, strata_oci::Digest)>>>;
    struct Tap {
        bytes: Vec<u8>,
        seen: Seen,
        store: Store,
    }
    impl TarTap for Tap {
        fn write(&mut self, data: &[u8]) {
            self.bytes.extend_from_slice(data);
        }
        fn finish(self: Box<Self>, info: &LayerInfo) {
            assert_eq!(self.bytes.len() as u64, info.uncompressed_size);
            assert!(
                self.store.has(&info.digest),
                "finished before it was stored"
            );
            self.seen
                .lock()
                .unwrap()
                .push((strata_oci::Digest::sha256(&self.bytes), info.digest.clone()));
        }
    }

    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let mut tarball = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tarball
        .append_data(&mut h, "in-tar.txt", &b"abc"[..])
        .unwrap();
    let tarball = tarball.into_inner().unwrap();
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    let ctx = context(
        "FROM scratch\nCOPY hello.txt /a\nCOPY big.bin /b/\nADD t.tar /x/\nWORKDIR /w\n",
        &[
            ("hello.txt", b"hello\n"),
            ("big.bin", &big),
            ("t.tar", &tarball),
        ],
    );
    let seen: Seen = Default::default();
    let mut opts = options(ctx.path());
    let (s2, st2) = (seen.clone(), store.clone());
    opts.layer_tap = Some(TapFactory(Arc::new(move || {
        Box::new(Tap {
            bytes: Vec::new(),
            seen: s2.clone(),
            store: st2.clone(),
        }) as Box<dyn TarTap>
    })));
    let (first, _) = run(&store, &opts);
    let layers: Vec<_> = first
        .image
        .layers
        .iter()
        .map(|l| (l.diff_id.clone(), l.descriptor.digest.clone()))
        .collect();
    assert_eq!(layers.len(), 4);
    assert_eq!(*seen.lock().unwrap(), layers);

    seen.lock().unwrap().clear();
    let (again, _) = run(&store, &opts);
    assert_eq!(again.image.id(), first.image.id());
    assert!(seen.lock().unwrap().is_empty());
}
