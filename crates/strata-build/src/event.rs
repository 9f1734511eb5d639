//! Progress events. The builder never prints: it sends these to a sink the
//! CLI renders (live view on a terminal, plain lines when piped, JSON lines).

use std::time::Duration;

use serde::Serialize;
use strata_oci::Digest;

use crate::explain::Explanation;

/// Identifies a step across events: stage index and step index in the stage
/// (0 is the FROM line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StepId {
    /// Stage index in the Dockerfile.
    pub stage: usize,
    /// Step index in the stage (0 = FROM).
    pub step: usize,
}

/// Which stream a line of RUN output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One thing that happened during a build.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A multi-platform build starts the graph of one platform (the
    /// events up to the next `Platform` or the end are that graph's).
    Platform {
        /// The platform (`linux/arm64`).
        platform: String,
        /// Which one, from 1.
        n: usize,
        /// How many.
        of: usize,
    },
    /// The plan is known.
    Plan {
        /// Stages that will be built, in Dockerfile order (`name` or `stage-N`).
        stages: Vec<String>,
        /// Steps that will run or be looked up.
        steps: usize,
        /// How RUN steps get their root filesystem: `overlay`,
        /// `fuse-overlayfs` or `copy`.
        snapshotter: &'static str,
    },
    /// Build cache entries were exported (`--cache-to`).
    CacheExported {
        /// The cache, as the user named it.
        cache: String,
        /// Entries written.
        entries: usize,
        /// Entries already there.
        present: usize,
        /// Layer blobs sent, and their bytes.
        blobs_sent: usize,
        /// Bytes of the blobs sent.
        bytes_sent: u64,
    },
    /// A step begins.
    StepStarted {
        /// Which step.
        id: StepId,
        /// `[build 2/5]`.
        label: String,
        /// The instruction, variables expanded where the builder expands them.
        text: String,
        /// Dockerfile line.
        line: usize,
    },
    /// A step was found in the cache or made no change; nothing ran.
    StepCached {
        /// Which step.
        id: StepId,
        /// Why it was a hit (what was compared).
        explanation: Explanation,
    },
    /// A step missed the cache and will run.
    StepMiss {
        /// Which step.
        id: StepId,
        /// Why.
        explanation: Explanation,
    },
    /// A line of RUN output.
    Output {
        /// Which step.
        id: StepId,
        /// Which stream.
        stream: Stream,
        /// The line, without its newline.
        line: String,
    },
    /// Bytes moved by a step (context files hashed, a download).
    Transfer {
        /// Which step.
        id: StepId,
        /// What is being moved.
        what: String,
        /// Bytes so far.
        bytes: u64,
        /// Total, when known.
        total: Option<u64>,
    },
    /// A step's cache key is known (just before its `StepDone`): what
    /// `--provenance=max` records.
    StepKey {
        /// Which step.
        id: StepId,
        /// The step's cache key (for FROM, the base image's).
        key: Digest,
    },
    /// A step is done.
    StepDone {
        /// Which step.
        id: StepId,
        /// Whether it came from the cache.
        cached: bool,
        /// Time spent.
        #[serde(serialize_with = "secs")]
        duration: Duration,
        /// The layer it made, if any: (blob digest, compressed size).
        layer: Option<(Digest, u64)>,
    },
    /// Something the user should know that does not stop the build.
    Warning {
        /// The message.
        message: String,
        /// Dockerfile line, when it concerns one.
        line: Option<usize>,
    },
    /// The image is assembled.
    Done {
        /// Image ID (config digest).
        id: Digest,
        /// Manifest digest.
        manifest: Digest,
        /// Steps that ran / came from the cache.
        ran: usize,
        /// Steps that came from the cache.
        cached: usize,
        /// Whole build time.
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Where events go. Called from several threads when stages build in parallel.
pub type EventSink<'a> = &'a (dyn Fn(Event) + Send + Sync);
