//! `berth compose up -d`, `ps`, `logs` and `down` end to end, in real namespaces: the busybox
//! image is pushed (by skopeo) to berth's own registry and pulled by `up` into a temporary
//! store. The project has a one-shot service that the others wait for
//! (`service_completed_successfully`), a service of two replicas on the project network
//! (made by `up`, removed by `down`), a bind mount they share, and a named volume
//! (`e2e_data`, made by `up`) that init writes and the replicas read: `down` keeps it,
//! `down -v` removes it.
//! `down` must remove exactly the project's containers: a container of another name in the
//! same store stays.
//!
//! Needs root and the CNI plugins (scripts/test installs them); without root the test prints SKIP and passes, except under `CI=true`. Every
//! container is removed when the test ends, however it ends.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{berth_binary, describe_failure, require_tools, skopeo, BusyboxImage, Registry, IMAGE_REF};
use runtime::container::Containers;

const TEST: &str = "compose_up_runs_services_in_order_and_down_removes_exactly_them";

/// Removes every container and network of the store when dropped.
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let containers = Containers::at(self.0);
        for record in containers.list().unwrap_or_default() {
            if let Err(e) = containers.remove(&record.id, true) {
                eprintln!("cleaning up container {}: {e}", record.id);
            }
        }
        // A network's bridge is on the host: remove it with the store.
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

async fn berth(root: &Path, dir: &Path, args: &[&str]) -> Result<Output> {
    let bin = berth_binary()?;
    let mut all = vec!["--root", root.to_str().context("root path is not UTF-8")?];
    all.extend_from_slice(args);
    let output = tokio::process::Command::new(bin).args(&all).current_dir(dir).output().await?;
    Ok(output)
}

async fn berth_ok(root: &Path, dir: &Path, args: &[&str]) -> Result<String> {
    let output = berth(root, dir, args).await?;
    if !output.status.success() {
        bail!("{}", describe_failure("berth", args, &output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn names(root: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = Containers::at(root).list()?.into_iter().map(|r| r.name).collect();
    names.sort();
    Ok(names)
}

fn networks(root: &Path) -> Result<Vec<String>> {
    Ok(runtime::network::Networks::at(root).list()?.into_iter().map(|n| n.name).collect())
}

#[tokio::test]
async fn compose_up_runs_services_in_order_and_down_removes_exactly_them() -> Result<()> {
    if !shared::testing::require_root(TEST) {
        return Ok(());
    }
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = Registry::start().await?;
    let reference = format!("{}/e2e/busybox:{IMAGE_REF}", registry.host());
    let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());
    skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{reference}")]).await?;

    let root = tempfile::tempdir()?;
    let _cleanup = Cleanup(root.path());
    let project = tempfile::tempdir()?;
    let dir = project.path();
    std::fs::create_dir(dir.join("shared"))?;
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"name: e2e
services:
  app:
    image: {reference}
    command: ["sh", "-c", "cat /shared/marker /data/note; echo greeting=$$GREETING; sleep 600"]
    environment:
      GREETING: ${{GREETING:-hello}}
    volumes: ["./shared:/shared:ro", "data:/data:ro"]
    depends_on:
      init:
        condition: service_completed_successfully
    deploy:
      replicas: 2
  init:
    image: {reference}
    network_mode: none
    command: ["sh", "-c", "echo marker-written > /shared/marker && echo volume-shared > /data/note"]
    volumes: ["./shared:/shared", "data:/data"]
volumes:
  data: {{}}
"#
        ),
    )?;
    berth_ok(root.path(), dir, &["run", "-d", "--name", "e2e-bystander", &reference, "sleep", "600"]).await?;

    let up = berth(root.path(), dir, &["compose", "up", "-d"]).await?;
    if !up.status.success() {
        bail!("{}", describe_failure("berth", &["compose", "up", "-d"], &up));
    }
    let said = String::from_utf8_lossy(&up.stderr);
    let init_exited = said.find("e2e-init-1  Exited").context(said.to_string())?;
    let app_started = said.find("e2e-app-1  Started").context(said.to_string())?;
    assert!(init_exited < app_started, "app started before init completed:\n{said}");
    assert_eq!(names(root.path())?, ["e2e-app-1", "e2e-app-2", "e2e-bystander", "e2e-init-1"]);
    assert!(networks(root.path())?.contains(&"e2e_default".to_string()), "up makes the project network");

    let ps = berth_ok(root.path(), dir, &["compose", "ps"]).await?;
    assert!(ps.lines().any(|l| l.starts_with("e2e-app-2") && l.contains("Up")), "{ps}");
    assert!(!ps.contains("bystander"), "{ps}");

    // The replicas print as they start; wait for their lines (the test's only wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = berth_ok(root.path(), dir, &["compose", "logs", "app"]).await?;
        let complete = ["e2e-app-1", "e2e-app-2"].iter().all(|c| {
            ["marker-written", "volume-shared", "greeting=hello"].iter().all(|l| logs.contains(&format!("{c}  | {l}")))
        });
        if complete {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas did not print what they were given:\n{logs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Up again with the same file: the running replicas are left alone.
    let again = berth(root.path(), dir, &["compose", "up", "-d"]).await?;
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && said.contains("e2e-app-2  Running") && !said.contains("e2e-app-2  Recreated"),
        "{said}"
    );

    berth_ok(root.path(), dir, &["compose", "down"]).await?;
    assert_eq!(names(root.path())?, ["e2e-bystander"], "down must remove the project's containers and only them");
    assert!(!networks(root.path())?.contains(&"e2e_default".to_string()), "down removes the project network");
    let volumes = runtime::volumes::Volumes::at(root.path());
    let data = volumes.get("e2e_data").context("down must keep the project's named volume")?;
    assert_eq!(data.labels.get("com.docker.compose.volume").map(String::as_str), Some("data"));
    assert_eq!(std::fs::read_to_string(volumes.data("e2e_data").join("note"))?, "volume-shared\n");
    berth_ok(root.path(), dir, &["compose", "down", "-v"]).await?;
    assert!(volumes.get("e2e_data").is_err(), "down -v removes the project's named volume");

    // What berth cannot run yet is refused by name, before anything starts.
    std::fs::write(
        dir.join("compose.yaml"),
        format!("services:\n  web:\n    image: {reference}\n    ports: [\"9000-9001:80\"]\n"),
    )?;
    let refused = berth(root.path(), dir, &["compose", "up", "-d"]).await?;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("services.web."), "{err}");
    assert_eq!(names(root.path())?, ["e2e-bystander"]);
    Ok(())
}
