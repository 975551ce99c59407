//! The token endpoint, `/token`: issues the short-lived JWTs that the registry's challenges
//! send clients to fetch (distribution's docs/spec/auth/token.md and oauth.md).
//!
//! - `GET /token?service=…&scope=…[&scope=…][&offline_token=true]`, with basic
//!   authentication (a user or robot) or none (anonymous);
//! - `POST /token` with an `application/x-www-form-urlencoded` body: `grant_type=password`
//!   (`username`, `password`) or `grant_type=refresh_token` (`refresh_token`), plus `scope`
//!   (space-separated), `service`, `client_id` and `access_type=offline` for a refresh token.
//!   This is what `docker login` uses; the refresh token becomes Docker's identity token.
//!
//! The token grants the intersection of what was asked and what the rules allow (possibly
//! nothing: that is not an error, the registry refuses the request later). Refresh tokens are
//! JWTs too, signed by the same key, carrying a fingerprint of the credential they were issued
//! for: they stop working when the password changes or the robot is revoked, and they are
//! never accepted as access tokens.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::date::rfc3339;
use shared::RepoName;

use super::accounts::{now_secs, random_bytes};
use super::jwt::{self, Audience, Claims, ResourceActions};
use super::rules::{self, Identity};
use super::{client_addr, decode_basic, Auth, Refusal};
use crate::error::{ApiError, Code};
use crate::AppState;

/// The largest token request body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// `GET` and `POST /token`.
pub(crate) async fn endpoint(State(state): State<AppState>, req: Request) -> Response {
    let Some(auth) = state.auth.clone() else {
        return ApiError::new(Code::Unsupported)
            .status(StatusCode::NOT_FOUND)
            .detail("unknown endpoint")
            .into_response();
    };
    let client = client_addr(&req, auth.config.trust_forwarded_for);
    let (parts, body) = req.into_parts();
    let result = match parts.method {
        Method::GET => get(&auth, &parts.headers, parts.uri.query().unwrap_or(""), client).await,
        Method::POST => post(&auth, body, client).await,
        _ => Err(ApiError::new(Code::Unsupported).detail("the token endpoint takes GET and POST")),
    };
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

fn form(text: &str) -> Vec<(String, String)> {
    shared::query::pairs(text)
}

fn param<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn get(auth: &Auth, headers: &HeaderMap, query: &str, client: Option<IpAddr>) -> Result<Response, ApiError> {
    let params = form(query);
    let scopes: Vec<&str> = params.iter().filter(|(k, _)| k == "scope").flat_map(|(_, v)| v.split(' ')).collect();
    let (identity, credential) = match headers.get(header::AUTHORIZATION) {
        None => (Identity::Anonymous, None),
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            let Some((user, password)) = scheme.eq_ignore_ascii_case("basic").then(|| decode_basic(rest)).flatten()
            else {
                return Err(refused(auth, Refusal::Malformed));
            };
            let (identity, fp) = auth.login(&user, &password, client).await.map_err(|r| refused(auth, r))?;
            (identity, Some(fp))
        }
    };
    let offline = param(&params, "offline_token") == Some("true");
    let refresh = match (&credential, offline) {
        (Some(fp), true) => Some(refresh_token(auth, &identity, fp).await?),
        _ => None,
    };
    issue(auth, &identity, &scopes, refresh)
}

async fn post(auth: &Auth, body: Body, client: Option<IpAddr>) -> Result<Response, ApiError> {
    let bytes = crate::body::read_limited(body, MAX_FORM_BYTES).await?;
    let params = form(&String::from_utf8_lossy(&bytes));
    let scopes: Vec<&str> = param(&params, "scope").unwrap_or("").split(' ').collect();
    match param(&params, "grant_type") {
        Some("password") => {
            let (user, password) = (param(&params, "username").unwrap_or(""), param(&params, "password").unwrap_or(""));
            let (identity, fp) = auth.login(user, password, client).await.map_err(|r| refused(auth, r))?;
            let refresh = match param(&params, "access_type") {
                Some("offline") => Some(refresh_token(auth, &identity, &fp).await?),
                _ => None,
            };
            issue(auth, &identity, &scopes, refresh)
        }
        Some("refresh_token") => {
            let token = param(&params, "refresh_token").unwrap_or("");
            let identity = check_refresh(auth, token, client).await.map_err(|r| refused(auth, r))?;
            issue(auth, &identity, &scopes, Some(token.to_string()))
        }
        other => Err(ApiError::new(Code::Unsupported)
            .status(StatusCode::BAD_REQUEST)
            .detail(format!("grant_type {:?} is not supported; use password or refresh_token", other.unwrap_or("")))),
    }
}

fn refused(auth: &Auth, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::TooMany(wait) => ApiError::new(Code::TooManyRequests)
            .detail("too many failed logins from this address; try again later")
            .header("retry-after", &wait.to_string()),
        Refusal::Internal(e) => ApiError::internal(&e),
        Refusal::BadCredentials | Refusal::BadToken(_) | Refusal::Malformed => ApiError::new(Code::Unauthorized)
            .detail("incorrect user name, password or token")
            .header("www-authenticate", &format!("Basic realm=\"{}\"", auth.config.service)),
    }
}

/// A refresh token for `identity`, whose credential has fingerprint `fp`; it lives
/// `auth.refresh_token_ttl_secs`, and no longer than a robot does.
async fn refresh_token(auth: &Auth, identity: &Identity, fp: &str) -> Result<String, ApiError> {
    let now = now_secs();
    let mut exp = now.saturating_add(auth.config.refresh_token_ttl_secs as i64);
    if let Identity::Robot(name) = identity {
        if let Ok(Some(robot)) = auth.robots.get(name).await {
            exp = exp.min(robot.expires.unwrap_or(i64::MAX));
        }
    }
    let claims = Claims {
        iss: auth.config.issuer.clone(),
        sub: identity.subject(),
        aud: Audience::One(auth.config.service.clone()),
        exp,
        nbf: None,
        iat: Some(now),
        jti: Some(jti().map_err(|e| ApiError::internal(&e))?),
        access: Vec::new(),
        credential: Some(fp.to_string()),
    };
    auth.signing.sign(&claims).map_err(|e| ApiError::internal(&e))
}

/// The name failed refresh tokens are counted under (a token that does not verify names
/// no one; and one that does is counted with the others, so the limit is checked before
/// the token is read).
const REFRESH_USER: &str = "-";

/// The identity a refresh token stands for, if it is still good.
async fn check_refresh(auth: &Auth, token: &str, client: Option<IpAddr>) -> Result<Identity, Refusal> {
    let ip = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Some(wait) = auth.limiter.blocked(ip, REFRESH_USER) {
        return Err(Refusal::TooMany(wait));
    }
    let now = now_secs();
    let checked = jwt::decode_verified(token, &auth.own_keys).map_err(|e| e.to_string()).and_then(|c| {
        let ok = c.iss == auth.config.issuer
            && c.aud.contains(&auth.config.service)
            && now <= c.exp + super::LEEWAY_SECS
            && c.credential.is_some();
        if ok {
            Ok(c)
        } else {
            Err("not a valid refresh token for this registry".to_string())
        }
    });
    let claims = match checked {
        Ok(c) => c,
        Err(reason) => {
            auth.limiter.failed(ip, REFRESH_USER);
            tracing::warn!(
                target: "audit",
                event = "login_failed",
                user = "-",
                client = %super::shown(client),
                reason,
                "refresh token refused",
            );
            return Err(Refusal::BadToken(reason));
        }
    };
    let identity = Identity::from_subject(&claims.sub);
    let current = match &identity {
        Identity::User(user) => auth.users.fingerprint(user),
        Identity::Robot(name) => auth.robots.get(name).await.map_err(Refusal::Internal)?.map(|r| r.fingerprint()),
        _ => None,
    };
    if current.is_none() || current != claims.credential {
        auth.limiter.failed(ip, REFRESH_USER);
        tracing::warn!(
            target: "audit",
            event = "login_failed",
            user = %claims.sub,
            client = %super::shown(client),
            reason = "the account or its password changed since the refresh token was issued",
            "refresh token refused",
        );
        return Err(Refusal::BadCredentials);
    }
    Ok(identity)
}

fn jti() -> Result<String, super::AccountError> {
    Ok(hex::encode(random_bytes::<16>()?))
}

/// The access `identity` gets of `scopes`: for each repository scope, the actions asked
/// that the rules allow; the catalog to anyone (it lists only what the caller may pull).
pub(crate) fn grant(auth: &Auth, identity: &Identity, scopes: &[&str]) -> Vec<ResourceActions> {
    let mut out: Vec<ResourceActions> = Vec::new();
    for scope in scopes.iter().filter(|s| !s.is_empty()) {
        let Some((kind_name, actions)) = scope.rsplit_once(':') else { continue };
        let Some((kind, name)) = kind_name.split_once(':') else { continue };
        match kind {
            "repository" if name.parse::<RepoName>().is_ok() => {
                let granted = rules::bits_of_words(actions.split(',')) & auth.allowed(identity, name);
                if granted == 0 {
                    continue;
                }
                match out.iter_mut().find(|a| a.kind == "repository" && a.name == name) {
                    Some(existing) => {
                        let bits = rules::bits_of_words(existing.actions.iter().map(String::as_str)) | granted;
                        existing.actions = rules::words(bits).into_iter().map(str::to_string).collect();
                    }
                    None => out.push(ResourceActions {
                        kind: "repository".into(),
                        name: name.to_string(),
                        actions: rules::words(granted).into_iter().map(str::to_string).collect(),
                    }),
                }
            }
            "registry" if name == "catalog" && !out.iter().any(|a| a.kind == "registry") => {
                out.push(ResourceActions {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                });
            }
            _ => {}
        }
    }
    out
}

/// Signs an access token for `identity` with the granted part of `scopes`.
fn issue(auth: &Auth, identity: &Identity, scopes: &[&str], refresh: Option<String>) -> Result<Response, ApiError> {
    let now = now_secs();
    let access = grant(auth, identity, scopes);
    let scope =
        access.iter().map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(","))).collect::<Vec<_>>().join(" ");
    let ttl = auth.config.token_ttl_secs;
    let claims = Claims {
        iss: auth.config.issuer.clone(),
        sub: identity.subject(),
        aud: Audience::One(auth.config.service.clone()),
        exp: now.saturating_add(ttl as i64),
        nbf: Some(now),
        iat: Some(now),
        jti: Some(jti().map_err(|e| ApiError::internal(&e))?),
        access,
        credential: None,
    };
    let token = auth.signing.sign(&claims).map_err(|e| ApiError::internal(&e))?;
    tracing::debug!(who = %identity, scope, "token issued");
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": rfc3339(now),
        "scope": scope,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = form("grant_type=password&username=alice&password=p%40ss+word&scope=repository%3Aa%3Apull");
        assert_eq!(param(&f, "password"), Some("p@ss word"));
        assert_eq!(param(&f, "scope"), Some("repository:a:pull"));
        assert_eq!(param(&f, "missing"), None);
    }
}
