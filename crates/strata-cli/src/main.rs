//! The `strata` binary. Everything interesting lives in the library crates;
//! this crate parses arguments, renders progress and errors, and sets exit codes.

// Until every command is wired to its library (see `commands::unbuilt`).
#![allow(dead_code)]

mod cli;
mod commands;
mod format;
mod progress;
mod render;
mod settings;

fn main() -> std::process::ExitCode {
    commands::main()
}
