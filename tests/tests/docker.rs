//! The Docker engine against a real berth registry: push an imported busybox image, remove
//! it, pull it back and run it; then pull and run a two-platform index pushed by skopeo.
//!
//! Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) without configuration,
//! and the daemon runs on this host, so it reaches the in-process server directly. When no
//! engine answers (`docker info` fails) the test prints a SKIP line and passes, unless
//! `CI=true`, where a missing engine is a failure.

use anyhow::{ensure, Result};
use e2e::{require_tools, run, run_ok, skopeo, BusyboxImage, Registry, INDEX_REF};

/// Images this test created, removed when it ends however it ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            // Best effort: an image already removed is not an error worth reporting here.
            let _ = std::process::Command::new("docker").arg("rmi").arg("-f").args(&self.0).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_pulls_and_runs() -> Result<()> {
    if !e2e::docker_available("docker_pushes_pulls_and_runs").await? {
        return Ok(());
    }
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = Registry::start().await?;
    let host = registry.host();
    let single = format!("{host}/e2e/dockerbusybox:v1");
    let multi = format!("{host}/e2e/dockermulti:v1");
    let mut cleanup = Cleanup(Vec::new());

    // Import the layer as an image, push it, forget it, pull it back and run it.
    cleanup.0.push(single.clone());
    let layer = image.layer_file.to_string_lossy().into_owned();
    run_ok("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &single]).await?;
    run_ok("docker", &["push", &single]).await?;
    run_ok("docker", &["rmi", &single]).await?;
    let gone = run("docker", &["image", "inspect", &single]).await?;
    ensure!(!gone.status.success(), "{single} is still present after docker rmi");
    run_ok("docker", &["pull", &single]).await?;
    let out = run_ok("docker", &["run", "--rm", &single, "echo", "hello"]).await?;
    ensure!(out == "hello\n", "docker run printed {out:?}, not \"hello\\n\"");

    // A two-platform OCI index pushed by skopeo: docker picks linux/amd64 and runs it.
    cleanup.0.push(multi.clone());
    let src = format!("oci:{}:{INDEX_REF}", image.layout.root().display());
    skopeo(&["copy", "--all", "--preserve-digests", "--dest-tls-verify=false", &src, &format!("docker://{multi}")])
        .await?;
    run_ok("docker", &["pull", &multi]).await?;
    let arch = run_ok("docker", &["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", &multi]).await?;
    ensure!(arch.trim() == "linux/amd64", "docker pulled the {} entry of the index", arch.trim());
    let out = run_ok("docker", &["run", "--rm", &multi, "echo", "hello"]).await?;
    ensure!(out == "hello\n", "docker run of the index printed {out:?}, not \"hello\\n\"");
    let out = run_ok("docker", &["run", "--rm", &multi, "sh", "-c", "cat /bin/busybox | wc -c"]).await?;
    let size = std::fs::metadata(e2e::BUSYBOX)?.len();
    ensure!(out.trim() == size.to_string(), "the container's busybox has {} bytes, not {size}", out.trim());

    run_ok("docker", &["rmi", &single, &multi]).await?;
    cleanup.0.clear();
    Ok(())
}
