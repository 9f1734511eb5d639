//! Credentials (where they come from, in order) and `WWW-Authenticate`
//! challenges.
//!
//! Lookup order for a registry host:
//! 1. `STRATA_REGISTRY_USER` + `STRATA_REGISTRY_PASSWORD` (every registry);
//! 2. strata's own auth file: `$REGISTRY_AUTH_FILE` when set, else
//!    `$XDG_CONFIG_HOME/strata/auth.json` (`~/.config/strata/auth.json`),
//!    written by `strata login` with mode 0600 in docker's format
//!    (`{"auths": {"host": {"auth": base64("user:pass")}}}`);
//! 3. docker's `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`):
//!    `credHelpers[host]`, then `auths[host]`, then `credsStore`, helpers run
//!    as `docker-credential-<name> get` with the server URL on stdin.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A user name and a password (or identity token). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// User name (`<token>` for identity tokens).
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The value of a Basic `Authorization` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Where credentials are looked up; see the module doc for the order.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Used for every registry when set (from `STRATA_REGISTRY_USER`/`_PASSWORD`).
    pub env_credential: Option<Credential>,
    /// strata's auth file (read and written by login/logout).
    pub auth_file: Option<PathBuf>,
    /// docker's config.json (read only).
    pub docker_config: Option<PathBuf>,
    /// Where `docker-credential-*` helpers are looked up (default: PATH).
    pub helper_dir: Option<PathBuf>,
}

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl AuthConfig {
    /// The standard locations, from the environment.
    pub fn from_env() -> AuthConfig {
        let home = env_nonempty("HOME").map(PathBuf::from);
        let env_credential = match (
            env_nonempty("STRATA_REGISTRY_USER"),
            std::env::var("STRATA_REGISTRY_PASSWORD").ok(),
        ) {
            (Some(username), Some(password)) => Some(Credential { username, password }),
            _ => None,
        };
        let auth_file = env_nonempty("REGISTRY_AUTH_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                env_nonempty("XDG_CONFIG_HOME").map(|x| PathBuf::from(x).join("strata/auth.json"))
            })
            .or_else(|| home.as_ref().map(|h| h.join(".config/strata/auth.json")));
        let docker_config = env_nonempty("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| home.as_ref().map(|h| h.join(".docker/config.json")));
        AuthConfig {
            env_credential,
            auth_file,
            docker_config,
            helper_dir: None,
        }
    }

    /// Credentials for `registry` (a host as in references: `docker.io`,
    /// `localhost:5000`), or `None` for anonymous access.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>> {
        if let Some(c) = &self.env_credential {
            return Ok(Some(c.clone()));
        }
        if let Some(p) = &self.auth_file {
            if let Some(doc) = read_config(p)? {
                if let Some(c) = auths_entry(&doc, registry, p)? {
                    return Ok(Some(c));
                }
            }
        }
        if let Some(p) = &self.docker_config {
            if let Some(doc) = read_config(p)? {
                if let Some(helper) = doc
                    .get("credHelpers")
                    .and_then(|h| h.as_object())
                    .and_then(|h| keys_for(registry).iter().find_map(|k| h.get(k)))
                    .and_then(|v| v.as_str())
                {
                    return self.run_helper(helper, registry);
                }
                if let Some(c) = auths_entry(&doc, registry, p)? {
                    return Ok(Some(c));
                }
                if let Some(store) = doc.get("credsStore").and_then(|v| v.as_str()) {
                    return self.run_helper(store, registry);
                }
            }
        }
        Ok(None)
    }

    fn run_helper(&self, helper: &str, registry: &str) -> Result<Option<Credential>> {
        let err = |reason: String| Error::CredentialHelper {
            helper: helper.to_owned(),
            registry: registry.to_owned(),
            reason,
        };
        if !helper
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(err("invalid helper name".into()));
        }
        let prog = match &self.helper_dir {
            Some(d) => d.join(format!("docker-credential-{helper}")),
            None => PathBuf::from(format!("docker-credential-{helper}")),
        };
        let server = keys_for(registry)[0].clone();
        let mut child = Command::new(&prog)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", prog.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("cannot run {}: {e}", prog.display())))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stdout);
            // "credentials not found in native keychain" means anonymous.
            if msg.contains("not found") {
                return Ok(None);
            }
            return Err(err(format!("exited with {}", out.status)));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| err(format!("output is not JSON: {e}")))?;
        let user = v.get("Username").and_then(|x| x.as_str()).unwrap_or("");
        let secret = v.get("Secret").and_then(|x| x.as_str()).unwrap_or("");
        if secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credential {
            username: if user.is_empty() {
                "<token>".into()
            } else {
                user.into()
            },
            password: secret.into(),
        }))
    }

    /// Store credentials for `registry` in strata's auth file (mode 0600).
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<PathBuf> {
        let p = self.writable_file()?;
        let mut doc = read_config(&p)?.unwrap_or_default();
        let auths = doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(auths) = auths.as_object_mut() else {
            return Err(Error::Credentials {
                path: p,
                reason: "\"auths\" is not an object".into(),
            });
        };
        let raw = format!("{}:{}", cred.username, cred.password);
        let mut entry = Map::new();
        entry.insert(
            "auth".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
        );
        auths.insert(keys_for(registry)[0].clone(), Value::Object(entry));
        write_config(&p, &doc)?;
        Ok(p)
    }

    /// Remove `registry` from strata's auth file. Returns whether it was there.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let p = self.writable_file()?;
        let Some(mut doc) = read_config(&p)? else {
            return Ok(false);
        };
        let mut removed = false;
        if let Some(auths) = doc.get_mut("auths").and_then(|a| a.as_object_mut()) {
            for k in keys_for(registry) {
                removed |= auths.remove(&k).is_some();
            }
        }
        if removed {
            write_config(&p, &doc)?;
        }
        Ok(removed)
    }

    fn writable_file(&self) -> Result<PathBuf> {
        self.auth_file.clone().ok_or_else(|| Error::Credentials {
            path: PathBuf::from("auth.json"),
            reason: "no place for it: set REGISTRY_AUTH_FILE, XDG_CONFIG_HOME or HOME".into(),
        })
    }
}

/// The keys a registry may be filed under in an `auths` map.
fn keys_for(registry: &str) -> Vec<String> {
    if crate::host::is_docker_hub(registry) {
        return vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ];
    }
    vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ]
}

fn read_config(p: &Path) -> Result<Option<Map<String, Value>>> {
    match std::fs::read(p) {
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Err(Error::Credentials {
                path: p.to_owned(),
                reason: "not a JSON object".into(),
            }),
            Err(e) => Err(Error::Credentials {
                path: p.to_owned(),
                reason: format!("not valid JSON: {e}"),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", p, e)),
    }
}

fn write_config(p: &Path, doc: &Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = p.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let tmp = dir.join(format!(".auth-{}.tmp", std::process::id()));
    let bytes = serde_json::to_vec_pretty(&Value::Object(doc.clone())).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, p).map_err(|e| Error::io("rename into", p, e))
}

fn auths_entry(
    doc: &Map<String, Value>,
    registry: &str,
    path: &Path,
) -> Result<Option<Credential>> {
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for k in keys_for(registry) {
        let Some(entry) = auths.get(&k) else { continue };
        let bad = |reason: &str| Error::Credentials {
            path: path.to_owned(),
            reason: format!("entry for {k}: {reason}"),
        };
        if let Some(tok) = entry.get("identitytoken").and_then(|v| v.as_str()) {
            if !tok.is_empty() {
                return Ok(Some(Credential {
                    username: "<token>".into(),
                    password: tok.into(),
                }));
            }
        }
        let Some(auth) = entry.get("auth").and_then(|v| v.as_str()) else {
            continue;
        };
        if auth.is_empty() {
            continue;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("\"auth\" is not base64"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
        let (u, p) = raw
            .split_once(':')
            .ok_or_else(|| bad("\"auth\" is not base64(user:password)"))?;
        return Ok(Some(Credential {
            username: u.into(),
            password: p.into(),
        }));
    }
    Ok(None)
}

/// One `WWW-Authenticate` challenge: scheme and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parse a `WWW-Authenticate` value (RFC 7235: several challenges, params
/// with quoted strings that may hold commas).
pub(crate) fn parse_challenges(h: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = h.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let s = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=') {
            *i += 1;
        }
        h[s..*i].to_owned()
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let word = token(&mut i);
        // Look ahead: `word=` is a parameter of the current challenge.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch_len = h[i..].chars().next().map_or(1, char::len_utf8);
                    v.push_str(&h[i..i + ch_len]);
                    i += ch_len;
                }
                i += 1;
                v
            } else {
                token(&mut i)
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(word.to_ascii_lowercase(), value);
            }
        } else if !word.is_empty() {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn challenges() {
        type Params<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, &[(&str, Params)])] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
                &[(
                    "bearer",
                    &[
                        ("realm", "https://auth.docker.io/token"),
                        ("scope", "repository:library/busybox:pull,push"),
                        ("service", "registry.docker.io"),
                    ],
                )],
            ),
            (
                r#"Basic realm="strata""#,
                &[("basic", &[("realm", "strata")])],
            ),
            (
                r#"Basic realm="a, b", Bearer realm=x,service=y"#,
                &[
                    ("basic", &[("realm", "a, b")]),
                    ("bearer", &[("realm", "x"), ("service", "y")]),
                ],
            ),
        ];
        for (input, want) in cases {
            let got = parse_challenges(input);
            assert_eq!(got.len(), want.len(), "{input}");
            for (g, (scheme, params)) in got.iter().zip(want.iter()) {
                assert_eq!(g.scheme, *scheme);
                let p: Vec<(&str, &str)> = g
                    .params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(&p[..], *params, "{input}");
            }
        }
    }

    #[test]
    fn credential_debug_hides_secret() {
        let c = Credential {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn docker_config_auths_helpers_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"reg.example:5000":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}},
                "credHelpers":{"helped.example":"fake"}}"#,
        )
        .unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"hu\\\",\\\"Secret\\\":\\\"hs\\\"}\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = AuthConfig {
            env_credential: None,
            auth_file: Some(dir.path().join("strata/auth.json")),
            docker_config: Some(docker),
            helper_dir: Some(dir.path().to_owned()),
        };
        let c = cfg.lookup("reg.example:5000").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
        let c = cfg.lookup("docker.io").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("hub", "secret")
        );
        let c = cfg.lookup("helped.example").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("hu", "hs"));
        assert!(cfg.lookup("other.example").unwrap().is_none());
        // strata's own file wins over docker's, and is private.
        let p = cfg
            .store(
                "reg.example:5000",
                &Credential {
                    username: "mine".into(),
                    password: "pw".into(),
                },
            )
            .unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            cfg.lookup("reg.example:5000").unwrap().unwrap().username,
            "mine"
        );
        assert!(cfg.remove("reg.example:5000").unwrap());
        assert!(!cfg.remove("reg.example:5000").unwrap());
        assert_eq!(
            cfg.lookup("reg.example:5000").unwrap().unwrap().username,
            "user"
        );
    }
}
