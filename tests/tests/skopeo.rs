//! skopeo against a real berth registry: push an OCI layout, pull it back byte for byte,
//! the same for a two-platform index, then inspect, list tags and delete by digest.

use anyhow::{ensure, Result};
use e2e::{assert_same_content, list_tags, require_tools, skopeo, BusyboxImage, Registry, IMAGE_REF, INDEX_REF};
use shared::layout::Layout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trips_images_and_indexes() -> Result<()> {
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = Registry::start().await?;
    let repo = format!("{}/e2e/busybox", registry.host());
    let src = |name: &str| format!("oci:{}:{name}", image.layout.root().display());

    // Push the single image and read its manifest back as pushed.
    skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src(IMAGE_REF), &format!("docker://{repo}:v1")])
        .await?;
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{repo}:v1")]).await?;
    ensure!(
        raw.as_bytes() == image.layout.read_blob(&image.image.digest)?.as_slice(),
        "inspect --raw returned other bytes than were pushed: {raw}"
    );
    let by_digest =
        skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{repo}@{}", image.image.digest)]).await?;
    ensure!(by_digest == raw, "the manifest by digest differs from the manifest by tag");

    // Pull it back into a new layout: same manifest, same blobs.
    let back = work.path().join("back");
    let dest = format!("oci:{}:{IMAGE_REF}", back.display());
    skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", &format!("docker://{repo}:v1"), &dest]).await?;
    assert_same_content(&image.layout, &Layout::open(&back)?, &image.image, IMAGE_REF)?;

    // The two-platform index, all of it, there and back.
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src(INDEX_REF),
        &format!("docker://{repo}:multi"),
    ])
    .await?;
    let raw_index = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{repo}:multi")]).await?;
    ensure!(
        raw_index.as_bytes() == image.layout.read_blob(&image.index.digest)?.as_slice(),
        "inspect --raw returned other bytes for the index than were pushed: {raw_index}"
    );
    let back_multi = work.path().join("back-multi");
    let dest = format!("oci:{}:{INDEX_REF}", back_multi.display());
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{repo}:multi"),
        &dest,
    ])
    .await?;
    assert_same_content(&image.layout, &Layout::open(&back_multi)?, &image.index, INDEX_REF)?;

    // Both tags are listed.
    let tags = list_tags(&repo).await?;
    ensure!(tags == ["multi", "v1"].map(String::from).into(), "list-tags gave {tags:?}");

    // Deleting the image by digest removes it and the tag that pointed to it; the index
    // keeps its tag.
    let digest_ref = format!("docker://{repo}@{}", image.image.digest);
    skopeo(&["delete", "--tls-verify=false", &digest_ref]).await?;
    let gone = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{repo}:v1")]).await;
    ensure!(gone.is_err(), "the deleted manifest is still served by tag: {gone:?}");
    let gone = skopeo(&["inspect", "--raw", "--tls-verify=false", &digest_ref]).await;
    ensure!(gone.is_err(), "the deleted manifest is still served by digest: {gone:?}");
    let tags = list_tags(&repo).await?;
    ensure!(tags == ["multi"].map(String::from).into(), "after the delete, list-tags gave {tags:?}");
    Ok(())
}
