//! The HTTP API: the OCI distribution spec's endpoints under `/v2/`, plus `/healthz`,
//! `/metrics`, and the hub's admin API and web UI ([`crate::hub`]).
//!
//! Repository names may hold slashes, so everything under `/v2/` is one wildcard route whose
//! path [`crate::route`] has parsed once into the request's [`Route`]; the handlers live in
//! [`blobs`], [`uploads`], [`manifests`] and [`listing`]. A middleware gives each request one
//! tracing span (method, route, status, duration), records one metrics observation and counts
//! body bytes both ways; the
//! outermost one, [`crate::body::early_answers`], lets a client that sends its whole body before reading get an
//! answer given before the body was read.

use std::pin::Pin;
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
use tracing::Instrument;

use crate::error::{ApiError, ApiResult, Code};
use crate::route::{Route, Upstream};
use crate::storage::{ByteStream, StorageError};
use crate::store::StoreError;
pub use crate::AppState;

pub(crate) mod blobs;
mod listing;
mod manifests;
pub(crate) mod uploads;

/// Builds the router for a registry over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*path}", any(dispatch))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        .route("/token", any(crate::auth::token::endpoint))
        .merge(crate::hub::routes(&state))
        .fallback(|| async {
            ApiError::new(Code::Unsupported).status(StatusCode::NOT_FOUND).detail("unknown endpoint")
        })
        .layer(middleware::from_fn_with_state(state.clone(), crate::webhooks::layer))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::guard))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(state.clone(), crate::route::layer))
        .layer(middleware::from_fn(crate::body::early_answers))
        .with_state(state)
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    let last = match crate::gc::history::recent(state.store.storage().as_ref(), 1).await {
        Ok(runs) => runs.into_iter().next(),
        Err(e) => {
            tracing::warn!(error = %shared::error_chain(&e), "cannot read the collector's history for /metrics");
            None
        }
    };
    text.push_str(&state.metrics.render_gc(last.as_ref()));
    text.push_str(&state.webhooks.render_metrics());
    state.mirrors.render(&mut text);
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
    resp
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
        crate::route::query(&self.uri, key)
    }

    /// Every value of a query parameter, percent-decoded, in order.
    pub fn query_all(&self, key: &str) -> Vec<String> {
        crate::route::query_all(&self.uri, key)
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
    let (mut parts, body) = req.into_parts();
    let Some(route) = parts.extensions.remove::<Route>() else {
        return ApiError::new(Code::NameUnknown).detail("unknown endpoint").into_response();
    };
    let upstream = parts.extensions.get::<Upstream>().cloned();
    if let Some(up) = &upstream {
        if let Err(e) = refuse_mirror_writes(&state, &route, &parts.method, up) {
            return e.into_response();
        }
    }
    let req = Req {
        state,
        method: parts.method,
        uri: parts.uri.clone(),
        headers: parts.headers,
        extensions: parts.extensions,
    };
    // A mirrored repository's content lives under its local name (`docker.io/library/x`),
    // however the client named it.
    let local = |name: String| upstream.as_ref().map_or(name, |u| u.local.clone());
    let result = match route {
        Route::Base => Ok(base(req.method).await),
        Route::Catalog => listing::catalog(req).await,
        Route::Tags(name) => listing::tags(req, &local(name)).await,
        Route::Referrers(name, d) => listing::referrers(req, &local(name), &d).await,
        Route::Manifest(name, r) => manifests::handle(req, body, &local(name), &r).await,
        Route::Blob(name, d) => blobs::handle(req, &local(name), &d).await,
        Route::UploadStart(name) => uploads::start(req, body, &local(name)).await,
        Route::Upload(name, id) => uploads::handle(req, body, &local(name), &id).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Uploads, manifest pushes and deletions in a mirrored repository are refused (`DENIED`,
/// naming the upstream) unless its mirror accepts pushes.
fn refuse_mirror_writes(state: &AppState, route: &Route, method: &Method, up: &Upstream) -> ApiResult<()> {
    let mirror = &state.config.mirror[up.mirror];
    let writes = match route {
        Route::UploadStart(_) | Route::Upload(..) => true,
        Route::Manifest(..) | Route::Blob(..) => !matches!(*method, Method::GET | Method::HEAD),
        _ => false,
    };
    if !writes || mirror.accept_pushes {
        return Ok(());
    }
    Err(ApiError::new(Code::Denied).message(format!(
        "{} is a read-only mirror of {} ({}); push to the upstream instead",
        up.local, mirror.host, mirror.url
    )))
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

/// One tracing span per request (method, route, path; status and duration once answered)
/// around everything done for it, closed by one event, and one metrics observation; body
/// bytes counted both ways.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = crate::route::label_of(&req);
    let span = tracing::info_span!(
        "request",
        method = %method,
        route,
        path = req.uri().path(),
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let metrics = state.metrics.clone();
    let req = req.map(|body| {
        let m = metrics.clone();
        Body::new(Counted { inner: body, count: move |n| m.add_bytes_in(n) })
    });
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    let elapsed = start.elapsed();
    state.metrics.observe(method.as_str(), route, status.as_u16(), elapsed);
    span.record("status", status.as_u16());
    span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!("request failed");
        } else {
            tracing::debug!("request");
        }
    });
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

    /// A registry on a temporary folder, and its state.
    async fn registry() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::default();
        config.storage.filesystem.root = dir.path().to_path_buf();
        config.storage.filesystem.fsync = false;
        let state = crate::state(config).await.unwrap();
        (dir, state)
    }

    async fn call(app: &Router, method: &str, uri: &str, body: &'static str) -> Response {
        use tower::ServiceExt;
        let req = Request::builder().method(method).uri(uri).body(Body::from(body)).unwrap();
        app.clone().oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn upload_requests_leave_no_lock_entries() {
        let (_dir, state) = registry().await;
        let store = state.store.clone();
        let app = router(state);
        let digest = shared::Digest::sha256_of(b"data");
        // Unknown sessions, with ids well-formed or not.
        for i in 0..50u32 {
            for id in [format!("{i:032x}"), format!("no-{i}")] {
                for method in ["GET", "PATCH", "PUT", "DELETE"] {
                    let resp = call(&app, method, &format!("/v2/r/blobs/uploads/{id}?digest={digest}"), "data").await;
                    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {id}");
                }
            }
        }
        // Sessions written to and left open, finished, cancelled, then asked for again.
        for end in ["open", "PUT", "DELETE"] {
            let resp = call(&app, "POST", "/v2/r/blobs/uploads/", "").await;
            let location = resp.headers()[header::LOCATION].to_str().unwrap().to_string();
            assert_eq!(call(&app, "PATCH", &location, "data").await.status(), StatusCode::ACCEPTED);
            if end != "open" {
                let resp = call(&app, end, &format!("{location}?digest={digest}"), "").await;
                assert!(resp.status().is_success(), "{end}: {}", resp.status());
                assert_eq!(call(&app, "PATCH", &location, "data").await.status(), StatusCode::NOT_FOUND);
            }
        }
        assert_eq!(store.upload_locks_len(), 0);
    }

    /// `/metrics` shows the last collection of any process (from the run history) and the
    /// bytes it counted in storage.
    #[tokio::test]
    async fn metrics_show_the_last_collection() {
        let (_dir, state) = registry().await;
        let storage = state.store.storage().clone();
        let app = router(state);
        let text = |resp: Response| async move {
            String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
        };
        let before = text(call(&app, "GET", "/metrics", "").await).await;
        assert!(before.contains("berth_gc_runs_total 0\n") && !before.contains("berth_gc_last_run"), "{before}");
        let d = shared::Digest::sha256_of(b"lonely");
        let resp = call(&app, "POST", &format!("/v2/a/blobs/uploads/?digest={d}"), "lonely").await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let options = crate::gc::Options::new(std::time::Duration::ZERO, false, false);
        let report = crate::gc::schedule::run_once(storage, options, None).await.unwrap();
        assert_eq!(report.bytes_freed(), 6);
        let after = text(call(&app, "GET", "/metrics", "").await).await;
        for line in [
            "berth_gc_last_run_freed_bytes 6\n",
            "berth_gc_last_run_removed_objects 2\n",
            "berth_gc_last_run_failed 0\n",
        ] {
            assert!(after.contains(line), "{line} missing from\n{after}");
        }
        // What is left: the lease and the run's record, a few hundred bytes.
        let stored = after.lines().find_map(|l| l.strip_prefix("berth_storage_bytes ")).expect("storage bytes");
        assert!(stored.parse::<u64>().unwrap() < 2000, "{stored}");
    }

    #[tokio::test]
    async fn handlers_attach_what_they_changed() {
        use crate::events::Event;
        let (_dir, state) = registry().await;
        let app = router(state);
        let event = |resp: &Response| resp.extensions().get::<Event>().cloned();
        let d = shared::Digest::sha256_of(b"{}");
        let resp = call(&app, "POST", &format!("/v2/a/blobs/uploads/?digest={d}"), "{}").await;
        let pushed = Event::BlobPushed { repo: "a".into(), digest: d.to_string(), mounted_from: None };
        assert_eq!(event(&resp), Some(pushed));
        let resp = call(&app, "POST", &format!("/v2/b/blobs/uploads/?mount={d}&from=a"), "").await;
        let mounted = Event::BlobPushed { repo: "b".into(), digest: d.to_string(), mounted_from: Some("a".into()) };
        assert_eq!(event(&resp), Some(mounted));
        // A refused request changed nothing, and says so.
        let wrong = shared::Digest::sha256_of(b"other");
        let resp = call(&app, "POST", &format!("/v2/a/blobs/uploads/?digest={wrong}"), "{}").await;
        assert_eq!((resp.status(), event(&resp)), (StatusCode::BAD_REQUEST, None));
        let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let m = shared::Digest::sha256_of(manifest.as_bytes());
        let resp = call(&app, "PUT", &format!("/v2/a/manifests/{m}?tag=x&tag=y"), manifest).await;
        let tagged = Event::ManifestPushed {
            repo: "a".into(),
            reference: m.to_string(),
            digest: m.to_string(),
            tags: vec!["x".into(), "y".into()],
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            size: manifest.len() as u64,
        };
        assert_eq!(event(&resp), Some(tagged));
        let resp = call(&app, "DELETE", "/v2/a/manifests/x", "").await;
        assert_eq!(event(&resp), Some(Event::ManifestDeleted { repo: "a".into(), reference: "x".into() }));
        let resp = call(&app, "DELETE", &format!("/v2/b/blobs/{d}"), "").await;
        assert_eq!(event(&resp), Some(Event::BlobDeleted { repo: "b".into(), digest: d.to_string() }));
    }
}
