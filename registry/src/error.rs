//! API errors: every error code of the distribution spec (spec.md, "Error Codes"), registered
//! once with its message and HTTP status, and turned into the spec's JSON error body.
//!
//! Handlers return [`ApiError`]; storage failures become `UNKNOWN`/500 with a generic body
//! while the cause is logged, so a client's mistake is never a 500 and an internal fault
//! never leaks paths or details.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::storage::StorageError;

/// The error codes of the distribution spec, plus those distribution adds
/// (`RANGE_INVALID`, `PAGINATION_NUMBER_INVALID`, `UNKNOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A blob is unknown to the repository.
    BlobUnknown,
    /// The upload cannot proceed.
    BlobUploadInvalid,
    /// The upload session is unknown.
    BlobUploadUnknown,
    /// A digest is malformed or does not match the content.
    DigestInvalid,
    /// A manifest refers to a blob or manifest the repository does not hold.
    ManifestBlobUnknown,
    /// A manifest failed validation.
    ManifestInvalid,
    /// The manifest is unknown to the repository.
    ManifestUnknown,
    /// The repository name is invalid.
    NameInvalid,
    /// The tag is invalid.
    TagInvalid,
    /// A page size is not a number.
    PaginationNumberInvalid,
    /// The repository is unknown.
    NameUnknown,
    /// A length does not match the content, or is over a limit.
    SizeInvalid,
    /// The request needs authentication.
    Unauthorized,
    /// Access is denied.
    Denied,
    /// The operation or its parameters are not supported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// A chunk's range does not continue the upload.
    RangeInvalid,
    /// An internal fault; the cause is logged, never sent.
    Unknown,
}

impl Code {
    /// The code string, message and HTTP status of each code, in one place.
    pub fn info(self) -> (&'static str, &'static str, StatusCode) {
        use Code::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", "blob unknown to registry", StatusCode::NOT_FOUND),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", "blob upload invalid", StatusCode::BAD_REQUEST),
            BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", StatusCode::NOT_FOUND),
            DigestInvalid => {
                ("DIGEST_INVALID", "provided digest did not match uploaded content", StatusCode::BAD_REQUEST)
            }
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a manifest or blob unknown to registry",
                StatusCode::BAD_REQUEST,
            ),
            ManifestInvalid => ("MANIFEST_INVALID", "manifest invalid", StatusCode::BAD_REQUEST),
            ManifestUnknown => ("MANIFEST_UNKNOWN", "manifest unknown to registry", StatusCode::NOT_FOUND),
            NameInvalid => ("NAME_INVALID", "invalid repository name", StatusCode::BAD_REQUEST),
            TagInvalid => ("TAG_INVALID", "invalid tag", StatusCode::BAD_REQUEST),
            PaginationNumberInvalid => {
                ("PAGINATION_NUMBER_INVALID", "invalid number of results requested", StatusCode::BAD_REQUEST)
            }
            NameUnknown => ("NAME_UNKNOWN", "repository name not known to registry", StatusCode::NOT_FOUND),
            SizeInvalid => ("SIZE_INVALID", "provided length did not match content length", StatusCode::BAD_REQUEST),
            Unauthorized => ("UNAUTHORIZED", "authentication required", StatusCode::UNAUTHORIZED),
            Denied => ("DENIED", "requested access to the resource is denied", StatusCode::FORBIDDEN),
            Unsupported => ("UNSUPPORTED", "the operation is unsupported", StatusCode::METHOD_NOT_ALLOWED),
            TooManyRequests => ("TOOMANYREQUESTS", "too many requests", StatusCode::TOO_MANY_REQUESTS),
            RangeInvalid => ("RANGE_INVALID", "invalid content range", StatusCode::RANGE_NOT_SATISFIABLE),
            Unknown => ("UNKNOWN", "internal server error", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// An error answered to an API client (boxed, so `Result`s stay small on the happy path).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    code: Code,
    status: StatusCode,
    detail: Option<serde_json::Value>,
    headers: HeaderMap,
    /// A message replacing the code's registered one, when the client must read why (docker
    /// and skopeo show `message`, never `detail`).
    message: Option<String>,
}

/// The result type of every handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with the code's status and no detail.
    pub fn new(code: Code) -> Self {
        ApiError(Box::new(Inner {
            code,
            status: code.info().2,
            detail: None,
            headers: HeaderMap::new(),
            message: None,
        }))
    }

    /// Adds a detail string for the client.
    pub fn detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.0.detail = Some(serde_json::Value::String(detail.to_string()));
        self
    }

    /// Adds a structured detail for the client.
    pub fn detail_json(mut self, detail: serde_json::Value) -> Self {
        self.0.detail = Some(detail);
        self
    }

    /// Replaces the code's registered message: for refusals whose reason the user must see
    /// (clients print `message`, not `detail`).
    pub fn message(mut self, message: impl std::fmt::Display) -> Self {
        self.0.message = Some(message.to_string());
        self
    }

    /// Overrides the HTTP status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.0.status = status;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, v);
        }
        self
    }

    /// The error code.
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The HTTP status that will be sent.
    pub fn http_status(&self) -> StatusCode {
        self.0.status
    }

    /// The message a client reads: the one given with [`ApiError::message`], else the code's.
    pub fn text(&self) -> &str {
        self.0.message.as_deref().unwrap_or(self.0.code.info().1)
    }

    /// An internal fault: logs the cause and returns a generic 500.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %shared::error_chain(cause), "internal error");
        ApiError::new(Code::Unknown)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let inner = *self.0;
        let (code, registered, _) = inner.code.info();
        let message = inner.message.as_deref().unwrap_or(registered);
        let mut error = json!({ "code": code, "message": message });
        if let Some(detail) = inner.detail {
            error["detail"] = detail;
        }
        let body = json!({ "errors": [error] }).to_string();
        let mut resp = (inner.status, [(http::header::CONTENT_TYPE, "application/json")], body).into_response();
        resp.headers_mut().extend(inner.headers);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_is_the_spec_shape() {
        let resp = ApiError::new(Code::DigestInvalid).detail("sha256:00").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "DIGEST_INVALID");
        assert_eq!(v["errors"][0]["detail"], "sha256:00");
    }

    #[test]
    fn internal_errors_are_generic() {
        let e = ApiError::internal(&std::io::Error::other("disk /secret/path failed"));
        assert_eq!(e.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.0.detail.is_none());
    }
}
