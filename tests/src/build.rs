//! Helpers for the builder's end-to-end tests (`tests/tests/build.rs`, `build_buildah.rs`):
//! a busybox base image pushed into an in-process berth registry, the `berth` binary run
//! with a private store root, images read back from OCI layouts or skopeo/buildah `dir:`
//! copies and flattened into plain trees, and trees compared file by file.

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

use crate::{run, BusyboxImage, Registry};

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
