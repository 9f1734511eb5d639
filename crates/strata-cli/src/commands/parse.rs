use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn parse(_args: ParseArgs, _s: &Settings) -> CmdResult {
    unbuilt("parse")
}
