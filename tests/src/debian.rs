//! A real Debian base for the builder's differential tests (`tests/tests/build_debian.rs`):
//! `debootstrap --variant=minbase bookworm` from Debian's mirror makes a merged-`/usr` root
//! (`/bin -> usr/bin`, `/lib -> usr/lib`, `/var/run -> /run`), kept as one gzip layer and
//! pushed into a test's registry as `<host>/e2e/debian:bookworm`, which berth and the Docker
//! engine's BuildKit both pull.
//!
//! Bootstrapping takes about a minute, so the layer is made once and cached under
//! `target/debian-base/`, keyed by the day (UTC) and debootstrap's version: the test runs of
//! one day share it, and a clean clone (CI) bootstraps once. Concurrent test binaries wait on
//! a lock file for the one that bootstraps; older layers are removed when a new one is made.
//! Like Debian's official images, the layer leaves out `/dev`'s nodes, the downloaded
//! packages, the package lists and the host's `/etc/hostname` and `/etc/resolv.conf`.
//!
//! Needs root, `debootstrap` (the test command installs it) and Debian's mirror.

use std::fs;
use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use shared::client::Client;
use shared::{media_type, Algorithm, Digest, Hasher, ImageRef};

use crate::Registry;

/// The Debian release bootstrapped.
pub const SUITE: &str = "bookworm";

/// Debian's mirror.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// Paths (as `tar` names them) left out of the layer.
const EXCLUDED: &[&str] = &[
    "./dev/*",
    "./proc/*",
    "./sys/*",
    "./var/cache/apt/archives/*.deb",
    "./var/lib/apt/lists/*",
    "./etc/hostname",
    "./etc/resolv.conf",
];

/// The cached layer: a gzip tar of the root and its uncompressed digest.
#[derive(Debug, Clone)]
pub struct DebianLayer {
    /// The `.tar.gz` file.
    pub blob: PathBuf,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The digest of the uncompressed tar (the config's `diff_ids`).
    pub diff_id: Digest,
}

/// The cached layer, bootstrapped first when this day's is missing (blocking: call it from
/// `spawn_blocking`).
pub fn debian_layer() -> Result<DebianLayer> {
    let dir = cache_dir()?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = fs::File::create(dir.join(".lock"))?;
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive).context("locking the Debian cache")?;
    let key = cache_key()?;
    let blob = dir.join(format!("{key}.tar.gz"));
    let id_file = dir.join(format!("{key}.diff_id"));
    if !blob.is_file() {
        bootstrap(&dir, &blob, &id_file)?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !stem.starts_with(&key) && !stem.starts_with('.') {
                let _ = fs::remove_file(&path);
            }
        }
    }
    let diff_id: Digest = fs::read_to_string(&id_file)?.trim().parse().context("reading the cached diff_id")?;
    let bytes = fs::read(&blob)?;
    Ok(DebianLayer { digest: Digest::sha256_of(&bytes), size: bytes.len() as u64, blob, diff_id })
}

/// `target/debian-base`, next to the test binaries' profile directory.
fn cache_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).context("the test executable is not under target/<profile>/deps")?;
    Ok(target.join("debian-base"))
}

/// `bookworm-minbase-YYYY-MM-DD-debootstrap-VERSION`.
fn cache_key() -> Result<String> {
    let out = Command::new("debootstrap")
        .arg("--version")
        .output()
        .context("debootstrap is not installed; the Debian-base tests need it (apt-get install -y debootstrap)")?;
    let version = String::from_utf8_lossy(&out.stdout).split_whitespace().last().unwrap_or("unknown").to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let day = &shared::date::rfc3339(now)[..10];
    Ok(format!("{SUITE}-minbase-{day}-debootstrap-{version}"))
}

/// Bootstraps into a scratch directory beside `blob`, writes the layer and its diff_id, and
/// renames the layer into place last.
fn bootstrap(dir: &Path, blob: &Path, id_file: &Path) -> Result<()> {
    let scratch = tempfile::Builder::new().prefix(".bootstrap-").tempdir_in(dir)?;
    let root = scratch.path().join("root");
    let started = std::time::Instant::now();
    eprintln!("bootstrapping Debian {SUITE} (minbase) from {MIRROR} into {}", root.display());
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&root)
        .arg(MIRROR)
        .output()
        .context("cannot run debootstrap")?;
    if !out.status.success() {
        bail!(
            "debootstrap failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let partial = scratch.path().join("layer.tar.gz");
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "--sort=name", "-czf"]).arg(&partial).arg("-C").arg(&root);
    for pattern in EXCLUDED {
        tar.arg(format!("--exclude={pattern}"));
    }
    let out = tar.arg(".").output().context("cannot run tar")?;
    ensure!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut reader = runtime::unpack::decompress(BufReader::new(fs::File::open(&partial)?))?;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    fs::write(id_file, hasher.finish().to_string())?;
    fs::rename(&partial, blob)?;
    runtime::unpack::remove_tree(&root).with_context(|| format!("removing {}", root.display()))?;
    eprintln!("bootstrapped Debian {SUITE} in {:.0?}: {}", started.elapsed(), blob.display());
    Ok(())
}

/// Pushes the Debian layer to `registry` as `<host>/e2e/debian:bookworm` (config: Debian's
/// official image's `PATH` and `CMD ["bash"]`) and returns that reference.
pub async fn push_debian_image(registry: &Registry) -> Result<String> {
    let layer = tokio::task::spawn_blocking(debian_layer).await??;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["bash"],
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        "history": [{ "created_by": format!("debootstrap --variant=minbase {SUITE}") }],
    }))?;
    let reference = format!("{}/e2e/debian:{SUITE}", registry.host());
    let target: ImageRef = reference.parse()?;
    let client = Client::anonymous()?;
    let config_digest = client.push_blob_bytes(&target, config.clone().into()).await?;
    let file = tokio::fs::File::open(&layer.blob).await?;
    client.push_blob(&target, &layer.digest, layer.size, file, None).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": { "mediaType": media_type::OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": media_type::OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size }],
    }))?;
    client.push_manifest(&target, &target.reference(), media_type::OCI_MANIFEST, manifest.into()).await?;
    Ok(reference)
}
