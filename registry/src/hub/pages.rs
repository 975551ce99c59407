//! The UI's pages: the repository list (`/`), a repository's tags (`/r/<name>`), deleting a
//! tag (`POST /delete-tag`, after a confirmation) and the system page (`/system`). The image
//! page (`/r/<name>/@<reference>`) is in [`super::image`], signing in in [`super::login`].
//!
//! [`Ctx`] is what every page starts from: the viewer, and the visitor's CSRF nonce (set as a
//! cookie on the first page a visitor gets).

use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::{Reference, Tag};

use super::api::{self, Sort};
use super::html::{self, attr_url, esc, Frame};
use super::session::{self, Keys};
use super::{viewer, Listed, Viewer};
use crate::auth::rules::{DELETE, PULL};
use crate::error::ApiError;
use crate::events::Event;
use crate::AppState;

/// Form bodies are small; anything bigger is refused.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// What every page starts from.
pub(crate) struct Ctx {
    pub state: AppState,
    pub viewer: Viewer,
    nonce: String,
    new_nonce: bool,
    /// The CSRF token forms carry.
    pub csrf: String,
    /// `Host` of the request, for `docker pull` commands.
    pub host: String,
    secure: bool,
}

impl Ctx {
    /// The context of a request; refused credentials answer a page saying so.
    pub async fn new(state: &AppState, parts: &Parts) -> Result<Ctx, Response> {
        let (nonce, new_nonce) = match session::cookie(&parts.headers, session::CSRF_COOKIE) {
            Some(n) if !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (n.to_string(), false)
            }
            _ => (Keys::new_nonce(), true),
        };
        let csrf = state.hub.keys.csrf_token(&nonce);
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("localhost")
            .to_string();
        let secure = super::secure(state, &parts.headers);
        let viewer = match viewer(state, parts).await {
            Ok(v) => v,
            Err(refusal) => {
                let mut resp = super::refused(refusal);
                resp.headers_mut().remove(header::WWW_AUTHENTICATE);
                return Err(resp);
            }
        };
        Ok(Ctx { state: state.clone(), viewer, nonce, new_nonce, csrf, host, secure })
    }

    /// The frame's view of the viewer.
    pub fn frame(&self) -> Frame<'_> {
        Frame { user: None, auth: self.state.auth.is_some(), admin: self.viewer.is_admin(), csrf: &self.csrf }
    }

    /// A page; sets the CSRF cookie on a visitor's first page.
    pub fn page(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let name = self.viewer.name();
        let frame = Frame { user: name.as_deref(), ..self.frame() };
        let mut resp = html::respond(status, html::page(title, &frame, body));
        self.set_nonce(&mut resp);
        resp
    }

    /// Adds the CSRF cookie to a response when the visitor has none yet.
    pub fn set_nonce(&self, resp: &mut Response) {
        if self.new_nonce {
            let cookie = session::set_cookie(session::CSRF_COOKIE, &self.nonce, 400 * 86_400, self.secure);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }

    /// A page telling what went wrong.
    pub fn error(&self, err: &ApiError) -> Response {
        let status = err.http_status();
        let reason = status.canonical_reason().unwrap_or("Error");
        let mut body = format!("<h1>{} {reason}</h1><p class=\"error\">{}</p>", status.as_u16(), esc(err.text()));
        if self.viewer.anonymous() && self.state.auth.is_some() {
            body.push_str("<p><a href=\"/login\">Sign in</a> to see more.</p>");
        }
        body.push_str("<p><a href=\"/\">Back to the repositories</a></p>");
        self.page(status, status.canonical_reason().unwrap_or("Error"), &body)
    }

    /// True when a form's token is the visitor's.
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        !self.new_nonce && self.state.hub.keys.csrf_ok(Some(&self.nonce), token)
    }

    /// Whether cookies get `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The hidden CSRF input of a form.
    pub fn csrf_input(&self) -> String {
        format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&self.csrf))
    }
}

/// A query parameter of a page, decoded.
pub(crate) fn q(parts: &Parts, key: &str) -> Option<String> {
    crate::route::query(&parts.uri, key)
}

/// The fields of a form body, or `None` when it is not a small form.
pub(crate) async fn form(body: Body) -> Option<Vec<(String, String)>> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.ok()?;
    Some(shared::query::pairs(std::str::from_utf8(&bytes).ok()?))
}

/// A field of a form.
pub(crate) fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A 303 to `to`.
pub(crate) fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `GET /`: the repositories the viewer may pull, searched by name, a page at a time.
pub(crate) async fn repositories(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = match Ctx::new(&state, &parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = q(&parts, "q").unwrap_or_default();
    let last = q(&parts, "last").filter(|l| !l.is_empty());
    let page = match api::repo_page(&state, &ctx.viewer, &query, api::DEFAULT_PAGE, last.as_deref()).await {
        Ok(p) => p,
        Err(e) => return ctx.error(&e),
    };
    let mut rows = String::new();
    for r in &page.repositories {
        let (size, pushed) = figures(r);
        let _ = write!(
            rows,
            "<tr><td><a href=\"{}\">{}</a></td><td class=\"num\">{}</td>{size}<td>{pushed}</td></tr>",
            attr_url(&format!("/r/{}", r.name())),
            esc(r.name()),
            tag_count(r),
        );
    }
    let mut body = format!(
        "<h1>Repositories</h1><form class=\"search\" method=\"get\" action=\"/\">\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Search by name\" autocomplete=\"off\" \
         aria-label=\"Search repositories by name\" data-live=\"results\"><button>Search</button></form><div id=\"results\">",
        esc(&query)
    );
    if page.repositories.is_empty() {
        body.push_str("<p class=\"empty\">No repositories");
        if !query.is_empty() {
            let _ = write!(body, " match “{}”", esc(&query));
        }
        body.push_str(".</p>");
        if ctx.viewer.anonymous() && state.auth.is_some() {
            body.push_str("<p><a href=\"/login\">Sign in</a> to see the repositories you may pull.</p>");
        }
    } else {
        let _ = write!(
            body,
            "<p class=\"muted\">{}</p><table class=\"list sortable\"><thead><tr><th>Name</th>\
             <th class=\"num\">Tags</th><th class=\"num\">Size</th><th>Last push</th></tr></thead><tbody>{rows}</tbody></table>",
            count(page.matched, page.repositories.len()),
        );
    }
    if let Some(next) = &page.next {
        let _ = write!(
            body,
            "<nav class=\"pager\"><a href=\"/?q={}&amp;last={}\">Next page →</a></nav>",
            esc(&shared::query::escape(&query)),
            esc(&shared::query::escape(next))
        );
    }
    body.push_str("</div>");
    ctx.page(StatusCode::OK, "Repositories", &body)
}

/// `GET /r/<name>` (a repository) and `GET /r/<name>/@<reference>` (an image).
pub(crate) async fn repository_or_image(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = match Ctx::new(&state, &parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let path = parts.uri.path().strip_prefix("/r/").unwrap_or("");
    let path = shared::query::unescape(path);
    let path = path.trim_end_matches('/');
    match path.rsplit_once("/@") {
        Some((name, reference)) => super::image::page(&ctx, name, reference).await,
        None => repository(&ctx, &parts, path).await,
    }
}

async fn repository(ctx: &Ctx, parts: &Parts, name: &str) -> Response {
    match repository_body(ctx, parts, name).await {
        Ok(body) => ctx.page(StatusCode::OK, name, &body),
        Err(e) => ctx.error(&e),
    }
}

async fn repository_body(ctx: &Ctx, parts: &Parts, name: &str) -> Result<String, ApiError> {
    let state = &ctx.state;
    let repo = api::visible(state, &ctx.viewer, name, PULL, "pull from").await?;
    let sort = Sort::parse(q(parts, "sort").as_deref())?;
    let last = q(parts, "last");
    let page = api::tags_page(state, &repo, sort, api::DEFAULT_PAGE, last.as_deref()).await?;
    let listed = state.hub.listed(&state.store, std::slice::from_ref(&repo)).await?;
    let may_delete = ctx.viewer.may(repo.as_str()) & DELETE != 0;
    let mut rows = String::new();
    for t in &page.tags {
        let pull = format!("docker pull {}/{}:{}", ctx.host, repo, t.tag);
        let platforms = if t.platforms.is_empty() { "-".to_string() } else { esc(&t.platforms.join(", ")) };
        let at = html::time(t.pushed);
        let _ = write!(
            rows,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{platforms}</td><td class=\"num\" data-value=\"{}\">{}</td>\
             <td data-value=\"{at}\">{}</td><td class=\"pull\"><code>{}</code><button type=\"button\" class=\"copy\" \
             data-copy=\"{}\" hidden>Copy</button></td>",
            attr_url(&format!("/r/{repo}/@{}", t.tag)),
            esc(&t.tag),
            html::short_digest(&t.digest.to_string()),
            t.size,
            html::size(t.size),
            html::time_el(t.pushed),
            esc(&pull),
            esc(&pull),
        );
        if may_delete {
            let _ = write!(
                rows,
                "<td><form method=\"post\" action=\"/delete-tag\" data-confirm=\"Delete tag {tag} of {repo}?\">{}\
                 <input type=\"hidden\" name=\"repo\" value=\"{repo}\"><input type=\"hidden\" name=\"tag\" value=\"{tag}\">\
                 <button class=\"danger\">Delete</button></form></td>",
                ctx.csrf_input(),
                tag = esc(&t.tag),
                repo = esc(repo.as_str()),
            );
        }
        rows.push_str("</tr>");
    }
    let sort_link = |label: &str, key: &str| {
        if (key == "pushed") == (sort == Sort::Pushed) {
            format!("{label} ▾")
        } else {
            format!("<a href=\"{}?sort={key}\">{label}</a>", attr_url(&format!("/r/{repo}")))
        }
    };
    let figures = match listed.first() {
        Some(Listed::Ready(s)) => format!("{} · last push {}", html::size(s.bytes), html::time_el(s.last_push)),
        _ => format!("size and last push {}", PENDING_TEXT),
    };
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/\">Repositories</a> /</p><h1>{}</h1><p class=\"muted\">{} tag{} · {figures}</p>",
        esc(repo.as_str()),
        page.total,
        if page.total == 1 { "" } else { "s" },
    );
    if page.tags.is_empty() {
        body.push_str("<p class=\"empty\">No tags.</p>");
    } else {
        let _ = write!(
            body,
            "<table class=\"list sortable\"><thead><tr><th>{}</th><th>Digest</th><th>Platforms</th><th class=\"num\">Size</th>\
             <th>{}</th><th>Pull</th>{}</tr></thead><tbody>{rows}</tbody></table>",
            sort_link("Tag", "name"),
            sort_link("Pushed", "pushed"),
            if may_delete { "<th></th>" } else { "" },
        );
    }
    if let Some(next) = &page.next {
        let sort = if sort == Sort::Pushed { "pushed" } else { "name" };
        let _ = write!(
            body,
            "<nav class=\"pager\"><a href=\"{}?sort={sort}&amp;last={}\">Next page →</a></nav>",
            attr_url(&format!("/r/{repo}")),
            esc(&shared::query::escape(next))
        );
    }
    Ok(body)
}

/// `POST /delete-tag` (`repo`, `tag`, `csrf`, and `confirmed` once confirmed): deletes a
/// tag, as `DELETE /v2/<repo>/manifests/<tag>` does, after a confirmation page when the
/// script did not already ask.
pub(crate) async fn delete_tag(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = match Ctx::new(&state, &parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(fields) = form(body).await else {
        return ctx.error(&bad_request("the form could not be read"));
    };
    if !ctx.csrf_ok(field(&fields, "csrf")) {
        return ctx
            .error(&forbidden("the form has expired or did not come from this site: reload the page and try again"));
    }
    let (name, tag) = (field(&fields, "repo").unwrap_or(""), field(&fields, "tag").unwrap_or(""));
    let result = async {
        let repo = api::visible(&state, &ctx.viewer, name, DELETE, "delete in").await?;
        let tag: Tag = tag.parse().map_err(|e: shared::NameError| bad_request(&format!("tag {tag:?}: {e}")))?;
        Ok::<_, ApiError>((repo, tag))
    }
    .await;
    let (repo, tag) = match result {
        Ok(found) => found,
        Err(e) => return ctx.error(&e),
    };
    if field(&fields, "confirmed") != Some("1") {
        let body = format!(
            "<h1>Delete {repo}:{tag}?</h1><p>The tag goes at once; the image's data is freed by the next \
             garbage collection if nothing else uses it.</p><form method=\"post\" action=\"/delete-tag\">{}\
             <input type=\"hidden\" name=\"repo\" value=\"{repo}\"><input type=\"hidden\" name=\"tag\" value=\"{tag}\">\
             <input type=\"hidden\" name=\"confirmed\" value=\"1\"><button class=\"danger\">Delete</button> \
             <a href=\"{}\">Cancel</a></form>",
            ctx.csrf_input(),
            attr_url(&format!("/r/{repo}")),
            repo = esc(repo.as_str()),
            tag = esc(tag.as_str()),
        );
        return ctx.page(StatusCode::OK, "Delete a tag", &body);
    }
    let reference = Reference::Tag(tag.clone());
    let deleted = async {
        crate::policy::check_delete(&state.store, &state.policies, &repo, &reference).await?;
        state.store.delete_manifest(&repo, &reference).await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = deleted {
        return ctx.error(&e);
    }
    state.hub.note_repository(repo.as_str());
    let event = Event::ManifestDeleted { repo: repo.to_string(), reference: tag.to_string() };
    let client = ctx.viewer.caller.client.map_or_else(|| "-".to_string(), |c| c.to_string());
    event.log(&ctx.viewer.caller.identity, &client);
    event.attach(see_other(&format!("/r/{repo}")))
}

/// A 400 with a message.
pub(crate) fn bad_request(msg: &str) -> ApiError {
    ApiError::new(crate::error::Code::Unsupported).status(StatusCode::BAD_REQUEST).message(msg)
}

/// A 403 with a message.
pub(crate) fn forbidden(msg: &str) -> ApiError {
    ApiError::new(crate::error::Code::Denied).message(msg)
}

/// `GET /system` (delete rights on `*`): storage per repository, a page at a time, the
/// collector's last runs, and the recent webhook deliveries.
pub(crate) async fn system(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = match Ctx::new(&state, &parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(e) = api::require_admin(&ctx.viewer, "see the system page of") {
        return ctx.error(&e);
    }
    let last = q(&parts, "last").filter(|l| !l.is_empty());
    let page = match api::repo_page(&state, &ctx.viewer, "", api::DEFAULT_PAGE, last.as_deref()).await {
        Ok(p) => p,
        Err(e) => return ctx.error(&e),
    };
    let mut rows = String::new();
    let mut total = 0;
    for r in &page.repositories {
        if let Listed::Ready(s) = r {
            total += s.bytes;
        }
        let _ = write!(
            rows,
            "<tr><td><a href=\"{}\">{}</a></td><td class=\"num\">{}</td>{}</tr>",
            attr_url(&format!("/r/{}", r.name())),
            esc(r.name()),
            tag_count(r),
            figures(r).0,
        );
    }
    let mut body = format!(
        "<h1>System</h1><h2>Storage per repository</h2><p class=\"muted\">{}; {} on this page \
         (blobs shared between repositories count in each).</p><table class=\"list sortable\"><thead><tr><th>Repository</th>\
         <th class=\"num\">Tags</th><th class=\"num\">Size</th></tr></thead><tbody>{rows}</tbody></table>",
        count(page.matched, page.repositories.len()),
        html::size(total)
    );
    if let Some(next) = &page.next {
        let _ = write!(
            body,
            "<nav class=\"pager\"><a href=\"/system?last={}\">Next page →</a></nav>",
            esc(&shared::query::escape(next))
        );
    }
    let _ = write!(
        body,
        "<h2>Garbage collection</h2><p>Runs every {} s (0: never); keeps anything newer than {} s.</p>\
         <form method=\"post\" action=\"/system/gc\">{}<button>Collect now</button></form>",
        state.config.gc.interval_secs,
        state.config.gc.grace_secs,
        ctx.csrf_input()
    );
    match crate::gc::history::recent(state.store.storage().as_ref(), api::DEFAULT_RUNS).await {
        Ok(runs) => body.push_str(&runs_table(&runs)),
        Err(e) => return ctx.error(&ApiError::internal(&e)),
    }
    if !state.webhooks.is_empty() {
        body.push_str(&deliveries_table(&state.webhooks.deliveries()));
    }
    ctx.page(StatusCode::OK, "System", &body)
}

/// Webhook deliveries shown at most on the system page.
const SHOWN_DELIVERIES: usize = 50;

/// This process's recent webhook deliveries, newest first, as a table.
fn deliveries_table(deliveries: &[crate::webhooks::Delivery]) -> String {
    let mut out = String::from("<h2>Webhook deliveries</h2>");
    if deliveries.is_empty() {
        out.push_str("<p class=\"empty\">No event has been sent since this server started.</p>");
        return out;
    }
    let _ = write!(
        out,
        "<p class=\"muted\">The last {} sent by this server, newest first.</p><table class=\"list\"><thead><tr>\
         <th>Queued</th><th>Receiver</th><th>Event</th><th>Status</th><th class=\"num\">Attempts</th><th>Last answer</th>\
         </tr></thead><tbody>",
        deliveries.len().min(SHOWN_DELIVERIES)
    );
    for d in deliveries.iter().take(SHOWN_DELIVERIES).map(|d| d.shown()) {
        let queued = std::time::UNIX_EPOCH + std::time::Duration::from_millis(d.queued_ms);
        let status = serde_json::to_value(d.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let answer = match (d.last_status, &d.last_error) {
            (_, Some(e)) => format!("<span class=\"error\">{}</span>", esc(e)),
            (Some(s), None) => s.to_string(),
            (None, None) => "-".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>#{} {}</td><td>{} {}{}{}</td><td class=\"status-{status}\">{status}</td>\
             <td class=\"num\">{}</td><td>{answer}</td></tr>",
            html::time_el(Some(queued)),
            d.webhook,
            esc(&d.url),
            esc(&d.action),
            esc(&d.repository),
            // A digest follows `@`, a tag `:`.
            if d.reference.contains(':') { "@" } else { ":" },
            esc(&d.reference),
            d.attempts,
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The collector's last runs, as a table.
fn runs_table(runs: &[crate::gc::history::Run]) -> String {
    if runs.is_empty() {
        return "<p class=\"empty\">No collection has run yet.</p>".into();
    }
    let mut out = String::from(
        "<h3>Last runs</h3><table class=\"list\"><thead><tr><th>Started</th><th class=\"num\">Took</th>\
         <th class=\"num\">Manifests</th><th class=\"num\">Blobs</th><th class=\"num\">Freed</th><th>Result</th></tr></thead><tbody>",
    );
    for r in runs {
        let started = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_ms);
        let result =
            r.error.as_deref().map_or_else(|| "ok".to_string(), |e| format!("<span class=\"error\">{}</span>", esc(e)));
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{:.1} s</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{result}</td></tr>",
            html::time_el(Some(started)),
            r.duration_ms as f64 / 1000.0,
            r.manifests,
            r.blobs,
            html::size(r.bytes_freed + r.driver_bytes),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// `POST /system/gc`: starts a collection, as `POST /api/v1/gc`.
pub(crate) async fn system_gc(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = match Ctx::new(&state, &parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let fields = form(body).await.unwrap_or_default();
    if !ctx.csrf_ok(field(&fields, "csrf")) {
        return ctx
            .error(&forbidden("the form has expired or did not come from this site: reload the page and try again"));
    }
    if let Err(e) = api::require_admin(&ctx.viewer, "collect garbage in") {
        return ctx.error(&e);
    }
    let started = api::spawn_collection(&state);
    let text = if started {
        "A collection started. It runs in the background; the registry's log reports what it freed."
    } else {
        "A collection started here earlier is still running."
    };
    ctx.page(
        StatusCode::ACCEPTED,
        "System",
        &format!("<h1>Garbage collection</h1><p>{text}</p><p><a href=\"/system\">Back</a></p>"),
    )
}

/// What a figure still being computed says.
const PENDING_TEXT: &str = "being computed (reload in a moment)";

/// The size cell (a `<td>`) and the last push (a `<time>`) of a listed repository; "…" while
/// its figures are computed in the background.
fn figures(r: &Listed) -> (String, String) {
    match r {
        Listed::Ready(s) => (
            format!("<td class=\"num\" data-value=\"{}\">{}</td>", s.bytes, html::size(s.bytes)),
            html::time_el(s.last_push),
        ),
        Listed::Pending { .. } => (
            format!("<td class=\"num pending\" data-value=\"\" title=\"{PENDING_TEXT}\">…</td>"),
            format!("<span class=\"pending\" title=\"{PENDING_TEXT}\">…</span>"),
        ),
    }
}

/// The tag count of a listed repository; "…" while unknown.
fn tag_count(r: &Listed) -> String {
    r.tags().map_or_else(|| "…".into(), |n| n.to_string())
}

/// "N repositories" when the total is known, else how many this page shows.
fn count(matched: Option<usize>, shown: usize) -> String {
    match matched {
        Some(1) => "1 repository".to_string(),
        Some(n) => format!("{n} repositories"),
        None => format!("{shown} repositor{} on this page", if shown == 1 { "y" } else { "ies" }),
    }
}
