//! Rootless strata as users run it: run as root (CI), these tests create
//! unprivileged users (one with subordinate ids, one without; idempotent)
//! and run a copy of the `strata` binary as them through `setpriv`. A build
//! that adds a user with uid 1000, chowns a file to 65534, sets a setuid
//! bit, deletes a file of a lower layer (with a mount whose mount point
//! the image lacks), replaces a directory and sets a file capability must give the root build's image digest, with each
//! snapshotter (the capability in the portable revision-2 form, though the
//! kernel stores revision 3 with a root id in a user namespace); the base carries a
//! `/dev/null` device node, which a rootless extraction skips with a
//! warning; `strata run` works rootless; a user without subordinate ids is
//! told how to get them. runc and crun run rootless too; a detached
//! container is reached by later `exec`, `stop` and `rm`; `serve`, `push`,
//! `pull`, `analyze` and `lint` work as the user.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cmd, identity, ok};

/// The user with subordinate ids.
const USER: &str = "strata-rl";
/// The user without.
const NOSUB: &str = "strata-rl-nosub";

const DOCKERFILE: &str = r#"FROM busybox
COPY gone /gone
COPY d /d
RUN echo 'dev:x:1000:1000::/home/dev:/bin/sh' >> /etc/passwd && echo 'dev:x:1000:' >> /etc/group && mkdir -p /home/dev && echo mine > /home/dev/f && chown -R dev:dev /home/dev
RUN echo x > /owned && chown 65534:65534 /owned
RUN cp /bin/busybox /usr/bin/suidbox && chmod 4755 /usr/bin/suidbox
RUN --mount=type=tmpfs,target=/scratch/t rm /gone
RUN rm -rf /d && mkdir /d && echo new > /d/new
COPY setfcap /usr/local/bin/setfcap
RUN cp /bin/busybox /capbox && /usr/local/bin/setfcap /capbox
"#;

/// `cap_net_bind_service+ep` as `setcap` (root) writes it: revision 2.
const FCAP_V2: &str = "0100000200040000000000000000000000000000";

fn require() -> bool {
    strata_testkit::require_root()
        && strata_testkit::require_tool("setpriv")
        && strata_testkit::require_tool("useradd")
        && strata_testkit::require_tool("usermod")
        && strata_testkit::require_tool("newuidmap")
        && strata_testkit::require_tool("newgidmap")
}

/// The static `setfcap` helper (tests/fixtures/setfcap.c), built in `dir`.
fn setfcap(dir: &Path) -> Option<PathBuf> {
    if !strata_testkit::require_tool("gcc") {
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/setfcap.c");
    let out = dir.join("setfcap");
    strata_testkit::run_ok(
        Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&out)
            .arg(&src),
    );
    Some(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `security.capability` value the image's layers give `/capbox`, from
/// the PAX header of its tar entry.
fn capbox_fcap(store: &Path, layers: &[String]) -> Option<String> {
    let mut found = None;
    for l in layers {
        let hexd = l.strip_prefix("sha256:").unwrap();
        let blob = fs::File::open(store.join("blobs/sha256").join(hexd)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap() != Path::new("capbox") {
                continue;
            }
            found = Some(String::new());
            if let Some(exts) = e.pax_extensions().unwrap() {
                for x in exts {
                    let x = x.unwrap();
                    if x.key().unwrap() == "SCHILY.xattr.security.capability" {
                        found = Some(hex(x.value_bytes()));
                    }
                }
            }
        }
    }
    found
}

/// The raw `security.capability` of the files named `name` under `dir`, as
/// root reads them (the kernel's stored form).
fn raw_fcaps(dir: &Path, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == name {
                let mut buf = [0u8; 64];
                if let Ok(n) = rustix::fs::lgetxattr(e.path(), "security.capability", &mut buf) {
                    out.push(hex(&buf[..n]));
                }
            }
        }
    }
    out
}

fn sh(c: &mut Command) -> Output {
    c.output().unwrap()
}

fn has_subids(user: &str) -> bool {
    fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{user}:")))
}

/// Creates `user` unless it exists, with subordinate ids or without.
fn ensure_user(user: &str, subids: bool) -> (u32, u32) {
    if !sh(Command::new("id").arg(user)).status.success() {
        let out = sh(Command::new("useradd").args(["-m", "-s", "/bin/sh", user]));
        assert!(out.status.success(), "useradd {user}: {out:?}");
    }
    if subids && !has_subids(user) {
        let out = sh(Command::new("usermod").args([
            "--add-subuids",
            "200000-265535",
            "--add-subgids",
            "200000-265535",
            user,
        ]));
        assert!(out.status.success(), "usermod {user}: {out:?}");
    }
    if !subids {
        // useradd may have given it ranges (SUB_UID_COUNT in login.defs).
        for (file, flag) in [
            ("/etc/subuid", "--del-subuids"),
            ("/etc/subgid", "--del-subgids"),
        ] {
            for l in fs::read_to_string(file).unwrap_or_default().lines() {
                let f: Vec<&str> = l.split(':').collect();
                if let [name, start, count] = f[..] {
                    if name == user {
                        let (s, c): (u64, u64) = (start.parse().unwrap(), count.parse().unwrap());
                        let range = format!("{s}-{}", s + c - 1);
                        let out = sh(Command::new("usermod").args([flag, &range, user]));
                        assert!(out.status.success(), "usermod {flag}: {out:?}");
                    }
                }
            }
        }
        assert!(
            !has_subids(user),
            "{user} must have no /etc/subuid range for this test"
        );
    }
    let id = |flag: &str| -> u32 {
        let out = sh(Command::new("id").args([flag, user]));
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// A directory the users can reach: the binary (the target dir may be
/// closed to them) and, per user, a home for its store and context.
struct Place {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    bin: PathBuf,
}

fn place() -> Place {
    let tmp = tempfile::Builder::new()
        .prefix("strata-rootless-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("strata");
    fs::copy(common::strata_bin(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    Place {
        _tmp: tmp,
        dir,
        bin,
    }
}

/// The busybox base (without the `app` user, so the build adds uid 1000)
/// plus a `/dev/null` character device, its directories dated 2001.
/// What the tests that run as the user start from, when root, `tools`
/// and the base can be had: the user (with subordinate ids) and its ids,
/// a scratch place, and the base image tar in it (with the setfcap helper
/// beside it).
fn user_place(tools: &[&str]) -> Option<((u32, u32), Place, PathBuf)> {
    if !require() || !tools.iter().all(|t| strata_testkit::require_tool(t)) {
        return None;
    }
    let owner = ensure_user(USER, true);
    let p = place();
    let tar = p.dir.join("base.tar");
    if !base_tar(&tar) || setfcap(&p.dir).is_none() {
        return None;
    }
    Some((owner, p, tar))
}

fn base_tar(dest: &Path) -> bool {
    let plain = dest.with_extension("plain.tar");
    if !strata_testkit::busybox_rootfs_tar_with(
        &plain,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "root:x:0:\nnogroup:x:65534:\n",
    ) {
        return false;
    }
    let mut out = tar::Builder::new(fs::File::create(dest).unwrap());
    let mut input = tar::Archive::new(fs::File::open(&plain).unwrap());
    for e in input.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        // Directories with a time of their own (not the epoch every
        // layer's changes get): a RUN step that only changes a file in one
        // must leave it, as the kernel's overlay does.
        if h.entry_type() == tar::EntryType::Directory {
            h.set_mtime(1_000_000_000);
        }
        let path = e.path().unwrap().into_owned();
        if h.entry_type() == tar::EntryType::Symlink {
            let target = e.link_name().unwrap().unwrap().into_owned();
            out.append_link(&mut h, &path, &target).unwrap();
        } else {
            out.append_data(&mut h, &path, &mut e).unwrap();
        }
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o666);
    h.set_size(0);
    h.set_mtime(0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    out.append_data(&mut h, "dev/null", std::io::empty())
        .unwrap();
    out.finish().unwrap();
    fs::set_permissions(dest, fs::Permissions::from_mode(0o644)).unwrap();
    true
}

fn write_context(dir: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    let ctx = dir.join("ctx");
    fs::create_dir_all(ctx.join("d")).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(ctx.join("gone"), "to be deleted\n").unwrap();
    fs::write(ctx.join("d/old"), "old\n").unwrap();
    fs::copy(dir.parent().unwrap().join("setfcap"), ctx.join("setfcap")).unwrap();
    if let Some((uid, gid)) = owner {
        chown_tree(dir, uid, gid);
    }
    ctx
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    let out = sh(Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(dir));
    assert!(out.status.success(), "chown: {out:?}");
}

/// `strata ARGS` as `user`, with store `root`.
fn as_user(p: &Place, user: &str, root: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .arg(&p.bin)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", format!("/home/{user}"))
        .env("STRATA_ROOT", root)
        .current_dir(&p.dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok_as(p: &Place, user: &str, root: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = as_user(p, user, root, env, args);
    assert!(
        out.status.success(),
        "{user}: strata {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr)
}

fn image_args(tar: &str) -> [&str; 6] {
    ["import", tar, "busybox", "-c", r#"CMD ["sh"]"#, "-c"]
}

fn import_as(p: &Place, user: Option<&str>, root: &Path, tar: &Path) -> String {
    let tar = tar.to_str().unwrap();
    let mut args = image_args(tar).to_vec();
    args.push("ENV PATH=/bin:/usr/bin");
    match user {
        Some(u) => ok_as(p, u, root, &[], &args),
        None => ok(root, &args),
    }
}

/// The image [`DOCKERFILE`] builds as root: its ID and layer digests.
fn root_build(p: &Place, tar: &Path) -> (String, Vec<String>, Vec<String>) {
    let root_dir = p.dir.join("asroot");
    fs::create_dir_all(&root_dir).unwrap();
    let ctx = write_context(&root_dir, None);
    let store = root_dir.join("store");
    import_as(p, None, &store, tar);
    let out = cmd(&store)
        .args(["build", "-q", "-t", "img", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "root build: {out:?}");
    let want = identity(&store, "img");
    // Root's layer carries the capability as setcap wrote it (revision 2).
    assert_eq!(
        capbox_fcap(&store, &want.1).as_deref(),
        Some(FCAP_V2),
        "root: /capbox's capability in its layer"
    );
    want
}

/// The image ID and layer digests of `image` in the user's store.
fn identity_as(p: &Place, user: &str, store: &Path, image: &str) -> (String, Vec<String>) {
    let inspect = ok_as(p, user, store, &[], &["inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let layers = v[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Digest"].as_str().unwrap().to_owned())
        .collect();
    (v[0]["Id"].as_str().unwrap().to_owned(), layers)
}

/// A home for `user` under the place: its store, its context, and a
/// `$XDG_RUNTIME_DIR` (mode 700, as logind makes it).
fn user_home(p: &Place, name: &str, owner: (u32, u32)) -> (PathBuf, PathBuf, PathBuf) {
    let home = p.dir.join(name);
    let xdg = home.join("xdg");
    fs::create_dir_all(&xdg).unwrap();
    fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).unwrap();
    let ctx = write_context(&home, None);
    let store = home.join("store");
    fs::create_dir_all(&store).unwrap();
    chown_tree(&home, owner.0, owner.1);
    (store, ctx, xdg)
}

/// Whether `/dev/fuse` is usable by `uid` (Debian's udev rule makes it
/// 0666; without it only root may open it).
fn fuse_usable_by(uid: u32) -> bool {
    let usable = fs::metadata("/dev/fuse").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.mode() & 0o006 == 0o006 || m.uid() == uid
    });
    if !usable {
        assert!(
            std::env::var_os("STRATA_TEST_STRICT").is_none(),
            "/dev/fuse is not usable by uid {uid} (scripts/test makes it 0666, as Debian's udev rule does)"
        );
        eprintln!("skipped fuse-overlayfs: /dev/fuse not usable by uid {uid}");
    }
    usable
}

/// FUSE mounts under `dir` in this (the host's) mount namespace, and
/// fuse-overlayfs processes of `uid` anywhere: both must be gone once a
/// strata command ended.
fn fuse_leftovers(dir: &Path, uid: u32) -> Vec<String> {
    let mut left: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - fuse") && l.contains(dir.to_str().unwrap()))
        .map(str::to_owned)
        .collect();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let owner = fs::metadata(e.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        if comm.trim() == "fuse-overlayfs" && owner.is_ok_and(|o| o == uid) {
            left.push(format!("process {}", e.file_name().to_string_lossy()));
        }
    }
    left
}

/// With fuse-overlayfs: nothing stays mounted, nor any daemon running,
/// after a build, a failed RUN step, a container, and a build killed in
/// the middle of a step.
fn fuse_steps_leave_nothing(p: &Place, store: &Path, ctx: &Path, env: &[(&str, &str)], uid: u32) {
    let none = |when: &str| {
        let left = fuse_leftovers(&p.dir, uid);
        assert!(left.is_empty(), "after {when}: {left:?}");
    };
    none("a build and two runs");
    let failing = ctx.join("Dockerfile.fail");
    fs::write(&failing, "FROM img\nRUN echo partial > /p && false\n").unwrap();
    std::os::unix::fs::chown(&failing, Some(uid), None).unwrap();
    let f = failing.to_str().unwrap();
    let c = ctx.to_str().unwrap();
    let out = as_user(p, USER, store, env, &["build", "--no-cache", "-f", f, c]);
    assert!(!out.status.success(), "the failing step fails: {out:?}");
    none("a failed RUN step");
    // Killed while a step runs (its daemon was mounted for it).
    let slow = ctx.join("Dockerfile.slow");
    fs::write(&slow, "FROM img\nRUN touch /started && sleep 60\n").unwrap();
    std::os::unix::fs::chown(&slow, Some(uid), None).unwrap();
    let mut c2 = Command::new("setpriv");
    c2.args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
        .arg(&p.bin)
        .args(["build", "--no-cache", "-f", slow.to_str().unwrap(), c])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", format!("/home/{USER}"))
        .env("STRATA_ROOT", store)
        .envs(env.iter().copied())
        .current_dir(&p.dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c2.spawn().unwrap();
    // Wait (without a clock) for the step's daemon to be up.
    let mut seen = false;
    for _ in 0..6000 {
        if fuse_leftovers(&p.dir, uid)
            .iter()
            .any(|l| l.starts_with("process"))
        {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen, "the slow step mounted fuse-overlayfs");
    // SIGKILL (nothing can clean up after it): the namespaced strata
    // dies with it, and the daemon with that.
    child.kill().unwrap();
    let _ = child.wait();
    let mut left = fuse_leftovers(&p.dir, uid);
    for _ in 0..500 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = fuse_leftovers(&p.dir, uid);
    }
    assert!(left.is_empty(), "after a killed build: {left:?}");
}

#[test]
fn rootless_build_gives_roots_digest_with_each_snapshotter_and_runs() {
    if !require() {
        return;
    }
    let (uid, gid) = ensure_user(USER, true);
    let p = place();
    let tar = p.dir.join("base.tar");
    if !base_tar(&tar) || setfcap(&p.dir).is_none() {
        return;
    }

    let want = root_build(&p, &tar);

    let mut snapshotters = vec!["copy"];
    if strata_testkit::require_overlay() {
        snapshotters.push("overlay");
    }
    // Forced here (the kernel's overlay would serve on Linux >= 5.11).
    if strata_testkit::require_tool("fuse-overlayfs") && fuse_usable_by(uid) {
        snapshotters.push("fuse-overlayfs");
    }
    for snap in snapshotters {
        let home = p.dir.join(format!("user-{snap}"));
        fs::create_dir_all(&home).unwrap();
        let ctx = write_context(&home, Some((uid, gid)));
        let store = home.join("store");
        fs::create_dir_all(&store).unwrap();
        chown_tree(&home, uid, gid);
        let env = [("STRATA_SNAPSHOTTER", snap)];
        let info = ok_as(&p, USER, &store, &env, &["info"]);
        assert!(info.contains("rootless"), "{info}");
        assert!(info.contains("/etc/subuid"), "mapping named: {info}");
        // Whether fuse-overlayfs could serve is said.
        assert!(info.contains(" FUSE:         fuse-overlayfs"), "{info}");
        assert!(
            info.contains(&format!("Snapshotter:  {snap}")),
            "{snap}: {info}"
        );
        import_as(&p, Some(USER), &store, &tar);
        let out = ok_as(
            &p,
            USER,
            &store,
            &env,
            &[
                "build",
                "-t",
                "img",
                "--progress",
                "plain",
                ctx.to_str().unwrap(),
            ],
        );
        assert!(
            out.contains("dev/null") && out.contains("device node skipped"),
            "{snap}: the base's device node is skipped with a warning:\n{out}"
        );
        // Digests as root's: the tar headers carry the in-container ids.
        let inspect = ok_as(&p, USER, &store, &[], &["inspect", "img"]);
        let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        let got_id = v[0]["Id"].as_str().unwrap().to_owned();
        let got_layers: Vec<String> = v[0]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["Digest"].as_str().unwrap().to_owned())
            .collect();
        // The layer has the capability in the portable revision 2, as
        // root's (below: though the kernel stores revision 3 rootless).
        assert_eq!(
            capbox_fcap(&store, &got_layers).as_deref(),
            Some(FCAP_V2),
            "{snap}: /capbox's capability in its layer"
        );
        assert_eq!(got_layers, want.1, "{snap}: layer digests");
        assert_eq!(got_id, want.0, "{snap}: image ID");

        // The store's files belong to the user (or its subordinate ids).
        let meta = fs::metadata(store.join("blobs")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), uid);

        // strata run, rootless: ids, modes and contents as built.
        let out = ok_as(
            &p,
            USER,
            &store,
            &env,
            &[
                "run",
                "--rm",
                "img",
                "sh",
                "-c",
                "stat -c '%n %u:%g %a' /owned /home/dev/f /usr/bin/suidbox; ls /d; test ! -e /gone && echo gone; id -u",
            ],
        );
        for want in [
            "/owned 65534:65534 644",
            "/home/dev/f 1000:1000 644",
            "/usr/bin/suidbox 0:0 4755",
            "new",
            "gone",
        ] {
            assert!(out.contains(want), "{snap}: {want:?} in\n{out}");
        }
        assert!(!out.contains("old"), "{snap}: /d was replaced:\n{out}");
        // The image's layer, extracted for that run as the user: the
        // kernel stored the capability as revision 3, with the
        // namespace's root (the user) as root id.
        let stored = raw_fcaps(&store, "capbox");
        let v3 = format!("01000003{}{}", &FCAP_V2[8..], hex(&uid.to_le_bytes()));
        assert!(
            stored.contains(&v3),
            "{snap}: the kernel's form of the capability on disk: {stored:?}"
        );
        // A user in the image runs as that user.
        let out = ok_as(
            &p,
            USER,
            &store,
            &env,
            &["run", "--rm", "--user", "1000", "img", "id", "-u"],
        );
        assert_eq!(out.lines().next(), Some("1000"), "{snap}: {out}");
        if snap == "fuse-overlayfs" {
            fuse_steps_leave_nothing(&p, &store, &ctx, &env, uid);
        }
        // Clean up as the user (files of subordinate ids included).
        ok_as(&p, USER, &store, &[], &["rmi", "img"]);
        ok_as(&p, USER, &store, &[], &["prune", "--all"]);
    }
}

#[test]
fn a_user_without_subordinate_ids_is_told_how_to_get_them() {
    if !require() {
        return;
    }
    let (uid, gid) = ensure_user(NOSUB, false);
    let p = place();
    let tar = p.dir.join("base.tar");
    if !base_tar(&tar) {
        return;
    }
    let home = p.dir.join("nosub");
    fs::create_dir_all(&home).unwrap();
    let ctx = home.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo x > /f && chown 65534:65534 /f\n",
    )
    .unwrap();
    let store = home.join("store");
    fs::create_dir_all(&store).unwrap();
    chown_tree(&home, uid, gid);
    import_as(&p, Some(NOSUB), &store, &tar);
    // What does not need other ids works.
    let out = ok_as(
        &p,
        NOSUB,
        &store,
        &[],
        &["run", "--rm", "busybox", "echo", "hi"],
    );
    assert!(out.contains("hi"), "{out}");
    let info = ok_as(&p, NOSUB, &store, &[], &["info"]);
    assert!(info.contains("only uid"), "{info}");
    let out = as_user(&p, NOSUB, &store, &[], &["build", ctx.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/etc/subuid"), "{err}");
    assert!(
        err.contains(&format!(
            "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {NOSUB}"
        )),
        "{err}"
    );
}

/// runc and crun run rootless: in strata's user namespace (no user
/// namespace of their own, no cgroups, /sys bound from the host), with
/// their state under `$XDG_RUNTIME_DIR`. A build whose RUN steps they run
/// gives root's digest; `strata run` with them sees the image as built.
#[test]
fn rootless_runc_and_crun_build_roots_digest_and_run() {
    let Some((owner, p, tar)) = user_place(&["runc", "crun"]) else {
        return;
    };
    let want = root_build(&p, &tar);
    for rt in ["crun", "runc"] {
        let (store, ctx, xdg) = user_home(&p, &format!("user-{rt}"), owner);
        let env = [("XDG_RUNTIME_DIR", xdg.to_str().unwrap())];
        import_as(&p, Some(USER), &store, &tar);
        ok_as(
            &p,
            USER,
            &store,
            &env,
            &[
                "build",
                "-q",
                "-t",
                "img",
                "--isolation",
                rt,
                ctx.to_str().unwrap(),
            ],
        );
        assert!(
            xdg.join("strata").join(rt).is_dir(),
            "{rt}: its state under $XDG_RUNTIME_DIR/strata"
        );
        let (id, layers) = identity_as(&p, USER, &store, "img");
        assert_eq!(layers, want.1, "{rt}: layer digests");
        assert_eq!(id, want.0, "{rt}: image ID");
        let out = ok_as(
            &p,
            USER,
            &store,
            &env,
            &[
                "run",
                "--rm",
                "--isolation",
                rt,
                "img",
                "sh",
                "-c",
                "stat -c '%n %u:%g %a' /owned /home/dev/f /usr/bin/suidbox; test -c /dev/null && echo devnull; ls /sys/kernel >/dev/null && echo sys",
            ],
        );
        for want in [
            "/owned 65534:65534 644",
            "/home/dev/f 1000:1000 644",
            "/usr/bin/suidbox 0:0 4755",
            "devnull",
            "sys",
        ] {
            assert!(out.contains(want), "{rt}: {want:?} in\n{out}");
        }
        let out = ok_as(
            &p,
            USER,
            &store,
            &env,
            &[
                "run",
                "--rm",
                "--isolation",
                rt,
                "--user",
                "1000",
                "img",
                "id",
                "-u",
            ],
        );
        assert_eq!(out.lines().next(), Some("1000"), "{rt}: {out}");
    }
}

/// A detached container rootless, with each executor: a later `exec`,
/// `stop` and `rm` (each its own strata process) reach it, by joining the
/// user namespace its supervisor keeps; so does a `stop` of two containers
/// at once, one of them running as another id (uid 1000), which a process
/// outside its user namespace could not signal.
#[test]
fn rootless_detached_containers_exec_stop_and_rm() {
    let Some((owner, p, tar)) = user_place(&["runc", "crun"]) else {
        return;
    };
    for iso in ["builtin", "crun", "runc"] {
        let (store, _, xdg) = user_home(&p, &format!("user-{iso}"), owner);
        let env = [("XDG_RUNTIME_DIR", xdg.to_str().unwrap())];
        import_as(&p, Some(USER), &store, &tar);
        let u = |args: &[&str]| ok_as(&p, USER, &store, &env, args);
        u(&[
            "run",
            "-d",
            "--isolation",
            iso,
            "--name",
            "c1",
            "--user",
            "1000",
            "busybox",
            "sh",
            "-c",
            "trap 'echo term; exit 3' TERM; echo started; while :; do sleep 0.1; done",
        ]);
        u(&[
            "run",
            "-d",
            "--isolation",
            iso,
            "--name",
            "c2",
            "busybox",
            "sleep",
            "1000",
        ]);
        // Its output (the trap is set once this is there).
        let mut tries = 0;
        while !u(&["logs", "c1"]).contains("started") {
            tries += 1;
            assert!(tries < 600, "{iso}: c1 never started");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let ps = u(&["ps"]);
        assert!(ps.contains("c1") && ps.contains("c2"), "{iso}: {ps}");
        let out = u(&["exec", "c1", "sh", "-c", "echo in:$(id -u)"]);
        assert!(out.contains("in:1000"), "{iso}: exec: {out}");
        let out = u(&["exec", "--user", "0", "c2", "sh", "-c", "echo in:$(id -u)"]);
        assert!(out.contains("in:0"), "{iso}: exec: {out}");
        // c2's sleep, pid 1 under a runtime, ignores SIGTERM: killed
        // after the grace time (the built-in sandbox's TERM ends it).
        u(&["stop", "-t", "1", "c1", "c2"]);
        let ps = u(&["ps", "-a"]);
        let line = |name: &str| {
            ps.lines()
                .find(|l| l.ends_with(name))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(line("c1").contains("Exited (3)"), "{iso}: {ps}");
        assert!(
            line("c2").contains("Exited (137)") || line("c2").contains("Exited (143)"),
            "{iso}: {ps}"
        );
        assert!(u(&["logs", "c1"]).contains("term"), "{iso}: c1 got SIGTERM");
        u(&["rm", "c1", "c2"]);
        let ps = u(&["ps", "-a"]);
        assert!(!ps.contains("c1") && !ps.contains("c2"), "{iso}: {ps}");
    }
}

/// The registry side rootless: `strata serve` as the user on loopback (its
/// store in the user's files), `push` to it, `pull` from it into another
/// store (the same image ID), `analyze` and `lint` as the user.
#[test]
fn rootless_serve_push_pull_analyze_and_lint() {
    let Some((owner, p, tar)) = user_place(&[]) else {
        return;
    };
    let (store, ctx, _) = user_home(&p, "user-reg", owner);
    let (pulled, _, _) = user_home(&p, "user-pull", owner);
    let (served, _, _) = user_home(&p, "user-serve", owner);
    import_as(&p, Some(USER), &store, &tar);
    ok_as(
        &p,
        USER,
        &store,
        &[],
        &["build", "-q", "-t", "img", ctx.to_str().unwrap()],
    );
    let want = identity_as(&p, USER, &store, "img");

    let addr = format!("127.0.0.1:{}", common::free_port());
    let log = p.dir.join("serve.log");
    let mut serve = Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
        .arg(&p.bin)
        .args(["serve", "--addr", &addr])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", format!("/home/{USER}"))
        .env("STRATA_ROOT", &served)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..400 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(
            up,
            "serve: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        let dest = format!("{addr}/rl/img:1");
        ok_as(&p, USER, &store, &[], &["push", "img", &dest]);
        // The served store is the user's.
        let meta = fs::metadata(served.join("blobs")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), owner.0);
        ok_as(&p, USER, &pulled, &[], &["pull", &dest]);
        assert_eq!(identity_as(&p, USER, &pulled, &dest), want, "pulled");
        // A layer deletes /gone, which the image still carries.
        let out = as_user(
            &p,
            USER,
            &pulled,
            &[],
            &["analyze", "--format", "json", &dest],
        );
        assert!(out.status.success(), "analyze: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["wasted_bytes"].as_u64().unwrap() >= "to be deleted\n".len() as u64,
            "{v}"
        );
        let out = as_user(
            &p,
            USER,
            &store,
            &[],
            &[
                "lint",
                "-f",
                ctx.join("Dockerfile").to_str().unwrap(),
                "--format",
                "json",
                "--failure-threshold",
                "none",
            ],
        );
        assert!(out.status.success(), "lint: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v.is_array() || v.is_object(), "lint: {v}");
    }));
    // SAFETY: kill(2) of the child this test started.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let _ = serve.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
