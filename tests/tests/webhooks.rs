//! Webhooks (`[[webhooks]]`) against receivers served by the test on 127.0.0.1:0: a signed
//! envelope for a `docker push` and a manifest delete; a receiver refusing connections for a
//! while gets the event once it is up (and the system page lists the delivery); a receiver
//! that never answers does not hold pushes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use registry::webhooks::{DeliveryStatus, EventKind, WebhookConfig};
use registry::AppState;
use tokio::sync::mpsc;

const SECRET: &str = "webhook test secret";

/// What a receiver got: the headers and body of each POST.
type Received = mpsc::UnboundedReceiver<(HeaderMap, Bytes)>;

/// Serves a receiver on `listener`: it records each POST and answers 200, or, when `hang`,
/// records it and never answers.
fn receiver(listener: tokio::net::TcpListener, hang: bool) -> Received {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                if hang {
                    std::future::pending::<()>().await;
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    rx
}

/// A receiver's settings for `url`.
fn hook(url: String, events: Vec<EventKind>) -> WebhookConfig {
    WebhookConfig { url, events, secret: Some(SECRET.into()), ..WebhookConfig::default() }
}

/// A registry in this process (so the test can read its deliveries), on 127.0.0.1:0.
async fn registry(hooks: Vec<WebhookConfig>) -> (tempfile::TempDir, AppState, SocketAddr) {
    e2e::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().to_path_buf();
    config.storage.filesystem.fsync = false;
    config.addr = addr;
    config.webhooks = hooks;
    let state = registry::state(config).await.unwrap();
    let app = registry::api::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (dir, state, addr)
}

/// Pushes a small image (a config, no layers) to `repo:tag` over HTTP; returns its digest.
async fn push(addr: SocketAddr, repo: &str, tag: &str, seed: usize) -> String {
    let http = reqwest::Client::new();
    let config = format!("{{\"seed\":{seed}}}");
    let digest = shared::Digest::sha256_of(config.as_bytes());
    let resp = http
        .post(format!("http://{addr}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.to_string(), "size": config.len()},
        "layers": [],
    })
    .to_string();
    let resp = http
        .put(format!("http://{addr}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    shared::Digest::sha256_of(manifest.as_bytes()).to_string()
}

/// The next POST a receiver gets (a minute at most), with its signature checked; returns
/// the envelope's one event.
async fn next_event(rx: &mut Received) -> serde_json::Value {
    let (headers, body) =
        tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("no event within a minute").unwrap();
    assert_eq!(headers["content-type"], "application/vnd.docker.distribution.events.v1+json");
    let signature = headers["x-berth-signature-256"].to_str().unwrap();
    assert_eq!(signature, registry::webhooks::envelope::signature(SECRET, &body), "a wrong signature");
    let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let events = envelope["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{envelope}");
    events[0].clone()
}

/// A tarball of one small file whose bytes depend on `seed`.
fn layer_tar(dir: &std::path::Path, seed: &str) -> std::path::PathBuf {
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("data"), format!("webhook test {seed}")).unwrap();
    let tar = dir.join("layer.tar");
    let out =
        std::process::Command::new("tar").arg("-C").arg(&content).arg("-cf").arg(&tar).arg("data").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tar
}

/// `docker push` and a manifest DELETE each reach the receiver as a signed envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_push_and_a_delete_reach_the_receiver_signed() {
    if !e2e::docker_available("a_docker_push_and_a_delete_reach_the_receiver_signed").await.unwrap() {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let mut rx = receiver(listener, false);
    let (_dir, state, addr) = registry(vec![hook(url, vec![EventKind::Push, EventKind::Delete])]).await;
    let work = tempfile::tempdir().unwrap();
    let image = format!("{addr}/e2e/webhook:v1");
    let tar = layer_tar(work.path(), &format!("{addr}"));
    e2e::run_ok("docker", &["import", tar.to_str().unwrap(), &image]).await.unwrap();
    let pushed = e2e::run_ok("docker", &["push", &image]).await;
    let _ = e2e::run("docker", &["rmi", "-f", &image]).await;
    pushed.unwrap();

    let event = next_event(&mut rx).await;
    assert_eq!(event["action"], "push", "{event}");
    let target = &event["target"];
    assert_eq!((target["repository"].as_str(), target["tag"].as_str()), (Some("e2e/webhook"), Some("v1")), "{event}");
    assert_eq!(target["mediaType"], "application/vnd.docker.distribution.manifest.v2+json", "{event}");
    let digest = target["digest"].as_str().unwrap().to_string();
    assert_eq!(target["url"], format!("http://{addr}/v2/e2e/webhook/manifests/{digest}"));
    assert!(target["size"].as_u64().unwrap() > 100, "{event}");
    assert_eq!(event["request"]["method"], "PUT");
    assert!(event["request"]["useragent"].as_str().unwrap().contains("docker"), "{event}");
    assert_eq!(event["actor"]["name"], "anonymous");

    let http = reqwest::Client::new();
    let resp = http.delete(format!("http://{addr}/v2/e2e/webhook/manifests/{digest}")).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let event = next_event(&mut rx).await;
    assert_eq!((event["action"].as_str(), event["target"]["digest"].as_str()), (Some("delete"), Some(digest.as_str())));
    assert_eq!(event["target"]["repository"], "e2e/webhook");
    // The receiver has the body before the registry has its answer: wait for the record.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = state.webhooks.deliveries();
        if d.len() == 2 && d.iter().all(|d| d.status == DeliveryStatus::Delivered) {
            assert!(d.iter().all(|d| d.attempts == 1 && d.last_status == Some(200)), "{d:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A receiver refusing connections gets the event once it listens again, after retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_the_event_once_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    drop(taken);
    let mut config = hook(format!("http://{port}/hook"), vec![EventKind::Push]);
    (config.backoff_ms, config.max_attempts) = (100, 1000);
    let (_dir, state, addr) = registry(vec![config]).await;
    let digest = push(addr, "team/app", "v1", 1).await;
    // Two attempts refused, then the receiver comes up on that port.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = state.webhooks.deliveries();
        if d.first().is_some_and(|d| d.attempts >= 2) {
            assert!(d[0].last_error.is_some() && d[0].status == DeliveryStatus::Pending, "{d:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no retry within a minute: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rx = receiver(tokio::net::TcpListener::bind(port).await.unwrap(), false);
    let event = next_event(&mut rx).await;
    assert_eq!(
        (event["target"]["digest"].as_str(), event["target"]["tag"].as_str()),
        (Some(digest.as_str()), Some("v1"))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while state.webhooks.deliveries()[0].status != DeliveryStatus::Delivered {
        assert!(std::time::Instant::now() < deadline, "{:?}", state.webhooks.deliveries());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(state.webhooks.deliveries()[0].attempts >= 3);
    // The system page lists the delivery, its retries and where it went.
    let page = reqwest::get(format!("http://{addr}/system")).await.unwrap().text().await.unwrap();
    let row = page.split("<tr>").find(|r| r.contains("push team/app:v1")).unwrap_or_else(|| panic!("{page}"));
    assert!(row.contains(&format!("#0 http://{port}<")) && row.contains(">delivered<"), "{row}");
    let attempts = state.webhooks.deliveries()[0].attempts;
    assert!(row.contains(&format!("<td class=\"num\">{attempts}</td>")), "{row}");
}

/// While a receiver holds a delivery and never answers, pushes go on and complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_does_not_hold_pushes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let mut rx = receiver(listener, true);
    let mut config = hook(url, vec![EventKind::Push]);
    (config.timeout_secs, config.queue) = (3600, 2);
    let (_dir, state, addr) = registry(vec![config]).await;
    push(addr, "team/app", "v0", 0).await;
    // The receiver holds the first delivery, unanswered.
    let (_, body) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&body).contains("\"tag\":\"v0\""));
    for i in 1..=5 {
        push(addr, "team/app", &format!("v{i}"), i).await;
    }
    // All pushed; the queue of two kept the last two, the older ones were dropped.
    let d = state.webhooks.deliveries();
    assert_eq!(d.len(), 6, "{d:?}");
    assert_eq!(d.iter().filter(|d| d.status == DeliveryStatus::Dropped).count(), 3, "{d:?}");
    assert_eq!(state.webhooks.dropped(), 3);
    assert!(state.webhooks.render_metrics().contains("berth_webhook_dropped_events_total 3"));
    assert_eq!((d[5].reference.as_str(), d[5].status, d[5].attempts), ("v0", DeliveryStatus::Pending, 0), "{d:?}");
}
