//! The JSON admin API under `/api/v1/` (README, "Admin API"), with the permissions of `/v2/`:
//!
//! - `GET /api/v1/repositories?q=&n=&last=`: the repositories the caller may pull whose name
//!   contains `q`, `n` at a time after `last`, each with its tag count, size and last push;
//! - `GET /api/v1/repositories/<name>`: one of them (needs pull);
//! - `GET /api/v1/repositories/<name>/tags?n=&last=&sort=`: its tags with digest, media type,
//!   platforms, compressed size and push time (needs pull); `sort=pushed` lists the newest
//!   first;
//! - `DELETE /api/v1/repositories/<name>`: removes every tag, manifest and link of it (needs
//!   delete; refused while an immutable tag is in it); the collector frees the bytes;
//! - `POST /api/v1/gc`: starts a collection (needs delete on `*`);
//! - `GET /api/v1/gc/runs?n=`: the collector's last runs, newest first, as
//!   [`crate::gc::history`] records them (needs delete on `*`);
//! - `GET /api/v1/webhooks/deliveries`: this process's recent webhook deliveries, newest
//!   first, receivers cut to their origins (needs delete on `*`).
//!
//! Errors are the registry's JSON error bodies with a message saying what is wrong: 400 for a
//! malformed name or parameter, 401 to sign in, 403 for a signed-in caller lacking the
//! permission, 404 for what does not exist, 405 for a method an endpoint does not take.
//! A change authenticated by the UI's session cookie needs the `X-CSRF-Token` header.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use shared::{RepoName, Tag};

use super::{denied, refused, session, viewer, Listed, Viewer};
use crate::auth::rules::{DELETE, PULL};
use crate::error::{ApiError, ApiResult, Code};
use crate::gc::history;
use crate::store::{RepoSummary, TagInfo};
use crate::AppState;

/// Page size when `n` is not given.
pub const DEFAULT_PAGE: usize = 100;

/// An endpoint of the admin API, parsed from the path after `/api/v1/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `repositories`
    Repositories,
    /// `repositories/<name>`
    Repository(String),
    /// `repositories/<name>/tags`
    Tags(String),
    /// `gc`
    Gc,
    /// `gc/runs`
    GcRuns,
    /// `webhooks/deliveries`
    Deliveries,
}

impl Endpoint {
    /// Parses the path after `/api/v1/`; a name ending in `/tags` is read as the tags of the
    /// name before it.
    pub fn parse(path: &str) -> Option<Endpoint> {
        let path = path.strip_suffix('/').unwrap_or(path);
        match path {
            "repositories" => return Some(Endpoint::Repositories),
            "gc" => return Some(Endpoint::Gc),
            "gc/runs" => return Some(Endpoint::GcRuns),
            "webhooks/deliveries" => return Some(Endpoint::Deliveries),
            _ => {}
        }
        let rest = path.strip_prefix("repositories/")?;
        match rest.strip_suffix("/tags") {
            Some(name) if !name.is_empty() => Some(Endpoint::Tags(name.into())),
            _ => Some(Endpoint::Repository(rest.into())),
        }
    }
}

/// Everything under `/api/v1/`.
pub(crate) async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _body): (Parts, Body) = req.into_parts();
    let path = parts.uri.path().strip_prefix("/api/v1/").unwrap_or("");
    let Some(endpoint) = Endpoint::parse(path) else {
        return ApiError::new(Code::NameUnknown)
            .message(format!("no such endpoint: /api/v1/{path}"))
            .status(StatusCode::NOT_FOUND)
            .into_response();
    };
    let viewer = match viewer(&state, &parts).await {
        Ok(v) => v,
        Err(r) => return refused(r),
    };
    let changes = parts.method != Method::GET && parts.method != Method::HEAD;
    if changes && viewer.by_cookie {
        let nonce = session::cookie(&parts.headers, session::CSRF_COOKIE);
        let token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if !state.hub.keys.csrf_ok(nonce, token) {
            return ApiError::new(Code::Denied)
                .message("a change made with the UI's session cookie needs its X-CSRF-Token header")
                .into_response();
        }
    }
    let result = match (&parts.method, endpoint) {
        (&Method::GET, Endpoint::Repositories) => list(&state, &viewer, &parts).await,
        (&Method::GET, Endpoint::Repository(name)) => one(&state, &viewer, &name).await,
        (&Method::DELETE, Endpoint::Repository(name)) => delete(&state, &viewer, &name).await,
        (&Method::GET, Endpoint::Tags(name)) => tags(&state, &viewer, &parts, &name).await,
        (&Method::POST, Endpoint::Gc) => start_gc(&state, &viewer).await,
        (&Method::GET, Endpoint::GcRuns) => gc_runs(&state, &viewer, &parts).await,
        (&Method::GET, Endpoint::Deliveries) => deliveries(&state, &viewer),
        (method, endpoint) => Err(ApiError::new(Code::Unsupported)
            .message(format!("{method} is not allowed on {endpoint:?}"))
            .status(StatusCode::METHOD_NOT_ALLOWED)),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A repository name from the path, or 400 `NAME_INVALID`.
pub(crate) fn repo_name(name: &str) -> ApiResult<RepoName> {
    name.parse().map_err(|e: shared::NameError| ApiError::new(Code::NameInvalid).message(format!("{name:?}: {e}")))
}

/// `n` (capped at the configured page size; [`DEFAULT_PAGE`] when absent) or 400.
pub(crate) fn page_size(state: &AppState, n: Option<String>) -> ApiResult<usize> {
    let max = state.config.limits.max_page;
    match n {
        None => Ok(DEFAULT_PAGE.min(max)),
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(max)),
            _ => Err(ApiError::new(Code::PaginationNumberInvalid)
                .message(format!("n must be a whole number above 0, not {n:?}"))),
        },
    }
}

/// One page of the repositories the viewer may pull whose names contain `q`.
pub(crate) struct RepoPage {
    /// Their summaries (or, for those summed up in the background, their tag counts).
    pub repositories: Vec<Listed>,
    /// The `last` of the next page, when there is one.
    pub next: Option<String>,
    /// How many match in all; unknown while the first walk of the repository tree runs.
    pub matched: Option<usize>,
}

/// The page of repositories after `last` whose names contain `q`. Without a query and before
/// the list of every name has been read once, the page walks only as far as it needs
/// ([`crate::store::Store::repository_page`]), so the first listing after a start does not
/// wait for the walk of the whole tree.
pub(crate) async fn repo_page(
    state: &AppState,
    viewer: &Viewer,
    q: &str,
    n: usize,
    last: Option<&str>,
) -> ApiResult<RepoPage> {
    let q = q.trim().to_ascii_lowercase();
    if q.is_empty() && !state.hub.has_names() {
        let page = state.store.repository_page(Some(n), last, |name| viewer.may(name) & PULL != 0).await?;
        let next = if page.more { page.tags.last().cloned() } else { None };
        let repositories = summaries(state, &page.tags).await?;
        return Ok(RepoPage { repositories, next, matched: None });
    }
    let names = state.hub.repository_names(&state.store).await?;
    let all: Vec<String> =
        names.iter().filter(|name| name.contains(&q) && viewer.may(name) & PULL != 0).cloned().collect();
    let matched = all.len();
    let page = crate::store::page(all, Some(n), last);
    let repositories = summaries(state, &page.tags).await?;
    let next = if page.more { page.tags.last().cloned() } else { None };
    Ok(RepoPage { repositories, next, matched: Some(matched) })
}

/// The repositories `names` as a page lists them ([`super::Hub::listed`]).
async fn summaries(state: &AppState, names: &[String]) -> ApiResult<Vec<Listed>> {
    let names: Vec<RepoName> = names.iter().filter_map(|n| n.parse().ok()).collect();
    Ok(state.hub.listed(&state.store, &names).await?)
}

fn time(t: Option<std::time::SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| Value::String(shared::date::rfc3339(d.as_secs() as i64)))
}

fn summary_json(s: &RepoSummary) -> Value {
    json!({ "name": s.name, "tags": s.tags, "size": s.bytes, "last_push": time(s.last_push), "pending": false })
}

fn listed_json(l: &Listed) -> Value {
    match l {
        Listed::Ready(s) => summary_json(s),
        Listed::Pending { name, tags } => {
            json!({ "name": name, "tags": tags, "size": null, "last_push": null, "pending": true })
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn list(state: &AppState, viewer: &Viewer, parts: &Parts) -> ApiResult<Response> {
    let n = page_size(state, crate::route::query(&parts.uri, "n"))?;
    let q = crate::route::query(&parts.uri, "q").unwrap_or_default();
    let last = crate::route::query(&parts.uri, "last");
    let page = repo_page(state, viewer, &q, n, last.as_deref()).await?;
    let mut resp = json_response(
        StatusCode::OK,
        json!({
            "repositories": page.repositories.iter().map(listed_json).collect::<Vec<_>>(),
            "next": page.next,
        }),
    );
    if let Some(next) = &page.next {
        let q = shared::query::escape(&q);
        let link = format!("</api/v1/repositories?q={q}&n={n}&last={}>; rel=\"next\"", shared::query::escape(next));
        if let Ok(v) = link.parse() {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

/// The repository `name` after checking the viewer has `bits` on it (`what` says the action
/// for the message); 404 when it does not exist.
pub(crate) async fn visible(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    bits: u8,
    what: &str,
) -> ApiResult<RepoName> {
    let repo = repo_name(name)?;
    if viewer.may(repo.as_str()) & bits != bits {
        return Err(denied(viewer, repo.as_str(), what));
    }
    if !state.store.repo_exists(&repo).await? {
        return Err(ApiError::new(Code::NameUnknown)
            .message(format!("repository {repo} does not exist"))
            .status(StatusCode::NOT_FOUND));
    }
    Ok(repo)
}

async fn one(state: &AppState, viewer: &Viewer, name: &str) -> ApiResult<Response> {
    let repo = visible(state, viewer, name, PULL, "pull from").await?;
    let s = state.hub.summary(&state.store, &repo).await?;
    Ok(json_response(StatusCode::OK, summary_json(&s)))
}

/// How the tag page is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sort {
    /// By tag name.
    Name,
    /// Newest push first.
    Pushed,
}

impl Sort {
    /// `sort=` of a query: `name` (default) or `pushed`; anything else is 400.
    pub(crate) fn parse(s: Option<&str>) -> ApiResult<Sort> {
        match s {
            None | Some("") | Some("name") | Some("tag") => Ok(Sort::Name),
            Some("pushed") => Ok(Sort::Pushed),
            Some(other) => Err(ApiError::new(Code::Unsupported)
                .status(StatusCode::BAD_REQUEST)
                .message(format!("sort must be name or pushed, not {other:?}"))),
        }
    }
}

/// One page of a repository's tags.
pub(crate) struct TagsPage {
    /// The tags, described.
    pub tags: Vec<TagInfo>,
    /// The `last` (or, sorted by push time, the offset) of the next page.
    pub next: Option<String>,
    /// How many tags the repository has.
    pub total: usize,
}

/// Tags of `repo` in `sort` order, `n` from `after` (a tag name, or by push time an offset).
pub(crate) async fn tags_page(
    state: &AppState,
    repo: &RepoName,
    sort: Sort,
    n: usize,
    after: Option<&str>,
) -> ApiResult<TagsPage> {
    let all = state.store.tags(repo, None, None).await?.tags;
    let total = all.len();
    let (names, next) = match sort {
        Sort::Name => {
            let page = crate::store::page(all, Some(n), after);
            let next = if page.more { page.tags.last().cloned() } else { None };
            (page.tags, next)
        }
        Sort::Pushed => {
            let times = state.hub.push_times(&state.store, repo, &all).await;
            let mut dated: Vec<_> = all
                .into_iter()
                .map(|t| {
                    let at = times.get(&t).copied().flatten();
                    (t, at)
                })
                .collect();
            dated.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let from = match after {
                None | Some("") => 0,
                Some(a) => a.parse::<usize>().map_err(|_| {
                    ApiError::new(Code::PaginationNumberInvalid).message(format!("last must be an offset, not {a:?}"))
                })?,
            };
            let names: Vec<String> = dated.into_iter().skip(from).take(n).map(|(t, _)| t).collect();
            let next = (from + names.len() < total).then(|| (from + names.len()).to_string());
            (names, next)
        }
    };
    let mut tags = state.store.tag_infos(repo, &names).await?;
    if sort == Sort::Pushed {
        tags.sort_by(|a, b| b.pushed.cmp(&a.pushed).then_with(|| a.tag.cmp(&b.tag)));
    }
    Ok(TagsPage { tags, next, total })
}

async fn tags(state: &AppState, viewer: &Viewer, parts: &Parts, name: &str) -> ApiResult<Response> {
    let repo = visible(state, viewer, name, PULL, "pull from").await?;
    let n = page_size(state, crate::route::query(&parts.uri, "n"))?;
    let sort = Sort::parse(crate::route::query(&parts.uri, "sort").as_deref())?;
    let last = crate::route::query(&parts.uri, "last");
    let page = tags_page(state, &repo, sort, n, last.as_deref()).await?;
    let tags: Vec<Value> = page
        .tags
        .iter()
        .map(|t| {
            json!({
                "tag": t.tag,
                "digest": t.digest.to_string(),
                "media_type": t.media_type,
                "platforms": t.platforms,
                "size": t.size,
                "pushed": time(t.pushed),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({ "name": repo.as_str(), "tags": tags, "total": page.total, "next": page.next }),
    ))
}

/// Deletes a repository after the checks; the number of tags it had.
pub(crate) async fn delete_repository(state: &AppState, viewer: &Viewer, name: &str) -> ApiResult<usize> {
    let repo = visible(state, viewer, name, DELETE, "delete").await?;
    let all = state.store.tags(&repo, None, None).await?.tags;
    for tag in all.iter().filter_map(|t| t.parse::<Tag>().ok()) {
        crate::policy::check_delete(&state.store, &state.policies, &repo, &shared::Reference::Tag(tag)).await?;
    }
    state.store.delete_repository(&repo).await?;
    state.hub.forget_repository(repo.as_str());
    tracing::info!(
        target: "audit",
        event = "repository_deleted",
        who = %viewer.caller.identity,
        client = %viewer.caller.client.map_or_else(|| "-".to_string(), |c| c.to_string()),
        repo = %repo,
        tags = all.len(),
        "repository deleted",
    );
    Ok(all.len())
}

async fn delete(state: &AppState, viewer: &Viewer, name: &str) -> ApiResult<Response> {
    let tags = delete_repository(state, viewer, name).await?;
    Ok(json_response(StatusCode::OK, json!({ "deleted": name, "tags": tags })))
}

/// Refuses a viewer without delete rights on `*`.
pub(crate) fn require_admin(viewer: &Viewer, what: &str) -> ApiResult<()> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(denied(viewer, "every repository (*)", what))
    }
}

/// Starts a collection in the background; false when this process is running one already.
pub(crate) fn spawn_collection(state: &AppState) -> bool {
    if !state.hub.start_collecting() {
        return false;
    }
    let (storage, options, hub) = (state.store.storage().clone(), state.config.gc_options(false), state.hub.clone());
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let started = history::now_ms();
        let result = crate::gc::schedule::run_once(storage, options, None).await;
        let took = history::now_ms().saturating_sub(started);
        match result {
            Ok(report) => {
                metrics.observe_gc(&history::Run::of(Some(&report), None, "", started, took));
                tracing::info!(
                    removed = report.removed.len(),
                    bytes = report.bytes_freed(),
                    "garbage collected (started through the admin API)"
                )
            }
            Err(e) => tracing::warn!(error = %shared::error_chain(&e), "garbage collection failed"),
        }
        hub.stop_collecting();
    });
    true
}

async fn start_gc(state: &AppState, viewer: &Viewer) -> ApiResult<Response> {
    require_admin(viewer, "collect garbage in")?;
    if !spawn_collection(state) {
        return Err(ApiError::new(Code::Denied)
            .status(StatusCode::CONFLICT)
            .message("a collection started here is still running; try again after it finishes"));
    }
    tracing::info!(target: "audit", event = "gc_started", who = %viewer.caller.identity, "collection started");
    Ok(json_response(StatusCode::ACCEPTED, json!({ "started": true, "runs": "/api/v1/gc/runs" })))
}

/// Runs listed when `n` is not given.
pub const DEFAULT_RUNS: usize = 20;

async fn gc_runs(state: &AppState, viewer: &Viewer, parts: &Parts) -> ApiResult<Response> {
    require_admin(viewer, "read the collector's runs of")?;
    let n = match crate::route::query(&parts.uri, "n") {
        None => DEFAULT_RUNS,
        Some(n) => n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::new(Code::PaginationNumberInvalid).message(format!("n must be a whole number above 0, not {n:?}"))
        })?,
    };
    let runs = history::recent(state.store.storage().as_ref(), n.min(history::KEPT))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let running = state.hub.collecting();
    Ok(json_response(StatusCode::OK, json!({ "running_here": running, "runs": runs })))
}

fn deliveries(state: &AppState, viewer: &Viewer) -> ApiResult<Response> {
    require_admin(viewer, "read the webhook deliveries of")?;
    let shown: Vec<_> = state.webhooks.deliveries().iter().map(|d| d.shown()).collect();
    Ok(json_response(StatusCode::OK, json!({ "deliveries": shown })))
}
