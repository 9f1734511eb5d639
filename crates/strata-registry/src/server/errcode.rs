//! Responses: the distribution-spec error codes (as distribution's
//! `registry/api/errcode`) and small builders for empty and JSON replies.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_oci::Store;

/// A distribution-spec error code.
#[derive(Debug, Clone, Copy)]
pub(super) enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Anything else (the server's own failure).
    Unknown,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unknown => "UNKNOWN",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

pub(super) fn err(code: Code, message: impl Into<String>) -> Response {
    err_status(code.status(), code, message)
}

pub(super) fn err_status(status: StatusCode, code: Code, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{"code": code.as_str(), "message": message.into(), "detail": null}]
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if code == Code::TooManyRequests {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

impl PartialEq for Code {
    fn eq(&self, o: &Code) -> bool {
        self.as_str() == o.as_str()
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("internal error: {e}");
    err(Code::Unknown, e.to_string())
}

/// Whether an error (or one of its causes) is a full disk or quota.
pub(super) fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
                || io.kind() == std::io::ErrorKind::StorageFull
            {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// A failure to write the store: a full disk is 507 naming the store (the
/// client can retry once space is freed), anything else 500.
pub(super) fn storage(store: &Store, e: impl std::error::Error + 'static) -> Response {
    if is_no_space(&e) {
        let msg = format!(
            "no space left on the registry's store {}: {e}",
            store.root().display()
        );
        tracing::error!("{msg}");
        return err_status(StatusCode::INSUFFICIENT_STORAGE, Code::Unknown, msg);
    }
    internal(e)
}

pub(super) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(super) fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(name) = header::HeaderName::from_bytes(k.as_bytes()) {
            r.headers_mut().insert(name, hv(v));
        }
    }
    if !r.headers().contains_key(header::CONTENT_LENGTH) {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

pub(super) fn json_response(
    value: serde_json::Value,
    link: Option<String>,
    content_type: &str,
) -> Response {
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    let mut r = empty(
        StatusCode::OK,
        &[("content-length", bytes.len().to_string())],
    );
    *r.body_mut() = Body::from(bytes);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, hv(content_type));
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, hv(&l));
    }
    r
}
