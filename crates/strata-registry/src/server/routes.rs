//! Routing: which endpoint a `/v2/...` path names, its query, and the
//! dispatch of each (route, method) to its handler after authorization.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;

use super::auth::{authorize, Access};
use super::blobs::{delete_blob, get_blob};
use super::errcode::{empty, err, err_status, Code};
use super::manifests::{delete_manifest, get_manifest, put_manifest, referrers};
use super::repo::valid_name;
use super::tags::{catalog, tags_list};
use super::uploads::{cancel_upload, patch_upload, put_upload, start_upload, upload_status};
use super::{AppState, BytesIn};

pub(super) enum Route {
    Ping,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadNew(String),
    Upload(String, String),
    Referrers(String, String),
}

pub(super) fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Ping);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| segs[..n - k].join("/");
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some(Route::Tags(name(2)));
    }
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        return Some(if id.is_empty() {
            Route::UploadNew(name(3))
        } else {
            Route::Upload(name(3), id.to_owned())
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some(Route::UploadNew(name(2)));
    }
    if n >= 3 && segs[n - 2] == "manifests" {
        return Some(Route::Manifest(name(2), segs[n - 1].to_owned()));
    }
    if n >= 3 && segs[n - 2] == "blobs" {
        return Some(Route::Blob(name(2), segs[n - 1].to_owned()));
    }
    if n >= 3 && segs[n - 2] == "referrers" {
        return Some(Route::Referrers(name(2), segs[n - 1].to_owned()));
    }
    None
}

pub(super) fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(q) = uri.query() {
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.insert(pct_decode(k), pct_decode(v));
        }
    }
    out
}

pub(super) fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn pct_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let counter = parts
        .extensions
        .get::<BytesIn>()
        .cloned()
        .unwrap_or_default();
    let Some(r) = route(parts.uri.path()) else {
        return err_status(StatusCode::NOT_FOUND, Code::Unsupported, "no such endpoint");
    };
    let m = parts.method.clone();
    let access = if m == Method::GET || m == Method::HEAD {
        Access::Pull
    } else {
        Access::Push
    };
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    if let Some(denied) = authorize(&state, client, &parts.headers, access).await {
        return denied;
    }
    let name = match &r {
        Route::Ping | Route::Catalog => None,
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::UploadNew(n)
        | Route::Upload(n, _)
        | Route::Referrers(n, _) => Some(n.clone()),
    };
    if let Some(n) = &name {
        if !valid_name(n) {
            return err(Code::NameInvalid, format!("invalid repository name {n:?}"));
        }
    }
    let q = query(&parts.uri);
    let h = &parts.headers;
    let st = &state;
    match (r, m) {
        (Route::Ping, Method::GET | Method::HEAD) => {
            let mut r = empty(StatusCode::OK, &[]);
            *r.body_mut() = Body::from("{}");
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        (Route::Catalog, Method::GET) => catalog(st, &q),
        (Route::Tags(n), Method::GET) => tags_list(st, &n, &q),
        (Route::Manifest(n, r), Method::GET) => get_manifest(st, &n, &r, h, true),
        (Route::Manifest(n, r), Method::HEAD) => get_manifest(st, &n, &r, h, false),
        (Route::Manifest(n, r), Method::PUT) => put_manifest(st, &n, &r, h, body, counter).await,
        (Route::Manifest(n, r), Method::DELETE) => delete_manifest(st, &n, &r).await,
        (Route::Blob(n, d), Method::GET) => get_blob(st, &n, &d, h, true).await,
        (Route::Blob(n, d), Method::HEAD) => get_blob(st, &n, &d, h, false).await,
        (Route::Blob(n, d), Method::DELETE) => delete_blob(st, &n, &d).await,
        (Route::UploadNew(n), Method::POST) => start_upload(st, &n, &q, h, body, counter).await,
        (Route::Upload(n, id), Method::PATCH) => patch_upload(st, &n, &id, h, body, counter).await,
        (Route::Upload(n, id), Method::PUT) => put_upload(st, &n, &id, &q, h, body, counter).await,
        (Route::Upload(n, id), Method::GET) => upload_status(st, &n, &id).await,
        (Route::Upload(n, id), Method::DELETE) => cancel_upload(st, &n, &id).await,
        (Route::Referrers(n, d), Method::GET) => referrers(st, &n, &d, &q),
        _ => err(Code::Unsupported, "method not allowed here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let name_of = |p: &str| match route(p) {
            Some(Route::Ping) => "ping".to_owned(),
            Some(Route::Catalog) => "catalog".to_owned(),
            Some(Route::Tags(n)) => format!("tags {n}"),
            Some(Route::Manifest(n, r)) => format!("manifest {n} {r}"),
            Some(Route::Blob(n, d)) => format!("blob {n} {d}"),
            Some(Route::UploadNew(n)) => format!("upload-new {n}"),
            Some(Route::Upload(n, i)) => format!("upload {n} {i}"),
            Some(Route::Referrers(n, d)) => format!("referrers {n} {d}"),
            None => "none".to_owned(),
        };
        for (p, want) in [
            ("/v2/", "ping"),
            ("/v2", "ping"),
            ("/v2/_catalog", "catalog"),
            ("/v2/a/b/tags/list", "tags a/b"),
            ("/v2/a/manifests/latest", "manifest a latest"),
            ("/v2/a/blobs/b/manifests/x", "manifest a/blobs/b x"),
            ("/v2/a/blobs/sha256:00", "blob a sha256:00"),
            ("/v2/a/blobs/uploads/", "upload-new a"),
            ("/v2/a/blobs/uploads", "upload-new a"),
            ("/v2/a/b/blobs/uploads/123", "upload a/b 123"),
            ("/v2/a/referrers/sha256:00", "referrers a sha256:00"),
            ("/v3/a", "none"),
        ] {
            assert_eq!(name_of(p), want, "{p}");
        }
    }
}
