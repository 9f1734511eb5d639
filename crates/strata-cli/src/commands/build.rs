use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn build(_args: BuildArgs, _s: &Settings) -> CmdResult {
    unbuilt("build")
}
