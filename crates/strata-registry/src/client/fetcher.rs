//! [`OriginFetcher`]: downloads the store's remote blobs (layers a build
//! took from a registry cache without downloading them, see
//! `strata_oci::Store::note_remote`) from the registry repositories the
//! store records for them ([`crate::origins`]).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use strata_oci::{BlobFetcher, Descriptor, RemoteError, Store};

use super::{Client, ClientOptions, Target};
use crate::origins;
use crate::progress::BlobKind;

/// Fetches a remote blob from the first repository that has it, of those
/// the store records for it (where it was pulled from, pushed to, or found
/// in a build cache).
#[derive(Debug, Clone)]
pub struct OriginFetcher {
    options: ClientOptions,
}

impl OriginFetcher {
    /// A fetcher reaching registries with `options` (credentials, insecure
    /// registries, retries).
    pub fn new(options: ClientOptions) -> OriginFetcher {
        OriginFetcher { options }
    }
}

impl BlobFetcher for OriginFetcher {
    /// Runs on a thread and runtime of its own, so it may be called from
    /// any thread, inside another runtime too (blocking that thread).
    fn fetch(&self, store: &Store, desc: &Descriptor) -> Result<(), RemoteError> {
        let places = origins::lookup(store, &desc.digest);
        if places.is_empty() {
            return Err("no registry repository is known to hold it (strata records where a layer came from when it pulls, pushes or finds it in a build cache; run `strata pull` on the image)".into());
        }
        let (store, desc, options) = (store.clone(), desc.clone(), self.options.clone());
        let worker = std::thread::Builder::new()
            .name("strata-fetch".into())
            .spawn(move || -> Result<(), RemoteError> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let client = Client::new(options)?;
                let mut failures = Vec::new();
                for (registry, repository) in places {
                    let target = Target::new(&registry, &repository, false);
                    let got = rt.block_on(client.pull_blob(
                        &store,
                        &target,
                        &desc,
                        BlobKind::Layer,
                        Arc::new(AtomicU64::new(0)),
                    ));
                    match got {
                        Ok(_) => return Ok(()),
                        Err(e) => failures.push(format!(
                            "{registry}/{repository}: {}",
                            super::cache::chain_text(&e)
                        )),
                    }
                }
                Err(failures.join("; ").into())
            })?;
        worker
            .join()
            .map_err(|_| RemoteError::from("the download thread panicked"))?
    }
}
