//! Measured analysis of an image's layers: sizes, waste, detectors, diffs (`strata analyze`, `strata diff`).
