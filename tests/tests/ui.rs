//! The web UI in a real headless browser (Debian's `chromium` through `chromedriver`): after
//! `docker push` and `skopeo copy --all`, the pages show the repositories, tags, platforms, and
//! the digests and sizes `skopeo inspect` gives; bob, signed in, does not see alice's
//! repositories and has no delete button on one he may only pull; a tag deleted through the UI
//! is gone for `docker pull`. Screenshots of each page go to `target/ui-screenshots/`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use e2e::webdriver::{screenshot_dir, Browser};
use e2e::{require_tools, run, run_ok, skopeo, BusyboxImage, Registry, INDEX_REF};
use registry::config::{Action, AuthConfig, Rule, Subject};
use serde_json::Value;

const ALICE: (&str, &str) = ("alice", "alice-ui-secret");
const BOB: (&str, &str) = ("bob", "bob-ui-secret");

/// Images this test created, removed when it ends however it ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").arg("rmi").arg("-f").args(&self.0).output();
    }
}

async fn ui_registry(dir: &Path) -> Result<Registry> {
    let htpasswd = dir.join("htpasswd");
    let mut lines = String::new();
    for (user, password) in [ALICE, BOB] {
        lines.push_str(&format!("{user}:{}\n", registry::auth::accounts::hash_password(password, 4)?));
    }
    std::fs::write(&htpasswd, lines)?;
    let rule = |repo: &str, actions: Vec<Action>, who: &str| Rule {
        repositories: vec![repo.into()],
        actions,
        who: vec![Subject::User(who.into())],
    };
    let auth = AuthConfig {
        htpasswd: Some(htpasswd),
        rules: vec![
            rule("alice/*", vec![Action::All], "alice"),
            rule("shared/*", vec![Action::All], "alice"),
            rule("bob/*", vec![Action::All], "bob"),
            rule("shared/*", vec![Action::Pull], "bob"),
        ],
        ..AuthConfig::default()
    };
    Registry::start_with(|c| c.auth = Some(auth)).await
}

/// What `skopeo inspect --raw` gives for `reference`, as alice.
async fn raw(reference: &str) -> Result<Value> {
    let creds = format!("{}:{}", ALICE.0, ALICE.1);
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", "--creds", &creds, &format!("docker://{reference}")])
        .await?;
    serde_json::from_str(&out).with_context(|| format!("skopeo inspect --raw printed {out:?}"))
}

/// The digest `skopeo inspect` gives for `reference`.
async fn digest(reference: &str) -> Result<String> {
    let creds = format!("{}:{}", ALICE.0, ALICE.1);
    let args = ["inspect", "--tls-verify=false", "--creds", &creds, "--format", "{{.Digest}}"];
    Ok(skopeo(&[&args[..], &[&format!("docker://{reference}")]].concat()).await?.trim().to_string())
}

/// The config and layers of an image manifest, as (digest, size).
fn blobs(manifest: &Value) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    for d in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().into_iter().flatten()) {
        out.insert((d["digest"].as_str().unwrap_or_default().to_string(), d["size"].as_u64().unwrap_or_default()));
    }
    out
}

async fn sign_in(browser: &Browser, host: &str, (user, password): (&str, &str)) -> Result<()> {
    browser.open(&format!("http://{host}/login")).await?;
    browser.type_into("input[name=user]", user).await?;
    browser.type_into("input[name=password]", password).await?;
    browser.click("form.login button").await?;
    let signed_in = format!(">{user}<");
    browser.source_when(&format!("{user} is not signed in"), |p| p.contains(&signed_in)).await?;
    Ok(())
}

/// Pushes alice's images: `alice/app:v1` and `shared/base:v1` with docker, and the
/// two-platform index `alice/multi:v1` with skopeo.
async fn push_images(host: &str, image: &BusyboxImage, docker_config: &str, cleanup: &mut Cleanup) -> Result<()> {
    let layer = image.layer_file.to_string_lossy().into_owned();
    run_ok("docker", &["--config", docker_config, "login", "-u", ALICE.0, "-p", ALICE.1, host]).await?;
    for name in ["alice/app:v1", "shared/base:v1"] {
        let reference = format!("{host}/{name}");
        cleanup.0.push(reference.clone());
        run_ok("docker", &["import", "--change", r#"CMD ["sh"]"#, &layer, &reference]).await?;
        run_ok("docker", &["--config", docker_config, "push", &reference]).await?;
    }
    let src = format!("oci:{}:{INDEX_REF}", image.layout.root().display());
    let creds = format!("{}:{}", ALICE.0, ALICE.1);
    let dest = format!("docker://{host}/alice/multi:v1");
    skopeo(&["copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &dest])
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_what_clients_pushed_and_deletes_for_docker() -> Result<()> {
    const NAME: &str = "the_ui_shows_what_clients_pushed_and_deletes_for_docker";
    if !e2e::docker_available(NAME).await? {
        return Ok(());
    }
    if !Path::new("/usr/bin/chromium").exists() || !Path::new("/usr/bin/chromedriver").exists() {
        shared::testing::skip(NAME, "chromium and chromium-driver are not installed");
        return Ok(());
    }
    require_tools(&["skopeo"])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = ui_registry(work.path()).await?;
    let host = registry.host();
    let docker_config = work.path().join("docker-config").to_string_lossy().into_owned();
    let mut cleanup = Cleanup(Vec::new());
    push_images(&host, &image, &docker_config, &mut cleanup).await?;

    let shots = screenshot_dir()?;
    let browser = Browser::start().await?;
    let result = walk(&browser, &host, &docker_config, &shots).await;
    browser.quit().await?;
    result
}

async fn walk(browser: &Browser, host: &str, docker_config: &str, shots: &Path) -> Result<()> {
    sign_in(browser, host, ALICE).await?;
    let home = browser.source().await?;
    for repo in ["alice/app", "alice/multi", "shared/base"] {
        ensure!(home.contains(repo), "{repo} missing from alice's list");
    }
    browser.screenshot(shots, "1-repositories-alice").await?;

    // The index: its tag row has skopeo's digest, both platforms and the size of its blobs.
    let index = raw(&format!("{host}/alice/multi:v1")).await?;
    let index_digest = digest(&format!("{host}/alice/multi:v1")).await?;
    let mut platforms = Vec::new();
    let mut all_blobs = BTreeSet::new();
    let mut children = Vec::new();
    for child in index["manifests"].as_array().context("index without manifests")? {
        let p = &child["platform"];
        platforms.push(format!("{}/{}", p["os"].as_str().unwrap_or(""), p["architecture"].as_str().unwrap_or("")));
        let d = child["digest"].as_str().unwrap_or_default().to_string();
        all_blobs.extend(blobs(&raw(&format!("{host}/alice/multi@{d}")).await?));
        children.push(d);
    }
    let size: u64 = all_blobs.iter().map(|(_, s)| s).sum();
    browser.open(&format!("http://{host}/r/alice/multi")).await?;
    let page = browser.source().await?;
    ensure!(page.contains(&format!("title=\"{index_digest}\"")), "index digest {index_digest} missing");
    ensure!(page.contains(&platforms.join(", ")), "platforms {platforms:?} missing");
    ensure!(page.contains(&format!("data-value=\"{size}\"")), "size {size} missing");
    ensure!(page.contains(&format!("docker pull {host}/alice/multi:v1")), "pull command missing");
    browser.screenshot(shots, "2-repository-index").await?;
    browser.open(&format!("http://{host}/r/alice/multi/@v1")).await?;
    let page = browser.source().await?;
    for (d, p) in children.iter().zip(&platforms) {
        ensure!(page.contains(&format!("title=\"{d}\"")) && page.contains(p.as_str()), "platform {p} ({d}) missing");
    }
    browser.screenshot(shots, "3-image-index").await?;

    // The single image: digest, config, history, layers as skopeo sees them.
    let app = raw(&format!("{host}/alice/app:v1")).await?;
    let app_digest = digest(&format!("{host}/alice/app:v1")).await?;
    browser.open(&format!("http://{host}/r/alice/app/@v1")).await?;
    let page = browser.source().await?;
    ensure!(page.contains(&app_digest), "image digest {app_digest} missing");
    for layer in app["layers"].as_array().context("no layers")? {
        let (d, s) = (layer["digest"].as_str().unwrap_or_default(), layer["size"].as_u64().unwrap_or_default());
        ensure!(
            page.contains(&format!("title=\"{d}\"")) && page.contains(&format!("title=\"{s} bytes\"")),
            "layer {d} of {s} bytes"
        );
    }
    ensure!(page.contains("<code>sh</code>"), "the image's command (sh) missing");
    browser.screenshot(shots, "4-image").await?;

    delete_through_the_ui(browser, host, docker_config, shots).await?;
    bob_sees_his_own(browser, host, shots).await
}

/// Alice deletes `alice/app:v1` with the page's button, confirms, and docker cannot pull it.
async fn delete_through_the_ui(browser: &Browser, host: &str, docker_config: &str, shots: &Path) -> Result<()> {
    browser.open(&format!("http://{host}/r/alice/app")).await?;
    browser.click("form[data-confirm] button").await?;
    let asked = browser.alert_text().await?;
    ensure!(asked.contains("Delete tag v1 of alice/app"), "confirmation said {asked:?}");
    browser.accept_alert().await?;
    browser.source_when("the tag is still listed after the delete", |p| p.contains("No tags.")).await?;
    ensure!(browser.url().await?.ends_with("/r/alice/app"), "not back on the repository page");
    browser.screenshot(shots, "5-after-delete").await?;
    let reference = format!("{host}/alice/app:v1");
    run_ok("docker", &["rmi", &reference]).await?;
    let pulled = run("docker", &["--config", docker_config, "pull", &reference]).await?;
    ensure!(!pulled.status.success(), "docker pull of the deleted tag worked");
    Ok(())
}

/// Bob sees his own and shared repositories, not alice's, and no delete button on the shared
/// one he may only pull.
async fn bob_sees_his_own(browser: &Browser, host: &str, shots: &Path) -> Result<()> {
    browser.click("header form button").await?;
    // The click's POST and redirect finish before the next page is opened.
    browser.source_when("signing out did not end alice's session", |p| p.contains("Sign in</a>")).await?;
    sign_in(browser, host, BOB).await?;
    let home = browser.source().await?;
    ensure!(home.contains("shared/base") && !home.contains("alice/"), "bob's list: {home}");
    browser.screenshot(shots, "6-repositories-bob").await?;
    browser.open(&format!("http://{host}/r/shared/base")).await?;
    ensure!(browser.count("td.pull").await? == 1, "bob does not see shared/base:v1");
    ensure!(browser.source().await?.contains("<td>linux/amd64</td>"), "the image's platform is missing");
    ensure!(browser.count("form[data-confirm]").await? == 0, "bob has a delete button on shared/base");
    browser.screenshot(shots, "7-repository-bob-pull-only").await?;
    browser.open(&format!("http://{host}/r/alice/multi")).await?;
    let page = browser.source().await?;
    ensure!(
        page.contains("may not pull from alice/multi") && !page.contains("data-confirm"),
        "bob on alice/multi: {page}"
    );
    browser.screenshot(shots, "8-forbidden-bob").await?;
    Ok(())
}
