//! Logging: each request gets one tracing span (method, route, path; status and duration once
//! answered) around everything logged for it, closed by one event. The only test of its
//! binary, since it installs a log subscriber for the process.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use shared::Digest;
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn each_request_has_one_span_with_its_outcome() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().to_path_buf();
    config.storage.filesystem.fsync = false;
    let app = registry::router(config).await.unwrap();
    let call = |method: &str, uri: String, body: &'static str| {
        let req = Request::builder().method(method).uri(uri).body(Body::from(body)).unwrap();
        app.clone().oneshot(req)
    };
    let d = Digest::sha256_of(b"x");
    call("POST", format!("/v2/a/blobs/uploads/?digest={d}"), "x").await.unwrap();
    call("GET", "/v2/a/manifests/nothing".into(), "").await.unwrap();

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // The audit event of the push is logged inside the request's span.
    let push = r#"request{method=POST route="upload" path="/v2/a/blobs/uploads/"}"#;
    assert!(lines.iter().any(|l| l.contains(push) && l.contains("blob pushed")), "{log}");
    // Each request is closed by one event whose span has its status and duration.
    let closing: Vec<&&str> = lines.iter().filter(|l| l.ends_with(": request")).collect();
    assert_eq!(closing.len(), 2, "{log}");
    assert!(closing[0].contains(r#"route="upload" path="/v2/a/blobs/uploads/" status=201 duration_ms="#), "{log}");
    let missing = r#"request{method=GET route="manifest" path="/v2/a/manifests/nothing" status=404 duration_ms="#;
    assert!(closing[1].contains(missing), "{log}");
}
