//! `GET`, `HEAD` and `DELETE /v2/<name>/blobs/<digest>` (spec.md, "Pulling blobs",
//! "Deleting blobs"), with single byte ranges and conditional requests.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{digest_error, method_not_allowed, repo_name, Req};
use crate::error::{ApiError, ApiResult, Code};
use crate::events::Event;
use crate::route::Upstream;
use crate::store::StoreError;

/// A satisfiable byte range of an object of a known size, `start..end` (end exclusive).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// The whole object.
    Full,
    /// One range.
    Part(u64, u64),
    /// A range outside the object.
    Unsatisfiable,
}

/// Reads a `Range: bytes=…` header against an object of `size` bytes. Several ranges, or
/// another unit, are answered with the whole object, as RFC 9110 allows.
pub(crate) fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Full };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last b bytes.
        match b.parse::<u64>() {
            Ok(0) | Err(_) => return RangeRequest::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size),
        }
    } else {
        let Ok(start) = a.parse::<u64>() else { return RangeRequest::Full };
        let end = if b.is_empty() {
            size
        } else {
            match b.parse::<u64>() {
                Ok(last) if last >= start => last.saturating_add(1).min(size),
                _ => return RangeRequest::Full,
            }
        };
        (start, end)
    };
    if range.0 >= size || range.0 >= range.1 {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Part(range.0, range.1)
    }
}

pub(crate) async fn handle(req: Req, name: &str, digest: &str) -> ApiResult<Response> {
    let repo = repo_name(name)?;
    let digest = digest.parse().map_err(digest_error)?;
    let store = &req.state.store;
    match req.method {
        Method::GET | Method::HEAD => {
            let size = match (store.blob_size(&repo, &digest).await, req.extensions.get::<Upstream>()) {
                (Err(StoreError::BlobUnknown(_)), Some(up)) => {
                    match crate::mirror::blob(&req.state, &req.method, up, &digest).await? {
                        Some(resp) => return Ok(resp),
                        // Stored now.
                        None => store.blob_size(&repo, &digest).await?,
                    }
                }
                (Ok(size), Some(up)) => {
                    req.state.mirrors.hit(up);
                    size
                }
                (result, _) => result?,
            };
            let etag = format!("\"{digest}\"");
            if req.header(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
                let mut resp = StatusCode::NOT_MODIFIED.into_response();
                resp.headers_mut()
                    .insert(header::ETAG, HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(&e))?);
                return Ok(resp);
            }
            let (status, range) = match parse_range(req.header(header::RANGE), size) {
                RangeRequest::Full => (StatusCode::OK, None),
                RangeRequest::Part(a, b) => (StatusCode::PARTIAL_CONTENT, Some(a..b)),
                RangeRequest::Unsatisfiable => {
                    return Err(ApiError::new(Code::RangeInvalid)
                        .detail(format!("the blob has {size} bytes"))
                        .header("content-range", &format!("bytes */{size}")))
                }
            };
            if req.method == Method::GET {
                // Drivers configured for it hand the bytes off to their own server (a
                // presigned S3 URL); HEAD and manifests stay here.
                if let Some(url) = store.blob_redirect(&digest).await? {
                    return Response::builder()
                        .status(StatusCode::TEMPORARY_REDIRECT)
                        .header(header::LOCATION, url)
                        .header("docker-content-digest", digest.to_string())
                        .header(header::CONTENT_LENGTH, 0)
                        .body(Body::empty())
                        .map_err(|e| ApiError::internal(&e));
                }
            }
            let length = range.as_ref().map_or(size, |r| r.end - r.start);
            let body = if req.method == Method::HEAD {
                Body::empty()
            } else {
                Body::from_stream(store.blob_stream(&digest, range.clone()).await?)
            };
            let mut resp = Response::builder()
                .status(status)
                .header(header::CONTENT_LENGTH, length)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::ETAG, &etag)
                .header(header::CACHE_CONTROL, "max-age=31536000")
                .header("docker-content-digest", digest.to_string());
            if let Some(r) = range {
                resp = resp.header(header::CONTENT_RANGE, format!("bytes {}-{}/{size}", r.start, r.end - 1));
            }
            resp.body(body).map_err(|e| ApiError::internal(&e))
        }
        Method::DELETE => {
            store.delete_blob(&repo, &digest).await?;
            let resp = (StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response();
            Ok(Event::BlobDeleted { repo: repo.to_string(), digest: digest.to_string() }.attach(resp))
        }
        _ => method_not_allowed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Part(0, 5));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part(5, 10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part(0, 10));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Part(8, 10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
    }
}
