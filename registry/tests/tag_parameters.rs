//! The draft's `tag` query parameters on a manifest push (`PUT
//! /v2/<name>/manifests/<digest>?tag=A&tag=B`, distribution-spec main): the manifest is
//! pushed by digest (sha256 or sha512) and tagged in the same request, each tag named in an
//! `OCI-Tag` header; an invalid tag refuses the whole push with 400 `TAG_INVALID`, and too
//! many tags answer 414. Driven through the router in-process.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use shared::{Algorithm, Digest};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect()
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: impl Into<Body>) -> Reply {
    let req = Request::builder().method(method).uri(uri).header("content-type", OCI_MANIFEST);
    let resp = app.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    Reply { status, headers, body: resp.into_body().collect().await.unwrap().to_bytes() }
}

/// A registry holding a config and a layer in `r`, and a manifest naming them.
async fn registry() -> (tempfile::TempDir, Router, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().to_path_buf();
    config.storage.filesystem.fsync = false;
    let app = registry::router(config).await.unwrap();
    let (cfg, layer) = (b"{}".as_slice(), b"layer".as_slice());
    for blob in [cfg, layer] {
        let d = Digest::sha256_of(blob);
        let r = call(&app, "POST", &format!("/v2/r/blobs/uploads/?digest={d}"), blob.to_vec()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":5}}]}}"#,
        Digest::sha256_of(cfg),
        Digest::sha256_of(layer)
    );
    (dir, app, manifest)
}

async fn tags(app: &Router) -> serde_json::Value {
    let r = call(app, "GET", "/v2/r/tags/list", Body::empty()).await;
    if r.status == StatusCode::NOT_FOUND {
        return serde_json::json!([]);
    }
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["tags"].clone()
}

#[tokio::test]
async fn a_push_by_digest_tags_the_manifest() {
    let (_dir, app, manifest) = registry().await;
    for (algorithm, tags_given) in [(Algorithm::Sha256, ["a", "b"]), (Algorithm::Sha512, ["c", "d"])] {
        let digest = Digest::of(algorithm, manifest.as_bytes());
        let uri = format!("/v2/r/manifests/{digest}?tag={}&tag={}", tags_given[0], tags_given[1]);
        let r = call(&app, "PUT", &uri, manifest.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.all("oci-tag"), tags_given);
        assert_eq!(r.all("docker-content-digest"), [digest.to_string()]);
        for tag in tags_given {
            let got = call(&app, "GET", &format!("/v2/r/manifests/{tag}"), Body::empty()).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.all("docker-content-digest"), [digest.to_string()], "{tag}");
            assert_eq!(got.body, manifest.as_bytes());
        }
    }
    assert_eq!(tags(&app).await, serde_json::json!(["a", "b", "c", "d"]));
}

#[tokio::test]
async fn an_invalid_tag_refuses_the_whole_push() {
    let (_dir, app, manifest) = registry().await;
    let digest = Digest::sha256_of(manifest.as_bytes());
    let long = "t".repeat(129);
    for bad in ["-dash", ".hidden", "a%2Fb", "", long.as_str()] {
        let r = call(&app, "PUT", &format!("/v2/r/manifests/{digest}?tag=ok&tag={bad}"), manifest.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(r.code(), "TAG_INVALID", "{bad:?}");
    }
    let many: Vec<String> = (0..101).map(|i| format!("tag={i}")).collect();
    let r = call(&app, "PUT", &format!("/v2/r/manifests/{digest}?{}", many.join("&")), manifest.clone()).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_eq!(r.code(), "TAG_INVALID");
    // Nothing was pushed: no tag, no manifest.
    assert_eq!(tags(&app).await, serde_json::json!([]));
    let got = call(&app, "GET", &format!("/v2/r/manifests/{digest}"), Body::empty()).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    // A hundred are fine.
    let hundred: Vec<String> = (0..100).map(|i| format!("tag={i}")).collect();
    let r = call(&app, "PUT", &format!("/v2/r/manifests/{digest}?{}", hundred.join("&")), manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.all("oci-tag").len(), 100);
}
