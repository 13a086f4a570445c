//! The one place errors become the spec's JSON: `{"errors":[{"code","message","detail"}]}`
//! with the spec's code and status.

use super::Body;
use crate::store;
use http::{HeaderValue, Response, StatusCode};

/// An error as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    /// Extra headers (e.g. `Range` on a 416).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn blob_unknown(d: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        )
        .detail(serde_json::json!({ "digest": d.to_string() }))
    }

    pub fn upload_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        )
    }

    pub fn upload_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", message)
    }

    pub fn digest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }

    pub fn manifest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
    }

    pub fn manifest_unknown(reference: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown to registry",
        )
        .detail(serde_json::json!({ "reference": reference.to_string() }))
    }

    pub fn manifest_blob_unknown(d: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            "manifest references a blob unknown to the repository",
        )
        .detail(serde_json::json!({ "digest": d.to_string() }))
    }

    pub fn name_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message)
    }

    pub fn name_unknown(name: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        )
        .detail(serde_json::json!({ "name": name.to_string() }))
    }

    pub fn size_invalid(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "SIZE_INVALID", message)
    }

    pub fn unsupported(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "UNSUPPORTED", message)
    }

    pub fn range_invalid(current_size: u64) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            "content range does not continue the upload",
        )
        .header("Range", super::upload_range(current_size))
    }

    pub fn pagination_invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
            message,
        )
    }

    /// A server-side failure: the cause is logged here, the client sees a generic message.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        let mut chain = cause.to_string();
        let mut src = cause.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(cause = %chain, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "internal server error",
        )
    }

    /// The response the client gets.
    pub fn into_response(self) -> Response<Body> {
        let mut entry = serde_json::json!({ "code": self.code, "message": self.message });
        if let (Some(d), Some(obj)) = (self.detail, entry.as_object_mut()) {
            obj.insert("detail".into(), d);
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut resp = Response::new(Body::Full(body.into()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(name, v);
            }
        }
        resp
    }
}

/// The one exhaustive mapping from store errors to what the client sees.
impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::UploadUnknown => ApiError::upload_unknown(),
            store::Error::UploadOffset { actual, .. } => ApiError::range_invalid(actual),
            store::Error::UploadBusy => ApiError::new(
                StatusCode::CONFLICT,
                "BLOB_UPLOAD_INVALID",
                "the upload is being written by another request",
            ),
            store::Error::DigestMismatch { expected, actual } => {
                ApiError::digest_invalid("provided digest did not match uploaded content")
                    .detail(serde_json::json!({ "expected": expected.to_string(), "actual": actual.to_string() }))
            }
            store::Error::Io { path, source }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                tracing::error!(path = %path.display(), error = %source, "storage full: a write was refused and rolled back");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "UNAVAILABLE",
                    "the registry's storage is full: nothing of this request was stored; push again once space is freed",
                )
            }
            e @ (store::Error::Io { .. } | store::Error::Corrupt { .. } | store::Error::Internal(_)) => {
                ApiError::internal(&e)
            }
        }
    }
}
