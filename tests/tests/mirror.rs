//! The pull-through cache end to end: `berth serve` (a separate process, its log captured)
//! mirroring real registries on loopback — Debian's distribution 2.8.2, plain and with
//! htpasswd, and another berth with `[auth]` (the token flow) — asked by real clients:
//! skopeo through the path prefix, plain HTTP for Docker's unprefixed `registry-mirrors`
//! requests and containerd's `?ns=`, and `ctr` with a hosts directory for two upstreams.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use e2e::mirror::{berth_serve, berth_serve_on, distribution, push, random_image, Server, DISTRIBUTION};
use e2e::{assert_same_content, require_tools, skopeo, BusyboxImage, IMAGE_REF};
use shared::Digest;

/// True when distribution 2.8.2 and skopeo are installed; else SKIP (a failure under CI).
fn tools(test: &str) -> bool {
    if !std::path::Path::new(DISTRIBUTION).is_file() {
        shared::testing::skip(test, "Debian's docker-registry (distribution 2.8.2) is not installed");
        return false;
    }
    require_tools(&["skopeo"]).is_ok()
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// `GET http://{addr}{path}`: status, `Docker-Content-Digest` and body.
async fn get(addr: &str, path: &str) -> Result<(u16, Option<String>, bytes::Bytes)> {
    let resp =
        reqwest::Client::new().get(format!("http://{addr}{path}")).header("accept", MANIFEST_TYPES).send().await?;
    let status = resp.status().as_u16();
    let digest = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((status, digest, resp.bytes().await?))
}

/// The value of a `/metrics` series for `upstream`.
async fn metric(berth: &Server, name: &str, upstream: &str) -> Result<u64> {
    let (_, _, text) = get(&berth.addr, "/metrics").await?;
    let text = String::from_utf8_lossy(&text);
    let prefix = format!("{name}{{upstream=\"{upstream}\"}} ");
    let line = text.lines().find_map(|l| l.strip_prefix(&prefix)).with_context(|| format!("{prefix} in {text}"))?;
    Ok(line.trim().parse()?)
}

fn mirror_section(url: &str, host: &str, extra: &str) -> String {
    format!("[[mirror]]\nurl = \"{url}\"\nhost = \"{host}\"\n{extra}\n")
}

/// Pulls through the path prefix with skopeo into a new layout and checks the content; the
/// layout folder is returned to be compared or dropped.
async fn pull_prefixed(
    berth: &Server,
    name: &str,
    original: &shared::layout::Layout,
    root: &shared::manifest::Descriptor,
) -> Result<tempfile::TempDir> {
    let out = tempfile::tempdir()?;
    let dest = format!("oci:{}:x", out.path().join("copy").display());
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{}/{name}", berth.addr), &dest]).await?;
    let copy = shared::layout::Layout::open(out.path().join("copy"))?;
    assert_same_content(original, &copy, root, "x")?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_pulls_survive_the_upstream_and_cold_ones_say_why() -> Result<()> {
    if !tools("warm_pulls_survive_the_upstream_and_cold_ones_say_why") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let image = BusyboxImage::build(dir.path())?;
    let mut upstream = distribution(&[], None).await?;
    push(&image.layout, IMAGE_REF, &format!("{}/library/busy:1", upstream.addr), None).await?;
    let url = format!("http://{}", upstream.addr);
    let berth = berth_serve(&mirror_section(&url, "upstream.test", "default = true\ntag_ttl_secs = 1"), &[]).await?;

    // Cold through the path prefix, then warm.
    pull_prefixed(&berth, "upstream.test/library/busy:1", &image.layout, &image.image).await?;
    ensure!(metric(&berth, "berth_mirror_misses_total", "upstream.test").await? >= 3, "manifest, config, layer");
    // Docker's registry-mirrors ask without a prefix; containerd with `ns`: the same cache.
    let (status, digest, _) = get(&berth.addr, "/v2/library/busy/manifests/1").await?;
    ensure!(status == 200 && digest.as_deref() == Some(&image.image.digest.to_string()), "{status} {digest:?}");
    let layer = format!("/v2/library/busy/blobs/{}?ns=upstream.test", image.layer.digest);
    let (status, _, body) = get(&berth.addr, &layer).await?;
    ensure!(status == 200 && Digest::sha256_of(&body) == image.layer.digest, "layer through ns: {status}");

    // A push into the mirrored namespace is refused, saying why.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v2/upstream.test/library/busy/blobs/uploads/", berth.addr))
        .send()
        .await?;
    let (status, body) = (resp.status().as_u16(), resp.text().await?);
    ensure!(status == 403 && body.contains("DENIED") && body.contains("mirror"), "{status} {body}");

    upstream.stop().await?;
    // The tag is stale by now or soon: pull until a revalidation has failed, every pull
    // succeeding from the cache.
    loop {
        pull_prefixed(&berth, "upstream.test/library/busy:1", &image.layout, &image.image).await?;
        if metric(&berth, "berth_mirror_upstream_errors_total", "upstream.test").await? > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    ensure!(berth.output().contains("serving the cached manifest"), "stale-on-error is logged");

    // Never seen, upstream down: the spec's error shape, naming the upstream.
    let (status, _, body) = get(&berth.addr, "/v2/upstream.test/library/never/manifests/1").await?;
    let body = String::from_utf8_lossy(&body);
    ensure!(
        status == 404 && body.contains("MANIFEST_UNKNOWN") && body.contains("upstream upstream.test"),
        "{status} {body}"
    );
    let out = tempfile::tempdir()?;
    let dest = format!("oci:{}:x", out.path().display());
    let src = format!("docker://{}/upstream.test/library/never:1", berth.addr);
    let err = skopeo(&["copy", "--src-tls-verify=false", &src, &dest]).await.unwrap_err();
    ensure!(format!("{err:#}").contains("upstream upstream.test"), "skopeo shows the cause: {err:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_pushed_anew_upstream_is_seen_after_its_ttl() -> Result<()> {
    if !tools("a_tag_pushed_anew_upstream_is_seen_after_its_ttl") {
        return Ok(());
    }
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let first = BusyboxImage::build(a.path())?;
    let second = BusyboxImage::build_with(b.path(), |root| Ok(std::fs::write(root.join("etc/v2"), "2")?))?;
    let upstream = distribution(&[("puller", "upstream-secret-1")], None).await?;
    let creds = Some("puller:upstream-secret-1");
    push(&first.layout, IMAGE_REF, &format!("{}/app:v", upstream.addr), creds).await?;
    let section =
        mirror_section(&format!("http://{}", upstream.addr), "up.test", "tag_ttl_secs = 1\nusername = \"puller\"");
    let berth = berth_serve(&section, &[("BERTH_MIRROR_UP_TEST_PASSWORD", "upstream-secret-1")]).await?;
    let (status, digest, _) = get(&berth.addr, "/v2/up.test/app/manifests/v").await?;
    ensure!(status == 200 && digest == Some(first.image.digest.to_string()), "{status} {digest:?}");

    push(&second.layout, IMAGE_REF, &format!("{}/app:v", upstream.addr), creds).await?;
    let want = Some(second.image.digest.to_string());
    // Wait on the condition (the TTL is a second; no time is asserted).
    let mut seen = None;
    for _ in 0..600 {
        seen = get(&berth.addr, "/v2/up.test/app/manifests/v").await?.1;
        if seen == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(seen == want, "the mirror still serves {seen:?}");
    ensure!(metric(&berth, "berth_mirror_revalidations_total", "up.test").await? >= 1, "revalidated");
    pull_prefixed(&berth, "up.test/app:v", &second.layout, &second.image).await?;
    ensure!(!berth.output().contains("upstream-secret-1"), "the password is in berth's log");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_clients_of_a_cold_image_cause_one_fetch_per_blob() -> Result<()> {
    if !tools("twenty_clients_of_a_cold_image_cause_one_fetch_per_blob") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (layout, _, blobs) = random_image(dir.path(), "big", 7, 4, 8 << 20)?;
    let upstream = distribution(&[], None).await?;
    push(&layout, "big", &format!("{}/team/big:1", upstream.addr), None).await?;
    let before = upstream.blob_gets();
    let berth = berth_serve(&mirror_section(&format!("http://{}", upstream.addr), "up.test", ""), &[]).await?;
    let blobs = Arc::new(blobs);
    let clients: Vec<_> = (0..20).map(|_| tokio::spawn(pull_all(berth.addr.clone(), blobs.clone()))).collect();
    for c in clients {
        c.await??;
    }
    ensure_fetched_once(&upstream, before, &blobs)
}

/// A client of `up.test/team/big:1` through the mirror at `addr`: the manifest, then every
/// blob at once, each compared with what was pushed (`blobs`).
async fn pull_all(addr: String, blobs: Arc<BTreeMap<Digest, Vec<u8>>>) -> Result<()> {
    pull_image(&addr, "up.test/team/big", &blobs).await
}

/// Pulls `repo:1` through the mirror at `addr` as a client does: the manifest, then every
/// blob at once, each compared with what was pushed (`blobs`).
async fn pull_image(addr: &str, repo: &str, blobs: &BTreeMap<Digest, Vec<u8>>) -> Result<()> {
    let (status, _, body) = get(addr, &format!("/v2/{repo}/manifests/1")).await?;
    ensure!(status == 200, "manifest: {status}");
    let manifest = shared::manifest::Manifest::parse(&body, None)?;
    let wanted: Vec<_> = manifest.config.iter().chain(&manifest.layers).map(|d| d.digest.clone()).collect();
    let fetches = wanted.iter().map(|d| async move { get(addr, &format!("/v2/{repo}/blobs/{d}")).await });
    for (d, result) in wanted.iter().zip(futures_util::future::join_all(fetches).await) {
        let (status, _, body) = result?;
        let want = blobs.get(d).with_context(|| format!("the manifest names {d}, which was not pushed"))?;
        ensure!(status == 200 && body.as_ref() == want.as_slice(), "blob {d}: {status}, {} bytes", body.len());
    }
    Ok(())
}

/// The upstream's log shows each of `blobs` fetched once since `before`.
fn ensure_fetched_once(
    upstream: &Server,
    before: BTreeMap<String, usize>,
    blobs: &BTreeMap<Digest, Vec<u8>>,
) -> Result<()> {
    let mut fetched = upstream.blob_gets();
    for (d, n) in before {
        *fetched.entry(d).or_default() -= n;
    }
    fetched.retain(|_, n| *n > 0);
    let want: BTreeMap<String, usize> = blobs.keys().map(|d| (d.to_string(), 1)).collect();
    ensure!(fetched == want, "upstream blob GETs {fetched:?}, wanted each once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_s3_fetch_each_blob_once() -> Result<()> {
    if !tools("two_replicas_on_s3_fetch_each_blob_once") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (layout, _, blobs) = random_image(dir.path(), "big", 8, 4, 8 << 20)?;
    let upstream = distribution(&[], None).await?;
    push(&layout, "big", &format!("{}/team/big:1", upstream.addr), None).await?;
    let before = upstream.blob_gets();
    let s3 = e2e::s3::S3Server::start()?;
    s3.bucket("mirror").await?;
    let storage = format!(
        "[storage.s3]\nbucket = \"mirror\"\nendpoint = \"{}\"\npath_style = true\naccess_key_id = \"{}\"\n\
         secret_access_key = \"{}\"\n",
        s3.endpoint(),
        e2e::s3::ACCESS_KEY,
        e2e::s3::SECRET_KEY
    );
    let section = mirror_section(&format!("http://{}", upstream.addr), "up.test", "");
    let replicas =
        [berth_serve_on(Some(&storage), &section, &[]).await?, berth_serve_on(Some(&storage), &section, &[]).await?];
    // The manifest is cached by both first (each fetches it), so that the blob requests of
    // both meet; then ten clients on each replica at once.
    for r in &replicas {
        let (status, _, _) = get(&r.addr, "/v2/up.test/team/big/manifests/1").await?;
        ensure!(status == 200, "manifest: {status}");
    }
    let blobs = Arc::new(blobs);
    let clients: Vec<_> =
        (0..20).map(|i| tokio::spawn(pull_all(replicas[i % 2].addr.clone(), blobs.clone()))).collect();
    for c in clients {
        c.await??;
    }
    ensure_fetched_once(&upstream, before, &blobs).with_context(|| {
        let warned = |r: &Server| r.output().lines().filter(|l| l.contains("WARN")).collect::<Vec<_>>().join("\n");
        format!("replica warnings:\n{}\n{}", warned(&replicas[0]), warned(&replicas[1]))
    })
}

/// A registry that answers every request `401` with a basic challenge and records the
/// `Authorization` headers it is sent.
async fn recorder() -> Result<(String, Arc<Mutex<Vec<String>>>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                for line in text.lines() {
                    if line.to_ascii_lowercase().starts_with("authorization:") {
                        record.lock().unwrap().push(line.to_string());
                    }
                }
                let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"recorder\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok((addr, seen))
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_stay_with_their_upstream_and_out_of_the_log() -> Result<()> {
    if !tools("credentials_stay_with_their_upstream_and_out_of_the_log") {
        return Ok(());
    }
    const PASSWORD: &str = "token-flow-secret-9";
    let dir = tempfile::tempdir()?;
    let image = BusyboxImage::build(dir.path())?;
    // Upstream one: a berth with `[auth]` (the token flow).
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{}\n", registry::auth::accounts::hash_password(PASSWORD, 4)?))?;
    let auth = registry::config::AuthConfig {
        htpasswd: Some(htpasswd),
        rules: vec![registry::config::Rule {
            repositories: vec!["*".into()],
            actions: vec![registry::config::Action::All],
            who: vec![registry::config::Subject::User("alice".into())],
        }],
        ..Default::default()
    };
    let one = e2e::Registry::start_with(|c| c.auth = Some(auth)).await?;
    push(&image.layout, IMAGE_REF, &format!("{}/library/busy:1", one.host()), Some(&format!("alice:{PASSWORD}")))
        .await?;
    // Upstream two records what it is sent.
    let (two, recorded) = recorder().await?;
    let sections = mirror_section(&format!("http://{}", one.host()), "one.test", "username = \"alice\"")
        + &mirror_section(&format!("http://{two}"), "two.test", "");
    let berth = berth_serve(&sections, &[("BERTH_MIRROR_ONE_TEST_PASSWORD", PASSWORD)]).await?;

    pull_prefixed(&berth, "one.test/library/busy:1", &image.layout, &image.image).await?;
    let (status, _, _) = get(&berth.addr, "/v2/library/busy/manifests/1?ns=two.test").await?;
    ensure!(status == 404, "upstream two refuses everything: {status}");
    let (status, _, _) = get(&berth.addr, &format!("/v2/two.test/library/busy/blobs/{}", image.layer.digest)).await?;
    ensure!(status == 404, "{status}");
    ensure!(recorded.lock().unwrap().is_empty(), "upstream two was sent {:?}", recorded.lock().unwrap());
    let log = berth.output();
    let basic = base64_of(&format!("alice:{PASSWORD}"));
    ensure!(!log.contains(PASSWORD) && !log.contains(&basic), "a credential is in berth's log");
    ensure!(!log.contains("Bearer ey"), "a token is in berth's log");
    Ok(())
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Runs `berth --root ROOT pull IMAGE` with Docker's configuration folder at `config`.
async fn berth_pull(root: &std::path::Path, config: &std::path::Path, image: &str) -> Result<std::process::Output> {
    let bin = e2e::berth_binary()?;
    let mut command = tokio::process::Command::new(bin);
    command.arg("--root").arg(root).args(["pull", "-q", image]).env("DOCKER_CONFIG", config).kill_on_drop(true);
    Ok(tokio::time::timeout(std::time::Duration::from_secs(300), command.output()).await??)
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_pull_goes_through_its_registry_mirrors_and_falls_back() -> Result<()> {
    if !tools("berth_pull_goes_through_its_registry_mirrors_and_falls_back") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let image = BusyboxImage::build(&dir.path().join("image"))?;
    let upstream = distribution(&[], None).await?;
    push(&image.layout, IMAGE_REF, &format!("{}/library/busy:1", upstream.addr), None).await?;
    let berth = berth_serve(&mirror_section(&format!("http://{}", upstream.addr), "up.test", ""), &[]).await?;

    // `up.test` resolves nowhere: only the mirror can answer.
    let config = dir.path().join("docker");
    std::fs::create_dir_all(&config)?;
    let mirrors = serde_json::json!({ "registry-mirrors": { "up.test": [format!("http://{}", berth.addr)] } });
    std::fs::write(config.join("config.json"), mirrors.to_string())?;
    let out = berth_pull(&dir.path().join("root"), &config, "up.test/library/busy:1").await?;
    ensure!(out.status.success(), "{}", e2e::describe_failure("berth", &["pull"], &out));
    ensure!(metric(&berth, "berth_mirror_misses_total", "up.test").await? >= 3, "pulled through the mirror");

    // A mirror that is down is passed over.
    let dead = format!("http://127.0.0.1:{}", e2e::mirror::free_port()?);
    let mirrors = serde_json::json!({ "registry-mirrors": { upstream.addr.clone(): [dead] } });
    std::fs::write(config.join("config.json"), mirrors.to_string())?;
    let out = berth_pull(&dir.path().join("root2"), &config, &format!("{}/library/busy:1", upstream.addr)).await?;
    ensure!(out.status.success(), "{}", e2e::describe_failure("berth", &["pull"], &out));
    Ok(())
}

/// The containerd socket `ctr` can use here: the system's, or the Docker engine's.
fn containerd_socket() -> Option<&'static str> {
    ["/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock"]
        .into_iter()
        .find(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn ctr_pulls_two_upstreams_through_one_mirror_with_ns() -> Result<()> {
    const TEST: &str = "ctr_pulls_two_upstreams_through_one_mirror_with_ns";
    if !tools(TEST) || !shared::testing::require_root(TEST) {
        return Ok(());
    }
    let Some(socket) = containerd_socket() else {
        shared::testing::skip(TEST, "no containerd is running (Debian's containerd, or the Docker engine's)");
        return Ok(());
    };
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let first = BusyboxImage::build(a.path())?;
    let second = BusyboxImage::build_with(b.path(), |root| Ok(std::fs::write(root.join("etc/two"), "2")?))?;
    let (one, two) = (distribution(&[], None).await?, distribution(&[], None).await?);
    push(&first.layout, IMAGE_REF, &format!("{}/library/busy:1", one.addr), None).await?;
    push(&second.layout, IMAGE_REF, &format!("{}/library/busy:1", two.addr), None).await?;
    let sections = mirror_section(&format!("http://{}", one.addr), "one.test", "")
        + &mirror_section(&format!("http://{}", two.addr), "two.test", "");
    let berth = berth_serve(&sections, &[]).await?;

    // One hosts directory naming berth as the mirror of both (unresolvable) registries.
    let hosts = tempfile::tempdir()?;
    for host in ["one.test", "two.test"] {
        std::fs::create_dir_all(hosts.path().join(host))?;
        let toml = format!(
            "server = \"https://{host}\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            berth.addr
        );
        std::fs::write(hosts.path().join(host).join("hosts.toml"), toml)?;
    }
    let namespace = format!("berth-mirror-{}", std::process::id());
    let hosts_dir = hosts.path().to_str().context("path")?;
    let ctr = |args: Vec<String>| {
        let mut all = vec!["-a".to_string(), socket.to_string(), "-n".into(), namespace.clone()];
        all.extend(args);
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            e2e::run_ok("ctr", &refs).await
        }
    };
    let mut result = Ok(());
    for (image, want) in [("one.test/library/busy:1", &first), ("two.test/library/busy:1", &second)] {
        let fetched =
            ctr(vec!["content".into(), "fetch".into(), "--hosts-dir".into(), hosts_dir.into(), image.into()]).await;
        let listed = match fetched {
            Ok(_) => ctr(vec!["content".into(), "ls".into(), "-q".into()]).await,
            Err(e) => Err(e),
        };
        result = result.and(listed.and_then(|out| {
            let layer = want.layer.digest.to_string();
            ensure!(out.contains(&want.image.digest.to_string()) && out.contains(&layer), "ctr lists {out}");
            Ok(())
        }));
    }
    // Clean the namespace away whatever happened.
    for image in ["one.test/library/busy:1", "two.test/library/busy:1"] {
        let _ = ctr(vec!["images".into(), "rm".into(), image.into()]).await;
    }
    if let Ok(out) = ctr(vec!["content".into(), "ls".into(), "-q".into()]).await {
        let mut args = vec!["content".to_string(), "rm".into()];
        args.extend(out.split_whitespace().map(str::to_string));
        let _ = ctr(args).await;
    }
    let _ = e2e::run("ctr", &["-a", socket, "namespaces", "rm", &namespace]).await;
    result?;
    for host in ["one.test", "two.test"] {
        ensure!(metric(&berth, "berth_mirror_misses_total", host).await? >= 3, "{host} was fetched through berth");
    }
    Ok(())
}

/// Sets the modification time of every file below `dir` to `age` ago: the cache's content as
/// if it had been fetched, and last pulled, that long ago.
fn age_files(dir: &std::path::Path, age: std::time::Duration) -> Result<()> {
    let when = std::time::SystemTime::now() - age;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            age_files(&entry.path(), age)?;
        } else {
            std::fs::File::open(entry.path())?.set_modified(when)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_evicts_what_was_not_pulled_within_its_age() -> Result<()> {
    if !tools("a_mirror_evicts_what_was_not_pulled_within_its_age") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (kept_layout, _, kept) = random_image(&dir.path().join("kept"), "kept", 21, 1, 256 << 10)?;
    let (gone_layout, _, gone) = random_image(&dir.path().join("gone"), "gone", 22, 1, 256 << 10)?;
    let upstream = distribution(&[], None).await?;
    push(&kept_layout, "kept", &format!("{}/app/kept:1", upstream.addr), None).await?;
    push(&gone_layout, "gone", &format!("{}/app/gone:1", upstream.addr), None).await?;
    let section = mirror_section(
        &format!("http://{}", upstream.addr),
        "up.test",
        "evict_after = \"1h\"\ntag_ttl_secs = 100000000",
    ) + "[gc]\ngrace_secs = 0\n";
    let berth = berth_serve(&section, &[]).await?;
    pull_image(&berth.addr, "up.test/app/kept", &kept).await?;
    pull_image(&berth.addr, "up.test/app/gone", &gone).await?;

    // Two hours later, only `kept` is pulled again.
    age_files(&berth.dir().join("data"), std::time::Duration::from_secs(7200))?;
    pull_image(&berth.addr, "up.test/app/kept", &kept).await?;
    let bin = e2e::berth_binary()?;
    let config = berth.dir().join("berth.toml");
    let report =
        e2e::run_ok(bin.to_str().context("path")?, &["gc", "--config", config.to_str().context("path")?]).await?;
    ensure!(
        report.contains("repository up.test/app/gone:") && report.contains("evict_after 1h"),
        "the gc report: {report}"
    );
    ensure!(!report.contains("up.test/app/kept"), "the pulled image was evicted: {report}");

    // The evicted image is fetched again (each of its blobs once more); the kept one is not.
    let before = upstream.blob_gets();
    pull_image(&berth.addr, "up.test/app/gone", &gone).await?;
    pull_image(&berth.addr, "up.test/app/kept", &kept).await?;
    let after = upstream.blob_gets();
    let fetched = |blobs: &BTreeMap<Digest, Vec<u8>>| {
        blobs.keys().map(|d| d.to_string()).filter(|d| after.get(d) != before.get(d)).count()
    };
    ensure!(fetched(&gone) == 2, "the evicted image's config and layer are fetched again: {after:?}");
    ensure!(fetched(&kept) == 0, "the kept image is served from the cache: {after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_pulls_through_a_registries_conf_mirror() -> Result<()> {
    const TEST: &str = "podman_pulls_through_a_registries_conf_mirror";
    if !tools(TEST) || !shared::testing::require_root(TEST) || require_tools(&["podman"]).is_err() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let image = BusyboxImage::build(&dir.path().join("image"))?;
    let upstream = distribution(&[], None).await?;
    push(&image.layout, IMAGE_REF, &format!("{}/library/busy:1", upstream.addr), None).await?;
    let berth = berth_serve(&mirror_section(&format!("http://{}", upstream.addr), "up.test", ""), &[]).await?;

    // `up.test` resolves nowhere: only the mirror (through its path prefix) can answer.
    let registries = dir.path().join("registries.conf");
    std::fs::write(
        &registries,
        format!(
            "unqualified-search-registries = []\n[[registry]]\nprefix = \"up.test\"\nlocation = \"up.test\"\n\
             [[registry.mirror]]\nlocation = \"{}/up.test\"\ninsecure = true\n",
            berth.addr
        ),
    )?;
    let containers_conf = dir.path().join("containers.conf");
    std::fs::write(&containers_conf, "[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\n")?;
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#)?;
    let (root, runroot) = (dir.path().join("storage"), dir.path().join("run"));
    let storage_conf = dir.path().join("storage.conf");
    std::fs::write(
        &storage_conf,
        format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            runroot.display(),
            root.display()
        ),
    )?;
    let podman = |args: &[&str]| {
        let mut command = tokio::process::Command::new("podman");
        command
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", &containers_conf)
            .env("CONTAINERS_REGISTRIES_CONF", &registries)
            .env("REGISTRIES_CONFIG_PATH", &registries)
            .env("CONTAINERS_STORAGE_CONF", &storage_conf)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        let shown: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let out = tokio::time::timeout(std::time::Duration::from_secs(300), command.output()).await??;
            let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
            ensure!(out.status.success(), "{}", e2e::describe_failure("podman", &shown, &out));
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let policy_flag = format!("--signature-policy={}", policy.display());
    podman(&["pull", "-q", &policy_flag, "up.test/library/busy:1"]).await?;
    let digest = podman(&["image", "inspect", "--format", "{{.Digest}}", "up.test/library/busy:1"]).await?;
    ensure!(digest.trim() == image.image.digest.to_string(), "podman has {digest}, wanted {}", image.image.digest);
    ensure!(metric(&berth, "berth_mirror_misses_total", "up.test").await? >= 3, "pulled through the mirror");
    // Its storage is a temporary folder, removed with `dir`: nothing to clean in the system's.
    Ok(())
}
