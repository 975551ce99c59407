//! An async client for the OCI distribution API: pull manifests and blobs, push them back.
//!
//! Used by the runtime's image store (`berth pull`) and, later, by `berth build --push`.
//! One [`Client`] talks to any number of registries and keeps, per registry, whether it
//! speaks HTTPS or plain HTTP and what its authentication wants (see [`auth`]).
//!
//! - **Transport.** HTTPS by default (rustls, with the system's trusted roots). Plain HTTP is
//!   allowed for every registry with [`ClientConfig::plain_http`], and always for loopback
//!   registries (`localhost`, `127.0.0.0/8`, `[::1]`), as Docker treats them as insecure.
//!   Where it is allowed, the first request still tries HTTPS and falls back to HTTP when
//!   the connection or TLS handshake fails; the answer is remembered.
//! - **Redirects** are followed by hand (up to [`ClientConfig::max_redirects`]), so the
//!   registry's `Authorization` header is sent only to the registry's own origin, never to
//!   the storage a `307` points at (such as a presigned S3 URL), and a redirect from HTTPS
//!   to plain HTTP is refused unless plain HTTP is allowed for its host.
//! - **Integrity.** Manifests are read up to a size limit, checked against the digest they
//!   were asked by, and parsed; blobs are hashed and counted while they stream, and the
//!   transfer fails as soon as it runs past the descriptor's size or ends with another
//!   digest. Callers write blobs somewhere private and publish them only when the call
//!   returns `Ok` (the runtime's content store renames a verified temporary file).
//!
//! Error messages name the registry and what was asked for, never credentials or tokens,
//! and show URLs without their query (presigned URLs carry signatures there). A message
//! does not repeat its `source()`; print the whole chain (anyhow's `{:#}`) to see causes.

pub mod auth;
pub mod docker_config;
mod login;
mod pull;
mod push;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use self::auth::{pick_challenge, Challenge, HostAuth, Scope, Token, TokenResponse};
pub use self::auth::{Anonymous, CredentialError, CredentialProvider, Credentials, StaticCredentials};
pub use self::docker_config::{DockerConfig, DockerConfigError};
pub use self::pull::{BlobDownload, ManifestHead, PulledManifest, ResolvedImage};
pub use self::push::{BlobPush, Mount};
use crate::digest::Digest;
use crate::manifest::ManifestError;

/// How a [`Client`] behaves. `ClientConfig::default()` documents each default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Allow plain HTTP for every registry (HTTPS is still tried first). Default `false`;
    /// loopback registries are always allowed plain HTTP.
    pub plain_http: bool,
    /// The `User-Agent` header. Default `berth/<version>`.
    pub user_agent: String,
    /// How long to wait for a TCP connection and TLS handshake. Default 30 seconds.
    pub connect_timeout: Duration,
    /// How long a connection may sit without receiving anything before the transfer fails.
    /// Default 60 seconds.
    pub read_timeout: Duration,
    /// The largest manifest accepted. Default 4 MiB, as distribution's limit.
    pub max_manifest_bytes: usize,
    /// The largest image config accepted. Default 16 MiB.
    pub max_config_bytes: usize,
    /// Blobs up to this size are pushed in one `PUT`; larger ones in `PATCH` chunks of this
    /// size. Default 16 MiB.
    pub chunk_size: usize,
    /// How many redirects to follow for one request. Default 5.
    pub max_redirects: usize,
    /// Mirrors to pull through, by registry (`docker.io`): base URLs (`http://berth.lan:5000`)
    /// tried in order for every manifest and blob read before the registry itself, asked with
    /// containerd's `?ns=<registry>` so that one mirror can serve several registries. A mirror
    /// that fails or does not have the content is passed over. Plain HTTP is allowed for an
    /// `http://` mirror. Default none.
    pub mirrors: Mirrors,
}

/// Mirrors by registry (see [`ClientConfig::mirrors`]).
pub type Mirrors = std::collections::BTreeMap<String, Vec<String>>;

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            plain_http: false,
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_manifest_bytes: 4 * 1024 * 1024,
            max_config_bytes: 16 * 1024 * 1024,
            chunk_size: 16 * 1024 * 1024,
            max_redirects: 5,
            mirrors: Mirrors::new(),
        }
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be set up (TLS roots, for instance).
    #[error("cannot set up the HTTP client")]
    Setup(#[source] reqwest::Error),
    /// The request could not be sent or its answer not read.
    #[error("{method} {url}")]
    Transport {
        /// The request method.
        method: Method,
        /// The URL, without its query.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: {status}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Status {
        /// The request method.
        method: Method,
        /// The URL, without its query.
        url: String,
        /// The status.
        status: StatusCode,
        /// The registry's error code and message, when it sent the spec's error body.
        detail: Option<String>,
    },
    /// The registry refused access after authentication was tried.
    #[error("{registry}: access to {what} denied ({reason})")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// What was asked for.
        what: String,
        /// What went wrong: no credentials, refused credentials, …
        reason: String,
    },
    /// The token service did not give a token.
    #[error("{registry}: cannot get a token from {realm}: {reason}")]
    Token {
        /// The registry.
        registry: String,
        /// The token service URL, without query.
        realm: String,
        /// Why.
        reason: String,
    },
    /// Looking up credentials failed.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// A request would have gone over plain HTTP where it is not allowed.
    #[error("{url} is plain HTTP; allow it with --plain-http if this registry has no TLS")]
    PlainHttpRefused {
        /// The URL, without query.
        url: String,
    },
    /// More redirects than allowed.
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects {
        /// The first URL.
        url: String,
        /// The limit.
        max: usize,
    },
    /// The manifest, tag or blob does not exist.
    #[error("{what} not found in {registry}")]
    NotFound {
        /// The registry.
        registry: String,
        /// What was asked for: `library/busybox:latest`, a blob digest, …
        what: String,
    },
    /// A manifest was larger than allowed.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What was fetched.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// Content did not match the digest it was fetched by.
    #[error("{what}: content does not match its digest (expected {expected}, got {actual})")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// Content did not have the size its descriptor gave.
    #[error("{digest}: expected {expected} bytes, got {}", if *too_long { format!("more than {expected}") } else { actual.to_string() })]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// Bytes received (when `too_long`, when the transfer was stopped).
        actual: u64,
        /// The transfer ran past the expected size and was stopped.
        too_long: bool,
    },
    /// A manifest could not be used.
    #[error("{what}")]
    Manifest {
        /// What was fetched.
        what: String,
        /// The cause.
        #[source]
        source: ManifestError,
    },
    /// No entry of an index suits the wanted platform.
    #[error("{what} has no image for {want} (available: {available})")]
    NoPlatform {
        /// The image.
        what: String,
        /// The wanted platform.
        want: String,
        /// The platforms the index offers.
        available: String,
    },
    /// The registry answered something the protocol does not allow.
    #[error("{url}: {message}")]
    Protocol {
        /// The URL, without query.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// Writing fetched content to its destination failed.
    #[error("writing {digest}")]
    Write {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading content to push failed.
    #[error("reading {digest} to push it")]
    Read {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a registry is reached over HTTPS or HTTP, once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

/// A registry client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    credentials: Arc<dyn CredentialProvider>,
    schemes: Mutex<HashMap<String, Scheme>>,
    auth: tokio::sync::Mutex<HashMap<String, HostAuth>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("config", &self.config).field("credentials", &self.credentials).finish()
    }
}

/// The body of a request: replayable (sent again after an authentication challenge) or a
/// stream that can be sent once.
pub(crate) enum Payload {
    Empty,
    Bytes(Bytes),
    Stream(Option<reqwest::Body>),
}

impl Payload {
    fn take(&mut self) -> Option<reqwest::Body> {
        match self {
            Payload::Empty => None,
            Payload::Bytes(b) => Some(reqwest::Body::from(b.clone())),
            Payload::Stream(s) => s.take(),
        }
    }

    fn replayable(&self) -> bool {
        !matches!(self, Payload::Stream(_))
    }
}

/// Where a request goes: a path on the registry (`/v2/…`, scheme chosen by the client) or a
/// URL the registry gave (an upload `Location`).
pub(crate) enum Target {
    Path(String),
    Url(Url),
}

/// A URL as shown in errors and logs: without query or fragment.
pub(crate) fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// True for `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or("").to_string()
    };
    name == "localhost" || name == "[::1]" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// A client with `config`, asking `credentials` when a registry wants authentication.
    pub fn new(config: ClientConfig, credentials: Arc<dyn CredentialProvider>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Client {
            http,
            config,
            credentials,
            schemes: Mutex::new(HashMap::new()),
            auth: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A client with default settings and anonymous access.
    pub fn anonymous() -> Result<Client, ClientError> {
        Client::new(ClientConfig::default(), Arc::new(Anonymous))
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Fixes whether the registry API at `host` (`host[:port]`) is reached over HTTPS or
    /// plain HTTP, instead of trying HTTPS first (plain HTTP must still be allowed for it).
    pub fn pin_scheme(&self, host: &str, https: bool) {
        self.set_scheme(host, if https { Scheme::Https } else { Scheme::Http });
    }

    fn plain_allowed(&self, host: &str) -> bool {
        self.config.plain_http
            || is_loopback(host)
            || self.config.mirrors.values().flatten().any(|m| m.strip_prefix("http://").map(mirror_host) == Some(host))
    }

    fn scheme(&self, host: &str) -> Option<Scheme> {
        self.schemes.lock().unwrap_or_else(PoisonError::into_inner).get(host).copied()
    }

    fn set_scheme(&self, host: &str, scheme: Scheme) {
        self.schemes.lock().unwrap_or_else(PoisonError::into_inner).insert(host.to_string(), scheme);
    }

    /// The base URL of a registry's API host (`https://host` or `http://host`).
    pub(crate) fn base_url(&self, host: &str) -> Result<Url, ClientError> {
        let scheme = match self.scheme(host) {
            Some(Scheme::Http) => "http",
            _ => "https",
        };
        let text = format!("{scheme}://{host}/");
        Url::parse(&text).map_err(|e| ClientError::Protocol { url: text, message: e.to_string() })
    }

    /// Sends a request to `image`'s registry (at its API host; credentials and tokens are
    /// kept under the registry's name), answering authentication challenges and following
    /// redirects. Returns the final response, whatever its status, except `401` after
    /// authentication was tried.
    pub(crate) async fn send(
        &self,
        image: &crate::ImageRef,
        method: Method,
        target: Target,
        scope: &Scope,
        headers: HeaderMap,
        payload: Payload,
    ) -> Result<reqwest::Response, ClientError> {
        let read = matches!(method, Method::GET | Method::HEAD) && scope.pull_only();
        if let (Target::Path(path), true) = (&target, read) {
            for mirror in self.config.mirrors.get(image.registry()).into_iter().flatten() {
                if let Some(response) = self.try_mirror(mirror, image, &method, path, scope, &headers).await {
                    return Ok(response);
                }
            }
        }
        self.send_direct(image, method, target, scope, headers, payload).await
    }

    /// Asks `mirror` (a base URL) for `path` of `image`'s registry: its answer when it has
    /// the content, `None` when it fails or has not (the caller goes on to the next).
    async fn try_mirror(
        &self,
        mirror: &str,
        image: &crate::ImageRef,
        method: &Method,
        path: &str,
        scope: &Scope,
        headers: &HeaderMap,
    ) -> Option<reqwest::Response> {
        let (https, rest) = match mirror.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, mirror.strip_prefix("http://").unwrap_or(mirror)),
        };
        let host = mirror_host(rest);
        let via = crate::ImageRef::new(host, image.repository().clone(), image.tag().cloned(), image.digest().cloned())
            .inspect_err(|e| tracing::warn!(mirror, error = %e, "unusable registry mirror"))
            .ok()?;
        if self.scheme(via.api_host()).is_none() {
            self.pin_scheme(via.api_host(), https);
        }
        let mut target = path.to_string();
        target.push_str(if path.contains('?') { "&ns=" } else { "?ns=" });
        target.push_str(&crate::query::escape(image.registry()));
        let sent =
            self.send_direct(&via, method.clone(), Target::Path(target), scope, headers.clone(), Payload::Empty).await;
        match sent {
            Ok(response) if response.status().is_success() => Some(response),
            Ok(response) => {
                tracing::debug!(mirror, status = %response.status(), "the mirror has not got it; trying the next");
                None
            }
            Err(e) => {
                tracing::debug!(mirror, error = %crate::error_chain(&e), "the mirror failed; trying the next");
                None
            }
        }
    }

    async fn send_direct(
        &self,
        image: &crate::ImageRef,
        method: Method,
        target: Target,
        scope: &Scope,
        headers: HeaderMap,
        mut payload: Payload,
    ) -> Result<reqwest::Response, ClientError> {
        let (registry, host) = (image.registry(), image.api_host());
        let mut answered_challenge = false;
        loop {
            let url = match &target {
                Target::Path(path) => {
                    let base = self.base_url(host)?;
                    base.join(path.trim_start_matches('/'))
                        .map_err(|e| ClientError::Protocol { url: shown(&base), message: e.to_string() })?
                }
                Target::Url(url) => url.clone(),
            };
            if url.scheme() == "http" && !self.plain_allowed(host) {
                return Err(ClientError::PlainHttpRefused { url: shown(&url) });
            }
            let authorization = self.authorization(registry, scope).await?;
            let body = payload.take();
            let undecided = matches!(target, Target::Path(_)) && self.scheme(host).is_none();
            let (response, same_origin) =
                match self.send_following_redirects(&method, url.clone(), &headers, authorization, body).await {
                    Err(ClientError::Transport { source, .. })
                        if undecided && source.is_connect() && self.plain_allowed(host) =>
                    {
                        tracing::debug!(host, "HTTPS failed; trying plain HTTP");
                        self.set_scheme(host, Scheme::Http);
                        continue;
                    }
                    other => other?,
                };
            if undecided {
                self.set_scheme(host, Scheme::Https);
            }
            if response.status() != StatusCode::UNAUTHORIZED || !same_origin {
                return Ok(response);
            }
            let what = format!("{method} {}", url.path());
            if answered_challenge || !payload.replayable() {
                let reason = match self.auth.lock().await.get(registry).and_then(|a| a.credentials.clone()) {
                    Some(Some(_)) => "the credentials were refused".to_string(),
                    _ => "no credentials for this registry".to_string(),
                };
                return Err(ClientError::Unauthorized { registry: registry.to_string(), what, reason });
            }
            answered_challenge = true;
            let challenge =
                pick_challenge(response.headers().get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()));
            let Some(challenge) = challenge else {
                return Err(ClientError::Unauthorized {
                    registry: registry.to_string(),
                    what,
                    reason: "the registry sent no Basic or Bearer challenge".into(),
                });
            };
            let mut auth = self.auth.lock().await;
            let entry = auth.entry(registry.to_string()).or_default();
            entry.challenge = Some(challenge);
            entry.forget_token(scope);
        }
    }

    /// The `Authorization` value for a request needing `scope`, once `registry` has
    /// challenged: basic credentials, or a token (fetched now if none is cached).
    async fn authorization(&self, registry: &str, scope: &Scope) -> Result<Option<HeaderValue>, ClientError> {
        let mut all = self.auth.lock().await;
        let Some(auth) = all.get_mut(registry) else { return Ok(None) };
        let Some(challenge) = auth.challenge.clone() else { return Ok(None) };
        if auth.credentials.is_none() {
            auth.credentials = Some(self.credentials.credentials(registry)?);
        }
        let credentials = auth.credentials.clone().flatten();
        match challenge {
            Challenge::Basic => Ok(credentials.map(|c| basic_header(&c))),
            Challenge::Bearer { realm, service, .. } => {
                if let Some(token) = auth.token(scope) {
                    return Ok(Some(bearer_header(&token.value)));
                }
                let wanted = auth.token_scope(scope);
                let token =
                    self.fetch_token(registry, &realm, service.as_deref(), &wanted, credentials.as_ref()).await?;
                let header = bearer_header(&token.value);
                auth.store_token(scope, token);
                Ok(Some(header))
            }
        }
    }

    /// Asks a token service for a token (token.md, "Requesting a Token").
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
        credentials: Option<&Credentials>,
    ) -> Result<Token, ClientError> {
        let token_err = |reason: String| ClientError::Token {
            registry: registry.to_string(),
            realm: realm.split('?').next().unwrap_or(realm).to_string(),
            reason,
        };
        let mut url = Url::parse(realm).map_err(|e| token_err(format!("invalid realm: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if url.host_str().is_some_and(|h| self.plain_allowed(&host_port(&url, h))) => {}
            _ => return Err(ClientError::PlainHttpRefused { url: shown(&url) }),
        }
        // An identity token (Docker's OAuth2 refresh token) is exchanged with the OAuth2 form
        // (oauth.md, "Getting a token"); the realm's own query is kept.
        let refresh = credentials.filter(|c| c.username == docker_config::IDENTITY_TOKEN_USER);
        let request = if let Some(c) = refresh {
            let mut form = Url::parse("http://form.invalid/").map_err(|e| token_err(e.to_string()))?;
            {
                let mut pairs = form.query_pairs_mut();
                pairs.append_pair("grant_type", "refresh_token");
                pairs.append_pair("refresh_token", &c.password);
                pairs.append_pair("client_id", "berth");
                if let Some(service) = service {
                    pairs.append_pair("service", service);
                }
                pairs.append_pair("scope", &scope.items().collect::<Vec<_>>().join(" "));
            }
            self.http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.query().unwrap_or("").to_string())
        } else {
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for s in scope.items() {
                    query.append_pair("scope", s);
                }
            }
            let mut request = self.http.get(url.clone());
            if let Some(c) = credentials {
                request = request.basic_auth(&c.username, Some(&c.password));
            }
            request
        };
        let method = if refresh.is_some() { Method::POST } else { Method::GET };
        let response = request.send().await.map_err(|e| ClientError::Transport {
            method,
            url: shown(&url),
            source: e.without_url(),
        })?;
        let status = response.status();
        if !status.is_success() {
            let reason = if status == StatusCode::UNAUTHORIZED {
                if credentials.is_some() {
                    "the credentials were refused".to_string()
                } else {
                    "anonymous access refused; credentials are needed".to_string()
                }
            } else {
                format!("status {status}")
            };
            return Err(token_err(reason));
        }
        let body = read_limited(response, 1024 * 1024, &url).await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| token_err(format!("the answer is not a token: {e}")))?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("the answer has no token".into()))?;
        Ok(Token::new(value, parsed.expires_in))
    }

    /// Sends one request and follows redirects for `GET` and `HEAD`. The authorization is
    /// sent only while the URL stays on the first URL's origin. Returns the response and
    /// whether it came from that origin.
    async fn send_following_redirects(
        &self,
        method: &Method,
        mut url: Url,
        headers: &HeaderMap,
        authorization: Option<HeaderValue>,
        mut body: Option<reqwest::Body>,
    ) -> Result<(reqwest::Response, bool), ClientError> {
        let origin = url.origin();
        let first = shown(&url);
        for _ in 0..=self.config.max_redirects {
            let same_origin = url.origin() == origin;
            let mut request = self.http.request(method.clone(), url.clone()).headers(headers.clone());
            if same_origin {
                if let Some(a) = &authorization {
                    request = request.header(AUTHORIZATION, a.clone());
                }
            }
            if let Some(b) = body.take() {
                request = request.body(b);
            }
            let response = request.send().await.map_err(|e| ClientError::Transport {
                method: method.clone(),
                url: shown(&url),
                source: e.without_url(),
            })?;
            let follow = response.status().is_redirection()
                && response.status() != StatusCode::NOT_MODIFIED
                && (*method == Method::GET || *method == Method::HEAD);
            let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok());
            match location {
                Some(location) if follow => {
                    let next = url.join(location).map_err(|e| ClientError::Protocol {
                        url: shown(&url),
                        message: format!("bad redirect location: {e}"),
                    })?;
                    if next.scheme() == "http" {
                        let host = next.host_str().map(|h| host_port(&next, h)).unwrap_or_default();
                        if url.scheme() != "http" && !self.plain_allowed(&host) {
                            return Err(ClientError::PlainHttpRefused { url: shown(&next) });
                        }
                    } else if next.scheme() != "https" {
                        return Err(ClientError::Protocol {
                            url: shown(&url),
                            message: format!("redirect to unsupported scheme {}", next.scheme()),
                        });
                    }
                    tracing::debug!(from = %shown(&url), to = %shown(&next), "following redirect");
                    url = next;
                }
                _ => return Ok((response, same_origin)),
            }
        }
        Err(ClientError::TooManyRedirects { url: first, max: self.config.max_redirects })
    }
}

/// The `host[:port]` of a mirror URL without its scheme.
fn mirror_host(rest: &str) -> &str {
    rest.split('/').next().unwrap_or(rest)
}

/// `host` or `host:port` of a URL, as [`is_loopback`] expects.
fn host_port(url: &Url, host: &str) -> String {
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

fn bearer_header(token: &str) -> HeaderValue {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    v.set_sensitive(true);
    v
}

fn basic_header(c: &Credentials) -> HeaderValue {
    let raw = format!("{}:{}", c.username, c.password);
    let mut v = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw.as_bytes())))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

/// Reads a whole response body, failing once it passes `limit` bytes.
pub(crate) async fn read_limited(response: reqwest::Response, limit: usize, url: &Url) -> Result<Vec<u8>, ClientError> {
    use futures_util::StreamExt;
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ClientError::TooLarge { what: shown(url), limit });
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ClientError::Transport {
            method: Method::GET,
            url: shown(url),
            source: e.without_url(),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ClientError::TooLarge { what: shown(url), limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error for an unexpected answer: status plus the spec's error code and message
/// (`{"errors":[{"code":…,"message":…}]}`) when the body has them.
pub(crate) async fn status_error(method: Method, url: &Url, response: reqwest::Response) -> ClientError {
    let status = response.status();
    let body = read_limited(response, 64 * 1024, url).await.unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| {
        let first = v.get("errors")?.get(0)?.clone();
        let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("").to_string();
        let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("").to_string();
        Some(format!("{code}: {message}").trim_matches([' ', ':']).to_string())
    });
    ClientError::Status { method, url: shown(url), status, detail }
}
