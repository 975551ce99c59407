//! `berth run`, `ps`, `logs`, `stop` and `rm` end to end, in real namespaces: the busybox
//! image is pushed (by skopeo) to berth's own registry, in process, and `berth run` pulls it
//! into a temporary store and runs it, with the embedded runtime and with runc.
//!
//! These tests need root (namespaces, mounts, cgroups); without it each prints a SKIP line
//! and passes, except under `CI=true`, where it fails (`shared::testing`). Every container a
//! test makes is killed and removed when the test ends, however it ends ([`Root`]'s `Drop`), so no mount, cgroup or process is left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::{describe_failure, require_tools, run, run_ok, skopeo, BusyboxImage, Registry, IMAGE_REF};
use runtime::container::Containers;

/// Debian's runc, which the tests compare the embedded runtime with.
const RUNC: &str = "/usr/sbin/runc";

/// True when containers can be made here (as root); else prints a SKIP line for `test`,
/// or fails it under `CI=true`.
fn permitted(test: &str) -> bool {
    shared::testing::require_root(test)
}

/// The `berth` binary next to this test's executable (`target/<profile>/berth`).
fn berth_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no parent directory")?;
    let bin = dir.join("berth");
    ensure!(bin.is_file(), "{} is missing; build it with `cargo build -p berth-cli`", bin.display());
    Ok(bin)
}

/// A temporary store with the busybox image in a registry, and the clean-up of every
/// container made in it.
struct Root {
    dir: tempfile::TempDir,
    image: String,
    _registry: Registry,
    _work: tempfile::TempDir,
}

impl Root {
    /// Builds the image, pushes it to a fresh berth registry; the store starts empty.
    async fn new() -> Result<Root> {
        require_tools(&["skopeo"])?;
        let work = tempfile::tempdir()?;
        let image = BusyboxImage::build(work.path())?;
        let registry = Registry::start().await?;
        let reference = format!("{}/e2e/busybox:{IMAGE_REF}", registry.host());
        let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());
        skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{reference}")]).await?;
        Ok(Root { dir: tempfile::tempdir()?, image: reference, _registry: registry, _work: work })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `berth --root ROOT ARGS...` and returns what it did.
    async fn berth(&self, args: &[&str]) -> Result<Output> {
        let bin = berth_binary()?;
        let mut all = vec!["--root", self.path().to_str().context("root path is not UTF-8")?];
        all.extend_from_slice(args);
        run(bin.to_str().context("binary path is not UTF-8")?, &all).await
    }

    /// Like [`Root::berth`], but fails unless it exits 0; returns standard output.
    async fn berth_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.berth(args).await?;
        if !output.status.success() {
            bail!("{}", describe_failure("berth", args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `berth run --rm [RUNTIME] FLAGS... IMAGE COMMAND...`: (exit code, stdout, stderr).
    async fn run(&self, runtime: Option<&str>, flags: &[&str], command: &[&str]) -> Result<(i32, String, String)> {
        let mut args = vec!["run", "--rm"];
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

    /// Fails unless the store has no container folder and nothing is mounted under it.
    fn assert_clean(&self) -> Result<()> {
        let containers = self.path().join("containers");
        if containers.exists() {
            let left: Vec<_> = fs::read_dir(&containers)?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
            ensure!(left.is_empty(), "container folders left: {left:?}");
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo")?;
        let root = self.path().to_string_lossy().into_owned();
        ensure!(!mounts.contains(&root), "mounts left under {root}:\n{mounts}");
        Ok(())
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

/// The container's cgroup ID from `/proc/self/cgroup` as it printed it (`…:/berth/<id>`).
fn cgroup_id(printed: &str) -> Option<String> {
    printed.lines().find_map(|l| l.split_once(":/berth/").map(|(_, id)| id.trim().to_string()))
}

/// Fails when any cgroup hierarchy still has the container's cgroup.
fn assert_no_cgroup(id: &str) -> Result<()> {
    let cgroups = runtime::container::cgroups::Cgroups::detect()?;
    let path = format!("{}/{id}", runtime::container::CGROUP_PARENT);
    ensure!(!cgroups.exists(&path), "cgroup {path} was left: {:?}", cgroups.dirs(&path));
    Ok(())
}

/// Everything a container is asked for, with one runtime (`None`: the embedded one).
async fn check_runtime(root: &Root, runtime: Option<&str>) -> Result<()> {
    let name = runtime.unwrap_or("embedded");
    // Exit codes: 0, 7, and 127 for a command the image lacks.
    let (code, out, err) = root.run(runtime, &[], &["echo", "hello"]).await?;
    ensure!(code == 0 && out == "hello\n", "{name}: echo: {code} {out:?} {err}");
    let (code, _, err) = root.run(runtime, &[], &["sh", "-c", "exit 7"]).await?;
    ensure!(code == 7, "{name}: exit 7 gave {code}: {err}");
    let (code, _, err) = root.run(runtime, &[], &["no-such-command"]).await?;
    ensure!(code == 127 && err.contains("executable file not found"), "{name}: missing command gave {code}: {err}");

    // Environment, working directory, user, host name, network, PID 1.
    let script = "echo \"$GREETING\"; pwd; busybox id -u; busybox id -g; busybox id -G; busybox hostname; \
                  cat /etc/hostname; echo $$; ls /sys/class/net";
    let flags = ["-e", "GREETING=hi there", "-w", "/srv/app", "-u", "app", "--hostname", "boxy"];
    let (code, out, err) = root.run(runtime, &flags, &["sh", "-c", script]).await?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(code == 0, "{name}: {code}: {err}");
    ensure!(
        lines == ["hi there", "/srv/app", "1000", "1000", "1000 10", "boxy", "boxy", "1", "lo"],
        "{name}: the container saw {lines:?}"
    );
    let (_, out, _) = root.run(runtime, &["-u", "4242:77"], &["busybox", "id"]).await?;
    ensure!(out.trim() == "uid=4242 gid=77", "{name}: -u 4242:77 gave {out:?}");
    let (code, _, err) = root.run(runtime, &["-u", "nobody"], &["true"]).await?;
    ensure!(code == 125 && err.contains("unable to find user nobody"), "{name}: unknown user gave {code}: {err}");

    // A read-only root refuses writes; a tmpfs on it does not.
    let (code, _, err) = root.run(runtime, &["--read-only"], &["sh", "-c", "echo x > /file"]).await?;
    ensure!(code != 0 && err.contains("Read-only file system"), "{name}: --read-only: {code}: {err}");
    let (code, _, err) =
        root.run(runtime, &["--read-only", "--tmpfs", "/scratch"], &["sh", "-c", "echo x > /scratch/f"]).await?;
    ensure!(code == 0, "{name}: --tmpfs on a read-only root: {code}: {err}");

    // A bind volume written inside is read outside; a read-only one refuses writes.
    let volume = tempfile::tempdir()?;
    let bind = format!("{}:/data", volume.path().display());
    let (code, _, err) = root.run(runtime, &["-v", &bind], &["sh", "-c", "echo from-inside > /data/note"]).await?;
    ensure!(code == 0, "{name}: volume: {code}: {err}");
    ensure!(fs::read_to_string(volume.path().join("note"))? == "from-inside\n", "{name}: the volume file differs");
    let ro = format!("{bind}:ro");
    let (code, _, _) = root.run(runtime, &["-v", &ro], &["sh", "-c", "echo x > /data/other"]).await?;
    ensure!(code != 0 && !volume.path().join("other").exists(), "{name}: a read-only volume was written");

    // The CPU limit is the container's cgroup quota (v1: cfs quota; v2: cpu.max).
    let quota = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max";
    let (code, out, err) = root.run(runtime, &["--cpus", "0.5"], &["sh", "-c", quota]).await?;
    ensure!(
        code == 0 && out.split_whitespace().next() == Some("50000"),
        "{name}: --cpus 0.5 gave quota {out:?}: {err}"
    );

    // The pids limit stops forks; the memory limit kills (137) without leaving anything.
    let (code, _, err) = root
        .run(runtime, &["--pids-limit", "4"], &["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 2 & done; wait"])
        .await?;
    ensure!(code != 0 && err.contains("can't fork"), "{name}: --pids-limit 4: {code}: {err}");
    let (code, _, err) =
        root.run(runtime, &["--memory", "16m"], &["sh", "-c", "busybox head -c 100m /dev/zero | busybox tail"]).await?;
    ensure!(code == 137, "{name}: out of memory under --memory 16m gave {code}, not 137: {err}");

    check_terminal(root, runtime).await?;

    // --rm leaves no folder, mount or cgroup.
    let (code, out, err) = root.run(runtime, &[], &["cat", "/proc/self/cgroup"]).await?;
    ensure!(code == 0, "{name}: {err}");
    let id = cgroup_id(&out).with_context(|| format!("{name}: no berth cgroup in {out}"))?;
    assert_no_cgroup(&id)?;
    root.assert_clean()
}

/// `-t` gives the container a controlling terminal, as Docker does: `/dev/tty` opens, and a
/// Ctrl-C typed under `-it` is a SIGINT for the processes in the foreground (the shell and
/// its `sleep` end, 130), where without a controlling terminal it would be a mere byte.
async fn check_terminal(root: &Root, runtime: Option<&str>) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = runtime.unwrap_or("embedded");
    let (code, out, err) = root.run(runtime, &["-t"], &["sh", "-c", "exec 3</dev/tty && echo has-ctty"]).await?;
    ensure!(code == 0 && out.contains("has-ctty"), "{name}: -t gave no controlling terminal: {code} {out:?} {err}");

    let mut args = vec!["--root", root.path().to_str().context("root path is not UTF-8")?, "run", "--rm", "-i", "-t"];
    if let Some(r) = runtime {
        args.extend(["--runtime", r]);
    }
    args.extend([root.image.as_str(), "sh", "-c", "echo ready; sleep 60; echo not-interrupted"]);
    let mut child = tokio::process::Command::new(berth_binary()?)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&seen).contains("ready") {
            let n = stdout.read(&mut buf).await?;
            ensure!(n > 0, "the output ended");
            seen.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await;
    ensure!(matches!(ready, Ok(Ok(()))), "{name}: -it: no \"ready\": {:?}", String::from_utf8_lossy(&seen));
    // Ctrl-C, again should the first come before the shell started `sleep`.
    let mut status = None;
    for _ in 0..5 {
        stdin.write_all(b"\x03").await?;
        stdin.flush().await?;
        if let Ok(s) = tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
            status = Some(s?);
            break;
        }
    }
    stdout.read_to_end(&mut seen).await?;
    let seen = String::from_utf8_lossy(&seen);
    let status =
        status.with_context(|| format!("{name}: Ctrl-C under -it did not interrupt the container: {seen:?}"))?;
    ensure!(
        status.code() == Some(130) && !seen.contains("not-interrupted"),
        "{name}: Ctrl-C under -it: {status}, output {seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_busybox_with_the_embedded_runtime() -> Result<()> {
    if !permitted("runs_busybox_with_the_embedded_runtime") {
        return Ok(());
    }
    let root = Root::new().await?;
    // The first run pulls the image.
    let (code, _, err) = root.run(None, &[], &["true"]).await?;
    ensure!(code == 0 && err.contains("Unable to find image"), "first run: {code}: {err}");
    check_runtime(&root, None).await
}

/// A test that needs root, run as user nobody: it passes with a SKIP line, except under
/// `CI=true`, where it fails (issue 11.11: CI must not pass tests it never ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_tests_fail_under_ci_when_not_root() -> Result<()> {
    if !permitted("root_tests_fail_under_ci_when_not_root") {
        return Ok(());
    }
    // A copy of this test binary in a folder that nobody may enter, wherever the tree lives.
    let dir = tempfile::tempdir()?;
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let exe = dir.path().join("run-tests");
    fs::copy(std::env::current_exe()?, &exe)?;
    let exe = exe.to_string_lossy().into_owned();
    let test = "runs_busybox_with_the_embedded_runtime";
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "env"];
    for ci in [true, false] {
        let ci_env = if ci { vec!["CI=true"] } else { vec!["-u", "CI"] };
        let args: Vec<&str> =
            nobody.iter().copied().chain(ci_env).chain([exe.as_str(), "--exact", test, "--nocapture"]).collect();
        let out = run("setpriv", &args).await?;
        let shown = describe_failure("setpriv", &args, &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if ci {
            ensure!(!out.status.success(), "under CI=true the test passed as nobody: {shown}");
            ensure!(
                String::from_utf8_lossy(&out.stderr).contains("it needs root") || stdout.contains("it needs root"),
                "{shown}"
            );
        } else {
            ensure!(out.status.success() && stdout.contains(&format!("SKIP {test}")), "{shown}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_the_same_bundle_with_runc() -> Result<()> {
    if !permitted("runs_the_same_bundle_with_runc") {
        return Ok(());
    }
    if !Path::new(RUNC).is_file() {
        let why = format!("{RUNC} is not installed (apt-get install -y runc)");
        shared::testing::skip("runs_the_same_bundle_with_runc", &why);
        return Ok(());
    }
    let root = Root::new().await?;
    root.berth_ok(&["pull", &root.image]).await?;
    check_runtime(&root, Some(RUNC)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_containers_log_stop_and_are_removed() -> Result<()> {
    if !permitted("detached_containers_log_stop_and_are_removed") {
        return Ok(());
    }
    let root = Root::new().await?;
    root.berth_ok(&["pull", &root.image]).await?;
    let script = "echo started; echo to-stderr >&2; trap 'echo got TERM; exit 3' TERM; while true; do sleep 0.1; done";
    let id = root.berth_ok(&["run", "-d", "--name", "web", &root.image, "sh", "-c", script]).await?;
    let id = id.trim().to_string();
    ensure!(id.len() == 64, "run -d printed {id:?}, not an ID");

    // The name is taken while it exists.
    let taken = root.berth(&["run", "-d", "--name", "web", &root.image, "true"]).await?;
    ensure!(!taken.status.success() && String::from_utf8_lossy(&taken.stderr).contains("already in use"));

    // Its output reaches the log; ps lists it as up.
    let mut logs = String::new();
    for _ in 0..100 {
        logs = root.berth_ok(&["logs", "web"]).await?;
        if logs.contains("to-stderr") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(logs.contains("started\n") && logs.contains("to-stderr\n"), "logs printed {logs:?}");
    let ps = root.berth_ok(&["ps"]).await?;
    let lines: Vec<&str> = ps.lines().collect();
    ensure!(lines.len() == 2 && lines[0].starts_with("CONTAINER ID"), "ps printed:\n{ps}");
    ensure!(
        lines[1].starts_with(&id[..12]) && lines[1].contains("Up ") && lines[1].ends_with("web"),
        "ps printed:\n{ps}"
    );
    let removed = root.berth(&["rm", "web"]).await?;
    ensure!(!removed.status.success(), "rm removed a running container");
    let rmi = root.berth(&["rmi", &root.image]).await?;
    let rmi_err = String::from_utf8_lossy(&rmi.stderr);
    ensure!(!rmi.status.success() && rmi_err.contains("used by container web"), "rmi of an image in use: {rmi_err}");

    // stop sends SIGTERM: the trap runs and the exit code is recorded.
    ensure!(root.berth_ok(&["stop", "web"]).await? == "web\n");
    let ps = root.berth_ok(&["ps"]).await?;
    ensure!(ps.lines().count() == 1, "ps still lists a stopped container:\n{ps}");
    let all = root.berth_ok(&["ps", "-a"]).await?;
    ensure!(all.contains("Exited (3)"), "ps -a printed:\n{all}");
    ensure!(root.berth_ok(&["logs", &id[..12]]).await?.contains("got TERM"), "the trap's output is not in the log");
    assert_no_cgroup(&id)?;

    // rm removes it entirely.
    ensure!(root.berth_ok(&["rm", "web"]).await? == "web\n");
    ensure!(root.berth_ok(&["ps", "-a"]).await?.lines().count() == 1);
    root.assert_clean()?;

    // A container that ignores SIGTERM is killed after the grace time; rm -f kills a
    // running one.
    root.berth_ok(&["run", "-d", "--name", "stubborn", &root.image, "sleep", "600"]).await?;
    root.berth_ok(&["stop", "-t", "1", "stubborn"]).await?;
    ensure!(root.berth_ok(&["ps", "-a"]).await?.contains("Exited (137)"));
    root.berth_ok(&["run", "-d", "--name", "doomed", &root.image, "sleep", "600"]).await?;
    root.berth_ok(&["rm", "-f", "doomed", "stubborn"]).await?;
    root.assert_clean()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_an_image_pushed_by_docker() -> Result<()> {
    if !permitted("runs_an_image_pushed_by_docker") || !e2e::docker_available("runs_an_image_pushed_by_docker").await? {
        return Ok(());
    }
    let root = Root::new().await?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let host = root.image.split('/').next().context("no registry host")?.to_string();
    let tag = format!("{host}/e2e/from-docker:v1");
    let layer = image.layer_file.to_string_lossy().into_owned();
    run_ok("docker", &["import", "--change", r#"CMD ["sh"]"#, "--change", "ENV FROM=docker", &layer, &tag]).await?;
    let pushed = run_ok("docker", &["push", &tag]).await;
    let _ = run("docker", &["rmi", &tag]).await;
    pushed?;
    let out = root.berth_ok(&["run", "--rm", &tag, "sh", "-c", "echo $FROM; cat /bin/busybox | wc -c"]).await?;
    let size = fs::metadata(e2e::BUSYBOX)?.len();
    ensure!(out == format!("docker\n{size}\n"), "the docker-pushed image printed {out:?}");
    root.assert_clean()
}

/// The host here is hybrid (v1 controllers, and the v2 hierarchy at `/sys/fs/cgroup/unified`).
/// In a mount namespace of their own the other two layouts can be shown to berth: v1 only
/// (the v2 hierarchy unmounted), where `--memory` must still kill at the limit, and v2 only
/// (`/sys/fs/cgroup` replaced by the v2 hierarchy), where a container must still start, be
/// placed in its own cgroup and leave none behind. On such a host the v2 hierarchy has no
/// controllers (they are bound to v1), so limits under v2 are not exercised here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_under_v1_only_and_v2_only_cgroup_layouts() -> Result<()> {
    if !permitted("runs_under_v1_only_and_v2_only_cgroup_layouts") {
        return Ok(());
    }
    let host = runtime::container::cgroups::Cgroups::detect()?;
    if host.mode != runtime::container::cgroups::CgroupMode::Hybrid {
        println!("SKIP runs_under_v1_only_and_v2_only_cgroup_layouts: the host is {:?}, not hybrid", host.mode);
        return Ok(());
    }
    let unified = fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .filter_map(|l| l.split_once(" - ").map(|(left, right)| (left.split(' ').nth(4), right)))
        .find_map(|(point, right)| right.starts_with("cgroup2 ").then_some(point).flatten().map(str::to_string))
        .context("no cgroup2 mount on a hybrid host")?;
    let root = Root::new().await?;
    root.berth_ok(&["pull", &root.image]).await?;
    let in_view = |setup: &str, run_args: String| run_in_view(setup.to_string(), root.path(), run_args);
    let script = "cat /proc/self/cgroup; busybox head -c 100m /dev/zero | busybox tail";
    let v1 = format!("umount {unified}");
    let (code, stdout, stderr) = in_view(&v1, format!("--memory 16m {} sh -c '{script}'", root.image)).await?;
    ensure!(
        code == Some(137) && !stdout.contains("0::/berth/"),
        "v1 only: --memory 16m gave {code:?} (no v2 line expected): {stdout} {stderr}"
    );
    let id = cgroup_id(&stdout).with_context(|| format!("v1 only: no berth cgroup in {stdout}"))?;
    assert_no_cgroup(&id)?;

    let v2 = "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup";
    let (code, stdout, stderr) = in_view(v2, format!("{} cat /proc/self/cgroup", root.image)).await?;
    ensure!(code == Some(0) && stdout.contains("0::/berth/"), "v2 only: {code:?}: {stdout} {stderr}");
    let id = cgroup_id(&stdout).context("v2 only: no berth cgroup")?;
    ensure!(!Path::new(&unified).join("berth").join(&id).exists(), "v2 only: cgroup {id} was left");
    assert_no_cgroup(&id)?;

    // That v2 hierarchy offers no controller: a limit is refused up front, by name.
    let (code, _, stderr) = in_view(v2, format!("--memory 16m --pids-limit 9 {} true", root.image)).await?;
    ensure!(
        code == Some(125) && stderr.contains("cgroup controller(s) memory, pids") && !stderr.contains("ERROR"),
        "v2 only without controllers: --memory gave {code:?}: {stderr}"
    );
    root.assert_clean()
}

/// `berth --root STORE run --rm RUN_ARGS` (a shell word list) after the shell commands
/// `setup`, in a mount namespace of its own (`unshare -m`: a private copy of the mount
/// table); returns the exit code and both outputs.
async fn run_in_view(setup: String, store: &Path, run_args: String) -> Result<(Option<i32>, String, String)> {
    let script =
        format!("set -e; {setup}; exec {} --root {} run --rm {run_args}", berth_binary()?.display(), store.display());
    let out = run("unshare", &["-m", "--propagation", "private", "sh", "-c", &script]).await?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((out.status.code(), text(&out.stdout), text(&out.stderr)))
}
