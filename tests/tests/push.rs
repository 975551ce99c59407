//! `berth push`: an image pulled from one berth registry, tagged for another, pushed there
//! (uploading what is new, skipping what the repository has, mounting what another
//! repository of that registry has), then pulled from it by the Docker engine and run.
//!
//! The Docker part needs an engine: without one (`docker info` fails) it prints a SKIP line,
//! unless `CI=true`, where that is a failure.

use anyhow::{ensure, Result};
use e2e::{berth, require_tools, run_ok, BusyboxImage, Registry, IMAGE_REF};
use shared::client::Client;
use shared::manifest::Manifest;
use shared::ImageRef;

/// Docker images this test pulled, removed when it ends however it ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Best effort: an image already removed is not an error worth reporting here.
        let _ = std::process::Command::new("docker").arg("rmi").arg("-f").args(&self.0).output();
    }
}

/// Pushes the busybox image of `image`'s layout to `target` with the client.
async fn seed(image: &BusyboxImage, target: &ImageRef) -> Result<()> {
    let client = Client::anonymous()?;
    let body = image.layout.read_blob(&image.image.digest)?;
    let manifest = Manifest::parse(&body, Some(&image.image.media_type))?;
    for blob in manifest.config.iter().chain(&manifest.layers) {
        let file = tokio::fs::File::open(image.layout.blob_path(&blob.digest)).await?;
        client.push_blob(target, &blob.digest, blob.size, file, None).await?;
    }
    client.push_manifest(target, &target.reference(), &image.image.media_type, body.into()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_a_pulled_image_to_another_registry_mounting_what_it_can() -> Result<()> {
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let (a, b) = (Registry::start().await?, Registry::start().await?);
    let source = format!("{}/e2e/busybox:{IMAGE_REF}", a.host());
    seed(&image, &source.parse()?).await?;

    let root = work.path().join("store");
    berth(&root, &["pull", "-q", &source]).await?;
    let one = format!("{}/e2e/one:v1", b.host());
    berth(&root, &["tag", &source, &one]).await?;
    let layer = &image.layer.digest.hex()[..12];
    let out = berth(&root, &["push", &one]).await?;
    ensure!(out.contains(&format!("{layer}: Pushed")), "the first push printed:\n{out}");
    let digest = image.image.digest.to_string();
    ensure!(out.contains(&format!("v1: digest: {digest}")), "the manifest changed on the way:\n{out}");

    // Again: the repository has everything.
    let out = berth(&root, &["push", &one]).await?;
    ensure!(out.contains(&format!("{layer}: Layer already exists")) && !out.contains("Pushed"), "again:\n{out}");

    // Another repository of the same registry: the blobs are mounted from e2e/one.
    let two = format!("{}/e2e/two:v1", b.host());
    berth(&root, &["tag", &one, &two]).await?;
    let out = berth(&root, &["push", &two]).await?;
    ensure!(out.contains(&format!("{layer}: Mounted from e2e/one")), "the push to e2e/two printed:\n{out}");
    ensure!(!out.contains("Pushed"), "the push to e2e/two uploaded a blob:\n{out}");

    // Not in the store under that name: the message says how to fix it.
    let three = format!("{}/e2e/three:v1", b.host());
    let err = berth(&root, &["push", &three]).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
    ensure!(err.contains(&format!("berth tag IMAGE {three}")), "pushing an unknown image said:\n{err}");

    if !e2e::docker_available("pushes_a_pulled_image_to_another_registry_mounting_what_it_can").await? {
        return Ok(());
    }
    let _cleanup = Cleanup(vec![two.clone()]);
    run_ok("docker", &["pull", &two]).await?;
    let out = run_ok("docker", &["run", "--rm", &two, "echo", "hello"]).await?;
    ensure!(out == "hello\n", "docker run printed {out:?}, not \"hello\\n\"");
    Ok(())
}
