//! Steps the checks share: starting an upload, pushing a blob, a manifest or a whole image, and
//! reading content back, each insisting on the spec's success status so that a check's own
//! assertions start from known content.

use serde_json::Value;
use shared::Digest;

use crate::fixtures::{self, Blob, Manifest};
use crate::http::{with_query, CheckError, Exchange, Registry, Request};

/// An image pushed by [`push_image`].
pub(crate) struct Image {
    /// The config blob.
    pub config: Blob,
    /// The one layer.
    pub layer: Blob,
    /// The OCI image manifest.
    pub manifest: Manifest,
}

/// The URL of a repository endpoint, `/v2/<repo>/<rest>`.
pub(crate) fn repo_url(registry: &Registry, repo: &str, rest: &str) -> String {
    registry.url(&format!("/v2/{repo}/{rest}"))
}

/// `POST /v2/<repo>/blobs/uploads/` with `Content-Length: 0`: 202 and a session `Location`
/// (spec.md, "POST then PUT"); returns the location, resolved.
pub(crate) async fn start_upload(registry: &Registry, repo: &str) -> Result<(Exchange, String), CheckError> {
    let ex = registry.send(Request::post(repo_url(registry, repo, "blobs/uploads/"))).await?;
    ex.expect_status(202)?;
    let location = ex.location(registry)?;
    Ok((ex, location))
}

/// A session URL with the closing `digest` parameter.
pub(crate) fn with_digest(location: &str, digest: &Digest) -> String {
    with_query(location, "digest", &digest.to_string())
}

/// Pushes `blob` by POST then PUT and requires 201.
pub(crate) async fn push_blob(registry: &Registry, repo: &str, blob: &Blob) -> Result<(), CheckError> {
    let (_, location) = start_upload(registry, repo).await?;
    let put = Request::put(with_digest(&location, &blob.digest))
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone());
    registry.send(put).await?.expect_status(201)?;
    Ok(())
}

/// `PUT /v2/<repo>/manifests/<reference>` with the manifest's media type, whatever comes back.
pub(crate) async fn put_manifest(
    registry: &Registry,
    repo: &str,
    reference: &str,
    manifest: &Manifest,
) -> Result<Exchange, CheckError> {
    let put = Request::put(repo_url(registry, repo, &format!("manifests/{reference}")))
        .header("content-type", manifest.media_type.clone())
        .body(manifest.body.clone());
    registry.send(put).await
}

/// Pushes a manifest and requires 201 with `Location` and the manifest's digest in
/// `Docker-Content-Digest` (spec.md, "Pushing Manifests").
pub(crate) async fn push_manifest(
    registry: &Registry,
    repo: &str,
    reference: &str,
    manifest: &Manifest,
) -> Result<Exchange, CheckError> {
    let ex = put_manifest(registry, repo, reference, manifest).await?;
    ex.expect_status(201)?.require_header("location")?;
    ex.expect_header("docker-content-digest", &manifest.digest.to_string())?;
    Ok(ex)
}

/// Pushes a fresh image (config, one layer, OCI manifest) and its manifest under `reference`
/// (a tag), or by digest when `reference` is `None`.
pub(crate) async fn push_image(registry: &Registry, repo: &str, reference: Option<&str>) -> Result<Image, CheckError> {
    let config = Blob::config();
    let layer = Blob::random(512);
    push_blob(registry, repo, &config).await?;
    push_blob(registry, repo, &layer).await?;
    let manifest = Manifest::from_json(
        fixtures::OCI_MANIFEST,
        &fixtures::image_manifest(&config.descriptor(fixtures::OCI_CONFIG), &[layer.descriptor(fixtures::OCI_LAYER)]),
    );
    let digest = manifest.digest.to_string();
    push_manifest(registry, repo, reference.unwrap_or(&digest), &manifest).await?;
    Ok(Image { config, layer, manifest })
}

/// Pushes an OCI image manifest built from `value` (blobs must already be there) by digest.
pub(crate) async fn push_json_manifest(
    registry: &Registry,
    repo: &str,
    media_type: &str,
    value: &Value,
) -> Result<Manifest, CheckError> {
    let manifest = Manifest::from_json(media_type, value);
    push_manifest(registry, repo, &manifest.digest.to_string(), &manifest).await?;
    Ok(manifest)
}

/// `GET /v2/<repo>/manifests/<reference>`, accepting every manifest type the checks push.
pub(crate) async fn get_manifest(registry: &Registry, repo: &str, reference: &str) -> Result<Exchange, CheckError> {
    let accept =
        [fixtures::OCI_MANIFEST, fixtures::OCI_INDEX, fixtures::DOCKER_MANIFEST, fixtures::DOCKER_MANIFEST_LIST]
            .join(", ");
    registry
        .send(Request::get(repo_url(registry, repo, &format!("manifests/{reference}"))).header("accept", accept))
        .await
}

/// Requires `GET` of a manifest to answer 404 `MANIFEST_UNKNOWN`.
pub(crate) async fn expect_manifest_absent(registry: &Registry, repo: &str, reference: &str) -> Result<(), CheckError> {
    get_manifest(registry, repo, reference).await?.expect_error(404, "MANIFEST_UNKNOWN")?;
    Ok(())
}

/// `GET /v2/<repo>/blobs/<digest>`.
pub(crate) async fn get_blob(registry: &Registry, repo: &str, digest: &Digest) -> Result<Exchange, CheckError> {
    registry.send(Request::get(repo_url(registry, repo, &format!("blobs/{digest}")))).await
}

/// Requires `GET` of a blob to answer 404 `BLOB_UNKNOWN`.
pub(crate) async fn expect_blob_absent(registry: &Registry, repo: &str, digest: &Digest) -> Result<(), CheckError> {
    get_blob(registry, repo, digest).await?.expect_error(404, "BLOB_UNKNOWN")?;
    Ok(())
}

/// Requires `GET` of a blob to answer 200 with exactly `blob`'s bytes.
pub(crate) async fn expect_blob(registry: &Registry, repo: &str, blob: &Blob) -> Result<(), CheckError> {
    get_blob(registry, repo, &blob.digest).await?.expect_status(200)?.expect_body(&blob.data)?;
    Ok(())
}
