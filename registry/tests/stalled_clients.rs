//! Thousands of stalled clients (issue 11.6): uploads that stop half-way through a `PATCH`
//! body and downloads that stop reading hold no thread of the server, so manifest requests
//! (and new pushes) still answer; released, every upload completes with its digest verified.
//!
//! The server runs in-process on a runtime with a small blocking pool, so that a server that
//! held a thread per transfer would run out of them after a few dozen clients and never
//! answer again; each step waits for its answer at most [`ANSWER`], generous for a server
//! that works and fatal to one that does not.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use shared::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Uploads stalled at once.
const UPLOADS: usize = 2000;
/// Downloads stalled at once.
const DOWNLOADS: usize = 2000;
/// Every this many uploads, one sends several MiB before stalling (past the bytes hashed
/// inline and past a whole write buffer of the driver); the others send a little.
const BIG_EVERY: usize = 200;
/// Bytes a small upload announces, and sends before stalling.
const SMALL: (usize, usize) = (48 * 1024, 32 * 1024);
/// Bytes a big upload announces, and sends before stalling.
const BIG: (usize, usize) = (6 << 20, 5 << 20);
/// The blob the downloads fetch: far more than the socket buffers and the server's chunks
/// in flight hold.
const BLOB: usize = 8 << 20;
/// Stalled downloads read to their end once released (through their small receive buffer,
/// which is slow).
const READ_TO_END: usize = 4;
/// Threads of the server's blocking pool (tokio's default is 512).
const BLOCKING_THREADS: usize = 64;
/// The server's bound on disk operations at once (`storage.filesystem.max_threads`).
const MAX_THREADS: usize = 16;
/// The longest any one answer may take.
const ANSWER: Duration = Duration::from_secs(10);
/// The longest reading a stalled download to its end may take.
const TRANSFER: Duration = Duration::from_secs(120);
const REPO: &str = "stall";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn stalled_uploads_and_downloads_leave_the_server_answering() {
    // Both ends of every socket live in this process, and the server holds a file open for
    // each transfer.
    raise_fd_limit(3 * (UPLOADS + DOWNLOADS) + 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(scenario());
}

async fn scenario() {
    let server = Server::start().await;
    let http = reqwest::Client::builder().timeout(ANSWER).build().unwrap();
    let (blob, manifest) = server.push_image(&http, "latest", 1).await;
    let t = std::time::Instant::now();

    let mut downloads = Vec::with_capacity(DOWNLOADS);
    for _ in 0..DOWNLOADS {
        downloads.push(within("a download's first bytes", stall_download(server.addr, &blob)).await);
    }
    eprintln!("{DOWNLOADS} downloads stalled after {:?}", t.elapsed());
    let mut uploads = Vec::with_capacity(UPLOADS);
    for i in 0..UPLOADS {
        uploads.push(within("a stalled upload's bytes to be taken", server.stall_upload(&http, i)).await);
    }
    // The big uploads' first buffer has reached the disk: the server took their bytes in.
    for up in uploads.iter().filter(|u| u.sent == BIG.1) {
        within("a big upload's first write", server.upload_data_reaches(&up.id, 4 << 20)).await;
    }

    eprintln!("{UPLOADS} uploads stalled after {:?}", t.elapsed());
    // With all of them stalled, manifests and blob metadata still answer, and pushes work.
    for _ in 0..20 {
        let got = server.get_manifest(&http, "latest").await;
        assert_eq!(got, manifest);
        let head = http.head(server.url(&format!("/v2/{REPO}/blobs/{blob}"))).send().await.unwrap();
        assert_eq!(head.status(), 200);
    }
    let (_, fresh) = server.push_image(&http, "fresh", 2).await;
    assert_eq!(server.get_manifest(&http, "fresh").await, fresh);

    eprintln!("manifests answered after {:?}", t.elapsed());
    // Released, the uploads finish and verify, and the downloads deliver the right bytes.
    let finished: Vec<(Digest, usize)> = futures_util::stream::iter(
        uploads.into_iter().map(|up| within("finishing an upload", up.finish(&server, &http))),
    )
    .buffer_unordered(32)
    .collect()
    .await;
    for (digest, len) in finished.iter().step_by(97).chain(finished.iter().filter(|(_, len)| *len == BIG.0)) {
        let got = http.get(server.url(&format!("/v2/{REPO}/blobs/{digest}"))).send().await.unwrap();
        assert_eq!(got.status(), 200);
        let bytes = got.bytes().await.unwrap();
        assert_eq!((Digest::sha256_of(&bytes), bytes.len()), (digest.clone(), *len));
    }
    eprintln!("uploads finished and checked after {:?}", t.elapsed());
    let mut rest = downloads.split_off(READ_TO_END);
    let read = futures_util::future::join_all(downloads.into_iter().map(|d| d.finish()));
    let read = tokio::time::timeout(TRANSFER, read).await.expect("released downloads did not finish");
    assert!(read.iter().all(|d| *d == blob), "a download delivered other bytes");
    rest.clear();
    eprintln!("downloads read after {:?}", t.elapsed());
    assert_eq!(server.get_manifest(&http, "latest").await, manifest);
}

/// Waits for `fut` at most [`ANSWER`].
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(ANSWER, fut).await {
        Ok(v) => v,
        Err(_) => {
            panic!("{what} took more than {ANSWER:?}: the server stopped answering (blocking threads exhausted?)")
        }
    }
}

/// Raises this process's open-file limit to `want` (or the hard limit), for the thousands of
/// sockets (both ends live in this process) and open blob files.
fn raise_fd_limit(want: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let want = (want as u64).min(hard);
    if limit.current.is_some_and(|c| c < want) {
        limit.current = Some(want);
        setrlimit(Resource::Nofile, limit).unwrap();
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(now >= want, "the open-file limit is {now}; this test needs {want} (raise the hard limit: ulimit -Hn)");
}

/// Bytes of their own for each seed (xorshift), so no two uploads share a digest.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = registry::Config::default();
        config.storage.filesystem.root = dir.path().to_path_buf();
        config.storage.filesystem.fsync = false;
        config.storage.filesystem.max_threads = MAX_THREADS;
        config.uploads.purge_interval_secs = 0;
        // Small kernel buffers on the server's sockets (accepted sockets inherit them): a
        // download that is not read stalls the server's writing after little data.
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4096).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(registry::serve_on(listener, config, async move {
            let _ = stopped.await;
        }));
        Server { addr, dir, _stop: stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn push_blob(&self, http: &reqwest::Client, data: Vec<u8>) -> Digest {
        let digest = Digest::sha256_of(&data);
        let url = self.url(&format!("/v2/{REPO}/blobs/uploads/?digest={digest}"));
        let resp = http.post(url).body(data).send().await.unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
        digest
    }

    /// Pushes a blob of [`BLOB`] bytes, a config and a manifest tagged `tag`; returns the
    /// blob's digest and the manifest.
    async fn push_image(&self, http: &reqwest::Client, tag: &str, seed: u64) -> (Digest, Vec<u8>) {
        let layer = self.push_blob(http, content(seed, BLOB)).await;
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = self.push_blob(http, config.to_vec()).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": BLOB}],
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let url = self.url(&format!("/v2/{REPO}/manifests/{tag}"));
        let resp = http.put(url).header("content-type", MANIFEST_TYPE).body(manifest.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
        (layer, manifest)
    }

    async fn get_manifest(&self, http: &reqwest::Client, tag: &str) -> Vec<u8> {
        let url = self.url(&format!("/v2/{REPO}/manifests/{tag}"));
        let resp = within("a manifest GET", http.get(url).header("accept", MANIFEST_TYPE).send()).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap().to_vec()
    }

    /// Starts upload `i` and sends part of its `PATCH` body, then stops.
    async fn stall_upload(&self, http: &reqwest::Client, i: usize) -> StalledUpload {
        let resp = http.post(self.url(&format!("/v2/{REPO}/blobs/uploads/"))).send().await.unwrap();
        assert_eq!(resp.status(), 202);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let id = location.rsplit('/').next().unwrap().to_string();
        let (len, sent) = if i.is_multiple_of(BIG_EVERY) { BIG } else { SMALL };
        let seed = 1000 + i as u64;
        let data = content(seed, sent);
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\n\
             content-length: {len}\r\ncontent-range: 0-{}\r\n\r\n",
            self.addr,
            len - 1
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&data).await.unwrap();
        StalledUpload { location, id, seed, len, sent, stream }
    }

    /// Waits until the upload's data file holds at least `len` bytes.
    async fn upload_data_reaches(&self, id: &str, len: u64) {
        let path = self.dir.path().join("uploads").join(id).join("data");
        while std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < len {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An upload that sent the first `sent` of its `len` bytes (made from `seed`) and stopped.
struct StalledUpload {
    location: String,
    id: String,
    seed: u64,
    len: usize,
    sent: usize,
    stream: TcpStream,
}

impl StalledUpload {
    /// Sends the rest of the body, then finishes the upload with its digest.
    async fn finish(mut self, server: &Server, http: &reqwest::Client) -> (Digest, usize) {
        let data = content(self.seed, self.len);
        self.stream.write_all(&data[self.sent..]).await.unwrap();
        let (status, _) = read_head(&mut self.stream).await;
        assert_eq!(status, 202, "PATCH of {}", self.location);
        let digest = Digest::sha256_of(&data);
        let resp = http.put(server.url(&format!("{}?digest={digest}", self.location))).send().await.unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
        (digest, self.len)
    }
}

/// A blob GET whose client read the headers and the first bytes and then stopped reading.
struct StalledDownload {
    stream: TcpStream,
    /// The body bytes read so far.
    body: Vec<u8>,
}

impl StalledDownload {
    /// Reads the rest of the blob; returns the digest of all of it.
    async fn finish(mut self) -> Digest {
        self.body.reserve(BLOB);
        while self.body.len() < BLOB {
            let mut buf = vec![0u8; 256 * 1024];
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the download ended after {} bytes", self.body.len());
            self.body.extend_from_slice(&buf[..n]);
        }
        Digest::sha256_of(&self.body)
    }
}

/// GETs the blob over a socket with a small receive buffer, reads the first bytes, stops.
async fn stall_download(addr: SocketAddr, blob: &Digest) -> StalledDownload {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let req = format!("GET /v2/{REPO}/blobs/{blob} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let (status, mut body) = read_head(&mut stream).await;
    assert_eq!(status, 200);
    while body.is_empty() {
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the download ended before its first byte");
        body.extend_from_slice(&buf[..n]);
    }
    StalledDownload { stream, body }
}

/// Reads a response's head; returns its status and the bytes read past it.
async fn read_head(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before a response: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            return (status, got[end + 4..].to_vec());
        }
    }
}
