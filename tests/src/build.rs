//! Helpers for the builder's end-to-end tests (`tests/tests/build.rs`, `build_buildah.rs`,
//! `build_fidelity.rs`): a busybox base image pushed into an in-process berth registry, the
//! `berth` binary run with a private store root, images read back from OCI layouts or
//! skopeo/buildah `dir:` copies and flattened into plain trees, trees compared file by file,
//! and the differential harness: the same context built by berth and by a [`Reference`]
//! (buildah, or the Docker engine's BuildKit) and compared by [`image_differences`].

use std::collections::BTreeMap;
use std::fs;
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use runtime::unpack::{self, UnpackMode};
use shared::client::Client;
use shared::layout::Layout;
use shared::manifest::{Descriptor, Manifest};
use shared::{Digest, ImageRef};

use crate::{run, run_ok, BusyboxImage, Registry};

/// A registry with the busybox image pushed as `<host>/e2e/busybox:v1`.
#[derive(Debug)]
pub struct BaseRegistry {
    /// The registry.
    pub registry: Registry,
    /// `<host>/e2e/busybox:v1`.
    pub base: String,
    _work: tempfile::TempDir,
}

impl BaseRegistry {
    /// Starts a registry and pushes the busybox image into it.
    pub async fn start() -> Result<BaseRegistry> {
        let work = tempfile::tempdir()?;
        let image = BusyboxImage::build(work.path())?;
        let registry = Registry::start().await?;
        let base = format!("{}/e2e/busybox:v1", registry.host());
        let target: ImageRef = base.parse()?;
        let client = Client::anonymous()?;
        let body = image.layout.read_blob(&image.image.digest)?;
        let manifest = Manifest::parse(&body, Some(&image.image.media_type))?;
        for blob in manifest.config.iter().chain(&manifest.layers) {
            let file = tokio::fs::File::open(image.layout.blob_path(&blob.digest)).await?;
            client.push_blob(&target, &blob.digest, blob.size, file, None).await?;
        }
        client.push_manifest(&target, &target.reference(), &image.image.media_type, body.into()).await?;
        Ok(BaseRegistry { registry, base, _work: work })
    }
}

/// The `berth` binary next to the test executable (`target/<profile>/berth`).
pub fn berth_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no parent directory")?;
    let bin = dir.join("berth");
    ensure!(bin.is_file(), "{} is missing; build it with `cargo build -p berth-cli`", bin.display());
    Ok(bin)
}

/// What a `berth` run did.
#[derive(Debug)]
pub struct Ran {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (where build progress goes).
    pub stderr: String,
}

/// Runs `berth --root ROOT ARGS…`.
pub async fn berth(root: &Path, args: &[&str]) -> Result<Ran> {
    let bin = berth_binary()?;
    let mut all = vec!["--root", root.to_str().context("root path is not UTF-8")?];
    all.extend_from_slice(args);
    let output = run(bin.to_str().context("binary path is not UTF-8")?, &all).await?;
    Ok(Ran {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs `berth --root ROOT ARGS…` and fails with its output unless it succeeds.
pub async fn berth_ok(root: &Path, args: &[&str]) -> Result<Ran> {
    let ran = berth(root, args).await?;
    if !ran.ok {
        bail!("`berth {}` failed\n--- stdout ---\n{}\n--- stderr ---\n{}", args.join(" "), ran.stdout, ran.stderr);
    }
    Ok(ran)
}

/// An image read back: its config (JSON) and its layer blobs on disk, bottom first.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    /// The manifest's digest.
    pub manifest: Digest,
    /// The config.
    pub config: serde_json::Value,
    /// The layer descriptors.
    pub layers: Vec<Descriptor>,
    /// The layer blobs.
    pub blobs: Vec<PathBuf>,
}

/// Reads the image named `name` from the OCI layout at `dir`.
pub fn read_layout(dir: &Path, name: &str) -> Result<ImageFiles> {
    let layout = Layout::open(dir)?;
    let desc = layout.resolve(name)?;
    let body = layout.read_blob(&desc.digest)?;
    let manifest = Manifest::parse(&body, Some(&desc.media_type))?;
    let config_desc = manifest.config.context("no config")?;
    let config = serde_json::from_slice(&layout.read_blob(&config_desc.digest)?)?;
    let blobs = manifest.layers.iter().map(|l| layout.blob_path(&l.digest)).collect();
    Ok(ImageFiles { manifest: desc.digest, config, layers: manifest.layers, blobs })
}

/// Reads an image from a `dir:` copy (skopeo's and buildah's directory transport).
pub fn read_dir_transport(dir: &Path) -> Result<ImageFiles> {
    let body = fs::read(dir.join("manifest.json"))?;
    let manifest = Manifest::parse(&body, None)?;
    let config_desc = manifest.config.context("no config")?;
    let config = serde_json::from_slice(&fs::read(dir.join(config_desc.digest.hex()))?)?;
    let blobs = manifest.layers.iter().map(|l| dir.join(l.digest.hex())).collect();
    Ok(ImageFiles { manifest: Digest::sha256_of(&body), config, layers: manifest.layers, blobs })
}

/// Applies the image's layers in order into the new directory `dest`.
pub fn flatten(image: &ImageFiles, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    for blob in &image.blobs {
        let file = fs::File::open(blob).with_context(|| format!("opening {}", blob.display()))?;
        unpack::unpack(BufReader::new(file), dest, UnpackMode::Flatten, None)
            .with_context(|| format!("applying {}", blob.display()))?;
    }
    Ok(())
}

/// What a tree holds at one path: type, mode, owners, and content or link target.
pub type TreeListing = BTreeMap<String, String>;

/// Lists a tree: for each path, `kind mode uid:gid` and the content's digest or the
/// link's target. Modification times are left out (reproducible builds set them all).
pub fn list_tree(root: &Path) -> Result<TreeListing> {
    let mut out = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for item in fs::read_dir(root.join(&rel))? {
            let item = item?;
            let child = rel.join(item.file_name());
            let path = root.join(&child);
            let meta = fs::symlink_metadata(&path)?;
            let t = meta.file_type();
            let what = if t.is_dir() {
                pending.push(child.clone());
                "dir".to_string()
            } else if t.is_symlink() {
                format!("link -> {}", fs::read_link(&path)?.display())
            } else if t.is_file() {
                format!("file {}", Digest::sha256_of(&fs::read(&path)?))
            } else {
                "special".to_string()
            };
            let mode = if t.is_symlink() { 0o777 } else { meta.mode() & 0o7777 };
            out.insert(child.to_string_lossy().into_owned(), format!("{what} {mode:o} {}:{}", meta.uid(), meta.gid()));
        }
    }
    Ok(out)
}

/// Replaces the content digests of the files under `volatile` with a placeholder.
fn forget_contents(tree: &mut TreeListing, volatile: &[&str]) {
    for (path, what) in tree.iter_mut() {
        let under = volatile.iter().any(|v| path == v || path.strip_prefix(v).is_some_and(|r| r.starts_with('/')));
        if under && what.starts_with("file ") {
            // `file sha256:… MODE UID:GID`: keep the kind, mode and owners.
            let rest: Vec<&str> = what.splitn(3, ' ').collect();
            *what = format!("file (content not compared) {}", rest.get(2).unwrap_or(&""));
        }
    }
}

/// The differences between two listings, one line each (empty when equal).
pub fn tree_differences(a: &TreeListing, b: &TreeListing) -> Vec<String> {
    let mut diffs = Vec::new();
    for (path, what) in a {
        match b.get(path) {
            None => diffs.push(format!("only in berth's: {path} ({what})")),
            Some(other) if other != what => diffs.push(format!("{path}: berth {what} / other {other}")),
            Some(_) => {}
        }
    }
    for (path, what) in b {
        if !a.contains_key(path) {
            diffs.push(format!("only in the other: {path} ({what})"));
        }
    }
    diffs
}

/// Writes `files` (path, content) under `dir`, creating directories.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (path, content) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, content)?;
    }
    Ok(())
}

/// A reference builder for the differential tests: the same Dockerfile and context built by
/// berth and by the reference must give the same root file system and image config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Debian's buildah: `buildah bud --layers --timestamp 0 --isolation chroot`.
    Buildah,
    /// BuildKit as the Docker engine 20.10 runs it: `DOCKER_BUILDKIT=1` with the engine's own
    /// client ([`DOCKER_20_10`]; the newer client on the PATH wants buildx). Its Dockerfile
    /// frontend is older than today's.
    BuildKit,
}

/// The Docker 20.10 client, which still builds with the engine's BuildKit directly.
pub const DOCKER_20_10: &str = "/usr/bin/docker";

impl Reference {
    /// What its RUN steps leave in images that berth's must not have, left out of its side
    /// of the comparison: buildah leaves empty `/etc/hostname`, `/etc/hosts`,
    /// `/etc/resolv.conf` and `/run` behind; BuildKit removes its mount stubs.
    pub fn leaks(self) -> &'static [&'static str] {
        match self {
            Reference::Buildah => &["etc/hostname", "etc/hosts", "etc/resolv.conf", "run"],
            Reference::BuildKit => &[],
        }
    }

    /// Builds the context `ctx` with `build_args` (`K=V`) as image `tag` (a unique name,
    /// removed again), and reads the image back through a `dir:` copy at `out`.
    pub async fn build(self, tag: &str, ctx: &Path, build_args: &[String], out: &Path) -> Result<ImageFiles> {
        let ctx = ctx.to_str().context("context path is not UTF-8")?;
        let out_text = out.to_str().context("output path is not UTF-8")?;
        let mut args: Vec<String> = Vec::new();
        for a in build_args {
            args.push("--build-arg".into());
            args.push(a.clone());
        }
        match self {
            Reference::Buildah => {
                let mut bud: Vec<String> = ["bud", "--layers", "--timestamp", "0", "--isolation", "chroot"]
                    .iter()
                    .chain(&["--format", "docker", "--tls-verify=false", "-q"])
                    .map(|s| s.to_string())
                    .collect();
                bud.extend(args);
                bud.extend(["-t".into(), tag.into(), ctx.into()]);
                run_ok("buildah", &bud.iter().map(String::as_str).collect::<Vec<_>>()).await?;
                let pushed = run_ok("buildah", &["push", "-q", tag, &format!("dir:{out_text}")]).await;
                let _ = run("buildah", &["rmi", "-f", tag]).await;
                pushed?;
            }
            Reference::BuildKit => {
                let mut build: Vec<String> =
                    ["DOCKER_BUILDKIT=1", DOCKER_20_10, "build", "--progress", "plain"].map(String::from).to_vec();
                build.extend(args);
                build.extend(["-t".into(), tag.into(), ctx.into()]);
                run_ok("env", &build.iter().map(String::as_str).collect::<Vec<_>>()).await?;
                let archive = format!("{out_text}.tar");
                let saved = run_ok(DOCKER_20_10, &["save", "-o", &archive, tag]).await;
                let _ = run(DOCKER_20_10, &["rmi", "-f", tag]).await;
                saved?;
                crate::skopeo(&["copy", &format!("docker-archive:{archive}"), &format!("dir:{out_text}")]).await?;
                let _ = fs::remove_file(&archive);
            }
        }
        read_dir_transport(out)
    }

    /// Builds the context `ctx` and expects it to fail; returns the reference's output.
    pub async fn build_fails(self, tag: &str, ctx: &Path) -> Result<String> {
        let ctx = ctx.to_str().context("context path is not UTF-8")?;
        let output = match self {
            Reference::Buildah => run("buildah", &["bud", "--isolation", "chroot", "-q", "-t", tag, ctx]).await?,
            Reference::BuildKit => {
                run("env", &["DOCKER_BUILDKIT=1", DOCKER_20_10, "build", "--progress", "plain", "-t", tag, ctx]).await?
            }
        };
        ensure!(!output.status.success(), "the reference built {ctx}, which should fail");
        Ok(format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
    }
}

/// Fails unless the Docker 20.10 client is there; false (SKIP, or a failure under
/// `CI=true`) without an engine.
pub async fn buildkit_available(test: &str) -> Result<bool> {
    if !crate::docker_available(test).await? {
        return Ok(false);
    }
    ensure!(
        Path::new(DOCKER_20_10).is_file(),
        "{DOCKER_20_10} is missing: the BuildKit reference needs the Docker 20.10 client (apt-get install -y docker.io)"
    );
    Ok(true)
}

/// Builds the context `ctx` with `berth build` (store at `root`, `build_args` as `K=V`) into
/// an OCI layout at `out`, and reads the image back.
pub async fn berth_build(root: &Path, ctx: &Path, build_args: &[String], out: &Path) -> Result<ImageFiles> {
    let mut args: Vec<String> = vec!["build".into(), "--progress".into(), "plain".into()];
    for a in build_args {
        args.push("--build-arg".into());
        args.push(a.clone());
    }
    args.extend(["--output".into(), format!("type=oci,dest={}", out.display()), ctx.display().to_string()]);
    berth_ok(root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    read_layout(out, "latest")
}

/// The config fields the differential comparison covers (Env, Cmd, Entrypoint, WorkingDir,
/// User, ExposedPorts, Labels, Volumes, StopSignal, Healthcheck), with buildah's own label
/// removed and an empty list or map the same as none.
pub fn config_view(config: &serde_json::Value) -> serde_json::Value {
    let c = &config["config"];
    let mut labels = c["Labels"].clone();
    if let Some(map) = labels.as_object_mut() {
        map.remove("io.buildah.version");
    }
    let or_null = |v: &serde_json::Value| match v {
        serde_json::Value::Array(a) if a.is_empty() => serde_json::Value::Null,
        serde_json::Value::Object(o) if o.is_empty() => serde_json::Value::Null,
        other => other.clone(),
    };
    serde_json::json!({
        "Env": or_null(&c["Env"]),
        "Cmd": or_null(&c["Cmd"]),
        "Entrypoint": or_null(&c["Entrypoint"]),
        "WorkingDir": c["WorkingDir"].as_str().unwrap_or(""),
        "User": c["User"].as_str().unwrap_or(""),
        "ExposedPorts": or_null(&c["ExposedPorts"]),
        "Labels": or_null(&labels),
        "Volumes": or_null(&c["Volumes"]),
        "StopSignal": c["StopSignal"].as_str().unwrap_or(""),
        "Healthcheck": or_null(&c["Healthcheck"]),
    })
}

/// Compares berth's image with a reference's: root file systems (paths, types, modes,
/// owners, contents, link targets; `reference`'s leaks left out of its side and refused on
/// berth's) and [`config_view`]s. Flattens both under `scratch`; one line per difference.
pub fn image_differences(
    ours: &ImageFiles,
    theirs: &ImageFiles,
    reference: Reference,
    scratch: &Path,
) -> Result<Vec<String>> {
    image_differences_except(ours, theirs, reference, scratch, &[])
}

/// [`image_differences`], but the contents of files under `volatile` (paths relative to
/// `/`, a directory meaning everything below it) are not compared: logs and caches that
/// record when they were written (apt's and dpkg's). Their paths, types, modes and owners
/// still are.
pub fn image_differences_except(
    ours: &ImageFiles,
    theirs: &ImageFiles,
    reference: Reference,
    scratch: &Path,
    volatile: &[&str],
) -> Result<Vec<String>> {
    let (a, b) = (scratch.join("flat-berth"), scratch.join("flat-reference"));
    flatten(ours, &a)?;
    flatten(theirs, &b)?;
    let mut ours_tree = list_tree(&a)?;
    let mut theirs_tree = list_tree(&b)?;
    for tree in [&mut ours_tree, &mut theirs_tree] {
        forget_contents(tree, volatile);
    }
    let mut diffs = Vec::new();
    for leak in reference.leaks() {
        if ours_tree.contains_key(*leak) {
            diffs.push(format!("berth's image has {leak}"));
        }
        theirs_tree.remove(*leak);
    }
    diffs.extend(tree_differences(&ours_tree, &theirs_tree));
    let (ca, cb) = (config_view(&ours.config), config_view(&theirs.config));
    if ca != cb {
        diffs.push(format!("configs differ:\n  berth     {ca}\n  reference {cb}"));
    }
    let _ = fs::remove_dir_all(&a);
    let _ = fs::remove_dir_all(&b);
    Ok(diffs)
}

/// Pushes a one-layer image of the directory `rootfs` (owners 0:0) to `registry` as
/// `<host>/e2e/<name>:v1` and returns that reference. The config has busybox's `PATH` and
/// `WorkingDir` `working_dir` when given.
pub async fn push_rootfs_image(
    registry: &Registry,
    name: &str,
    rootfs: &Path,
    working_dir: Option<&str>,
) -> Result<String> {
    let work = tempfile::tempdir()?;
    let options = shared::layer::LayerOptions { uid: Some(0), gid: Some(0), ..Default::default() };
    let layer_file = work.path().join("layer.tar.gz");
    let layer = shared::layer::write_layer_to_file(rootfs, &options, &layer_file)?;
    let mut settings = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    });
    if let Some(dir) = working_dir {
        settings["WorkingDir"] = dir.into();
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": settings,
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        "history": [{ "created_by": format!("berth e2e: {name}") }],
    }))?;
    let reference = format!("{}/e2e/{name}:v1", registry.host());
    let target: ImageRef = reference.parse()?;
    let client = Client::anonymous()?;
    let config_digest = client.push_blob_bytes(&target, config.clone().into()).await?;
    let file = tokio::fs::File::open(&layer_file).await?;
    client.push_blob(&target, &layer.digest, layer.size, file, None).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": shared::media_type::OCI_MANIFEST,
        "config": { "mediaType": shared::media_type::OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [layer.descriptor()],
    }))?;
    client.push_manifest(&target, &target.reference(), shared::media_type::OCI_MANIFEST, manifest.into()).await?;
    Ok(reference)
}

/// The paths of one layer blob (gzip, zstd or plain tar), as its entries name them (`./`
/// and trailing `/` dropped), with `dir`, `link -> TARGET` or `file`.
pub fn layer_entries(blob: &Path) -> Result<BTreeMap<String, String>> {
    let file = fs::File::open(blob).with_context(|| format!("opening {}", blob.display()))?;
    let reader = unpack::decompress(BufReader::new(file))?;
    let mut archive = tar::Archive::new(reader);
    let mut out = BTreeMap::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string();
        let what = match entry.header().entry_type() {
            tar::EntryType::Directory => "dir".to_string(),
            tar::EntryType::Symlink => {
                format!("link -> {}", entry.link_name()?.map(|l| l.to_string_lossy().into_owned()).unwrap_or_default())
            }
            _ => "file".to_string(),
        };
        if !path.is_empty() {
            out.insert(path, what);
        }
    }
    Ok(out)
}
