//! Bad inputs, driven through the router in-process: each gets its spec error code and
//! status, and afterwards nothing of it is stored (no blob, revision, tag or upload debris).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use shared::Digest;
use tower::ServiceExt;

struct Registry {
    dir: tempfile::TempDir,
    app: Router,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not a JSON error body: {:?}", String::from_utf8_lossy(&self.body)));
        v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn expect(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.code(), code);
    }
}

impl Registry {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = registry::Config::default();
        config.storage.filesystem.root = dir.path().to_path_buf();
        config.storage.filesystem.fsync = false;
        let app = registry::router(config).await.unwrap();
        Registry { dir, app }
    }

    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, body }
    }

    async fn call(&self, method: &str, uri: &str, body: impl Into<Body>) -> Reply {
        self.send(method, uri, &[], body.into()).await
    }

    /// Every file below the storage root, relative, sorted.
    fn files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let p: PathBuf = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else if !p.ends_with("touched") && !p.strip_prefix(base).unwrap().starts_with("_auth") {
                    // (Markers a push rewrites for the collector, and the registry's own keys
                    // such as the UI's session key written at start-up: not content.)
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }

    /// Nothing readable was stored: no blob, link, revision or tag (open upload sessions may
    /// hold their bytes received so far).
    fn assert_nothing_stored(&self) {
        let files = self.files();
        assert!(files.iter().all(|f| f.starts_with("uploads/")), "unexpected content stored: {files:?}");
    }

    async fn start_upload(&self, repo: &str) -> String {
        let r = self.call("POST", &format!("/v2/{repo}/blobs/uploads/"), Body::empty()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        r.header("location").to_string()
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self.call("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), data.to_vec()).await;
        assert_eq!(r.status, StatusCode::CREATED);
        d
    }
}

fn failing_body(first: &'static [u8]) -> Body {
    let parts: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from_static(first)), Err(std::io::Error::other("client went away"))];
    Body::from_stream(futures_util::stream::iter(parts))
}

#[tokio::test]
async fn wrong_digest_monolithic() {
    let reg = Registry::new().await;
    let other = Digest::sha256_of(b"other");
    let r = reg.call("POST", &format!("/v2/r/blobs/uploads/?digest={other}"), "data").await;
    r.expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    reg.call("HEAD", &format!("/v2/r/blobs/{other}"), Body::empty()).await;
    assert_eq!(reg.call("HEAD", &format!("/v2/r/blobs/{other}"), Body::empty()).await.status, StatusCode::NOT_FOUND);
    assert!(reg.files().is_empty(), "{:?}", reg.files());
}

#[tokio::test]
async fn wrong_digest_chunked() {
    let reg = Registry::new().await;
    let loc = reg.start_upload("r").await;
    let r = reg.send("PATCH", &loc, &[("content-range", "0-3")], Body::from("data")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let wrong = Digest::sha256_of(b"datx");
    let r = reg.call("PUT", &format!("{loc}?digest={wrong}"), Body::empty()).await;
    r.expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    assert!(reg.files().is_empty(), "{:?}", reg.files());
    // The session is gone after a failed finish.
    reg.call("GET", &loc, Body::empty()).await.expect(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn malformed_digests_and_unknown_algorithms() {
    let reg = Registry::new().await;
    reg.call("POST", "/v2/r/blobs/uploads/?digest=sha256:abc", "x")
        .await
        .expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    reg.call("GET", "/v2/r/blobs/sha256:zz", Body::empty()).await.expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    reg.call("GET", "/v2/r/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", Body::empty())
        .await
        .expect(StatusCode::BAD_REQUEST, "UNSUPPORTED");
    let loc = reg.start_upload("r").await;
    reg.call("PUT", &loc, "x").await.expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    reg.assert_nothing_stored();
}

#[tokio::test]
async fn truncated_upload_counts_for_nothing() {
    let reg = Registry::new().await;
    // Monolithic: the body breaks off; no blob appears and no session is left.
    let d = Digest::sha256_of(b"complete data");
    let r = reg.send("POST", &format!("/v2/r/blobs/uploads/?digest={d}"), &[], failing_body(b"complete")).await;
    r.expect(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
    assert!(reg.files().is_empty(), "{:?}", reg.files());

    // Chunked: the broken chunk is not counted; the client resumes from the reported range.
    let loc = reg.start_upload("r").await;
    let r = reg.send("PATCH", &loc, &[], failing_body(b"complete")).await;
    r.expect(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
    let status = reg.call("GET", &loc, Body::empty()).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-0");
    let r = reg.send("PATCH", &loc, &[("content-range", "0-12")], Body::from("complete data")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = reg.call("PUT", &format!("{loc}?digest={d}"), Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let got = reg.call("GET", &format!("/v2/r/blobs/{d}"), Body::empty()).await;
    assert_eq!(&got.body[..], b"complete data");
}

#[tokio::test]
async fn out_of_order_and_overlapping_chunks() {
    let reg = Registry::new().await;
    let loc = reg.start_upload("r").await;
    assert_eq!(
        reg.send("PATCH", &loc, &[("content-range", "0-4")], Body::from("01234")).await.status,
        StatusCode::ACCEPTED
    );
    for range in ["10-14", "3-7", "0-4"] {
        let r = reg.send("PATCH", &loc, &[("content-range", range)], Body::from("56789")).await;
        r.expect(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID");
        assert_eq!(r.header("range"), "0-4");
        assert!(r.header("location").ends_with(loc.rsplit('/').next().unwrap()));
    }
    // A malformed Content-Range, or one that disagrees with Content-Length, is refused too.
    for range in ["abc", "9-5"] {
        let r = reg.send("PATCH", &loc, &[("content-range", range)], Body::from("56789")).await;
        r.expect(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID");
    }
    let r = reg.send("PATCH", &loc, &[("content-range", "5-20"), ("content-length", "5")], Body::from("56789")).await;
    r.expect(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID");
    let status = reg.call("GET", &loc, Body::empty()).await;
    assert_eq!(status.header("range"), "0-4");
    reg.assert_nothing_stored();
}

#[tokio::test]
async fn unknown_upload_ids() {
    let reg = Registry::new().await;
    for id in ["0123456789abcdef0123456789abcdef", "nope", "..", "..%2f..%2fetc"] {
        for method in ["GET", "PATCH", "PUT", "DELETE"] {
            let uri = format!("/v2/r/blobs/uploads/{id}?digest={}", Digest::sha256_of(b""));
            let r = reg.call(method, &uri, Body::empty()).await;
            r.expect(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        }
    }
    // A session belongs to its repository.
    let loc = reg.start_upload("r").await;
    let foreign = loc.replace("/v2/r/", "/v2/other/");
    reg.call("GET", &foreign, Body::empty()).await.expect(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn invalid_names_and_tags() {
    let reg = Registry::new().await;
    for name in ["UPPER", "a/../b", "a/./b", "a//b", "-a", "a-", "%2e%2e/x", "a%2fb", "_x"] {
        for path in ["tags/list", "manifests/latest", "blobs/uploads/"] {
            let method = if path.starts_with("blobs") { "POST" } else { "GET" };
            let r = reg.call(method, &format!("/v2/{name}/{path}"), Body::empty()).await;
            r.expect(StatusCode::BAD_REQUEST, "NAME_INVALID");
        }
    }
    let long_tag = "t".repeat(129);
    for tag in [".hidden", "-dash", long_tag.as_str()] {
        let r = reg.call("PUT", &format!("/v2/r/manifests/{tag}"), "{}").await;
        r.expect(StatusCode::BAD_REQUEST, "TAG_INVALID");
        // DELETE may answer 400 too (end-9 of the spec's endpoint table).
        let r = reg.call("DELETE", &format!("/v2/r/manifests/{tag}"), Body::empty()).await;
        r.expect(StatusCode::BAD_REQUEST, "TAG_INVALID");
    }
    assert!(reg.files().is_empty(), "{:?}", reg.files());
}

#[tokio::test]
async fn pulling_by_an_invalid_reference_is_not_found() {
    // end-3 (GET/HEAD of a manifest) fails only with 404: a reference that is neither a tag
    // nor a digest names no manifest.
    let reg = Registry::new().await;
    let long_tag = "t".repeat(129);
    for reference in [".hidden", "-dash", long_tag.as_str(), "sha256:zz", "md5:d41d8cd98f00b204e9800998ecf8427e"] {
        let uri = format!("/v2/r/manifests/{reference}");
        reg.call("GET", &uri, Body::empty()).await.expect(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        assert_eq!(reg.call("HEAD", &uri, Body::empty()).await.status, StatusCode::NOT_FOUND, "{reference}");
    }
}

fn image_manifest(config: &Digest, config_size: usize, layer: &Digest, layer_size: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{layer_size}}}]}}"#
    )
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn malformed_manifests() {
    let reg = Registry::new().await;
    let ct = [("content-type", OCI_MANIFEST)];
    for body in [
        "",
        "{",
        "not json",
        "[]",
        r#"{"schemaVersion":1}"#,
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
    ] {
        let r = reg.send("PUT", "/v2/r/manifests/v1", &ct, Body::from(body)).await;
        r.expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
    }
    // Content-Type and mediaType disagree.
    let d = Digest::sha256_of(b"");
    let body = image_manifest(&d, 0, &d, 0);
    let r = reg
        .send("PUT", "/v2/r/manifests/v1", &[("content-type", "application/vnd.oci.image.index.v1+json")], body.into())
        .await;
    r.expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
    assert!(reg.files().is_empty(), "{:?}", reg.files());
}

#[tokio::test]
async fn manifest_with_missing_or_wrong_blobs() {
    let reg = Registry::new().await;
    let config = reg.push_blob("r", b"{}").await;
    let missing = Digest::sha256_of(b"never pushed");
    let before = reg.files();
    let ct = [("content-type", OCI_MANIFEST)];
    let r = reg.send("PUT", "/v2/r/manifests/v1", &ct, image_manifest(&config, 2, &missing, 12).into()).await;
    r.expect(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["errors"][0]["detail"]["digest"], missing.to_string());
    // A blob pushed to another repository does not count.
    let elsewhere = reg.push_blob("other", b"layer").await;
    let before_other = reg.files();
    let r = reg.send("PUT", "/v2/r/manifests/v1", &ct, image_manifest(&config, 2, &elsewhere, 5).into()).await;
    r.expect(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    // A wrong size is refused.
    let layer = reg.push_blob("r", b"layer").await;
    let before_size = reg.files();
    let r = reg.send("PUT", "/v2/r/manifests/v1", &ct, image_manifest(&config, 2, &layer, 6).into()).await;
    r.expect(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
    assert_eq!(reg.files(), before_size);
    assert!(before.len() < before_other.len());
    // An index whose child manifest is missing.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{missing}","size":10}}]}}"#
    );
    let r = reg
        .send(
            "PUT",
            "/v2/r/manifests/multi",
            &[("content-type", "application/vnd.oci.image.index.v1+json")],
            index.into(),
        )
        .await;
    r.expect(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(reg.files(), before_size);
    reg.call("GET", "/v2/r/manifests/v1", Body::empty()).await.expect(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_digest_mismatch() {
    let reg = Registry::new().await;
    let config = reg.push_blob("r", b"{}").await;
    let layer = reg.push_blob("r", b"layer").await;
    let before = reg.files();
    let body = image_manifest(&config, 2, &layer, 5);
    let wrong = Digest::sha256_of(b"x");
    let r = reg.send("PUT", &format!("/v2/r/manifests/{wrong}"), &[("content-type", OCI_MANIFEST)], body.into()).await;
    r.expect(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    assert_eq!(reg.files(), before);
}

#[tokio::test]
async fn huge_manifests_are_refused() {
    let reg = Registry::new().await;
    let mut big = String::from(r#"{"schemaVersion":2,"annotations":{"pad":""#);
    big.push_str(&"x".repeat(4 * 1024 * 1024 + 10));
    big.push_str(r#""},"manifests":[]}"#);
    let ct = [("content-type", "application/vnd.oci.image.index.v1+json")];
    let r = reg.send("PUT", "/v2/r/manifests/big", &ct, Body::from(big.clone())).await;
    r.expect(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    // Without a Content-Length the body is cut off at the limit as it streams.
    let stream = futures_util::stream::iter(
        big.into_bytes().chunks(65536).map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c))).collect::<Vec<_>>(),
    );
    let r = reg.send("PUT", "/v2/r/manifests/big", &ct, Body::from_stream(stream)).await;
    r.expect(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    assert!(reg.files().is_empty(), "{:?}", reg.files());
}

#[tokio::test]
async fn unknown_things_and_wrong_methods() {
    let reg = Registry::new().await;
    let d = Digest::sha256_of(b"nothing");
    reg.call("GET", &format!("/v2/r/blobs/{d}"), Body::empty()).await.expect(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    reg.call("DELETE", &format!("/v2/r/blobs/{d}"), Body::empty()).await.expect(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    reg.call("GET", "/v2/r/manifests/latest", Body::empty()).await.expect(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    reg.call("DELETE", "/v2/r/manifests/latest", Body::empty()).await.expect(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    reg.call("GET", "/v2/r/tags/list", Body::empty()).await.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    reg.call("POST", &format!("/v2/r/blobs/{d}"), Body::empty())
        .await
        .expect(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    reg.call("PATCH", "/v2/r/manifests/latest", Body::empty())
        .await
        .expect(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    reg.call("GET", "/v2/r/tags/list?n=abc", Body::empty())
        .await
        .expect(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID");
    // An unsatisfiable range on a real blob.
    let blob = reg.push_blob("r", b"0123456789").await;
    let r = reg.send("GET", &format!("/v2/r/blobs/{blob}"), &[("range", "bytes=10-")], Body::empty()).await;
    r.expect(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID");
    assert_eq!(r.header("content-range"), "bytes */10");
}
