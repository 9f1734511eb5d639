//! SL201 build tools in the final stage, SL202 Python on alpine, SL203
//! untagged FROM, SL204 `latest` (practices 5, 6 and 13).

use super::super::rules::*;
use super::super::{Finding, Model, StageInfo};
use super::{line, operands_after, pm, show};

/// An image reference split: (repository, tag, digest).
pub(crate) fn split_ref(r: &str) -> (String, Option<String>, Option<String>) {
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (r, None),
    };
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(k) => (
            name[..slash + k].to_string(),
            Some(name[slash + k + 1..].to_string()),
            digest,
        ),
        None => (name.to_string(), None, digest),
    }
}

fn repo_base(repo: &str) -> String {
    repo.rsplit('/').next().unwrap_or(repo).to_ascii_lowercase()
}

const TOOLS: &[&str] = &[
    "gcc",
    "g++",
    "make",
    "cmake",
    "build-essential",
    "build-base",
    "clang",
    "llvm",
    "autoconf",
    "automake",
    "libtool",
    "musl-dev",
    "libc6-dev",
    "libc-dev",
    "linux-headers",
    "default-jdk",
    "default-jdk-headless",
    "maven",
    "gradle",
    "golang",
    "golang-go",
    "go",
    "rustc",
    "cargo",
    "gfortran",
    "ninja-build",
    "meson",
    "gcc-c++",
    "kernel-headers",
    "glibc-devel",
    "java-17-openjdk-devel",
    "java-11-openjdk-devel",
    "java-21-openjdk-devel",
];

fn is_tool(pkg: &str) -> bool {
    let p = pkg
        .split(['=', ':'])
        .next()
        .unwrap_or(pkg)
        .to_ascii_lowercase();
    TOOLS.contains(&p.as_str())
        || (p.starts_with("gcc-") && p[4..].chars().all(|c| c.is_ascii_digit() || c == '.'))
        || (p.starts_with("g++-") && p[4..].chars().all(|c| c.is_ascii_digit() || c == '.'))
        || (p.starts_with("openjdk") && p.ends_with("-jdk"))
        || (p.starts_with("openjdk") && p.contains("-jdk-headless"))
}

/// Toolchain base images, and the commands that build with them.
fn toolchain_base(repo: &str, tag: Option<&str>) -> bool {
    let b = repo_base(repo);
    let tag = tag.unwrap_or("");
    matches!(
        b.as_str(),
        "golang" | "rust" | "maven" | "gradle" | "gcc" | "sbt"
    ) || (matches!(
        b.as_str(),
        "openjdk" | "eclipse-temurin" | "amazoncorretto" | "ibmjava" | "sapmachine"
    ) && (tag.contains("jdk") || b == "openjdk" && !tag.contains("jre")))
}

fn builds(c: &super::super::shell::Command) -> bool {
    let p = c.program();
    let sub = c
        .subcommand(&["-o", "-C", "-f"])
        .map(|(_, s)| s)
        .unwrap_or_default();
    match p.as_str() {
        "go" => matches!(sub.as_str(), "build" | "install"),
        "cargo" => matches!(sub.as_str(), "build" | "install"),
        "mvn" | "mvnw" | "./mvnw" => c.operands().iter().any(|w| {
            matches!(
                w.lower().as_str(),
                "package" | "install" | "verify" | "compile"
            )
        }),
        "gradle" | "gradlew" | "./gradlew" => c.operands().iter().any(|w| {
            matches!(
                w.lower().as_str(),
                "build" | "assemble" | "bootjar" | "jar" | "installdist" | "shadowjar"
            )
        }),
        "gcc" | "g++" | "cc" | "c++" | "make" | "cmake" | "javac" | "rustc" | "clang" => true,
        _ => false,
    }
}

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    for st in &m.stages {
        from_tags(m, st, out);
        python_alpine(m, st, out);
    }
    build_tools(m, out);
}

fn from_tags(m: &Model, st: &StageInfo, out: &mut Vec<Finding>) {
    let b = st.base.trim();
    if b.is_empty() || b.contains('$') || b.eq_ignore_ascii_case("scratch") || st.parent.is_some() {
        return;
    }
    let (repo, tag, digest) = split_ref(b);
    let span = st.stage.base.span;
    let node = Some(st.stage.node);
    if digest.is_some() {
        return;
    }
    match tag.as_deref() {
        None => {
            let mut f = m.finding(
                &FROM_NO_TAG,
                span.offset,
                span.end(),
                node,
                format!("`FROM {b}` has no tag, so it means `{repo}:latest`, which changes under you: pin a version tag"),
            );
            f.fix.description =
                format!("write a version tag, e.g. `FROM {repo}:<version>` (or pin a digest)");
            out.push(f);
        }
        Some(t) if t.eq_ignore_ascii_case("latest") => {
            let mut f = m.finding(
                &FROM_LATEST,
                span.offset,
                span.end(),
                node,
                format!("`FROM {b}` uses `latest`, which is not a version: pin a version tag"),
            );
            f.fix.description =
                format!("replace `latest` with a version tag, e.g. `FROM {repo}:<version>`");
            out.push(f);
        }
        _ => {}
    }
}

fn python_alpine(m: &Model, st: &StageInfo, out: &mut Vec<Finding>) {
    let (repo, tag, _) = split_ref(st.base.trim());
    let b = repo_base(&repo);
    let tag = tag.unwrap_or_default().to_ascii_lowercase();
    let span = st.stage.base.span;
    if b == "python" && tag.contains("alpine") {
        let version = tag
            .split("-alpine")
            .next()
            .filter(|v| !v.is_empty() && *v != "alpine")
            .unwrap_or("3");
        let mut f = m.finding(
            &PYTHON_ALPINE,
            span.offset,
            span.end(),
            Some(st.stage.node),
            format!("`FROM {}` is Python on musl: PyPI wheels are built for glibc, so pip compiles packages from source; use `python:{version}-slim`", st.base),
        );
        f.fix.description = format!("use `FROM python:{version}-slim`");
        out.push(f);
        return;
    }
    if b == "alpine" || tag.contains("alpine") {
        // alpine plus a Python installed with apk and packages from pip.
        let apk_python = st.insts.iter().flat_map(|i| i.cmds.iter()).any(|c| {
            pm(c).is_some_and(|(mg, si, s)| {
                mg == "apk"
                    && s == "add"
                    && operands_after(c, si, &["-t", "--virtual"])
                        .iter()
                        .any(|w| w.lower().starts_with("python"))
            })
        });
        let pip = st
            .insts
            .iter()
            .flat_map(|i| i.cmds.iter().map(move |c| (i, c)))
            .find(|(_, c)| {
                pm(c).is_some_and(|(mg, _, s)| mg == "pip" && s == "install")
                    && !c.args().iter().any(|w| w.text == "pip")
            });
        if let (true, Some((_, c))) = (apk_python, pip) {
            let mut f = m.finding(
                &PYTHON_ALPINE,
                span.offset,
                span.end(),
                Some(st.stage.node),
                format!(
                    "`FROM {}` is musl-based and {} (line {}) installs PyPI packages: they compile from source on musl; use a `python:*-slim` base",
                    st.base,
                    show(c),
                    line(m, c.start)
                ),
            );
            f.fix.description = "use `FROM python:<version>-slim` (glibc) instead of alpine".into();
            out.push(f);
        }
    }
}

fn build_tools(m: &Model, out: &mut Vec<Finding>) {
    let Some(fin) = m.stages.get(m.target) else {
        return;
    };
    let single = m.stages.len() == 1;
    let chain: Vec<&StageInfo> = m.stages.iter().filter(|s| s.in_image).collect();
    let from_line = line(m, fin.stage.span.offset);
    let split_hint = |what: &str| {
        if single {
            format!(
                "split the build: `FROM {} AS builder` with {what} and the build steps, then a new final stage that copies only the results (`COPY --from=builder ...`)",
                fin.base
            )
        } else {
            format!("move {what} and the build steps to a builder stage and `COPY --from=` only the results into the final stage (line {from_line})")
        }
    };
    // A toolchain base that also builds here.
    for st in &chain {
        let (repo, tag, _) = split_ref(st.base.trim());
        if st.parent.is_none() && toolchain_base(&repo, tag.as_deref()) {
            if let Some(c) = st
                .insts
                .iter()
                .flat_map(|i| i.cmds.iter())
                .find(|c| builds(c))
            {
                let span = st.stage.base.span;
                let mut f = m.finding(
                    &BUILD_TOOLS_FINAL,
                    span.offset,
                    span.end(),
                    Some(st.stage.node),
                    format!(
                        "the image is built on the toolchain image `{}` and compiles in it ({} at line {}): the whole SDK ships with the program",
                        st.base,
                        show(c),
                        line(m, c.start)
                    ),
                );
                f.fix.description = format!(
                    "name this stage `FROM {} AS builder`, keep the build there, and add a final stage on a runtime image (e.g. distroless, `*-jre`, debian-slim) with `COPY --from=builder <output> ...`",
                    st.base
                );
                out.push(f);
                return;
            }
        }
    }
    for st in &chain {
        for ins in &st.insts {
            for c in &ins.cmds {
                let Some((mg, si, sub)) = pm(c) else { continue };
                let tools: Vec<String> = match (mg, sub.as_str()) {
                    ("apt" | "apk" | "yum" | "dnf" | "zypper", "install" | "add") => {
                        operands_after(c, si, &["-o", "-t", "--virtual", "-X", "--repository"])
                            .into_iter()
                            .filter(|w| is_tool(&w.text))
                            .map(|w| w.text.clone())
                            .collect()
                    }
                    ("pip", "install") => c
                        .operands()
                        .into_iter()
                        .filter(|w| {
                            let l = w.lower();
                            let n = l.split(['=', '<', '>', '~']).next().unwrap_or("");
                            matches!(n, "pipenv" | "poetry")
                        })
                        .map(|w| w.text.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                if tools.is_empty() {
                    continue;
                }
                // Removed again in the same RUN (apk --virtual + apk del, apt-get purge).
                let removed = ins.cmds.iter().any(|o| {
                    pm(o).is_some_and(|(mg2, _, s)| {
                        (mg2 == "apk" && s == "del")
                            || (mg2 == "apt"
                                && matches!(s.as_str(), "purge" | "remove" | "autoremove"))
                            || (mg2 == "pip" && s == "uninstall")
                            || ((mg2 == "yum" || mg2 == "dnf")
                                && matches!(s.as_str(), "remove" | "erase" | "autoremove"))
                    })
                });
                if removed {
                    continue;
                }
                let (s, e) = (c.start, c.end);
                let mut f = m.finding(
                    &BUILD_TOOLS_FINAL,
                    s,
                    e,
                    Some(ins.node()),
                    format!(
                        "{} puts build tools ({}) in the final image{}",
                        show(c),
                        tools.join(", "),
                        if single {
                            " of this single-stage build"
                        } else {
                            ""
                        }
                    ),
                );
                f.fix.description = split_hint(&format!("the install of {}", tools.join(", ")));
                out.push(f);
            }
        }
    }
    // node devDependencies: an install without --omit=dev followed by a build.
    for st in &chain {
        let mut install: Option<(&super::super::Inst, &super::super::shell::Command)> = None;
        for ins in &st.insts {
            for c in &ins.cmds {
                let p = c.program();
                let sub = c.subcommand(&[]).map(|(_, s)| s).unwrap_or_default();
                let is_install = (p == "npm"
                    && matches!(sub.as_str(), "install" | "i" | "ci")
                    && c.operands().len() == 1)
                    || (p == "yarn" && (sub.is_empty() || sub == "install"));
                let prod = c.has_flag("--production")
                    || c.has_flag("--omit")
                    || c.has_flag("--only")
                    || c.has_flag("--prod")
                    || ins.var("NODE_ENV").is_some_and(|v| v == "production");
                if is_install && !prod && install.is_none() {
                    install = Some((ins, c));
                }
                let is_build = (p == "npm"
                    && sub == "run"
                    && c.operands()
                        .get(1)
                        .is_some_and(|w| w.text.contains("build")))
                    || (p == "yarn"
                        && (sub == "build"
                            || sub == "run"
                                && c.operands()
                                    .get(1)
                                    .is_some_and(|w| w.text.contains("build"))));
                if let (true, Some((ii, ic))) = (is_build, install) {
                    let mut f = m.finding(
                        &BUILD_TOOLS_FINAL,
                        ic.start,
                        ic.end,
                        Some(ii.node()),
                        format!(
                            "{} installs the devDependencies that {} (line {}) builds with, and they ship in the final image",
                            show(ic),
                            show(c),
                            line(m, c.start)
                        ),
                    );
                    f.fix.description = split_hint("the install and the build");
                    out.push(f);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_ref("python"), ("python".into(), None, None));
        assert_eq!(
            split_ref("localhost:5000/a/b:1.2"),
            ("localhost:5000/a/b".into(), Some("1.2".into()), None)
        );
        assert_eq!(
            split_ref("localhost:5000/a"),
            ("localhost:5000/a".into(), None, None)
        );
        assert_eq!(
            split_ref("a@sha256:00"),
            ("a".into(), None, Some("sha256:00".into()))
        );
    }

    #[test]
    fn knows_build_tools() {
        for t in [
            "gcc",
            "build-essential",
            "openjdk-17-jdk",
            "g++-12",
            "openjdk17-jdk",
            "gcc=4:12.2.0-3",
        ] {
            assert!(is_tool(t), "{t}");
        }
        for t in ["curl", "openjdk-17-jre-headless", "libgcc-s1", "python3"] {
            assert!(!is_tool(t), "{t}");
        }
    }
}
