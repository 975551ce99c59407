//! Helpers shared by the end-to-end tests in `tests/tests/`: a busybox image built from the
//! host's static busybox and written as an OCI image layout, a berth registry started
//! in-process on a loopback port, and a runner for third-party clients (skopeo, docker)
//! that fails with their output when they fail.
//!
//! The tests need `/bin/busybox` (Debian's `busybox-static`) and `skopeo`; the test command
//! installs both (`apt-get install -y busybox-static skopeo`). Set `BERTH_TEST_LOG` to a
//! `tracing` filter (e.g. `debug`) to see the server's log while a test runs.

pub mod build;
pub mod containers;
pub mod debian;
pub mod mirror;
pub mod s3;
pub mod webdriver;

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use shared::layer::{self, Layer, LayerOptions};
use shared::layout::Layout;
use shared::manifest::{Descriptor, Manifest, Platform};
use shared::{media_type, Digest};

/// The static busybox the image is built from.
pub const BUSYBOX: &str = "/bin/busybox";

/// The ref name of the single-platform image in the layout's `index.json`.
pub const IMAGE_REF: &str = "v1";

/// The ref name of the two-platform index in the layout's `index.json`.
pub const INDEX_REF: &str = "multi";

/// The busybox applets linked in `bin/`.
pub const APPLETS: &[&str] = &["sh", "ls", "echo", "cat", "true", "false", "env", "pwd", "sleep", "uname", "wc"];

/// How long one client command may run before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Docker Compose v2 or later, if installed: `$COMPOSE_V2`, else the first `docker-compose`
/// on the `PATH` whose `version --short` is 2 or more (Debian's is v1).
pub fn compose_v2() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("COMPOSE_V2").map(PathBuf::from).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("docker-compose")));
    }
    candidates.into_iter().find(|c| {
        std::process::Command::new(c).args(["version", "--short"]).output().is_ok_and(|o| {
            let v = String::from_utf8_lossy(&o.stdout);
            o.status.success()
                && v.trim()
                    .trim_start_matches('v')
                    .split('.')
                    .next()
                    .and_then(|m| m.parse::<u32>().ok())
                    .is_some_and(|m| m >= 2)
        })
    })
}

/// Fails with an install hint unless every program in `programs` can be run.
pub fn require_tools(programs: &[&str]) -> Result<()> {
    for program in programs {
        let found = std::process::Command::new(program)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        ensure!(
            found,
            "`{program}` is not installed; the end-to-end tests need it (apt-get install -y busybox-static skopeo)"
        );
    }
    ensure!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing; the end-to-end tests build their image from it (apt-get install -y busybox-static)"
    );
    Ok(())
}

/// Writes a minimal root filesystem to `dest`: `bin/busybox` and links to it for
/// [`APPLETS`], the empty directories a container runtime expects, and an `/etc/passwd`
/// and `/etc/group` with `root` and an `app` user (1000, also in group `wheel`).
pub fn busybox_rootfs(dest: &Path) -> Result<()> {
    let bin = dest.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for dir in ["dev", "etc", "proc", "sys", "tmp", "root"] {
        fs::create_dir_all(dest.join(dir))?;
    }
    fs::set_permissions(dest.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::write(dest.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")?;
    fs::write(dest.join("etc/group"), "root:x:0:\nwheel:x:10:app\napp:x:1000:\n")?;
    fs::copy(BUSYBOX, bin.join("busybox")).with_context(|| format!("copying {BUSYBOX}"))?;
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))?;
    for applet in APPLETS {
        symlink("busybox", bin.join(applet))?;
    }
    Ok(())
}

/// A busybox image written as an OCI image layout: one linux/amd64 image named
/// [`IMAGE_REF`], and an index named [`INDEX_REF`] of a linux/amd64 and a linux/arm64 image
/// (the arm64 one reuses the same layer and is never run). All three manifests differ, so
/// deleting one leaves the others whole.
#[derive(Debug)]
pub struct BusyboxImage {
    /// The layout directory.
    pub layout: Layout,
    /// The root filesystem the layer was made from.
    pub rootfs: PathBuf,
    /// The gzip layer as a file (also a blob of the layout).
    pub layer_file: PathBuf,
    /// The layer's digests.
    pub layer: Layer,
    /// The linux/amd64 image manifest, as listed in `index.json`.
    pub image: Descriptor,
    /// The two-platform index, as listed in `index.json`.
    pub index: Descriptor,
}

impl BusyboxImage {
    /// Builds everything under `dir`.
    pub fn build(dir: &Path) -> Result<BusyboxImage> {
        BusyboxImage::build_with(dir, |_| Ok(()))
    }

    /// Builds everything under `dir`, with `change` making the busybox root file system
    /// (given its path) different first.
    pub fn build_with(dir: &Path, change: impl FnOnce(&Path) -> Result<()>) -> Result<BusyboxImage> {
        let rootfs = dir.join("rootfs");
        busybox_rootfs(&rootfs)?;
        change(&rootfs)?;
        let layer_file = dir.join("layer.tar.gz");
        let options = LayerOptions { uid: Some(0), gid: Some(0), ..LayerOptions::default() };
        let layer = layer::write_layer_to_file(&rootfs, &options, &layer_file)?;

        let layout = Layout::create(dir.join("layout"))?;
        layout.add_blob_file(&layer_file, Some(&layer.digest))?;
        let single = image_manifest(&layout, &layer, "amd64", "single image")?;
        let image = layout.add_manifest(media_type::OCI_MANIFEST, &single, Some(IMAGE_REF))?;

        let mut children = Vec::new();
        for architecture in ["amd64", "arm64"] {
            let body = image_manifest(&layout, &layer, architecture, "index entry")?;
            let mut child = layout.add_manifest(media_type::OCI_MANIFEST, &body, None)?;
            child.platform = Some(Platform { architecture: architecture.into(), os: "linux".into(), variant: None });
            children.push(child);
        }
        let index_body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": children,
        }))?;
        let index = layout.add_manifest(media_type::OCI_INDEX, &index_body, Some(INDEX_REF))?;
        Ok(BusyboxImage { layout, rootfs, layer_file, layer, image, index })
    }
}

/// Writes the config for `architecture` (its history noting `what`, so the single image and
/// the index's amd64 entry are different manifests) and returns the manifest's bytes, for
/// the caller to store.
fn image_manifest(layout: &Layout, layer: &Layer, architecture: &str, what: &str) -> Result<Vec<u8>> {
    let config = serde_json::to_vec(&json!({
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        "history": [{ "created_by": "berth e2e: busybox-static", "comment": what }],
    }))?;
    let config_digest = layout.add_blob(&config)?;
    let config = Descriptor {
        media_type: media_type::OCI_CONFIG.into(),
        digest: config_digest,
        size: config.len() as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
        urls: None,
    };
    Ok(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config,
        "layers": [layer.descriptor()],
    }))?)
}

/// Every digest reachable from `root` in `layout`: the manifest itself, its config and
/// layers, and for an index its children, recursively. Each manifest is read (and so
/// checked against its digest) on the way.
pub fn reachable(layout: &Layout, root: &Descriptor) -> Result<BTreeSet<Digest>> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.clone()];
    while let Some(desc) = pending.pop() {
        if !found.insert(desc.digest.clone()) {
            continue;
        }
        let body = layout.read_blob(&desc.digest)?;
        let manifest = Manifest::parse(&body, Some(&desc.media_type))
            .with_context(|| format!("manifest {} in {}", desc.digest, layout.root().display()))?;
        found.extend(manifest.config.iter().chain(&manifest.layers).map(|d| d.digest.clone()));
        pending.extend(manifest.manifests);
    }
    Ok(found)
}

/// Checks that `copy` holds byte-identical content for everything reachable from `root`
/// in `original`, and that its `index.json` names the same manifest under `name`.
pub fn assert_same_content(original: &Layout, copy: &Layout, root: &Descriptor, name: &str) -> Result<()> {
    let copied = copy.resolve(name)?;
    ensure!(
        copied.digest == root.digest && copied.media_type == root.media_type,
        "{name}: copied back as {} ({}), pushed as {} ({})",
        copied.digest,
        copied.media_type,
        root.digest,
        root.media_type
    );
    let digests = reachable(original, root)?;
    ensure!(reachable(copy, &copied)? == digests, "{name}: the copy refers to different content");
    for digest in &digests {
        let (a, b) = (original.read_blob(digest)?, copy.read_blob(digest)?);
        ensure!(a == b, "{name}: blob {digest} differs after the round trip");
    }
    Ok(())
}

/// A berth registry serving from a temporary directory on a loopback port, for as long as
/// the test's runtime lives.
#[derive(Debug)]
pub struct Registry {
    /// The address it listens on.
    pub addr: SocketAddr,
    _root: tempfile::TempDir,
}

impl Registry {
    /// Starts the server on `127.0.0.1:0` (needs a multi-threaded runtime, so it keeps
    /// serving while a test waits on a client).
    pub async fn start() -> Result<Registry> {
        Registry::start_with(|_| {}).await
    }

    /// Starts the server like [`Registry::start`], with `configure` adjusting the settings
    /// (access control, say) first.
    pub async fn start_with(configure: impl FnOnce(&mut registry::Config)) -> Result<Registry> {
        init_logging();
        let root = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = registry::Config::default();
        config.storage.filesystem.root = root.path().to_path_buf();
        configure(&mut config);
        let server = tokio::spawn(registry::serve_on(listener, config, std::future::pending()));
        // A server that cannot start returns at once; say why instead of letting clients
        // fail to connect.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if server.is_finished() {
            match server.await? {
                Ok(()) => bail!("the registry stopped at once"),
                Err(e) => return Err(e).context("starting the registry"),
            }
        }
        Ok(Registry { addr, _root: root })
    }

    /// The folder the registry stores into.
    pub fn root(&self) -> &Path {
        self._root.path()
    }

    /// `127.0.0.1:PORT`, the registry host part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// Sends the server's logs to the test output when `BERTH_TEST_LOG` holds a filter (`debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("BERTH_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// Runs `program` with `args`, with a time limit, and returns what it did.
pub async fn run(program: &str, args: &[&str]) -> Result<Output> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .with_context(|| format!("`{program} {}` took longer than {COMMAND_TIMEOUT:?}", args.join(" ")))?
        .with_context(|| format!("cannot run `{program}`"))?;
    Ok(output)
}

/// Runs `program` with `args` and returns its standard output; fails with the command line
/// and the end of its output unless it exits 0.
pub async fn run_ok(program: &str, args: &[&str]) -> Result<String> {
    let output = run(program, args).await?;
    if !output.status.success() {
        bail!("{}", describe_failure(program, args, &output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The command line, exit status and the tail of both output streams.
pub fn describe_failure(program: &str, args: &[&str], output: &Output) -> String {
    format!(
        "`{program} {}` failed ({})\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        args.join(" "),
        output.status,
        tail(&output.stdout, 60),
        tail(&output.stderr, 120)
    )
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs skopeo with `--insecure-policy` (no signature policy file needed) and `--debug`
/// (so a failure shows the HTTP exchange) before `args`; returns standard output.
pub async fn skopeo(args: &[&str]) -> Result<String> {
    let mut all = vec!["--insecure-policy", "--debug"];
    all.extend_from_slice(args);
    run_ok("skopeo", &all).await
}

/// The tags `skopeo list-tags` reports for `repo` (`HOST/NAME`).
pub async fn list_tags(repo: &str) -> Result<BTreeSet<String>> {
    let out = skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{repo}")]).await?;
    let listing: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("list-tags printed {out:?}"))?;
    let tags = listing["Tags"].as_array().with_context(|| format!("list-tags printed {out:?}"))?;
    Ok(tags.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
}

/// True when a Docker engine answers; false (after printing `SKIP <test>: ...`) when it does
/// not, unless `CI=true`, where a missing engine is a failure (a panic, by
/// [`shared::testing::skip`]).
pub async fn docker_available(test: &str) -> Result<bool> {
    let info = run("docker", &["info", "--format", "{{.ServerVersion}}"]).await;
    let problem = match &info {
        Ok(out) if out.status.success() => return Ok(true),
        Ok(out) => describe_failure("docker", &["info"], out),
        Err(e) => format!("{e:#}"),
    };
    shared::testing::skip(test, &format!("no Docker engine available ({problem})"));
    Ok(false)
}

/// The `berth` binary next to the test executable (`target/<profile>/berth`).
pub fn berth_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no parent directory")?;
    let bin = dir.join("berth");
    if !bin.is_file() {
        bail!("{} is missing; build it with `cargo build -p berth-cli` (cargo test --workspace does)", bin.display());
    }
    Ok(bin)
}

/// Runs `berth --root ROOT ARGS...`; its standard output, or an error that shows both outputs.
pub async fn berth(root: &Path, args: &[&str]) -> Result<String> {
    let bin = berth_binary()?;
    let mut all = vec!["--root", root.to_str().context("root path is not UTF-8")?];
    all.extend_from_slice(args);
    let output = run(bin.to_str().context("binary path is not UTF-8")?, &all).await?;
    if !output.status.success() {
        bail!("{}", describe_failure("berth", &all, &output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_reproducible_and_the_comparison_notices_changes() -> Result<()> {
        require_tools(&[])?;
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let (first, second) = (BusyboxImage::build(a.path())?, BusyboxImage::build(b.path())?);
        assert_eq!(first.image, second.image);
        assert_eq!(first.index, second.index);
        assert_eq!(reachable(&first.layout, &first.index)?.len(), 6, "index, 2 manifests, 2 configs, 1 layer");
        assert_same_content(&first.layout, &second.layout, &first.image, IMAGE_REF)?;
        assert_same_content(&first.layout, &second.layout, &first.index, INDEX_REF)?;

        // A copy whose config blob was rewritten under the same name is caught.
        let manifest = Manifest::parse(&second.layout.read_blob(&second.image.digest)?, None)?;
        let config = manifest.config.context("config")?;
        fs::write(second.layout.blob_path(&config.digest), b"{}")?;
        assert!(assert_same_content(&first.layout, &second.layout, &first.image, IMAGE_REF).is_err());
        // And so is a copy that names another manifest.
        assert!(assert_same_content(&first.layout, &second.layout, &first.index, IMAGE_REF).is_err());
        Ok(())
    }
}
