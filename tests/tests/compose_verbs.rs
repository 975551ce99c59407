//! `berth compose` beyond `up -d` and `down`, end to end in real namespaces on a store with
//! the busybox image: a service waits for its dependency's health check
//! (`service_healthy`); `up --wait` returns once the services are ready; a file secret and a
//! file config are mounted where Compose mounts them; `exec` runs in a service's container
//! and passes its exit status; `run --rm` runs a one-off container and leaves nothing;
//! `restart` starts the containers again; `up` again recreates only the service whose
//! configuration changed (by its config-hash label); `deploy.resources.limits` reach the
//! cgroups; a restart policy restarts a failing service; and a foreground `up` follows the
//! output until SIGINT stops the services. `push` sends a built service's image to a
//! registry.
//!
//! Needs root and the CNI plugins; without root the test prints SKIP and passes, except
//! under `CI=true`. Every container and network of the store is removed however it ends.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::containers::{berth_binary, Store};
use e2e::describe_failure;
use runtime::container::Containers;
use tokio::io::AsyncBufReadExt;

const TEST: &str = "compose_verbs_gate_on_health_and_run_exec_restart_and_attach";

/// Removes the store's networks when dropped (the store removes its containers).
struct NetworkCleanup<'a>(&'a Path);

impl Drop for NetworkCleanup<'_> {
    fn drop(&mut self) {
        let containers = Containers::at(self.0);
        for record in containers.list().unwrap_or_default() {
            let _ = containers.remove(&record.id, true);
        }
        let networks = runtime::network::Networks::at(self.0);
        for def in networks.list().unwrap_or_default() {
            if def.name != runtime::network::DEFAULT_NETWORK {
                if let Err(e) = networks.remove(&def.name, &containers) {
                    eprintln!("cleaning up network {}: {e}", def.name);
                }
            }
        }
    }
}

fn command(root: &Path, dir: &Path, args: &[&str]) -> Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(berth_binary()?);
    cmd.arg("--root").arg(root).args(args).current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    Ok(cmd)
}

async fn berth(root: &Path, dir: &Path, args: &[&str]) -> Result<Output> {
    Ok(command(root, dir, args)?.output().await?)
}

async fn berth_ok(root: &Path, dir: &Path, args: &[&str]) -> Result<Output> {
    let output = berth(root, dir, args).await?;
    if !output.status.success() {
        bail!("{}", describe_failure("berth", args, &output));
    }
    Ok(output)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn record(root: &Path, name: &str) -> Result<runtime::container::ContainerRecord> {
    Ok(Containers::at(root).find(name)?)
}

/// Polls the record of `name` until `done` holds (a bound against a hang, not a timing
/// assertion).
async fn wait_record(
    root: &Path,
    name: &str,
    what: &str,
    done: impl Fn(&runtime::container::ContainerRecord) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = record(root, name)?;
        if done(&r) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} never became {what}: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn compose_file(image: &str, api_env: &str) -> String {
    format!(
        r#"name: verbs
services:
  store:
    image: {image}
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 600"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 500ms
      retries: 60
  api:
    image: {image}
    command: ["sleep", "600"]
    stop_grace_period: 1s
    deploy:
      resources:
        limits: {{memory: 32M, cpus: "0.5", pids: 40}}
    environment:
      MODE: {api_env}
    secrets: [token]
    configs:
      - source: site
        target: /etc/site.conf
      - site
    depends_on:
      store:
        condition: service_healthy
  flaky:
    image: {image}
    network_mode: none
    command: ["sh", "-c", "exit 1"]
    restart: on-failure:2
secrets:
  token:
    file: ./token.txt
configs:
  site:
    file: ./site.conf
"#
    )
}

#[tokio::test]
async fn compose_verbs_gate_on_health_and_run_exec_restart_and_attach() -> Result<()> {
    if !shared::testing::require_root(TEST) {
        return Ok(());
    }
    let store = Store::with_image(|_| Ok(())).await?;
    let root = store.path();
    let _cleanup = NetworkCleanup(root);
    let project = tempfile::tempdir()?;
    let dir = project.path();
    std::fs::write(dir.join("token.txt"), "s3cret\n")?;
    std::fs::write(dir.join("site.conf"), "site=1\n")?;
    std::fs::write(dir.join("compose.yaml"), compose_file(&store.image, "one"))?;

    // Health-gated order, then --wait.
    let up = berth(root, dir, &["compose", "up", "--wait", "api"]).await?;
    if !up.status.success() {
        let health = record(root, "verbs-store-1")?.health;
        bail!("{}\nstore's health: {health:?}", describe_failure("berth", &["compose", "up", "--wait", "api"], &up));
    }
    let said = text(&up.stderr);
    let healthy = said.find("verbs-store-1  Healthy").context(said.clone())?;
    let api_started = said.find("verbs-api-1  Started").context(said.clone())?;
    assert!(healthy < api_started, "api started before store was healthy:\n{said}");
    let api = record(root, "verbs-api-1")?;
    assert!(api.is_running(), "--wait returned with api not running: {api:?}");
    let hash = api.options.labels.get("com.docker.compose.config-hash").cloned().context("no config-hash label")?;
    assert_eq!(api.options.labels.get("com.docker.compose.service").map(String::as_str), Some("api"));

    // deploy.resources.limits, as the host's cgroups hold them (v1 or v2 file names).
    let cgroups = runtime::container::cgroups::Cgroups::detect()?;
    let read = |files: &[&str]| -> Option<String> {
        cgroups.dirs(&api.cgroups_path()).iter().find_map(|d| {
            files.iter().find_map(|f| std::fs::read_to_string(d.join(f)).ok()).map(|t| t.trim().to_string())
        })
    };
    let memory = read(&["memory.limit_in_bytes", "memory.max"]);
    let pids = read(&["pids.max"]);
    let cpu = read(&["cpu.cfs_quota_us", "cpu.max"]);
    assert_eq!(memory.as_deref(), Some("33554432"));
    assert_eq!(pids.as_deref(), Some("40"));
    assert!(cpu.as_deref().is_some_and(|c| c.starts_with("50000")), "{cpu:?}");

    // Secrets and configs, through exec; exec passes the exit status.
    let cat =
        berth_ok(root, dir, &["compose", "exec", "-T", "api", "cat", "/run/secrets/token", "/etc/site.conf", "/site"])
            .await?;
    assert_eq!(text(&cat.stdout), "s3cret\nsite=1\nsite=1\n");
    let failed = berth(root, dir, &["compose", "exec", "-T", "api", "sh", "-c", "exit 3"]).await?;
    assert_eq!(failed.status.code(), Some(3), "{}", describe_failure("berth", &["compose", "exec"], &failed));
    let refused = berth(root, dir, &["compose", "exec", "-T", "api", "cat", "/run/secrets/token/x"]).await?;
    assert!(!refused.status.success());

    // run --rm: a one-off container with the service's environment, gone afterwards.
    let one_off = berth_ok(root, dir, &["compose", "run", "--rm", "-T", "api", "sh", "-c", "echo mode=$MODE"]).await?;
    assert!(text(&one_off.stdout).contains("mode=one"), "{}", text(&one_off.stdout));
    let left: Vec<String> = Containers::at(root).list()?.into_iter().map(|r| r.name).collect();
    assert!(!left.iter().any(|n| n.contains("-run-")), "run --rm left {left:?}");

    // restart: a new process (a new start time) in the same container.
    let before = record(root, "verbs-store-1")?.started;
    berth_ok(root, dir, &["compose", "restart"]).await?;
    let after = record(root, "verbs-store-1")?;
    assert!(after.is_running() && after.started != before, "{after:?}");

    // up again: only the changed service is made again.
    std::fs::write(dir.join("compose.yaml"), compose_file(&store.image, "two"))?;
    let again = berth_ok(root, dir, &["compose", "up", "-d"]).await?;
    let said = text(&again.stderr);
    assert!(said.contains("verbs-api-1  Recreated") && said.contains("verbs-store-1  Running"), "{said}");
    let api = record(root, "verbs-api-1")?;
    assert_ne!(api.options.labels.get("com.docker.compose.config-hash"), Some(&hash));

    // The restart policy restarts the failing service twice, then leaves it exited.
    wait_record(root, "verbs-flaky-1", "restarted twice and exited", |r| {
        r.restart_count == 2 && !r.is_running() && r.exit_code == Some(1)
    })
    .await?;

    berth_ok(root, dir, &["compose", "down"]).await?;

    // Foreground up: the output is followed, SIGINT stops the services.
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            "name: fg\nservices:\n  talker:\n    image: {}\n    network_mode: none\n    init: true\n    command: [\"sh\", \"-c\", \"echo hello-from-fg; exec sleep 600\"]\n",
            store.image
        ),
    )?;
    let mut child = command(root, dir, &["compose", "up"])?.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .context("no output from the foreground up")??;
    assert_eq!(line.as_deref(), Some("fg-talker-1  | hello-from-fg"));
    let pid = child.id().context("no pid")?;
    let kill = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status()?;
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.context("up did not end")??;
    assert!(status.success(), "{status}");
    assert!(!record(root, "fg-talker-1")?.is_running(), "SIGINT must stop the services");
    berth_ok(root, dir, &["compose", "down"]).await?;
    Ok(())
}

#[tokio::test]
async fn compose_push_sends_the_built_images() -> Result<()> {
    if !shared::testing::require_root("compose_push_sends_the_built_images") {
        return Ok(());
    }
    let store = Store::with_image(|_| Ok(())).await?;
    let root = store.path();
    let registry = e2e::Registry::start().await?;
    let project = tempfile::tempdir()?;
    let dir = project.path();
    std::fs::create_dir(dir.join("app"))?;
    std::fs::write(dir.join("app/Dockerfile"), format!("FROM {}\nCOPY note /note\n", store.image))?;
    std::fs::write(dir.join("app/note"), "pushed\n")?;
    let target = format!("{}/e2e/compose-app:v1", registry.host());
    std::fs::write(
        dir.join("compose.yaml"),
        format!("services:\n  app:\n    build: ./app\n    image: {target}\n  plain:\n    image: {}\n", store.image),
    )?;
    berth_ok(root, dir, &["compose", "build"]).await?;
    berth_ok(root, dir, &["compose", "push"]).await?;
    let tags = e2e::list_tags(&format!("{}/e2e/compose-app", registry.host())).await?;
    assert!(tags.contains("v1"), "{tags:?}");
    Ok(())
}

#[tokio::test]
async fn compose_run_flags_and_inline_secrets_and_configs_reach_the_container() -> Result<()> {
    if !shared::testing::require_root("compose_run_flags_and_inline_secrets_and_configs_reach_the_container") {
        return Ok(());
    }
    let store = Store::with_image(|_| Ok(())).await?;
    let root = store.path();
    let _cleanup = NetworkCleanup(root);
    let project = tempfile::tempdir()?;
    let dir = project.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // The secret's value comes from the project's environment (.env here).
    std::fs::write(dir.join(".env"), "TOKEN_VALUE=from-env\n")?;
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"name: runflags
services:
  app:
    image: {image}
    entrypoint: ["sh", "-c"]
    command: ["echo from-service"]
    working_dir: /tmp
    ports: ["127.0.0.1:{port}:80"]
    secrets: [token]
    configs:
      - source: motd
        target: /etc/motd
secrets:
  token:
    environment: TOKEN_VALUE
configs:
  motd:
    content: "hello ${{TOKEN_VALUE}}"
"#,
            image = store.image
        ),
    )?;

    let plain = berth_ok(root, dir, &["compose", "run", "--rm", "-T", "app"]).await?;
    assert_eq!(text(&plain.stdout), "from-service\n");

    // -u, -w, -e; the secret and the config as files.
    let script = "echo $(busybox id -u):$(busybox id -g) $(pwd) $EXTRA $(cat /run/secrets/token) $(cat /etc/motd)";
    let args =
        ["compose", "run", "--name", "runflags-plain", "-T", "-u", "1:1", "-w", "/etc", "-e", "EXTRA=x", "app", script];
    let flags = berth_ok(root, dir, &args).await?;
    assert_eq!(text(&flags.stdout), "1:1 /etc x from-env hello from-env\n");
    let plain = record(root, "runflags-plain")?;
    assert!(
        plain.options.publish.is_empty(),
        "run publishes no port without --service-ports: {:?}",
        plain.options.publish
    );

    // --entrypoint replaces the service's; the command given follows it.
    let entry =
        berth_ok(root, dir, &["compose", "run", "--rm", "-T", "--entrypoint", "echo 'the entry'", "app", "word"])
            .await?;
    assert_eq!(text(&entry.stdout), "the entry word\n");

    // --service-ports publishes the service's ports.
    let args = ["compose", "run", "--rm", "-T", "--name", "runflags-ports", "--service-ports", "app", "exec sleep 600"];
    let mut child = command(root, dir, &args)?.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let published = loop {
        match record(root, "runflags-ports") {
            Ok(r) if r.is_running() => break r.options.publish,
            _ if Instant::now() > deadline => bail!("runflags-ports never ran"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(published.iter().map(|p| (p.host_port, p.container_port)).collect::<Vec<_>>(), [(port, 80)]);
    child.kill().await?;

    // External secrets live in a swarm: a clear error, nothing started.
    std::fs::write(
        dir.join("external.yaml"),
        format!(
            "services:\n  app:\n    image: {}\n    secrets: [vault]\nsecrets:\n  vault:\n    external: true\n",
            store.image
        ),
    )?;
    let refused = berth(root, dir, &["compose", "-f", "external.yaml", "up", "-d"]).await?;
    let said = text(&refused.stderr);
    assert!(!refused.status.success() && said.contains("vault is external"), "{said}");

    // logs -f follows until no container runs; prefixes are padded to the longest name.
    std::fs::write(
        dir.join("logs.yaml"),
        format!(
            "name: logs2\nservices:\n  a:\n    image: {0}\n    network_mode: none\n    command: [\"echo\", \"hello-a\"]\n  longer:\n    image: {0}\n    network_mode: none\n    command: [\"sh\", \"-c\", \"echo hello-b; sleep 1; echo bye-b\"]\n",
            store.image
        ),
    )?;
    berth_ok(root, dir, &["compose", "-f", "logs.yaml", "up", "-d"]).await?;
    let logs = berth_ok(root, dir, &["compose", "-f", "logs.yaml", "logs", "-f"]).await?;
    let logs = text(&logs.stdout);
    for line in ["logs2-a-1       | hello-a", "logs2-longer-1  | hello-b", "logs2-longer-1  | bye-b"] {
        assert!(logs.lines().any(|l| l == line), "{line:?} missing from:\n{logs}");
    }
    let only = berth_ok(root, dir, &["compose", "-f", "logs.yaml", "logs", "a"]).await?;
    assert_eq!(text(&only.stdout), "logs2-a-1  | hello-a\n");
    berth_ok(root, dir, &["compose", "-f", "logs.yaml", "down"]).await?;
    Ok(())
}

#[tokio::test]
async fn ctrl_c_during_a_foreground_up_start_up_stops_what_was_started() -> Result<()> {
    if !shared::testing::require_root("ctrl_c_during_a_foreground_up_start_up_stops_what_was_started") {
        return Ok(());
    }
    let store = Store::with_image(|_| Ok(())).await?;
    let root = store.path();
    let _cleanup = NetworkCleanup(root);
    let project = tempfile::tempdir()?;
    let dir = project.path();
    // `slow` never becomes healthy, so `up` is still starting the project (waiting to start
    // `app`) when SIGINT comes.
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"name: ctrlc
services:
  slow:
    image: {image}
    network_mode: none
    init: true
    command: ["sleep", "600"]
    healthcheck:
      test: ["CMD-SHELL", "false"]
      interval: 500ms
      retries: 100000
  app:
    image: {image}
    network_mode: none
    command: ["sleep", "600"]
    depends_on:
      slow:
        condition: service_healthy
"#,
            image = store.image
        ),
    )?;
    let mut child = command(root, dir, &["compose", "up"])?.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut said = tokio::io::BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let waiting = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = said.next_line().await? {
            if line.contains("ctrlc-slow-1  Waiting") {
                return Ok(());
            }
        }
        bail!("up ended before it waited for slow")
    })
    .await
    .context("up never waited for slow")?;
    waiting?;
    let pid = child.id().context("no pid")?;
    assert!(std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status()?.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.context("up did not end")??;
    assert!(status.success(), "{status}");
    assert!(!record(root, "ctrlc-slow-1")?.is_running(), "SIGINT during start-up must stop what was started");
    assert!(record(root, "ctrlc-app-1").is_err(), "nothing starts after SIGINT");
    berth_ok(root, dir, &["compose", "down"]).await?;
    Ok(())
}
