use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn images(_args: ImagesArgs, _s: &Settings) -> CmdResult {
    unbuilt("images")
}

pub fn inspect(_args: InspectArgs, _s: &Settings) -> CmdResult {
    unbuilt("inspect")
}

pub fn history(_args: HistoryArgs, _s: &Settings) -> CmdResult {
    unbuilt("history")
}

pub fn import(_args: ImportArgs, _s: &Settings) -> CmdResult {
    unbuilt("import")
}

pub fn save(_args: SaveArgs, _s: &Settings) -> CmdResult {
    unbuilt("save")
}

pub fn load(_args: LoadArgs, _s: &Settings) -> CmdResult {
    unbuilt("load")
}

pub fn tag(_args: TagArgs, _s: &Settings) -> CmdResult {
    unbuilt("tag")
}

pub fn rmi(_args: RmiArgs, _s: &Settings) -> CmdResult {
    unbuilt("rmi")
}

pub fn prune(_args: PruneArgs, _s: &Settings) -> CmdResult {
    unbuilt("prune")
}

pub fn verify(_args: StoreVerifyArgs, _s: &Settings) -> CmdResult {
    unbuilt("verify")
}
