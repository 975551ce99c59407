//! Access control: who the caller is, what it may do, and the answers that tell a client how
//! to sign in (distribution's token authentication, docs/spec/auth/token.md).
//!
//! [`guard`] runs before every `/v2/` handler when `[auth]` is configured (without it, the
//! registry is open, as before, and [`guard`] only writes the audit log). It finds the caller
//! from the `Authorization` header:
//!
//! - none: anonymous, allowed what the `anonymous` rules grant;
//! - `Basic`: a user of the htpasswd file or a robot (`robot$NAME`), allowed what the rules
//!   grant it; a wrong password answers 401 and counts as a failed login;
//! - `Bearer`: a JWT issued by berth's token endpoint ([`token`]) or trusted external token
//!   server, checked for signature, issuer, audience, expiry and, per request, scope: it may do
//!   exactly what its `access` claim says. Verified tokens are cached until they expire, so a
//!   request with a known token costs a hash lookup.
//!
//! A request its caller may not make answers as distribution does: 401 `UNAUTHORIZED` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` (and `error="insufficient_scope"`
//! for a token lacking the scope, so the client fetches one that has it), or 403 `DENIED` for
//! signed-in basic credentials lacking the permission. Too many failed logins for one user
//! name from one client address (or, with a much higher limit, from one address at all)
//! answer 429 `TOOMANYREQUESTS` until the window passes.
//!
//! Every push, delete and failed login is logged on the `audit` tracing target: who, what,
//! from where. Passwords, secrets and tokens are never logged.

pub mod accounts;
mod audit;
pub mod jwt;
pub mod rules;
pub mod token;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;
use shared::RepoName;

use self::accounts::{now_secs, AccountError, Htpasswd, RobotCache, ROBOT_PREFIX};
use self::audit::{Audit, Counter, Limiter};
use self::jwt::{JwtError, SigningKey, VerifyKey};
pub use self::rules::Identity;
use self::rules::{Rules, DELETE, PULL, PUSH};
use crate::config::{AuthConfig, Config};
use crate::error::{ApiError, Code};
use crate::paths;
use crate::route::{query, Route};
use crate::storage::{Storage, StorageError};
use crate::AppState;

/// Clock skew allowed on a token's `exp` and `nbf`, as distribution allows.
pub const LEEWAY_SECS: i64 = 60;

/// Verified tokens kept at most; the cache is pruned (then emptied) past this.
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// Why access control could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The token signing key could not be read or made.
    #[error("token signing key {path}: {reason}")]
    SigningKey {
        /// The file, or the storage path of the generated key.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A key of an external token server could not be read.
    #[error("external token key {path}: {reason}")]
    ExternalKey {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The accounts could not be read.
    #[error(transparent)]
    Accounts(#[from] AccountError),
    /// The storage failed.
    #[error("storage")]
    Storage(#[from] StorageError),
}

/// A token that passed every check but scope: what it grants.
#[derive(Debug)]
pub struct VerifiedToken {
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued by berth itself (else by the external token server).
    pub own: bool,
    /// The identity it names.
    pub identity: Identity,
    grants: HashMap<String, u8>,
    catalog: bool,
}

/// How the caller proved who it is.
#[derive(Debug, Clone)]
pub enum Proof {
    /// It did not: anonymous.
    Nothing,
    /// A password or robot secret (basic authentication).
    Password,
    /// A bearer token.
    Token(Arc<VerifiedToken>),
}

/// The caller of a request, as [`guard`] found it; handlers find it in the request's
/// extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub identity: Identity,
    /// How it proved it.
    pub proof: Proof,
    /// From where, when known.
    pub client: Option<IpAddr>,
}

/// Why a caller's credentials were not accepted.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Wrong user name or password, or unknown, revoked or expired robot.
    BadCredentials,
    /// A token that does not verify, or has expired.
    BadToken(String),
    /// An `Authorization` header berth cannot read.
    Malformed,
    /// Too many failed logins from this address; retry after this many seconds.
    TooMany(u64),
    /// The storage failed while looking the account up.
    Internal(AccountError),
}

/// Access control for one registry: accounts, rules, keys and caches.
pub struct Auth {
    config: AuthConfig,
    tls: bool,
    signing: SigningKey,
    own_keys: Vec<VerifyKey>,
    external_keys: Vec<VerifyKey>,
    users: Htpasswd,
    robots: RobotCache,
    rules: Rules,
    tokens: RwLock<HashMap<Box<str>, Arc<VerifiedToken>>>,
    limiter: Limiter,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("service", &self.config.service).field("kid", &self.signing.kid()).finish()
    }
}

impl Auth {
    /// Access control for `config` (whose `auth` section must be set) over `storage`, which
    /// holds the robots and, unless a key file is configured, the signing key.
    pub async fn new(config: &Config, storage: Arc<dyn Storage>) -> Result<Auth, AuthSetupError> {
        let auth = config.auth.clone().unwrap_or_default();
        let signing = match &auth.signing_key {
            Some(path) => {
                let err = |reason: String| AuthSetupError::SigningKey { path: path.display().to_string(), reason };
                let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                SigningKey::from_pem(&pem).map_err(|e| err(e.to_string()))?
            }
            None => stored_signing_key(storage.as_ref()).await?,
        };
        let mut external_keys = Vec::new();
        if let Some(ext) = &auth.external {
            for path in ext.keys.iter().chain(&ext.jwks) {
                let err = |reason: String| AuthSetupError::ExternalKey { path: path.display().to_string(), reason };
                let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                let keys = if ext.jwks.as_ref() == Some(path) {
                    VerifyKey::from_jwks(&bytes)
                } else {
                    VerifyKey::from_pem(&bytes)
                };
                external_keys.extend(keys.map_err(|e| err(e.to_string()))?);
            }
        }
        let users = Htpasswd::open(auth.htpasswd.as_deref(), Duration::from_secs(auth.password_cache_secs))?;
        tracing::info!(kid = signing.kid(), external_keys = external_keys.len(), "access control on");
        Ok(Auth {
            tls: config.tls.is_some(),
            own_keys: vec![signing.verify_key()],
            signing,
            external_keys,
            users,
            robots: RobotCache::new(storage, Duration::from_secs(auth.robot_cache_secs)),
            rules: Rules::new(&auth),
            tokens: RwLock::new(HashMap::new()),
            limiter: Limiter {
                by_user: Counter::new(auth.max_failed_logins, Duration::from_secs(auth.failed_login_window_secs)),
                by_address: Counter::new(
                    auth.max_failed_logins_per_address,
                    Duration::from_secs(auth.failed_login_window_secs),
                ),
            },
            config: auth,
        })
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The key tokens are signed with.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The fingerprint of a user's current password hash, `None` when there is no such user
    /// (sessions of the web UI are checked against it).
    pub(crate) fn user_fingerprint(&self, user: &str) -> Option<String> {
        self.users.fingerprint(user)
    }

    /// What `identity` may do on `repo`, by the rules.
    pub fn allowed(&self, identity: &Identity, repo: &str) -> u8 {
        self.rules.allowed(identity, repo)
    }

    /// Checks a user name and password (or robot name and secret). Counts failures per
    /// client address and logs them on the audit target. Returns the identity and a
    /// fingerprint of its credential.
    pub(crate) async fn login(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(Identity, String), Refusal> {
        let ip = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Some(wait) = self.limiter.blocked(ip, user) {
            tracing::warn!(
                target: "audit",
                event = "login_failed",
                user,
                client = %shown(client),
                reason = "too many failed logins",
                "login refused",
            );
            return Err(Refusal::TooMany(wait));
        }
        let found = if let Some(name) = user.strip_prefix(ROBOT_PREFIX) {
            match self.robots.get(name).await {
                Ok(Some(robot)) if robot.check(password) => {
                    Some((Identity::Robot(name.to_string()), robot.fingerprint()))
                }
                Ok(_) => None,
                Err(e) => return Err(Refusal::Internal(e)),
            }
        } else {
            self.users.verify(user, password).await.map(|fp| (Identity::User(user.to_string()), fp))
        };
        match found {
            Some(found) => Ok(found),
            None => {
                self.limiter.failed(ip, user);
                tracing::warn!(
                    target: "audit",
                    event = "login_failed",
                    user,
                    client = %shown(client),
                    reason = "wrong user name or password",
                    "login failed",
                );
                Err(Refusal::BadCredentials)
            }
        }
    }

    /// Checks a bearer token: signature, issuer, audience, times; for robots of berth's own
    /// tokens, that the robot still exists.
    pub(crate) async fn verify_token(&self, token: &str) -> Result<Arc<VerifiedToken>, Refusal> {
        let now = now_secs();
        let cached = self.tokens.read().unwrap_or_else(PoisonError::into_inner).get(token).cloned();
        let verified = match cached {
            Some(v) if now <= v.exp + LEEWAY_SECS => v,
            Some(_) => {
                self.tokens.write().unwrap_or_else(PoisonError::into_inner).remove(token);
                return Err(Refusal::BadToken("expired".into()));
            }
            None => {
                let v = Arc::new(self.verify_uncached(token, now).map_err(Refusal::BadToken)?);
                let mut cache = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= TOKEN_CACHE_ENTRIES {
                    cache.retain(|_, t| now <= t.exp + LEEWAY_SECS);
                    if cache.len() >= TOKEN_CACHE_ENTRIES {
                        cache.clear();
                    }
                }
                cache.insert(token.into(), v.clone());
                v
            }
        };
        if let (true, Identity::Robot(name)) = (verified.own, &verified.identity) {
            match self.robots.get(name).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(Refusal::BadToken(format!("robot {name} was revoked or has expired"))),
                Err(e) => return Err(Refusal::Internal(e)),
            }
        }
        Ok(verified)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<VerifiedToken, String> {
        let (claims, own) = match jwt::decode_verified(token, &self.own_keys) {
            Ok(c) => (c, true),
            Err(JwtError::Signature) if !self.external_keys.is_empty() => {
                (jwt::decode_verified(token, &self.external_keys).map_err(|e| e.to_string())?, false)
            }
            Err(e) => return Err(e.to_string()),
        };
        let issuer = match (&self.config.external, own) {
            (_, true) => self.config.issuer.as_str(),
            (Some(external), false) => external.issuer.as_str(),
            (None, false) => return Err("no external token server is trusted".into()),
        };
        if claims.iss != issuer {
            return Err(format!("issuer {:?} is not trusted", claims.iss));
        }
        if !claims.aud.contains(&self.config.service) {
            return Err("the token is for another service".into());
        }
        if claims.credential.is_some() {
            return Err("a refresh token is not an access token".into());
        }
        if now > claims.exp + LEEWAY_SECS {
            return Err("expired".into());
        }
        if claims.nbf.is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
            return Err("not valid yet".into());
        }
        let mut grants: HashMap<String, u8> = HashMap::new();
        let mut catalog = false;
        for access in &claims.access {
            let bits = rules::bits_of_words(access.actions.iter().map(String::as_str));
            match access.kind.as_str() {
                "repository" if bits != 0 => *grants.entry(access.name.clone()).or_default() |= bits,
                "registry" if access.name == "catalog" && access.actions.iter().any(|a| a == "*") => catalog = true,
                _ => {}
            }
        }
        let identity = if own { Identity::from_subject(&claims.sub) } else { Identity::External(claims.sub.clone()) };
        Ok(VerifiedToken { exp: claims.exp, own, identity, grants, catalog })
    }

    /// Who sent a request, from its `Authorization` header.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Caller, Refusal> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller { identity: Identity::Anonymous, proof: Proof::Nothing, client });
        };
        let value = value.to_str().map_err(|_| Refusal::Malformed)?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or(Refusal::Malformed)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = self.verify_token(rest.trim()).await?;
            Ok(Caller { identity: token.identity.clone(), proof: Proof::Token(token), client })
        } else if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = decode_basic(rest).ok_or(Refusal::Malformed)?;
            let (identity, _) = self.login(&user, &password, client).await?;
            Ok(Caller { identity, proof: Proof::Password, client })
        } else {
            Err(Refusal::Malformed)
        }
    }

    /// What the caller may do on `repo`: its token's grants, or the rules.
    pub fn permitted(&self, caller: &Caller, repo: &str) -> u8 {
        match &caller.proof {
            Proof::Token(t) => t.grants.get(repo).copied().unwrap_or(0),
            _ => self.rules.allowed(&caller.identity, repo),
        }
    }

    /// The token endpoint URL for challenges.
    fn realm(&self, headers: &HeaderMap, uri: &Uri) -> String {
        if let Some(realm) = &self.config.realm {
            return realm.clone();
        }
        let forwarded = |name: &str| {
            self.config
                .trust_forwarded_for
                .then(|| headers.get(name).and_then(|v| v.to_str().ok()))
                .flatten()
                .and_then(|v| v.split(',').next_back())
                .map(str::trim)
        };
        let scheme = forwarded("x-forwarded-proto").unwrap_or(if self.tls { "https" } else { "http" });
        let host = forwarded("x-forwarded-host")
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        format!("{scheme}://{host}/token")
    }

    /// A 401 with the Bearer challenge for `scope` (and `error` when given).
    fn challenge(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        scope: &[(String, u8)],
        error: Option<&str>,
        catalog: bool,
    ) -> Response {
        let mut value = format!("Bearer realm=\"{}\",service=\"{}\"", self.realm(headers, uri), self.config.service);
        let mut scopes: Vec<String> =
            scope.iter().map(|(name, bits)| format!("repository:{name}:{}", rules::words(*bits).join(","))).collect();
        if catalog {
            scopes.push("registry:catalog:*".into());
        }
        if !scopes.is_empty() {
            value.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
        }
        if let Some(e) = error {
            value.push_str(&format!(",error=\"{e}\""));
        }
        let mut detail: Vec<serde_json::Value> = Vec::new();
        for (name, bits) in scope {
            for action in rules::words(*bits) {
                detail.push(json!({ "Type": "repository", "Name": name, "Action": action }));
            }
        }
        if catalog {
            detail.push(json!({ "Type": "registry", "Name": "catalog", "Action": "*" }));
        }
        let mut err = ApiError::new(Code::Unauthorized);
        if !detail.is_empty() {
            err = err.detail_json(serde_json::Value::Array(detail));
        }
        let mut resp = err.into_response();
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// The answer to refused credentials.
    fn refuse(
        &self,
        refusal: Refusal,
        need: &Need,
        headers: &HeaderMap,
        uri: &Uri,
        client: Option<IpAddr>,
    ) -> Response {
        let (scope, catalog) = need.scope();
        match refusal {
            Refusal::BadCredentials => self.challenge(headers, uri, &scope, None, catalog),
            Refusal::Malformed => self.challenge(headers, uri, &scope, Some("invalid_request"), catalog),
            Refusal::BadToken(reason) => {
                tracing::info!(
                    target: "audit",
                    event = "token_refused",
                    client = %shown(client),
                    reason,
                    "bearer token refused",
                );
                self.challenge(headers, uri, &scope, Some("invalid_token"), catalog)
            }
            Refusal::TooMany(wait) => ApiError::new(Code::TooManyRequests)
                .detail("too many failed logins from this address; try again later")
                .header("retry-after", &wait.to_string())
                .into_response(),
            Refusal::Internal(e) => ApiError::internal(&e).into_response(),
        }
    }
}

/// Reads the signing key from storage, generating and storing it (create-only) the first
/// time, so every replica on the storage signs with the same key.
async fn stored_signing_key(storage: &dyn Storage) -> Result<SigningKey, AuthSetupError> {
    let err = |reason: String| AuthSetupError::SigningKey { path: paths::TOKEN_KEY.into(), reason };
    match storage.read(paths::TOKEN_KEY).await {
        Ok(pem) => return SigningKey::from_pem(&pem).map_err(|e| err(e.to_string())),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let (key, pem) = SigningKey::generate().map_err(|e| err(e.to_string()))?;
    if storage.put_if_absent(paths::TOKEN_KEY, Bytes::from(pem)).await? {
        tracing::info!(kid = key.kid(), "token signing key generated and stored");
        return Ok(key);
    }
    // Another replica wrote one first: use that.
    let pem = storage.read(paths::TOKEN_KEY).await?;
    SigningKey::from_pem(&pem).map_err(|e| err(e.to_string()))
}

/// `user:password` of a basic credential.
pub(crate) fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A client address as logged.
fn shown(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "-".to_string(), |ip| ip.to_string())
}

/// The client's address: the connection's peer, or the last `X-Forwarded-For` entry when
/// trusted.
pub(crate) fn client_addr(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    client_addr_of(req.headers(), req.extensions(), trust_forwarded_for)
}

/// [`client_addr`] from a request's parts.
pub(crate) fn client_addr_of(
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|ip| ip.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| ext.get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: not an API path, or one the handlers refuse without touching a repository.
    Open,
    /// `/v2/`: any signed-in caller (so `docker login` can check credentials).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// Some of pull, push, delete on a repository; for a mount, also pull on the source.
    Repo { name: String, bits: u8, mount: Option<Mount> },
}

/// A cross-repository mount asked for with `POST ?mount=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mount {
    /// `from=` names a valid repository.
    From(String),
    /// No (valid) `from`: berth would look in every repository, which would let a caller
    /// reach blobs of repositories it cannot read, so with auth on it does a plain upload.
    Anywhere,
}

impl Need {
    /// What `method` on `uri` needs, `route` being the request's.
    pub(crate) fn of(method: &Method, uri: &Uri, route: Option<&Route>) -> Need {
        let Some(route) = route else { return Need::Open };
        let read_write = |m: &Method| match *m {
            Method::GET | Method::HEAD => PULL,
            Method::DELETE => DELETE,
            _ => PUSH,
        };
        let (name, bits) = match route {
            Route::Base => return Need::Base,
            Route::Catalog => return Need::Catalog,
            Route::Tags(n) | Route::Referrers(n, _) => (n, PULL),
            Route::Manifest(n, _) | Route::Blob(n, _) => (n, read_write(method)),
            Route::UploadStart(n) | Route::Upload(n, _) => (n, PUSH),
        };
        if name.parse::<RepoName>().is_err() {
            return Need::Open;
        }
        let mut mount = None;
        if matches!(route, Route::UploadStart(_)) && *method == Method::POST && query(uri, "mount").is_some() {
            mount = Some(match query(uri, "from").filter(|f| f.parse::<RepoName>().is_ok()) {
                Some(from) => Mount::From(from),
                None => Mount::Anywhere,
            });
        }
        Need::Repo { name: name.to_string(), bits, mount }
    }

    /// The scope a challenge names, and whether it is the catalog.
    fn scope(&self) -> (Vec<(String, u8)>, bool) {
        match self {
            Need::Repo { name, bits, mount } => {
                let bits = if *bits == PUSH { PULL | PUSH } else { *bits };
                let mut scope = vec![(name.clone(), bits)];
                // A mount also needs the source: asking for both at once saves a round trip
                // (a token without the source's pull gets a plain upload, see `guard`).
                if let Some(Mount::From(from)) = mount {
                    scope.push((from.clone(), PULL));
                }
                (scope, false)
            }
            Need::Catalog => (Vec::new(), true),
            _ => (Vec::new(), false),
        }
    }
}

/// Which repositories `_catalog` may list for the caller.
#[derive(Clone)]
pub struct CatalogFilter(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl CatalogFilter {
    /// True when the caller may see `repo`.
    pub fn allows(&self, repo: &str) -> bool {
        (self.0)(repo)
    }
}

/// Removes the mount arguments from a POST, so the handler starts a plain upload.
fn without_mount(uri: &Uri) -> Uri {
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        // Keys compared decoded, as the handler reads them: `%6Dount=` is `mount=` too.
        .filter(|p| !p.is_empty() && !shared::query::pairs(p).iter().any(|(k, _)| k == "mount" || k == "from"))
        .collect();
    let text = if query.is_empty() { uri.path().to_string() } else { format!("{}?{}", uri.path(), query.join("&")) };
    text.parse().unwrap_or_else(|_| uri.clone())
}

/// The middleware in front of the API: authentication and authorisation when `[auth]` is
/// set, and the audit log always.
pub(crate) async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(auth) = state.auth.clone() else {
        let audit = Audit::new("anonymous".into(), client_addr(&req, false));
        let resp = next.run(req).await;
        audit.record(&resp);
        return resp;
    };
    let need = Need::of(req.method(), req.uri(), req.extensions().get::<Route>());
    if need == Need::Open {
        return next.run(req).await;
    }
    let client = client_addr(&req, auth.config.trust_forwarded_for);
    let caller = match auth.authenticate(req.headers(), client).await {
        Ok(c) => c,
        Err(refusal) => return auth.refuse(refusal, &need, req.headers(), req.uri(), client),
    };
    let token_error = matches!(caller.proof, Proof::Token(_)).then_some("insufficient_scope");
    match &need {
        Need::Open => {}
        Need::Base => {
            if matches!(caller.proof, Proof::Nothing) {
                return auth.challenge(req.headers(), req.uri(), &[], None, false);
            }
        }
        Need::Catalog => {
            let ok = match &caller.proof {
                Proof::Nothing => false,
                Proof::Password => true,
                Proof::Token(t) => t.catalog,
            };
            if !ok {
                return auth.challenge(req.headers(), req.uri(), &[], token_error, true);
            }
            if !matches!(caller.identity, Identity::External(_)) {
                let (auth, identity) = (auth.clone(), caller.identity.clone());
                req.extensions_mut()
                    .insert(CatalogFilter(Arc::new(move |repo| auth.allowed(&identity, repo) & PULL != 0)));
            }
        }
        Need::Repo { name, bits, mount } => {
            if auth.permitted(&caller, name) & bits != *bits {
                if matches!(caller.proof, Proof::Password) {
                    tracing::info!(
                        target: "audit",
                        event = "denied",
                        who = %caller.identity,
                        client = %shown(client),
                        repo = %name,
                        actions = %rules::words(*bits).join(","),
                        "access denied",
                    );
                    return ApiError::new(Code::Denied)
                        .detail_json(
                            json!([{ "Type": "repository", "Name": name, "Action": rules::words(*bits).join(",") }]),
                        )
                        .into_response();
                }
                let (scope, _) = need.scope();
                return auth.challenge(req.headers(), req.uri(), &scope, token_error, false);
            }
            match mount {
                Some(Mount::From(from)) if auth.permitted(&caller, from) & PULL == 0 => {
                    // A token whose holder may read the source but did not ask for it: ask
                    // for a token that has both, as distribution does. Otherwise upload.
                    let may = matches!(&caller.proof, Proof::Token(t) if t.own)
                        && auth.allowed(&caller.identity, from) & PULL != 0;
                    if may {
                        let (scope, _) = need.scope();
                        return auth.challenge(req.headers(), req.uri(), &scope, token_error, false);
                    }
                    *req.uri_mut() = without_mount(req.uri());
                }
                Some(Mount::Anywhere) => *req.uri_mut() = without_mount(req.uri()),
                _ => {}
            }
        }
    }
    let audit = Audit::new(caller.identity.to_string(), client);
    req.extensions_mut().insert(caller);
    let resp = next.run(req).await;
    audit.record(&resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_follow_routes_and_methods() {
        let need = |m: Method, u: &str| {
            let uri: Uri = u.parse().unwrap();
            Need::of(&m, &uri, Route::of(uri.path()).as_ref())
        };
        assert_eq!(need(Method::GET, "/v2/"), Need::Base);
        assert_eq!(need(Method::GET, "/healthz"), Need::Open);
        assert_eq!(need(Method::GET, "/v2/_catalog"), Need::Catalog);
        let repo = |bits, mount| Need::Repo { name: "a/b".into(), bits, mount };
        assert_eq!(need(Method::GET, "/v2/a/b/manifests/x"), repo(PULL, None));
        assert_eq!(need(Method::HEAD, "/v2/a/b/blobs/sha256:00"), repo(PULL, None));
        assert_eq!(need(Method::PUT, "/v2/a/b/manifests/x"), repo(PUSH, None));
        assert_eq!(need(Method::DELETE, "/v2/a/b/manifests/x"), repo(DELETE, None));
        assert_eq!(need(Method::DELETE, "/v2/a/b/blobs/uploads/id"), repo(PUSH, None));
        assert_eq!(need(Method::GET, "/v2/a/b/tags/list"), repo(PULL, None));
        assert_eq!(
            need(Method::POST, "/v2/a/b/blobs/uploads/?mount=sha256:00&from=c"),
            repo(PUSH, Some(Mount::From("c".into())))
        );
        assert_eq!(need(Method::POST, "/v2/a/b/blobs/uploads/?mount=sha256:00"), repo(PUSH, Some(Mount::Anywhere)));
        assert_eq!(
            need(Method::POST, "/v2/a/b/blobs/uploads/?mount=sha256:00&from=B%20A%20D"),
            repo(PUSH, Some(Mount::Anywhere))
        );
        assert_eq!(
            need(Method::GET, "/v2/A/manifests/x"),
            Need::Open,
            "invalid names go to the handler's NAME_INVALID"
        );
        assert_eq!(need(Method::GET, "/v2/a/nothing"), Need::Open);
    }

    #[test]
    fn mount_arguments_are_removed() {
        let u: Uri = "/v2/a/blobs/uploads/?mount=sha256:00&from=b&x=1".parse().unwrap();
        assert_eq!(without_mount(&u).to_string(), "/v2/a/blobs/uploads/?x=1");
        let u: Uri = "/v2/a/blobs/uploads/?mount=sha256:00".parse().unwrap();
        assert_eq!(without_mount(&u).to_string(), "/v2/a/blobs/uploads/");
        // The handler decodes keys, so an escaped key is the same argument and goes too.
        let u: Uri = "/v2/a/blobs/uploads/?%6Dount=sha256:00&fr%6Fm=b&x=1".parse().unwrap();
        assert_eq!(without_mount(&u).to_string(), "/v2/a/blobs/uploads/?x=1");
        assert_eq!(query(&u, "mount").as_deref(), Some("sha256:00"));
    }

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(decode_basic("YWxpY2U6cGE6c3M="), Some(("alice".into(), "pa:ss".into())));
        assert_eq!(decode_basic("!!"), None);
        assert_eq!(decode_basic("YWxpY2U="), None);
    }
}
