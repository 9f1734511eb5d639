//! Who may do what: htpasswd (bcrypt) Basic auth, anonymous pull, push
//! users and read-only mode.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use base64::Engine as _;
use strata_oci::Digest;

use super::errcode::{err, Code};
use super::AppState;
use crate::error::{Error, Result};

pub(super) fn read_htpasswd(path: &PathBuf) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line.split_once(':').ok_or_else(|| Error::Htpasswd {
            path: path.clone(),
            line: i + 1,
            reason: "expected user:hash".into(),
        })?;
        if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
            return Err(Error::Htpasswd {
                path: path.clone(),
                line: i + 1,
                reason: format!("the entry for {user:?} is not a bcrypt hash"),
            });
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

pub(super) enum Access {
    Pull,
    Push,
}

pub(super) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    access: Access,
) -> Option<Response> {
    let write = matches!(access, Access::Push);
    let unauthorized = || {
        let mut r = err(Code::Unauthorized, "authentication required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"strata\""),
        );
        r
    };
    if state.opts.htpasswd.is_some() {
        let user = match basic_credentials(headers) {
            Some((u, p)) if check_password(state, &u, &p).await => Some(u),
            _ => None,
        };
        match user {
            None if !write && state.opts.anonymous_pull => return None,
            None => return Some(unauthorized()),
            Some(u)
                if write
                    && !state.opts.push_users.is_empty()
                    && !state.opts.push_users.contains(&u) =>
            {
                return Some(err(Code::Denied, format!("user {u} may not push")));
            }
            Some(_) => {}
        }
    }
    if write && state.opts.read_only {
        return Some(err(Code::Unsupported, "this registry is read-only"));
    }
    None
}

pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

pub(super) async fn check_password(state: &AppState, user: &str, password: &str) -> bool {
    let Some(hash) = state.users.get(user).cloned() else {
        return false;
    };
    let key = (
        user.to_owned(),
        Digest::sha256(password.as_bytes()).hex().to_owned(),
    );
    if let Some(ok) = state
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        return *ok;
    }
    let pw = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash).unwrap_or(false))
        .await
        .unwrap_or(false);
    state
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, ok);
    ok
}
