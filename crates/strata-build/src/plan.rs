//! From parsed stages to a build plan: global (meta) ARGs resolved, FROM
//! names expanded, stage dependencies (FROM a stage, COPY --from,
//! RUN --mount from=), the target, and only the stages it needs.

use std::collections::{BTreeMap, BTreeSet};

use strata_dockerfile::shell::Lexer;
use strata_dockerfile::{BuildStages, InstructionKind, MountType, Stage};
use strata_oci::Platform;

use crate::error::{Error, Result};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage.
    Stage(usize),
    /// An image reference (expanded).
    Image(String),
}

/// Where a `--from` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    /// A stage of this Dockerfile.
    Stage(usize),
    /// An image.
    Image(String),
}

/// One stage, planned.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    /// Index in the Dockerfile.
    pub index: usize,
    /// `AS name`, lower-cased as BuildKit compares them.
    pub name: Option<String>,
    /// How progress calls it: the name, or `stage-N`.
    pub label: String,
    /// What it starts from.
    pub base: Base,
    /// Stages it needs before it can start.
    pub deps: BTreeSet<usize>,
    /// The platform it runs and resolves its base for: `FROM --platform`
    /// expanded (e.g. `$BUILDPLATFORM`), else the target platform.
    pub platform: Platform,
    /// Whether the stage said `FROM --platform`.
    pub platform_flag: bool,
}

/// The plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every stage, in Dockerfile order.
    pub stages: Vec<PlannedStage>,
    /// Global ARG values (predefined platform args + meta ARGs).
    pub global_args: BTreeMap<String, String>,
    /// Names of meta ARGs declared before the first FROM.
    pub meta_arg_names: BTreeSet<String>,
    /// The stage to build.
    pub target: usize,
    /// Stages the target needs (itself included), in Dockerfile order.
    pub needed: Vec<usize>,
    /// The platform built for.
    pub platform: Platform,
}

/// Build args Docker passes to RUN without an ARG line and keeps out of the
/// cache key and history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// BuildKit's automatic platform args, for `platform`.
pub fn platform_args(platform: &Platform) -> BTreeMap<String, String> {
    let host = Platform::host();
    let mut m = BTreeMap::new();
    for (prefix, p) in [("BUILD", &host), ("TARGET", platform)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

/// Finds a stage by `--from`/FROM name (case-insensitive) or index.
fn find_stage(stages: &[PlannedStage], before: usize, name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Some(s) = stages[..before]
        .iter()
        .rev()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Some(s.index);
    }
    if let Ok(i) = name.parse::<usize>() {
        if i < before {
            return Some(i);
        }
    }
    None
}

impl Plan {
    /// Plans `stages` for `target` (None: the last stage).
    pub fn new(
        parsed: &BuildStages,
        escape: char,
        build_args: &BTreeMap<String, String>,
        target: Option<&str>,
        platform: Platform,
    ) -> Result<Plan> {
        if parsed.stages.is_empty() {
            return Err(Error::invalid(
                "the Dockerfile has no FROM: nothing to build",
            ));
        }
        let lexer = Lexer::new(escape);
        let mut global = platform_args(&platform);
        let mut meta_arg_names = BTreeSet::new();
        for arg in &parsed.meta_args {
            for def in &arg.args {
                let name = def.name.value.clone();
                meta_arg_names.insert(name.clone());
                let value = match build_args.get(&name) {
                    Some(v) => Some(v.clone()),
                    None => match &def.default {
                        Some(d) => Some(lexer.process_word(&d.value, &global)?.value),
                        None => None,
                    },
                };
                if let Some(v) = value {
                    global.insert(name, v);
                }
            }
        }
        let mut stages: Vec<PlannedStage> = Vec::new();
        for (index, st) in parsed.stages.iter().enumerate() {
            let name = st.name.as_ref().map(|n| n.to_ascii_lowercase());
            let base_name = lexer.process_word(&st.base.value, &global)?.value;
            if base_name.is_empty() {
                return Err(Error::invalid(format!(
                    "base name ({}) should not be blank",
                    st.base.value
                )));
            }
            let base = if base_name.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else if let Some(i) = find_stage(&stages, index, &base_name) {
                // FROM by index is not allowed (only names), as BuildKit.
                if stages[i].name.as_deref() == Some(base_name.to_ascii_lowercase().as_str()) {
                    Base::Stage(i)
                } else {
                    Base::Image(base_name)
                }
            } else {
                Base::Image(base_name)
            };
            let (stage_platform, platform_flag) = match &st.platform {
                Some(flag) => {
                    let text = lexer.process_word(&flag.value, &global)?.value;
                    let p = text.parse::<Platform>().map_err(|e| {
                        Error::invalid(format!("FROM --platform={}: {e}", flag.value))
                    })?;
                    (p, true)
                }
                None => (platform.clone(), false),
            };
            let mut deps = BTreeSet::new();
            if let Base::Stage(i) = base {
                deps.insert(i);
            }
            for r in stage_from_refs(st) {
                if let FromRef::Stage(i) = resolve_from(&stages, index, &r) {
                    deps.insert(i);
                }
            }
            stages.push(PlannedStage {
                index,
                label: name.clone().unwrap_or_else(|| format!("stage-{index}")),
                name,
                base,
                deps,
                platform: stage_platform,
                platform_flag,
            });
        }
        let target_index = match target {
            None => stages.len() - 1,
            Some(t) => {
                let lower = t.to_ascii_lowercase();
                stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(lower.as_str()))
                    .map(|s| s.index)
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            stages.iter().filter_map(|s| s.name.as_deref()).collect();
                        Error::invalid(format!(
                            "target stage {t:?} could not be found (stages: {})",
                            if names.is_empty() {
                                "none named".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ))
                    })?
            }
        };
        let mut needed = BTreeSet::new();
        let mut todo = vec![target_index];
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                todo.extend(stages[i].deps.iter().copied());
            }
        }
        Ok(Plan {
            stages,
            global_args: global,
            meta_arg_names,
            target: target_index,
            needed: needed.into_iter().collect(),
            platform,
        })
    }

    /// Resolves a `--from` value seen in stage `index`.
    pub fn resolve_from(&self, index: usize, name: &str) -> FromRef {
        resolve_from(&self.stages, index, name)
    }
}

fn resolve_from(stages: &[PlannedStage], index: usize, name: &str) -> FromRef {
    match find_stage(stages, index.min(stages.len()), name) {
        Some(i) => FromRef::Stage(i),
        None => FromRef::Image(name.to_owned()),
    }
}

/// Every `--from` a stage uses (COPY/ADD --from, RUN --mount from=), including
/// in ONBUILD triggers it defines (they run in other builds, not this one).
fn stage_from_refs(st: &Stage) -> Vec<String> {
    let mut out = Vec::new();
    for ins in &st.instructions {
        match &ins.kind {
            InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                if let Some(f) = &c.from {
                    out.push(f.value.clone());
                }
            }
            InstructionKind::Run(r) => {
                for m in &r.mounts {
                    if matches!(m.kind, MountType::Bind | MountType::Cache) {
                        if let Some(f) = &m.from {
                            out.push(f.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str, target: Option<&str>, args: &[(&str, &str)]) -> Result<Plan> {
        let df = strata_dockerfile::parse(src).unwrap();
        let stages = df.stages().unwrap();
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Plan::new(&stages, '\\', &args, target, Platform::host())
    }

    #[test]
    fn target_prunes_unneeded_stages() {
        let p = plan(
            "FROM busybox AS a\nRUN a\nFROM busybox AS b\nRUN b\nFROM a AS c\nCOPY --from=b /x /x\nFROM busybox AS unused\n",
            Some("c"),
            &[],
        )
        .unwrap();
        assert_eq!(p.target, 2);
        assert_eq!(p.needed, vec![0, 1, 2]);
        assert_eq!(p.stages[2].base, Base::Stage(0));
        assert!(plan("FROM x AS a\n", Some("nope"), &[]).is_err());
        let last = plan("FROM x AS a\nFROM y\n", None, &[]).unwrap();
        assert_eq!((last.target, last.needed.clone()), (1, vec![1]));
        assert_eq!(last.stages[1].label, "stage-1");
    }

    #[test]
    fn meta_args_expand_from() {
        let src = "ARG TAG=1.0\nARG IMG=busybox:${TAG}\nFROM $IMG\n";
        let p = plan(src, None, &[]).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("busybox:1.0".into()));
        let p = plan(src, None, &[("TAG", "2.0")]).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("busybox:2.0".into()));
        let p = plan("FROM --platform=$BUILDPLATFORM scratch\n", None, &[]).unwrap();
        assert_eq!(p.stages[0].base, Base::Scratch);
        assert_eq!(p.stages[0].platform, Platform::host());
        assert!(p.stages[0].platform_flag);
        assert!(p.global_args.contains_key("TARGETARCH"));
        assert!(plan("ARG X\nFROM $X\n", None, &[]).is_err());
    }

    #[test]
    fn stage_platforms_follow_from_platform() {
        let df = strata_dockerfile::parse(
            "ARG P=linux/arm/v6\nFROM --platform=$BUILDPLATFORM scratch AS b\n\
             FROM --platform=$P scratch AS c\nFROM scratch\n",
        )
        .unwrap();
        let stages = df.stages().unwrap();
        let target: Platform = "linux/s390x".parse().unwrap();
        let p = Plan::new(&stages, '\\', &BTreeMap::new(), None, target.clone()).unwrap();
        assert_eq!(p.stages[0].platform, Platform::host());
        assert_eq!(p.stages[1].platform.to_string(), "linux/arm/v6");
        assert_eq!(
            (&p.stages[2].platform, p.stages[2].platform_flag),
            (&target, false)
        );
        assert_eq!(p.global_args["TARGETARCH"], "s390x");
        assert_eq!(p.global_args["BUILDPLATFORM"], Platform::host().to_string());
        let bad = strata_dockerfile::parse("FROM --platform=linux/nope scratch\n").unwrap();
        let e =
            Plan::new(&bad.stages().unwrap(), '\\', &BTreeMap::new(), None, target).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }

    #[test]
    fn copy_from_index_and_image() {
        let p = plan(
            "FROM a\nFROM b\nCOPY --from=0 /x /x\nCOPY --from=alpine:3 /y /y\n",
            None,
            &[],
        )
        .unwrap();
        assert_eq!(p.stages[1].deps, BTreeSet::from([0]));
        assert_eq!(
            p.resolve_from(1, "alpine:3"),
            FromRef::Image("alpine:3".into())
        );
        assert_eq!(p.resolve_from(1, "0"), FromRef::Stage(0));
    }
}
