//! Where a build's context (and perhaps its Dockerfile) comes from, as
//! `docker build` takes it: a directory; `-` (standard input: a Dockerfile
//! with no context, or a context tarball, told apart by its first bytes); a
//! git repository (`https://host/repo.git#ref:subdir`, `git@host:repo.git`,
//! `git://`, `github.com/user/repo`); or an HTTP(S) URL of a tarball (the
//! context) or of a text file (the Dockerfile, with no context).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, ErrorKind, Result};

/// A build context argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSpec {
    /// A directory.
    Dir(PathBuf),
    /// `-`: standard input.
    Stdin,
    /// A git repository, a ref (branch, tag or commit) and a directory in it.
    Git {
        /// What `git clone` takes.
        url: String,
        /// `#ref`, when given.
        reference: Option<String>,
        /// `#ref:dir`, when given.
        subdir: Option<String>,
    },
    /// An HTTP(S) URL of a tarball or a Dockerfile.
    Url(String),
}

impl ContextSpec {
    /// Reads a context argument as docker does.
    pub fn parse(arg: &str) -> ContextSpec {
        if arg == "-" {
            return ContextSpec::Stdin;
        }
        let (base, fragment) = match arg.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (arg, None),
        };
        let web = base.starts_with("http://") || base.starts_with("https://");
        let git = base.starts_with("git://")
            || base.starts_with("git@")
            || base.starts_with("ssh://")
            || base.starts_with("github.com/")
            || ((web || base.starts_with("file://"))
                && base.trim_end_matches('/').ends_with(".git"));
        if git {
            let url = if base.starts_with("github.com/") {
                format!("https://{base}")
            } else {
                base.to_owned()
            };
            let (reference, subdir) = match fragment {
                Some(f) => match f.split_once(':') {
                    Some((r, d)) => (non_empty(r), non_empty(d)),
                    None => (non_empty(f), None),
                },
                None => (None, None),
            };
            return ContextSpec::Git {
                url,
                reference,
                subdir,
            };
        }
        if web {
            return ContextSpec::Url(arg.to_owned());
        }
        ContextSpec::Dir(PathBuf::from(arg))
    }

    /// Whether the context is fetched or read rather than a local directory.
    pub fn is_remote(&self) -> bool {
        !matches!(self, ContextSpec::Dir(_))
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A context made ready: the directory to build, and the Dockerfile's text
/// when it came with the source instead of from a file in the context.
/// The directory is removed when this is dropped, if it was made here.
#[derive(Debug)]
pub struct ResolvedContext {
    /// The context directory.
    pub dir: PathBuf,
    /// The Dockerfile, when standard input or a URL gave it.
    pub dockerfile_text: Option<String>,
    scratch: Option<PathBuf>,
}

impl Drop for ResolvedContext {
    fn drop(&mut self) {
        if let Some(s) = &self.scratch {
            let _ = strata_oci::remove_tree(s);
        }
    }
}

/// Largest Dockerfile read from standard input or a URL.
const MAX_DOCKERFILE: u64 = 16 << 20;

/// Makes `spec` a directory, fetching or unpacking it under `scratch` (a
/// directory that must not exist; removed with the result) when needed.
/// `stdin` is read for [`ContextSpec::Stdin`].
pub fn resolve_context(
    spec: &ContextSpec,
    scratch: &Path,
    stdin: &mut dyn Read,
) -> Result<ResolvedContext> {
    let dir = match spec {
        ContextSpec::Dir(d) => {
            return Ok(ResolvedContext {
                dir: d.clone(),
                dockerfile_text: None,
                scratch: None,
            })
        }
        _ => scratch.join("context"),
    };
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let mut ctx = ResolvedContext {
        dir: dir.clone(),
        dockerfile_text: None,
        scratch: Some(scratch.to_owned()),
    };
    match spec {
        ContextSpec::Dir(_) => {}
        ContextSpec::Stdin => {
            ctx.dockerfile_text = tarball_or_dockerfile(stdin, &dir, "standard input")?;
        }
        ContextSpec::Url(url) => {
            let file = crate::fetch::download(url, &scratch.join("download"), None, &|_, _| {})?;
            let mut f = fs::File::open(&file).map_err(|e| Error::io("open", &file, e))?;
            ctx.dockerfile_text = tarball_or_dockerfile(&mut f, &dir, url)?;
        }
        ContextSpec::Git {
            url,
            reference,
            subdir,
        } => {
            clone(url, reference.as_deref(), &dir)?;
            if let Some(sub) = subdir {
                let clean = strata_layer::clean_components(sub).join("/");
                let d = dir.join(&clean);
                if !d.is_dir() {
                    return Err(Error::invalid(format!(
                        "{url}: the repository has no directory {sub:?}"
                    )));
                }
                ctx.dir = d;
            }
        }
    }
    Ok(ctx)
}

/// A tarball (plain, gzip, bzip2, xz, zstd) is unpacked into `dir` (safely:
/// nothing lands outside it); anything else is the Dockerfile's text.
fn tarball_or_dockerfile(r: &mut dyn Read, dir: &Path, what: &str) -> Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    r.take(512)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("read", what, e))?;
    let whole = io::Cursor::new(head.clone()).chain(r);
    let archive = head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar");
    if archive {
        let tar: Box<dyn Read + '_> = if head.starts_with(b"BZh") {
            Box::new(bzip2::read::MultiBzDecoder::new(whole))
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole))
        } else {
            // strata-layer reads plain, gzip and zstd tars itself.
            Box::new(whole)
        };
        strata_layer::apply_layer(io::BufReader::new(tar), dir, strata_layer::ApplyMode::Plain)
            .map_err(|e| Error::invalid(format!("cannot unpack the context from {what}: {e}")))?;
        return Ok(None);
    }
    let mut text = Vec::new();
    whole
        .take(MAX_DOCKERFILE)
        .read_to_end(&mut text)
        .map_err(|e| Error::io("read", what, e))?;
    String::from_utf8(text).map(Some).map_err(|_| {
        Error::invalid(format!(
            "{what} is neither a tar archive nor a Dockerfile (not UTF-8 text)"
        ))
    })
}

/// `git clone` of `url` at `reference` (a branch, a tag, or a commit) into `dir`.
fn clone(url: &str, reference: Option<&str>, dir: &Path) -> Result<()> {
    let git = |args: &[&str], cwd: Option<&Path>| -> Result<()> {
        let mut c = Command::new("git");
        c.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null());
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let out = c.output().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::invalid("a git context needs git: install it (apt-get install git)")
            } else {
                Error::io("run git for", url, e)
            }
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(ErrorKind::Download {
            url: url.to_owned(),
            message: format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
        .into())
    };
    let d = dir.to_string_lossy();
    // A branch or tag clones shallow; a commit needs the history.
    let shallow = match reference {
        Some(r) => git(
            &["clone", "--quiet", "--depth", "1", "--branch", r, url, &d],
            None,
        ),
        None => git(&["clone", "--quiet", "--depth", "1", url, &d], None),
    };
    if shallow.is_ok() {
        return Ok(());
    }
    let Some(r) = reference else { return shallow };
    let _ = strata_oci::remove_tree(dir);
    git(&["clone", "--quiet", url, &d], None)?;
    git(&["checkout", "--quiet", r], Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_arguments() {
        assert_eq!(ContextSpec::parse("-"), ContextSpec::Stdin);
        assert_eq!(ContextSpec::parse("."), ContextSpec::Dir(".".into()));
        assert_eq!(
            ContextSpec::parse("https://example.com/app.git#v1:web"),
            ContextSpec::Git {
                url: "https://example.com/app.git".into(),
                reference: Some("v1".into()),
                subdir: Some("web".into())
            }
        );
        assert_eq!(
            ContextSpec::parse("github.com/user/repo#:sub"),
            ContextSpec::Git {
                url: "https://github.com/user/repo".into(),
                reference: None,
                subdir: Some("sub".into())
            }
        );
        assert!(matches!(
            ContextSpec::parse("git@host:repo.git"),
            ContextSpec::Git { .. }
        ));
        assert_eq!(
            ContextSpec::parse("https://example.com/ctx.tar.gz"),
            ContextSpec::Url("https://example.com/ctx.tar.gz".into())
        );
    }

    #[test]
    fn stdin_is_a_dockerfile_or_a_tarball() {
        let t = tempfile::tempdir().unwrap();
        let mut df = &b"FROM scratch\n"[..];
        let c = resolve_context(&ContextSpec::Stdin, &t.path().join("a"), &mut df).unwrap();
        assert_eq!(c.dockerfile_text.as_deref(), Some("FROM scratch\n"));
        assert_eq!(fs::read_dir(&c.dir).unwrap().count(), 0, "no context");
        let scratch = c.scratch.clone().unwrap();
        drop(c);
        assert!(!scratch.exists(), "the scratch directory is removed");

        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(13);
        h.set_mode(0o644);
        b.append_data(&mut h, "Dockerfile", &b"FROM scratch\n"[..])
            .unwrap();
        let gz = b.into_inner().unwrap().finish().unwrap();
        let c = resolve_context(&ContextSpec::Stdin, &t.path().join("b"), &mut &gz[..]).unwrap();
        assert!(c.dockerfile_text.is_none());
        assert_eq!(
            fs::read_to_string(c.dir.join("Dockerfile")).unwrap(),
            "FROM scratch\n"
        );
    }
}
