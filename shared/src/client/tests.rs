//! The client against the fake registry: authentication, redirects, verification, index
//! resolution and pushing.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::testing::{FakeAuth, FakeRegistry, Fault};
use super::*;
use crate::manifest::{Descriptor, Platform};
use crate::media_type;
use crate::name::Reference;
use crate::ImageRef;

const REPO: &str = "team/app";

/// A fake registry holding one image (`team/app:v1`): a config and two layers.
struct Fixture {
    registry: FakeRegistry,
    image: ImageRef,
    manifest: Digest,
    layers: Vec<Descriptor>,
}

fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::sha256_of(data),
        size: data.len() as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
        urls: None,
    }
}

fn manifest_json(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<Descriptor> = layers.iter().map(|l| descriptor(media_type::OCI_LAYER_GZIP, l)).collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, config),
        "layers": layers,
    }))
    .unwrap()
}

async fn fixture(auth: FakeAuth, redirect: bool) -> Fixture {
    let registry = FakeRegistry::start(auth, redirect).await.unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer_a = vec![1u8; 3000];
    let layer_b = vec![2u8; 5000];
    registry.add_blob(config);
    registry.add_blob(&layer_a);
    registry.add_blob(&layer_b);
    let body = manifest_json(config, &[&layer_a, &layer_b]);
    let manifest = registry.add_manifest(REPO, Some("v1"), media_type::OCI_MANIFEST, &body);
    let image: ImageRef = format!("{}/{REPO}:v1", registry.host()).parse().unwrap();
    let layers =
        vec![descriptor(media_type::OCI_LAYER_GZIP, &layer_a), descriptor(media_type::OCI_LAYER_GZIP, &layer_b)];
    Fixture { registry, image, manifest, layers }
}

fn client_with(credentials: Option<(&str, &str)>, host: &str) -> Client {
    let provider: Arc<dyn CredentialProvider> = match credentials {
        Some((u, p)) => {
            Arc::new(StaticCredentials::single(host, Credentials { username: u.into(), password: p.into() }))
        }
        None => Arc::new(Anonymous),
    };
    Client::new(ClientConfig::default(), provider).unwrap()
}

async fn fetch_all(client: &Client, f: &Fixture) -> Result<Vec<Vec<u8>>, ClientError> {
    let pulled = client.manifest(&f.image, &f.image.reference()).await?;
    assert_eq!(pulled.digest, f.manifest);
    let mut out = Vec::new();
    for layer in &pulled.manifest.layers {
        let mut buf = Vec::new();
        let mut seen = 0;
        client.blob_to(&f.image, layer, &mut buf, &mut |n| seen = n).await?;
        assert_eq!(seen, layer.size);
        out.push(buf);
    }
    Ok(out)
}

#[tokio::test]
async fn pulls_anonymously_over_plain_http_on_loopback() {
    let f = fixture(FakeAuth::None, false).await;
    let client = Client::anonymous().unwrap();
    let blobs = fetch_all(&client, &f).await.unwrap();
    assert_eq!(blobs[0], vec![1u8; 3000]);
    assert_eq!(blobs[1], vec![2u8; 5000]);
    assert_eq!(client.scheme(&f.registry.host()), Some(Scheme::Http));
    // Config fetched whole and verified.
    let pulled = client.manifest(&f.image, &f.image.reference()).await.unwrap();
    let config = client.blob_bytes(&f.image, pulled.manifest.config.as_ref().unwrap(), 1024).await.unwrap();
    assert!(config.starts_with(b"{\"architecture\""));
    assert!(matches!(
        client.blob_bytes(&f.image, pulled.manifest.config.as_ref().unwrap(), 10).await,
        Err(ClientError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn answers_bearer_challenges_and_caches_tokens_per_scope() {
    let f = fixture(FakeAuth::Bearer(None), false).await;
    let client = Client::anonymous().unwrap();
    fetch_all(&client, &f).await.unwrap();
    fetch_all(&client, &f).await.unwrap();
    assert_eq!(f.registry.tokens_issued(), 1, "one token for the pull scope, reused");
    // Only the very first request went without a token.
    let log = f.registry.log();
    let v2: Vec<_> = log.iter().filter(|l| l.path.starts_with("/v2/")).collect();
    assert!(v2[0].authorization.is_none());
    assert!(
        v2[1..].iter().all(|l| l.authorization.as_deref() == Some("Bearer tok:repository:team/app:pull")),
        "{v2:?}"
    );
}

#[tokio::test]
async fn sends_credentials_to_the_token_service() {
    let f = fixture(FakeAuth::Bearer(Some(("me".into(), "secret".into()))), false).await;
    let good = client_with(Some(("me", "secret")), &f.registry.host());
    fetch_all(&good, &f).await.unwrap();

    let anonymous = Client::anonymous().unwrap();
    let err = fetch_all(&anonymous, &f).await.unwrap_err();
    assert!(matches!(err, ClientError::Token { .. }), "{err}");
    assert!(err.to_string().contains("credentials are needed"), "{err}");

    let wrong = client_with(Some(("me", "wrong")), &f.registry.host());
    let err = fetch_all(&wrong, &f).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(!err.to_string().contains("wrong"), "the password leaked into {err}");
}

#[tokio::test]
async fn answers_basic_challenges() {
    let f = fixture(FakeAuth::Basic("me".into(), "pw".into()), false).await;
    fetch_all(&client_with(Some(("me", "pw")), &f.registry.host()), &f).await.unwrap();
    let err = fetch_all(&Client::anonymous().unwrap(), &f).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { ref reason, .. } if reason.contains("no credentials")), "{err}");
    let err = fetch_all(&client_with(Some(("me", "nope")), &f.registry.host()), &f).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { ref reason, .. } if reason.contains("refused")), "{err}");
}

#[tokio::test]
async fn follows_redirects_without_leaking_the_registry_token() {
    let f = fixture(FakeAuth::Bearer(None), true).await;
    let client = Client::anonymous().unwrap();
    let blobs = fetch_all(&client, &f).await.unwrap();
    assert_eq!(blobs[1], vec![2u8; 5000]);
    let log = f.registry.log();
    let cdn: Vec<_> = log.iter().filter(|l| l.cdn).collect();
    assert_eq!(cdn.len(), 2, "{log:?}");
    assert!(cdn.iter().all(|l| l.authorization.is_none()), "the CDN saw the registry's token: {cdn:?}");
}

#[tokio::test]
async fn refuses_blobs_that_do_not_match() {
    let f = fixture(FakeAuth::None, false).await;
    let client = Client::anonymous().unwrap();
    let layer = &f.layers[0];
    let fetch = |d: Descriptor| {
        let (client, image) = (&client, &f.image);
        async move {
            let mut buf = Vec::new();
            client.blob_to(image, &d, &mut buf, &mut |_| {}).await
        }
    };
    f.registry.fault(&layer.digest, Fault::Corrupt);
    assert!(matches!(fetch(layer.clone()).await, Err(ClientError::DigestMismatch { .. })));
    f.registry.fault(&layer.digest, Fault::Truncate);
    assert!(matches!(fetch(layer.clone()).await, Err(ClientError::SizeMismatch { too_long: false, .. })));
    f.registry.fault(&layer.digest, Fault::Extend);
    assert!(matches!(fetch(layer.clone()).await, Err(ClientError::SizeMismatch { too_long: true, .. })));
    f.registry.fault(&layer.digest, Fault::Fail(1));
    let err = fetch(layer.clone()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Status { ref detail, .. } if detail.as_deref() == Some("UNKNOWN: injected failure")),
        "{err}"
    );
    f.registry.heal(&layer.digest);
    fetch(layer.clone()).await.unwrap();
    // A blob the registry does not have.
    let missing = descriptor(media_type::OCI_LAYER_GZIP, b"nope");
    assert!(matches!(fetch(missing).await, Err(ClientError::NotFound { .. })));
}

#[tokio::test]
async fn verifies_manifests_pulled_by_digest() {
    let f = fixture(FakeAuth::None, false).await;
    let client = Client::anonymous().unwrap();
    let by_digest = Reference::Digest(f.manifest.clone());
    client.manifest(&f.image, &by_digest).await.unwrap();
    f.registry.replace_manifest(REPO, &f.manifest.to_string(), &manifest_json(b"{}", &[]));
    let err = client.manifest(&f.image, &by_digest).await.unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
    let err = client.manifest(&f.image, &Reference::Tag("nope".parse().unwrap())).await.unwrap_err();
    assert!(matches!(err, ClientError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("team/app:nope"), "{err}");
}

#[tokio::test]
async fn resolves_an_index_to_the_host_platform() {
    let f = fixture(FakeAuth::None, false).await;
    let other_arch = if Platform::host().architecture == "amd64" { "arm64" } else { "amd64" };
    let other = f.registry.add_manifest(REPO, None, media_type::OCI_MANIFEST, &manifest_json(b"{}", &[]));
    let host = Platform::host();
    let entries = json!([
        {"mediaType": media_type::OCI_MANIFEST, "digest": other, "size": manifest_json(b"{}", &[]).len(),
         "platform": {"os": "linux", "architecture": other_arch}},
        {"mediaType": media_type::OCI_MANIFEST, "digest": f.manifest,
         "size": f.registry.manifest(REPO, "v1").unwrap().1.len(),
         "platform": {"os": "linux", "architecture": host.architecture}},
    ]);
    let index =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": entries}))
            .unwrap();
    let index_digest = f.registry.add_manifest(REPO, Some("multi"), media_type::OCI_INDEX, &index);
    let client = Client::anonymous().unwrap();
    let multi = f.image.with_reference(Reference::Tag("multi".parse().unwrap()));

    let resolved = client.resolve(&multi, &host).await.unwrap();
    assert_eq!(resolved.manifest.digest, f.manifest);
    assert_eq!(resolved.index.as_ref().map(|i| i.digest.clone()), Some(index_digest));
    assert_eq!(resolved.platform.as_ref().map(|p| p.architecture.as_str()), Some(host.architecture.as_str()));

    let other_platform: Platform = format!("linux/{other_arch}").parse().unwrap();
    assert_eq!(client.resolve(&multi, &other_platform).await.unwrap().manifest.digest, other);

    let err = client.resolve(&multi, &"linux/s390x".parse().unwrap()).await.unwrap_err();
    assert!(matches!(err, ClientError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/s390x") && err.to_string().contains(other_arch), "{err}");

    // A plain manifest resolves to itself.
    let single = client.resolve(&f.image, &host).await.unwrap();
    assert!(single.index.is_none());
    assert_eq!(single.manifest.digest, f.manifest);
}

#[tokio::test]
async fn pushes_blobs_and_manifests() {
    let registry = FakeRegistry::start(FakeAuth::Bearer(None), false).await.unwrap();
    let config = ClientConfig { chunk_size: 1000, ..ClientConfig::default() };
    let client = Client::new(config, Arc::new(Anonymous)).unwrap();
    let image: ImageRef = format!("{}/{REPO}:v2", registry.host()).parse().unwrap();

    // Small: one PUT. Large: PATCH chunks then PUT. Again: HEAD says it is there.
    let small = client.push_blob_bytes(&image, Bytes::from_static(b"small blob")).await.unwrap();
    let large_data: Vec<u8> = (0..4500u32).map(|i| (i % 251) as u8).collect();
    let large = client.push_blob_bytes(&image, Bytes::from(large_data.clone())).await.unwrap();
    assert_eq!(registry.blob(&small).as_deref(), Some(&b"small blob"[..]));
    assert_eq!(registry.blob(&large), Some(large_data.clone()));
    let patches = registry.log().iter().filter(|l| l.method == "PATCH").count();
    assert_eq!(patches, 5);
    client.push_blob_bytes(&image, Bytes::from(large_data)).await.unwrap();
    assert_eq!(registry.log().iter().filter(|l| l.method == "PATCH").count(), 5, "pushed again");

    // Mount from another repository.
    let other: ImageRef = format!("{}/team/other:v1", registry.host()).parse().unwrap();
    let from: crate::RepoName = REPO.parse().unwrap();
    assert_eq!(client.mount_blob(&other, &from, &small).await.unwrap(), Mount::Mounted);
    let unknown = Digest::sha256_of(b"unknown");
    assert!(matches!(client.mount_blob(&other, &from, &unknown).await.unwrap(), Mount::Upload(_)));

    let body = manifest_json(b"small blob", &[]);
    let digest = client
        .push_manifest(&image, &image.reference(), media_type::OCI_MANIFEST, Bytes::from(body.clone()))
        .await
        .unwrap();
    assert_eq!(registry.manifest(REPO, "v2"), Some((media_type::OCI_MANIFEST.to_string(), body)));
    assert_eq!(client.manifest(&image, &Reference::Digest(digest.clone())).await.unwrap().digest, digest);
    // Pull and push scopes each got a token, plus the mount's.
    assert!(registry.tokens_issued() <= 4, "{}", registry.tokens_issued());
}

#[tokio::test]
async fn refuses_plain_http_token_realms_elsewhere() {
    let client = Client::anonymous().unwrap();
    let err = client
        .fetch_token("example.com", "http://auth.example.com/token", None, &Scope::pull("a"), None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::PlainHttpRefused { .. }), "{err}");
    // The same for a registry path on a non-loopback host without --plain-http.
    let image: ImageRef = "registry.invalid/app".parse().unwrap();
    client.set_scheme("registry.invalid", Scheme::Http);
    let err = client.manifest(&image, &image.reference()).await.unwrap_err();
    assert!(matches!(err, ClientError::PlainHttpRefused { .. }), "{err}");
}

#[test]
fn loopback_hosts() {
    for yes in ["localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]", "[::1]:5000"] {
        assert!(is_loopback(yes), "{yes}");
    }
    for no in ["example.com", "10.0.0.1:5000", "[::2]:5000", "localhost.example.com", "128.0.0.1"] {
        assert!(!is_loopback(no), "{no}");
    }
}

#[test]
fn basic_headers_are_rfc_7617() {
    let c = Credentials { username: "Aladdin".into(), password: "open sesame".into() };
    assert_eq!(basic_header(&c), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    let c = Credentials { username: "é".into(), password: "fo".into() };
    assert_eq!(basic_header(&c), "Basic w6k6Zm8=");
}

#[test]
fn shown_urls_hide_queries_and_userinfo() {
    let u = Url::parse("https://user:pw@s3.example.com/bucket/blob?X-Amz-Signature=secret#f").unwrap();
    assert_eq!(shown(&u), "https://s3.example.com/bucket/blob");
}
