use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn run(_args: RunArgs, _s: &Settings) -> CmdResult {
    unbuilt("run")
}
