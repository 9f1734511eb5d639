//! Blobs: get/head (with ranges), delete; a repository serves the blobs it
//! links and those of the images the store's tags serve under its name.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use strata_oci::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::errcode::{empty, err, internal, storage, Code};
use super::served::Served;
use super::{repo_lock, AppState};

pub(super) fn parse_digest(s: &str) -> std::result::Result<Digest, Response> {
    s.parse::<Digest>()
        .map_err(|_| err(Code::DigestInvalid, format!("invalid digest {s:?}")))
}

/// Parse `bytes=a-b`, `bytes=a-`, `bytes=-n` against `size`: (start, end inclusive).
pub(super) fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

pub(super) async fn get_blob(
    st: &AppState,
    name: &str,
    digest: &str,
    h: &HeaderMap,
    body: bool,
) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let store = st.repos.store();
    match Served::new(&st.repos, name).blob(&d) {
        Ok(true) => {}
        Ok(false) => return err(Code::BlobUnknown, format!("blob {d} is not in {name}")),
        Err(e) => return storage(store, e),
    }
    let size = match store.blob_size(&d) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            return err(Code::BlobUnknown, format!("blob {d} is not in {name}"))
        }
        Err(e) => return internal(e),
    };
    let range = match h.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => match parse_range(v, size) {
            Some(r) => Some(r),
            None => {
                return empty(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &[("content-range", format!("bytes */{size}"))],
                )
            }
        },
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut headers = vec![
        ("content-length", len.to_string()),
        ("content-type", "application/octet-stream".to_owned()),
        ("docker-content-digest", d.to_string()),
        ("accept-ranges", "bytes".to_owned()),
        ("etag", format!("\"{d}\"")),
    ];
    if let Some((a, b)) = range {
        headers.push(("content-range", format!("bytes {a}-{b}/{size}")));
    }
    let mut r = empty(status, &headers);
    if body {
        let mut f = match tokio::fs::File::open(store.blob_path(&d)).await {
            Ok(f) => f,
            Err(e) => return internal(e),
        };
        if start > 0 {
            if let Err(e) = f.seek(std::io::SeekFrom::Start(start)).await {
                return internal(e);
            }
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10);
        *r.body_mut() = Body::from_stream(stream);
    }
    r
}

pub(super) async fn delete_blob(st: &AppState, name: &str, digest: &str) -> Response {
    let d = match parse_digest(digest) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let lock = repo_lock(st, name);
    let _g = lock.lock().await;
    // A blob of an image the store tags stays as long as the tag does.
    match Served::new(&st.repos, name).store_blob(&d) {
        Ok(false) => {}
        Ok(true) => {
            return err(
                Code::Unsupported,
                format!(
                "blob {d} belongs to an image the store tags in {name}: delete its manifest or tag"
            ),
            )
        }
        Err(e) => return storage(st.repos.store(), e),
    }
    match st.repos.unlink_blob(name, &d) {
        Ok(true) => {}
        Ok(false) => return err(Code::BlobUnknown, format!("blob {d} is not in {name}")),
        Err(e) => return internal(e),
    }
    if let Err(e) = st.repos.sync_root(name) {
        return internal(e);
    }
    empty(StatusCode::ACCEPTED, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for (v, size, want) in [
            ("bytes=0-9", 100, Some((0, 9))),
            ("bytes=90-", 100, Some((90, 99))),
            ("bytes=-10", 100, Some((90, 99))),
            ("bytes=50-500", 100, Some((50, 99))),
            ("bytes=100-", 100, None),
            ("bytes=5-2", 100, None),
            ("bytes=0-1,4-5", 100, None),
            ("items=0-1", 100, None),
        ] {
            assert_eq!(parse_range(v, size), want, "{v}");
        }
    }
}
