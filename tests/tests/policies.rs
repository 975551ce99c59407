//! Immutable tags and quotas as users see them: `skopeo copy` and `docker push` that would move
//! an immutable tag fail and print the rule's message; a `skopeo copy` over a repository's
//! quota fails and prints the numbers.
//!
//! When no Docker engine answers, the docker test prints a SKIP line and passes, unless
//! `CI=true`, where a missing engine is a failure.

use anyhow::{ensure, Result};
use e2e::{require_tools, run, skopeo, BusyboxImage, Registry, IMAGE_REF};
use registry::config::{ImmutableRule, QuotaRule};

/// What the user sees when a push moves tag `v1` of `repo` (rule 1 of the registry below).
fn immutable_message(repo: &str) -> String {
    format!(r#"denied: tag v1 of {repo} is immutable ([[immutable]] rule 1: repositories ["e2e/*"], tags ["v*"])"#)
}

async fn registry() -> Result<Registry> {
    Registry::start_with(|c| {
        c.immutable.push(ImmutableRule { repositories: vec!["e2e/*".into()], tags: vec!["v*".into()] });
        c.quota.push(QuotaRule { repositories: vec!["small/*".into()], bytes: 4096 });
    })
    .await
}

/// Runs a command expected to fail; returns its standard error (what the user reads).
async fn fails(program: &str, args: &[&str]) -> Result<String> {
    let out = run(program, args).await?;
    ensure!(!out.status.success(), "`{program} {}` succeeded, it should be refused", args.join(" "));
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_cannot_move_an_immutable_tag_nor_exceed_a_quota() -> Result<()> {
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = registry().await?;
    let host = registry.host();
    let src = |name: &str| format!("oci:{}:{name}", image.layout.root().display());
    let dest = format!("docker://{host}/e2e/app:v1");

    skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src(IMAGE_REF), &dest]).await?;
    // The same image again is an idempotent re-push.
    skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src(IMAGE_REF), &dest]).await?;
    // Another image (one more file in its layer) is another manifest: the tag would move.
    let other_dir = work.path().join("other");
    std::fs::create_dir(&other_dir)?;
    let other = BusyboxImage::build_with(&other_dir, |root| Ok(std::fs::write(root.join("extra"), "x")?))?;
    let other_src = format!("oci:{}:{IMAGE_REF}", other.layout.root().display());
    let copy = ["--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false"];
    let err = fails("skopeo", &[&copy[..], &[&other_src, &dest]].concat()).await?;
    // skopeo quotes the message in its log line (`msg="…"`), escaping its double quotes.
    let quoted = immutable_message("e2e/app").replace('"', "\\\"");
    ensure!(err.contains(&quoted), "skopeo printed:\n{err}");
    ensure!(err.contains("cannot be moved to"), "skopeo printed:\n{err}");

    let err =
        fails("skopeo", &[&copy[..], &[&src(IMAGE_REF), &format!("docker://{host}/small/app:v1")]].concat()).await?;
    ensure!(
        err.contains("denied: quota of 4096 bytes for repository small/app would be exceeded: 0 used + "),
        "skopeo printed:\n{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cannot_move_an_immutable_tag() -> Result<()> {
    if !e2e::docker_available("docker_cannot_move_an_immutable_tag").await? {
        return Ok(());
    }
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = registry().await?;
    let tagged = format!("{}/e2e/dockerapp:v1", registry.host());
    let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());
    skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src, &format!("docker://{tagged}")]).await?;

    // Docker's own image of the same layer has another config and manifest.
    let layer = image.layer_file.to_string_lossy().into_owned();
    let imported = run("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &tagged]).await;
    let pushed = match imported {
        Ok(out) if out.status.success() => fails("docker", &["push", &tagged]).await,
        Ok(out) => Err(anyhow::anyhow!("{}", e2e::describe_failure("docker", &["import"], &out))),
        Err(e) => Err(e),
    };
    let _ = run("docker", &["rmi", "-f", &tagged]).await;
    let err = pushed?;
    ensure!(err.contains(&immutable_message("e2e/dockerapp")), "docker push printed:\n{err}");
    Ok(())
}
