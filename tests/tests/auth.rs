//! Access control end to end, with real clients against a berth registry whose `[auth]` is
//! on: skopeo with `--creds`; `berth login` then `berth pull` (also with Docker's identity
//! token, and with a robot account made by `berth robot create`, until `berth robot revoke`);
//! and `docker login`, `docker push`, `docker pull` when a Docker engine is present (the
//! SKIP/`CI=true` pattern of `docker.rs`). Every client gets a temporary configuration
//! folder, so the machine's own Docker credentials are neither used nor touched.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::{describe_failure, require_tools, run, skopeo, BusyboxImage, Registry, IMAGE_REF};
use registry::config::{Action, AuthConfig, Rule, Subject};
use tokio::io::AsyncWriteExt;

const ALICE: (&str, &str) = ("alice", "alice-e2e-password");
const READER: (&str, &str) = ("reader", "reader-e2e-password");

/// A registry with `alice` (pull and push on `e2e/*`), `reader` (pull on `e2e/*`), the robot
/// `ci` (pull and push on `e2e/*`, once created), and no anonymous access.
async fn auth_registry(dir: &Path) -> Result<Registry> {
    let htpasswd = dir.join("htpasswd");
    let mut lines = String::new();
    for (user, password) in [ALICE, READER] {
        lines.push_str(&format!("{user}:{}\n", registry::auth::accounts::hash_password(password, 4)?));
    }
    std::fs::write(&htpasswd, lines)?;
    let rule = |actions: Vec<Action>, who: Vec<Subject>| Rule { repositories: vec!["e2e/*".into()], actions, who };
    let auth = AuthConfig {
        htpasswd: Some(htpasswd),
        robot_cache_secs: 0,
        rules: vec![
            rule(vec![Action::Pull, Action::Push], vec![Subject::User("alice".into()), Subject::Robot("ci".into())]),
            rule(vec![Action::Pull], vec![Subject::User("reader".into())]),
        ],
        ..AuthConfig::default()
    };
    Registry::start_with(|c| c.auth = Some(auth)).await
}

/// Runs a program with extra environment variables and, optionally, standard input.
async fn run_with(program: &str, args: &[&str], env: &[(&str, &Path)], stdin: Option<&str>) -> Result<Output> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).kill_on_drop(true).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().with_context(|| format!("cannot run {program}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await?;
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .with_context(|| format!("`{program} {}` took too long", args.join(" ")))?
        .with_context(|| format!("waiting for {program}"))
}

fn ok(program: &str, args: &[&str], out: Output) -> Result<String> {
    if !out.status.success() {
        bail!("{}", describe_failure(program, args, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `berth` binary next to this test's executable.
fn berth_binary() -> Result<String> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no parent directory")?;
    let bin = dir.join("berth");
    ensure!(bin.is_file(), "{} is missing; build it with `cargo build -p berth-cli`", bin.display());
    Ok(bin.to_string_lossy().into_owned())
}

/// Pushes the busybox image to `reference` with skopeo as alice.
async fn push_as_alice(image: &BusyboxImage, reference: &str, auth_file: &Path) -> Result<()> {
    let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());
    let creds = format!("{}:{}", ALICE.0, ALICE.1);
    let auth_file = auth_file.to_string_lossy();
    skopeo(&[
        "copy",
        "--authfile",
        &auth_file,
        "--dest-creds",
        &creds,
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{reference}"),
    ])
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_with_credentials_pushes_and_pulls_and_is_refused_without() -> Result<()> {
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = auth_registry(work.path()).await?;
    let host = registry.host();
    // An empty auth file, so skopeo never finds the machine's credentials.
    let auth_file = work.path().join("auth.json");
    std::fs::write(&auth_file, "{}")?;
    let auth_arg = auth_file.to_string_lossy().into_owned();
    let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());

    push_as_alice(&image, &format!("{host}/e2e/skopeo:v1"), &auth_file).await?;
    let reader = format!("{}:{}", READER.0, READER.1);
    let out = skopeo(&[
        "inspect",
        "--authfile",
        &auth_arg,
        "--creds",
        &reader,
        "--tls-verify=false",
        &format!("docker://{host}/e2e/skopeo:v1"),
    ])
    .await?;
    ensure!(out.contains(&image.image.digest.to_string()), "inspect printed {out}");
    let copy = work.path().join("copy");
    skopeo(&[
        "copy",
        "--authfile",
        &auth_arg,
        "--src-creds",
        &reader,
        "--src-tls-verify=false",
        &format!("docker://{host}/e2e/skopeo:v1"),
        &format!("oci:{}:{IMAGE_REF}", copy.display()),
    ])
    .await?;
    e2e::assert_same_content(&image.layout, &shared::layout::Layout::open(&copy)?, &image.image, IMAGE_REF)?;

    // Refused: a wrong password, a pull-only account pushing, no credentials at all.
    for (what, creds) in
        [("wrong password", Some("alice:not-it")), ("pull-only account", Some(reader.as_str())), ("anonymous", None)]
    {
        let dest = format!("docker://{host}/e2e/refused:v1");
        let mut args =
            vec!["--insecure-policy", "copy", "--retry-times", "0", "--authfile", &auth_arg, "--dest-tls-verify=false"];
        match creds {
            Some(c) => args.extend(["--dest-creds", c]),
            None => args.push("--dest-no-creds"),
        }
        args.extend([src.as_str(), dest.as_str()]);
        let out = run("skopeo", &args).await?;
        ensure!(!out.status.success(), "{what}: skopeo pushed");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        ensure!(
            err.contains("unauthorized") || err.contains("denied") || err.contains("authentication"),
            "{what}: {err}"
        );
    }
    ensure!(!registry.root().join("repositories/e2e/refused").exists(), "a refused push stored something");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_login_then_berth_pull() -> Result<()> {
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = auth_registry(work.path()).await?;
    let host = registry.host();
    let auth_file = work.path().join("auth.json");
    std::fs::write(&auth_file, "{}")?;
    let reference = format!("{host}/e2e/app:v1");
    push_as_alice(&image, &reference, &auth_file).await?;

    let berth = berth_binary()?;
    let docker_config = work.path().join("docker-config");
    let env = [("DOCKER_CONFIG", docker_config.as_path()), ("HOME", work.path())];
    let berth_run = |args: Vec<String>, stdin: Option<&'static str>| {
        let berth = berth.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_with(&berth, &args, &env, stdin).await
        }
    };
    let store = |name: &str| work.path().join(name).to_string_lossy().into_owned();
    let config_file = docker_config.join("config.json");

    // A wrong password is refused and nothing is saved.
    let out = berth_run(
        vec!["login".into(), "-u".into(), "reader".into(), "--password-stdin".into(), host.clone()],
        Some("wrong\n"),
    )
    .await?;
    ensure!(!out.status.success(), "berth login took a wrong password");
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("credentials were refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!config_file.exists(), "a failed login wrote {}", config_file.display());
    // Without credentials, the pull is refused with a hint.
    let out =
        berth_run(vec!["--root".into(), store("s0"), "pull".into(), "-q".into(), reference.clone()], None).await?;
    ensure!(!out.status.success(), "an anonymous pull worked");
    ensure!(String::from_utf8_lossy(&out.stderr).contains("berth login"), "{}", String::from_utf8_lossy(&out.stderr));

    // Logged in, the pull works; the file is Docker's format.
    let args = vec!["login".into(), "-u".into(), "reader".into(), "--password-stdin".into(), host.clone()];
    let out = ok("berth login", &[], berth_run(args, Some("reader-e2e-password\n")).await?)?;
    ensure!(out.contains("Login Succeeded"), "{out}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
    ensure!(saved["auths"][&host]["auth"].is_string(), "config.json holds {saved}");
    let pulled = ok(
        "berth pull",
        &[],
        berth_run(vec!["--root".into(), store("s1"), "pull".into(), "-q".into(), reference.clone()], None).await?,
    )?;
    ensure!(pulled.trim() == reference, "berth pull printed {pulled:?}");

    // Logged out, it is refused again.
    let out = ok("berth logout", &[], berth_run(vec!["logout".into(), host.clone()], None).await?)?;
    ensure!(out.contains("Removing login credentials"), "{out}");
    let out =
        berth_run(vec!["--root".into(), store("s2"), "pull".into(), "-q".into(), reference.clone()], None).await?;
    ensure!(!out.status.success(), "a pull after logout worked");

    // Docker's identity token (the refresh token of the OAuth2 flow `docker login` uses) works too.
    let form = format!(
        "grant_type=password&username={}&password={}&service=berth&client_id=test&access_type=offline",
        READER.0, READER.1
    );
    let answer = reqwest::Client::new()
        .post(format!("http://{host}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?
        .bytes()
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    let refresh = answer["refresh_token"].as_str().context("no refresh token")?;
    let with_token = serde_json::json!({ "auths": { &host: { "auth": "cmVhZGVyOg==", "identitytoken": refresh } } });
    std::fs::write(&config_file, with_token.to_string())?;
    let pulled = ok(
        "berth pull",
        &[],
        berth_run(vec!["--root".into(), store("s3"), "pull".into(), "-q".into(), reference.clone()], None).await?,
    )?;
    ensure!(pulled.trim() == reference, "berth pull with an identity token printed {pulled:?}");

    // A robot made with `berth robot create` on the registry's storage logs in and pulls,
    // until it is revoked.
    let storage_root = registry.root().to_string_lossy().into_owned();
    let created = ok(
        "berth robot create",
        &[],
        berth_run(
            vec![
                "robot".into(),
                "create".into(),
                "ci".into(),
                "--expires".into(),
                "1d".into(),
                "--root".into(),
                storage_root.clone(),
            ],
            None,
        )
        .await?,
    )?;
    let field = |name: &str| created.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).map(str::to_string);
    let (login, secret) = (field("username:").context("no username")?, field("password:").context("no password")?);
    ensure!(login == "robot$ci" && secret.len() >= 40, "berth robot create printed {created}");
    let listed = ok(
        "berth robot list",
        &[],
        berth_run(vec!["robot".into(), "list".into(), "--root".into(), storage_root.clone()], None).await?,
    )?;
    ensure!(listed.contains("robot$ci") && !listed.contains(&secret), "berth robot list printed {listed}");
    let stdin: &'static str = Box::leak(format!("{secret}\n").into_boxed_str());
    let out = berth_run(
        vec!["login".into(), "-u".into(), login.clone(), "--password-stdin".into(), host.clone()],
        Some(stdin),
    )
    .await?;
    ok("berth login (robot)", &[], out)?;
    let pulled = ok(
        "berth pull",
        &[],
        berth_run(vec!["--root".into(), store("s4"), "pull".into(), "-q".into(), reference.clone()], None).await?,
    )?;
    ensure!(pulled.trim() == reference);
    ok(
        "berth robot revoke",
        &[],
        berth_run(vec!["robot".into(), "revoke".into(), "ci".into(), "--root".into(), storage_root], None).await?,
    )?;
    let out =
        berth_run(vec!["--root".into(), store("s5"), "pull".into(), "-q".into(), reference.clone()], None).await?;
    ensure!(!out.status.success(), "a revoked robot pulled");
    let out = berth_run(vec!["login".into(), "-u".into(), login, "--password-stdin".into(), host.clone()], Some(stdin))
        .await?;
    ensure!(!out.status.success(), "a revoked robot logged in");
    Ok(())
}

/// Images this test created, removed when it ends however it ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::process::Command::new("docker").arg("rmi").arg("-f").args(&self.0).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_login_push_and_pull() -> Result<()> {
    if !e2e::docker_available("docker_login_push_and_pull").await? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = auth_registry(work.path()).await?;
    let host = registry.host();
    let config = work.path().join("docker-config");
    std::fs::create_dir_all(&config)?;
    let config_arg = config.to_string_lossy().into_owned();
    let docker = |args: &[&str]| {
        let mut all = vec!["--config", config_arg.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_string).collect::<Vec<String>>()
    };
    let go = |args: Vec<String>, stdin: Option<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_with("docker", &refs, &[], stdin.as_deref()).await?;
        Ok::<_, anyhow::Error>((refs.join(" "), out))
    };
    let reference = format!("{host}/e2e/docker-auth:v1");
    let mut cleanup = Cleanup(vec![reference.clone()]);
    let layer = image.layer_file.to_string_lossy().into_owned();
    run_with("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &reference], &[], None)
        .await
        .and_then(|o| ok("docker import", &[], o))?;

    // Not logged in: the push is refused.
    let (cmd, out) = go(docker(&["push", &reference]), None).await?;
    ensure!(!out.status.success(), "`{cmd}` worked without credentials");
    // A wrong password is refused by docker login.
    let (cmd, out) = go(docker(&["login", "-u", "alice", "--password-stdin", &host]), Some("wrong\n".into())).await?;
    ensure!(!out.status.success(), "`{cmd}` took a wrong password");
    // A pull-only account cannot push.
    let (cmd, out) =
        go(docker(&["login", "-u", READER.0, "--password-stdin", &host]), Some(format!("{}\n", READER.1))).await?;
    ok(&cmd, &[], out)?;
    let (cmd, out) = go(docker(&["push", &reference]), None).await?;
    ensure!(!out.status.success(), "`{cmd}` pushed as a pull-only account");
    ensure!(
        !registry.root().join("repositories/e2e/docker-auth/_manifests").exists(),
        "a refused push stored a manifest"
    );

    // alice logs in, pushes; the image is removed locally and pulled back, then run.
    let (cmd, out) =
        go(docker(&["login", "-u", ALICE.0, "--password-stdin", &host]), Some(format!("{}\n", ALICE.1))).await?;
    let said = ok(&cmd, &[], out)?;
    ensure!(said.contains("Login Succeeded"), "{said}");
    let saved = std::fs::read_to_string(config.join("config.json"))?;
    ensure!(saved.contains(&host), "docker login saved {saved}");
    let (cmd, out) = go(docker(&["push", &reference]), None).await?;
    ok(&cmd, &[], out)?;
    let (cmd, out) = go(docker(&["rmi", &reference]), None).await?;
    ok(&cmd, &[], out)?;
    let (cmd, out) = go(docker(&["pull", &reference]), None).await?;
    ok(&cmd, &[], out)?;
    let (cmd, out) = go(docker(&["run", "--rm", &reference, "echo", "hello"]), None).await?;
    let said = ok(&cmd, &[], out)?;
    ensure!(said == "hello\n", "docker run printed {said:?}");

    // Logged out, the pull is refused.
    let (cmd, out) = go(docker(&["logout", &host]), None).await?;
    ok(&cmd, &[], out)?;
    let (cmd, out) = go(docker(&["rmi", &reference]), None).await?;
    ok(&cmd, &[], out)?;
    let (cmd, out) = go(docker(&["pull", &reference]), None).await?;
    ensure!(!out.status.success(), "`{cmd}` pulled after logout");
    cleanup.0.clear();
    let _ = run("docker", &["rmi", "-f", &reference]).await;
    Ok(())
}

/// `berth login` + `berth build --push` + `berth pull` against berth with access control on:
/// the build pulls its base and pushes its result with the saved credentials, an account
/// that may only pull cannot push, and the pushed image pulls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn berth_login_then_build_push_then_pull() -> Result<()> {
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = auth_registry(work.path()).await?;
    let host = registry.host();
    let auth_file = work.path().join("auth.json");
    std::fs::write(&auth_file, "{}")?;
    let base = format!("{host}/e2e/base:v1");
    push_as_alice(&image, &base, &auth_file).await?;

    let context = work.path().join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {base}\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"),
    )?;
    std::fs::write(context.join("hello.txt"), "built with credentials\n")?;
    let built = format!("{host}/e2e/built:v1");

    let berth = berth_binary()?;
    let docker_config = work.path().join("docker-config");
    let env = [("DOCKER_CONFIG", docker_config.as_path()), ("HOME", work.path())];
    let root = |name: &str| work.path().join(name).to_string_lossy().into_owned();
    let ctx = context.to_string_lossy().into_owned();
    let build_push = |store: String| {
        vec!["--root".to_string(), store, "build".into(), "-t".into(), built.clone(), "--push".into(), ctx.clone()]
    };

    // An account that may only pull builds (it can pull the base) but cannot push.
    let args = ["login", "-u", READER.0, "--password-stdin", &host];
    ok("berth login (reader)", &[], run_with(&berth, &args, &env, Some("reader-e2e-password\n")).await?)?;
    let args = build_push(root("b1"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_with(&berth, &args, &env, None).await?;
    ensure!(!out.status.success(), "a pull-only account pushed a build");

    // Alice may push: the build goes up, and pulls back.
    let password = format!("{}\n", ALICE.1);
    let args = ["login", "-u", ALICE.0, "--password-stdin", &host];
    ok("berth login (alice)", &[], run_with(&berth, &args, &env, Some(&password)).await?)?;
    let args = build_push(root("b2"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok("berth build --push", &[], run_with(&berth, &args, &env, None).await?)?;
    let args = ["--root", &root("b3"), "pull", "-q", &built];
    let pulled = ok("berth pull", &[], run_with(&berth, &args, &env, None).await?)?;
    ensure!(pulled.trim() == built, "berth pull printed {pulled:?}");
    Ok(())
}
