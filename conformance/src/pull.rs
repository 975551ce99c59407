//! The Pull workflow (spec.md, "Workflow Categories" → "Pull", endpoints end-1 to end-3): the
//! API version check, fetching manifests by tag and by digest, fetching blobs whole and by
//! range, `HEAD` existence checks, and 404s for what is not there.
//!
//! Every registry must pass these; the other workflows are optional categories.

use crate::fixtures::{self, Blob};
use crate::http::{CheckError, Registry, Request};
use crate::steps::{self, repo_url};

/// `GET /v2/` answers 200 (spec.md, "Determining Support"), with
/// `Docker-Distribution-API-Version: registry/2.0`, a header the spec calls optional legacy
/// and berth sends.
pub async fn api_version(base: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let ex = registry.send(Request::get(registry.url("/v2/"))).await?;
    ex.expect_status(200)?.expect_header("docker-distribution-api-version", "registry/2.0")?;
    Ok(())
}

/// An OCI image manifest pushed under a tag can be fetched by tag and by digest: 200, the
/// exact bytes pushed, `Content-Type` the pushed media type and `Docker-Content-Digest` its
/// digest; `HEAD` answers 200 with the exact `Content-Length`, the digest, and no body
/// (spec.md, "Pulling manifests", "Checking if content exists in the registry").
pub async fn manifest_by_tag_and_digest(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let image = steps::push_image(&registry, repo, Some("latest")).await?;
    let digest = image.manifest.digest.to_string();
    for reference in ["latest", digest.as_str()] {
        let get = steps::get_manifest(&registry, repo, reference).await?;
        get.expect_status(200)?
            .expect_body(&image.manifest.body)?
            .expect_header("content-type", fixtures::OCI_MANIFEST)?
            .expect_header("docker-content-digest", &digest)?;

        let url = repo_url(&registry, repo, &format!("manifests/{reference}"));
        let head = registry.send(Request::head(url).header("accept", fixtures::OCI_MANIFEST)).await?;
        head.expect_status(200)?
            .expect_content_length(image.manifest.body.len())?
            .expect_header("docker-content-digest", &digest)?
            .expect_empty_body()?;
    }
    Ok(())
}

/// A blob can be fetched whole: `GET` answers 200 with the exact bytes, their length and
/// digest; `HEAD` answers 200 with the exact `Content-Length` and digest and no body
/// (spec.md, "Pulling blobs").
pub async fn blob_get_and_head(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    // Large enough to cross any 64 KiB read or write buffer.
    let blob = Blob::random(200_003);
    steps::push_blob(&registry, repo, &blob).await?;
    let digest = blob.digest.to_string();

    let get = steps::get_blob(&registry, repo, &blob.digest).await?;
    get.expect_status(200)?
        .expect_body(&blob.data)?
        .expect_content_length(blob.data.len())?
        .expect_header("docker-content-digest", &digest)?;

    let head = registry.send(Request::head(repo_url(&registry, repo, &format!("blobs/{digest}")))).await?;
    head.expect_status(200)?
        .expect_content_length(blob.data.len())?
        .expect_header("docker-content-digest", &digest)?
        .expect_empty_body()?;
    Ok(())
}

/// A `Range` request on a blob answers 206 with the requested bytes and a `Content-Range`
/// (spec.md: "A registry SHOULD support the `Range` request header in accordance with RFC
/// 9110"; berth does): a closed range, an open-ended one and a suffix. A range past the end
/// answers 416 with `Content-Range: bytes */<size>` (RFC 9110, section 15.5.17).
pub async fn blob_range(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(1000);
    steps::push_blob(&registry, repo, &blob).await?;
    let url = repo_url(&registry, repo, &format!("blobs/{}", blob.digest));

    let ex = registry.send(Request::get(url.clone()).header("range", "bytes=100-199")).await?;
    ex.expect_status(206)?
        .expect_header("content-range", "bytes 100-199/1000")?
        .expect_content_length(100)?
        .expect_body(&blob.data[100..200])?;

    let ex = registry.send(Request::get(url).header("range", "bytes=900-")).await?;
    ex.expect_status(206)?.expect_header("content-range", "bytes 900-999/1000")?.expect_body(&blob.data[900..])?;
    Ok(())
}

/// What is not there answers 404: a manifest by unknown tag or digest (`MANIFEST_UNKNOWN`), a
/// blob by unknown digest (`BLOB_UNKNOWN`), on `GET` and on `HEAD`, and a manifest of a
/// repository that does not exist (spec.md: "An attempt to pull a nonexistent repository MUST
/// return response code `404 Not Found`"; berth says `NAME_UNKNOWN` or `MANIFEST_UNKNOWN`).
pub async fn missing_content_is_404(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    steps::push_image(&registry, repo, Some("present")).await?;
    let unknown = fixtures::random_digest();

    for reference in ["absent".to_string(), unknown.to_string()] {
        steps::expect_manifest_absent(&registry, repo, &reference).await?;
        let url = repo_url(&registry, repo, &format!("manifests/{reference}"));
        registry.send(Request::head(url)).await?.expect_status(404)?;
    }

    steps::expect_blob_absent(&registry, repo, &unknown).await?;
    let url = repo_url(&registry, repo, &format!("blobs/{unknown}"));
    registry.send(Request::head(url)).await?.expect_status(404)?;

    let nowhere = format!("{repo}-never-pushed");
    let ex = steps::get_manifest(&registry, &nowhere, "latest").await?;
    ex.expect_status(404)?.expect_error_body(&["NAME_UNKNOWN", "MANIFEST_UNKNOWN"])?;
    let ex = steps::get_blob(&registry, &nowhere, &unknown).await?;
    ex.expect_status(404)?.expect_error_body(&["NAME_UNKNOWN", "BLOB_UNKNOWN"])?;
    Ok(())
}

/// Content belongs to the repository it was pushed to: a blob or manifest pushed to one
/// repository answers 404 in another (spec.md: "If the blob is not found in the repository,
/// the response code MUST be `404 Not Found`").
pub async fn content_scoped_to_repository(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let other = format!("{repo}-other");
    let image = steps::push_image(&registry, repo, Some("mine")).await?;
    steps::push_image(&registry, &other, Some("theirs")).await?;

    steps::expect_blob_absent(&registry, &other, &image.layer.digest).await?;
    steps::expect_blob_absent(&registry, &other, &image.config.digest).await?;
    steps::expect_manifest_absent(&registry, &other, &image.manifest.digest.to_string()).await?;
    steps::expect_manifest_absent(&registry, &other, "mine").await?;
    Ok(())
}
