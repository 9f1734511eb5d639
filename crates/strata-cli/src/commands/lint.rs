use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn lint(_args: LintArgs, _s: &Settings) -> CmdResult {
    unbuilt("lint")
}
