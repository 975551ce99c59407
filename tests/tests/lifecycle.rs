//! `berth exec`, `start`, `restart`, `kill`, `stop` with `--stop-signal`, and restart
//! policies, end to end in real namespaces, with the embedded runtime and with runc.
//!
//! These tests need root (namespaces, mounts, cgroups); without it each prints a SKIP line
//! and passes, except under `CI=true`, where it fails (`shared::testing`). State is waited
//! for by polling `berth inspect`, never by sleeping a fixed time.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use anyhow::{ensure, Result};
use e2e::containers::{runtimes, Store};

/// The applets the tests use beyond the image's usual ones.
fn more_applets(root: &Path) -> Result<()> {
    for applet in ["hostname", "id", "ps", "unshare", "grep", "rm"] {
        symlink("busybox", root.join("bin").join(applet))?;
    }
    // A command that exists but cannot be executed.
    std::fs::write(root.join("bin/notexec"), "#!/bin/sh\n")?;
    std::fs::set_permissions(root.join("bin/notexec"), std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// (exit code, stdout, stderr) of `berth ARGS...`.
async fn berth(store: &Store, args: &[&str]) -> Result<(i32, String, String)> {
    let out = store.berth(args).await?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr)))
}

/// Runs `berth ARGS...` until it prints `wanted` (a process in a container does what the
/// test waits for some time after it started); returns what it printed last.
async fn until_output(store: &Store, args: &[&str], wanted: &str) -> Result<String> {
    let start = std::time::Instant::now();
    loop {
        let out = berth(store, args).await?.1;
        if out == wanted || start.elapsed() > std::time::Duration::from_secs(120) {
            return Ok(out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A shell loop that stays up until killed, writing `line` to /runs each time it starts.
fn service(line: &str) -> String {
    format!("echo {line} >> /runs; trap 'exit 0' TERM; trap 'echo got USR1 > /got' USR1; while :; do sleep 0.1; done")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_joins_the_container() -> Result<()> {
    if !shared::testing::require_root("exec_joins_the_container") {
        return Ok(());
    }
    let store = Store::with_image(more_applets).await?;
    for runtime in runtimes() {
        let who = runtime.unwrap_or("embedded");
        let name = format!("exec-{}", if runtime.is_some() { "runc" } else { "embedded" });
        let flags = ["--name", &name, "--hostname", "box", "-e", "BASE=from-run"];
        store.run_detached(runtime, &flags, &["sh", "-c", &service("x")]).await?;
        let exec = |args: &[&str]| {
            let mut all = vec!["exec"];
            all.extend_from_slice(args);
            let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
            let store = &store;
            async move { berth(store, &all.iter().map(String::as_str).collect::<Vec<_>>()).await }
        };
        // The container's namespaces: its host name, its first process as PID 1.
        let (code, out, err) = exec(&[&name, "hostname"]).await?;
        ensure!((code, out.as_str()) == (0, "box\n"), "{who}: hostname: {code} {out} {err}");
        let (_, out, _) = exec(&[&name, "cat", "/proc/1/cmdline"]).await?;
        ensure!(out.starts_with("sh\0-c\0echo x"), "{who}: PID 1 is {out:?}");
        let (_, out, _) = exec(&[&name, "ps"]).await?;
        ensure!(out.contains("sleep 0.1") || out.contains("sh -c"), "{who}: ps printed {out}");
        // Its cgroup.
        let (_, mine, _) = exec(&[&name, "cat", "/proc/self/cgroup"]).await?;
        let (_, first, _) = exec(&[&name, "cat", "/proc/1/cgroup"]).await?;
        ensure!(!mine.is_empty() && mine == first, "{who}: cgroups differ:\n{mine}\n{first}");
        // The exit code comes back.
        let (code, _, _) = exec(&[&name, "sh", "-c", "exit 7"]).await?;
        ensure!(code == 7, "{who}: exit 7 came back as {code}");
        // Its environment plus -e, -u and -w.
        let (_, out, _) = exec(&["-e", "EXTRA=given", &name, "sh", "-c", "echo $BASE $EXTRA"]).await?;
        ensure!(out == "from-run given\n", "{who}: env: {out}");
        let (_, out, _) = exec(&["-u", "app", &name, "id", "-u"]).await?;
        ensure!(out == "1000\n", "{who}: -u app ran as {out}");
        let (_, out, _) = exec(&["-w", "/tmp", &name, "pwd"]).await?;
        ensure!(out == "/tmp\n", "{who}: -w /tmp ran in {out}");
        // Docker's codes for a missing and a non-executable command.
        let (code, _, err) = exec(&[&name, "no-such-command"]).await?;
        ensure!(code == 127 && err.contains("not found"), "{who}: missing command: {code} {err}");
        let (code, _, err) = exec(&[&name, "notexec"]).await?;
        ensure!(code == 126, "{who}: non-executable command: {code} {err}");
        // The container's seccomp profile: a user namespace is refused (root may make one
        // without any capability, so only the filter stops it).
        let (code, _, _) = exec(&[&name, "unshare", "-U", "true"]).await?;
        ensure!(code != 0, "{who}: an exec'd process made a user namespace: the seccomp profile is missing");
        // A stopped container is no place to exec.
        store.berth_ok(&["stop", &name]).await?;
        let (code, _, err) = exec(&[&name, "true"]).await?;
        ensure!(code == 125 && err.contains("is not running"), "{who}: exec into a stopped container: {code} {err}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_start_restart_and_kill() -> Result<()> {
    if !shared::testing::require_root("restart_policies_start_restart_and_kill") {
        return Ok(());
    }
    let store = Store::with_image(more_applets).await?;
    for runtime in runtimes() {
        let who = runtime.unwrap_or("embedded");
        let suffix = if runtime.is_some() { "runc" } else { "embedded" };

        // on-failure:3 restarts a failing process three times, then leaves it exited.
        let failing = format!("failing-{suffix}");
        let flags = ["--name", &failing, "--restart", "on-failure:3"];
        store.run_detached(runtime, &flags, &["sh", "-c", "echo run >> /runs; exit 1"]).await?;
        let state = store
            .wait_for(&failing, "exited after its restarts", |v| {
                v["State"]["Status"] == "exited" && v["RestartCount"] == 3
            })
            .await?;
        ensure!(state["State"]["ExitCode"] == 1, "{who}: {state:#}");
        ensure!(state["HostConfig"]["RestartPolicy"]["MaximumRetryCount"] == 3, "{who}: {state:#}");
        let ps = store.berth_ok(&["ps", "-a"]).await?;
        ensure!(ps.lines().any(|l| l.contains(&failing) && l.contains("Exited (1)")), "{who}: ps -a:\n{ps}");

        // kill -s USR1 reaches the process; stop and start run it again on the same root.
        let web = format!("web-{suffix}");
        store.run_detached(runtime, &["--name", &web], &["sh", "-c", &service("run")]).await?;
        store.berth_ok(&["kill", "-s", "USR1", &web]).await?;
        let got = until_output(&store, &["exec", &web, "cat", "/got"], "got USR1\n").await?;
        ensure!(got == "got USR1\n", "{who}: the trap saw {got:?}");
        store.berth_ok(&["stop", &web]).await?;
        ensure!(store.inspect(&web).await?["State"]["ExitCode"] == 0, "{who}: the TERM trap did not run");
        store.berth_ok(&["start", &web]).await?;
        store.wait_for(&web, "running", |v| v["State"]["Running"] == true).await?;
        let runs = until_output(&store, &["exec", &web, "cat", "/runs"], "run\nrun\n").await?;
        ensure!(runs == "run\nrun\n", "{who}: after start /runs is {runs:?}");
        store.berth_ok(&["restart", "-t", "5", &web]).await?;
        let runs = until_output(&store, &["exec", &web, "cat", "/runs"], "run\nrun\nrun\n").await?;
        ensure!(runs == "run\nrun\nrun\n", "{who}: after restart /runs is {runs:?}");
        let (code, _, err) = berth(&store, &["start", "no-such-container"]).await?;
        ensure!(code != 0 && err.contains("no such container"), "{who}: {code} {err}");

        // kill (SIGKILL) ends an `always` container for good; --stop-signal is what stop sends.
        let always = format!("always-{suffix}");
        let flags = ["--name", &always, "--restart", "always", "--stop-signal", "USR1"];
        store.run_detached(runtime, &flags, &["sh", "-c", &service("a")]).await?;
        store.berth_ok(&["kill", &always]).await?;
        let state = store.wait_for(&always, "exited", |v| v["State"]["Status"] == "exited").await?;
        ensure!(state["State"]["ExitCode"] == 137 && state["RestartCount"] == 0, "{who}: {state:#}");
        let (code, _, err) = berth(&store, &["kill", "-s", "NOPE", &always]).await?;
        ensure!(code != 0 && err.contains("invalid signal"), "{who}: {code} {err}");
        let usr1 = format!("usr1-{suffix}");
        let flags = ["--name", &usr1, "--stop-signal", "USR1", "--stop-timeout", "1"];
        store.run_detached(runtime, &flags, &["sh", "-c", "trap 'exit 5' USR1; while :; do sleep 0.1; done"]).await?;
        store.berth_ok(&["stop", &usr1]).await?;
        let state = store.inspect(&usr1).await?;
        ensure!(state["State"]["ExitCode"] == 5 && state["Config"]["StopSignal"] == "USR1", "{who}: {state:#}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_show_healthy_then_unhealthy() -> Result<()> {
    if !shared::testing::require_root("health_checks_show_healthy_then_unhealthy") {
        return Ok(());
    }
    let store = Store::with_image(more_applets).await?;
    for runtime in runtimes() {
        let who = runtime.unwrap_or("embedded");
        let name = format!("health-{}", if runtime.is_some() { "runc" } else { "embedded" });
        let flags = ["--name", &name, "--health-cmd", "cat /ok", "--health-interval", "100ms", "--health-retries", "2"];
        store.run_detached(runtime, &flags, &["sh", "-c", "echo fine > /ok; while :; do sleep 0.1; done"]).await?;
        let health = |v: &serde_json::Value| v["State"]["Health"]["Status"].as_str().unwrap_or("").to_string();
        let state = store.wait_for(&name, "healthy", |v| health(v) == "healthy").await?;
        let log = &state["State"]["Health"]["Log"];
        ensure!(log.as_array().is_some_and(|l| l.iter().any(|r| r["Output"] == "fine\n")), "{who}: {state:#}");
        let ps = store.berth_ok(&["ps"]).await?;
        ensure!(ps.lines().any(|l| l.contains(&name) && l.contains("(healthy)")), "{who}: ps:\n{ps}");
        // The check fails from now on: unhealthy after two failures in a row.
        store.berth_ok(&["exec", &name, "rm", "/ok"]).await?;
        let state = store.wait_for(&name, "unhealthy", |v| health(v) == "unhealthy").await?;
        ensure!(state["State"]["Health"]["FailingStreak"].as_u64() >= Some(2), "{who}: {state:#}");
        let ps = store.berth_ok(&["ps"]).await?;
        ensure!(ps.lines().any(|l| l.contains(&name) && l.contains("(unhealthy)")), "{who}: ps:\n{ps}");
        store.berth_ok(&["rm", "-f", &name]).await?;
    }
    Ok(())
}
