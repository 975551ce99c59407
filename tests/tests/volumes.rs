//! Volumes and the `berth run` flags of issue 15, end to end in real containers, with the
//! embedded runtime and with runc: data in a named volume outlives its containers, a new
//! volume gets the image's files (owners and modes too), `:ro` is enforced, a volume in use
//! cannot be removed, anonymous volumes go with `rm -v` and `--rm`; and `--label`,
//! `--add-host`, `--dns*`, `--ulimit`, `--init` and `--env-file` change what the container
//! sees.
//!
//! The image is the busybox image with a `VOLUME /data` whose folder has a file owned by
//! 1000:1000 (mode 750) and a label, pushed (by skopeo) to berth's own registry in process.
//! These tests need root; without it they print a SKIP line (a failure under `CI=true`).

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Output;

use anyhow::{bail, ensure, Context, Result};
use e2e::{berth_binary, describe_failure, require_tools, run, skopeo, BusyboxImage, Registry, IMAGE_REF};
use runtime::container::Containers;
use serde_json::{json, Value};
use shared::layer::LayerOptions;
use shared::layout::Layout;
use shared::manifest::Descriptor;
use shared::media_type;

/// Debian's runc.
const RUNC: &str = "/usr/sbin/runc";

/// A temporary store, the image in a registry, and the clean-up of every container.
struct Root {
    dir: tempfile::TempDir,
    image: String,
    _registry: Registry,
    _work: tempfile::TempDir,
}

/// Writes an image of `image`'s root file system with `VOLUME /data` and a label into `layout` as
/// `IMAGE_REF`.
fn volume_image(image: &BusyboxImage, layout: &Layout) -> Result<()> {
    // Owners kept (BusyboxImage's own layer makes every file root's).
    let layer_file = image.layer_file.with_file_name("owned-layer.tar.gz");
    let layer = shared::layer::write_layer_to_file(&image.rootfs, &LayerOptions::default(), &layer_file)?;
    layout.add_blob_file(&layer_file, Some(&layer.digest))?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "Volumes": {"/data": {}},
            "Labels": {"from": "image"},
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
    }))?;
    let digest = layout.add_blob(&config)?;
    let config = Descriptor {
        media_type: media_type::OCI_CONFIG.into(),
        digest,
        size: config.len() as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
        urls: None,
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config,
        "layers": [layer.descriptor()],
    }))?;
    layout.add_manifest(media_type::OCI_MANIFEST, &manifest, Some(IMAGE_REF))?;
    Ok(())
}

impl Root {
    async fn new() -> Result<Root> {
        require_tools(&["skopeo"])?;
        let work = tempfile::tempdir()?;
        let image = BusyboxImage::build_with(work.path(), |rootfs| {
            let data = rootfs.join("data");
            fs::create_dir_all(&data)?;
            fs::write(data.join("seed"), "from the image\n")?;
            chown(&data, Some(1000), Some(1000))?;
            chown(data.join("seed"), Some(1000), Some(1000))?;
            fs::set_permissions(&data, fs::Permissions::from_mode(0o750))?;
            Ok(())
        })?;
        let layout = Layout::create(work.path().join("volume-layout"))?;
        volume_image(&image, &layout)?;
        let registry = Registry::start().await?;
        let reference = format!("{}/e2e/volumes:{IMAGE_REF}", registry.host());
        let src = format!("oci:{}:{IMAGE_REF}", layout.root().display());
        skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{reference}")]).await?;
        let root = Root { dir: tempfile::tempdir()?, image: reference, _registry: registry, _work: work };
        root.berth_ok(&["pull", &root.image]).await?;
        Ok(root)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn berth(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["--root", self.path().to_str().context("root path is not UTF-8")?];
        all.extend_from_slice(args);
        run(berth_binary()?.to_str().context("binary path is not UTF-8")?, &all).await
    }

    async fn berth_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.berth(args).await?;
        if !output.status.success() {
            bail!("{}", describe_failure("berth", args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `berth run [--runtime R] FLAGS... IMAGE COMMAND...`: (exit code, stdout, stderr).
    async fn run(&self, runtime: Option<&str>, flags: &[&str], command: &[&str]) -> Result<(i32, String, String)> {
        let mut args = vec!["run"];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        args.extend_from_slice(flags);
        args.push(&self.image);
        args.extend_from_slice(command);
        let out = self.berth(&args).await?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok((out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr)))
    }

    async fn volume_names(&self) -> Result<Vec<String>> {
        Ok(self.berth_ok(&["volume", "ls", "-q"]).await?.lines().map(String::from).collect())
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let containers = Containers::at(self.path());
        for record in containers.list().unwrap_or_default() {
            if let Err(e) = containers.remove(&record.id, true) {
                eprintln!("cleaning up container {}: {e}", record.id);
            }
        }
    }
}

/// The runtimes to test: the embedded one, and runc when installed.
fn runtimes(test: &str) -> Vec<Option<&'static str>> {
    if Path::new(RUNC).is_file() {
        vec![None, Some(RUNC)]
    } else {
        shared::testing::skip(&format!("{test} (runc)"), &format!("{RUNC} is not installed (apt-get install runc)"));
        vec![None]
    }
}

async fn check_volumes(root: &Root, runtime: Option<&str>) -> Result<()> {
    let rt = runtime.unwrap_or("embedded");
    let vol = format!("vol-{}", rt.replace('/', "-").trim_matches('-'));
    // Made by `volume create`, listed, inspected.
    ensure!(root.berth_ok(&["volume", "create", "--label", "team=web", &vol]).await?.trim() == vol);
    ensure!(root.volume_names().await?.contains(&vol), "{rt}: volume ls lacks {vol}");
    let shown: Value = serde_json::from_str(&root.berth_ok(&["volume", "inspect", &vol]).await?)?;
    ensure!(shown[0]["Name"] == vol.as_str() && shown[0]["Labels"]["team"] == "web", "{rt}: {shown}");
    ensure!(shown[0]["Driver"] == "local" && Path::new(shown[0]["Mountpoint"].as_str().unwrap_or("")).is_dir());

    // A new volume is filled with the image's /data, owner and mode kept; writes persist.
    let bind = format!("{vol}:/data");
    let script = "busybox stat -c '%u:%g %a' /data; cat /data/seed; echo kept > /data/new";
    let (code, out, err) = root.run(runtime, &["--rm", "-v", &bind], &["sh", "-c", script]).await?;
    ensure!(code == 0 && out == "1000:1000 750\nfrom the image\n", "{rt}: first use: {code} {out:?} {err}");
    let (code, out, err) = root.run(runtime, &["--rm", "-v", &bind], &["cat", "/data/new"]).await?;
    ensure!(code == 0 && out == "kept\n", "{rt}: the volume did not keep its data: {code} {out:?} {err}");
    // Read-only.
    let ro = format!("{bind}:ro");
    let (code, _, err) = root.run(runtime, &["--rm", "-v", &ro], &["sh", "-c", "echo x > /data/other"]).await?;
    ensure!(code != 0 && err.contains("Read-only file system"), "{rt}: :ro was written: {code} {err}");
    let (code, _, err) = root
        .run(runtime, &["--rm", "--mount", &format!("source={vol},target=/m,readonly")], &["busybox", "touch", "/m/x"])
        .await?;
    ensure!(code != 0, "{rt}: --mount readonly was written: {err}");

    // In use (by a stopped container too): refused; once it is gone, removed.
    let user = format!("user-{}", vol);
    root.run(runtime, &["--name", &user, "-v", &bind], &["true"]).await?;
    let refused = root.berth(&["volume", "rm", &vol]).await?;
    let said = String::from_utf8_lossy(&refused.stderr);
    ensure!(!refused.status.success() && said.contains("in use"), "{rt}: volume rm of a used volume: {said}");
    root.berth_ok(&["rm", &user]).await?;
    root.berth_ok(&["volume", "rm", &vol]).await?;
    ensure!(!root.volume_names().await?.contains(&vol), "{rt}: volume rm left it listed");

    // -v NAME makes a missing volume; the image's VOLUME gets an anonymous one, filled,
    // which `rm -v` removes and `--rm` too; named ones stay.
    let before = root.volume_names().await?;
    let auto = format!("auto-{vol}");
    let anon = format!("anon-{vol}");
    let (code, out, err) =
        root.run(runtime, &["--name", &anon, "-v", &format!("{auto}:/auto")], &["cat", "/data/seed"]).await?;
    ensure!(code == 0 && out == "from the image\n", "{rt}: anonymous /data: {code} {out:?} {err}");
    let after = root.volume_names().await?;
    let made: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
    ensure!(made.len() == 2 && made.contains(&&auto), "{rt}: volumes made: {made:?}");
    let anonymous = made.iter().find(|n| **n != &auto).context("no anonymous volume")?.to_string();
    ensure!(anonymous.len() == 64, "{rt}: anonymous volume {anonymous}");
    root.berth_ok(&["rm", "-v", &anon]).await?;
    let left = root.volume_names().await?;
    ensure!(left.contains(&auto) && !left.contains(&anonymous), "{rt}: after rm -v: {left:?}");
    root.run(runtime, &["--rm"], &["true"]).await?;
    ensure!(root.volume_names().await? == left, "{rt}: --rm left an anonymous volume");

    // --mount: a bind (must exist), a tmpfs; a volume-nocopy volume stays empty.
    let host = tempfile::tempdir()?;
    fs::write(host.path().join("f"), "host file\n")?;
    let mounts = [
        "--mount",
        &format!("type=bind,source={},target=/host", host.path().display()),
        "--mount",
        "type=tmpfs,target=/scratch",
        "--mount",
        &format!("type=volume,source=nocopy-{vol},target=/data,volume-nocopy"),
    ];
    let script = "cat /host/f; busybox grep -c ' /scratch tmpfs' /proc/mounts; ls /data | wc -l";
    let (code, out, err) = root.run(runtime, &[&["--rm"], &mounts[..]].concat(), &["sh", "-c", script]).await?;
    ensure!(code == 0 && out == "host file\n1\n0\n", "{rt}: --mount: {code} {out:?} {err}");
    let missing = root.run(runtime, &["--rm", "--mount", "type=bind,source=/no/such,target=/x"], &["true"]).await?;
    ensure!(missing.0 == 125 && missing.2.contains("does not exist"), "{rt}: {missing:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_persist_fill_and_are_guarded() -> Result<()> {
    let test = "volumes_persist_fill_and_are_guarded";
    if !shared::testing::require_root(test) {
        return Ok(());
    }
    let root = Root::new().await?;
    for runtime in runtimes(test) {
        check_volumes(&root, runtime).await?;
    }
    let pruned = root.berth_ok(&["volume", "prune", "-f"]).await?;
    ensure!(pruned.starts_with("Deleted Volumes:") && root.volume_names().await?.is_empty(), "prune: {pruned}");
    Ok(())
}

async fn check_flags(root: &Root, runtime: Option<&str>) -> Result<()> {
    let rt = runtime.unwrap_or("embedded");
    let work = tempfile::tempdir()?;
    // Labels (flags, a file, the image's), shown by inspect and matched by ps --filter.
    let labels = work.path().join("labels");
    fs::write(&labels, "# a comment\nfrom.file=yes\n")?;
    let env_file = work.path().join("env");
    fs::write(&env_file, "FROM_FILE=env file\n")?;
    let name = format!("flags-{}", rt.replace('/', "-").trim_matches('-'));
    let flags = [
        "--name",
        &name,
        "--label",
        "tier=web",
        "--label-file",
        labels.to_str().context("not UTF-8")?,
        "--env-file",
        env_file.to_str().context("not UTF-8")?,
        "--add-host",
        "db.example:10.9.8.7",
        "--add-host",
        "gw.example:host-gateway",
        "--dns",
        "10.0.0.53",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:3",
        "--ulimit",
        "nofile=512:1024",
        "--ulimit",
        "nproc=77",
    ];
    let script = "echo \"$FROM_FILE\"; busybox grep -e db.example -e gw.example /etc/hosts; cat /etc/resolv.conf; ulimit -n; ulimit -Hn; ulimit -u";
    let (code, out, err) = root.run(runtime, &flags, &["sh", "-c", script]).await?;
    ensure!(code == 0, "{rt}: {code} {err}");
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.first() == Some(&"env file"), "{rt}: --env-file: {out:?}");
    ensure!(lines.contains(&"10.9.8.7\tdb.example"), "{rt}: --add-host: {out:?}");
    // host-gateway is the host's address on the default bridge, as Docker's default.
    let bridge = runtime::network::Networks::at(root.dir.path()).get(runtime::network::DEFAULT_NETWORK)?;
    let gw = format!("{}\tgw.example", bridge.gateway);
    ensure!(lines.contains(&gw.as_str()), "{rt}: --add-host gw.example:host-gateway: {out:?}");
    for want in ["nameserver 10.0.0.53", "search example.test", "options ndots:3"] {
        ensure!(lines.contains(&want), "{rt}: resolv.conf lacks {want:?}: {out:?}");
    }
    ensure!(!lines.iter().any(|l| l.starts_with("nameserver") && *l != "nameserver 10.0.0.53"), "{rt}: {out:?}");
    ensure!(lines.ends_with(&["512", "1024", "77"]), "{rt}: --ulimit: {out:?}");
    let id = root.berth_ok(&["ps", "-a", "-q", "--no-trunc", "--filter", "label=tier=web"]).await?;
    let shown: Value = serde_json::from_str(&root.berth_ok(&["inspect", &name]).await?)?;
    ensure!(id.trim() == shown[0]["Id"].as_str().unwrap_or("?"), "{rt}: ps --filter gave {id:?}");
    let none = root.berth_ok(&["ps", "-a", "-q", "--filter", "label=tier=db"]).await?;
    ensure!(none.is_empty(), "{rt}: ps --filter label=tier=db gave {none:?}");
    let labels = &shown[0]["Config"]["Labels"];
    ensure!(labels == &json!({"tier": "web", "from.file": "yes", "from": "image"}), "{rt}: labels {labels}");
    // (Docker shows gw.example:host-gateway here; berth shows the address it resolved.)
    ensure!(shown[0]["HostConfig"]["ExtraHosts"][0] == json!("db.example:10.9.8.7"), "{rt}: {shown}");
    root.berth_ok(&["rm", "-v", &name]).await?;

    // --init: PID 1 is tini, which reaps an orphan that exits (no zombie is left) ...
    let script = "cat /proc/1/cmdline | busybox tr '\\0' ' '; echo; sh -c 'sleep 0.2 &'; \
                  i=0; while [ $i -lt 400 ]; do \
                    if ! busybox grep -q '(sleep)' /proc/[0-9]*/stat 2>/dev/null; then echo reaped; exit 0; fi; \
                    i=$((i+1)); sleep 0.05; done; busybox grep '(sleep)' /proc/[0-9]*/stat";
    let (code, out, err) = root.run(runtime, &["--rm", "--init"], &["sh", "-c", script]).await?;
    ensure!(code == 0 && out.starts_with("/sbin/docker-init -- sh -c"), "{rt}: --init: PID 1 is {out:?} {err}");
    ensure!(out.ends_with("reaped\n"), "{rt}: --init left a zombie: {out:?} {err}");
    // ... and passes SIGTERM on to the command.
    let term = format!("term-{name}");
    let script = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let mut args = vec!["run", "-d", "--init", "--name", &term];
    if let Some(r) = runtime {
        args.extend(["--runtime", r]);
    }
    args.extend([root.image.as_str(), "sh", "-c", script]);
    root.berth_ok(&args).await?;
    let mut logs = String::new();
    for _ in 0..200 {
        logs = root.berth_ok(&["logs", &term]).await?;
        if logs.contains("ready") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ensure!(logs.contains("ready"), "{rt}: the --init container never started its loop: {logs:?}");
    root.berth_ok(&["stop", "-t", "30", &term]).await?;
    let shown: Value = serde_json::from_str(&root.berth_ok(&["inspect", &term]).await?)?;
    let logs = root.berth_ok(&["logs", &term]).await?;
    ensure!(
        logs.contains("got TERM") && shown[0]["State"]["ExitCode"] == 0,
        "{rt}: SIGTERM under --init: {logs:?} {}",
        shown[0]["State"]
    );
    ensure!(shown[0]["HostConfig"]["Init"] == true && shown[0]["Path"] == "sh", "{rt}: {shown}");
    root.berth_ok(&["rm", &term]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_flags_reach_the_container() -> Result<()> {
    let test = "run_flags_reach_the_container";
    if !shared::testing::require_root(test) {
        return Ok(());
    }
    if !Path::new("/usr/bin/tini-static").is_file() {
        shared::testing::skip(test, "Debian's tini is not installed (apt-get install tini)");
        return Ok(());
    }
    let root = Root::new().await?;
    for runtime in runtimes(test) {
        check_flags(&root, runtime).await?;
    }
    Ok(())
}
