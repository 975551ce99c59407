//! The compose deployment of `docker/` with the Docker engine: two berth replicas over one S3
//! server (s3s-fs) behind nginx. The test builds the images (`docker/build-images.sh`), brings
//! the deployment up on a free loopback port, pushes an imported busybox image through the
//! load balancer, removes it, pulls it back and runs it. It then checks that both replicas
//! took part in the upload (their own `/metrics`, read through ports published for the test
//! only), that both serve the manifest, and that the content is in the bucket.
//!
//! Needs, besides the engine: `docker-compose` (v1) or `docker compose` (v2), and what the
//! build script needs (s3s-fs, nginx, a static busybox). The first run builds berth in release
//! mode, which takes minutes. When no engine or no compose answers the test prints SKIP and
//! passes, unless `CI=true`. The deployment (containers, network, volume) and the pushed image
//! are removed however the test ends; the built images (`berth/registry:dev`, `berth/s3:dev`,
//! `berth/lb:dev`) are kept, so the next run rebuilds only what changed.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use e2e::{describe_failure, run, run_ok, BusyboxImage};

/// How long building the images may take: a cold release build of berth is minutes long.
const BUILD_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// How long one compose command may take.
const COMPOSE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the deployment may take to answer after `up`.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The bucket the test's deployment uses.
const BUCKET: &str = "berth-test";

/// The repository root (the `tests` crate's parent).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Fails under `CI=true`; otherwise prints a SKIP line and returns false.
fn skip(why: &str) -> Result<bool> {
    shared::testing::skip("compose_deployment_pushes_and_pulls_through_the_load_balancer", why);
    Ok(false)
}

/// True when a Docker engine answers.
async fn docker_available() -> Result<bool> {
    let problem = match run("docker", &["info", "--format", "{{.ServerVersion}}"]).await {
        Ok(out) if out.status.success() => return Ok(true),
        Ok(out) => describe_failure("docker", &["info"], &out),
        Err(e) => format!("{e:#}"),
    };
    skip(&format!("no Docker engine is available ({problem})"))
}

/// The compose command line (`docker compose` if the plugin exists, else `docker-compose`), or
/// None when neither works.
async fn compose_command() -> Option<Vec<String>> {
    for candidate in [&["docker", "compose"][..], &["docker-compose"][..]] {
        let mut args = candidate[1..].to_vec();
        args.push("version");
        if run(candidate[0], &args).await.is_ok_and(|out| out.status.success()) {
            return Some(candidate.iter().map(|s| s.to_string()).collect());
        }
    }
    None
}

/// A port nobody listens on now (the system's pick, released again).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `program` with `args` and extra environment, failing with its output after `timeout` or
/// unless it exits 0.
async fn run_with_env(program: &str, args: &[String], env: &[(&str, String)], timeout: Duration) -> Result<String> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(true).stdin(std::process::Stdio::null());
    let output: Output = tokio::time::timeout(timeout, command.output())
        .await
        .with_context(|| format!("`{program} {}` took longer than {timeout:?}", args.join(" ")))?
        .with_context(|| format!("cannot run `{program}`"))?;
    if !output.status.success() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bail!("{}", describe_failure(program, &args, &output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One compose project made of `docker/compose.yaml` plus a test override; taken down with its
/// volume when dropped.
struct Deployment {
    compose: Vec<String>,
    project: String,
    files: Vec<PathBuf>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Deployment {
    /// Writes the override (each replica's port published on a random loopback port, so the
    /// test can read its metrics) and names the project; nothing runs yet.
    fn new(compose: Vec<String>) -> Result<Deployment> {
        let dir = tempfile::tempdir()?;
        let over = dir.path().join("compose.test.yaml");
        std::fs::write(
            &over,
            "services:\n  berth-1:\n    ports: [\"127.0.0.1::5000\"]\n  berth-2:\n    ports: [\"127.0.0.1::5000\"]\n",
        )?;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.subsec_nanos();
        Ok(Deployment {
            compose,
            project: format!("berth-test-{}-{nanos:x}", std::process::id()),
            files: vec![repo_root().join("docker/compose.yaml"), over],
            port: free_port()?,
            _dir: dir,
        })
    }

    /// The variables compose.yaml reads that the test fixes.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BERTH_BIND", "127.0.0.1".into()),
            ("BERTH_PORT", self.port.to_string()),
            ("BERTH_S3_BUCKET", BUCKET.into()),
        ]
    }

    /// The compose program and its arguments for `args` in this project.
    fn command(&self, args: &[&str]) -> (String, Vec<String>) {
        let mut all: Vec<String> = self.compose[1..].to_vec();
        all.extend(["-p".to_string(), self.project.clone()]);
        for file in &self.files {
            all.extend(["-f".to_string(), file.display().to_string()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        (self.compose[0].clone(), all)
    }

    /// Runs a compose command in this project; returns its standard output.
    async fn run(&self, args: &[&str]) -> Result<String> {
        let (program, args) = self.command(args);
        run_with_env(&program, &args, &self.env(), COMPOSE_TIMEOUT).await
    }

    /// The host address of a replica's published port 5000.
    async fn replica(&self, service: &str) -> Result<String> {
        let out = self.run(&["port", service, "5000"]).await?;
        let addr = out.trim();
        ensure!(addr.starts_with("127.0.0.1:"), "`port {service} 5000` printed {out:?}");
        Ok(addr.to_string())
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Best effort, and synchronous: the runtime may be gone by now.
        let (program, args) = self.command(&["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
        let _ = std::process::Command::new(program).args(args).envs(self.env()).output();
    }
}

/// Removes the pushed image from the engine when dropped.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// Waits until `url` answers 200.
async fn wait_ready(client: &reqwest::Client, url: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => format!("{e}"),
        };
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {READY_TIMEOUT:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The requests on upload routes (start, chunk, finish) a replica's `/metrics` counts.
fn upload_requests(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("berth_http_requests_total{") && l.contains("route=\"upload\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_deployment_pushes_and_pulls_through_the_load_balancer() -> Result<()> {
    if !docker_available().await? {
        return Ok(());
    }
    let Some(compose) = compose_command().await else {
        skip("neither `docker compose` nor `docker-compose` works (apt-get install -y docker-compose)")?;
        return Ok(());
    };
    e2e::require_tools(&[])?;

    let started = Instant::now();
    let script = repo_root().join("docker/build-images.sh");
    // The berth that `cargo test` built beside this test (target/<profile>/berth) makes the
    // image, so the test costs no release build; performance is not what it checks.
    let built = std::env::current_exe()?.parent().and_then(|deps| deps.parent()).map(|dir| dir.join("berth"));
    let env: Vec<(&str, String)> = match built.filter(|b| b.is_file()) {
        Some(bin) => vec![("BERTH_BIN", bin.display().to_string())],
        None => Vec::new(),
    };
    run_with_env(&script.display().to_string(), &[], &env, BUILD_TIMEOUT).await.context("building the images")?;
    println!("images built in {:.1?}", started.elapsed());

    let deployment = Deployment::new(compose)?;
    let result = exercise(&deployment).await;
    if result.is_err() {
        // The services' logs say more than the client's error; show their tail.
        if let Ok(logs) = deployment.run(&["logs", "--no-color", "--tail", "40"]).await {
            println!("--- compose logs (tail) ---\n{logs}");
        }
    }
    println!("whole test: {:.1?}", started.elapsed());
    result
}

/// Brings the deployment up and drives it; the caller tears it down.
async fn exercise(deployment: &Deployment) -> Result<()> {
    let t = Instant::now();
    deployment.run(&["up", "-d"]).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let host = format!("127.0.0.1:{}", deployment.port);
    wait_ready(&client, &format!("http://{host}/v2/")).await?;
    let replicas = [deployment.replica("berth-1").await?, deployment.replica("berth-2").await?];
    for replica in &replicas {
        wait_ready(&client, &format!("http://{replica}/healthz")).await?;
    }
    println!("deployment up in {:.1?}", t.elapsed());

    // Push through the load balancer, forget the image, pull it back and run it.
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let name = format!("{host}/compose/busybox:v1");
    let _remove = RemoveImage(name.clone());
    let t = Instant::now();
    let layer = image.layer_file.display().to_string();
    run_ok("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &name]).await?;
    let pushed = run_ok("docker", &["push", &name]).await?;
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:") && w.len() == 71)
        .with_context(|| format!("docker push printed no digest:\n{pushed}"))?
        .to_string();
    run_ok("docker", &["rmi", &name]).await?;
    let gone = run("docker", &["image", "inspect", &name]).await?;
    ensure!(!gone.status.success(), "{name} is still present after docker rmi");
    run_ok("docker", &["pull", &name]).await?;
    let out = run_ok("docker", &["run", "--rm", &name, "echo", "ok"]).await?;
    ensure!(out == "ok\n", "docker run printed {out:?}, not \"ok\\n\"");
    println!("push, pull and run in {:.1?}", t.elapsed());

    // Both replicas took part in the upload, and each serves the manifest (whoever stored it).
    for (service, replica) in ["berth-1", "berth-2"].iter().zip(&replicas) {
        let metrics = client.get(format!("http://{replica}/metrics")).send().await?.error_for_status()?.text().await?;
        let uploads = upload_requests(&metrics);
        println!("{service}: {uploads} upload requests");
        ensure!(uploads > 0, "{service} served no upload request; the load balancer did not spread the push");
        let url = format!("http://{replica}/v2/compose/busybox/manifests/{digest}");
        let resp = client
            .head(&url)
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .await?;
        ensure!(resp.status() == 200, "HEAD {url} on {service} answered {}", resp.status());
    }

    // The content is in the bucket, not on a replica.
    let hex = &digest["sha256:".len()..];
    let found = deployment.run(&["exec", "-T", "s3", "find", &format!("/data/{BUCKET}"), "-name", hex]).await?;
    ensure!(!found.trim().is_empty(), "the manifest {digest} is not in the bucket {BUCKET}");
    Ok(())
}
