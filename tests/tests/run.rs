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
    registry: Registry,
    _work: tempfile::TempDir,
}

impl Root {
    /// Builds the image, pushes it to a fresh berth registry; the store starts empty.
    async fn new() -> Result<Root> {
        Root::with_image(|_| Ok(())).await
    }

    /// Like [`Root::new`], with `change` applied to the image's root file system first.
    async fn with_image(change: impl FnOnce(&Path) -> Result<()>) -> Result<Root> {
        require_tools(&["skopeo"])?;
        let work = tempfile::tempdir()?;
        let image = BusyboxImage::build_with(work.path(), change)?;
        let registry = Registry::start().await?;
        let reference = format!("{}/e2e/busybox:{IMAGE_REF}", registry.host());
        let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());
        skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{reference}")]).await?;
        Ok(Root { dir: tempfile::tempdir()?, image: reference, registry, _work: work })
    }

    /// Pushes a busybox image whose root `tweak` changed as `e2e/NAME`; returns its reference.
    async fn push_image(&self, name: &str, tweak: impl FnOnce(&Path) -> Result<()>) -> Result<String> {
        let work = tempfile::tempdir()?;
        let image = BusyboxImage::build_with(work.path(), tweak)?;
        let reference = format!("{}/e2e/{name}:{IMAGE_REF}", self.registry.host());
        let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());
        skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{reference}")]).await?;
        Ok(reference)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `berth --root ROOT ARGS...` and returns what it did.
    async fn berth(&self, args: &[&str]) -> Result<Output> {
        self.berth_as(&berth_binary()?, args).await
    }

    /// Like [`Root::berth`], with the berth binary `bin`.
    async fn berth_as(&self, bin: &Path, args: &[&str]) -> Result<Output> {
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

/// The container's ID prefix (its default host name, the last line of `printed`), after
/// checking that `/proc/self/cgroup` as it printed it (the lines before) shows every
/// hierarchy at `/`: the container has a cgroup namespace of its own, rooted at its cgroup.
fn cgroup_prefix(printed: &str) -> Result<String> {
    let lines: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
    let cgroup_lines: Vec<&&str> = lines.iter().filter(|l| l.splitn(3, ':').count() == 3).collect();
    ensure!(!cgroup_lines.is_empty(), "no /proc/self/cgroup lines in {printed}");
    for line in &cgroup_lines {
        ensure!(line.ends_with(":/"), "the container sees a cgroup path outside its namespace: {line}");
    }
    let host = lines.iter().rev().find(|l| l.len() == 12 && l.chars().all(|c| c.is_ascii_hexdigit()));
    Ok(host.with_context(|| format!("no host name in {printed}"))?.to_string())
}

/// Fails when any cgroup hierarchy still has a cgroup of the container whose ID starts with
/// `prefix`.
fn assert_no_cgroup(prefix: &str) -> Result<()> {
    let cgroups = runtime::container::cgroups::Cgroups::detect()?;
    for dir in cgroups.dirs(runtime::container::CGROUP_PARENT) {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            ensure!(!name.starts_with(prefix), "cgroup {} was left", dir.join(name).display());
        }
    }
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
    let flags = ["-e", "GREETING=hi there", "-w", "/srv/app", "-u", "app", "--hostname", "boxy", "--network", "none"];
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
    let (code, out, err) = root.run(runtime, &[], &["sh", "-c", "cat /proc/self/cgroup; busybox hostname"]).await?;
    ensure!(code == 0, "{name}: {err}");
    assert_no_cgroup(&cgroup_prefix(&out).with_context(|| name.to_string())?)?;
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
    check_runtime(&root, Some(RUNC)).await?;

    // A relative --root works too: runc resolves the bundle's mount sources (the container's
    // /etc/hostname) from the bundle, not from where berth was started.
    let (parent, name) = (root.path().parent().context("no parent")?, root.path().file_name().context("no name")?);
    let args = ["--root", name.to_str().context("not UTF-8")?, "run", "--rm", "--runtime", RUNC, &root.image];
    let out = tokio::process::Command::new(berth_binary()?)
        .args(args)
        .args(["cat", "/etc/hostname"])
        .current_dir(parent)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    ensure!(out.status.success(), "a relative --root with runc: {}", describe_failure("berth", &args, &out));
    root.assert_clean()
}

/// Images may make `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` symbolic links (to
/// `/run/...`, say, dangling): the files are mounted where the links lead inside the root,
/// as runc does, by either runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_images_whose_etc_files_are_links() -> Result<()> {
    if !permitted("runs_images_whose_etc_files_are_links") {
        return Ok(());
    }
    let root = Root::with_image(|rootfs| {
        let etc = rootfs.join("etc");
        fs::create_dir_all(&etc)?;
        fs::create_dir_all(rootfs.join("data"))?;
        fs::write(rootfs.join("data/hosts"), "image's own hosts\n")?;
        std::os::unix::fs::symlink("/run/host/hostname", etc.join("hostname"))?;
        std::os::unix::fs::symlink("../data/hosts", etc.join("hosts"))?;
        std::os::unix::fs::symlink("/run/resolvconf/resolv.conf", etc.join("resolv.conf"))?;
        Ok(())
    })
    .await?;
    let script = "cat /etc/hostname /etc/hosts; test -s /etc/resolv.conf && echo has-resolv";
    for runtime in [None, Some(RUNC)] {
        let name = runtime.unwrap_or("embedded");
        let (code, out, err) =
            root.run(runtime, &["--hostname", "linked", "--network", "host"], &["sh", "-c", script]).await?;
        ensure!(code == 0, "{name}: {code}: {err}");
        ensure!(out.starts_with("linked\n") && !out.contains("image's own"), "{name}: the container saw {out:?}");
        ensure!(out.ends_with("has-resolv\n") || !Path::new("/etc/resolv.conf").exists(), "{name}: {out:?}");
    }
    root.assert_clean()
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
    let script = "cat /proc/self/cgroup; busybox hostname; busybox head -c 100m /dev/zero | busybox tail";
    let v1 = format!("umount {unified}");
    let (code, stdout, stderr) = in_view(&v1, format!("--memory 16m {} sh -c '{script}'", root.image)).await?;
    ensure!(code == Some(137), "v1 only: --memory 16m gave {code:?}: {stdout} {stderr}");
    assert_no_cgroup(&cgroup_prefix(&stdout).context("v1 only")?)?;

    // Placed in a cgroup of its own: the namespace's root lists the container's processes
    // only (a process of another PID namespace would show as 0).
    let v2 = "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup";
    let script = "cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs | busybox sed s/^/pid-/; busybox hostname";
    let (code, stdout, stderr) = in_view(v2, format!("{} sh -c '{script}'", root.image)).await?;
    let pids: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("pid-")).collect();
    ensure!(
        code == Some(0) && pids.contains(&"1") && !pids.contains(&"0"),
        "v2 only: not in a cgroup of its own: {code:?}: {stdout} {stderr}"
    );
    let prefix = cgroup_prefix(&stdout).context("v2 only")?;
    let left = fs::read_dir(Path::new(&unified).join("berth"))
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&prefix)))
        .unwrap_or(false);
    ensure!(!left, "v2 only: cgroup {prefix}… was left");
    assert_no_cgroup(&prefix)?;

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

/// True when `program` can be run; else fails under `CI=true`, or prints a SKIP line for
/// `test` (with the Debian package that has it).
fn have_tool(test: &str, program: &str, package: &str) -> Result<bool> {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            bail!("CI=true but {program} is missing (apt-get install -y {package})");
        }
        println!("SKIP {test}: {program} is not installed (apt-get install -y {package})");
    }
    Ok(found)
}

/// A random hex word, to name canaries no other test (or engineer) uses.
fn canary_word() -> String {
    let mut bytes = [0u8; 8];
    let _ = fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host's `keyctl` with its libraries, copied into a folder to mount in containers
/// (the image is static busybox): run it as `/k/ld.so --library-path /k /k/keyctl`.
fn keyctl_folder(dest: &Path) -> Result<()> {
    host_programs_folder(dest, &["keyctl"])
}

/// Host programs with their libraries, copied into a folder to mount in containers: run
/// each as `/k/ld.so --library-path /k /k/NAME`.
fn host_programs_folder(dest: &Path, programs: &[&str]) -> Result<()> {
    fs::create_dir_all(dest)?;
    for program in programs {
        let found = std::process::Command::new("sh").args(["-c", &format!("command -v {program}")]).output()?.stdout;
        let path = fs::canonicalize(String::from_utf8(found)?.trim())?;
        fs::copy(&path, dest.join(program))?;
        let ldd = std::process::Command::new("ldd").arg(&path).output()?;
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) else { continue };
            let name = if line.contains("ld-linux") { "ld.so" } else { lib.rsplit('/').next().unwrap_or(lib) };
            fs::copy(lib, dest.join(name)).with_context(|| format!("copying {lib}"))?;
        }
        ensure!(dest.join("ld.so").is_file(), "no dynamic loader in `ldd {}`", path.display());
    }
    Ok(())
}

/// What a container can learn of the keyrings of whoever ran `berth run`: the runner (a
/// login-like session keyring linking root's user keyring) holds one canary key in its
/// session keyring and one in root's user keyring. The container must get a fresh session
/// keyring, as under runc: neither key is found by name, and the user keyring's key cannot
/// be read by its ID (not possessed). What runc still allows, the embedded runtime matches
/// (and the output says so): root's user keyring is per user ID, so a container running as
/// root can search it explicitly and link the key into a keyring of its own, then read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_a_fresh_session_keyring() -> Result<()> {
    let test = "containers_get_a_fresh_session_keyring";
    if !permitted(test) || !have_tool(test, "keyctl", "keyutils")? {
        return Ok(());
    }
    let root = Root::new().await?;
    root.berth_ok(&["pull", &root.image]).await?;
    let tools = tempfile::tempdir()?;
    keyctl_folder(tools.path())?;
    let word = canary_word();
    let (session_key, user_key) = (format!("berth-canary-s-{word}"), format!("berth-canary-u-{word}"));
    let probe = format!(
        "K='/k/ld.so --library-path /k /k/keyctl'; \
         echo \"session-key: $($K print %user:{session_key} 2>/dev/null || echo absent)\"; \
         echo \"user-key-by-name: $($K print %user:{user_key} 2>/dev/null || echo absent)\"; \
         id=$($K search @u user {user_key} 2>/dev/null); \
         echo \"user-key-by-id: $($K print $id 2>/dev/null || echo denied)\"; \
         echo \"user-key-linked: $($K search @u user {user_key} @p >/dev/null 2>&1 && $K print $id 2>/dev/null || echo denied)\"; \
         echo \"session: $($K rdescribe @s | cut -d';' -f5 | cut -c1-5)\"; \
         echo \"proc-keys: $(grep -c berth-canary /proc/keys)\""
    );
    let volume = format!("{}:/k:ro", tools.path().display());
    let mut outputs = Vec::new();
    let runc = Path::new(RUNC).is_file();
    for runtime in [None, runc.then_some(RUNC)] {
        // Unconfined: Docker's profile refuses every key syscall; this checks what is left
        // beneath it (`security_defaults_and_options_match_docker` checks the profile).
        let mut run_args = vec!["run", "--rm", "--security-opt", "seccomp=unconfined", "-v", &volume];
        if let Some(r) = runtime {
            run_args.extend(["--runtime", r]);
        }
        run_args.extend([root.image.as_str(), "sh", "-c", &probe]);
        let quoted: Vec<String> = run_args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
        // A session keyring of its own for the runner, linking root's user keyring as a login
        // session does; the user keyring's canary is removed again whatever happens.
        let script = format!(
            "keyctl link @u @s && keyctl add user {session_key} secret-s @s >/dev/null && \
             u=$(keyctl add user {user_key} secret-u @u) && \
             {} --root {} {}; code=$?; keyctl unlink $u @u >/dev/null; exit $code",
            berth_binary()?.display(),
            root.path().display(),
            quoted.join(" ")
        );
        let out = run("keyctl", &["session", "-", "sh", "-c", &script]).await?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(out.status.success(), "{runtime:?}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<String> =
            stdout.lines().filter(|l| !l.starts_with("Joined session")).map(String::from).collect();
        ensure!(
            lines.starts_with(&[
                "session-key: absent".to_string(),
                "user-key-by-name: absent".to_string(),
                "user-key-by-id: denied".to_string(),
            ]),
            "{}: the container reached the runner's keys: {lines:?}",
            runtime.unwrap_or("embedded")
        );
        ensure!(lines.iter().any(|l| l == "session: _ses."), "not a fresh session keyring: {lines:?}");
        ensure!(lines.iter().any(|l| l == "proc-keys: 0"), "/proc/keys shows the canaries: {lines:?}");
        outputs.push(lines);
        if !runc {
            println!("runc is not installed: the embedded runtime's keyrings are not compared with runc's");
            break;
        }
    }
    if let [embedded, runc] = outputs.as_slice() {
        ensure!(embedded == runc, "the embedded runtime differs from runc:\n{embedded:?}\n{runc:?}");
    }
    println!("keyrings as the container sees them: {:?}", outputs[0]);
    root.assert_clean()
}

/// The script with which a container tries to lift its own limits and to write the host's
/// `name=systemd` hierarchy (a canary cgroup named `canary`); one line per attempt.
fn lift_limits_script(canary: &str) -> String {
    format!(
        "try() {{ if err=$( (echo \"$2\" > \"$1\") 2>&1 ); then echo \"wrote $1\"; else echo \"refused $1: $err\"; fi; }}; \
         for f in memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us; do \
           [ -e /sys/fs/cgroup/$f ] && try /sys/fs/cgroup/$f -1; done; \
         [ -e /sys/fs/cgroup/pids.max ] && try /sys/fs/cgroup/pids.max max; \
         [ -e /sys/fs/cgroup/cgroup.subtree_control ] && try /sys/fs/cgroup/cgroup.subtree_control +pids; \
         for d in /sys/fs/cgroup/systemd /sys/fs/cgroup; do \
           [ -d $d ] && if err=$(mkdir $d/{canary} 2>&1); then echo \"wrote $d/{canary}\"; else echo \"refused $d: $err\"; fi; done; \
         echo tried"
    )
}

/// Fails unless every attempt of [`lift_limits_script`] was refused as a read-only file
/// system, and at least `attempts` were made.
fn assert_all_refused(what: &str, output: &str, attempts: usize) -> Result<()> {
    let tries: Vec<&str> = output.lines().filter(|l| l.starts_with("wrote") || l.starts_with("refused")).collect();
    ensure!(output.contains("tried"), "{what}: the script did not finish: {output}");
    ensure!(tries.len() >= attempts, "{what}: only {} attempts: {output}", tries.len());
    for line in tries {
        ensure!(
            line.starts_with("refused") && line.contains("Read-only file system"),
            "{what}: the container could write its cgroups: {line}\n{output}"
        );
    }
    Ok(())
}

/// Fails when the canary cgroup exists anywhere in the host's hierarchies (and removes it).
fn assert_no_canary_cgroup(canary: &str) -> Result<()> {
    let cgroups = runtime::container::cgroups::Cgroups::detect()?;
    let mut found = Vec::new();
    for mount in &cgroups.mounts {
        let out = std::process::Command::new("find").arg(mount).args(["-maxdepth", "4", "-name", canary]).output()?;
        for path in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = fs::remove_dir(path);
            found.push(path.to_string());
        }
    }
    ensure!(found.is_empty(), "a container made cgroups on the host: {found:?}");
    Ok(())
}

/// A container cannot lift its own `--memory`, `--pids-limit` and `--cpus` (the cgroup files
/// are on a read-only mount, EROFS), nor write the host's `name=systemd` hierarchy; the
/// limits read from the host stay as asked. On this hybrid host, then in the v1-only and
/// v2-only views of `runs_under_v1_only_and_v2_only_cgroup_layouts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_cannot_lift_their_cgroup_limits() -> Result<()> {
    if !permitted("containers_cannot_lift_their_cgroup_limits") {
        return Ok(());
    }
    let root = Root::new().await?;
    root.berth_ok(&["pull", &root.image]).await?;
    let canary = format!("berth-canary-{}", canary_word());
    let script = format!("{}; sleep 600", lift_limits_script(&canary));
    let limits = ["--memory", "16m", "--pids-limit", "20", "--cpus", "0.5"];
    let mut args = vec!["run", "-d", "--name", "limited"];
    args.extend(limits);
    args.extend([root.image.as_str(), "sh", "-c", &script]);
    root.berth_ok(&args).await?;
    let mut logs = String::new();
    for _ in 0..600 {
        logs = root.berth_ok(&["logs", "limited"]).await?;
        if logs.contains("tried") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = Containers::at(root.path()).find("limited")?;
    let cgroups = runtime::container::cgroups::Cgroups::detect()?;
    let read = |file: &str| -> Option<String> {
        cgroups.dirs(&record.cgroups_path()).iter().find_map(|d| fs::read_to_string(d.join(file)).ok())
    };
    let host = (read("memory.limit_in_bytes"), read("pids.max"), read("cpu.cfs_quota_us"));
    root.berth_ok(&["rm", "-f", "limited"]).await?;
    let systemd = Path::new("/sys/fs/cgroup/systemd").is_dir();
    assert_all_refused("hybrid", &logs, 3 + usize::from(systemd))?;
    ensure!(
        host == (Some("16777216\n".into()), Some("20\n".into()), Some("50000\n".into())),
        "the limits read from the host changed: {host:?}"
    );
    assert_no_canary_cgroup(&canary)?;

    let host_layout = runtime::container::cgroups::Cgroups::detect()?;
    if host_layout.mode == runtime::container::cgroups::CgroupMode::Hybrid {
        let unified = host_layout.mounts.iter().find(|m| m.ends_with("unified")).context("no unified hierarchy")?;
        let script = lift_limits_script(&canary).replace('\'', "'\\''");
        let v1 = format!("umount {}", unified.display());
        let run_args = format!("--memory 16m --pids-limit 20 {} sh -c '{script}'", root.image);
        let (code, stdout, stderr) = run_in_view(v1, root.path(), run_args).await?;
        ensure!(code == Some(0), "v1 only: {code:?}: {stdout} {stderr}");
        assert_all_refused("v1 only", &stdout, 2 + usize::from(systemd))?;
        let v2 = "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup".to_string();
        let (code, stdout, stderr) = run_in_view(v2, root.path(), format!("{} sh -c '{script}'", root.image)).await?;
        ensure!(code == Some(0), "v2 only: {code:?}: {stdout} {stderr}");
        assert_all_refused("v2 only", &stdout, 2)?;
        assert_no_canary_cgroup(&canary)?;
    }
    root.assert_clean()
}

/// The image's user database is read as a chroot would and only as a plain file: an
/// `/etc/passwd` that is a FIFO fails the start at once with a clear error (it used to hang
/// `berth run` forever, deaf to SIGTERM), and one that links to a host file resolves inside
/// the root (the host canary's user is unknown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_user_database_is_read_safely() -> Result<()> {
    if !permitted("the_image_user_database_is_read_safely") {
        return Ok(());
    }
    let root = Root::new().await?;
    let fifo = root
        .push_image("fifo-passwd", |rootfs| {
            let passwd = rootfs.join("etc/passwd");
            fs::remove_file(&passwd)?;
            let made = std::process::Command::new("mkfifo").arg(&passwd).status()?;
            ensure!(made.success(), "mkfifo failed");
            Ok(())
        })
        .await?;
    let host = tempfile::tempdir()?;
    let canary = host.path().join("passwd");
    fs::write(&canary, "canary:x:4242:4242:host secret:/:/bin/sh\n")?;
    let linked = root
        .push_image("linked-passwd", |rootfs| {
            let passwd = rootfs.join("etc/passwd");
            fs::remove_file(&passwd)?;
            std::os::unix::fs::symlink(&canary, &passwd)?;
            Ok(())
        })
        .await?;
    for image in [&fifo, &linked] {
        root.berth_ok(&["pull", image]).await?;
    }

    let started = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(120), root.berth(&["run", "--rm", &fifo, "true"]))
        .await
        .context("berth run hung on an /etc/passwd that is a FIFO")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(125) && stderr.contains("/etc/passwd in the image is not a regular file (a FIFO)"),
        "FIFO passwd: {:?} after {:?}: {stderr}",
        out.status.code(),
        started.elapsed()
    );

    let out = root.berth(&["run", "--rm", "-u", "canary", &linked, "true"]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(125) && stderr.contains("unable to find user canary"),
        "a passwd linking to a host file was read on the host: {:?}: {stderr}",
        out.status.code()
    );
    root.assert_clean()
}

/// runc's CVE-2019-5736: a process that gets hold of a berth process's `/proc/PID/exe`
/// must not be able to write the berth binary through it, neither while berth runs nor,
/// through a descriptor kept open, after it ended. Today a container cannot reach one
/// (its own PID namespace; capabilities below the supervisor's, so `ptrace` rules deny it
/// even with the host's `/proc` mounted, as checked first; and on this kernel a
/// `#!/proc/self/exe` script fails with ENOENT under runc and berth alike), so the test
/// plays the attacker from the host, the strongest there is: it holds the supervisor's
/// `/proc/PID/exe` (the container's first process was forked from it) and writes through it
/// once the supervisor is gone. The berth binary (a copy run only by that supervisor) must
/// stay byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_cannot_overwrite_the_berth_binary() -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !permitted("containers_cannot_overwrite_the_berth_binary") {
        return Ok(());
    }
    let root = Root::new().await?;
    root.berth_ok(&["pull", &root.image]).await?;
    let copy_dir = tempfile::tempdir()?;
    let copy = copy_dir.path().join("berth");
    fs::copy(berth_binary()?, &copy)?;
    let before = shared::Digest::sha256_of(&fs::read(&copy)?);

    let victim = ["run", "-d", "--name", "victim", &root.image, "sleep", "600"];
    let out = root.berth_as(&copy, &victim).await?;
    ensure!(out.status.success(), "{}", describe_failure("berth", &victim, &out));
    let record = Containers::at(root.path()).find("victim")?;
    let shim = record.shim_pid.context("the victim has no supervisor")?;
    let exe = format!("/proc/{shim}/exe");
    println!("the supervisor runs {}", fs::read_link(&exe)?.display());

    // From a container that sees the host's processes.
    let script = format!("if (echo evil >> /hostproc/{shim}/exe) 2>/dev/null; then echo wrote; else echo refused; fi");
    let (code, stdout, stderr) = root.run(None, &["-v", "/proc:/hostproc"], &["sh", "-c", &script]).await?;
    ensure!(code == 0 && stdout == "refused\n", "a container wrote the supervisor's binary: {code} {stdout} {stderr}");

    // From the host, while it runs, and through a descriptor once it has ended.
    const O_PATH: i32 = 0o10_000_000;
    let held = fs::OpenOptions::new().read(true).custom_flags(O_PATH).open(&exe)?;
    let running = fs::OpenOptions::new().append(true).open(&exe);
    root.berth_ok(&["rm", "-f", "victim"]).await?;
    ensure!(!runtime::container::process_alive(shim), "the supervisor outlived rm -f");
    let reopened = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
    let ended = fs::OpenOptions::new().append(true).open(&reopened).and_then(|mut f| f.write_all(b"evil"));
    let after = shared::Digest::sha256_of(&fs::read(&copy)?);
    ensure!(after == before, "the berth binary was overwritten through /proc/PID/exe");
    let running = running.err().context("the running supervisor's binary opened for writing")?;
    let ended = ended.err().context("the ended supervisor's binary opened for writing")?;
    println!("writing while it ran: {running}; after: {ended}");
    ensure!(
        running.raw_os_error() == Some(30) && ended.raw_os_error() == Some(30),
        "expected a read-only file system (EROFS) both times: {running}; {ended}"
    );
    root.assert_clean()
}

/// What a container may do, one line per attempt: start a program (fork and exec, which
/// Docker's profile allows only with `clone`'s namespace flags masked out), a
/// `clone(CLONE_NEWUSER)` (with the host's perl), a user namespace (`unshare -U`), a tmpfs
/// mount, a key (`add_key`), its session keyring (`keyctl`), a `chown`, and whether
/// `/dev/berth-null` is a device. `/k` holds the host's `keyctl` ([`keyctl_folder`]).
const SECURITY_PROBE: &str = "K='/k/ld.so --library-path /k /k/keyctl'; \
     try() { name=$1; shift; if \"$@\" >/dev/null 2>&1; then echo \"$name: ok\"; else echo \"$name: refused\"; fi; }; \
     try exec /k/ld.so --version; \
     try clone-newuser /k/ld.so --library-path /k /k/perl -e \
       '$r = syscall(CLONE, 0x10000011, 0, 0, 0, 0); exit 0 if $r == 0; wait; exit($r < 0 ? 1 : 0)'; \
     try unshare unshare -U true; \
     mkdir -p /tmp/m; try mount mount -t tmpfs none /tmp/m; \
     try add_key $K add user berth-probe x @s; \
     try keyctl $K rdescribe @s; \
     touch /tmp/f; try chown chown 1:1 /tmp/f; \
     if [ -c /dev/berth-null ]; then echo 'device: yes'; else echo 'device: no'; fi";

/// `clone`'s number on this architecture, for perl's `syscall`.
const CLONE_SYSCALL: &str = if cfg!(target_arch = "aarch64") { "220" } else { "56" };

/// The probe's lines for each (flags, expected) pair, with the embedded runtime and with runc.
async fn check_security(root: &Root, tools: &Path, cases: &[(&[&str], [&str; 8])]) -> Result<()> {
    let volume = format!("{}:/k:ro", tools.display());
    let runc = Path::new(RUNC).is_file();
    if !runc {
        println!("runc is not installed: only the embedded runtime's security defaults are checked");
    }
    for runtime in [None, runc.then_some(RUNC)].into_iter().take(if runc { 2 } else { 1 }) {
        for (flags, expected) in cases {
            let mut all = vec!["-v", &volume];
            all.extend_from_slice(flags);
            let probe = SECURITY_PROBE.replace("CLONE", CLONE_SYSCALL);
            let (code, out, err) = root.run(runtime, &all, &["sh", "-c", &probe]).await?;
            let name = runtime.unwrap_or("embedded");
            ensure!(code == 0, "{name} {flags:?}: exit {code}: {out} {err}");
            let lines: Vec<&str> = out.lines().collect();
            ensure!(lines == expected, "{name} {flags:?}: got {lines:?}, expected {expected:?}");
        }
    }
    Ok(())
}

/// Docker's default seccomp profile applies unless `--security-opt seccomp=unconfined`: it
/// refuses `unshare`, `mount`, `add_key` and `keyctl` as `docker run` does, and allows them
/// (or leaves them to the capabilities) when unconfined or with `CAP_SYS_ADMIN`;
/// `--cap-drop`, `--device` and `--privileged` act as Docker's. Both runtimes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_defaults_and_options_match_docker() -> Result<()> {
    let test = "security_defaults_and_options_match_docker";
    if !permitted(test) || !have_tool(test, "keyctl", "keyutils")? {
        return Ok(());
    }
    let root = Root::new().await?;
    root.berth_ok(&["pull", &root.image]).await?;
    let tools = tempfile::tempdir()?;
    host_programs_folder(tools.path(), &["keyctl", "perl"])?;
    let (ok, refused) = ("ok", "refused");
    let lines = |u, m, a, k, c, d| {
        [
            "exec: ok".to_string(),
            // clone(CLONE_NEWUSER) goes with unshare: the profile masks clone's flags.
            format!("clone-newuser: {u}"),
            format!("unshare: {u}"),
            format!("mount: {m}"),
            format!("add_key: {a}"),
            format!("keyctl: {k}"),
            format!("chown: {c}"),
            format!("device: {d}"),
        ]
    };
    let default = lines(refused, refused, refused, refused, ok, "no");
    // Unconfined: as without a profile; mount still needs CAP_SYS_ADMIN.
    let unconfined = lines(ok, refused, ok, ok, ok, "no");
    let sys_admin = lines(ok, ok, ok, ok, ok, "no");
    let cap_drop = lines(refused, refused, refused, refused, refused, "no");
    let device = lines(refused, refused, refused, refused, ok, "yes");
    let owned: Vec<(&[&str], [String; 8])> = vec![
        (&[], default),
        (&["--security-opt", "seccomp=unconfined"], unconfined),
        (&["--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN"], sys_admin.clone()),
        // The profile allows what CAP_SYS_ADMIN allows, as Docker's does, but never keys.
        (&["--cap-add", "CAP_SYS_ADMIN"], lines(ok, ok, refused, refused, ok, "no")),
        (&["--privileged"], sys_admin),
        (&["--cap-drop", "chown"], cap_drop),
        (&["--device", "/dev/null:/dev/berth-null:rw"], device),
    ];
    let cases: Vec<(&[&str], [&str; 8])> =
        owned.iter().map(|(flags, lines)| (*flags, lines.each_ref().map(String::as_str))).collect();
    check_security(&root, tools.path(), &cases).await?;
    root.assert_clean()
}
