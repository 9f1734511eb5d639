//! Builds for several platforms: one build graph per target platform, then
//! an OCI image index whose manifests carry their platforms.
//!
//! The graphs run one after the other against the same store and cache.
//! A stage whose inputs do not depend on the target platform (`FROM
//! --platform=$BUILDPLATFORM` without `ARG TARGET*`, `FROM scratch` with
//! COPY only...) has the same cache keys in every graph, so it is built for
//! the first platform and found in the cache by the others: built once,
//! shared. A stage that declares `ARG TARGETARCH` (or any value that
//! differs) is keyed, and built, per platform.

use strata_oci::{media_type, Descriptor, Index, Platform, Store};

use crate::builder::{build, BaseResolver, BuildOutput};
use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::options::BuildOptions;

/// What a multi-platform build produced.
#[derive(Debug, Clone)]
pub struct MultiOutput {
    /// The index (stored, kept until tagged like a built image).
    pub index: Descriptor,
    /// Each platform's build, in the order asked for.
    pub builds: Vec<(Platform, BuildOutput)>,
}

/// Builds `opts` for each of `platforms` (`opts.platform` is ignored) and
/// stores an OCI index of the results, in the order given. The index bytes
/// depend only on the manifests and their platforms, so the same inputs
/// give the same index digest.
pub fn build_platforms(
    store: &Store,
    opts: &BuildOptions,
    platforms: &[Platform],
    resolver: &dyn BaseResolver,
    sink: EventSink<'_>,
) -> Result<MultiOutput> {
    if platforms.is_empty() {
        return Err(Error::invalid("no platform to build for"));
    }
    let mut builds = Vec::new();
    let mut manifests = Vec::new();
    // Everything stays held until the index is stored and kept.
    let _lease = store.lease("build")?;
    for (n, platform) in platforms.iter().enumerate() {
        sink(Event::Platform {
            platform: platform.to_string(),
            n: n + 1,
            of: platforms.len(),
        });
        let mut one = opts.clone();
        one.platform = Some(platform.clone());
        let out = build(store, &one, resolver, sink)?;
        let mut desc = out.image.descriptor.clone();
        desc.annotations.clear();
        desc.platform = Some(platform.clone());
        manifests.push(desc);
        builds.push((platform.clone(), out));
    }
    let index = Index::oci(manifests);
    let desc = store.put_json(media_type::OCI_INDEX, &index.to_json())?;
    store.keep_untagged(&desc)?;
    // The manifests are kept through the index now, not on their own.
    for m in &index.manifests {
        store.remove_untagged(&m.digest)?;
    }
    Ok(MultiOutput {
        index: desc,
        builds,
    })
}
