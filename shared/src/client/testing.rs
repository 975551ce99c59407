//! Test support: a tiny HTTP/1.1 server and, on top of it, a fake registry whose behaviour
//! tests can bend — authentication schemes, redirects of blobs to another host, failing or
//! corrupt blobs — and whose request log they can read.
//!
//! Compiled for this crate's tests and, with the `testing` feature, for other crates' tests
//! (the runtime's pull tests, the end-to-end tests). Not for production: it keeps
//! everything in memory, closes every connection after one answer, and trusts its input.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::digest::Digest;

/// A request as the test server received it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?` (empty when there is none).
    pub query: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, decoded ([`crate::query::value`]).
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::query::value(&self.query, name)
    }
}

/// An answer from the test server.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers to send (`Content-Length` and `Connection` are added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and no body.
    pub fn status(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }
}

type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// An HTTP/1.1 server on `127.0.0.1` answering every request with a handler. Stops when
/// dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server that answers with `handler`.
    pub async fn start(handler: impl Fn(Request) -> Response + Send + Sync + 'static) -> io::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handler: Handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let _ = serve_one(stream, handler).await;
                });
            }
        });
        Ok(TestServer { addr, task })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

async fn serve_one(stream: TcpStream, handler: Handler) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let parts: Vec<&str> = line.trim_end().split(' ').collect();
    let response = if parts.len() == 3 && parts[2].starts_with("HTTP/1.") {
        let (method, target) = (parts[0].to_string(), parts[1].to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut request = Request { method, headers, ..Request::default() };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        request.path = path.to_string();
        request.query = query.to_string();
        if request.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                reader.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                request.body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = request.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            request.body = vec![0u8; n];
            reader.read_exact(&mut request.body).await?;
        }
        handler(request)
    } else {
        // Not HTTP (a TLS handshake, say).
        Response::status(400)
    };
    let mut head = format!("HTTP/1.1 {} X\r\n", response.status);
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body.len()));
    let mut stream = reader.into_inner();
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}

/// How the fake registry wants clients to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeAuth {
    /// Anyone may do anything.
    None,
    /// HTTP basic authentication with this user and password.
    Basic(String, String),
    /// Bearer tokens from `/token` on the same server; with `Some`, the token service wants
    /// these basic credentials, else it gives tokens to anyone.
    Bearer(Option<(String, String)>),
}

/// Something the fake registry does wrong on purpose for one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `500` this many more times, then behave.
    Fail(u32),
    /// Serve bytes of the right length but other content.
    Corrupt,
    /// Serve only the first half.
    Truncate,
    /// Serve the content plus extra bytes.
    Extend,
}

/// One request as the fake registry logged it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The method.
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Served by the redirect target ("CDN") rather than the registry.
    pub cdn: bool,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, (String, Vec<u8>)>,
    uploads: HashMap<String, Vec<u8>>,
    faults: HashMap<String, Fault>,
    log: Vec<Logged>,
    tokens_issued: u32,
    next_upload: u32,
}

/// An in-memory registry on a loopback port. Blobs are shared by all repositories (so any
/// mount succeeds when the blob exists); manifests are kept per repository, by tag and by
/// digest.
pub struct FakeRegistry {
    server: TestServer,
    cdn: Option<TestServer>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRegistry").field("server", &self.server).finish()
    }
}

impl FakeRegistry {
    /// Starts a fake registry. With `redirect_blobs`, blob `GET`s answer `307` to a second
    /// server (another origin) that serves the bytes and logs what it saw.
    pub async fn start(auth: FakeAuth, redirect_blobs: bool) -> io::Result<FakeRegistry> {
        let state = Arc::new(Mutex::new(State::default()));
        let cdn = if redirect_blobs {
            let st = state.clone();
            Some(
                TestServer::start(move |req| {
                    let mut s = st.lock().unwrap_or_else(PoisonError::into_inner);
                    s.log.push(Logged {
                        method: req.method.clone(),
                        path: req.path.clone(),
                        authorization: req.header("authorization").map(str::to_string),
                        cdn: true,
                    });
                    let digest = req.path.trim_start_matches("/data/").to_string();
                    serve_blob(&mut s, &digest, req.method == "HEAD")
                })
                .await?,
            )
        } else {
            None
        };
        let cdn_base = cdn.as_ref().map(|c| format!("http://{}", c.host()));
        let st = state.clone();
        let server = TestServer::start(move |req| {
            let mut s = st.lock().unwrap_or_else(PoisonError::into_inner);
            handle(&mut s, &auth, cdn_base.as_deref(), req)
        })
        .await?;
        // The token realm must name this server, which is known only now.
        Ok(FakeRegistry { server, cdn, state })
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// The CDN's `127.0.0.1:PORT`, when blobs are redirected.
    pub fn cdn_host(&self) -> Option<String> {
        self.cdn.as_ref().map(TestServer::host)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a blob; returns its digest.
    pub fn add_blob(&self, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        self.state().blobs.insert(digest.to_string(), data.to_vec());
        digest
    }

    /// Stores a manifest in `repository` under its digest and, with `tag`, under the tag;
    /// returns its digest.
    pub fn add_manifest(&self, repository: &str, tag: Option<&str>, media_type: &str, body: &[u8]) -> Digest {
        let digest = Digest::sha256_of(body);
        let mut s = self.state();
        let value = (media_type.to_string(), body.to_vec());
        s.manifests.insert(format!("{repository}@{digest}"), value.clone());
        if let Some(tag) = tag {
            s.manifests.insert(format!("{repository}@{tag}"), value);
        }
        digest
    }

    /// Serves other bytes under an existing manifest reference (to test digest checks).
    pub fn replace_manifest(&self, repository: &str, reference: &str, body: &[u8]) {
        let mut s = self.state();
        if let Some(entry) = s.manifests.get_mut(&format!("{repository}@{reference}")) {
            entry.1 = body.to_vec();
        }
    }

    /// The blob stored under `digest`, if any.
    pub fn blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.state().blobs.get(&digest.to_string()).cloned()
    }

    /// The manifest stored under `repository` and `reference` (tag or digest), if any.
    pub fn manifest(&self, repository: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        self.state().manifests.get(&format!("{repository}@{reference}")).cloned()
    }

    /// Makes the blob `digest` misbehave.
    pub fn fault(&self, digest: &Digest, fault: Fault) {
        self.state().faults.insert(digest.to_string(), fault);
    }

    /// Makes the blob `digest` behave again.
    pub fn heal(&self, digest: &Digest) {
        self.state().faults.remove(&digest.to_string());
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// How many `GET`s of blob `digest` reached the registry (not the CDN).
    pub fn blob_gets(&self, digest: &Digest) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.state().log.iter().filter(|l| !l.cdn && l.method == "GET" && l.path.ends_with(&suffix)).count()
    }

    /// How many tokens the token service has issued.
    pub fn tokens_issued(&self) -> u32 {
        self.state().tokens_issued
    }
}

fn json_error(status: u16, code: &str, message: &str) -> Response {
    Response::status(status)
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#))
}

fn serve_blob(s: &mut State, digest: &str, head: bool) -> Response {
    let Some(data) = s.blobs.get(digest).cloned() else {
        return json_error(404, "BLOB_UNKNOWN", "blob unknown");
    };
    let data = match s.faults.get_mut(digest) {
        Some(Fault::Fail(n)) if *n > 0 => {
            *n -= 1;
            return json_error(500, "UNKNOWN", "injected failure");
        }
        Some(Fault::Corrupt) => data.iter().map(|b| b ^ 0x5a).collect(),
        Some(Fault::Truncate) => data[..data.len() / 2].to_vec(),
        Some(Fault::Extend) => [data.as_slice(), b"extra"].concat(),
        _ => data,
    };
    let response = Response::status(200).header("Docker-Content-Digest", digest);
    if head {
        // Content-Length is computed from the body; send none for HEAD.
        response.header("X-Blob-Length", &data.len().to_string())
    } else {
        response.body(data)
    }
}

/// Checks authorization; `Err` is the `401` to send.
fn check_auth(auth: &FakeAuth, req: &Request, push: bool, realm: &str) -> Result<(), Response> {
    let header = req.header("authorization").unwrap_or("");
    match auth {
        FakeAuth::None => Ok(()),
        FakeAuth::Basic(user, pass) => {
            let want = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
            if header == want {
                Ok(())
            } else {
                Err(json_error(401, "UNAUTHORIZED", "authentication required")
                    .header("WWW-Authenticate", r#"Basic realm="fake""#))
            }
        }
        FakeAuth::Bearer(_) => {
            let ok = header.strip_prefix("Bearer tok:").is_some_and(|scope| !push || scope.contains("push"));
            if ok {
                Ok(())
            } else {
                Err(json_error(401, "UNAUTHORIZED", "authentication required")
                    .header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}",service="fake-registry""#)))
            }
        }
    }
}

fn handle(s: &mut State, auth: &FakeAuth, cdn: Option<&str>, req: Request) -> Response {
    s.log.push(Logged {
        method: req.method.clone(),
        path: req.path.clone(),
        authorization: req.header("authorization").map(str::to_string),
        cdn: false,
    });
    let host = req.header("host").unwrap_or("127.0.0.1").to_string();
    let realm = format!("http://{host}/token");
    if req.path == "/token" {
        if let FakeAuth::Bearer(Some((user, pass))) = auth {
            let want = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
            if req.header("authorization") != Some(want.as_str()) {
                return Response::status(401);
            }
        }
        s.tokens_issued += 1;
        let scope: Vec<String> =
            crate::query::pairs(&req.query).into_iter().filter(|(k, _)| k == "scope").map(|(_, v)| v).collect();
        return Response::status(200)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"token":"tok:{}","expires_in":300}}"#, scope.join(" ")));
    }
    let Some(rest) = req.path.strip_prefix("/v2/") else { return Response::status(404) };
    let push = !matches!(req.method.as_str(), "GET" | "HEAD");
    if let Err(denied) = check_auth(auth, &req, push, &realm) {
        return denied;
    }
    if rest.is_empty() {
        return Response::status(200);
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let key = format!("{repo}@{reference}");
        return match req.method.as_str() {
            "GET" | "HEAD" => match s.manifests.get(&key) {
                Some((media_type, body)) => {
                    let r = Response::status(200).header("Content-Type", media_type);
                    if req.method == "GET" {
                        r.body(body.clone())
                    } else {
                        r
                    }
                }
                None => json_error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
            },
            "PUT" => {
                let digest = Digest::sha256_of(&req.body);
                let media_type = req.header("content-type").unwrap_or("").to_string();
                let value = (media_type, req.body.clone());
                s.manifests.insert(format!("{repo}@{digest}"), value.clone());
                s.manifests.insert(key, value);
                Response::status(201).header("Docker-Content-Digest", &digest.to_string())
            }
            _ => Response::status(405),
        };
    }
    if let Some((repo, tail)) = rest.split_once("/blobs/uploads/") {
        let location = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}");
        return match (req.method.as_str(), tail) {
            ("POST", "") => {
                if let (Some(mount), Some(_from)) = (req.query_param("mount"), req.query_param("from")) {
                    if s.blobs.contains_key(&mount) {
                        return Response::status(201).header("Location", &format!("/v2/{repo}/blobs/{mount}"));
                    }
                }
                s.next_upload += 1;
                let id = format!("u{}", s.next_upload);
                s.uploads.insert(id.clone(), Vec::new());
                Response::status(202).header("Location", &location(&id)).header("Range", "0-0")
            }
            ("PATCH", id) => match s.uploads.get_mut(id) {
                Some(data) => {
                    data.extend_from_slice(&req.body);
                    let end = data.len().saturating_sub(1);
                    Response::status(202).header("Location", &location(id)).header("Range", &format!("0-{end}"))
                }
                None => json_error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown"),
            },
            ("PUT", id) => match s.uploads.remove(id) {
                Some(mut data) => {
                    data.extend_from_slice(&req.body);
                    let Some(want) = req.query_param("digest") else {
                        return json_error(400, "DIGEST_INVALID", "no digest");
                    };
                    let actual = Digest::sha256_of(&data).to_string();
                    if actual != want {
                        return json_error(400, "DIGEST_INVALID", "digest mismatch");
                    }
                    s.blobs.insert(actual.clone(), data);
                    Response::status(201).header("Location", &format!("/v2/{repo}/blobs/{actual}"))
                }
                None => json_error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown"),
            },
            _ => Response::status(405),
        };
    }
    if let Some((_repo, digest)) = rest.rsplit_once("/blobs/") {
        return match (req.method.as_str(), cdn) {
            ("GET", Some(cdn)) if s.blobs.contains_key(digest) => {
                Response::status(307).header("Location", &format!("{cdn}/data/{digest}?X-Signature=secret"))
            }
            ("GET", _) => serve_blob(s, digest, false),
            ("HEAD", _) => serve_blob(s, digest, true),
            _ => Response::status(405),
        };
    }
    Response::status(404)
}
