//! Signing in and out of the web UI with the users of `[auth]`'s htpasswd file: `GET
//! /login` (the form), `POST /login` (checks the password as `/v2/` does, failed logins
//! counted alike, then sets the session cookie and goes back to `next`), `POST /logout`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::html::esc;
use super::pages::{bad_request, field, forbidden, form, q, see_other, Ctx};
use super::session;
use crate::auth::{Identity, Refusal};
use crate::AppState;

/// `next` when it is a path of this site (never another site: `//host` or `/\host`).
fn local(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn form_page(ctx: &Ctx, status: StatusCode, next: &str, message: Option<&str>) -> Response {
    if ctx.state.auth.is_none() {
        let body = "<h1>Sign in</h1><p>Access control is off on this registry: everyone may do everything. \
                    Configure <code>[auth]</code> to have accounts.</p>";
        return ctx.page(StatusCode::OK, "Sign in", body);
    }
    let message = message.map_or_else(String::new, |m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)));
    let body = format!(
        "<h1>Sign in</h1>{message}<form method=\"post\" action=\"/login\" class=\"login\">{}\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>User name <input name=\"user\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button>Sign in</button></form>",
        ctx.csrf_input(),
        esc(next)
    );
    ctx.page(status, "Sign in", &body)
}

/// `GET /login`.
pub(crate) async fn form_get(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match Ctx::new(&state, &parts).await {
        Ok(ctx) => form_page(&ctx, StatusCode::OK, &local(q(&parts, "next").as_deref()), None),
        Err(r) => r,
    }
}

/// `POST /login`.
pub(crate) async fn submit(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = match Ctx::new(&state, &parts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(fields) = form(body).await else { return ctx.error(&bad_request("the form could not be read")) };
    let next = local(field(&fields, "next"));
    if !ctx.csrf_ok(field(&fields, "csrf")) {
        return form_page(&ctx, StatusCode::FORBIDDEN, &next, Some("The form expired: please sign in again."));
    }
    let Some(auth) = state.auth.clone() else { return form_page(&ctx, StatusCode::OK, &next, None) };
    let (user, password) = (field(&fields, "user").unwrap_or(""), field(&fields, "password").unwrap_or(""));
    match auth.login(user, password, ctx.viewer.caller.client).await {
        Ok((Identity::User(name), fingerprint)) => {
            let ttl = state.config.ui.session_ttl_secs;
            let cookie = state.hub.keys.session_cookie(&name, &fingerprint, ttl);
            let mut resp = see_other(&next);
            let set = session::set_cookie(session::SESSION_COOKIE, &cookie, ttl, ctx.secure());
            if let Ok(v) = HeaderValue::from_str(&set) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            tracing::info!(target: "audit", event = "ui_login", user = name, "signed in to the web UI");
            resp
        }
        Ok(_) => {
            form_page(&ctx, StatusCode::FORBIDDEN, &next, Some("Robot accounts cannot sign in here; use docker login."))
        }
        Err(Refusal::TooMany(_)) => {
            form_page(&ctx, StatusCode::TOO_MANY_REQUESTS, &next, Some("Too many failed sign-ins: try again later."))
        }
        Err(Refusal::Internal(e)) => ctx.error(&crate::error::ApiError::internal(&e)),
        Err(_) => form_page(&ctx, StatusCode::UNAUTHORIZED, &next, Some("Wrong user name or password.")),
    }
}

/// `POST /logout`: removes the session cookie.
pub(crate) async fn logout(State(state): State<AppState>, req: Request) -> Response {
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
    let mut resp = see_other("/");
    let set = session::set_cookie(session::SESSION_COOKIE, "", 0, ctx.secure());
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
