//! Helpers of the pull-through cache tests (`tests/tests/mirror.rs`): Debian's distribution
//! 2.8.2 (`docker-registry`) as an upstream on a loopback port, plain or with htpasswd, whose
//! access log tells which blobs were fetched; `berth serve` as a separate process with its log
//! in a file; an image of random layers of a chosen size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use shared::layout::Layout;
use shared::manifest::Descriptor;
use shared::{media_type, Digest};

/// Debian's distribution 2.8.2 binary.
pub const DISTRIBUTION: &str = "/usr/bin/docker-registry";

/// A free loopback port (bound, read, released).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something answers HTTP at `http://addr/v2/` (any status), for a child that
/// is starting; fails when `child` exits first or after a minute.
async fn wait_ready(addr: &str, child: &mut tokio::process::Child, log: &Path) -> Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Some(status) = child.try_wait()? {
            bail!("{addr}: the server exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        if client.get(format!("http://{addr}/v2/")).send().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{addr}: the server did not answer within a minute")
}

/// A process serving on a loopback port, killed when dropped, its output in a file.
#[derive(Debug)]
pub struct Server {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Standard output and error.
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
    dir: tempfile::TempDir,
}

impl Server {
    async fn spawn(
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        addr: String,
        dir: tempfile::TempDir,
    ) -> Result<Server> {
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log)?;
        let mut command = tokio::process::Command::new(program);
        command.args(args).kill_on_drop(true).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().with_context(|| format!("cannot run {program}"))?;
        wait_ready(&addr, &mut child, &log).await?;
        Ok(Server { addr, log, child: Some(child), dir })
    }

    /// Stops the process (and waits for it).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// The folder the server keeps its files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// From distribution's access log: how many `GET`s of each blob were answered 200.
    pub fn blob_gets(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for line in self.output().lines() {
            let Some(request) = line.split('"').nth(1) else { continue };
            let (Some(rest), Some(after)) = (request.strip_prefix("GET /v2/"), line.split('"').nth(2)) else {
                continue;
            };
            if !after.trim_start().starts_with("200") {
                continue;
            }
            let Some((_, digest)) = rest.split(' ').next().and_then(|p| p.split_once("/blobs/")) else { continue };
            *counts.entry(digest.to_string()).or_insert(0) += 1;
        }
        counts
    }
}

/// Starts distribution 2.8.2 on a free loopback port, with its access log on; with `users`,
/// behind htpasswd (basic) authentication; with `proxy`, as a pull-through cache of that URL.
pub async fn distribution(users: &[(&str, &str)], proxy: Option<&str>) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut config = format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        dir.path().join("data").display()
    );
    if !users.is_empty() {
        let mut lines = String::new();
        for (user, password) in users {
            lines.push_str(&format!("{user}:{}\n", registry::auth::accounts::hash_password(password, 4)?));
        }
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, lines)?;
        config.push_str(&format!("auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n", file.display()));
    }
    if let Some(url) = proxy {
        config.push_str(&format!("proxy:\n  remoteurl: {url}\n"));
    }
    let file = dir.path().join("config.yml");
    std::fs::write(&file, config)?;
    let file = file.to_str().context("path")?.to_string();
    Server::spawn(DISTRIBUTION, &["serve", &file], &[], addr, dir).await
}

/// Starts `berth serve` on a free loopback port with `extra` appended to its configuration
/// (the `[[mirror]]` sections), logging at debug level to its log file.
pub async fn berth_serve(extra: &str, env: &[(&str, &str)]) -> Result<Server> {
    berth_serve_on(None, extra, env).await
}

/// [`berth_serve`] with `storage` (a `[storage.s3]` section) instead of a filesystem storage
/// in the server's folder.
pub async fn berth_serve_on(storage: Option<&str>, extra: &str, env: &[(&str, &str)]) -> Result<Server> {
    let bin = crate::berth_binary()?;
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let storage = match storage {
        Some(s) => s.to_string(),
        None => format!("[storage.filesystem]\nroot = \"{}\"\nfsync = false\n", dir.path().join("data").display()),
    };
    let config = format!("addr = \"{addr}\"\nlog_level = \"debug\"\n{storage}{extra}");
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, config)?;
    let file = file.to_str().context("path")?.to_string();
    Server::spawn(bin.to_str().context("path")?, &["serve", "-c", &file], env, addr, dir).await
}

/// Writes an image of `layers` layers of `layer_bytes` pseudo-random bytes each (different
/// for each `seed`) into a new layout at `dir`, named `name`; returns the layout, the
/// manifest's descriptor and every blob's bytes.
pub fn random_image(
    dir: &Path,
    name: &str,
    seed: u64,
    layers: usize,
    layer_bytes: usize,
) -> Result<(Layout, Descriptor, BTreeMap<Digest, Vec<u8>>)> {
    let layout = Layout::create(dir)?;
    let mut blobs = BTreeMap::new();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut descriptors = Vec::new();
    for _ in 0..layers {
        let mut data = Vec::with_capacity(layer_bytes);
        while data.len() < layer_bytes {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data.truncate(layer_bytes);
        let digest = layout.add_blob(&data)?;
        descriptors.push(json!({ "mediaType": media_type::OCI_LAYER_TAR, "digest": digest, "size": data.len() }));
        blobs.insert(digest, data);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": [] }, "seed": seed,
    }))?;
    let config_digest = layout.add_blob(&config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": { "mediaType": media_type::OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": descriptors,
    }))?;
    blobs.insert(config_digest, config);
    let desc = layout.add_manifest(media_type::OCI_MANIFEST, &manifest, Some(name))?;
    Ok((layout, desc, blobs))
}

/// Pushes `name` of `layout` to `docker://{dest}` with skopeo (over plain HTTP), with
/// `creds` (`user:password`) when given.
pub async fn push(layout: &Layout, name: &str, dest: &str, creds: Option<&str>) -> Result<()> {
    let src = format!("oci:{}:{name}", layout.root().display());
    let dest = format!("docker://{dest}");
    let mut args = vec!["copy", "--preserve-digests", "--dest-tls-verify=false"];
    let flag;
    if let Some(c) = creds {
        flag = format!("--dest-creds={c}");
        args.push(&flag);
    }
    args.extend([src.as_str(), dest.as_str()]);
    crate::skopeo(&args).await.map(|_| ())
}
