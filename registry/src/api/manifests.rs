//! `GET`, `HEAD`, `PUT` and `DELETE /v2/<name>/manifests/<reference>` (spec.md, "Pulling
//! manifests", "Pushing manifests", "Deleting tags", "Deleting manifests"), and the draft's
//! `PUT /v2/<name>/manifests/<digest>?tag=A&tag=B` (distribution-spec main), which tags a
//! manifest pushed by digest in the same request.
//!
//! Manifests are served exactly as pushed. `Accept` negotiation: when a client that accepts
//! only single-image manifest types asks for an index or manifest list, it gets the entry for
//! linux/amd64 (or the first entry) instead, as distribution does for old Docker clients.
//!
//! A `PUT` or `DELETE` passes the repository's policies first ([`crate::policy`]: immutable
//! tags, quotas).

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::manifest::Manifest;
use shared::{media_type, NameError, Reference, RepoName, Tag};

use super::{digest_error, method_not_allowed, repo_name, Req};
use crate::error::{ApiError, ApiResult, Code};
use crate::events::Event;
use crate::policy;
use crate::store::{StoreError, StoredManifest};

/// Parses the reference of a `PUT` or `DELETE`: one that is neither a valid tag nor a
/// digest is the client's mistake, 400 (end-7, end-9 of the spec's endpoint table).
fn parse_reference(s: &str) -> ApiResult<Reference> {
    s.parse().map_err(|e| match e {
        NameError::Digest(d) => digest_error(d),
        other => ApiError::new(Code::TagInvalid).detail(other),
    })
}

/// Parses the reference of a `GET` or `HEAD`, whose only failure status is 404 (end-3): a
/// reference that is neither a valid tag nor a digest names no manifest.
fn lookup_reference(s: &str) -> ApiResult<Reference> {
    s.parse().map_err(|e: NameError| ApiError::new(Code::ManifestUnknown).detail(e))
}

/// True when the `Accept` header lists types and accepts none of the index types.
fn refuses_indexes(headers: &HeaderMap) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for t in value.split(',') {
            let t = t.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            any = true;
            if media_type::is_index(t) || t == "*/*" || t == "application/*" || t == "application/json" {
                return false;
            }
        }
    }
    any
}

/// For a client that takes no indexes, the platform entry it most likely wants.
async fn negotiate(req: &Req, repo: &RepoName, m: Arc<StoredManifest>) -> ApiResult<Arc<StoredManifest>> {
    if !media_type::is_index(&m.media_type) || !refuses_indexes(&req.headers) {
        return Ok(m);
    }
    let Ok(index) = Manifest::parse(&m.body, Some(&m.media_type)) else { return Ok(m) };
    let pick = index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
        .or(index.manifests.first());
    match pick {
        Some(d) => match req.state.store.get_manifest(repo, &Reference::Digest(d.digest.clone())).await {
            Ok(child) => Ok(child),
            Err(StoreError::ManifestUnknown) => Ok(m),
            Err(e) => Err(e.into()),
        },
        None => Ok(m),
    }
}

/// Tags one push may add with `tag` query parameters; the draft asks for at least 10.
pub(crate) const MAX_QUERY_TAGS: usize = 100;

/// The `tag` query parameters of a push (distribution-spec main, "Pushing manifests": a push
/// by digest may name tags to point at it): each must be a valid tag, 400 `TAG_INVALID`
/// otherwise, and more than [`MAX_QUERY_TAGS`] answer 414, as the draft allows.
fn query_tags(req: &Req) -> ApiResult<Vec<Tag>> {
    let values = req.query_all("tag");
    if values.len() > MAX_QUERY_TAGS {
        return Err(ApiError::new(Code::TagInvalid)
            .status(StatusCode::URI_TOO_LONG)
            .detail(format!("at most {MAX_QUERY_TAGS} tag parameters per push")));
    }
    values.iter().map(|t| t.parse::<Tag>().map_err(|e| ApiError::new(Code::TagInvalid).detail(e))).collect()
}

pub(crate) async fn handle(req: Req, body: axum::body::Body, name: &str, reference: &str) -> ApiResult<Response> {
    let repo = repo_name(name)?;
    match req.method {
        Method::GET | Method::HEAD => get(req, &repo, &lookup_reference(reference)?).await,
        Method::PUT => put(req, body, &repo, &parse_reference(reference)?).await,
        Method::DELETE => {
            let reference = parse_reference(reference)?;
            policy::check_delete(&req.state.store, &req.state.policies, &repo, &reference).await?;
            req.state.store.delete_manifest(&repo, &reference).await?;
            req.state.hub.note_repository(repo.as_str());
            let resp = (StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response();
            Ok(Event::ManifestDeleted { repo: repo.to_string(), reference: reference.to_string() }.attach(resp))
        }
        _ => method_not_allowed(),
    }
}

/// `GET` and `HEAD` (end-3).
async fn get(req: Req, repo: &RepoName, reference: &Reference) -> ApiResult<Response> {
    let m = match req.extensions.get::<crate::route::Upstream>() {
        Some(up) => crate::mirror::manifest(&req.state, up, reference).await?,
        None => req.state.store.get_manifest(repo, reference).await?,
    };
    let m = negotiate(&req, repo, m).await?;
    let etag = format!("\"{}\"", m.digest);
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &m.media_type)
        .header(header::CONTENT_LENGTH, m.body.len())
        .header(header::ETAG, etag)
        .header("docker-content-digest", m.digest.to_string());
    if req.method == Method::HEAD {
        return builder.body(axum::body::Body::empty()).map_err(|e| ApiError::internal(&e));
    }
    let resp = builder.body(m.body.clone().into()).map_err(|e| ApiError::internal(&e))?;
    let event = Event::ManifestPulled {
        repo: repo.to_string(),
        reference: reference.to_string(),
        digest: m.digest.to_string(),
        media_type: m.media_type.clone(),
        size: m.body.len() as u64,
    };
    Ok(event.attach(resp))
}

/// `PUT` (end-7), with the draft's `tag` query parameters: each tag stored is named in an
/// `OCI-Tag` header of the answer.
async fn put(req: Req, body: axum::body::Body, repo: &RepoName, reference: &Reference) -> ApiResult<Response> {
    let tags = query_tags(&req)?;
    let limit = req.state.config.limits.max_manifest_bytes;
    let declared = req.header(header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit as u64) {
        crate::body::drain_refused(body.into_data_stream(), limit).await;
        return Err(ApiError::new(Code::SizeInvalid)
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .detail(format!("manifest larger than the limit of {limit} bytes")));
    }
    let content_type = req.header(header::CONTENT_TYPE).map(str::to_string);
    let body = crate::body::read_limited(body, limit).await?;
    let (store, policies) = (&req.state.store, &req.state.policies);
    policy::check_push(store, policies, repo, reference, &tags, content_type.as_deref(), &body).await?;
    let pushed = req.state.store.put_manifest(repo, reference, &tags, content_type.as_deref(), body).await?;
    let mut resp = (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/v2/{repo}/manifests/{}", pushed.digest)),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
    )
        .into_response();
    let h = resp.headers_mut();
    let value = |s: String| HeaderValue::from_str(&s).map_err(|e| ApiError::internal(&e));
    h.insert("docker-content-digest", value(pushed.digest.to_string())?);
    if let Some(subject) = pushed.subject {
        h.insert("oci-subject", value(subject.to_string())?);
    }
    for tag in &tags {
        h.append("oci-tag", value(tag.to_string())?);
    }
    req.state.hub.note_repository(repo.as_str());
    let event = Event::ManifestPushed {
        repo: repo.to_string(),
        reference: reference.to_string(),
        digest: pushed.digest.to_string(),
        tags: tags.iter().map(Tag::to_string).collect(),
        media_type: pushed.media_type,
        size: pushed.size,
    };
    Ok(event.attach(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_refusal() {
        let mut h = HeaderMap::new();
        assert!(!refuses_indexes(&h));
        h.insert(header::ACCEPT, media_type::DOCKER_MANIFEST.parse().unwrap());
        assert!(refuses_indexes(&h));
        h.append(header::ACCEPT, media_type::OCI_INDEX.parse().unwrap());
        assert!(!refuses_indexes(&h));
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert!(!refuses_indexes(&h));
    }
}
