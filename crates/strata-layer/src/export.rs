//! A stack of layers as one file system: unpacked into a directory (`strata
//! build -o DIR`, the way build artifacts leave a CI job) or written as one
//! uncompressed tar (`-o type=tar`). Whiteouts are applied, never shown.

use std::io::{BufReader, Write};
use std::path::Path;

use strata_oci::{Compression, Layer, Store};

use crate::error::IoContext;
use crate::{apply_layer, write_layer, ApplyMode, LayerOptions, LayerSource, Result, Timestamps};

/// Applies `layers` (bottom first) from `store` into `dir`, which is
/// created if missing. Nothing is written outside `dir`.
pub fn unpack_layers(store: &Store, layers: &[Layer], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).ctx("create", dir)?;
    for l in layers {
        let blob = store.open_blob(&l.descriptor.digest)?;
        apply_layer(BufReader::new(blob), dir, ApplyMode::Plain)?;
    }
    Ok(())
}

/// Writes the file system `layers` make as one tar to `out`, unpacking it
/// under `scratch` (created, then removed) first. Entries are sorted; files
/// keep the times and owners the layers give them.
pub fn write_rootfs_tar<W: Write>(
    store: &Store,
    layers: &[Layer],
    scratch: &Path,
    out: W,
) -> Result<W> {
    let result = (|| {
        unpack_layers(store, layers, scratch)?;
        let opts = LayerOptions {
            timestamps: Timestamps::Preserve,
            ..LayerOptions::new(Compression::None)
        };
        let (_, out) = write_layer(LayerSource::Dir(scratch), &opts, out)?;
        Ok(out)
    })();
    let _ = strata_oci::remove_tree(scratch);
    result
}
