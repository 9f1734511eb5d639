//! The checks, one module per group of rules (see [`super::rules`]).

use strata_dockerfile::{InstructionKind, MountType, Run};

use super::findings::Finding;
use super::shell::{Command, Word};
use super::{Inst, Model};

mod add;
mod context;
mod deps;
mod layers;
mod packages;
mod pipefail;
mod runtime;
mod stages;

/// Runs every check.
pub(crate) fn run(m: &Model, out: &mut Vec<Finding>) {
    layers::check(m, out);
    pipefail::check(m, out);
    deps::check(m, out);
    packages::check(m, out);
    stages::check(m, out);
    context::check(m, out);
    add::check(m, out);
    runtime::check(m, out);
}

/// The RUN of an instruction.
pub(crate) fn run_of<'a>(i: &'a Inst) -> Option<&'a Run> {
    match &i.inst.kind {
        InstructionKind::Run(r) => Some(r),
        _ => None,
    }
}

/// Whether the RUN has a cache mount whose target starts with one of
/// `prefixes` (such caches never reach a layer).
pub(crate) fn cache_mount(i: &Inst, prefixes: &[&str]) -> bool {
    run_of(i).is_some_and(|r| {
        r.mounts.iter().any(|mt| {
            mt.kind == MountType::Cache
                && mt.target.as_deref().is_some_and(|t| {
                    prefixes
                        .iter()
                        .any(|p| t.starts_with(p) || p.starts_with(t.trim_end_matches('/')))
                })
        })
    })
}

/// Whether some `rm` in the RUN removes a path containing `needle`.
pub(crate) fn removes(i: &Inst, needle: &str) -> bool {
    i.cmds_named(&["rm"])
        .any(|c| c.args().iter().any(|w| w.text.contains(needle)))
}

/// Short quoted display of a command: `apt-get install -y curl`.
pub(crate) fn show(c: &Command) -> String {
    let s: Vec<&str> = c.words.iter().map(|w| w.text.as_str()).collect();
    let mut s = s.join(" ");
    if s.chars().count() > 60 {
        s = s.chars().take(57).collect::<String>() + "...";
    }
    format!("`{s}`")
}

/// The first span covering words `from..=to` of a command.
pub(crate) fn words_span(c: &Command, to: usize) -> (usize, usize) {
    let start = c.words.first().map(|w| w.start).unwrap_or(c.start);
    let end = c.words.get(to).map(|w| w.end).unwrap_or(c.end).max(start);
    (start, end)
}

/// Whether a word's source text is exactly its text (so an edit placed
/// after it lands where expected).
pub(crate) fn exact(m: &Model, w: &Word) -> bool {
    m.text(w.start, w.end) == w.text
}

/// Line of a source offset.
pub(crate) fn line(m: &Model, offset: usize) -> usize {
    m.lines.position(offset).line
}

/// A package manager invocation: (manager, subcommand index, subcommand).
pub(crate) fn pm(c: &Command) -> Option<(&'static str, usize, String)> {
    let p = c.program();
    let (name, with_value): (&'static str, &[&str]) = match p.as_str() {
        "apt-get" | "apt" | "aptitude" => (
            "apt",
            &[
                "-o",
                "-c",
                "-t",
                "--option",
                "--config-file",
                "--target-release",
            ],
        ),
        "apk" => (
            "apk",
            &[
                "-X",
                "--repository",
                "-p",
                "--root",
                "--arch",
                "--cache-dir",
                "--keys-dir",
            ],
        ),
        "yum" => (
            "yum",
            &[
                "--setopt",
                "-c",
                "--config",
                "--installroot",
                "--releasever",
                "--enablerepo",
                "--disablerepo",
                "-d",
                "-e",
            ],
        ),
        "dnf" | "microdnf" | "tdnf" => (
            "dnf",
            &[
                "--setopt",
                "-c",
                "--config",
                "--installroot",
                "--releasever",
                "--enablerepo",
                "--disablerepo",
            ],
        ),
        "zypper" => ("zypper", &[]),
        "pip" | "pip3" => ("pip", &[]),
        _ if p.starts_with("pip3.") || p.starts_with("pip2") => ("pip", &[]),
        _ if p.starts_with("python") => {
            let args = c.args();
            let k = args.iter().position(|w| w.text == "-m")?;
            if args.get(k + 1).is_some_and(|w| w.text == "pip") {
                let sub = args
                    .get(k + 2..)?
                    .iter()
                    .position(|w| !w.text.starts_with('-'))?;
                let idx = k + 2 + sub + 1;
                return Some(("pip", idx, c.words.get(idx)?.lower()));
            }
            return None;
        }
        _ => return None,
    };
    let (idx, sub) = c.subcommand(with_value)?;
    Some((name, idx, sub))
}

/// The operands of a package install after word `sub_idx`, skipping the
/// values of the options listed in `with_value`.
pub(crate) fn operands_after<'c>(
    c: &'c Command,
    sub_idx: usize,
    with_value: &[&str],
) -> Vec<&'c Word> {
    let mut out = Vec::new();
    let mut skip = false;
    for w in c.words.iter().skip(sub_idx + 1) {
        if skip {
            skip = false;
            continue;
        }
        if w.text.starts_with('-') {
            if with_value.contains(&w.text.as_str()) {
                skip = true;
            }
            continue;
        }
        out.push(w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{lint, LintOptions};

    /// Each rule on a minimal Dockerfile: (source, rule ids expected, sorted).
    const CASES: &[(&str, &[&str])] = &[
        ("FROM a:1\nRUN a\nRUN b\n", &["SL001"]),
        ("FROM a:1\nRUN a && b\nRUN c\n", &[]),
        ("FROM a:1\nRUN cd /x && make\n", &["SL002"]),
        ("FROM a:1\nCOPY . .\nRUN pip install --no-cache-dir -r requirements.txt\n", &["SL003"]),
        ("FROM a:1\nCOPY package.json package-lock.json ./\nRUN npm install\n", &["SL005"]),
        ("FROM a:1\nCOPY yarn.lock package.json ./\nRUN yarn install --frozen-lockfile\n", &[]),
        ("FROM a:1\nRUN wget https://x/big.tar.gz\nRUN rm big.tar.gz\n", &["SL001", "SL006"]),
        ("FROM a:1\nCOPY big.tar.gz /tmp/\nRUN tar xzf /tmp/big.tar.gz -C /opt && rm /tmp/big.tar.gz\n", &["SL006", "SL007"]),
        ("FROM a:1\nRUN curl -fsSLO https://x/b.tgz && tar xzf b.tgz && rm b.tgz\n", &[]),
        ("FROM a:1\nRUN apt-get install -y x=1\n", &["SL101"]),
        ("FROM a:1\nRUN apt-get install -y -o APT::Install-Recommends=false x=1\n", &[]),
        ("FROM a:1\nRUN echo 'APT::Install-Recommends \"false\";' > /etc/apt/apt.conf.d/no-rec\nRUN apt-get install -y x=1\n", &["SL001"]),
        ("FROM a:1\nRUN apt-get -o Acquire::GzipIndexes=false install -y x=1 && echo --no-install-recommends\n", &["SL101"]),
        ("FROM a:1\nRUN apt-get update && apt-get install -y --no-install-recommends x=1\n", &["SL102"]),
        ("FROM a:1\nRUN --mount=type=cache,target=/var/lib/apt apt-get update && apt-get install -y --no-install-recommends x=1\n", &[]),
        ("FROM a:1\nRUN apt-get update; rm -rf /var/lib/apt/lists/*\n", &["SL103"]),
        ("FROM a:1\nRUN apt-get dist-upgrade -y\n", &["SL104"]),
        ("FROM a:1\nRUN apk add x=1\n", &["SL105"]),
        ("FROM a:1\nRUN apk add x=1 && rm -rf /var/cache/apk/*\n", &[]),
        ("FROM a:1\nRUN microdnf install -y x-1\n", &["SL106"]),
        ("FROM a:1\nRUN pip install x==1\n", &["SL107"]),
        ("FROM a:1\nENV PIP_NO_CACHE_DIR=1\nRUN pip install x==1\n", &[]),
        ("FROM a:1\nRUN pip install --no-cache-dir x\n", &["SL108"]),
        ("FROM a:1\nRUN npm install -g yarn\n", &["SL108"]),
        ("FROM a:1\nRUN apt-get install -y --no-install-recommends gcc=1\n", &["SL201"]),
        ("FROM a:1 AS b\nRUN apt-get install -y gcc=1\nFROM a:1\nCOPY --from=b /x /x\n", &[]),
        ("FROM python:3.12-alpine\n", &["SL202"]),
        ("FROM ubuntu\n", &["SL203"]),
        ("FROM ubuntu:latest\n", &["SL204"]),
        ("ARG B=ubuntu:22.04\nFROM $B AS s\nFROM s\nFROM scratch\n", &[]),
        ("FROM a:1\nCOPY app.jar /app.jar\n", &["SL303"]),
        ("FROM a:1\nENTRYPOINT exec app\n", &["SL401"]),
        ("FROM a:1\nCMD [\"sh\", \"-c\", \"worker & web\"]\n", &["SL402"]),
        ("FROM a:1\nRUN mkdir -p /srv/uploads\n", &["SL403"]),
        ("FROM a:1\nCMD [\"bash\", \"-c\", \"nginx && gunicorn app:app\"]\n", &["SL402"]),
        ("FROM a:1\nCMD [\"sh\", \"-c\", \"envsubst < t > c && exec nginx -g 'daemon off;'\"]\n", &[]),
        ("FROM a:1\nARG GITHUB_TOKEN\n", &["SL404"]),
        ("FROM a:1\nARG GPG_KEY=ABCD\n", &[]),
        ("FROM a:1\nRUN <<EOF\napt-get install -y x=1\nEOF\n", &["SL101"]),
        ("FROM a:1\nRUN [\"apt-get\", \"install\", \"-y\", \"x=1\"]\n", &["SL101"]),
        ("FROM a:1\nRUN sudo APT install --yes x=1\n", &["SL101"]),
        ("FROM a:1\nENV PATH\n", &["SL900"]),
        // SL008 (DL4006): pipes need pipefail where the shell has it.
        ("FROM a:1\nRUN curl -fsSL https://x/a.tgz | tar -xz\n", &["SL008"]),
        ("FROM a:1\nRUN cat a | grep b > c && echo d\n", &["SL008"]),
        ("FROM a:1\nRUN a || b && c\n", &[]),
        ("FROM a:1\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nRUN a | b\n", &[]),
        ("FROM a:1\nSHELL [\"/bin/ash\", \"-eo\", \"pipefail\", \"-c\"]\nRUN a | b\n", &[]),
        ("FROM a:1\nSHELL [\"/bin/bash\", \"-c\"]\nRUN a | b\n", &["SL008"]),
        ("FROM a:1\nSHELL [\"pwsh\", \"-Command\"]\nRUN a | b\n", &[]),
        ("FROM a:1\nSHELL [\"cmd\", \"/S\", \"/C\"]\nRUN a | b\n", &[]),
        ("FROM a:1\nRUN set -eux -o pipefail; a | b\n", &[]),
        ("FROM a:1\nRUN set -euo pipefail && a | b\n", &[]),
        ("FROM a:1\nRUN bash -o pipefail -c 'a | b'\n", &[]),
        ("FROM a:1\nRUN awk 1 f | bash -euo pipefail\n", &["SL008"]),
        ("FROM a:1\nRUN a | b; set -o pipefail; c | d\n", &["SL008"]),
        ("FROM a:1\nRUN { echo a; echo b; } | tee f\n", &["SL008"]),
        ("FROM a:1\nRUN [\"sh\", \"-c\", \"a | b\"]\n", &[]),
        ("FROM a:1\nRUN echo 'a | b' && echo \"c|d\"\n", &[]),
        ("FROM a:1\nRUN <<EOF\na | b\nEOF\n", &["SL008"]),
        ("FROM a:1\nRUN arch=\"$(dpkg --print-architecture | cut -d- -f1)\"; echo $arch\n", &["SL008"]),
        ("FROM a:1\nRUN echo $((6 | 3)) $(uname -m)\n", &[]),
        ("FROM a:1 AS p\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nFROM p\nRUN a | b\n", &[]),
        ("FROM a:1\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nFROM a:1\nRUN a | b\n", &["SL008"]),
        // SL304 (DL3020): ADD where COPY does the same.
        ("FROM a:1\nADD app.py /app/\n", &["SL304"]),
        ("FROM a:1\nADD . /app\n", &["SL304"]),
        ("FROM a:1\nadd --chown=1:1 conf/ /etc/x/\n", &["SL304"]),
        ("FROM a:1\nADD rootfs.tar.xz /\n", &[]),
        ("FROM a:1\nADD https://example.com/x.tar.gz /tmp/\n", &[]),
        ("FROM a:1\nADD --checksum=sha256:0 https://example.com/x /x\n", &[]),
        ("FROM a:1\nADD git@github.com:o/r.git /src\n", &[]),
        ("FROM a:1\nADD --unpack=false rootfs.tar.gz /\n", &["SL304"]),
        ("FROM a:1\nARG T=site.tgz\nADD $T /srv/\n", &[]),
        ("FROM a:1\nARG F\nADD $F /srv/\n", &[]),
        ("FROM a:1\nADD https://example.com/a.sh notes.txt /x/\n", &["SL304"]),
        ("FROM a:1\nCOPY app.py /app/\n", &[]),
        // SL405 (DL4000): MAINTAINER.
        ("FROM a:1\nMAINTAINER Jane <jane@example.com>\n", &["SL405"]),
        ("FROM a:1\nLABEL org.opencontainers.image.authors=\"Jane\"\n", &[]),
        // SL108 on yum (DL3033), dnf/microdnf (DL3041), zypper (DL3037).
        ("FROM a:1\nRUN yum install -y httpd && yum clean all\n", &["SL108"]),
        ("FROM a:1\nRUN yum install -y httpd-2.4.6 && yum clean all\n", &[]),
        ("FROM a:1\nRUN yum install -y yum-utils && yum clean all\n", &["SL108"]),
        ("FROM a:1\nRUN yum install -y /tmp/x.rpm https://x/y.rpm && yum clean all\n", &[]),
        ("FROM a:1\nRUN yum module install -y nodejs && yum clean all\n", &["SL108"]),
        ("FROM a:1\nRUN dnf module install -y nodejs:18 && dnf clean all\n", &[]),
        ("FROM a:1\nRUN dnf install -y python3-pip && dnf clean all\n", &["SL108"]),
        ("FROM a:1\nRUN dnf install -y python3-pip-20.2.4 'nginx >= 1.20' @development && dnf clean all\n", &[]),
        ("FROM a:1\nRUN microdnf install -y --setopt install_weak_deps=0 tar-1.34 && microdnf clean all\n", &[]),
        ("FROM a:1\nRUN zypper install -y curl\n", &["SL108"]),
        ("FROM a:1\nRUN zypper -n in curl=8.0.1 'git>=2.40' ./local.rpm\n", &[]),
    ];

    #[test]
    fn each_rule_fires_where_expected() {
        let mut bad = Vec::new();
        for (src, want) in CASES {
            let r = lint("Dockerfile", src, &LintOptions::default());
            let mut got: Vec<&str> = r.findings.iter().map(|f| f.rule.id).collect();
            got.sort();
            got.dedup();
            if &got != want {
                bad.push(format!("{src:?}: want {want:?}, got {got:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
