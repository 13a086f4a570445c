//! The one place errors become the spec's JSON: `{"errors":[{"code","message","detail"}]}`
//! with the spec's code and status.
//!
//! [`OciCode`] is the table: each code once, with the status it is answered with. A call
//! site overrides the status ([`ApiError::with_status`]) only where the spec or a client
//! needs another one (416 for a range, 413 for a size, 507 for a full disk).

use crate::body::Body;
use crate::store;
use http::{HeaderValue, Response, StatusCode};

/// The error codes berth answers with: the OCI Distribution Spec's, the ones distribution
/// adds that clients know (`UNAVAILABLE`, `TOOMANYREQUESTS`, `UNKNOWN`, `TAG_INVALID`),
/// and `NOT_FOUND` for a path that is no endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OciCode {
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
    PaginationNumberInvalid,
    TagInvalid,
    Unavailable,
    Unknown,
    NotFound,
}

impl OciCode {
    /// The code as it appears in the JSON.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            OciCode::BlobUnknown => "BLOB_UNKNOWN",
            OciCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            OciCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            OciCode::DigestInvalid => "DIGEST_INVALID",
            OciCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            OciCode::ManifestInvalid => "MANIFEST_INVALID",
            OciCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            OciCode::NameInvalid => "NAME_INVALID",
            OciCode::NameUnknown => "NAME_UNKNOWN",
            OciCode::SizeInvalid => "SIZE_INVALID",
            OciCode::Unauthorized => "UNAUTHORIZED",
            OciCode::Denied => "DENIED",
            OciCode::Unsupported => "UNSUPPORTED",
            OciCode::TooManyRequests => "TOOMANYREQUESTS",
            OciCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            OciCode::TagInvalid => "TAG_INVALID",
            OciCode::Unavailable => "UNAVAILABLE",
            OciCode::Unknown => "UNKNOWN",
            OciCode::NotFound => "NOT_FOUND",
        }
    }

    /// The status the code is answered with unless the call site says otherwise.
    pub(crate) const fn status(self) -> StatusCode {
        match self {
            OciCode::BlobUnknown
            | OciCode::BlobUploadUnknown
            | OciCode::ManifestUnknown
            | OciCode::NameUnknown
            | OciCode::NotFound => StatusCode::NOT_FOUND,
            OciCode::BlobUploadInvalid
            | OciCode::DigestInvalid
            | OciCode::ManifestBlobUnknown
            | OciCode::ManifestInvalid
            | OciCode::NameInvalid
            | OciCode::SizeInvalid
            | OciCode::PaginationNumberInvalid
            | OciCode::TagInvalid => StatusCode::BAD_REQUEST,
            OciCode::Unauthorized => StatusCode::UNAUTHORIZED,
            OciCode::Denied => StatusCode::FORBIDDEN,
            OciCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            OciCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            OciCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            OciCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for OciCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the client will see it.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: OciCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    /// Extra headers (e.g. `Range` on a 416).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with `code`'s status from the table.
    pub(crate) fn new(code: OciCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// The same error answered with another status than the table's.
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn blob_unknown(d: impl std::fmt::Display) -> Self {
        Self::new(OciCode::BlobUnknown, "blob unknown to registry")
            .detail(serde_json::json!({ "digest": d.to_string() }))
    }

    pub(crate) fn upload_unknown() -> Self {
        Self::new(
            OciCode::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }

    pub(crate) fn upload_invalid(message: impl Into<String>) -> Self {
        Self::new(OciCode::BlobUploadInvalid, message)
    }

    pub(crate) fn digest_invalid(message: impl Into<String>) -> Self {
        Self::new(OciCode::DigestInvalid, message)
    }

    pub(crate) fn manifest_invalid(message: impl Into<String>) -> Self {
        Self::new(OciCode::ManifestInvalid, message)
    }

    pub(crate) fn manifest_unknown(reference: impl std::fmt::Display) -> Self {
        Self::new(OciCode::ManifestUnknown, "manifest unknown to registry")
            .detail(serde_json::json!({ "reference": reference.to_string() }))
    }

    pub(crate) fn manifest_blob_unknown(d: impl std::fmt::Display) -> Self {
        Self::new(
            OciCode::ManifestBlobUnknown,
            "manifest references a blob unknown to the repository",
        )
        .detail(serde_json::json!({ "digest": d.to_string() }))
    }

    pub(crate) fn name_invalid(message: impl Into<String>) -> Self {
        Self::new(OciCode::NameInvalid, message)
    }

    pub(crate) fn name_unknown(name: impl std::fmt::Display) -> Self {
        Self::new(
            OciCode::NameUnknown,
            "repository name not known to registry",
        )
        .detail(serde_json::json!({ "name": name.to_string() }))
    }

    pub(crate) fn size_invalid(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(OciCode::SizeInvalid, message).with_status(status)
    }

    pub(crate) fn unsupported(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(OciCode::Unsupported, message).with_status(status)
    }

    pub(crate) fn range_invalid(current_size: u64) -> Self {
        Self::new(
            OciCode::BlobUploadInvalid,
            "content range does not continue the upload",
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .header("Range", super::upload_range(current_size))
    }

    pub(crate) fn pagination_invalid(message: impl Into<String>) -> Self {
        Self::new(OciCode::PaginationNumberInvalid, message)
    }

    /// A server-side failure: the cause is logged here, the client sees a generic message.
    pub(crate) fn internal(cause: &dyn std::error::Error) -> Self {
        let mut chain = cause.to_string();
        let mut src = cause.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(cause = %chain, "internal error");
        Self::new(OciCode::Unknown, "internal server error")
    }

    /// The response the client gets.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut entry = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
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
                OciCode::BlobUploadInvalid,
                "the upload is being written by another request",
            )
            .with_status(StatusCode::CONFLICT),
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
                    OciCode::Unavailable,
                    "the registry's storage is full: nothing of this request was stored; push again once space is freed",
                )
                .with_status(StatusCode::INSUFFICIENT_STORAGE)
            }
            store::Error::Unavailable(why) => {
                tracing::error!(error = %why, "storage unavailable");
                ApiError::new(
                    OciCode::Unavailable,
                    "the registry's storage cannot be reached: nothing of this request was stored; retry shortly",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
            }
            store::Error::Upstream(why) => {
                tracing::warn!(error = %why, "a mirrored repository's upstream cannot serve what is not cached");
                ApiError::new(OciCode::Unavailable, why)
                    .with_status(StatusCode::SERVICE_UNAVAILABLE)
            }
            e @ (store::Error::Io { .. } | store::Error::Corrupt { .. } | store::Error::Internal(_)) => {
                ApiError::internal(&e)
            }
        }
    }
}
