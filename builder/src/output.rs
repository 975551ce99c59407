//! Where a built image goes: an OCI image layout (a directory, or a tar when the path ends
//! in `.tar`), a docker-archive tar that `docker load` reads, or a registry.
//!
//! - **OCI layout**: blobs copied in (verified by digest on the way), the manifest named in
//!   `index.json` by each tag (or `latest`).
//! - **docker-archive**: the layout above plus Docker's `manifest.json` (config path,
//!   `RepoTags`, layer paths) in one tar, as `docker save` writes since Docker 25; older
//!   engines read `manifest.json` and decompress the gzip layers themselves.
//! - **Registry** ([`push`]): for each tag, every layer is checked with `HEAD` first and
//!   mounted from the base image's repository when it is on the same registry, so only
//!   missing blobs are sent (the shared client's `push_blob`); then the config and the
//!   manifest.
//!
//! Tars are written reproducibly (sorted entries, mtime 0, owner 0) and moved into place by
//! a rename, so a failed write leaves nothing at the destination.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use shared::client::{Client, ClientError};
use shared::layout::{Layout, LayoutError};
use shared::{media_type, Digest, ImageRef, Reference};

use crate::build::{oci_layer_type, Built};

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file could not be written.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Pushing failed.
    #[error("pushing {reference}")]
    Push {
        /// The reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<ClientError>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.to_path_buf(), source }
}

/// The names a layout lists the image under: the tags, else `latest`.
fn ref_names(tags: &[ImageRef]) -> Vec<String> {
    let names: Vec<String> = tags.iter().filter_map(|t| t.tag().map(|t| t.to_string())).collect();
    if names.is_empty() {
        vec!["latest".into()]
    } else {
        names
    }
}

/// Writes `built` as an OCI layout at `dest` (a directory, or a tar if it ends in `.tar`).
pub fn write_oci(built: &Built, dest: &Path, tags: &[ImageRef]) -> Result<(), OutputError> {
    if dest.extension().is_some_and(|e| e == "tar") {
        let staging = temp_beside(dest, "layout");
        let result = write_layout(built, &staging, tags).and_then(|_| tar_dir(&staging, dest));
        let _ = fs::remove_dir_all(&staging);
        return result;
    }
    write_layout(built, dest, tags)
}

fn write_layout(built: &Built, dest: &Path, tags: &[ImageRef]) -> Result<(), OutputError> {
    let layout = Layout::create(dest)?;
    for layer in &built.layers {
        if !layout.has_blob(&layer.layer.digest) {
            layout.add_blob_file(&layer.blob, Some(&layer.layer.digest))?;
        }
    }
    layout.add_blob(&built.config)?;
    for name in ref_names(tags) {
        layout.add_manifest(media_type::OCI_MANIFEST, &built.manifest, Some(&name))?;
    }
    Ok(())
}

/// Writes `built` as a docker-archive tar at `dest`.
pub fn write_docker_archive(built: &Built, dest: &Path, tags: &[ImageRef]) -> Result<(), OutputError> {
    let staging = temp_beside(dest, "archive");
    let result = (|| {
        write_layout(built, &staging, tags)?;
        let repo_tags: Vec<String> = tags.iter().map(ImageRef::familiar).collect();
        let manifest = serde_json::json!([{
            "Config": format!("blobs/sha256/{}", built.config_digest.hex()),
            "RepoTags": repo_tags,
            "Layers": built.layers.iter().map(|l| format!("blobs/sha256/{}", l.layer.digest.hex())).collect::<Vec<_>>(),
        }]);
        let path = staging.join("manifest.json");
        fs::write(&path, serde_json::to_vec(&manifest).unwrap_or_default()).map_err(io_err(&path))?;
        tar_dir(&staging, dest)
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

fn temp_beside(dest: &Path, what: &str) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

/// Tars the directory `dir` to `dest` reproducibly (temporary file, then rename).
fn tar_dir(dir: &Path, dest: &Path) -> Result<(), OutputError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let abs = dir.join(&rel);
        for item in fs::read_dir(&abs).map_err(io_err(&abs))? {
            let item = item.map_err(io_err(&abs))?;
            let child = rel.join(item.file_name());
            let meta = item.metadata().map_err(io_err(&abs))?;
            if meta.is_dir() {
                pending.push(child.clone());
            }
            files.push((child, meta.is_dir(), meta.len()));
        }
    }
    files.sort();
    let temp = temp_beside(dest, "tar");
    let result = (|| {
        let out = File::create(&temp).map_err(io_err(&temp))?;
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, out));
        for (rel, is_dir, size) in &files {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            if *is_dir {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, rel, io::empty()).map_err(io_err(&temp))?;
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(*size);
                let src = dir.join(rel);
                let f = File::open(&src).map_err(io_err(&src))?;
                tar.append_data(&mut h, rel, f).map_err(io_err(&temp))?;
            }
        }
        let mut w = tar.into_inner().map_err(io_err(&temp))?;
        w.flush().map_err(io_err(&temp))?;
        let f = w.into_inner().map_err(|e| io_err(&temp)(e.into_error()))?;
        f.sync_all().map_err(io_err(&temp))?;
        fs::rename(&temp, dest).map_err(io_err(dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Pushes `built` to every reference in `tags`; returns the manifest digest.
pub async fn push(client: &Client, built: &Built, tags: &[ImageRef]) -> Result<Digest, OutputError> {
    let mut digest = built.manifest_digest.clone();
    for reference in tags {
        let err = |source| OutputError::Push { reference: reference.familiar(), source: Box::new(source) };
        let mount_from = built
            .base
            .as_ref()
            .filter(|b| b.registry() == reference.registry() && b.repository() != reference.repository())
            .map(|b| b.repository().clone());
        // Layers in parallel (the client checks with HEAD first, then mounts or uploads).
        let pushes = built.layers.iter().map(|layer| {
            let mount_from = mount_from.clone();
            async move {
                let file = tokio::fs::File::open(&layer.blob).await.map_err(io_err(&layer.blob))?;
                client
                    .push_blob(reference, &layer.layer.digest, layer.layer.size, file, mount_from.as_ref())
                    .await
                    .map_err(err)
            }
        });
        futures_util::future::try_join_all(pushes).await?;
        client.push_blob_bytes(reference, built.config.clone().into()).await.map_err(err)?;
        let target = match reference.reference() {
            Reference::Digest(_) => Reference::Digest(built.manifest_digest.clone()),
            t => t,
        };
        digest = client
            .push_manifest(reference, &target, media_type::OCI_MANIFEST, built.manifest.clone().into())
            .await
            .map_err(err)?;
    }
    Ok(digest)
}

/// The layers' OCI media types (used by tests to check manifests).
pub fn layer_media_types(built: &Built) -> Vec<String> {
    built.layers.iter().map(|l| oci_layer_type(&l.layer.media_type).to_string()).collect()
}
