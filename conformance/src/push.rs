//! The Push workflow (spec.md, "Workflow Categories" → "Push", endpoints end-4a to end-7,
//! end-11 and end-13): blob uploads monolithic, single-`POST`, chunked and streamed; upload
//! status, cancellation and out-of-order chunks; cross-repository mounts; digest checks
//! (sha256 and sha512); and manifest pushes of every common media type, including the
//! refusals (missing blobs, malformed JSON, oversize bodies, bad digests, names and tags).

use serde_json::json;
use shared::{Algorithm, Digest};

use crate::fixtures::{self, Blob, Manifest};
use crate::http::{with_query, CheckError, Exchange, Registry, Request};
use crate::steps::{self, repo_url, with_digest};

/// `PATCH`es `data` (not empty) as the chunk starting at byte `start` of the upload at
/// `location`.
async fn patch_chunk(registry: &Registry, location: &str, start: usize, data: &[u8]) -> Result<Exchange, CheckError> {
    let range = format!("{start}-{}", start + data.len() - 1);
    let patch = Request::patch(location)
        .header("content-type", "application/octet-stream")
        .header("content-range", range)
        .body(data.to_vec());
    registry.send(patch).await
}

/// Closes the upload at `location` with a bodiless `PUT ?digest=` and requires 201 with a
/// `Location`.
async fn close_upload(registry: &Registry, location: &str, blob: &Blob) -> Result<Exchange, CheckError> {
    let ex = registry.send(Request::put(with_digest(location, &blob.digest))).await?;
    ex.expect_status(201)?.require_header("location")?;
    Ok(ex)
}

/// `POST` then `PUT` (spec.md, "POST then PUT"): the `POST` answers 202 with a `Location`
/// unique to the session, the `PUT ?digest=` answers 201 with a `Location` that serves the
/// blob. The digest also comes back in `Docker-Content-Digest` (not required by the spec for
/// this response; berth sends it), and the closed session is gone afterwards: 404
/// `BLOB_UPLOAD_UNKNOWN` (end-13's failure status; berth forgets finished sessions).
pub async fn blob_post_then_put(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(4096);
    let (_, location) = steps::start_upload(&registry, repo).await?;
    let (second_ex, second) = steps::start_upload(&registry, repo).await?;
    second_ex.ensure(second != location, || format!("a Location other than the first session's ({location})"))?;

    let put = Request::put(with_digest(&location, &blob.digest))
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone());
    let ex = registry.send(put).await?;
    ex.expect_status(201)?.expect_header("docker-content-digest", &blob.digest.to_string())?;
    let blob_url = ex.location(&registry)?;
    registry.send(Request::get(blob_url)).await?.expect_status(200)?.expect_body(&blob.data)?;

    registry.send(Request::get(location)).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    registry.send(Request::delete(second)).await?.expect_status(204)?;
    Ok(())
}

/// A single `POST ?digest=` carrying the blob (spec.md, "Single POST"): the spec lets a
/// registry answer 202 and fall back to `POST` then `PUT`; berth supports the single request
/// and answers 201 with a `Location` that serves the blob.
pub async fn blob_single_post(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(3000);
    let url = with_query(&repo_url(&registry, repo, "blobs/uploads/"), "digest", &blob.digest.to_string());
    let post = Request::post(url).header("content-type", "application/octet-stream").body(blob.data.clone());
    let ex = registry.send(post).await?;
    ex.expect_status(201)?;
    let blob_url = ex.location(&registry)?;
    registry.send(Request::get(blob_url)).await?.expect_status(200)?.expect_body(&blob.data)?;
    Ok(())
}

/// A chunked upload (spec.md, "Pushing a blob in chunks"): each `PATCH` with a
/// `Content-Range` answers 202 with a `Location` and `Range: 0-<end>`, the next chunk goes to
/// that `Location`, and a bodiless `PUT ?digest=` closes the session with 201.
pub async fn blob_chunked(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(2500);
    let (_, mut location) = steps::start_upload(&registry, repo).await?;
    let mut offset = 0;
    for chunk in blob.data.chunks(1000) {
        let ex = patch_chunk(&registry, &location, offset, chunk).await?;
        offset += chunk.len();
        ex.expect_status(202)?.expect_header("range", &format!("0-{}", offset - 1))?;
        location = ex.location(&registry)?;
    }
    close_upload(&registry, &location, &blob).await?;
    steps::expect_blob(&registry, repo, &blob).await
}

/// The last chunk may travel in the closing `PUT` with its `Content-Range` (spec.md: "The
/// final chunk MAY be uploaded using a `PATCH` request or it MAY be uploaded in the closing
/// `PUT` request").
pub async fn blob_chunked_final_chunk_in_put(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(1500);
    let (_, location) = steps::start_upload(&registry, repo).await?;
    let ex = patch_chunk(&registry, &location, 0, &blob.data[..1000]).await?;
    ex.expect_status(202)?.expect_header("range", "0-999")?;
    let location = ex.location(&registry)?;
    let put = Request::put(with_digest(&location, &blob.digest))
        .header("content-type", "application/octet-stream")
        .header("content-range", "1000-1499")
        .body(blob.data[1000..].to_vec());
    registry.send(put).await?.expect_status(201)?.require_header("location")?;
    steps::expect_blob(&registry, repo, &blob).await
}

/// A `PATCH` without `Content-Range` carrying the whole blob, then a bodiless `PUT`: the
/// streamed upload Docker clients use. The spec's text always names a `Content-Range`, but its
/// conformance suite exercises this flow ("Blob Upload Streamed"); berth accepts it and
/// answers the `PATCH` with 202 and `Range`.
pub async fn blob_streamed(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(5000);
    let (_, location) = steps::start_upload(&registry, repo).await?;
    let patch = Request::patch(location).header("content-type", "application/octet-stream").body(blob.data.clone());
    let ex = registry.send(patch).await?;
    ex.expect_status(202)?.expect_header("range", "0-4999")?;
    close_upload(&registry, &ex.location(&registry)?, &blob).await?;
    steps::expect_blob(&registry, repo, &blob).await
}

/// `GET` on an upload session (spec.md, end-13): 204 with a `Location` and, once bytes have
/// arrived, `Range: 0-<end>`; the upload continues at the `Location` given.
pub async fn upload_status(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(200);
    let (_, location) = steps::start_upload(&registry, repo).await?;
    let ex = registry.send(Request::get(location.clone())).await?;
    ex.expect_status(204)?.require_header("location")?;

    patch_chunk(&registry, &location, 0, &blob.data[..100]).await?.expect_status(202)?;
    let ex = registry.send(Request::get(location)).await?;
    ex.expect_status(204)?.expect_header("range", "0-99")?;
    let location = ex.location(&registry)?;

    let ex = patch_chunk(&registry, &location, 100, &blob.data[100..]).await?;
    ex.expect_status(202)?.expect_header("range", "0-199")?;
    close_upload(&registry, &ex.location(&registry)?, &blob).await?;
    steps::expect_blob(&registry, repo, &blob).await
}

/// Chunks out of order answer 416 (spec.md: "If a chunk is uploaded out of order, the
/// registry MUST respond with a `416 Requested Range Not Satisfiable` code"): a first chunk
/// not starting at 0, a repeated chunk, an overlapping one and one leaving a gap. berth also
/// sends the `Range` received so far with the 416 (the spec only requires the status). A
/// refused chunk changes nothing: the status still shows the old range and the finished blob
/// holds exactly the accepted bytes. A closing `PUT` whose chunk does not continue the upload
/// is refused the same way.
pub async fn chunk_out_of_order(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(30);
    let data = &blob.data;
    let (_, location) = steps::start_upload(&registry, repo).await?;

    let ex = patch_chunk(&registry, &location, 10, &data[10..20]).await?;
    ex.expect_status(416)?.expect_error_body(&[])?;

    let ex = patch_chunk(&registry, &location, 0, &data[..10]).await?;
    ex.expect_status(202)?.expect_header("range", "0-9")?;
    let location = ex.location(&registry)?;

    for (start, end) in [(0, 10), (5, 15), (20, 30)] {
        let ex = patch_chunk(&registry, &location, start, &data[start..end]).await?;
        ex.expect_status(416)?.expect_header("range", "0-9")?.expect_error_body(&[])?;
    }

    let put = Request::put(with_digest(&location, &blob.digest))
        .header("content-type", "application/octet-stream")
        .header("content-range", "15-29")
        .body(data[15..].to_vec());
    registry.send(put).await?.expect_status(416)?.expect_header("range", "0-9")?;

    let ex = registry.send(Request::get(location.clone())).await?;
    ex.expect_status(204)?.expect_header("range", "0-9")?;

    let ex = patch_chunk(&registry, &location, 10, &data[10..]).await?;
    ex.expect_status(202)?.expect_header("range", "0-29")?;
    close_upload(&registry, &ex.location(&registry)?, &blob).await?;
    steps::expect_blob(&registry, repo, &blob).await
}

/// A registry with a minimum chunk size says so when the upload starts (spec.md: "the `POST`
/// response SHOULD include the following header ... `OCI-Chunk-Min-Length: <size>`"), and an
/// upload in chunks of that size, with a shorter last one, succeeds. `expected` is the
/// registry's configured minimum, which must be above 0.
pub async fn chunk_min_length(base: &str, repo: &str, expected: u64) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let (ex, location) = steps::start_upload(&registry, repo).await?;
    ex.expect_header("oci-chunk-min-length", &expected.to_string())?;

    let size = usize::try_from(expected).map_err(|_| CheckError::Setup(format!("minimum {expected} too large")))?;
    let blob = Blob::random(2 * size + 10);
    let mut location = location;
    let mut offset = 0;
    for chunk in blob.data.chunks(size) {
        let ex = patch_chunk(&registry, &location, offset, chunk).await?;
        offset += chunk.len();
        ex.expect_status(202)?.expect_header("range", &format!("0-{}", offset - 1))?;
        location = ex.location(&registry)?;
    }
    close_upload(&registry, &location, &blob).await?;
    steps::expect_blob(&registry, repo, &blob).await
}

/// `DELETE` on an upload session cancels it (spec.md, "Cancel a blob upload" in later drafts;
/// end-14): 204, after which the session answers 404 `BLOB_UPLOAD_UNKNOWN` to `GET`, `PATCH`,
/// `PUT` and `DELETE`.
pub async fn upload_cancel(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::random(10);
    let (_, location) = steps::start_upload(&registry, repo).await?;
    let ex = patch_chunk(&registry, &location, 0, &blob.data).await?;
    ex.expect_status(202)?;
    let location = ex.location(&registry)?;

    registry.send(Request::delete(location.clone())).await?.expect_status(204)?;

    registry.send(Request::get(location.clone())).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    patch_chunk(&registry, &location, 0, &blob.data).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    let put = Request::put(with_digest(&location, &blob.digest));
    registry.send(put).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    registry.send(Request::delete(location)).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    steps::expect_blob_absent(&registry, repo, &blob.digest).await
}

/// An upload id the registry never issued answers 404 `BLOB_UPLOAD_UNKNOWN` to `GET`,
/// `PATCH`, `PUT` and `DELETE` (spec.md, end-5, end-6, end-13).
pub async fn upload_unknown(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    steps::push_blob(&registry, repo, &Blob::random(16)).await?;
    let h = fixtures::random_hex(32);
    let id = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
    let url = repo_url(&registry, repo, &format!("blobs/uploads/{id}"));
    let blob = Blob::random(10);

    registry.send(Request::get(url.clone())).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    patch_chunk(&registry, &url, 0, &blob.data).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    let put = Request::put(with_digest(&url, &blob.digest))
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone());
    registry.send(put).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    registry.send(Request::delete(url)).await?.expect_error(404, "BLOB_UPLOAD_UNKNOWN")?;
    Ok(())
}

/// `POST ?mount=<digest>&from=<other>` mounts a blob another repository holds (spec.md,
/// "Mounting a blob from another repository"): 201 with a `Location` that serves the blob and
/// the digest in `Docker-Content-Digest`; the blob is then in this repository.
pub async fn mount_from_other_repo(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let source = format!("{repo}-source");
    let blob = Blob::random(2048);
    steps::push_blob(&registry, &source, &blob).await?;
    steps::get_blob(&registry, repo, &blob.digest).await?.expect_status(404)?;

    let url = repo_url(&registry, repo, "blobs/uploads/");
    let url = with_query(&with_query(&url, "mount", &blob.digest.to_string()), "from", &source);
    let ex = registry.send(Request::post(url)).await?;
    ex.expect_status(201)?.expect_header("docker-content-digest", &blob.digest.to_string())?;
    let blob_url = ex.location(&registry)?;
    registry.send(Request::get(blob_url)).await?.expect_status(200)?.expect_body(&blob.data)?;

    steps::expect_blob(&registry, repo, &blob).await?;
    let head = Request::head(repo_url(&registry, repo, &format!("blobs/{}", blob.digest)));
    registry.send(head).await?.expect_status(200)?.expect_content_length(blob.data.len())?;
    Ok(())
}

/// A mount the registry cannot do falls back to an ordinary upload session (spec.md: "if a
/// registry ... is unable to mount the requested blob, it SHOULD return a `202`"): a digest
/// the source repository does not hold answers 202 with a `Location`, and the blob can then
/// be uploaded there. Also without `from` (which the spec lets a registry treat as optional).
pub async fn mount_fallback(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let source = format!("{repo}-source");
    steps::push_blob(&registry, &source, &Blob::random(64)).await?;
    let blob = Blob::random(1024);

    let start = repo_url(&registry, repo, "blobs/uploads/");
    let with_from = with_query(&with_query(&start, "mount", &blob.digest.to_string()), "from", &source);
    let without_from = with_query(&start, "mount", &blob.digest.to_string());
    for url in [without_from, with_from] {
        let ex = registry.send(Request::post(url)).await?;
        ex.expect_status(202)?;
        let location = ex.location(&registry)?;
        let put = Request::put(with_digest(&location, &blob.digest))
            .header("content-type", "application/octet-stream")
            .body(blob.data.clone());
        registry.send(put).await?.expect_status(201)?;
    }
    steps::expect_blob(&registry, repo, &blob).await
}

/// A digest that does not match the bytes is refused with 400 `DIGEST_INVALID` on every way
/// of closing an upload (`PUT` after `POST`, single `POST`, `PUT` after `PATCH`), and the
/// bytes are readable under neither digest afterwards (spec.md: "the `<digest>` MUST match
/// the blob's digest"). A digest that is not a digest at all (`sha256:not-hex`) is refused
/// the same way (the spec names only the 400; berth sends `DIGEST_INVALID`), and so is a
/// closing `PUT` without a digest (spec.md: "The closing `PUT` request MUST include the
/// `<digest>`").
pub async fn blob_digest_mismatch(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    steps::push_blob(&registry, repo, &Blob::random(16)).await?;
    let blob = Blob::random(1024);
    let wrong = fixtures::random_digest();

    let (_, location) = steps::start_upload(&registry, repo).await?;
    let put = Request::put(with_digest(&location, &wrong))
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone());
    registry.send(put).await?.expect_error(400, "DIGEST_INVALID")?;

    let url = with_query(&repo_url(&registry, repo, "blobs/uploads/"), "digest", &wrong.to_string());
    let post = Request::post(url).header("content-type", "application/octet-stream").body(blob.data.clone());
    registry.send(post).await?.expect_error(400, "DIGEST_INVALID")?;

    let (_, location) = steps::start_upload(&registry, repo).await?;
    let ex = patch_chunk(&registry, &location, 0, &blob.data).await?;
    ex.expect_status(202)?;
    let put = Request::put(with_digest(&ex.location(&registry)?, &wrong));
    registry.send(put).await?.expect_error(400, "DIGEST_INVALID")?;

    steps::expect_blob_absent(&registry, repo, &wrong).await?;
    steps::expect_blob_absent(&registry, repo, &blob.digest).await?;

    let (_, location) = steps::start_upload(&registry, repo).await?;
    let put = Request::put(with_query(&location, "digest", "sha256:not-hex"))
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone());
    registry.send(put).await?.expect_error(400, "DIGEST_INVALID")?;
    let (_, location) = steps::start_upload(&registry, repo).await?;
    let put = Request::put(location).header("content-type", "application/octet-stream").body(blob.data.clone());
    registry.send(put).await?.expect_error(400, "DIGEST_INVALID")?;
    steps::expect_blob_absent(&registry, repo, &blob.digest).await
}

/// Blobs named by a sha512 digest upload (monolithic and chunked) and read back under that
/// digest (image-spec, "Digests": sha512 is a registered algorithm). The spec lets
/// `Docker-Content-Digest` use another algorithm; berth echoes the sha512 one.
pub async fn blob_sha512(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let blob = Blob::new_sha512(fixtures::random_bytes(3000));
    steps::push_blob(&registry, repo, &blob).await?;
    let digest = blob.digest.to_string();
    let ex = steps::get_blob(&registry, repo, &blob.digest).await?;
    ex.expect_status(200)?.expect_body(&blob.data)?.expect_header("docker-content-digest", &digest)?;
    let head = Request::head(repo_url(&registry, repo, &format!("blobs/{digest}")));
    registry.send(head).await?.expect_status(200)?.expect_content_length(blob.data.len())?;

    let chunked = Blob::new_sha512(fixtures::random_bytes(1500));
    let (_, location) = steps::start_upload(&registry, repo).await?;
    let ex = patch_chunk(&registry, &location, 0, &chunked.data[..700]).await?;
    ex.expect_status(202)?;
    let ex = patch_chunk(&registry, &ex.location(&registry)?, 700, &chunked.data[700..]).await?;
    ex.expect_status(202)?;
    close_upload(&registry, &ex.location(&registry)?, &chunked).await?;
    steps::expect_blob(&registry, repo, &chunked).await
}

/// The empty blob and a blob pushed twice: the zero-byte blob uploads and reads back with
/// `Content-Length: 0`, and uploading content the repository already holds succeeds again
/// (spec.md, "Layer Upload De-duplication": "both operations will proceed").
pub async fn blob_empty_and_repush(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let empty = Blob::new(Vec::new());
    steps::push_blob(&registry, repo, &empty).await?;
    let ex = steps::get_blob(&registry, repo, &empty.digest).await?;
    ex.expect_status(200)?
        .expect_content_length(0)?
        .expect_empty_body()?
        .expect_header("docker-content-digest", &empty.digest.to_string())?;
    let head = Request::head(repo_url(&registry, repo, &format!("blobs/{}", empty.digest)));
    registry.send(head).await?.expect_status(200)?.expect_content_length(0)?;

    let blob = Blob::random(100);
    steps::push_blob(&registry, repo, &blob).await?;
    steps::push_blob(&registry, repo, &blob).await?;
    let url = with_query(&repo_url(&registry, repo, "blobs/uploads/"), "digest", &blob.digest.to_string());
    let post = Request::post(url).header("content-type", "application/octet-stream").body(blob.data.clone());
    registry.send(post).await?.expect_status(201)?;
    steps::expect_blob(&registry, repo, &blob).await
}

/// Manifests of the four common media types (OCI image manifest, OCI image index, Docker
/// schema 2 manifest, Docker manifest list) push by tag with 201, a `Location` that serves
/// them and their digest in `Docker-Content-Digest`; fetched by tag or digest they come back
/// byte for byte with the pushed media type as `Content-Type` (spec.md, "Pushing Manifests":
/// "The registry MUST store the manifest in the exact byte representation provided by the
/// client"; "Pulling manifests": "The `Content-Type` header SHOULD match what the client
/// pushed").
pub async fn manifest_media_types(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let (config, layer) = (Blob::config(), Blob::random(300));
    let (docker_config, docker_layer) = (Blob::config(), Blob::random(300));
    for blob in [&config, &layer, &docker_config, &docker_layer] {
        steps::push_blob(&registry, repo, blob).await?;
    }
    let oci = Manifest::from_json(
        fixtures::OCI_MANIFEST,
        &fixtures::image_manifest(&config.descriptor(fixtures::OCI_CONFIG), &[layer.descriptor(fixtures::OCI_LAYER)]),
    );
    let index = Manifest::from_json(fixtures::OCI_INDEX, &fixtures::image_index(&[oci.platform_descriptor()]));
    let docker = Manifest::from_json(
        fixtures::DOCKER_MANIFEST,
        &fixtures::docker_manifest(
            &docker_config.descriptor(fixtures::DOCKER_CONFIG),
            &[docker_layer.descriptor(fixtures::DOCKER_LAYER)],
        ),
    );
    let list = Manifest::from_json(
        fixtures::DOCKER_MANIFEST_LIST,
        &fixtures::docker_manifest_list(&[docker.platform_descriptor()]),
    );

    // Children before the lists that name them.
    for (tag, manifest) in
        [("oci-manifest", &oci), ("oci-index", &index), ("docker-manifest", &docker), ("docker-list", &list)]
    {
        let ex = steps::push_manifest(&registry, repo, tag, manifest).await?;
        let url = ex.location(&registry)?;
        registry.send(Request::get(url)).await?.expect_status(200)?.expect_body(&manifest.body)?;
        for reference in [tag.to_string(), manifest.digest.to_string()] {
            let ex = steps::get_manifest(&registry, repo, &reference).await?;
            ex.expect_status(200)?
                .expect_body(&manifest.body)?
                .expect_header("content-type", &manifest.media_type)?
                .expect_header("docker-content-digest", &manifest.digest.to_string())?;
        }
    }
    Ok(())
}

/// A manifest pushed by digest (spec.md: "the `<reference>` MUST be either a) a digest or b) a
/// tag") answers 201 with the digest, and is then served under it.
pub async fn manifest_put_by_digest(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let image = steps::push_image(&registry, repo, None).await?;
    let ex = steps::get_manifest(&registry, repo, &image.manifest.digest.to_string()).await?;
    ex.expect_status(200)?.expect_body(&image.manifest.body)?;
    Ok(())
}

/// A manifest pushed by a sha512 digest (image-spec, "Digests": sha512 is a registered
/// algorithm) answers 201 with that digest in `Docker-Content-Digest` (spec.md: it "MUST be
/// equal to the client provided digest") and is then served under it.
pub async fn manifest_put_by_sha512_digest(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let (config, layer) = (Blob::config(), Blob::random(100));
    steps::push_blob(&registry, repo, &config).await?;
    steps::push_blob(&registry, repo, &layer).await?;
    let manifest = Manifest::from_json(
        fixtures::OCI_MANIFEST,
        &fixtures::image_manifest(&config.descriptor(fixtures::OCI_CONFIG), &[layer.descriptor(fixtures::OCI_LAYER)]),
    );
    let digest = Digest::of(Algorithm::Sha512, &manifest.body).to_string();
    let ex = steps::put_manifest(&registry, repo, &digest, &manifest).await?;
    ex.expect_status(201)?.expect_header("docker-content-digest", &digest)?.require_header("location")?;
    let ex = steps::get_manifest(&registry, repo, &digest).await?;
    ex.expect_status(200)?.expect_body(&manifest.body)?;
    Ok(())
}

/// Pushing another manifest under an existing tag moves the tag (spec.md, "Definitions": a
/// tag is "a custom, human-readable pointer to a manifest"); the manifest it pointed at stays
/// readable by digest.
pub async fn tag_update(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let first = steps::push_image(&registry, repo, Some("moving")).await?;
    let second = steps::push_image(&registry, repo, Some("moving")).await?;
    let ex = steps::get_manifest(&registry, repo, "moving").await?;
    ex.expect_status(200)?
        .expect_body(&second.manifest.body)?
        .expect_header("docker-content-digest", &second.manifest.digest.to_string())?;
    let ex = steps::get_manifest(&registry, repo, &first.manifest.digest.to_string()).await?;
    ex.expect_status(200)?.expect_body(&first.manifest.body)?;
    Ok(())
}

/// Parameters on a pushed manifest's `Content-Type` are ignored (spec.md: "The registry SHOULD
/// ignore parameters on the `Content-Type` header") and not served back ("The registry SHOULD
/// NOT include parameters on the `Content-Type` header").
pub async fn manifest_content_type_parameters(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let (config, layer) = (Blob::config(), Blob::random(100));
    steps::push_blob(&registry, repo, &config).await?;
    steps::push_blob(&registry, repo, &layer).await?;
    let manifest = Manifest::from_json(
        &format!("{}; charset=utf-8", fixtures::OCI_MANIFEST),
        &fixtures::image_manifest(&config.descriptor(fixtures::OCI_CONFIG), &[layer.descriptor(fixtures::OCI_LAYER)]),
    );
    steps::push_manifest(&registry, repo, "with-parameters", &manifest).await?;
    let ex = steps::get_manifest(&registry, repo, "with-parameters").await?;
    ex.expect_status(200)?.expect_body(&manifest.body)?.expect_header("content-type", fixtures::OCI_MANIFEST)?;
    Ok(())
}

/// Repository names and tags may spell the API's own path words (the grammars allow
/// `blobs`, `uploads`, `manifests`, `tags`, `list`, `referrers`): a registry must still route
/// every endpoint of such a repository, and serve tags named like those words.
pub async fn endpoint_words_in_names_and_tags(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let tags = ["list", "uploads", "tags", "manifests", "blobs", "referrers"];
    for name in
        [format!("{repo}/blobs/uploads"), format!("{repo}/manifests/tags/list"), format!("{repo}/referrers/blobs")]
    {
        let image = steps::push_image(&registry, &name, Some(tags[0])).await?;
        for tag in &tags[1..] {
            steps::push_manifest(&registry, &name, tag, &image.manifest).await?;
        }
        for tag in tags {
            let ex = steps::get_manifest(&registry, &name, tag).await?;
            ex.expect_status(200)?.expect_body(&image.manifest.body)?;
        }
        steps::expect_blob(&registry, &name, &image.layer).await?;

        let ex = registry.send(Request::get(repo_url(&registry, &name, "tags/list"))).await?;
        ex.expect_status(200)?;
        let mut sorted = tags.to_vec();
        sorted.sort_unstable();
        ex.ensure(ex.json()?["tags"] == json!(sorted), || format!("tags {sorted:?}"))?;

        let blob = Blob::random(300);
        let (_, location) = steps::start_upload(&registry, &name).await?;
        let ex = patch_chunk(&registry, &location, 0, &blob.data).await?;
        ex.expect_status(202)?;
        let status = registry.send(Request::get(ex.location(&registry)?)).await?;
        status.expect_status(204)?.expect_header("range", "0-299")?;
        close_upload(&registry, &status.location(&registry)?, &blob).await?;
        steps::expect_blob(&registry, &name, &blob).await?;

        let url = repo_url(&registry, &name, &format!("referrers/{}", image.manifest.digest));
        let ex = registry.send(Request::get(url)).await?;
        ex.expect_status(200)?.expect_header("content-type", fixtures::OCI_INDEX)?;
    }
    Ok(())
}

/// A manifest `PUT` under a digest its bytes do not have is refused with 400
/// `DIGEST_INVALID` (spec.md: `Docker-Content-Digest` "MUST be equal to the client provided
/// digest", so the registry cannot store it under either) and nothing is stored.
pub async fn manifest_digest_mismatch(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let (config, layer) = (Blob::config(), Blob::random(100));
    steps::push_blob(&registry, repo, &config).await?;
    steps::push_blob(&registry, repo, &layer).await?;
    let manifest = Manifest::from_json(
        fixtures::OCI_MANIFEST,
        &fixtures::image_manifest(&config.descriptor(fixtures::OCI_CONFIG), &[layer.descriptor(fixtures::OCI_LAYER)]),
    );
    let wrong = fixtures::random_digest().to_string();
    steps::put_manifest(&registry, repo, &wrong, &manifest).await?.expect_error(400, "DIGEST_INVALID")?;
    steps::expect_manifest_absent(&registry, repo, &wrong).await?;
    steps::expect_manifest_absent(&registry, repo, &manifest.digest.to_string()).await
}

/// A manifest naming a blob the repository does not hold is refused with 400
/// `MANIFEST_BLOB_UNKNOWN` and nothing is stored, whether the missing blob is a layer or the
/// config (spec.md: a registry "MAY reject" such a manifest, and then "it MUST result in one
/// or more `MANIFEST_BLOB_UNKNOWN` errors"; berth rejects).
pub async fn manifest_blob_unknown(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let (config, layer) = (Blob::config(), Blob::random(100));
    steps::push_blob(&registry, repo, &config).await?;
    steps::push_blob(&registry, repo, &layer).await?;
    let (missing_layer, missing_config) = (Blob::random(100), Blob::config());
    let cases = [
        fixtures::image_manifest(
            &config.descriptor(fixtures::OCI_CONFIG),
            &[missing_layer.descriptor(fixtures::OCI_LAYER)],
        ),
        fixtures::image_manifest(
            &missing_config.descriptor(fixtures::OCI_CONFIG),
            &[layer.descriptor(fixtures::OCI_LAYER)],
        ),
    ];
    for (i, value) in cases.iter().enumerate() {
        let manifest = Manifest::from_json(fixtures::OCI_MANIFEST, value);
        let tag = format!("broken-{i}");
        steps::put_manifest(&registry, repo, &tag, &manifest).await?.expect_error(400, "MANIFEST_BLOB_UNKNOWN")?;
        steps::expect_manifest_absent(&registry, repo, &tag).await?;
        steps::expect_manifest_absent(&registry, repo, &manifest.digest.to_string()).await?;
    }
    Ok(())
}

/// An index naming a manifest the repository does not hold is refused with 400
/// `MANIFEST_BLOB_UNKNOWN` ("manifest references a manifest or blob unknown to registry") and
/// nothing is stored; the same goes for a Docker manifest list.
pub async fn index_child_unknown(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    steps::push_image(&registry, repo, Some("present")).await?;
    let absent = Manifest::from_json(fixtures::OCI_MANIFEST, &json!({ "nonce": fixtures::random_hex(16) }));
    let cases = [
        Manifest::from_json(fixtures::OCI_INDEX, &fixtures::image_index(&[absent.platform_descriptor()])),
        Manifest::from_json(
            fixtures::DOCKER_MANIFEST_LIST,
            &fixtures::docker_manifest_list(&[{
                let mut d = absent.platform_descriptor();
                d["mediaType"] = fixtures::DOCKER_MANIFEST.into();
                d
            }]),
        ),
    ];
    for (i, index) in cases.iter().enumerate() {
        let tag = format!("broken-{i}");
        steps::put_manifest(&registry, repo, &tag, index).await?.expect_error(400, "MANIFEST_BLOB_UNKNOWN")?;
        steps::expect_manifest_absent(&registry, repo, &tag).await?;
        steps::expect_manifest_absent(&registry, repo, &index.digest.to_string()).await?;
    }
    Ok(())
}

/// A manifest body that is not valid JSON, or JSON that is not a manifest of its declared type
/// (no `config`; berth checks the structure), is refused with 400 `MANIFEST_INVALID` and
/// nothing is stored.
pub async fn manifest_invalid(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    steps::push_image(&registry, repo, Some("present")).await?;
    let bodies = [
        b"{\"schemaVersion\": 2, \"mediaType\": ".to_vec(),
        fixtures::to_bytes(&json!({ "schemaVersion": 2, "mediaType": fixtures::OCI_MANIFEST, "layers": [] })),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let manifest = Manifest::from_bytes(fixtures::OCI_MANIFEST, body);
        let tag = format!("invalid-{i}");
        steps::put_manifest(&registry, repo, &tag, &manifest).await?.expect_error(400, "MANIFEST_INVALID")?;
        steps::expect_manifest_absent(&registry, repo, &tag).await?;
        steps::expect_manifest_absent(&registry, repo, &manifest.digest.to_string()).await?;
    }
    Ok(())
}

/// An OCI image manifest padded (with an annotation) to exactly `size` bytes.
fn padded_manifest(config: &Blob, layer: &Blob, size: usize) -> Manifest {
    let mut value =
        fixtures::image_manifest(&config.descriptor(fixtures::OCI_CONFIG), &[layer.descriptor(fixtures::OCI_LAYER)]);
    value["annotations"] = json!({ "org.berth.conformance.padding": "" });
    let bare = fixtures::to_bytes(&value).len();
    value["annotations"]["org.berth.conformance.padding"] = "x".repeat(size.saturating_sub(bare)).into();
    Manifest::from_json(fixtures::OCI_MANIFEST, &value)
}

/// Manifests up to 4 MiB are accepted (spec.md: "Client and registry implementations SHOULD
/// expect to be able to support manifest pushes of at least 4 megabytes"); one byte more is
/// refused with 413 (spec.md: "A registry that enforces this limit SHOULD respond ... `413
/// Payload Too Large`"; berth's limit is 4 MiB by default) and nothing is stored.
pub async fn manifest_size_limit(base: &str, repo: &str) -> Result<(), CheckError> {
    const LIMIT: usize = 4 * 1024 * 1024;
    let registry = Registry::new(base)?;
    let (config, layer) = (Blob::config(), Blob::random(100));
    steps::push_blob(&registry, repo, &config).await?;
    steps::push_blob(&registry, repo, &layer).await?;

    let at_limit = padded_manifest(&config, &layer, LIMIT);
    let over = padded_manifest(&config, &layer, LIMIT + 1);
    if at_limit.body.len() != LIMIT || over.body.len() != LIMIT + 1 {
        return Err(CheckError::Setup("padding the manifests to the limit failed".into()));
    }
    steps::push_manifest(&registry, repo, "at-limit", &at_limit).await?;
    steps::get_manifest(&registry, repo, "at-limit").await?.expect_status(200)?.expect_body(&at_limit.body)?;

    let ex = steps::put_manifest(&registry, repo, "over-limit", &over).await?;
    ex.expect_status(413)?.expect_error_body(&[])?;
    steps::expect_manifest_absent(&registry, repo, "over-limit").await?;
    steps::expect_manifest_absent(&registry, repo, &over.digest.to_string()).await
}

/// A manifest whose `subject` names a manifest the repository does not hold is accepted
/// (spec.md: "A registry MUST initially accept an otherwise valid manifest with a `subject`
/// field that references a manifest that does not exist") and the response carries
/// `OCI-Subject: <subject digest>` (spec.md, "Pushing Manifests with Subject": a registry
/// that supports the referrers API "MUST respond with the response header").
pub async fn manifest_with_subject(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let (empty, payload) = (Blob::empty_json(), Blob::random(64));
    steps::push_blob(&registry, repo, &empty).await?;
    steps::push_blob(&registry, repo, &payload).await?;
    let subject = Manifest::from_json(fixtures::OCI_MANIFEST, &json!({ "nonce": fixtures::random_hex(16) }));

    let mut value = fixtures::image_manifest(
        &empty.descriptor(fixtures::OCI_EMPTY),
        &[payload.descriptor("application/octet-stream")],
    );
    value["artifactType"] = "application/vnd.berth.conformance.note".into();
    value["subject"] = subject.descriptor();
    let referrer = Manifest::from_json(fixtures::OCI_MANIFEST, &value);
    let ex = steps::push_manifest(&registry, repo, &referrer.digest.to_string(), &referrer).await?;
    ex.expect_header("oci-subject", &subject.digest.to_string())?;
    let ex = steps::get_manifest(&registry, repo, &referrer.digest.to_string()).await?;
    ex.expect_status(200)?.expect_body(&referrer.body)?;
    Ok(())
}

/// Tags outside the spec's grammar (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`) are refused with 400
/// and a spec error body (the spec names no code; "The `<reference>` MUST NOT be in any other
/// format") and nothing is stored.
pub async fn tag_invalid(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let image = steps::push_image(&registry, repo, Some("valid")).await?;
    // The same image under another name, so nothing stored under the valid tag can answer.
    let mut value = fixtures::image_manifest(
        &image.config.descriptor(fixtures::OCI_CONFIG),
        &[image.layer.descriptor(fixtures::OCI_LAYER)],
    );
    value["annotations"] = json!({ "org.berth.conformance.nonce": fixtures::random_hex(16) });
    let manifest = Manifest::from_json(fixtures::OCI_MANIFEST, &value);
    for tag in ["-leading-dash".to_string(), ".leading-dot".to_string(), "a".repeat(129), "ta:g".to_string()] {
        let ex = steps::put_manifest(&registry, repo, &tag, &manifest).await?;
        ex.expect_status(400)?.expect_error_body(&[])?;
    }
    steps::expect_manifest_absent(&registry, repo, &manifest.digest.to_string()).await
}

/// Repository names outside the spec's grammar
/// (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`) are refused
/// with 400 `NAME_INVALID` on every endpoint: upper case, empty components, components that
/// start or end with a separator, and path traversal (`..` and `.` components, sent verbatim).
pub async fn name_invalid(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    // A real repository next door, so a traversal has something to reach.
    steps::push_image(&registry, repo, Some("latest")).await?;
    let digest = fixtures::random_digest();
    let names = [
        format!("{repo}/UPPER"),
        format!("{repo}//empty"),
        format!("{repo}/-leading"),
        format!("{repo}/trailing-"),
        format!("{repo}/a..b"),
        format!("{repo}/../{}", repo.rsplit('/').next().unwrap_or(repo)),
        format!("{repo}/./here"),
        format!("../{repo}"),
    ];
    for name in &names {
        let dotted = name.split('/').any(|c| c == ".." || c == ".");
        let endpoints = [
            ("GET", format!("/v2/{name}/tags/list")),
            ("GET", format!("/v2/{name}/manifests/latest")),
            ("HEAD", format!("/v2/{name}/blobs/{digest}")),
            ("GET", format!("/v2/{name}/blobs/{digest}")),
            ("POST", format!("/v2/{name}/blobs/uploads/")),
            ("PUT", format!("/v2/{name}/manifests/latest")),
            ("DELETE", format!("/v2/{name}/manifests/{digest}")),
            ("GET", format!("/v2/{name}/referrers/{digest}")),
        ];
        for (method, path) in endpoints {
            let ex = if dotted {
                registry.send_raw(method, &path).await?
            } else {
                let method =
                    reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| CheckError::Setup(e.to_string()))?;
                registry.send(Request::new(method, registry.url(&path))).await?
            };
            if method == "HEAD" {
                ex.expect_status(400)?;
            } else {
                ex.expect_error(400, "NAME_INVALID")?;
            }
        }
    }
    Ok(())
}
