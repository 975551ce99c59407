//! The hub: the JSON admin API under `/api/v1/` ([`api`]) and the web UI at `/` ([`pages`],
//! [`image`], [`login`]), served by the same router as `/v2/` ([`crate::api::router`]).
//!
//! Both find the caller the same way ([`viewer`]): an `Authorization` header exactly as `/v2/`
//! takes it (basic credentials or a bearer token), or else the UI's session cookie
//! ([`session`]), or else anonymous; and both allow exactly what the `/v2/` rules allow that
//! caller ([`Viewer::may`]). Without `[auth]` the registry is open and so are they.
//!
//! Pages are HTML written by [`html`] with every value escaped (repository names, tags,
//! labels and history are the pushers' text); the stylesheet and the script are compiled into
//! the binary ([`assets`]), and every page reads and works without the script. Every form
//! carries a CSRF token, and the API refuses a cookie-authenticated change without one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures_util::future::join_all;
use shared::RepoName;

use crate::auth::rules::{ALL, DELETE};
use crate::auth::{Auth, Caller, Identity, Proof, Refusal};
use crate::error::{ApiError, Code};
use crate::store::{RepoSummary, Store, StoreResult};
use crate::AppState;

pub mod api;
mod assets;
pub mod html;
mod image;
mod login;
mod pages;
pub mod session;

/// Repository summaries kept at most (those older than [`NAMES_TTL`] go first).
const MAX_SUMMARIES: usize = 100_000;

/// Repositories whose tags' push times are kept at most (a repository of 10,000 tags
/// takes about a megabyte).
const MAX_PUSH_TIMES: usize = 1_000;

/// How long the list of repository names is used before it is read from storage again.
pub const NAMES_TTL: Duration = Duration::from_secs(10);

/// The repository names, and when they were read.
type Names = (Instant, Arc<Vec<String>>);

/// When each tag of a repository was pushed (its link's time; `None` when unreadable).
pub(crate) type PushTimes = Arc<HashMap<String, Option<SystemTime>>>;

/// Summaries computed in the background at once, at most (each reads a big repository's tag
/// links and manifests; the rest wait their turn).
const BACKGROUND_SUMMARIES: usize = 2;

/// A repository as a page lists it: its summary, or, while a summary too dear for the page's
/// budget is computed in the background, its name and tag count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listed {
    /// Tag count, size and last push.
    Ready(RepoSummary),
    /// Being summed up in the background.
    Pending {
        /// The repository.
        name: String,
        /// How many tags it has, when the page listed them (not when a task was already
        /// summing it up: the page then reads nothing of it).
        tags: Option<usize>,
    },
}

impl Listed {
    /// The repository's name.
    pub fn name(&self) -> &str {
        match self {
            Listed::Ready(s) => &s.name,
            Listed::Pending { name, .. } => name,
        }
    }

    /// How many tags it has, when known.
    pub fn tags(&self) -> Option<usize> {
        match self {
            Listed::Ready(s) => Some(s.tags),
            Listed::Pending { tags, .. } => *tags,
        }
    }
}

/// What the hub keeps in memory: the signing key, whether this process is collecting, and the
/// list of repository names.
#[derive(Debug)]
pub struct Hub {
    /// The key of sessions and CSRF tokens.
    pub keys: session::Keys,
    collecting: AtomicBool,
    /// Every repository name, when it was read, and whether a refresh is under way.
    names: Mutex<(Option<Names>, bool)>,
    /// Repository summaries (tag count, size, last push) and when they were computed.
    summaries: Mutex<HashMap<String, (Instant, RepoSummary)>>,
    /// Push times of the tags of repositories, and when they were read.
    push_times: Mutex<HashMap<String, (Instant, PushTimes)>>,
    /// Held by the walk of the repository tree that fills an empty list of names: a request
    /// arriving meanwhile waits for its result instead of walking the tree again.
    walk: tokio::sync::Mutex<()>,
    /// Storage reads one page may spend on summaries (`[ui] summary_budget`).
    budget: usize,
    /// Repositories being summed up in the background, each with the ticket of its task (a
    /// push or deletion here takes the ticket away, so a result read before it is dropped).
    computing: Mutex<HashMap<String, u64>>,
    tickets: AtomicU64,
    /// Bounds the summaries computed in the background at once.
    background: Arc<tokio::sync::Semaphore>,
}

impl Hub {
    /// The hub over `keys`; a page spends at most `budget` storage reads on summaries.
    pub fn new(keys: session::Keys, budget: usize) -> Hub {
        Hub {
            keys,
            collecting: AtomicBool::new(false),
            names: Mutex::new((None, false)),
            summaries: Mutex::new(HashMap::new()),
            push_times: Mutex::new(HashMap::new()),
            walk: tokio::sync::Mutex::new(()),
            budget,
            computing: Mutex::new(HashMap::new()),
            tickets: AtomicU64::new(0),
            background: Arc::new(tokio::sync::Semaphore::new(BACKGROUND_SUMMARIES)),
        }
    }

    /// Every repository name, sorted. Listing them walks the whole repository tree, so the
    /// list is kept for [`NAMES_TTL`]: storage stays the source of truth (every replica reads
    /// it again after that, and a repository deleted here goes at once), and a list older than
    /// that is still answered while one request reads it again in the background, so no page
    /// waits for the walk but the very first.
    pub(crate) async fn repository_names(self: &Arc<Self>, store: &Arc<Store>) -> StoreResult<Arc<Vec<String>>> {
        let stale = {
            let mut guard = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            match &guard.0 {
                Some((at, names)) if at.elapsed() < NAMES_TTL => return Ok(names.clone()),
                Some((_, names)) => {
                    let names = names.clone();
                    if !std::mem::replace(&mut guard.1, true) {
                        let (hub, store) = (self.clone(), store.clone());
                        tokio::spawn(async move {
                            let fresh = store.repositories().await;
                            let mut guard = hub.names.lock().unwrap_or_else(PoisonError::into_inner);
                            guard.1 = false;
                            match fresh {
                                Ok(fresh) => guard.0 = Some((Instant::now(), Arc::new(fresh))),
                                Err(e) => {
                                    tracing::warn!(error = %shared::error_chain(&e), "listing repositories failed")
                                }
                            }
                        });
                    }
                    Some(names)
                }
                None => None,
            }
        };
        if let Some(names) = stale {
            return Ok(names);
        }
        // One walk at a time: a request arriving while one runs gets its result.
        let _walk = self.walk.lock().await;
        if let Some((_, names)) = &self.names.lock().unwrap_or_else(PoisonError::into_inner).0 {
            return Ok(names.clone());
        }
        let fresh = Arc::new(store.repositories().await?);
        self.names.lock().unwrap_or_else(PoisonError::into_inner).0 = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    /// True once the repository names have been read (they may be stale).
    pub(crate) fn has_names(&self) -> bool {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).0.is_some()
    }

    /// Tag count, size and last push of `repo`: computing them reads every tag link and
    /// revision, so they are kept for [`NAMES_TTL`] too (a push or a deletion here drops them).
    pub(crate) async fn summary(&self, store: &Store, repo: &RepoName) -> StoreResult<RepoSummary> {
        if let Some((at, s)) = self.summaries.lock().unwrap_or_else(PoisonError::into_inner).get(repo.as_str()) {
            if at.elapsed() < NAMES_TTL {
                return Ok(s.clone());
            }
        }
        let s = store.repo_summary(repo).await?;
        self.keep_summary(s.clone());
        Ok(s)
    }

    fn keep_summary(&self, s: RepoSummary) {
        let mut map = self.summaries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SUMMARIES {
            map.retain(|_, (at, _)| at.elapsed() < NAMES_TTL);
        }
        map.insert(s.name.clone(), (Instant::now(), s));
    }

    /// The repositories `names` as one page lists them, in order, without waiting for a
    /// dear summary. A kept summary is shown, and when older than [`NAMES_TTL`] read again in
    /// the background. The others are planned (two listings each), then computed on the spot
    /// in page order while the page's budget of storage reads lasts; those that do not fit
    /// (the first listing after a start with a repository of 10,000 tags) are computed in the
    /// background, at most [`BACKGROUND_SUMMARIES`] at once, and show their tag count (or,
    /// once a task sums them up, nothing) until they are kept.
    pub(crate) async fn listed(self: &Arc<Self>, store: &Arc<Store>, names: &[RepoName]) -> StoreResult<Vec<Listed>> {
        let mut out: Vec<Option<Listed>> = vec![None; names.len()];
        let mut missing = Vec::new();
        {
            let map = self.summaries.lock().unwrap_or_else(PoisonError::into_inner);
            for (i, repo) in names.iter().enumerate() {
                match map.get(repo.as_str()) {
                    Some((at, s)) => {
                        if at.elapsed() >= NAMES_TTL {
                            missing.push((i, true));
                        }
                        out[i] = Some(Listed::Ready(s.clone()));
                    }
                    None => missing.push((i, false)),
                }
            }
        }
        let mut plans = Vec::new();
        for (i, stale) in missing {
            if stale {
                self.summarise_in_background(store, &names[i]);
            } else if self.computing.lock().unwrap_or_else(PoisonError::into_inner).contains_key(names[i].as_str()) {
                out[i] = Some(Listed::Pending { name: names[i].to_string(), tags: None });
            } else {
                plans.push(i);
            }
        }
        let mut planned = Vec::with_capacity(plans.len());
        for chunk in plans.chunks(16) {
            let read = join_all(chunk.iter().map(|&i| store.summary_plan(&names[i]))).await;
            for (&i, plan) in chunk.iter().zip(read) {
                planned.push((i, plan?));
            }
        }
        let mut budget = self.budget;
        let mut now = Vec::new();
        for (i, plan) in planned {
            if plan.cost() <= budget {
                budget -= plan.cost();
                now.push((i, plan));
            } else {
                out[i] = Some(Listed::Pending { name: names[i].to_string(), tags: Some(plan.tags()) });
                self.summarise_in_background(store, &names[i]);
            }
        }
        let mut now = now.into_iter();
        loop {
            let chunk: Vec<_> = now.by_ref().take(16).collect();
            if chunk.is_empty() {
                break;
            }
            let (index, plans): (Vec<usize>, Vec<_>) = chunk.into_iter().unzip();
            let done = join_all(plans.into_iter().map(|p| store.summarise(p))).await;
            for (i, s) in index.into_iter().zip(done) {
                let s = s?;
                self.keep_summary(s.clone());
                out[i] = Some(Listed::Ready(s));
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Computes the summary of `repo` in a task of its own and keeps it, unless one is being
    /// computed already or a push or deletion here comes first.
    fn summarise_in_background(self: &Arc<Self>, store: &Arc<Store>, repo: &RepoName) {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        {
            let mut computing = self.computing.lock().unwrap_or_else(PoisonError::into_inner);
            if computing.contains_key(repo.as_str()) {
                return;
            }
            computing.insert(repo.to_string(), ticket);
        }
        let (hub, store, repo) = (self.clone(), store.clone(), repo.clone());
        tokio::spawn(async move {
            let result = match hub.background.clone().acquire_owned().await {
                Ok(_turn) => store.repo_summary(&repo).await,
                Err(_) => return,
            };
            let mine = {
                let mut computing = hub.computing.lock().unwrap_or_else(PoisonError::into_inner);
                let mine = computing.get(repo.as_str()) == Some(&ticket);
                if mine {
                    computing.remove(repo.as_str());
                }
                mine
            };
            match result {
                Ok(s) if mine => hub.keep_summary(s),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(repo = %repo, error = %shared::error_chain(&e), "summing up a repository failed")
                }
            }
        });
    }

    /// When each of `tags` of `repo` was pushed: reading every tag link's time is slow on a
    /// repository of many tags, so the times are kept for [`NAMES_TTL`] (a push or a deletion
    /// here drops them; a tag the kept times do not know has them read again).
    pub(crate) async fn push_times(&self, store: &Store, repo: &RepoName, tags: &[String]) -> PushTimes {
        if let Some((at, times)) = self.push_times.lock().unwrap_or_else(PoisonError::into_inner).get(repo.as_str()) {
            if at.elapsed() < NAMES_TTL && tags.iter().all(|t| times.contains_key(t)) {
                return times.clone();
            }
        }
        let read = store.tag_times(repo, tags).await;
        let times: PushTimes = Arc::new(tags.iter().cloned().zip(read).collect());
        let mut map = self.push_times.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_PUSH_TIMES {
            map.retain(|_, (at, _)| at.elapsed() < NAMES_TTL);
        }
        map.insert(repo.to_string(), (Instant::now(), times.clone()));
        times
    }

    /// Notes a repository a manifest was just pushed to or a tag deleted from: it is listed,
    /// and its summary and push times are read again (this replica's changes show at once;
    /// other replicas' after [`NAMES_TTL`]).
    pub(crate) fn note_repository(&self, name: &str) {
        self.summaries.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        self.computing.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        self.push_times.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        let mut guard = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, names)) = &guard.0 {
            if let Err(i) = names.binary_search_by(|n| n.as_str().cmp(name)) {
                let mut more = Vec::clone(names);
                more.insert(i, name.to_string());
                guard.0 = Some((*at, Arc::new(more)));
            }
        }
    }

    /// Forgets a deleted repository at once.
    pub(crate) fn forget_repository(&self, name: &str) {
        self.summaries.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        self.computing.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        self.push_times.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        let mut guard = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, names)) = &guard.0 {
            let kept: Vec<String> = names.iter().filter(|n| *n != name).cloned().collect();
            guard.0 = Some((*at, Arc::new(kept)));
        }
    }

    /// Marks a collection started from the API as running; false when one already is.
    pub(crate) fn start_collecting(&self) -> bool {
        !self.collecting.swap(true, Ordering::SeqCst)
    }

    /// True while a collection started here through the API or the UI runs.
    pub(crate) fn collecting(&self) -> bool {
        self.collecting.load(Ordering::SeqCst)
    }

    /// Marks the collection started from the API as over.
    pub(crate) fn stop_collecting(&self) {
        self.collecting.store(false, Ordering::SeqCst);
    }
}

/// The hub's routes: the API always, the UI when `[ui] enabled`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut r = Router::new().route("/api/v1/{*path}", any(api::dispatch));
    if state.config.ui.enabled {
        r = r
            .route("/", get(pages::repositories))
            .route("/r/{*path}", get(pages::repository_or_image))
            .route("/delete-tag", post(pages::delete_tag))
            .route("/system", get(pages::system))
            .route("/system/gc", post(pages::system_gc))
            .route("/login", get(login::form_get).post(login::submit))
            .route("/logout", post(login::logout))
            .route("/assets/{file}", get(assets::serve));
    }
    r
}

/// Who is asking, and what the rules let them do.
pub(crate) struct Viewer {
    /// The caller, as `/v2/` would see it.
    pub caller: Caller,
    /// Signed in through the UI's session cookie (so changes need a CSRF token).
    pub by_cookie: bool,
    auth: Option<Arc<Auth>>,
}

impl Viewer {
    /// What the viewer may do on `repo` (pull, push, delete bits).
    pub fn may(&self, repo: &str) -> u8 {
        match &self.auth {
            None => ALL,
            Some(auth) => auth.permitted(&self.caller, repo),
        }
    }

    /// True for a user with delete rights on `*`: the system page and starting a collection.
    pub fn is_admin(&self) -> bool {
        self.may("*") & DELETE != 0
    }

    /// The signed-in name, if any.
    pub fn name(&self) -> Option<String> {
        match &self.caller.identity {
            Identity::Anonymous => None,
            other => Some(other.subject()),
        }
    }

    /// True when nobody is signed in.
    pub fn anonymous(&self) -> bool {
        matches!(self.caller.identity, Identity::Anonymous)
    }
}

/// Finds the caller of a request: its `Authorization` header, else its session cookie, else
/// anonymous. Refused credentials are an error; a stale or forged cookie is ignored.
pub(crate) async fn viewer(state: &AppState, parts: &Parts) -> Result<Viewer, Refusal> {
    let Some(auth) = state.auth.clone() else {
        let caller = Caller { identity: Identity::Anonymous, proof: Proof::Nothing, client: None };
        return Ok(Viewer { caller, by_cookie: false, auth: None });
    };
    let client = client(state, parts);
    if parts.headers.contains_key(header::AUTHORIZATION) {
        let caller = auth.authenticate(&parts.headers, client).await?;
        return Ok(Viewer { caller, by_cookie: false, auth: Some(auth) });
    }
    let session = session::cookie(&parts.headers, session::SESSION_COOKIE).and_then(|c| state.hub.keys.session(c));
    if let Some(s) = session {
        if auth.user_fingerprint(&s.user).as_deref() == Some(s.fingerprint.as_str()) {
            let caller = Caller { identity: Identity::User(s.user), proof: Proof::Password, client };
            return Ok(Viewer { caller, by_cookie: true, auth: Some(auth) });
        }
    }
    let caller = Caller { identity: Identity::Anonymous, proof: Proof::Nothing, client };
    Ok(Viewer { caller, by_cookie: false, auth: Some(auth) })
}

/// The client's address, as access control reads it.
pub(crate) fn client(state: &AppState, parts: &Parts) -> Option<IpAddr> {
    let trust = state.auth.as_ref().is_some_and(|a| a.config().trust_forwarded_for);
    crate::auth::client_addr_of(&parts.headers, &parts.extensions, trust)
}

/// True when the request came over HTTPS (directly, or through a trusted proxy that says so).
pub(crate) fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    let trust = state.auth.as_ref().is_some_and(|a| a.config().trust_forwarded_for);
    state.config.tls.is_some()
        || (trust
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
}

/// The answer to refused credentials, for the API.
pub(crate) fn refused(refusal: Refusal) -> Response {
    let err = match refusal {
        Refusal::BadCredentials => ApiError::new(Code::Unauthorized).message("wrong user name or password"),
        Refusal::BadToken(why) => ApiError::new(Code::Unauthorized).message(format!("bearer token refused: {why}")),
        Refusal::Malformed => ApiError::new(Code::Unauthorized)
            .message("unreadable Authorization header: use Basic credentials or a Bearer token"),
        Refusal::TooMany(wait) => {
            return ApiError::new(Code::TooManyRequests)
                .message("too many failed logins from this address; try again later")
                .header("retry-after", &wait.to_string())
                .into_response()
        }
        Refusal::Internal(e) => return ApiError::internal(&e).into_response(),
    };
    let mut resp = err.into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"berth\""));
    resp
}

/// The answer when the viewer lacks `bits` on `repo`: 401 for anonymous (sign in), 403 for a
/// signed-in caller. Access is checked before existence, so neither says whether `repo`
/// exists.
pub(crate) fn denied(viewer: &Viewer, repo: &str, what: &str) -> ApiError {
    if viewer.anonymous() {
        ApiError::new(Code::Unauthorized).message(format!("sign in to {what} {repo}"))
    } else {
        ApiError::new(Code::Denied)
            .message(format!("{} may not {what} {repo}", viewer.name().unwrap_or_default()))
            .status(StatusCode::FORBIDDEN)
    }
}
