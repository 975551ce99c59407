//! `berth save` and `berth load` against the Docker engine: an image `docker save` (20.10)
//! wrote loads into berth's store, berth saves it again, `docker load` reads that archive and
//! the image runs; skopeo reads the same archive as an OCI archive.
//!
//! Without a Docker engine (`docker info` fails) the test prints a SKIP line and passes,
//! unless `CI=true`, where that is a failure.

use anyhow::{ensure, Result};
use e2e::{berth, require_tools, run, run_ok, skopeo, BusyboxImage};

/// Docker images this test created, removed when it ends however it ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Best effort: an image already removed is not an error worth reporting here.
        let _ = std::process::Command::new("docker").arg("rmi").arg("-f").args(&self.0).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_and_berth_read_each_others_archives() -> Result<()> {
    if !e2e::docker_available("docker_and_berth_read_each_others_archives").await? {
        return Ok(());
    }
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    // Unique per run: other engineers' tests use the same engine.
    let name = format!("berth-e2e/archive:{}", std::process::id());
    let _cleanup = Cleanup(vec![name.clone()]);
    let layer = image.layer_file.to_string_lossy().into_owned();
    run_ok("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &name]).await?;
    let docker_id = run_ok("docker", &["image", "inspect", "--format", "{{.Id}}", &name]).await?;

    // docker save 20.10: <id>.json, uncompressed <id>/layer.tar, manifest.json.
    let from_docker = work.path().join("from-docker.tar");
    run_ok("docker", &["save", "-o", from_docker.to_str().unwrap_or_default(), &name]).await?;
    let root = work.path().join("store");
    let out = berth(&root, &["load", "-i", from_docker.to_str().unwrap_or_default()]).await?;
    ensure!(out.contains(&format!("Loaded image: {name}")), "berth load printed:\n{out}");
    let listing = berth(&root, &["images"]).await?;
    ensure!(listing.contains("berth-e2e/archive"), "berth images after load printed:\n{listing}");

    // berth save, then docker load of it, with the engine's copy gone.
    let from_berth = work.path().join("from-berth.tar");
    berth(&root, &["save", "-o", from_berth.to_str().unwrap_or_default(), &name]).await?;
    run_ok("docker", &["rmi", &name]).await?;
    let gone = run("docker", &["image", "inspect", &name]).await?;
    ensure!(!gone.status.success(), "{name} is still present after docker rmi");
    let out = run_ok("docker", &["load", "-i", from_berth.to_str().unwrap_or_default()]).await?;
    ensure!(out.contains(&format!("Loaded image: {name}")), "docker load printed:\n{out}");
    let id = run_ok("docker", &["image", "inspect", "--format", "{{.Id}}", &name]).await?;
    ensure!(id == docker_id, "the image came back as {id}, not {docker_id}");
    let out = run_ok("docker", &["run", "--rm", &name, "echo", "hello"]).await?;
    ensure!(out == "hello\n", "docker run printed {out:?}, not \"hello\\n\"");

    // The same archive is an OCI archive.
    let raw = skopeo(&["inspect", "--raw", &format!("oci-archive:{}", from_berth.display())]).await?;
    let manifest: serde_json::Value = serde_json::from_str(&raw)?;
    ensure!(manifest["layers"].as_array().map(Vec::len) == Some(1), "skopeo read the manifest {raw}");

    // And berth loads its own archive again, unchanged.
    let again = work.path().join("again");
    berth(&again, &["load", "-i", from_berth.to_str().unwrap_or_default()]).await?;
    let first = berth(&root, &["images"]).await?;
    let second = berth(&again, &["images"]).await?;
    let digest = |listing: &str| listing.lines().nth(1).and_then(|l| l.split_whitespace().nth(2)).map(str::to_string);
    ensure!(digest(&first).is_some() && digest(&first) == digest(&second), "images differ:\n{first}\n{second}");
    Ok(())
}
