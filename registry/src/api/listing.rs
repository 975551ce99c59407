//! Content discovery (spec.md, "Content discovery"): `GET /v2/<name>/tags/list`,
//! `GET /v2/_catalog` and `GET /v2/<name>/referrers/<digest>`, with `n`/`last` pagination and
//! RFC 8288 `Link` headers.

use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::media_type;

use super::{digest_error, method_not_allowed, repo_name, Req};
use crate::error::{ApiError, ApiResult, Code};
use crate::store::TagPage;

/// Reads `n` and `last`; `n` is capped at the configured page size.
fn pagination(req: &Req) -> ApiResult<(Option<usize>, Option<String>)> {
    let max = req.state.config.limits.max_page;
    let n =
        match req.query("n") {
            None => None,
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                ApiError::new(Code::PaginationNumberInvalid).detail(format!("invalid page size n={n:?}"))
            })?),
        };
    Ok((Some(n.unwrap_or(max).min(max)), req.query("last")))
}

fn json_page(path: &str, key: &str, name: Option<&str>, page: TagPage, n: Option<usize>) -> Response {
    let body = match name {
        Some(name) => json!({ "name": name, key: page.tags }),
        None => json!({ key: page.tags }),
    };
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if page.more {
        if let (Some(n), Some(last)) = (n, page.tags.last()) {
            let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
            if let Ok(v) = link.parse() {
                resp.headers_mut().insert(header::LINK, v);
            }
        }
    }
    resp
}

/// `GET /v2/<name>/tags/list`.
pub(crate) async fn tags(req: Req, name: &str) -> ApiResult<Response> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return method_not_allowed();
    }
    let repo = repo_name(name)?;
    let (n, last) = pagination(&req)?;
    let page = req.state.store.tags(&repo, n, last.as_deref()).await?;
    Ok(json_page(&format!("/v2/{repo}/tags/list"), "tags", Some(repo.as_str()), page, n))
}

/// `GET /v2/_catalog`.
pub(crate) async fn catalog(req: Req) -> ApiResult<Response> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return method_not_allowed();
    }
    let (n, last) = pagination(&req)?;
    let filter = req.extensions.get::<crate::auth::CatalogFilter>();
    let allow = |repo: &str| filter.is_none_or(|f| f.allows(repo));
    let page = req.state.store.repository_page(n, last.as_deref(), allow).await?;
    Ok(json_page("/v2/_catalog", "repositories", None, page, n))
}

/// `GET /v2/<name>/referrers/<digest>`.
pub(crate) async fn referrers(req: Req, name: &str, digest: &str) -> ApiResult<Response> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return method_not_allowed();
    }
    let repo = repo_name(name)?;
    let subject = digest.parse().map_err(digest_error)?;
    let filter = req.query("artifactType").filter(|t| !t.is_empty());
    let found = req.state.store.referrers(&repo, &subject, filter.as_deref()).await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": found,
    });
    let mut resp = ([(header::CONTENT_TYPE, media_type::OCI_INDEX)], body.to_string()).into_response();
    if filter.is_some() {
        resp.headers_mut().insert("oci-filters-applied", header::HeaderValue::from_static("artifactType"));
    }
    Ok(resp)
}
