//! The HTTP API: the OCI distribution spec's endpoints under `/v2/`, plus `/healthz` and
//! `/metrics`.
//!
//! Repository names may hold slashes, so everything under `/v2/` is one wildcard route whose
//! path is parsed once, from the right, by [`Route::parse`]; the handlers live in
//! [`blobs`], [`uploads`], [`manifests`] and [`listing`]. A middleware records one tracing
//! event and one metrics observation per request and counts body bytes both ways.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use shared::{DigestError, NameError, RepoName};

use crate::config::Config;
use crate::error::{ApiError, ApiResult, Code};
use crate::metrics::Metrics;
use crate::storage::{ByteStream, StorageError};
use crate::store::{Store, StoreError};

pub(crate) mod blobs;
mod listing;
mod manifests;
pub(crate) mod uploads;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The content store.
    pub store: Arc<Store>,
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Access control, when `[auth]` is configured.
    pub auth: Option<Arc<crate::auth::Auth>>,
}

/// Builds the router for a registry over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*path}", any(dispatch))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        .route("/token", any(crate::auth::token::endpoint))
        .fallback(|| async {
            ApiError::new(Code::Unsupported).status(StatusCode::NOT_FOUND).detail("unknown endpoint")
        })
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::guard))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The route a request was for, attached to responses for the metrics.
#[derive(Debug, Clone, Copy)]
struct RouteLabel(&'static str);

async fn render_metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    let storage = state.store.storage().request_counts();
    if !storage.is_empty() {
        text.push_str("# HELP berth_storage_requests_total Requests sent to the storage back end, by operation.\n");
        text.push_str("# TYPE berth_storage_requests_total counter\n");
        for (op, n) in storage {
            text.push_str(&format!("berth_storage_requests_total{{operation=\"{op}\"}} {n}\n"));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v2/`: the API version check (spec.md, "Determining support").
async fn base(method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::new(Code::Unsupported).into_response();
    }
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response();
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    resp.extensions_mut().insert(RouteLabel("base"));
    resp
}

/// A parsed `/v2/` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(&'a str),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(&'a str, &'a str),
    /// `/v2/<name>/blobs/<digest>`
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(&'a str),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(&'a str, &'a str),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(&'a str, &'a str),
}

impl<'a> Route<'a> {
    /// Parses the part of the path after `/v2/`, matching the endpoint from the right so a
    /// repository name may itself contain `blobs` or `manifests` components.
    pub(crate) fn parse(path: &'a str) -> Option<Route<'a>> {
        if path == "_catalog" {
            return Some(Route::Catalog);
        }
        let (rest, last) = path.rsplit_once('/')?;
        if last == "list" {
            if let Some(name) = rest.strip_suffix("/tags") {
                return Some(Route::Tags(name));
            }
        }
        if let Some(name) = rest.strip_suffix("/blobs/uploads") {
            return Some(if last.is_empty() { Route::UploadStart(name) } else { Route::Upload(name, last) });
        }
        let (name, kind) = rest.rsplit_once('/')?;
        match kind {
            "manifests" => Some(Route::Manifest(name, last)),
            "referrers" => Some(Route::Referrers(name, last)),
            "blobs" if last == "uploads" => Some(Route::UploadStart(name)),
            "blobs" => Some(Route::Blob(name, last)),
            _ => None,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(_) | Route::Upload(..) => "upload",
            Route::Referrers(..) => "referrers",
        }
    }
}

/// One request to a `/v2/<name>/...` endpoint, as the handlers see it (the body is passed
/// apart, as it is not `Sync`).
pub(crate) struct Req {
    pub state: AppState,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// What the middleware attached: the caller, the catalog filter (see [`crate::auth`]).
    pub extensions: axum::http::Extensions,
}

impl Req {
    /// A query parameter's first value, decoded ([`shared::query::value`]).
    pub fn query(&self, key: &str) -> Option<String> {
        shared::query::value(self.uri.query()?, key)
    }

    /// A header as a string.
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a stream for the store.
    pub fn body_stream(body: Body) -> ByteStream {
        body.into_data_stream().map(|r| r.map_err(|e| StorageError::Body(e.to_string()))).boxed()
    }

    /// The body's length when the client announced it (`Content-Length`; `None` for a
    /// chunked body). The server reads exactly that many bytes or fails the body.
    pub fn body_len(body: &Body) -> Option<u64> {
        http_body::Body::size_hint(body).exact()
    }

    /// Reads the whole body, refusing more than `limit` bytes with 413.
    pub async fn body_bytes(body: Body, limit: usize) -> ApiResult<Bytes> {
        let too_big = || {
            ApiError::new(Code::SizeInvalid)
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .detail(format!("body larger than the limit of {limit} bytes"))
        };
        let mut body = body.into_data_stream();
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::new(Code::BlobUploadInvalid).detail(format!("reading the body failed: {e}")))?;
            if out.len() + chunk.len() > limit {
                drain(body, limit).await;
                return Err(too_big());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }
}

/// Reads and drops what is left of a refused body, up to a bound, so the client gets to read
/// the error instead of a reset connection; a body larger than that is cut off.
pub(crate) async fn drain(mut body: axum::body::BodyDataStream, refused_limit: usize) {
    let mut left = refused_limit.saturating_mul(4).max(16 << 20);
    while let Some(Ok(chunk)) = body.next().await {
        match left.checked_sub(chunk.len()) {
            Some(l) => left = l,
            None => break,
        }
    }
}

/// Parses a repository name from the path, or answers `NAME_INVALID`.
pub(crate) fn repo_name(s: &str) -> ApiResult<RepoName> {
    s.parse().map_err(|e: NameError| ApiError::new(Code::NameInvalid).detail(e))
}

/// Maps a digest parse failure to its API error.
pub(crate) fn digest_error(e: DigestError) -> ApiError {
    match e {
        DigestError::Invalid(_) => ApiError::new(Code::DigestInvalid).detail(e),
        DigestError::Unsupported(_) => ApiError::new(Code::Unsupported).status(StatusCode::BAD_REQUEST).detail(e),
    }
}

/// The one place store failures become API errors.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BlobUnknown(d) => {
                ApiError::new(Code::BlobUnknown).detail_json(serde_json::json!({ "digest": d }))
            }
            StoreError::UploadUnknown(_) => ApiError::new(Code::BlobUploadUnknown),
            StoreError::RangeMismatch { .. } => ApiError::new(Code::RangeInvalid).detail(e),
            StoreError::DigestMismatch { .. } => ApiError::new(Code::DigestInvalid).detail(e),
            StoreError::BodyFailed(_) => ApiError::new(Code::BlobUploadInvalid).detail(e),
            StoreError::ManifestInvalid(msg) => ApiError::new(Code::ManifestInvalid).detail(msg),
            StoreError::ManifestBlobUnknown(d) => {
                ApiError::new(Code::ManifestBlobUnknown).detail_json(serde_json::json!({ "digest": d }))
            }
            StoreError::ManifestUnknown => ApiError::new(Code::ManifestUnknown),
            StoreError::NameUnknown(name) => {
                ApiError::new(Code::NameUnknown).detail_json(serde_json::json!({ "name": name.as_str() }))
            }
            StoreError::Storage(s) => ApiError::internal(&s),
        }
    }
}

/// Everything under `/v2/`.
async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().strip_prefix("/v2/").unwrap_or("");
    let Some(route) = Route::parse(path) else {
        return ApiError::new(Code::NameUnknown).detail("unknown endpoint").into_response();
    };
    let label = route.label();
    let route = route_owned(&route);
    let req = Req {
        state,
        method: parts.method,
        uri: parts.uri.clone(),
        headers: parts.headers,
        extensions: parts.extensions,
    };
    let result = match route {
        OwnedRoute::Catalog => listing::catalog(req).await,
        OwnedRoute::Tags(name) => listing::tags(req, &name).await,
        OwnedRoute::Referrers(name, d) => listing::referrers(req, &name, &d).await,
        OwnedRoute::Manifest(name, r) => manifests::handle(req, body, &name, &r).await,
        OwnedRoute::Blob(name, d) => blobs::handle(req, &name, &d).await,
        OwnedRoute::UploadStart(name) => uploads::start(req, body, &name).await,
        OwnedRoute::Upload(name, id) => uploads::handle(req, body, &name, &id).await,
    };
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

enum OwnedRoute {
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, String),
}

fn route_owned(r: &Route<'_>) -> OwnedRoute {
    match *r {
        Route::Catalog => OwnedRoute::Catalog,
        Route::Tags(n) => OwnedRoute::Tags(n.into()),
        Route::Manifest(n, x) => OwnedRoute::Manifest(n.into(), x.into()),
        Route::Blob(n, x) => OwnedRoute::Blob(n.into(), x.into()),
        Route::UploadStart(n) => OwnedRoute::UploadStart(n.into()),
        Route::Upload(n, x) => OwnedRoute::Upload(n.into(), x.into()),
        Route::Referrers(n, x) => OwnedRoute::Referrers(n.into(), x.into()),
    }
}

/// Answers `UNSUPPORTED` for a method an endpoint does not take.
pub(crate) fn method_not_allowed() -> ApiResult<Response> {
    Err(ApiError::new(Code::Unsupported).detail("method not allowed on this endpoint"))
}

/// Counts bytes of a body as they pass.
struct Counted<F: Fn(u64)> {
    inner: Body,
    count: F,
}

impl<F: Fn(u64) + Unpin + Send + 'static> http_body::Body for Counted<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll {
            if let Some(data) = frame.data_ref() {
                (self.count)(data.len() as u64);
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One tracing event and one metrics observation per request; body bytes counted both ways.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let metrics = state.metrics.clone();
    let req = req.map(|body| {
        let m = metrics.clone();
        Body::new(Counted { inner: body, count: move |n| m.add_bytes_in(n) })
    });
    let resp = next.run(req).await;
    let route = resp.extensions().get::<RouteLabel>().map_or("other", |r| r.0);
    let status = resp.status();
    let elapsed = start.elapsed();
    state.metrics.observe(method.as_str(), route, status.as_u16(), elapsed);
    if status.is_server_error() {
        tracing::warn!(%method, path, route, status = status.as_u16(), ?elapsed, "request failed");
    } else {
        tracing::debug!(%method, path, route, status = status.as_u16(), ?elapsed, "request");
    }
    let m = metrics;
    resp.map(|body| Body::new(Counted { inner: body, count: move |n| m.add_bytes_out(n) }))
}

/// The `Range` header value for an upload holding `offset` bytes (inclusive end, and
/// `0-0` for an empty upload as Docker clients expect).
pub(crate) fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_the_right() {
        assert_eq!(Route::parse("_catalog"), Some(Route::Catalog));
        assert_eq!(Route::parse("a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(Route::parse("a/manifests/latest"), Some(Route::Manifest("a", "latest")));
        assert_eq!(Route::parse("a/blobs/manifests/x"), Some(Route::Manifest("a/blobs", "x")));
        assert_eq!(Route::parse("a/blobs/sha256:00"), Some(Route::Blob("a", "sha256:00")));
        assert_eq!(Route::parse("a/blobs/uploads/"), Some(Route::UploadStart("a")));
        assert_eq!(Route::parse("a/blobs/uploads"), Some(Route::UploadStart("a")));
        assert_eq!(Route::parse("a/b/blobs/uploads/123"), Some(Route::Upload("a/b", "123")));
        assert_eq!(Route::parse("a/referrers/sha256:00"), Some(Route::Referrers("a", "sha256:00")));
        assert_eq!(Route::parse("a/manifests/list"), Some(Route::Manifest("a", "list")));
        assert_eq!(Route::parse("a/tags/list/tags/list"), Some(Route::Tags("a/tags/list")));
        assert_eq!(Route::parse("a"), None);
        assert_eq!(Route::parse("a/other/x"), None);
    }
}
