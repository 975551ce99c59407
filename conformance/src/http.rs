//! The HTTP side of the checks: a [`Registry`] sends one [`Request`] and returns the whole
//! [`Exchange`], whose assertion methods turn a mismatch into a [`CheckError`] that shows what
//! was sent and what came back (status, headers, body).
//!
//! Every check talks to the registry through this module and nothing else. Requests whose path
//! an URL parser would normalise (`a/../b`) go out over a plain TCP connection instead, see
//! [`Registry::send_raw`].
//!
//! A base URL with credentials (`http://user:password@host:port`) makes the client answer
//! authentication challenges (spec.md leaves authentication to the registry; Docker's token
//! flow is distribution's docs/spec/auth/token.md): a `401` with `Basic` is repeated with the
//! credentials, one with `Bearer realm=…,service=…,scope=…` fetches a token for that scope
//! from the realm (with the credentials as basic authentication) and is repeated with it. The
//! last authorization that worked is sent up front with the next request, as clients do.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one exchange may take before the check fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The most of a body a failure message shows.
const PREVIEW_CHARS: usize = 1500;

/// The only error codes an error body may carry (spec.md, "Error Codes": "The `code` field
/// MUST be one of the following").
pub const SPEC_ERROR_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// Legacy Docker error codes the spec names as ones a client "MAY encounter" (spec.md,
/// "Legacy Docker support error codes"), so an error body may carry them too.
pub const LEGACY_ERROR_CODES: [&str; 2] = ["TAG_INVALID", "MANIFEST_UNVERIFIED"];

/// Codes outside the spec's list that CNCF distribution answers with and that Docker clients
/// know: `RANGE_INVALID` (416 for a chunk that does not continue an upload) and
/// `PAGINATION_NUMBER_INVALID` (400 for an `n` that is not a number). berth uses them for the
/// same cases, so the checks accept them; the HTTP status is still checked.
pub const DISTRIBUTION_ERROR_CODES: [&str; 2] = ["RANGE_INVALID", "PAGINATION_NUMBER_INVALID"];

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The request could not be sent or its response could not be read.
    #[error("{request}\n  could not complete the exchange: {cause}")]
    Transport {
        /// The request, as sent.
        request: String,
        /// The transport error and its causes.
        cause: String,
    },
    /// The registry answered, but not as the spec requires.
    #[error("{request}\n  expected: {expected}\n  got: {response}")]
    Unexpected {
        /// The request, as sent.
        request: String,
        /// What the spec (or, where it leaves a choice, berth) requires.
        expected: String,
        /// The response: status, headers and body.
        response: String,
    },
    /// The check could not run at all (an unusable base URL, say).
    #[error("cannot run the check: {0}")]
    Setup(String),
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(HeaderName, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request { method, url: url.into(), headers: Vec::new(), body: None }
    }

    /// A `GET`.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new(Method::GET, url)
    }

    /// A `HEAD`.
    pub fn head(url: impl Into<String>) -> Request {
        Request::new(Method::HEAD, url)
    }

    /// A `POST`.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new(Method::POST, url)
    }

    /// A `PUT`.
    pub fn put(url: impl Into<String>) -> Request {
        Request::new(Method::PUT, url)
    }

    /// A `PATCH`.
    pub fn patch(url: impl Into<String>) -> Request {
        Request::new(Method::PATCH, url)
    }

    /// A `DELETE`.
    pub fn delete(url: impl Into<String>) -> Request {
        Request::new(Method::DELETE, url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((HeaderName::from_static(name), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// The request as a failure message shows it.
    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method, self.url);
        for (name, value) in &self.headers {
            let _ = write!(s, "\n    {name}: {value}");
        }
        match &self.body {
            Some(body) if !body.is_empty() => {
                let _ = write!(s, "\n    body: {}", preview(body));
            }
            _ => {}
        }
        s
    }
}

/// A request sent and the response it got.
#[derive(Debug)]
pub struct Exchange {
    request: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Exchange {
    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The response body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A response header as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a response header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
    }

    /// A failure of this exchange: `expected` is what should have come back.
    pub fn fail(&self, expected: impl Into<String>) -> CheckError {
        CheckError::Unexpected {
            request: self.request.clone(),
            expected: expected.into(),
            response: self.describe_response(),
        }
    }

    /// Fails with `expected` unless `ok`.
    pub fn ensure(&self, ok: bool, expected: impl FnOnce() -> String) -> Result<&Self, CheckError> {
        if ok {
            Ok(self)
        } else {
            Err(self.fail(expected()))
        }
    }

    /// Requires the status `status`.
    pub fn expect_status(&self, status: u16) -> Result<&Self, CheckError> {
        self.ensure(self.status.as_u16() == status, || format!("status {status}"))
    }

    /// Requires a header with exactly `value`.
    pub fn expect_header(&self, name: &str, value: &str) -> Result<&Self, CheckError> {
        self.ensure(self.header(name) == Some(value), || format!("header {name}: {value}"))
    }

    /// Requires that a header is absent.
    pub fn expect_no_header(&self, name: &str) -> Result<&Self, CheckError> {
        self.ensure(!self.headers.contains_key(name), || format!("no {name} header"))
    }

    /// Requires a non-empty header and returns its value.
    pub fn require_header(&self, name: &str) -> Result<&str, CheckError> {
        match self.header(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(self.fail(format!("a non-empty {name} header"))),
        }
    }

    /// Requires a `Content-Length` header equal to `len`.
    pub fn expect_content_length(&self, len: usize) -> Result<&Self, CheckError> {
        self.expect_header("content-length", &len.to_string())
    }

    /// Requires the body to be exactly `body`.
    pub fn expect_body(&self, body: &[u8]) -> Result<&Self, CheckError> {
        self.ensure(self.body == body, || {
            format!("a body equal to the {} bytes expected: {}", body.len(), preview(body))
        })
    }

    /// Requires an empty body (a `HEAD` response, say).
    pub fn expect_empty_body(&self) -> Result<&Self, CheckError> {
        self.ensure(self.body.is_empty(), || "an empty body".to_string())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, CheckError> {
        serde_json::from_slice(&self.body).map_err(|e| self.fail(format!("a JSON body ({e})")))
    }

    /// The `Location` header, required, resolved against the registry's base URL.
    pub fn location(&self, registry: &Registry) -> Result<String, CheckError> {
        Ok(registry.resolve(self.require_header("location")?))
    }

    /// Requires an error response: status `status` and a spec-shaped body carrying `code`.
    pub fn expect_error(&self, status: u16, code: &str) -> Result<&Self, CheckError> {
        self.expect_status(status)?.expect_error_body(&[code])
    }

    /// Requires the spec's error body (spec.md, "Error Codes"): a JSON object whose `errors`
    /// array holds objects with a `code` from the spec's list (or a legacy code it names) and
    /// an optional string `message`; one of the codes must be in `codes` unless `codes` is
    /// empty.
    ///
    /// The spec lets a 4XX body be in any format and only fixes the shape of a JSON one; berth
    /// always sends JSON, so the JSON shape is required here.
    pub fn expect_error_body(&self, codes: &[&str]) -> Result<&Self, CheckError> {
        let wanted = if codes.is_empty() { "any spec error code".to_string() } else { codes.join(" or ") };
        let shape = format!(r#"an error body {{"errors":[{{"code":..,"message":..}}]}} with code {wanted}"#);
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.body) else {
            return Err(self.fail(format!("{shape} (the body is not JSON)")));
        };
        let Some(errors) = v.get("errors").and_then(|e| e.as_array()).filter(|e| !e.is_empty()) else {
            return Err(self.fail(format!("{shape} (no non-empty \"errors\" array)")));
        };
        let mut found = Vec::new();
        for e in errors {
            let Some(code) = e.get("code").and_then(|c| c.as_str()) else {
                return Err(self.fail(format!("{shape} (an entry has no string \"code\")")));
            };
            if !SPEC_ERROR_CODES.contains(&code)
                && !LEGACY_ERROR_CODES.contains(&code)
                && !DISTRIBUTION_ERROR_CODES.contains(&code)
            {
                return Err(self.fail(format!(
                    "{shape} (code {code:?} is not one of the spec's codes {SPEC_ERROR_CODES:?} \
                     nor a legacy code it names {LEGACY_ERROR_CODES:?})"
                )));
            }
            if e.get("message").is_some_and(|m| !m.is_string()) {
                return Err(self.fail(format!("{shape} (\"message\" is not a string)")));
            }
            found.push(code);
        }
        self.ensure(codes.is_empty() || found.iter().any(|c| codes.contains(c)), || shape.clone())
    }

    fn describe_response(&self) -> String {
        let mut s = self.status.to_string();
        for (name, value) in &self.headers {
            if name == "date" {
                continue;
            }
            let _ = write!(s, "\n    {name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
        let _ =
            write!(s, "\n    body: {}", if self.body.is_empty() { "(empty)".to_string() } else { preview(&self.body) });
        s
    }
}

/// A registry under test.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    base: String,
    /// User name and password from the base URL.
    credentials: Option<(String, String)>,
    /// The `Authorization` value that last worked, sent up front.
    authorization: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .field("user", &self.credentials.as_ref().map(|c| c.0.as_str()))
            .finish()
    }
}

/// A challenge from `WWW-Authenticate`.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Reads the first `Basic` or `Bearer` challenge of a `WWW-Authenticate` value (parameters
/// are `name=value` or `name="quoted, value"`).
fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if name.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                val.push(c);
                chars.next();
            }
        }
        params.push((name, val.trim().to_string()));
    }
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
}

impl Registry {
    /// A client for the registry at `base` (`http://host:port`, no trailing path).
    pub fn new(base: &str) -> Result<Registry, CheckError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| CheckError::Setup(format!("cannot build an HTTP client: {}", chain(&e))))?;
        let base = base.trim_end_matches('/');
        let (base, credentials) = match base.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@').filter(|(userinfo, _)| !userinfo.contains('/')) {
                Some((userinfo, host)) => {
                    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                    (
                        format!("{scheme}://{host}"),
                        Some((shared::query::unescape(user), shared::query::unescape(password))),
                    )
                }
                None => (base.to_string(), None),
            },
            None => (base.to_string(), None),
        };
        Ok(Registry { http, base, credentials, authorization: Arc::new(Mutex::new(None)) })
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))))
    }

    fn remembered(&self) -> Option<String> {
        self.authorization.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The `Authorization` value that answers `challenge`, fetching a token for a Bearer one.
    async fn answer(&self, challenge: Challenge, request: &str) -> Result<String, CheckError> {
        let basic = self.basic().unwrap_or_default();
        let Challenge::Bearer { realm, service, scope } = challenge else { return Ok(basic) };
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (key, value) in service
            .iter()
            .map(|s| ("service", s.as_str()))
            .chain(scope.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()).map(|s| ("scope", s)))
        {
            url.push_str(&format!("{sep}{key}={}", query_escape(value)));
            sep = '&';
        }
        let fail = |cause: String| CheckError::Transport {
            request: format!("{request}\n    (answering its Bearer challenge: GET {realm})"),
            cause,
        };
        let response = self.http.get(&url).header("authorization", basic).send().await.map_err(|e| fail(chain(&e)))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| fail(chain(&e)))?;
        if !status.is_success() {
            return Err(fail(format!("the token endpoint answered {status}: {}", preview(&body))));
        }
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| fail(format!("not a token: {e}")))?;
        let token = json["token"]
            .as_str()
            .or(json["access_token"].as_str())
            .ok_or_else(|| fail("no token in the answer".into()))?;
        Ok(format!("Bearer {token}"))
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resolves a `Location` or `Link` target, which the spec allows to be absolute or
    /// relative (spec.md, "POST then PUT").
    pub fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            self.url(location)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    /// Sends `request` and reads the whole response; with credentials, answers an
    /// authentication challenge and sends the request again.
    pub async fn send(&self, request: Request) -> Result<Exchange, CheckError> {
        let first = self.send_once(&request, self.remembered()).await?;
        if first.status != StatusCode::UNAUTHORIZED || self.credentials.is_none() {
            return Ok(first);
        }
        let Some(challenge) = first.header_all("www-authenticate").into_iter().find_map(parse_challenge) else {
            return Ok(first);
        };
        let authorization = self.answer(challenge, &first.request).await?;
        let again = self.send_once(&request, Some(authorization.clone())).await?;
        if again.status != StatusCode::UNAUTHORIZED {
            *self.authorization.lock().unwrap_or_else(PoisonError::into_inner) = Some(authorization);
        }
        Ok(again)
    }

    async fn send_once(&self, request: &Request, authorization: Option<String>) -> Result<Exchange, CheckError> {
        let request = request.clone();
        let mut described = request.describe();
        let mut builder = self.http.request(request.method.clone(), &request.url);
        if let Some(a) = authorization {
            described.push_str(&format!("\n    authorization: {}", a.split(' ').next().unwrap_or("")));
            builder = builder.header("authorization", a);
        }
        for (name, value) in &request.headers {
            builder = builder.header(name, value.as_str());
        }
        let body = request.body.unwrap_or_default();
        // The spec asks for `Content-Length: 0` on bodiless upload requests; say it outright.
        let sends_body = matches!(request.method, Method::POST | Method::PUT | Method::PATCH);
        if body.is_empty() && sends_body && !request.headers.iter().any(|(n, _)| n == CONTENT_LENGTH) {
            builder = builder.header(CONTENT_LENGTH, "0");
        }
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let transport = |e: reqwest::Error| CheckError::Transport { request: described.clone(), cause: chain(&e) };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?.to_vec();
        Ok(Exchange { request: described, status, headers, body })
    }

    /// Sends a bodiless request with `path` exactly as given, over a plain TCP connection:
    /// HTTP clients normalise dot segments (`a/../b` becomes `b`), which would hide the path
    /// traversal a check wants the registry to see. Works for `http://` base URLs only.
    pub async fn send_raw(&self, method: &str, path: &str) -> Result<Exchange, CheckError> {
        let described = format!("{method} {}{path} (sent verbatim over TCP)", self.base);
        let Some(authority) = self.base.strip_prefix("http://") else {
            return Err(CheckError::Setup(format!("raw requests need an http:// base URL, not {}", self.base)));
        };
        let authority = authority.split('/').next().unwrap_or(authority).to_string();
        let transport = |e: std::io::Error| CheckError::Transport { request: described.clone(), cause: e.to_string() };
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&authority).await?;
            // Basic credentials up front: a registry with authentication takes them on any
            // request, and this path is sent once.
            let authorization = self.basic().map(|b| format!("Authorization: {b}\r\n")).unwrap_or_default();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(r) => r.map_err(transport)?,
            Err(_) => return Err(transport(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))),
        };
        let (status, headers, body) = parse_response(&raw).ok_or_else(|| CheckError::Transport {
            request: described.clone(),
            cause: format!("unparsable response: {}", preview(&raw)),
        })?;
        Ok(Exchange { request: described, status, headers, body })
    }
}

/// Parses an HTTP/1.1 response read to the end of the connection.
fn parse_response(raw: &[u8]) -> Option<(StatusCode, HeaderMap, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(HeaderName::from_bytes(name.trim().as_bytes()).ok()?, HeaderValue::from_str(value.trim()).ok()?);
    }
    let chunked = headers.get("transfer-encoding").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("chunked"));
    if chunked {
        rest = dechunk(&rest)?;
    } else if let Some(len) = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        rest.truncate(len);
    }
    Some((StatusCode::from_u16(status).ok()?, headers, rest))
}

/// Decodes a chunked transfer-encoded body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A short printable form of a body.
fn preview(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if text.chars().count() > PREVIEW_CHARS => {
            let cut: String = text.chars().take(PREVIEW_CHARS).collect();
            format!("{cut}… ({} bytes in all)", body.len())
        }
        Ok(text) => text.to_string(),
        Err(_) => format!("({} bytes, not UTF-8)", body.len()),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}

/// Percent-encodes a query parameter value (everything but the URL's unreserved characters),
/// so `+` in a media type is not read back as a space ([`shared::query::escape`]).
pub fn query_escape(value: &str) -> String {
    shared::query::escape(value)
}

/// Appends `key=value` (value escaped) to a URL that may already carry a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", query_escape(value))
}

/// The `rel="next"` target of a `Link` header (RFC 5988), if there is one.
pub fn next_link(exchange: &Exchange) -> Option<String> {
    exchange.header_all("link").into_iter().flat_map(|v| v.split(',')).find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("application/vnd.oci.image.config.v1+json"),
            "application%2Fvnd.oci.image.config.v1%2Bjson"
        );
        assert_eq!(with_query("/x?a=1", "digest", "sha256:ab"), "/x?a=1&digest=sha256%3Aab");
        assert_eq!(with_query("/x", "n", "2"), "/x?n=2");
    }

    #[test]
    fn raw_responses_parse() {
        let raw = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello";
        let (status, headers, body) = parse_response(raw).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers["x-a"], "b");
        assert_eq!(body, b"hello");
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().2, b"abcde");
    }

    #[test]
    fn next_links_are_found() {
        let mut headers = HeaderMap::new();
        headers.append("link", HeaderValue::from_static(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#));
        let ex = Exchange { request: String::new(), status: StatusCode::OK, headers, body: Vec::new() };
        assert_eq!(next_link(&ex).as_deref(), Some("/v2/a/tags/list?n=2&last=b"));
        let mut headers = HeaderMap::new();
        headers.append("link", HeaderValue::from_static(r#"</x>; rel="prev""#));
        let ex = Exchange { request: String::new(), status: StatusCode::OK, headers, body: Vec::new() };
        assert_eq!(next_link(&ex), None);
    }

    #[test]
    fn credentials_come_from_the_base_url_and_challenges_parse() {
        let r = Registry::new("http://us%40er:p%3Ass@h:1/").unwrap();
        assert_eq!(r.base(), "http://h:1");
        assert_eq!(r.credentials, Some(("us@er".to_string(), "p:ss".to_string())));
        assert!(!format!("{r:?}").contains("p:ss"));
        assert_eq!(Registry::new("http://h:1").unwrap().credentials, None);
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="http://h/token",service="berth",scope="repository:a:pull,push registry:catalog:*",error="insufficient_scope""#
            ),
            Some(Challenge::Bearer {
                realm: "http://h/token".into(),
                service: Some("berth".into()),
                scope: Some("repository:a:pull,push registry:catalog:*".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="x""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn relative_locations_resolve() {
        let r = Registry::new("http://h:1/").unwrap();
        assert_eq!(r.resolve("/v2/a/blobs/uploads/x"), "http://h:1/v2/a/blobs/uploads/x");
        assert_eq!(r.resolve("https://other/x"), "https://other/x");
    }
}
