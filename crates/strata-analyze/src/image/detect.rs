//! Known waste in the final filesystem.

use std::collections::BTreeMap;

use serde::Serialize;

use super::walk::{FileInfo, Tree};

/// One kind of known waste found in the final filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable id (`apt-lists`, `package-cache`, `toolchain`, `jdk`,
    /// `headers`, `user-cache`, `docs`, `fat-jar`, `vcs-dir`).
    pub id: String,
    /// What it is.
    pub title: String,
    /// Bytes found.
    pub bytes: u64,
    /// Regular files found.
    pub files: u64,
    /// The directories (or files) found, largest first, with their bytes.
    pub paths: Vec<(String, u64)>,
    /// The layers that wrote those bytes.
    pub layers: Vec<usize>,
    /// Their Dockerfile lines, where known.
    pub lines: Vec<usize>,
    /// What to do about it.
    pub fix: String,
    /// The section of `docs/practices.md` that explains it.
    pub doc: String,
    /// Of `bytes`, those in the base image's layers (the Dockerfile did
    /// not add them; only another base removes them).
    pub base_bytes: u64,
}

struct Rule {
    id: &'static str,
    title: &'static str,
    fix: &'static str,
    /// Its section of `docs/practices.md`.
    anchor: &'static str,
    /// The directory a path is reported under, if it belongs to this rule.
    matcher: fn(&str, &FileInfo) -> Option<String>,
}

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

fn first_under(path: &str, dirs: &[&str]) -> Option<String> {
    dirs.iter()
        .find(|d| under(path, d))
        .map(|d| (*d).to_owned())
}

/// `home/alice/.cache/x` -> `home/alice/.cache`.
fn home_dir_under(path: &str, sub: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let sub_parts: Vec<&str> = sub.split('/').collect();
    let homes: &[usize] = &[1, 2];
    for &h in homes {
        // root/<sub> (h=1) or home/<user>/<sub> (h=2)
        let ok_prefix = (h == 1 && parts.first() == Some(&"root"))
            || (h == 2 && parts.first() == Some(&"home") && parts.len() > 2);
        if !ok_prefix || parts.len() <= h + sub_parts.len() {
            continue;
        }
        if parts[h..h + sub_parts.len()] == sub_parts[..] {
            return Some(parts[..h + sub_parts.len()].join("/"));
        }
    }
    None
}

fn rules() -> Vec<Rule> {
    vec![
        Rule {
            id: "apt-lists",
            anchor: "package-managers",
            title: "apt package lists",
            fix: "end the RUN that runs apt-get update with `&& rm -rf /var/lib/apt/lists/*`",
            matcher: |p, _| {
                (under(p, "var/lib/apt/lists") && !p.ends_with("/lock"))
                    .then(|| "var/lib/apt/lists".to_owned())
            },
        },
        Rule {
            id: "package-cache",
            anchor: "package-managers",
            title: "package manager caches",
            fix: "clean the cache in the RUN that fills it: `apt-get clean`, `apk add --no-cache`, `dnf clean all`, `yum clean all`",
            matcher: |p, _| {
                first_under(
                    p,
                    &[
                        "var/cache/apt",
                        "var/cache/apk",
                        "var/cache/yum",
                        "var/cache/dnf",
                        "var/cache/zypp",
                        "etc/apk/cache",
                    ],
                )
                .filter(|_| !p.ends_with("/lock"))
            },
        },
        Rule {
            id: "toolchain",
            anchor: "multi-stage",
            title: "C/C++ build toolchain",
            fix: "compile in a builder stage and COPY --from=builder only the results into a runtime stage",
            matcher: |p, _| {
                if let Some(d) = first_under(p, &["usr/lib/gcc", "usr/libexec/gcc", "usr/lib/gcc-cross"]) {
                    return Some(d);
                }
                let name = p.rsplit('/').next().unwrap_or(p);
                let bin = p.starts_with("usr/bin/") || p.starts_with("usr/local/bin/");
                let tool = name == "cc1"
                    || name == "cc1plus"
                    || name.starts_with("gcc")
                    || name.starts_with("g++")
                    || name.starts_with("x86_64-linux-gnu-gcc")
                    || name.starts_with("x86_64-linux-gnu-g++")
                    || name.starts_with("aarch64-linux-gnu-gcc")
                    || name.starts_with("cpp-")
                    || name == "ld.bfd"
                    || name == "ld.gold"
                    || name.starts_with("x86_64-linux-gnu-ld");
                (bin && tool).then(|| p.to_owned())
            },
        },
        Rule {
            id: "jdk",
            anchor: "multi-stage",
            title: "Java development kit (javac, jmods) in a runtime image",
            fix: "build with the JDK in a builder stage and run on a JRE (or jlink'ed) base",
            matcher: |p, _| {
                // usr/lib/jvm/<jdk>/..., opt/java/<jdk>/... : report the JDK dir when it has javac or jmods.
                for base in ["usr/lib/jvm", "opt/java", "usr/local/openjdk", "opt/jdk"] {
                    if under(p, base) {
                        let rest = &p[base.len() + 1..];
                        let jdk = rest.split('/').next().unwrap_or(rest);
                        if rest.ends_with("/bin/javac") || rest.contains("/jmods/") || rest.ends_with("/lib/ct.sym") {
                            return Some(format!("{base}/{jdk}"));
                        }
                    }
                }
                None
            },
        },
        Rule {
            id: "headers",
            anchor: "multi-stage",
            title: "C headers and static libraries",
            fix: "install -dev packages only in a builder stage",
            matcher: |p, _| {
                if under(p, "usr/include") || under(p, "usr/local/include") {
                    return Some(if p.starts_with("usr/local") { "usr/local/include" } else { "usr/include" }.to_owned());
                }
                (p.ends_with(".a") && (p.starts_with("usr/lib/") || p.starts_with("usr/local/lib/")))
                    .then(|| "static libraries (*.a)".to_owned())
            },
        },
        Rule {
            id: "user-cache",
            anchor: "package-managers",
            title: "tool caches (pip, npm, cargo, maven, gradle, ~/.cache)",
            fix: "use `pip install --no-cache-dir`, `npm ci && npm cache clean --force`, or a `RUN --mount=type=cache,target=...` so caches never reach a layer",
            matcher: |p, _| {
                for sub in [".cache", ".npm", ".cargo/registry", ".cargo/git", ".m2/repository", ".gradle/caches", ".yarn/cache", ".composer/cache"] {
                    if let Some(d) = home_dir_under(p, sub) {
                        return Some(d);
                    }
                }
                first_under(p, &["usr/local/share/.cache", "tmp/pip-cache", "usr/local/share/.npm"])
            },
        },
        Rule {
            id: "docs",
            anchor: "package-managers",
            title: "documentation and man pages",
            fix: "exclude docs at install time (dpkg path-exclude for /usr/share/doc, man, info) or delete them in the same RUN",
            matcher: |p, _| first_under(p, &["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/gtk-doc", "usr/local/share/man", "usr/local/share/doc"]),
        },
        Rule {
            id: "fat-jar",
            anchor: "split-layers",
            title: "fat jar copied as one file",
            fix: "unpack the jar (`java -Djarmode=layertools -jar app.jar extract` or `jar xf`) and COPY BOOT-INF/lib, META-INF, org and BOOT-INF/classes as separate layers, so a code change pushes only the classes",
            matcher: |p, f| (f.nested_jars > 0 || f.boot_classes).then(|| p.to_owned()),
        },
        Rule {
            id: "vcs-dir",
            anchor: "build-context",
            title: "version control metadata",
            fix: "add `.git` (and .svn, .hg) to .dockerignore",
            matcher: |p, _| {
                let parts: Vec<&str> = p.split('/').collect();
                parts[..parts.len().saturating_sub(1)]
                    .iter()
                    .position(|c| matches!(*c, ".git" | ".svn" | ".hg"))
                    .map(|i| parts[..=i].join("/"))
            },
        },
    ]
}

/// Per rule: bytes, files, bytes per reported path, bytes per layer.
type Acc = (u64, u64, BTreeMap<String, u64>, BTreeMap<usize, u64>);

/// Run every detector over the final filesystem; the bottom `base_layers`
/// layers are the base image's.
pub(super) fn detect(
    tree: &Tree,
    line_of: &dyn Fn(usize) -> Option<usize>,
    base_layers: usize,
) -> Vec<Finding> {
    let rules = rules();
    let mut acc: Vec<Acc> = vec![Acc::default(); rules.len()];
    for (path, f) in tree.files() {
        if f.hardlink {
            continue;
        }
        for (i, r) in rules.iter().enumerate() {
            if let Some(group) = (r.matcher)(path, f) {
                let a = &mut acc[i];
                a.0 += f.size;
                a.1 += 1;
                *a.2.entry(group).or_default() += f.size;
                *a.3.entry(f.layer).or_default() += f.size;
                break;
            }
        }
    }
    let mut out = Vec::new();
    for (r, (bytes, files, groups, layers)) in rules.iter().zip(acc) {
        if files == 0 || bytes == 0 {
            continue;
        }
        let mut paths: Vec<(String, u64)> = groups.into_iter().collect();
        paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        paths.truncate(8);
        let base_bytes = layers
            .iter()
            .filter(|(l, _)| **l < base_layers)
            .map(|(_, b)| *b)
            .sum();
        let layers: Vec<usize> = layers.into_keys().collect();
        let mut title = r.title.to_owned();
        if r.id == "fat-jar" {
            let nested: u64 = tree
                .files()
                .filter(|(p, _)| paths.iter().any(|(q, _)| q == *p))
                .map(|(_, f)| f.nested_jars)
                .sum();
            if nested > 0 {
                title = format!("{title} (about {nested} dependency jars inside)");
            }
        }
        out.push(Finding {
            id: r.id.to_owned(),
            title,
            bytes,
            files,
            paths,
            lines: layers.iter().filter_map(|&l| line_of(l)).collect(),
            layers,
            fix: r.fix.to_owned(),
            doc: crate::practices::url(r.anchor),
            base_bytes,
        });
    }
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_caches_are_found_for_root_and_users() {
        assert_eq!(
            home_dir_under("root/.cache/pip/http/x", ".cache").as_deref(),
            Some("root/.cache")
        );
        assert_eq!(
            home_dir_under("home/app/.npm/_cacache/y", ".npm").as_deref(),
            Some("home/app/.npm")
        );
        assert_eq!(home_dir_under("root/.cachex/y", ".cache"), None);
        assert!(under("usr/share/doc/x", "usr/share/doc"));
        assert!(!under("usr/share/docs/x", "usr/share/doc"));
    }
}
