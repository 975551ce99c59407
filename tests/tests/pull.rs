//! berth's own pull path end to end: the busybox image is pushed into an in-process berth
//! registry with `shared`'s registry client, pulled with the runtime library (and once with
//! the `berth` binary) into a temporary store, checked byte for byte against the host's
//! busybox, listed, and removed again; a two-platform index resolves to the host's
//! platform; a layer whose bytes do not match its digest is refused and leaves nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use e2e::{require_tools, run, BusyboxImage, Registry, BUSYBOX, IMAGE_REF, INDEX_REF};
use runtime::{NoProgress, PullError, PullOptions, Store};
use shared::client::testing::{FakeAuth, FakeRegistry, Fault};
use std::sync::Arc;

use shared::client::{Anonymous, Client, ClientConfig, ClientError, Mount};
use shared::layout::Layout;
use shared::manifest::{Descriptor, Manifest, Platform};
use shared::{ImageRef, Reference};

/// Pushes the manifest (or index, with its children) `root` of `layout` to `target`: blobs
/// first, then children by digest, then `root` under `target`'s tag.
async fn push(client: &Client, layout: &Layout, root: &Descriptor, target: &ImageRef) -> Result<()> {
    let body = layout.read_blob(&root.digest)?;
    let manifest = Manifest::parse(&body, Some(&root.media_type))?;
    for child in &manifest.manifests {
        Box::pin(push(client, layout, child, &target.with_reference(Reference::Digest(child.digest.clone())))).await?;
    }
    for blob in manifest.config.iter().chain(&manifest.layers) {
        let file = tokio::fs::File::open(layout.blob_path(&blob.digest)).await?;
        client.push_blob(target, &blob.digest, blob.size, file, None).await?;
    }
    let digest = client.push_manifest(target, &target.reference(), &root.media_type, body.into()).await?;
    ensure!(digest == root.digest, "pushed {} but the registry's digest is {digest}", root.digest);
    Ok(())
}

/// The `berth` binary next to this test's executable (`target/<profile>/berth`).
fn berth_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no parent directory")?;
    let bin = dir.join("berth");
    if !bin.is_file() {
        bail!("{} is missing; build it with `cargo build -p berth-cli` (cargo test --workspace does)", bin.display());
    }
    Ok(bin)
}

async fn berth(root: &Path, args: &[&str]) -> Result<String> {
    let bin = berth_binary()?;
    let mut all = vec!["--root", root.to_str().context("root path is not UTF-8")?];
    all.extend_from_slice(args);
    let output = run(bin.to_str().context("binary path is not UTF-8")?, &all).await?;
    if !output.status.success() {
        bail!("{}", e2e::describe_failure("berth", &all, &output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn is_empty(dir: &Path) -> Result<bool> {
    Ok(fs::read_dir(dir)?.next().is_none())
}

/// Fails unless the store holds no image, blob, snapshot or temporary file.
fn assert_store_empty(store: &Store) -> Result<()> {
    ensure!(store.images()?.is_empty(), "images left: {:?}", store.images()?);
    ensure!(store.content().list()?.is_empty(), "blobs left: {:?}", store.content().list()?);
    ensure!(store.snapshots().list()?.is_empty(), "snapshots left: {:?}", store.snapshots().list()?);
    ensure!(is_empty(&store.root().join("tmp"))?, "temporary files left");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_busybox_from_berth_and_removes_it() -> Result<()> {
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = Registry::start().await?;
    let client = Client::anonymous()?;
    let target: ImageRef = format!("{}/e2e/busybox:{IMAGE_REF}", registry.host()).parse()?;
    push(&client, &image.layout, &image.image, &target).await?;

    let store = Store::open(work.path().join("store"))?;
    let record = store.pull(&client, &target, &PullOptions::default(), &NoProgress).await?;
    ensure!(record.manifest == image.image.digest, "pulled {} instead of {}", record.manifest, image.image.digest);
    ensure!(record.layers.len() == 1 && record.layers[0].diff_id == image.layer.diff_id);

    // The unpacked busybox is the host's, byte for byte, executable, with its applet links.
    let rootfs = store.snapshots().rootfs(&image.layer.diff_id);
    let unpacked = fs::read(rootfs.join("bin/busybox"))?;
    ensure!(unpacked == fs::read(BUSYBOX)?, "bin/busybox differs from {BUSYBOX}");
    ensure!(fs::metadata(rootfs.join("bin/busybox"))?.permissions().mode() & 0o777 == 0o755);
    ensure!(fs::read_link(rootfs.join("bin/sh"))? == Path::new("busybox"));
    ensure!(fs::metadata(rootfs.join("tmp"))?.permissions().mode() & 0o7777 == 0o1777);

    // Flattened, the same tree.
    let flat = work.path().join("flat");
    store.flatten(&record, &flat)?;
    ensure!(fs::read(flat.join("bin/busybox"))? == unpacked);

    // Pulling again fetches nothing new and changes nothing.
    let again = store.pull(&client, &target, &PullOptions::default(), &NoProgress).await?;
    ensure!(again.manifest == record.manifest && again.layers == record.layers);
    ensure!(store.images()?.len() == 1);

    // The same image pushed again in small chunks (PATCH uploads) to another repository,
    // and mounted from there into a third: berth's registry takes both, and the pull from
    // the chunked copy gives the same image.
    let config = ClientConfig { chunk_size: 256 * 1024, ..ClientConfig::default() };
    let chunked_client = Client::new(config, Arc::new(Anonymous))?;
    ensure!(image.layer.size > 256 * 1024, "the layer is too small to need chunks");
    let chunked: ImageRef = format!("{}/e2e/chunked:{IMAGE_REF}", registry.host()).parse()?;
    push(&chunked_client, &image.layout, &image.image, &chunked).await?;
    let mounted: ImageRef = format!("{}/e2e/mounted:{IMAGE_REF}", registry.host()).parse()?;
    let mount = client.mount_blob(&mounted, chunked.repository(), &image.layer.digest).await?;
    ensure!(mount == Mount::Mounted, "berth's registry did not mount the layer: {mount:?}");
    ensure!(client.blob_exists(&mounted, &image.layer.digest).await?);
    let copy = store.pull(&client, &chunked, &PullOptions::default(), &NoProgress).await?;
    ensure!(copy.manifest == record.manifest);
    store.remove(&[chunked.to_string()])?;

    // Listed, then removed with everything it used.
    let listed = store.find(&target.to_string())?;
    ensure!(listed.len() == 1 && listed[0].reference == target.to_string(), "find gave {listed:?}");
    let removed = store.remove(&[target.to_string()])?;
    ensure!(removed.collected.snapshots == vec![image.layer.diff_id.clone()], "{removed:?}");
    assert_store_empty(&store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_berth_binary_pulls_lists_and_removes() -> Result<()> {
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = Registry::start().await?;
    let client = Client::anonymous()?;
    let reference = format!("{}/e2e/busybox:{IMAGE_REF}", registry.host());
    push(&client, &image.layout, &image.image, &reference.parse()?).await?;

    let root = work.path().join("store");
    let out = berth(&root, &["pull", &reference]).await?;
    ensure!(out.contains("Pull complete") && out.contains(&image.image.digest.to_string()), "pull printed:\n{out}");
    let rootfs = root.join("snapshots/sha256").join(image.layer.diff_id.hex()).join("rootfs");
    ensure!(fs::read(rootfs.join("bin/busybox"))? == fs::read(BUSYBOX)?, "bin/busybox differs from {BUSYBOX}");

    let listing = berth(&root, &["images"]).await?;
    let lines: Vec<&str> = listing.lines().collect();
    ensure!(lines.len() == 2, "images printed:\n{listing}");
    let columns: Vec<&str> = lines[1].split_whitespace().collect();
    let repository = format!("{}/e2e/busybox", registry.host());
    ensure!(
        columns[..3] == [repository.as_str(), IMAGE_REF, &image.image.digest.hex()[..12]],
        "images printed:\n{listing}"
    );

    let removed = berth(&root, &["rmi", &reference]).await?;
    ensure!(removed.contains(&format!("Untagged: {reference}")), "rmi printed:\n{removed}");
    ensure!(removed.contains(&format!("Deleted layer: {}", image.layer.diff_id)), "rmi printed:\n{removed}");
    let listing = berth(&root, &["images"]).await?;
    ensure!(listing.lines().count() == 1, "images after rmi printed:\n{listing}");
    assert_store_empty(&Store::open(&root)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_a_two_platform_index() -> Result<()> {
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    let registry = Registry::start().await?;
    let client = Client::anonymous()?;
    let target: ImageRef = format!("{}/e2e/busybox:{INDEX_REF}", registry.host()).parse()?;
    push(&client, &image.layout, &image.index, &target).await?;
    let index = Manifest::parse(&image.layout.read_blob(&image.index.digest)?, None)?;
    let child = |arch: &str| -> Result<&Descriptor> {
        index
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.architecture == arch))
            .with_context(|| format!("no {arch} entry in the index"))
    };
    let store = Store::open(work.path().join("store"))?;

    let host = Platform::host();
    if ["amd64", "arm64"].contains(&host.architecture.as_str()) {
        let record = store.pull(&client, &target, &PullOptions::default(), &NoProgress).await?;
        ensure!(record.manifest == child(&host.architecture)?.digest, "the host's entry was not chosen");
        ensure!(record.index.as_ref() == Some(&image.index.digest));
        ensure!(record.platform.architecture == host.architecture);
    }
    // Another platform on request; the record for the reference is replaced.
    for arch in ["arm64", "amd64"] {
        let options = PullOptions { platform: format!("linux/{arch}").parse()?, ..PullOptions::default() };
        let record = store.pull(&client, &target, &options, &NoProgress).await?;
        ensure!(record.manifest == child(arch)?.digest, "linux/{arch}: wrong entry");
        ensure!(store.images()?.len() == 1);
    }
    let options = PullOptions { platform: "linux/s390x".parse()?, ..PullOptions::default() };
    match store.pull(&client, &target, &options, &NoProgress).await {
        Err(PullError::Client(ClientError::NoPlatform { available, .. })) => {
            ensure!(available.contains("linux/amd64") && available.contains("linux/arm64"), "{available}");
        }
        other => bail!("linux/s390x: expected no matching platform, got {other:?}"),
    }
    store.remove(&[target.to_string()])?;
    assert_store_empty(&store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_layer_that_does_not_match_its_digest() -> Result<()> {
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let image = BusyboxImage::build(work.path())?;
    // berth's registry verifies what it stores, so a registry that lies is faked.
    let registry = FakeRegistry::start(FakeAuth::None, false).await?;
    let manifest_body = image.layout.read_blob(&image.image.digest)?;
    let manifest = Manifest::parse(&manifest_body, None)?;
    for blob in manifest.config.iter().chain(&manifest.layers) {
        registry.add_blob(&image.layout.read_blob(&blob.digest)?);
    }
    registry.add_manifest("e2e/busybox", Some(IMAGE_REF), &image.image.media_type, &manifest_body);
    registry.fault(&image.layer.digest, Fault::Corrupt);

    let store = Store::open(work.path().join("store"))?;
    let target: ImageRef = format!("{}/e2e/busybox:{IMAGE_REF}", registry.host()).parse()?;
    let client = Client::anonymous()?;
    match store.pull(&client, &target, &PullOptions::default(), &NoProgress).await {
        Err(PullError::Client(ClientError::DigestMismatch { expected, .. })) => ensure!(expected == image.layer.digest),
        other => bail!("expected the corrupt layer to be refused, got {other:?}"),
    }
    ensure!(!store.content().has(&image.layer.digest), "the corrupt layer was stored");
    ensure!(store.snapshots().list()?.is_empty(), "a snapshot was made of the corrupt layer");
    ensure!(store.images()?.is_empty(), "the image was recorded");
    ensure!(is_empty(&store.root().join("tmp"))?, "temporary files left");
    // The manifest and config were verified and are kept for a retry; nothing uses them, so
    // garbage collection takes them.
    store.collect_garbage()?;
    assert_store_empty(&store)?;

    // Served correctly, the same pull succeeds.
    registry.heal(&image.layer.digest);
    store.pull(&client, &target, &PullOptions::default(), &NoProgress).await?;
    Ok(())
}
