//! `strata context ls`: what the builder receives from a context directory.

use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::Context as _;
use strata_context::{Context, ContextOptions, EntryKind};

use crate::cli::*;
use crate::settings::Settings;

use super::CmdResult;

/// Prints one context-relative path a line, sorted (byte order): regular
/// files, symlinks (not followed), other special files, and directories
/// that hold nothing the builder receives (`COPY . .` creates them too).
/// Directories with content are implied by their entries. `--long` prints
/// every entry, directories included, with type, mode, owner, size and the
/// sha256 of file content (or `-> target` for symlinks).
pub fn ls(args: ContextLsArgs, s: &Settings) -> CmdResult {
    if let Some(f) = &args.file {
        if !f.is_file() {
            return Err(crate::render::hinted(
                format!("Dockerfile {} not found", f.display()),
                "-f is relative to the current directory, as with `docker build -f`",
            ));
        }
    }
    let opts = ContextOptions {
        dockerfile: args.file.clone(),
        state_dir: Some(s.root.join("context-cache")),
    };
    let ctx = Context::open(&args.dir, opts)
        .with_context(|| format!("cannot read build context {}", args.dir.display()))?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = if args.long {
        let index = ctx.index().context("cannot index the build context")?;
        (|| -> std::io::Result<()> {
            for ie in index.entries() {
                let e = &ie.entry;
                let what = match (&ie.digest, &e.link_target) {
                    (Some(d), _) => d.to_string(),
                    _ => "-".to_owned(),
                };
                write!(
                    out,
                    "{} {:04o} {}:{} {:>10} {} ",
                    e.kind.letter(),
                    e.mode,
                    e.uid,
                    e.gid,
                    if e.kind == EntryKind::Dir { 0 } else { e.size },
                    what
                )?;
                out.write_all(e.path.as_bytes())?;
                if e.kind == EntryKind::Dir {
                    out.write_all(b"/")?;
                }
                if let Some(t) = &e.link_target {
                    out.write_all(b" -> ")?;
                    out.write_all(t.as_os_str().as_bytes())?;
                }
                out.write_all(b"\n")?;
            }
            out.flush()
        })()
    } else {
        (|| -> std::io::Result<()> {
            for e in ctx.entries() {
                if e.kind == EntryKind::Dir && !ctx.is_empty_dir(e) {
                    continue;
                }
                out.write_all(e.path.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()
        })()
    };
    written.context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}
