//! Blob uploads (spec.md, "Pushing blobs"): `POST /v2/<name>/blobs/uploads/` (start,
//! monolithic with `?digest=`, or cross-repository mount with `?mount=&from=`) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::{Algorithm, Digest, RepoName};

use super::{digest_error, method_not_allowed, repo_name, upload_range, Req};
use crate::error::{ApiError, ApiResult, Code};
use crate::events::Event;
use crate::store::{StoreError, UploadStatus};

/// `202 Accepted` for an upload in progress, with its location and received range.
fn in_progress(repo: &RepoName, status: &UploadStatus, code: StatusCode, chunk_min: u64) -> Response {
    let mut resp = (
        code,
        [
            (header::LOCATION, format!("/v2/{repo}/blobs/uploads/{}", status.id)),
            (header::RANGE, upload_range(status.offset)),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = status.id.parse() {
        h.insert("docker-upload-uuid", v);
    }
    if chunk_min > 0 {
        h.insert("oci-chunk-min-length", chunk_min.into());
    }
    resp
}

/// `201 Created` for a blob now readable in `repo` (mounted from `mounted_from`, else
/// uploaded), with its audit event.
fn created(repo: &RepoName, digest: &Digest, mounted_from: Option<String>) -> Response {
    let resp = (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/v2/{repo}/blobs/{digest}")),
            (header::CONTENT_LENGTH, "0".to_string()),
            (header::HeaderName::from_static("docker-content-digest"), digest.to_string()),
        ],
    )
        .into_response();
    Event::BlobPushed { repo: repo.to_string(), digest: digest.to_string(), mounted_from }.attach(resp)
}

/// `POST /v2/<name>/blobs/uploads/`.
pub(crate) async fn start(req: Req, body: Body, name: &str) -> ApiResult<Response> {
    if req.method != Method::POST {
        return method_not_allowed();
    }
    let repo = repo_name(name)?;
    let store = req.state.store.clone();
    let chunk_min = req.state.config.limits.chunk_min_length;

    if let Some(mount) = req.query("mount") {
        // A mount with bad arguments, or of a blob that is not there, falls back to a plain
        // upload (spec.md, "Mounting a blob from another repository"). Without `from`, any
        // repository holding the blob will do, as the spec allows.
        let from = match req.query("from") {
            None => Ok(None),
            Some(f) => f.parse::<RepoName>().map(Some),
        };
        if let (Ok(digest), Ok(from)) = (mount.parse::<Digest>(), from) {
            if store.mount_blob(&repo, &digest, from.as_ref()).await? {
                let source = from.map_or_else(|| "*".to_string(), |f| f.to_string());
                return Ok(created(&repo, &digest, Some(source)));
            }
        }
    }
    if let Some(digest) = req.query("digest") {
        let digest: Digest = digest.parse().map_err(digest_error)?;
        let status = store.start_upload(&repo, digest.algorithm()).await?;
        let len = Req::body_len(&body);
        let body = Req::body_stream(body);
        if let Err(e) = store.finish_upload(&repo, &status.id, &digest, None, len, body).await {
            let _ = store.cancel_upload(&repo, &status.id).await;
            return Err(e.into());
        }
        return Ok(created(&repo, &digest, None));
    }
    let status = store.start_upload(&repo, Algorithm::Sha256).await?;
    Ok(in_progress(&repo, &status, StatusCode::ACCEPTED, chunk_min))
}

/// Reads `Content-Range: <start>-<end>` (also accepting a `bytes ` prefix and `/<total>`
/// suffix); `None` when absent, an error when malformed or inconsistent with
/// `Content-Length`.
fn content_range(req: &Req) -> Result<Option<u64>, ()> {
    let Some(value) = req.header(header::CONTENT_RANGE) else { return Ok(None) };
    parse_content_range(value, req.header(header::CONTENT_LENGTH)).map(Some).ok_or(())
}

/// The start of a `Content-Range` value, or `None` when it is malformed or its length is not
/// `content_length` (when that is given and a number).
pub(crate) fn parse_content_range(value: &str, content_length: Option<&str>) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("bytes").map(str::trim_start).unwrap_or(v);
    let v = v.split('/').next().unwrap_or("").trim();
    let (a, b) = v.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    if end < start {
        return None;
    }
    if let Some(len) = content_length.and_then(|l| l.parse::<u64>().ok()) {
        // Not `end - start + 1`: that overflows for `0-18446744073709551615`.
        if len.checked_sub(1) != Some(end - start) {
            return None;
        }
    }
    Some(start)
}

/// A 416 telling the client where the upload stands.
fn range_refused(repo: &RepoName, id: &str, offset: u64, why: &str) -> ApiError {
    ApiError::new(Code::RangeInvalid)
        .detail(why)
        .header("location", &format!("/v2/{repo}/blobs/uploads/{id}"))
        .header("range", &upload_range(offset))
        .header("docker-upload-uuid", id)
}

/// Where the client says its chunk starts (`None` without a `Content-Range`); a malformed
/// header is refused with a 416 telling where the upload stands.
async fn chunk_start(req: &Req, repo: &RepoName, id: &str) -> ApiResult<Option<u64>> {
    match content_range(req) {
        Ok(start) => Ok(start),
        Err(()) => {
            let status = req.state.store.upload_status(repo, id).await?;
            Err(range_refused(repo, id, status.offset, "malformed Content-Range"))
        }
    }
}

/// An upload failure as the client sees it: a chunk that does not continue the upload gets
/// the 416 with its `Range`.
fn refused(repo: &RepoName, id: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::RangeMismatch { current, .. } => {
            range_refused(repo, id, current, "chunk does not continue the upload")
        }
        other => other.into(),
    }
}

/// `GET`, `PATCH`, `PUT`, `DELETE /v2/<name>/blobs/uploads/<id>`.
pub(crate) async fn handle(req: Req, body: Body, name: &str, id: &str) -> ApiResult<Response> {
    let repo = repo_name(name)?;
    let store = req.state.store.clone();
    let chunk_min = req.state.config.limits.chunk_min_length;
    match req.method {
        Method::GET => {
            let status = store.upload_status(&repo, id).await?;
            Ok(in_progress(&repo, &status, StatusCode::NO_CONTENT, chunk_min))
        }
        Method::PATCH => {
            let start = chunk_start(&req, &repo, id).await?;
            let len = Req::body_len(&body);
            let body = Req::body_stream(body);
            match store.append(&repo, id, start, len, body).await {
                Ok(status) => Ok(in_progress(&repo, &status, StatusCode::ACCEPTED, chunk_min)),
                Err(e) => Err(refused(&repo, id, e)),
            }
        }
        Method::PUT => {
            let digest: Digest = req
                .query("digest")
                .ok_or_else(|| ApiError::new(Code::DigestInvalid).detail("the digest query parameter is required"))?
                .parse()
                .map_err(digest_error)?;
            let start = chunk_start(&req, &repo, id).await?;
            let len = Req::body_len(&body);
            let body = Req::body_stream(body);
            match store.finish_upload(&repo, id, &digest, start, len, body).await {
                Ok(()) => Ok(created(&repo, &digest, None)),
                Err(e) => Err(refused(&repo, id, e)),
            }
        }
        Method::DELETE => {
            store.cancel_upload(&repo, id).await?;
            Ok((StatusCode::NO_CONTENT, Body::empty()).into_response())
        }
        _ => method_not_allowed(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9", Some("10")), Some(0));
        assert_eq!(parse_content_range("bytes 10-19/100", Some("10")), Some(10));
        assert_eq!(parse_content_range("10-19", None), Some(10));
        assert_eq!(parse_content_range("10-19", Some("9")), None);
        assert_eq!(parse_content_range("10-19", Some("0")), None);
        assert_eq!(parse_content_range("19-10", None), None);
        assert_eq!(parse_content_range("x-1", None), None);
        assert_eq!(parse_content_range("", None), None);
    }

    /// The length check computed `end - start + 1`, which overflowed here (a panic in debug
    /// builds, a wrong answer in release ones).
    #[test]
    fn whole_u64_ranges_do_not_overflow() {
        assert_eq!(parse_content_range("0-18446744073709551615", Some("0")), None);
        assert_eq!(parse_content_range("0-18446744073709551615", Some("18446744073709551615")), None);
        assert_eq!(parse_content_range("1-18446744073709551615", Some("18446744073709551615")), Some(1));
    }
}
