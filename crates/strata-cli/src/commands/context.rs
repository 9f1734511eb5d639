use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn ls(_args: ContextLsArgs, _s: &Settings) -> CmdResult {
    unbuilt("ls")
}
