//! The Content Management workflow (spec.md, "Workflow Categories" → "Content Management",
//! endpoints end-9 and end-10): deleting tags, manifests and blobs, and what remains visible
//! afterwards, including the referrers API once a referrer is deleted.
//!
//! The spec lets a registry disable deletion (answering 400 or 405); berth enables it, so
//! these checks require the success statuses.

use serde_json::Value;

use crate::discovery;
use crate::fixtures::{self, Blob};
use crate::http::{CheckError, Registry, Request};
use crate::steps::{self, repo_url};

/// `DELETE /v2/<name>/manifests/<tag>` answers 202 and removes only the tag (spec.md,
/// "Deleting tags": "Once deleted, a `GET` to `/v2/<name>/manifests/<tag>` will return a
/// 404"): the manifest stays readable by digest and under its other tags, and the tag leaves
/// the tags list. Deleting it again answers 404 `MANIFEST_UNKNOWN`.
pub async fn delete_tag(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let image = steps::push_image(&registry, repo, Some("keep")).await?;
    steps::push_manifest(&registry, repo, "drop", &image.manifest).await?;

    let url = repo_url(&registry, repo, "manifests/drop");
    registry.send(Request::delete(url.clone())).await?.expect_status(202)?;

    steps::expect_manifest_absent(&registry, repo, "drop").await?;
    registry.send(Request::delete(url)).await?.expect_error(404, "MANIFEST_UNKNOWN")?;
    for reference in ["keep".to_string(), image.manifest.digest.to_string()] {
        let ex = steps::get_manifest(&registry, repo, &reference).await?;
        ex.expect_status(200)?.expect_body(&image.manifest.body)?;
    }
    let ex = registry.send(Request::get(repo_url(&registry, repo, "tags/list"))).await?;
    ex.expect_status(200)?;
    let tags = ex.json()?["tags"].clone();
    ex.ensure(tags == serde_json::json!(["keep"]), || r#"tags ["keep"]"#.to_string())?;
    Ok(())
}

/// `DELETE /v2/<name>/manifests/<digest>` answers 202; afterwards the digest and every tag
/// that pointed at it answer 404 (spec.md, "Deleting Manifests"), `GET` with
/// `MANIFEST_UNKNOWN`. Deleting it again, or a digest never pushed, answers 404
/// `MANIFEST_UNKNOWN`; in a repository that does not exist, 404 ("If the repository does not
/// exist, the response MUST return `404 Not Found`").
pub async fn delete_manifest(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let image = steps::push_image(&registry, repo, Some("doomed")).await?;
    steps::push_manifest(&registry, repo, "doomed-too", &image.manifest).await?;
    let digest = image.manifest.digest.to_string();
    let url = repo_url(&registry, repo, &format!("manifests/{digest}"));

    registry.send(Request::delete(url.clone())).await?.expect_status(202)?;

    steps::expect_manifest_absent(&registry, repo, &digest).await?;
    registry.send(Request::head(url.clone())).await?.expect_status(404)?;
    steps::expect_manifest_absent(&registry, repo, "doomed").await?;
    steps::expect_manifest_absent(&registry, repo, "doomed-too").await?;

    registry.send(Request::delete(url)).await?.expect_error(404, "MANIFEST_UNKNOWN")?;
    let never = repo_url(&registry, repo, &format!("manifests/{}", fixtures::random_digest()));
    registry.send(Request::delete(never)).await?.expect_error(404, "MANIFEST_UNKNOWN")?;
    let nowhere = repo_url(&registry, &format!("{repo}-never-pushed"), &format!("manifests/{digest}"));
    let ex = registry.send(Request::delete(nowhere)).await?;
    ex.expect_status(404)?.expect_error_body(&["NAME_UNKNOWN", "MANIFEST_UNKNOWN"])?;
    Ok(())
}

/// `DELETE /v2/<name>/blobs/<digest>` answers 202 (spec.md, "Deleting Blobs"); the blob then
/// answers 404 `BLOB_UNKNOWN` in that repository, and a second delete, or a delete of a blob
/// never pushed, answers 404 `BLOB_UNKNOWN` ("If the blob is not found, a `404 Not Found`
/// code MUST be returned"). The same blob in another repository is untouched.
pub async fn delete_blob(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let other = format!("{repo}-other");
    let blob = Blob::random(777);
    steps::push_blob(&registry, repo, &blob).await?;
    steps::push_blob(&registry, &other, &blob).await?;
    let url = repo_url(&registry, repo, &format!("blobs/{}", blob.digest));

    registry.send(Request::delete(url.clone())).await?.expect_status(202)?;

    steps::expect_blob_absent(&registry, repo, &blob.digest).await?;
    registry.send(Request::head(url.clone())).await?.expect_status(404)?;
    registry.send(Request::delete(url)).await?.expect_error(404, "BLOB_UNKNOWN")?;
    let never = repo_url(&registry, repo, &format!("blobs/{}", fixtures::random_digest()));
    registry.send(Request::delete(never)).await?.expect_error(404, "BLOB_UNKNOWN")?;
    steps::expect_blob(&registry, &other, &blob).await
}

/// A referrer deleted by digest leaves the referrers listing of its subject, and the other
/// referrers stay (spec.md, "Listing Referrers": the list holds the manifests "with a
/// `subject` field that specifies the value of `<digest>`", so a deleted one is not among
/// them).
pub async fn delete_referrer(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let pushed = discovery::push_referrers(&registry, repo).await?;
    let (gone, kept) = pushed.referrers.split_first().ok_or_else(|| CheckError::Setup("no referrers pushed".into()))?;
    let url = repo_url(&registry, repo, &format!("manifests/{}", gone.manifest.digest));
    registry.send(Request::delete(url)).await?.expect_status(202)?;

    let ex = discovery::get_referrers(&registry, repo, &pushed.subject.digest.to_string(), None).await?;
    let expected: Vec<&Value> = kept.iter().map(|r| &r.expected).collect();
    discovery::expect_referrers(&ex, &expected)
}
