//! Build provenance: an in-toto Statement v1 with a SLSA provenance v1
//! predicate, from what a build knows (docs/supply-chain.md).
//!
//! [`Recorder`] collects the steps from the build's [`Event`]s;
//! [`Provenance::render`] writes the statement. The document is a
//! function of the build's inputs and results only: its timestamps are
//! the build's epoch (SOURCE_DATE_EPOCH), so building twice gives the same
//! bytes. Secrets never appear (only build args, which are not secret).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};
use strata_oci::Digest;

use crate::event::{Event, StepId};

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA provenance v1 predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type strata's statements declare.
pub const BUILD_TYPE: &str = "https://strata.invalid/buildtypes/dockerfile/v1";
/// The media type of the statement blob (in-toto JSON).
pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// How much a statement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Inputs and the result.
    Min,
    /// Also every step: instruction, line, cache key, whether it ran.
    Max,
}

/// One step as the build reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepRecord {
    /// The instruction (variables expanded where the builder expands them).
    pub instruction: String,
    /// Dockerfile line.
    pub line: usize,
    /// Cache key.
    pub key: Option<Digest>,
    /// Whether it ran (false: cached or nothing to run).
    pub ran: bool,
}

/// Collects steps from build events (thread-safe: stages build in parallel).
#[derive(Debug, Default)]
pub struct Recorder {
    steps: Mutex<BTreeMap<(usize, usize), StepRecord>>,
}

impl Recorder {
    /// Look at one event.
    pub fn record(&self, e: &Event) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let key = |id: &StepId| (id.stage, id.step);
        match e {
            Event::StepStarted { id, text, line, .. } => {
                let s = steps.entry(key(id)).or_default();
                s.instruction = text.clone();
                s.line = *line;
            }
            Event::StepKey { id, key: k } => {
                steps.entry(key(id)).or_default().key = Some(k.clone())
            }
            Event::StepDone { id, cached, .. } => steps.entry(key(id)).or_default().ran = !cached,
            _ => {}
        }
    }

    /// The steps, by (stage, step).
    pub fn steps(&self) -> BTreeMap<(usize, usize), StepRecord> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a provenance statement records.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The image as named (first tag, or its ID).
    pub name: String,
    /// Manifest digest of the image built (the statement's subject).
    pub manifest: Digest,
    /// The Dockerfile's path as given (relative to the context when inside it).
    pub dockerfile: String,
    /// sha256 of the Dockerfile's bytes.
    pub dockerfile_digest: Digest,
    /// The context's content digest (strata-context's index digest).
    pub context_digest: Option<Digest>,
    /// Build args as given.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform` (as asked; the image's own platform otherwise).
    pub platform: String,
    /// Base images: the reference as written, and the manifest digest used.
    pub bases: Vec<(String, Digest)>,
    /// The build's epoch (SOURCE_DATE_EPOCH): start and finish times.
    pub epoch: i64,
    /// strata's version.
    pub builder_version: String,
    /// Steps (for [`Detail::Max`]).
    pub steps: BTreeMap<(usize, usize), StepRecord>,
}

fn digest_set(d: &Digest) -> Value {
    json!({ d.algorithm().as_str(): d.hex() })
}

impl Provenance {
    /// The statement, as compact JSON bytes with keys in a fixed order.
    pub fn render(&self, detail: Detail) -> Vec<u8> {
        let mut deps = vec![json!({
            "uri": format!("file:{}", self.dockerfile),
            "name": "dockerfile",
            "digest": digest_set(&self.dockerfile_digest),
        })];
        if let Some(c) = &self.context_digest {
            deps.push(json!({
                "uri": "file:.",
                "name": "context",
                "digest": digest_set(c),
            }));
        }
        let mut bases = self.bases.clone();
        bases.sort();
        bases.dedup();
        for (r, d) in &bases {
            deps.push(json!({
                "uri": format!("docker-image:{r}"),
                "name": "base",
                "digest": digest_set(d),
            }));
        }
        let mut external = json!({
            "dockerfile": self.dockerfile,
            "buildArgs": self.build_args,
            "platform": self.platform,
        });
        if let Some(t) = &self.target {
            external["target"] = json!(t);
        }
        let mut internal = json!({ "sourceDateEpoch": self.epoch });
        if detail == Detail::Max {
            let steps: Vec<Value> = self
                .steps
                .iter()
                .map(|((stage, step), s)| {
                    json!({
                        "stage": stage,
                        "step": step,
                        "line": s.line,
                        "instruction": s.instruction,
                        "cacheKey": s.key.as_ref().map(|k| k.to_string()),
                        "ran": s.ran,
                    })
                })
                .collect();
            internal["steps"] = json!(steps);
        }
        let time = strata_oci::format_rfc3339(self.epoch);
        let doc = json!({
            "_type": STATEMENT_TYPE,
            "subject": [{
                "name": self.name,
                "digest": digest_set(&self.manifest),
            }],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": external,
                    "internalParameters": internal,
                    "resolvedDependencies": deps,
                },
                "runDetails": {
                    "builder": {
                        "id": "https://strata.invalid/builder",
                        "version": { "strata": self.builder_version },
                    },
                    "metadata": {
                        "startedOn": time,
                        "finishedOn": time,
                    },
                },
            },
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Provenance {
        Provenance {
            name: "app:1".into(),
            manifest: Digest::sha256(b"m"),
            dockerfile: "Dockerfile".into(),
            dockerfile_digest: Digest::sha256(b"FROM x"),
            context_digest: Some(Digest::sha256(b"ctx")),
            build_args: BTreeMap::from([("V".into(), "1".into())]),
            target: None,
            platform: "linux/amd64".into(),
            bases: vec![("busybox".into(), Digest::sha256(b"b"))],
            epoch: 0,
            builder_version: "0.1.0".into(),
            steps: BTreeMap::new(),
        }
    }

    #[test]
    fn statement_shape_and_steps() {
        let r = Recorder::default();
        let id = StepId { stage: 0, step: 1 };
        r.record(&Event::StepStarted {
            id,
            label: "[1/2]".into(),
            text: "RUN true".into(),
            line: 2,
        });
        r.record(&Event::StepKey {
            id,
            key: Digest::sha256(b"k"),
        });
        r.record(&Event::StepDone {
            id,
            cached: false,
            duration: Duration::ZERO,
            layer: None,
        });
        let mut p = sample();
        p.steps = r.steps();
        let min: Value = serde_json::from_slice(&p.render(Detail::Min)).unwrap_or_default();
        assert_eq!(min["_type"], STATEMENT_TYPE);
        assert_eq!(min["subject"][0]["digest"]["sha256"], p.manifest.hex());
        assert!(min["predicate"]["buildDefinition"]["internalParameters"]["steps"].is_null());
        assert_eq!(
            min["predicate"]["runDetails"]["metadata"]["startedOn"],
            "1970-01-01T00:00:00Z"
        );
        let max: Value = serde_json::from_slice(&p.render(Detail::Max)).unwrap_or_default();
        let step = &max["predicate"]["buildDefinition"]["internalParameters"]["steps"][0];
        assert_eq!(step["cacheKey"], Digest::sha256(b"k").to_string());
        assert_eq!(step["ran"], true);
        assert_eq!(step["line"], 2);
        assert_eq!(p.render(Detail::Max), p.render(Detail::Max));
    }
}
