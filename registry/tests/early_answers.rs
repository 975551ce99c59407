//! Early answers to requests that still have a body: a client that writes its whole request
//! (headers and a 4 MiB body) before it reads, as Python `requests` does, must read the 401
//! challenge or the 404 intact, on the plain and on the TLS server, and the answer says the
//! connection closes. Driven over real sockets with a raw client, since the broken behaviour
//! (a reset connection) only shows on the wire.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The body each request carries: more than the loopback socket buffers take without the
/// server reading (1 MiB fits in them, and then even a server that never reads looks fine),
/// less than what the server reads after an early answer.
const BODY: usize = 4 << 20;

/// A running registry, stopped when dropped.
struct Server {
    port: u16,
    cert: Option<Vec<u8>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Writes a self-signed P-256 certificate for 127.0.0.1.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=early", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// Starts a registry, with HTTPS when `tls`, and with access control (no rule for anonymous
/// callers) when `auth`.
async fn start(tls: bool, auth: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().join("data");
    config.storage.filesystem.fsync = false;
    config.uploads.purge_interval_secs = 0;
    if auth {
        let htpasswd = dir.path().join("htpasswd");
        let hash = registry::auth::accounts::hash_password("secret", 4).unwrap();
        std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
        config.auth = Some(registry::config::AuthConfig { htpasswd: Some(htpasswd), ..Default::default() });
    }
    let mut cert_pem = None;
    if tls {
        let (certificate, key) = self_signed(dir.path());
        cert_pem = Some(std::fs::read(&certificate).unwrap());
        config.tls = Some(registry::config::TlsConfig { certificate, key, reload_interval_secs: 0 });
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = registry::serve_on(listener, config, shutdown).await {
            eprintln!("registry stopped: {e}");
        }
    });
    Server { port, cert: cert_pem, stop: Some(stop), _dir: dir }
}

/// Writes `head` and a body of [`BODY`] bytes, all of it, and only then reads the answer to
/// the end of the connection.
async fn send_all_then_read(mut stream: impl AsyncRead + AsyncWrite + Unpin, head: &str) -> String {
    stream.write_all(head.as_bytes()).await.expect("writing the request head");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..BODY / chunk.len() {
        stream.write_all(&chunk).await.expect("writing the body: the server broke the connection");
    }
    stream.flush().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("reading the answer: the server broke the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// One request over a new connection (TLS when the server has a certificate).
async fn exchange(server: &Server, head: &str) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let Some(pem) = &server.cert else { return send_all_then_read(tcp, head).await };
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(pem).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    send_all_then_read(tls, head).await
}

fn head(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY}\r\n\r\n")
}

#[track_caller]
fn assert_answer(answer: &str, status: &str, code: &str) {
    let first = answer.lines().next().unwrap_or("");
    assert!(first.starts_with(&format!("HTTP/1.1 {status}")), "answer: {first:?}");
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "answer: {answer}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body: serde_json::Value = serde_json::from_str(body).expect("a whole JSON error body");
    assert_eq!(body["errors"][0]["code"], code);
}

async fn early_answers_arrive_intact(tls: bool) {
    let unknown = "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef";
    let open = start(tls, false).await;
    assert_answer(&exchange(&open, &head("PATCH", unknown)).await, "404", "BLOB_UPLOAD_UNKNOWN");
    let guarded = start(tls, true).await;
    let answer = exchange(&guarded, &head("POST", "/v2/r/blobs/uploads/?digest=sha256:00")).await;
    assert_answer(&answer, "401", "UNAUTHORIZED");
    assert!(answer.to_ascii_lowercase().contains("\r\nwww-authenticate: bearer "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_arrive_intact_over_http() {
    early_answers_arrive_intact(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_arrive_intact_over_https() {
    early_answers_arrive_intact(true).await;
}

/// Reads one answer's head (the answers here have no body).
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 1];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed");
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_after_the_whole_body_keep_the_connection() {
    let server = start(false, false).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let request = "POST /v2/r/blobs/uploads/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let answer = read_head(&mut tcp).await;
    assert!(answer.starts_with("http/1.1 202"), "{answer}");
    assert!(!answer.contains("\r\nconnection: close\r\n"), "{answer}");
    // A chunk the server stores, on the same connection: read whole, so the connection stays.
    let location = answer.lines().find_map(|l| l.strip_prefix("location: ")).unwrap().trim().to_string();
    let chunk = vec![b'x'; 100_000];
    let head = format!("PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n", chunk.len());
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&chunk).await.unwrap();
    let answer = read_head(&mut tcp).await;
    assert!(answer.starts_with("http/1.1 202"), "{answer}");
    assert!(!answer.contains("\r\nconnection: close\r\n"), "{answer}");
}
