//! Tag immutability (`[[immutable]]`) and repository quotas (`[[quota]]`), driven through the
//! router in-process: refusals are 403 `DENIED` with a message naming the rule or giving the
//! numbers, and what is allowed still works.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use registry::config::{ImmutableRule, QuotaRule};
use shared::Digest;
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl Reply {
    fn error(&self) -> (String, String) {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let field = |k: &str| v["errors"][0][k].as_str().unwrap_or_default().to_string();
        (field("code"), field("message"))
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: impl Into<Body>) -> Reply {
    let req = Request::builder().method(method).uri(uri).header("content-type", OCI_MANIFEST);
    let resp = app.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
    let status = resp.status();
    Reply { status, body: resp.into_body().collect().await.unwrap().to_bytes() }
}

fn config(dir: &tempfile::TempDir, change: impl FnOnce(&mut registry::Config)) -> registry::Config {
    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().to_path_buf();
    config.storage.filesystem.fsync = false;
    change(&mut config);
    config
}

/// Uploads a config `{}` and the layer `layer` to `repo`, and returns a manifest naming them.
async fn image(app: &Router, repo: &str, layer: &[u8]) -> String {
    let cfg = b"{}".as_slice();
    for blob in [cfg, layer] {
        let d = Digest::sha256_of(blob);
        let r = call(app, "POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), blob.to_vec()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        Digest::sha256_of(cfg),
        Digest::sha256_of(layer),
        layer.len()
    )
}

async fn put(app: &Router, repo: &str, reference: &str, manifest: &str) -> Reply {
    call(app, "PUT", &format!("/v2/{repo}/manifests/{reference}"), manifest.to_string()).await
}

fn assert_denied(r: &Reply, wanted: &[&str]) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&r.body));
    let (code, message) = r.error();
    assert_eq!(code, "DENIED");
    for w in wanted {
        assert!(message.contains(w), "message {message:?} lacks {w:?}");
    }
}

fn immutable(dir: &tempfile::TempDir) -> registry::Config {
    config(dir, |c| c.immutable.push(ImmutableRule { repositories: vec!["prod/*".into()], tags: vec!["v*".into()] }))
}

#[tokio::test]
async fn an_immutable_tag_is_repushed_but_never_moved() {
    let dir = tempfile::tempdir().unwrap();
    let app = registry::router(immutable(&dir)).await.unwrap();
    let (one, two) = (image(&app, "prod/app", b"one").await, image(&app, "prod/app", b"two").await);
    let (d1, d2) = (Digest::sha256_of(one.as_bytes()), Digest::sha256_of(two.as_bytes()));
    assert_eq!(put(&app, "prod/app", "v1", &one).await.status, StatusCode::CREATED);
    assert_eq!(put(&app, "prod/app", "v1", &one).await.status, StatusCode::CREATED, "the same digest again");
    let moved = put(&app, "prod/app", "v1", &two).await;
    let rule = r#"[[immutable]] rule 1: repositories ["prod/*"], tags ["v*"]"#;
    assert_denied(&moved, &["tag v1 of prod/app is immutable", rule, &d1.to_string(), &d2.to_string()]);
    let got = call(&app, "GET", "/v2/prod/app/manifests/v1", Body::empty()).await;
    assert_eq!(got.body, one.as_bytes(), "the tag still points to the first manifest");

    // Tags and repositories no rule covers move freely.
    assert_eq!(put(&app, "prod/app", "latest", &one).await.status, StatusCode::CREATED);
    assert_eq!(put(&app, "prod/app", "latest", &two).await.status, StatusCode::CREATED);
    let (dev1, dev2) = (image(&app, "dev/app", b"one").await, image(&app, "dev/app", b"two").await);
    assert_eq!(put(&app, "dev/app", "v1", &dev1).await.status, StatusCode::CREATED);
    assert_eq!(put(&app, "dev/app", "v1", &dev2).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn tag_parameters_cannot_move_an_immutable_tag() {
    let dir = tempfile::tempdir().unwrap();
    let app = registry::router(immutable(&dir)).await.unwrap();
    let (one, two) = (image(&app, "prod/app", b"one").await, image(&app, "prod/app", b"two").await);
    assert_eq!(put(&app, "prod/app", "v1", &one).await.status, StatusCode::CREATED);
    let d2 = Digest::sha256_of(two.as_bytes());
    let r = put(&app, "prod/app", &format!("{d2}?tag=fresh&tag=v1"), &two).await;
    assert_denied(&r, &["tag v1 of prod/app is immutable"]);
    let fresh = call(&app, "GET", "/v2/prod/app/manifests/fresh", Body::empty()).await;
    assert_eq!(fresh.status, StatusCode::NOT_FOUND, "a refused push tags nothing");
    // A new immutable tag may be set, to the digest pushed.
    let r = put(&app, "prod/app", &format!("{d2}?tag=v2"), &two).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn immutable_tags_and_their_manifests_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let app = registry::router(immutable(&dir)).await.unwrap();
    let (one, two) = (image(&app, "prod/app", b"one").await, image(&app, "prod/app", b"two").await);
    let (d1, d2) = (Digest::sha256_of(one.as_bytes()), Digest::sha256_of(two.as_bytes()));
    assert_eq!(put(&app, "prod/app", "v1", &one).await.status, StatusCode::CREATED);
    assert_eq!(put(&app, "prod/app", "edge", &two).await.status, StatusCode::CREATED);

    let r = call(&app, "DELETE", "/v2/prod/app/manifests/v1", Body::empty()).await;
    assert_denied(&r, &["tag v1 of prod/app is immutable", "cannot be deleted", "[[immutable]] rule 1"]);
    let r = call(&app, "DELETE", &format!("/v2/prod/app/manifests/{d1}"), Body::empty()).await;
    assert_denied(&r, &[&format!("manifest {d1} of prod/app cannot be deleted: immutable tag v1 points to it")]);
    assert_eq!(call(&app, "GET", "/v2/prod/app/manifests/v1", Body::empty()).await.status, StatusCode::OK);

    // A missing immutable tag is simply unknown; mutable tags and their manifests go.
    let r = call(&app, "DELETE", "/v2/prod/app/manifests/v9", Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&app, "DELETE", &format!("/v2/prod/app/manifests/{d2}"), Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_push_over_the_quota_is_refused_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big) = (vec![b'a'; 100], vec![b'b'; 1000]);
    // Room for the config, both layers and one manifest, not two.
    let probe = tempfile::tempdir().unwrap();
    let probe_app = registry::router(config(&probe, |_| {})).await.unwrap();
    let manifest_len = image(&probe_app, "x", &small).await.len() as u64;
    let limit = 2 + 100 + 1000 + manifest_len + 10;
    let quota = |c: &mut registry::Config| {
        c.quota.push(QuotaRule { repositories: vec!["team/*".into()], bytes: limit });
    };
    let app = registry::router(config(&dir, quota)).await.unwrap();
    // A second replica on the same storage.
    let replica = registry::router(config(&dir, quota)).await.unwrap();

    let one = image(&app, "team/app", &small).await;
    assert_eq!(put(&app, "team/app", "one", &one).await.status, StatusCode::CREATED);
    let used = 2 + 100 + one.len() as u64;
    let two = image(&app, "team/app", &big).await;
    let added = 1000 + two.len() as u64;
    let r = put(&replica, "team/app", "two", &two).await;
    let message =
        format!("quota of {limit} bytes for repository team/app would be exceeded: {used} used + {added} new");
    assert_denied(&r, &[&message]);

    // Nothing new: another tag for a stored manifest is fine. Other repositories are free.
    assert_eq!(put(&app, "team/app", "again", &one).await.status, StatusCode::CREATED);
    let other = image(&app, "solo/app", &big).await;
    assert_eq!(put(&app, "solo/app", "x", &other).await.status, StatusCode::CREATED);

    // Deleting the first manifest makes room, on every replica.
    let d1 = Digest::sha256_of(one.as_bytes());
    let r = call(&app, "DELETE", &format!("/v2/team/app/manifests/{d1}"), Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(put(&replica, "team/app", "two", &two).await.status, StatusCode::CREATED);
}
