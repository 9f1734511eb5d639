//! Resolving `USER` / `-u` specs against the image's /etc/passwd and /etc/group.

use std::path::Path;

use crate::error::UserError;
use crate::spec::User;

/// A resolved user: ids for the executor, and the home directory for `HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid, gid and supplementary groups.
    pub user: User,
    /// The user's home directory from /etc/passwd, `/` when unknown.
    pub home: String,
}

/// Resolves a docker user spec (`""`, `name`, `uid`, `name:group`,
/// `uid:gid`...) with docker's rules, reading `/etc/passwd` and `/etc/group`
/// inside `rootfs` (symlinks resolved inside it, never on the host):
///
/// - numeric ids pass through even without a passwd/group entry;
/// - an unknown user or group name is an error;
/// - without a group, the gid is the user's passwd gid (0 when the uid has
///   no entry), and the supplementary groups are the /etc/group entries that
///   list the user's name;
/// - with an explicit group, there are no supplementary groups.
pub fn resolve_user(spec: &str, rootfs: &Path) -> Result<ResolvedUser, UserError> {
    let read = |name: &str| -> Result<Option<String>, UserError> {
        crate::fsutil::read_in_root(rootfs, name)
            .map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(|source| UserError::Read {
                path: rootfs.join(name.trim_start_matches('/')),
                source,
            })
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    resolve_user_with(spec, passwd.as_deref(), group.as_deref())
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).copied().unwrap_or(""),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?,
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_id(s: &str) -> Option<Result<u32, ()>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<u32>() {
        Ok(n) if n <= i32::MAX as u32 => Ok(n),
        _ => Err(()),
    })
}

/// [`resolve_user`] on the text of /etc/passwd and /etc/group (`None`: the
/// file does not exist), for callers that read the image's files themselves
/// (the builder reads them from layer snapshots).
pub fn resolve_user_with(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let users = parse_passwd(passwd.unwrap_or(""));
    let groups = parse_group(group.unwrap_or(""));

    let out_of_range = || UserError::OutOfRange {
        spec: spec.to_string(),
    };
    let (uid, entry) = match parse_id(user_part) {
        Some(Ok(uid)) => (uid, users.iter().find(|e| e.uid == uid)),
        Some(Err(())) => return Err(out_of_range()),
        None => match users.iter().find(|e| e.name == user_part) {
            Some(e) => (e.uid, Some(e)),
            None => {
                return Err(UserError::UnknownUser {
                    name: user_part.to_string(),
                    no_file: passwd.is_none(),
                })
            }
        },
    };
    let home = entry
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_string();

    let (gid, additional_gids) = match group_part {
        Some(g) if !g.is_empty() => {
            let gid = match parse_id(g) {
                Some(Ok(gid)) => gid,
                Some(Err(())) => return Err(out_of_range()),
                None => match groups.iter().find(|e| e.name == g) {
                    Some(e) => e.gid,
                    None => {
                        return Err(UserError::UnknownGroup {
                            name: g.to_string(),
                            no_file: group.is_none(),
                        })
                    }
                },
            };
            (gid, Vec::new())
        }
        _ => {
            let gid = entry.map(|e| e.gid).unwrap_or(0);
            let mut extra = Vec::new();
            if let Some(e) = entry {
                for g in &groups {
                    if g.members.contains(&e.name) && g.gid != gid && !extra.contains(&g.gid) {
                        extra.push(g.gid);
                    }
                }
            }
            (gid, extra)
        }
    };
    Ok(ResolvedUser {
        user: User {
            uid,
            gid,
            additional_gids,
        },
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        app:x:1000:1000::/home/app:/bin/sh\n\
        # comment\n\
        svc:x:1001:1001::/srv:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,svc\napp:x:1000:\nwheel:x:10:app\n";

    fn ok(spec: &str) -> (u32, u32, Vec<u32>, String) {
        let r = resolve_user_with(spec, Some(PASSWD), Some(GROUP)).unwrap();
        (r.user.uid, r.user.gid, r.user.additional_gids, r.home)
    }

    #[test]
    fn docker_rules() {
        type Want<'a> = (u32, u32, &'a [u32], &'a str);
        let cases: &[(&str, Want)] = &[
            ("", (0, 0, &[], "/root")),
            ("root", (0, 0, &[], "/root")),
            ("app", (1000, 1000, &[50, 10], "/home/app")),
            ("1000", (1000, 1000, &[50, 10], "/home/app")),
            ("app:staff", (1000, 50, &[], "/home/app")),
            ("app:10", (1000, 10, &[], "/home/app")),
            ("app:777", (1000, 777, &[], "/home/app")),
            ("4242", (4242, 0, &[], "/")),
            ("4242:4242", (4242, 4242, &[], "/")),
            ("svc", (1001, 1001, &[50], "/srv")),
            (":staff", (0, 50, &[], "/root")),
        ];
        for (spec, (uid, gid, extra, home)) in cases {
            assert_eq!(
                ok(spec),
                (*uid, *gid, extra.to_vec(), home.to_string()),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn errors() {
        let err = |spec: &str, p: Option<&str>, g: Option<&str>| {
            resolve_user_with(spec, p, g).unwrap_err().to_string()
        };
        assert!(err("nobody", Some(PASSWD), Some(GROUP)).contains("nobody"));
        assert!(err("app:nogroup", Some(PASSWD), Some(GROUP)).contains("nogroup"));
        assert!(err("app", None, None).contains("no /etc/passwd"));
        assert!(err("99999999999", Some(PASSWD), None).contains("range"));
        // numeric ids need no files
        assert_eq!(
            resolve_user_with("5:6", None, None).unwrap().user,
            User {
                uid: 5,
                gid: 6,
                additional_gids: vec![]
            }
        );
    }

    #[test]
    fn reads_files_inside_rootfs_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        // a symlink pointing at the host's /etc/passwd resolves inside the rootfs
        std::os::unix::fs::symlink("/etc/shadow-does-not-exist", root.path().join("etc/passwd"))
            .unwrap();
        std::fs::write(root.path().join("etc/group"), GROUP).unwrap();
        let e = resolve_user("root", root.path()).unwrap_err().to_string();
        assert!(e.contains("no /etc/passwd"), "{e}");
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), PASSWD).unwrap();
        let r = resolve_user("app", root.path()).unwrap();
        assert_eq!(r.user.additional_gids, vec![50, 10]);
    }
}
