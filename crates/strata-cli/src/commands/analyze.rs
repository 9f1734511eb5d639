use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn analyze(_args: AnalyzeArgs, _s: &Settings) -> CmdResult {
    unbuilt("analyze")
}

pub fn diff(_args: DiffArgs, _s: &Settings) -> CmdResult {
    unbuilt("diff")
}
