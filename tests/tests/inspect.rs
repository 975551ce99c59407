//! `berth inspect` against `docker inspect`: the same image (saved by Docker, loaded into
//! berth) and a container of it run by each; berth's field names must be Docker's, and the
//! values both know about an image must agree.
//!
//! Needs the Docker engine and root (for `berth run`): without them it prints a SKIP line,
//! unless `CI=true`, where that is a failure.

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use e2e::{berth, run_ok, BusyboxImage};
use serde_json::Value;

/// Docker objects this test created, removed when it ends however it ends.
struct Cleanup(Vec<(&'static str, String)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, name) in self.0.iter().rev() {
            // Best effort: an object already removed is not an error worth reporting here.
            let _ = std::process::Command::new("docker").args([*kind, "rm", "-f", name.as_str()]).output();
        }
    }
}

/// The one object an `inspect` printed.
fn only(out: &str) -> Result<Value> {
    let all: Value = serde_json::from_str(out).with_context(|| format!("inspect printed {out}"))?;
    all.get(0).cloned().with_context(|| format!("inspect printed no object: {out}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// Fails unless every key of berth's object `path` is one of Docker's there too.
fn same_names(berth: &Value, docker: &Value, path: &str) -> Result<()> {
    let extra: Vec<String> = keys(berth).difference(&keys(docker)).cloned().collect();
    ensure!(extra.is_empty(), "berth's {path} has fields docker's has not: {extra:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_speaks_dockers_field_names() -> Result<()> {
    let test = "inspect_speaks_dockers_field_names";
    if !e2e::docker_available(test).await? || !shared::testing::require_root(test) {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let name = format!("berth-e2e/inspect:{}", std::process::id());
    let container = format!("berth-e2e-inspect-{}", std::process::id());
    let mut cleanup = Cleanup(vec![("image", name.clone())]);
    let layer = image.layer_file.to_string_lossy().into_owned();
    run_ok("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &name]).await?;
    let archive = work.path().join("image.tar");
    let archive = archive.to_str().context("temporary path is not UTF-8")?;
    run_ok("docker", &["save", "-o", archive, &name]).await?;
    let root = work.path().join("store");
    berth(&root, &["load", "-i", archive]).await?;

    let theirs = only(&run_ok("docker", &["image", "inspect", &name]).await?)?;
    let ours = only(&berth(&root, &["inspect", "--type", "image", &name]).await?)?;
    for field in ["Id", "RepoTags", "RepoDigests", "Created", "Config", "RootFS", "Architecture", "Os", "Size"] {
        ensure!(ours.get(field).is_some(), "berth's image lacks {field}: {ours:#}");
    }
    same_names(&ours, &theirs, "image")?;
    same_names(&ours["Config"], &theirs["Config"], "image Config")?;
    for field in ["Id", "RootFS", "Architecture", "Os", "RepoTags"] {
        ensure!(ours[field] == theirs[field], "{field}: berth says {}, docker {}", ours[field], theirs[field]);
    }
    ensure!(ours["Config"]["Cmd"] == theirs["Config"]["Cmd"], "Cmd: {ours:#} vs {theirs:#}");

    cleanup.0.push(("container", container.clone()));
    run_ok("docker", &["run", "--name", &container, &name, "sh", "-c", "exit 3"]).await.ok();
    berth(&root, &["run", "--name", "inspected", &name, "sh", "-c", "exit 3"]).await.ok();
    let theirs = only(&run_ok("docker", &["container", "inspect", &container]).await?)?;
    let ours = only(&berth(&root, &["inspect", "inspected"]).await?)?;
    for field in ["Id", "Name", "State", "Config", "Image", "HostConfig", "RestartCount"] {
        ensure!(ours.get(field).is_some(), "berth's container lacks {field}: {ours:#}");
    }
    same_names(&ours, &theirs, "container")?;
    for part in ["State", "Config", "HostConfig"] {
        same_names(&ours[part], &theirs[part], part)?;
    }
    for field in ["Status", "Running", "ExitCode", "Pid"] {
        let (a, b) = (&ours["State"][field], &theirs["State"][field]);
        ensure!(a == b, "State.{field}: berth says {a}, docker {b}");
    }
    ensure!(ours["Image"] == theirs["Image"], "Image: berth says {}, docker {}", ours["Image"], theirs["Image"]);
    ensure!(ours["Name"] == "/inspected", "Name: {}", ours["Name"]);
    Ok(())
}

/// The same `run` flags given to `docker run` and `berth run`: `inspect` must report them
/// alike where both have the field (the volume's path on the host differs, as may IDs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_inspect_agrees_with_docker_on_run_flags() -> Result<()> {
    let test = "container_inspect_agrees_with_docker_on_run_flags";
    if !e2e::docker_available(test).await? || !shared::testing::require_root(test) {
        return Ok(());
    }
    if !std::path::Path::new("/usr/bin/tini-static").is_file() {
        shared::testing::skip(test, "Debian's tini is not installed (apt-get install tini)");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let pid = std::process::id();
    let name = format!("berth-e2e/inspect-flags:{pid}");
    let container = format!("berth-e2e-inspect-flags-{pid}");
    let volume = format!("berth-e2e-inspect-vol-{pid}");
    let mut cleanup = Cleanup(vec![("image", name.clone()), ("volume", volume.clone())]);
    let layer = image.layer_file.to_string_lossy().into_owned();
    run_ok("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &name]).await?;
    let archive = work.path().join("image.tar");
    let archive = archive.to_str().context("temporary path is not UTF-8")?;
    run_ok("docker", &["save", "-o", archive, &name]).await?;
    let root = work.path().join("store");
    berth(&root, &["load", "-i", archive]).await?;

    let bind = format!("{volume}:/data");
    let flags = [
        "--network",
        "none",
        "--label",
        "tier=web",
        "--add-host",
        "db.example:10.1.2.3",
        "--dns",
        "10.0.0.53",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:3",
        "--ulimit",
        "nofile=512:1024",
        "--init",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "--hostname",
        "boxy",
        "-u",
        "1000",
        "--read-only",
        "-v",
        &bind,
    ];
    let command = [name.as_str(), "sh", "-c", "exit 3"];
    cleanup.0.insert(1, ("container", container.clone()));
    let docker_args: Vec<&str> = ["run", "--name", &container].iter().copied().chain(flags).chain(command).collect();
    let _ = e2e::run("docker", &docker_args).await?;
    let berth_args: Vec<&str> = ["run", "--name", "flagged"].iter().copied().chain(flags).chain(command).collect();
    let _ = e2e::run(
        e2e::berth_binary()?.to_str().context("not UTF-8")?,
        &[&["--root", root.to_str().context("not UTF-8")?][..], &berth_args].concat(),
    )
    .await?;
    let theirs = only(&run_ok("docker", &["container", "inspect", &container]).await?)?;
    let ours = only(&berth(&root, &["inspect", "flagged"]).await?)?;
    let fields = [
        "/Path",
        "/Args",
        "/State/Status",
        "/State/ExitCode",
        "/State/Running",
        "/Config/Hostname",
        "/Config/User",
        "/Config/Env",
        "/Config/Cmd",
        "/Config/Entrypoint",
        "/Config/WorkingDir",
        "/Config/Labels",
        "/Config/Image",
        "/HostConfig/NetworkMode",
        "/HostConfig/ReadonlyRootfs",
        "/HostConfig/ExtraHosts",
        "/HostConfig/Dns",
        "/HostConfig/DnsSearch",
        "/HostConfig/DnsOptions",
        "/HostConfig/Ulimits",
        "/HostConfig/Init",
        "/HostConfig/Binds",
        "/HostConfig/RestartPolicy/Name",
        "/HostConfig/AutoRemove",
        "/Mounts/0/Type",
        "/Mounts/0/Name",
        "/Mounts/0/Destination",
        "/Mounts/0/RW",
        "/Mounts/0/Driver",
    ];
    let mut differ = Vec::new();
    for field in fields {
        let (a, b) = (ours.pointer(field), theirs.pointer(field));
        if a != b || a.is_none() {
            differ.push(format!("{field}: berth {a:?}, docker {b:?}"));
        }
    }
    ensure!(differ.is_empty(), "inspect differs from docker's:\n{}", differ.join("\n"));
    for part in ["State", "Config", "HostConfig"] {
        same_names(&ours[part], &theirs[part], part)?;
    }
    same_names(&ours["Mounts"][0], &theirs["Mounts"][0], "Mounts")?;
    Ok(())
}
