//! The Dockerfile builder: stages planned from the parsed Dockerfile, every
//! instruction evaluated with Docker's semantics, a per-instruction cache
//! keyed on content (never on timestamps), layers written reproducibly into
//! the store, and an explanation of every cache hit and miss.
//!
//! ```no_run
//! use strata_build::{build, BuildOptions, StoreResolver};
//! use strata_oci::Store;
//!
//! let store = Store::open("/var/lib/strata")?;
//! let opts = BuildOptions::new("examples/quickstart");
//! let out = build(&store, &opts, &StoreResolver, &|event| println!("{event:?}"))?;
//! println!("built {} ({} steps ran, {} cached)", out.image.id(), out.ran, out.cached);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How a step is keyed (DESIGN.md decision 1) is in [`key`]; why it hit or
//! missed is an [`Explanation`], sent with every step's events.
#![deny(missing_docs)]

mod bindtree;
mod builder;
mod cache;
mod config_change;
pub mod container;
mod copy;
mod emulation;
mod error;
mod event;
mod explain;
mod fetch;
pub mod key;
mod multi;
mod options;
mod plan;
pub mod provenance;
mod source;

pub use bindtree::prune_bind_trees;
pub use builder::{
    build, snapshotter_choice, BaseResolver, BuildInfo, BuildOutput, StoreResolver,
    EMPTY_LAYER_DIFF_ID,
};
pub use config_change::{apply_change, ConfigChange};
pub use container::ContainerError;
pub use emulation::{check as check_emulation, EmulationError, BINFMT_DIR};
pub use error::{Error, ErrorKind, Location, Result};
pub use event::{Event, EventSink, StepId, Stream};
pub use explain::{Change, Explanation};
pub use multi::{build_platforms, MultiOutput};
pub use options::{
    BuildOptions, CacheExport, CacheSources, RootfsKind, SecretSource, SnapshotMode,
};
pub use source::{resolve_context, ContextSpec, ResolvedContext};
pub use strata_layer::MergedView;
