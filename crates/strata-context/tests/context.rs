//! The context walk, safe reads, COPY source matching and the index.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use strata_context::{Context, ContextError, ContextOptions, EntryKind, RACY_WINDOW};
use strata_digest::Digest;

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn paths(ctx: &Context) -> Vec<&str> {
    ctx.entries().iter().map(|e| e.path.as_str()).collect()
}

fn open(root: &Path) -> Context {
    Context::open(root, ContextOptions::default()).unwrap()
}

#[test]
fn exceptions_under_excluded_dirs_and_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for i in 0..50 {
        write(r, &format!("node_modules/pkg{i}/index.js"), "x");
    }
    write(r, "node_modules/keep/a.js", "keep");
    write(r, "node_modules/keep/a.ts", "drop");
    write(r, "vendor/deep/er/LICENSE", "mit");
    write(r, "vendor/deep/er/code.c", "c");
    write(r, "src/main.rs", "fn main() {}");
    write(
        r,
        ".dockerignore",
        "node_modules\n!node_modules/keep/*.js\nvendor\n!vendor/**/LICENSE\n",
    );
    let ctx = open(r);
    assert_eq!(
        paths(&ctx),
        [
            ".dockerignore",
            "node_modules",
            "node_modules/keep",
            "node_modules/keep/a.js",
            "src",
            "src/main.rs",
            "vendor",
            "vendor/deep",
            "vendor/deep/er",
            "vendor/deep/er/LICENSE",
        ]
    );
    assert!(ctx.get("node_modules").unwrap().implicit);
    assert!(!ctx.get("src").unwrap().implicit);
    // The 50 package directories cannot hold node_modules/keep/*.js: not entered.
    assert_eq!(ctx.pruned_dirs(), 50);

    // Without exceptions below it, an excluded tree is not entered at all.
    write(r, ".dockerignore", "node_modules\nvendor\n!src/main.rs\n");
    let ctx = open(r);
    assert_eq!(ctx.pruned_dirs(), 2);
    assert_eq!(paths(&ctx), [".dockerignore", "src", "src/main.rs"]);
}

#[test]
fn symlinks_are_listed_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "real/file", "data");
    std::os::unix::fs::symlink("real", r.join("alias")).unwrap();
    std::os::unix::fs::symlink("/", r.join("rootlink")).unwrap();
    let ctx = open(r);
    assert_eq!(paths(&ctx), ["alias", "real", "real/file", "rootlink"]);
    let alias = ctx.get("alias").unwrap();
    assert_eq!(alias.kind, EntryKind::Symlink);
    assert_eq!(alias.link_target.as_deref(), Some(Path::new("real")));
    assert!(ctx.entries_under("alias").is_empty());
}

#[test]
fn open_file_refuses_excluded_and_escaping_paths() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(outside.path(), "secret", "host secret");
    write(r, "app/main.py", "print()");
    write(r, "app/.env", "TOKEN=1");
    write(r, ".dockerignore", "**/.env\n");
    std::os::unix::fs::symlink("main.py", r.join("app/link.py")).unwrap();
    std::os::unix::fs::symlink(".env", r.join("app/env-link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), r.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", r.join("app/up")).unwrap();
    let ctx = open(r);
    let mut s = String::new();
    ctx.open_file("app/main.py")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "print()");
    s.clear();
    ctx.open_file("/app/link.py")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "print()");
    assert!(matches!(
        ctx.open_file("app/.env"),
        Err(ContextError::Excluded { .. })
    ));
    assert!(matches!(
        ctx.open_file("app/env-link"),
        Err(ContextError::Excluded { .. })
    ));
    assert!(matches!(
        ctx.open_file("../x"),
        Err(ContextError::Escapes { .. })
    ));
    assert!(matches!(
        ctx.open_file("app/../../x"),
        Err(ContextError::Escapes { .. })
    ));
    assert!(matches!(
        ctx.open_file("abs"),
        Err(ContextError::Escapes { .. })
    ));
    assert!(matches!(
        ctx.open_file("app/up"),
        Err(ContextError::Escapes { .. })
    ));
    assert!(matches!(
        ctx.open_file("app"),
        Err(ContextError::NotAFile { .. })
    ));
    assert!(matches!(
        ctx.open_file("nope"),
        Err(ContextError::NotFound { .. })
    ));
    // Swapped for a symlink after the walk: refused, not followed.
    std::fs::remove_file(r.join("app/main.py")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), r.join("app/main.py")).unwrap();
    assert!(matches!(
        ctx.open_file("app/main.py"),
        Err(ContextError::Changed { .. })
    ));
}

#[test]
fn copy_sources() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for f in [
        "a.txt",
        "b.txt",
        "c.md",
        "src/x.rs",
        "src/y.rs",
        "src/sub/z.rs",
        "srv/q",
        "secret.txt",
    ] {
        write(r, f, f);
    }
    write(r, ".dockerignore", "secret.txt\n");
    std::os::unix::fs::symlink("src", r.join("code")).unwrap();
    let ctx = open(r);
    let names = |pattern: &str| -> Vec<String> {
        ctx.match_sources(pattern)
            .unwrap()
            .iter()
            .map(|e| e.path.clone())
            .collect()
    };
    assert_eq!(names("*.txt"), ["a.txt", "b.txt"]);
    assert_eq!(names("./src/*.rs"), ["src/x.rs", "src/y.rs"]);
    assert_eq!(names("/src"), ["src"]);
    // A matched directory is a source as a whole: not looked into.
    assert_eq!(names("s?[cv]"), ["src", "srv"]);
    assert_eq!(names("src/*"), ["src/sub", "src/x.rs", "src/y.rs"]);
    // Symlinked parent directories are followed within the context.
    assert_eq!(names("code/x.rs"), ["src/x.rs"]);
    assert_eq!(names("code/*.rs"), ["src/x.rs", "src/y.rs"]);
    assert_eq!(names("code"), ["code"]);
    assert!(names("secret.txt").is_empty());
    assert!(names("*.nothing").is_empty());
    assert_eq!(names("."), ["."]);
    assert!(ctx.match_sources("[").is_err());
    assert!(ctx.match_sources("../*").is_err());
    assert!(ctx.matcher().matches("secret.txt"));
}

#[test]
fn index_digests_hard_links_and_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "a", "alpha");
    write(r, "d/b", "beta");
    std::fs::hard_link(r.join("a"), r.join("d/a-link")).unwrap();
    std::os::unix::fs::symlink("a", r.join("l")).unwrap();
    let ctx = open(r);
    let ix = ctx.index().unwrap();
    assert_eq!(ix.get("a").unwrap().digest, Some(Digest::sha256(b"alpha")));
    assert_eq!(ix.get("d/b").unwrap().digest, Some(Digest::sha256(b"beta")));
    assert_eq!(
        ix.get("d/a-link").unwrap().digest,
        Some(Digest::sha256(b"alpha"))
    );
    assert!(ix
        .get("a")
        .unwrap()
        .entry
        .same_file(&ix.get("d/a-link").unwrap().entry));
    assert_eq!(ix.get("l").unwrap().digest, None);
    let st = ix.stats();
    assert_eq!((st.files, st.hashed_files, st.hardlink_reuses), (3, 2, 1));
    assert_eq!(st.hashed_bytes, 9);

    // A COPY of one file hashes that file only.
    let ctx = open(r);
    let sub = ctx.index_paths(&["d/b"]).unwrap();
    assert_eq!(sub.entries().len(), 1);
    assert_eq!(sub.stats().hashed_bytes, 4);
    let sub = ctx.index_paths(&["d"]).unwrap();
    let got: Vec<&str> = sub
        .entries()
        .iter()
        .map(|e| e.entry.path.as_str())
        .collect();
    assert_eq!(got, ["d", "d/a-link", "d/b"]);

    // The index digest depends on content, not on time stamps.
    let before = ctx.index().unwrap().digest();
    filetime::set_file_mtime(r.join("a"), filetime::FileTime::from_unix_time(1000, 0)).unwrap();
    let after = open(r).index().unwrap().digest();
    assert_eq!(before, after);
    write(r, "d/b", "BETA");
    assert_ne!(open(r).index().unwrap().digest(), before);
}

fn wait_out_racy_window(since: Instant) {
    let wait = (RACY_WINDOW + Duration::from_millis(50)).saturating_sub(since.elapsed());
    std::thread::sleep(wait);
}

/// Re-indexing an unchanged 10,000-file context reads no file content.
#[test]
fn warm_index_of_10000_files_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let r = dir.path();
    for d in 0..100 {
        std::fs::create_dir(r.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            std::fs::write(r.join(format!("d{d}/f{f}")), format!("file {d} {f}")).unwrap();
        }
    }
    wait_out_racy_window(Instant::now());
    let opts = ContextOptions {
        dockerfile: None,
        state_dir: Some(state.path().to_path_buf()),
    };
    let cold = Context::open(r, opts.clone()).unwrap().index().unwrap();
    assert_eq!(cold.stats().files, 10_000);
    assert_eq!(cold.stats().hashed_files, 10_000);
    assert_eq!(cold.stats().racy, 0);
    let warm = Context::open(r, opts.clone()).unwrap().index().unwrap();
    eprintln!("cold {:?} warm {:?}", cold.stats(), warm.stats());
    assert_eq!(warm.stats().hashed_bytes, 0);
    assert_eq!(warm.stats().hashed_files, 0);
    assert_eq!(warm.stats().cache_hits, 10_000);
    assert_eq!(warm.digest(), cold.digest());
    // Another copy of the same tree elsewhere has its own cache.
    let ctx_other = tempfile::tempdir().unwrap();
    write(ctx_other.path(), "d0/f0", "file 0 0");
    let other = Context::open(ctx_other.path(), opts)
        .unwrap()
        .index()
        .unwrap();
    assert_eq!(other.stats().hashed_files, 1);
}

#[test]
fn racily_clean_and_sneaky_changes_are_rehashed() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let r = dir.path();
    let opts = ContextOptions {
        dockerfile: None,
        state_dir: Some(state.path().to_path_buf()),
    };
    let created = Instant::now();
    write(r, "old", "aaaa");
    write(r, "new", "bbbb");
    wait_out_racy_window(created);
    let ix = Context::open(r, opts.clone()).unwrap().index().unwrap();
    assert_eq!((ix.stats().hashed_files, ix.stats().racy), (2, 0));
    // Just modified: hashed, but not trusted for next time.
    write(r, "new", "cccc");
    let ix = Context::open(r, opts.clone()).unwrap().index().unwrap();
    assert_eq!((ix.stats().hashed_files, ix.stats().racy), (1, 1));
    assert_eq!(ix.get("new").unwrap().digest, Some(Digest::sha256(b"cccc")));
    let ix = Context::open(r, opts.clone()).unwrap().index().unwrap();
    assert_eq!(ix.stats().hashed_files, 1, "a racy entry is hashed again");
    // Same size, mtime put back: the ctime still tells.
    let mtime =
        filetime::FileTime::from_last_modification_time(&std::fs::metadata(r.join("old")).unwrap());
    std::fs::write(r.join("old"), "zzzz").unwrap();
    filetime::set_file_mtime(r.join("old"), mtime).unwrap();
    let ix = Context::open(r, opts).unwrap().index().unwrap();
    assert_eq!(ix.get("old").unwrap().digest, Some(Digest::sha256(b"zzzz")));
    let _ = SystemTime::now();
}

#[test]
fn dockerfile_and_ignore_file_follow_the_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "Dockerfile", "FROM scratch");
    write(r, "app", "x");
    write(r, ".dockerignore", "Dockerfile\n.dockerignore\n");
    let ctx = open(r);
    // Not in the context (COPY . . does not copy them), but the builder
    // knows where the Dockerfile is and reads it directly.
    assert_eq!(paths(&ctx), ["app"]);
    assert_eq!(
        ctx.dockerfile(),
        r.canonicalize().unwrap().join("Dockerfile")
    );
    assert!(ctx.ignore_source().path().is_some());
}

#[test]
fn bad_patterns_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "x", "x");
    write(r, ".dockerignore", "# ok\nx\n\n  [a-\n");
    let err = Context::open(r, ContextOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(".dockerignore:4") && msg.contains("\"[a-\""),
        "{msg}"
    );
    // Go's regexp refuses `[z-a]` when the pattern is first tried.
    write(r, ".dockerignore", "x\n[z-a]\n");
    let err = Context::open(r, ContextOptions::default()).unwrap_err();
    assert!(err.to_string().contains(".dockerignore:2"), "{err}");
}

/// `touched` counts files re-read because their timestamps changed whose
/// content did not: not new files, not changed ones, not racy re-reads.
#[test]
fn touched_counts_new_timestamps_with_the_same_content_only() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let r = dir.path();
    let opts = ContextOptions {
        dockerfile: None,
        state_dir: Some(state.path().to_path_buf()),
    };
    let created = Instant::now();
    for f in ["same", "changed", "kept"] {
        write(r, f, "content");
    }
    wait_out_racy_window(created);
    let first = Context::open(r, opts.clone()).unwrap().index().unwrap();
    assert_eq!(first.stats().touched, 0, "never hashed before: not touched");
    // Rewritten with the same bytes, rewritten with others, left alone.
    let changed_at = Instant::now();
    write(r, "same", "content");
    write(r, "changed", "CONTENT");
    write(r, "new", "new file");
    wait_out_racy_window(changed_at);
    let second = Context::open(r, opts.clone()).unwrap().index().unwrap();
    assert_eq!(second.stats().hashed_files, 3);
    assert_eq!(second.stats().touched, 1, "{:?}", second.stats());
    let third = Context::open(r, opts).unwrap().index().unwrap();
    assert_eq!(third.stats().touched, 0);
}
