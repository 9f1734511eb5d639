use crate::cli::*;
use crate::settings::Settings;

use super::{unbuilt, CmdResult};

pub fn push(_args: PushArgs, _s: &Settings) -> CmdResult {
    unbuilt("push")
}

pub fn pull(_args: PullArgs, _s: &Settings) -> CmdResult {
    unbuilt("pull")
}

pub fn login(_args: LoginArgs, _s: &Settings) -> CmdResult {
    unbuilt("login")
}

pub fn logout(_args: LogoutArgs, _s: &Settings) -> CmdResult {
    unbuilt("logout")
}

pub fn serve(_args: ServeArgs, _s: &Settings) -> CmdResult {
    unbuilt("serve")
}
