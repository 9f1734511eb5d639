//! `RUN --mount=...` (BuildKit's `commands_runmount.go`): the mount types
//! and the CSV option parser with BuildKit's checks.

use serde::Serialize;

use crate::go;
use crate::span::Span;

/// `RUN --mount=type=...` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A directory of the context or another stage (the default).
    #[default]
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Concurrent writers share it.
    Shared,
    /// Each writer gets its own when busy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// Expands one mount option value (see [`MountSpec::parse`]).
pub type MountExpander<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// One `--mount=...` of a `RUN`, parsed as BuildKit does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MountSpec {
    /// `type=`.
    pub kind: MountType,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `from=`: a stage or image.
    pub from: Option<String>,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=`.
    pub sharing: Option<CacheSharing>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `required` (secret and ssh).
    pub required: bool,
    /// Read-only (after `ro`/`rw` and the type's default).
    pub readonly: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `size=` of a tmpfs, as written.
    pub size: Option<String>,
    /// Options whose value holds a variable: `(key, raw value)`, checked
    /// only once expanded (parse the flag again with an expander).
    pub deferred: Vec<(String, String)>,
    /// The flag's value as written (`type=cache,target=/x`).
    pub raw: String,
    /// Where the flag is.
    pub span: Span,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, radix, 32)`.
fn parse_u32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// One CSV record (Go's `encoding/csv`, default options).
fn csv_record(s: &str) -> Result<Vec<String>, String> {
    let line = s.split(['\n']).next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err("EOF".into());
    }
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        if let Some(q) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = q.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if let Some(&(_, '"')) = chars.peek() {
                        chars.next();
                        field.push('"');
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                field.push(c);
            }
            let Some(end) = end else {
                return Err("extraneous or missing \" in quoted-field".into());
            };
            fields.push(field);
            rest = &q[end..];
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => return Ok(fields),
                None => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            let (field, next) = match rest.find(',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err("bare \" in non-quoted-field".into());
            }
            fields.push(field.to_string());
            match next {
                Some(n) => rest = n,
                None => return Ok(fields),
            }
        }
    }
}

impl MountSpec {
    /// Parses the value of a `RUN --mount=` flag as BuildKit does. With an
    /// `expand` function each option's value is expanded first; without
    /// one, string options keep variables as written and typed options
    /// holding a `$` go to [`MountSpec::deferred`].
    pub fn parse(value: &str, expand: Option<MountExpander<'_>>) -> Result<MountSpec, String> {
        let fields = csv_record(value).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
        let mut m = MountSpec {
            raw: value.to_string(),
            ..Default::default()
        };
        let mut ro_auto = true;
        let secret_or_ssh = |m: &MountSpec| matches!(m.kind, MountType::Secret | MountType::Ssh);
        for field in fields {
            let (key, val) = match field.split_once('=') {
                Some((k, v)) => (go::to_lower(k), Some(v.to_string())),
                None => (go::to_lower(&field), None),
            };
            let Some(mut val) = val else {
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                        continue;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                        continue;
                    }
                    "required" if secret_or_ssh(&m) => {
                        m.required = true;
                        continue;
                    }
                    "required" => {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            type_name(m.kind)
                        ))
                    }
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
            };
            if let Some(f) = expand {
                val = f(&val)?;
            } else if key == "from" {
                if val.chars().skip_while(|&c| c != '$').nth(1).is_some() {
                    return Err(
                        "'from' doesn't support variable expansion, define alias stage instead"
                            .into(),
                    );
                }
            } else if val.contains('$')
                && !matches!(
                    key.as_str(),
                    "source" | "src" | "target" | "dst" | "destination" | "id" | "env" | "size"
                )
            {
                m.deferred.push((key, val));
                continue;
            }
            match key.as_str() {
                "type" => {
                    m.kind = match go::to_lower(&val).as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => return Err(format!("unsupported mount type {}", go::quote(&val))),
                    }
                }
                "from" => m.from = Some(val),
                "source" | "src" => m.source = Some(val),
                "target" | "dst" | "destination" => m.target = Some(val),
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&val)
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    let rw = parse_bool(&val)
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?;
                    m.readonly = !rw;
                    ro_auto = false;
                }
                "required" => {
                    if !secret_or_ssh(&m) {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            type_name(m.kind)
                        ));
                    }
                    m.required = parse_bool(&val)
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?;
                }
                "id" => m.id = Some(val),
                "sharing" => {
                    m.sharing = Some(match go::to_lower(&val).as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => return Err(format!("unsupported sharing value {}", go::quote(&val))),
                    })
                }
                "mode" => {
                    m.mode = Some(
                        parse_u32(&val, 8)
                            .ok_or_else(|| format!("invalid value {val} for mode"))?,
                    )
                }
                "uid" => {
                    m.uid = Some(
                        parse_u32(&val, 10)
                            .ok_or_else(|| format!("invalid value {val} for uid"))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        parse_u32(&val, 10)
                            .ok_or_else(|| format!("invalid value {val} for gid"))?,
                    )
                }
                "env" => m.env = Some(val),
                "size" => m.size = Some(val),
                _ => return Err(format!("unexpected key '{key}' in '{field}'")),
            }
        }
        let file_info = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        for (set, what) in [
            (m.mode.is_some(), "mode"),
            (m.uid.is_some(), "uid"),
            (m.gid.is_some(), "gid"),
        ] {
            if set && !file_info {
                return Err(format!(
                    "{what} not allowed for {} type mounts",
                    go::quote(type_name(m.kind))
                ));
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(format!(
                "invalid cache sharing set for {} mount",
                type_name(m.kind)
            ));
        }
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if m.source.is_none()
                && m.target.is_none()
                && m.id.is_none()
                && m.env.is_none()
                && m.deferred.is_empty()
            {
                return Err("invalid secret mount. one of source, target required".into());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("both source and id can't be set".into());
            }
        }
        Ok(m)
    }
}

fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::testutil::first;
    use crate::instructions::{InstructionKind, NetworkMode, ShellOrExec};

    #[test]
    fn run_flags_and_mounts() {
        let k = first("FROM a\nRUN --mount=type=cache,target=/root/.cache,sharing=locked,id=$ID --mount=type=secret,id=tok,required --network=none [\"make\", \"all\"]\n");
        let InstructionKind::Run(run) = k else {
            panic!("not a run")
        };
        assert_eq!(
            run.cmd,
            ShellOrExec::Exec(vec!["make".into(), "all".into()])
        );
        assert_eq!(run.network, NetworkMode::None);
        assert_eq!(run.mounts[0].kind, MountType::Cache);
        assert_eq!(run.mounts[0].sharing, Some(CacheSharing::Locked));
        assert_eq!(run.mounts[0].id.as_deref(), Some("$ID"));
        assert!(!run.mounts[0].readonly);
        assert!(run.mounts[1].required && run.mounts[1].readonly);
    }

    #[test]
    fn mount_errors() {
        for (v, want) in [
            ("type=nope", "unsupported mount type \"nope\""),
            (
                "type=bind,mode=0700",
                "mode not allowed for \"bind\" type mounts",
            ),
            ("type=cache,mode=9", "invalid value 9 for mode"),
            ("type=secret", "invalid secret mount"),
            ("type=bind,foo=bar", "unexpected key 'foo' in 'foo=bar'"),
            ("from=$X", "doesn't support variable expansion"),
            (
                "type=bind,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            ("type=bind,sharing=shared", "invalid cache sharing"),
            ("a\"b", "bare \""),
        ] {
            let got = MountSpec::parse(v, None).map(|_| ()).unwrap_err();
            assert!(got.contains(want), "{v}: {got}");
        }
        let m = MountSpec::parse("type=cache,uid=$U,target=/x", None).unwrap_or_default();
        assert_eq!(m.deferred, vec![("uid".to_string(), "$U".to_string())]);
        let exp = |s: &str| Ok::<_, String>(s.replace("$U", "1000"));
        let m = MountSpec::parse("type=cache,uid=$U,target=/x", Some(&exp)).unwrap_or_default();
        assert_eq!(m.uid, Some(1000));
    }
}
