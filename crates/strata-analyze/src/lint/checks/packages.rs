//! SL101–SL108: package managers (practice 7, and 13 for pins: apt, apk,
//! pip, npm -g, gem, yum, dnf/microdnf, zypper).

use super::super::rules::*;
use super::super::shell::Command;
use super::super::{Finding, Model};
use super::{cache_mount, exact, line, operands_after, pm, removes, show, words_span};

const APT_VALUE_OPTS: &[&str] = &[
    "-o",
    "-c",
    "-t",
    "--option",
    "--config-file",
    "--target-release",
];
const APK_VALUE_OPTS: &[&str] = &[
    "-t",
    "--virtual",
    "-X",
    "--repository",
    "-p",
    "--root",
    "--arch",
    "--cache-dir",
];
const PIP_VALUE_OPTS: &[&str] = &[
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-e",
    "--editable",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--src",
    "--trusted-host",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--only-binary",
    "--no-binary",
    "--progress-bar",
    "--cache-dir",
    "--log",
    "--upgrade-strategy",
    "--python",
    "--config-settings",
    "-C",
];

/// yum/dnf options that take a value as the next word.
const RPM_VALUE_OPTS: &[&str] = &[
    "--setopt",
    "-c",
    "--config",
    "--installroot",
    "--releasever",
    "--enablerepo",
    "--disablerepo",
    "--repo",
    "--repoid",
    "-x",
    "--exclude",
    "-d",
    "--debuglevel",
    "-e",
    "--errorlevel",
    "--downloaddir",
    "--destdir",
];

/// zypper options that take a value as the next word.
const ZYPPER_VALUE_OPTS: &[&str] = &["-r", "--repo", "--from", "-t", "--type"];

/// Whether an rpm package argument names a version: a `.rpm` file, a
/// comparison (`pkg >= 1.2`), or `name-version[-release]` where what
/// follows the name is version-like (as hadolint's DL3041 reads it:
/// `python3-pip` is a name, `python3-pip-20.2` a pinned one).
pub(crate) fn rpm_pinned(p: &str) -> bool {
    if p.ends_with(".rpm") || p.contains(['<', '>', '=']) {
        return true;
    }
    let rest: Vec<&str> = p.split('-').skip(1).collect();
    !rest.is_empty()
        && rest.iter().all(|x| {
            x.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".~^_:+*".contains(c))
        })
        && rest
            .iter()
            .any(|x| x.starts_with(|c: char| c.is_ascii_digit()))
}

/// hadolint's code and an example pin for a yum/dnf install.
fn rpm_alias(c: &Command, mgr: &str, module: bool) -> (&'static str, &'static str) {
    let prog = c.program();
    match (mgr, module) {
        ("yum", false) => ("DL3033", "yum install -y pkg-1.2.3"),
        ("yum", true) => ("DL3033", "yum module install -y name:stream"),
        (_, true) => ("DL3041", "dnf module install -y name:stream"),
        _ if prog == "microdnf" => ("DL3041", "microdnf install -y pkg-1.2.3"),
        _ => ("DL3041", "dnf install -y pkg-1.2.3"),
    }
}

pub(super) fn check(m: &Model, out: &mut Vec<Finding>) {
    for st in &m.stages {
        let mut no_recommends_config = false;
        let mut pip_no_cache_config = false;
        for ins in &st.insts {
            if !ins.is_run() {
                continue;
            }
            let node = Some(ins.node());
            let whole = m
                .text(ins.inst.span.offset, ins.inst.span.end())
                .to_ascii_lowercase();
            // apt.conf written in an earlier (or this) RUN of the stage.
            // `APT::Install-Recommends "false";` written to apt.conf.d.
            if whole
                .find("apt::install-recommends")
                .map(|k| &whole[k..(k + 40).min(whole.len())])
                .is_some_and(|t| t.contains("false") || t.contains("\"0\"") || t.contains("=0"))
            {
                no_recommends_config = true;
            }
            if whole.contains("no-cache-dir") && whole.contains("pip config") {
                pip_no_cache_config = true;
            }
            let pip_env = ins.var("PIP_NO_CACHE_DIR").is_some();
            let apt_lists_removed =
                removes(ins, "/var/lib/apt/lists") || cache_mount(ins, &["/var/lib/apt"]);
            let mut apt_update: Option<&Command> = None;
            let mut apt_other = false;
            for c in &ins.cmds {
                other_pins(m, out, c, st.in_image, node);
                let Some((mgr, si, sub)) = pm(c) else {
                    continue;
                };
                let sub_word = &c.words[si];
                match (mgr, sub.as_str()) {
                    ("apt", "update") => {
                        apt_update.get_or_insert(c);
                    }
                    ("apt", "install") => {
                        apt_other = true;
                        let norec = c.has_flag("--no-install-recommends")
                            || c.args().iter().any(|w| {
                                let l = w.lower();
                                l.contains("install-recommends=false")
                                    || l.contains("install-recommends=0")
                            })
                            || no_recommends_config;
                        if st.in_image && !norec {
                            let (s, e) = words_span(c, si);
                            let mut f = m.finding(
                                &APT_NO_RECOMMENDS,
                                s,
                                e,
                                node,
                                format!("{} installs recommended packages too: add --no-install-recommends", show(c)),
                            );
                            f.fix.description =
                                "add `--no-install-recommends` after `install`".into();
                            if exact(m, sub_word) {
                                f.fix.edits.push(m.edit(
                                    sub_word.end,
                                    sub_word.end,
                                    " --no-install-recommends",
                                ));
                                f.fix.safe = true;
                            }
                            out.push(f);
                        }
                        let pkgs: Vec<String> = operands_after(c, si, APT_VALUE_OPTS)
                            .into_iter()
                            .filter(|w| {
                                !w.text.contains('=')
                                    && !w.text.contains('$')
                                    && !w.text.ends_with(".deb")
                                    && !w.text.starts_with('/')
                                    && !w.text.starts_with('.')
                            })
                            .map(|w| w.text.clone())
                            .collect();
                        unpinned(
                            m,
                            out,
                            c,
                            st.in_image,
                            node,
                            &pkgs,
                            "DL3008",
                            "apt-get install pkg=1.2.3-1",
                        );
                    }
                    ("apt", "upgrade" | "dist-upgrade" | "full-upgrade")
                    | ("apk", "upgrade")
                    | ("zypper", "up" | "update" | "dup" | "dist-upgrade") => {
                        apt_other = true;
                        upgrade(m, out, c, si, node);
                    }
                    ("yum" | "dnf", "upgrade" | "update" | "distro-sync" | "upgrade-minimal")
                        if operands_after(c, si, &[]).is_empty() =>
                    {
                        upgrade(m, out, c, si, node);
                    }
                    ("apt", _) => apt_other = true,
                    ("apk", "add") => {
                        let cached = c.has_flag("--no-cache")
                            || removes(ins, "/var/cache/apk")
                            || cache_mount(ins, &["/var/cache/apk", "/etc/apk/cache"]);
                        if st.in_image && !cached {
                            let (s, e) = words_span(c, si);
                            let mut f = m.finding(
                                &APK_NO_CACHE,
                                s,
                                e,
                                node,
                                format!("{} keeps the package index in /var/cache/apk: use `apk add --no-cache`", show(c)),
                            );
                            f.fix.description = "add `--no-cache` after `add`".into();
                            if exact(m, sub_word) {
                                f.fix
                                    .edits
                                    .push(m.edit(sub_word.end, sub_word.end, " --no-cache"));
                                f.fix.safe = true;
                            }
                            out.push(f);
                        }
                        let pkgs: Vec<String> = operands_after(c, si, APK_VALUE_OPTS)
                            .into_iter()
                            .filter(|w| {
                                !w.text.contains(['=', '<', '>', '~', '$'])
                                    && !w.text.starts_with(['.', '/'])
                            })
                            .map(|w| w.text.clone())
                            .collect();
                        unpinned(
                            m,
                            out,
                            c,
                            st.in_image,
                            node,
                            &pkgs,
                            "DL3018",
                            "apk add pkg=1.2.3-r0",
                        );
                    }
                    ("yum" | "dnf", "module") => {
                        // `dnf module install name:stream`
                        let ops = operands_after(c, si, RPM_VALUE_OPTS);
                        if ops.first().is_some_and(|w| w.lower() == "install") {
                            let mods: Vec<String> = ops[1..]
                                .iter()
                                .filter(|w| !w.text.contains([':', '$']))
                                .map(|w| w.text.clone())
                                .collect();
                            let (alias, example) = rpm_alias(c, mgr, true);
                            unpinned(m, out, c, st.in_image, node, &mods, alias, example);
                        }
                    }
                    ("zypper", "install" | "in") => {
                        let pkgs: Vec<String> = operands_after(c, si, ZYPPER_VALUE_OPTS)
                            .into_iter()
                            .filter(|w| {
                                let t = &w.text;
                                !(t.contains(['=', '<', '>', '$'])
                                    || t.ends_with(".rpm")
                                    || t.starts_with(['.', '/'])
                                    || t.contains("://"))
                            })
                            .map(|w| w.text.clone())
                            .collect();
                        unpinned(
                            m,
                            out,
                            c,
                            st.in_image,
                            node,
                            &pkgs,
                            "DL3037",
                            "zypper install -y pkg=1.2.3",
                        );
                    }
                    ("yum" | "dnf", "install" | "groupinstall" | "localinstall" | "reinstall") => {
                        if sub == "install" {
                            let pkgs: Vec<String> = operands_after(c, si, RPM_VALUE_OPTS)
                                .into_iter()
                                .filter(|w| {
                                    let t = &w.text;
                                    !(rpm_pinned(t)
                                        || t.contains('$')
                                        || t.starts_with(['.', '/', '@'])
                                        || t.contains("://"))
                                })
                                .map(|w| w.text.clone())
                                .collect();
                            let (alias, example) = rpm_alias(c, mgr, false);
                            unpinned(m, out, c, st.in_image, node, &pkgs, alias, example);
                        }
                        let cleaned = ins.cmds.iter().any(|o| {
                            pm(o).is_some_and(|(mg, _, s)| {
                                (mg == "yum" || mg == "dnf") && s == "clean"
                            })
                        }) || removes(ins, "/var/cache/yum")
                            || removes(ins, "/var/cache/dnf")
                            || cache_mount(ins, &["/var/cache/yum", "/var/cache/dnf"]);
                        if st.in_image && !cleaned {
                            let prog = c.program();
                            let (s, e) = words_span(c, si);
                            let mut f = m.finding(
                                &RPM_CLEAN,
                                s,
                                e,
                                node,
                                format!("{} leaves its cache in the layer: end the RUN with `&& {prog} clean all`", show(c)),
                            );
                            f.aliases = vec![if prog == "yum" { "DL3032" } else { "DL3040" }];
                            f.fix.description = format!("append `&& {prog} clean all` to the RUN");
                            out.push(f);
                        }
                    }
                    ("pip", "install") => {
                        let cached = c.has_flag("--no-cache-dir")
                            || pip_env
                            || pip_no_cache_config
                            || c.assigns.iter().any(|a| a.starts_with("PIP_NO_CACHE_DIR="))
                            || cache_mount(ins, &["/root/.cache", "/root/.cache/pip", "/home"])
                            || removes(ins, ".cache/pip");
                        if st.in_image && !cached {
                            let (s, e) = words_span(c, si);
                            let mut f = m.finding(
                                &PIP_NO_CACHE,
                                s,
                                e,
                                node,
                                format!("{} keeps pip's download cache in the layer: add --no-cache-dir", show(c)),
                            );
                            f.fix.description = "add `--no-cache-dir` after `install`".into();
                            if exact(m, sub_word) {
                                f.fix.edits.push(m.edit(
                                    sub_word.end,
                                    sub_word.end,
                                    " --no-cache-dir",
                                ));
                                f.fix.safe = true;
                            }
                            out.push(f);
                        }
                        let upgrade_tools =
                            c.has_flag("--upgrade") || c.has_flag("-u") || c.has_short('U');
                        let pkgs: Vec<String> = operands_after(c, si, PIP_VALUE_OPTS)
                            .into_iter()
                            .filter(|w| {
                                let t = &w.text;
                                !(t.contains(['=', '<', '>', '~', '@', '$', '/'])
                                    || t.starts_with('.')
                                    || t.ends_with(".whl")
                                    || t.ends_with(".tar.gz")
                                    || t.ends_with(".zip")
                                    || (upgrade_tools
                                        && matches!(t.as_str(), "pip" | "setuptools" | "wheel")))
                            })
                            .map(|w| w.text.clone())
                            .collect();
                        unpinned(
                            m,
                            out,
                            c,
                            st.in_image,
                            node,
                            &pkgs,
                            "DL3013",
                            "pip install pkg==1.2.3",
                        );
                    }
                    _ => {}
                }
            }
            if let Some(u) = apt_update {
                let (s, e) = words_span(u, u.words.len().saturating_sub(1));
                if st.in_image && !apt_lists_removed {
                    let mut f = m.finding(
                        &APT_LISTS,
                        s,
                        e,
                        node,
                        format!(
                            "{} downloads the package lists (tens of MB) and this RUN (line {}) does not remove them",
                            show(u),
                            line(m, ins.inst.span.offset)
                        ),
                    );
                    f.fix.description = "append `&& rm -rf /var/lib/apt/lists/*` to the RUN".into();
                    if let Some(end) = ins.shell_end {
                        let last = m.text(ins.inst.span.offset, end).trim_end();
                        if !last.ends_with([';', '&', '|']) {
                            let esc = m.df.escape;
                            f.fix.edits.push(m.edit(
                                end,
                                end,
                                format!(" {esc}\n    && rm -rf /var/lib/apt/lists/*"),
                            ));
                            f.fix.safe = true;
                        }
                    }
                    out.push(f);
                }
                if !apt_other {
                    out.push(m.finding(
                        &APT_UPDATE_ALONE,
                        s,
                        e,
                        node,
                        format!(
                            "{} runs alone in this RUN: its cached layer is reused with stale lists when a later install changes; chain it with the install",
                            show(u)
                        ),
                    ));
                }
            }
        }
    }
}

/// `npm install -g pkg` (DL3016) and `gem install pkg` (DL3028) without versions.
fn other_pins(m: &Model, out: &mut Vec<Finding>, c: &Command, in_image: bool, node: Option<usize>) {
    let p = c.program();
    let Some((si, sub)) = c.subcommand(&[]) else {
        return;
    };
    let (alias, example, pkgs): (&'static str, &str, Vec<String>) = match (p.as_str(), sub.as_str())
    {
        ("npm", "install" | "i" | "add") if c.has_flag("-g") || c.has_flag("--global") => (
            "DL3016",
            "npm install -g pkg@1.2.3",
            operands_after(c, si, &["--prefix"])
                .into_iter()
                .filter(|w| {
                    let t = w.text.trim_start_matches('@');
                    !t.contains('@')
                        && !t.contains('$')
                        && !t.starts_with('.')
                        && !t.contains("://")
                        && !t.ends_with(".tgz")
                })
                .map(|w| w.text.clone())
                .collect(),
        ),
        ("gem", "install") if !c.has_flag("-v") && !c.has_flag("--version") => (
            "DL3028",
            "gem install pkg:1.2.3",
            operands_after(
                c,
                si,
                &["-n", "--bindir", "-i", "--install-dir", "--source"],
            )
            .into_iter()
            .filter(|w| !w.text.contains(':') && !w.text.contains('$') && !w.text.ends_with(".gem"))
            .map(|w| w.text.clone())
            .collect(),
        ),
        _ => return,
    };
    unpinned(m, out, c, in_image, node, &pkgs, alias, example);
}

fn upgrade(m: &Model, out: &mut Vec<Finding>, c: &Command, si: usize, node: Option<usize>) {
    let (s, e) = words_span(c, si);
    let mut f = m.finding(
        &PKG_UPGRADE,
        s,
        e,
        node,
        format!(
            "{} upgrades the base image's packages in the image: rebuild on a newer base instead",
            show(c)
        ),
    );
    if pm(c).is_some_and(|(mg, _, _)| mg != "apt") {
        f.aliases.clear();
    }
    out.push(f);
}

#[allow(clippy::too_many_arguments)]
fn unpinned(
    m: &Model,
    out: &mut Vec<Finding>,
    c: &Command,
    in_image: bool,
    node: Option<usize>,
    pkgs: &[String],
    alias: &'static str,
    example: &str,
) {
    if pkgs.is_empty() || !in_image {
        return;
    }
    let (s, e) = words_span(c, c.words.len().saturating_sub(1));
    let mut f = m.finding(
        &UNPINNED,
        s,
        e,
        node,
        format!(
            "{} installs without a version: {}",
            show(c),
            pkgs.join(", ")
        ),
    );
    f.aliases = vec![alias];
    f.fix.description = format!("pin the versions, e.g. `{example}`");
    out.push(f);
}
