//! Pulling an image into the store: resolve the reference to a manifest for the wanted
//! platform, then fetch the config and the layer blobs concurrently, each verified on its
//! way into the content store, and unpack each layer into its snapshot as soon as it is
//! there. Blobs and snapshots already in the store are not fetched or unpacked again, which
//! is also how an interrupted pull resumes. The image is recorded in the index last.
//!
//! `berth pull` calls [`Store::pull`]; later, `berth run` will call it for missing images.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::{try_join, try_join_all};
use oci_spec::image::ImageConfiguration;
use shared::client::{Client, ClientError};
use shared::manifest::{Descriptor, Platform};
use shared::{Digest, ImageRef};
use tokio::sync::{OnceCell, Semaphore};

use crate::content::ContentError;
use crate::images::{FileLock, ImageRecord, IndexError, LayerRecord};
use crate::progress::{Progress, PullEvent};
use crate::snapshots::{SnapshotError, SnapshotInfo};
use crate::Store;

/// How to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    /// The platform to choose from an index. Default: the host's ([`Platform::host`]).
    pub platform: Platform,
    /// Layer blobs downloaded at once. Default 3, as Docker.
    pub max_concurrent_downloads: usize,
    /// Layers unpacked at once. Default 2.
    pub max_concurrent_unpacks: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { platform: Platform::host(), max_concurrent_downloads: 3, max_concurrent_unpacks: 2 }
    }
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Talking to the registry failed, or it sent content that failed verification.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Content could not be stored.
    #[error("storing {what}")]
    Content {
        /// What was being stored.
        what: String,
        /// The cause.
        #[source]
        source: ContentError,
    },
    /// A layer could not be unpacked.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The image index could not be updated.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The manifest or config is not that of a runnable image.
    #[error("{what}: {reason}")]
    NotAnImage {
        /// The manifest or config.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The store lock could not be taken.
    #[error("{path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An unpacking thread failed.
    #[error("unpacking was interrupted")]
    Task(#[source] tokio::task::JoinError),
}

/// The parts of an image config a pull needs.
struct Config {
    diff_ids: Vec<Digest>,
    created: Option<String>,
    platform: Platform,
}

/// Fails unless the config lists one diff ID per layer of the manifest.
fn check_layer_count(config: &Config, layers: usize, digest: &Digest) -> Result<(), PullError> {
    if config.diff_ids.len() == layers {
        return Ok(());
    }
    Err(PullError::NotAnImage {
        what: format!("config {digest}"),
        reason: format!("rootfs.diff_ids has {} entries for {layers} layers", config.diff_ids.len()),
    })
}

impl Store {
    /// Pulls `image` for `options.platform` into the store and records it in the index
    /// under its canonical reference, replacing what that reference named before.
    pub async fn pull(
        &self,
        client: &Client,
        image: &ImageRef,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<ImageRecord, PullError> {
        // Shared: other pulls may run, removal and garbage collection wait.
        let lock_path = self.paths.lock();
        let _lock =
            FileLock::shared(&lock_path).map_err(|source| PullError::Lock { path: lock_path.clone(), source })?;

        progress.event(&PullEvent::Resolving { image: image.familiar() });
        let resolved = client.resolve(image, &options.platform).await?;
        let manifest = &resolved.manifest;
        let what = format!("manifest {} of {}", manifest.digest, image.familiar());
        let config_desc = manifest
            .manifest
            .config
            .clone()
            .ok_or_else(|| PullError::NotAnImage { what: what.clone(), reason: "no config".into() })?;
        if let Some(index) = &resolved.index {
            self.put_blob(&index.digest, &index.bytes, "the image index")?;
        }
        self.put_blob(&manifest.digest, &manifest.bytes, "the image manifest")?;
        let layers = &manifest.manifest.layers;
        progress.event(&PullEvent::Resolved {
            digest: manifest.digest.clone(),
            layers: layers.iter().map(|l| (l.digest.clone(), l.size)).collect(),
        });

        let downloads = Semaphore::new(options.max_concurrent_downloads.max(1));
        let unpack_slots = options.max_concurrent_unpacks.clamp(1, 64);
        let unpacks = Arc::new(Semaphore::new(unpack_slots));
        let config_cell = OnceCell::new();
        let config = || config_cell.get_or_try_init(|| self.config(client, image, &config_desc));
        let mut seen = HashSet::new();
        let work = layers.iter().enumerate().filter(|(_, l)| seen.insert(l.digest.clone())).map(|(i, layer)| {
            let (downloads, unpacks, config, config_desc) = (&downloads, &unpacks, &config, &config_desc);
            async move {
                self.fetch_layer(client, image, layer, downloads, progress).await?;
                let config = config().await?;
                check_layer_count(config, layers.len(), &config_desc.digest)?;
                let diff_id = config.diff_ids[i].clone();
                let info = self.unpack_layer(layer, &diff_id, unpacks, progress).await?;
                Ok::<_, PullError>((layer.digest.clone(), info))
            }
        });
        let (config, unpacked) = match try_join(config(), try_join_all(work)).await {
            Ok(done) => done,
            Err(e) => {
                // Unpacking threads cannot be cancelled; wait for them, so nothing keeps
                // writing into the store after the pull has returned.
                let _ = unpacks.acquire_many(unpack_slots as u32).await;
                return Err(e);
            }
        };
        check_layer_count(config, layers.len(), &config_desc.digest)?;

        let mut layer_records = Vec::new();
        let mut unpacked_size = 0;
        for (layer, diff_id) in layers.iter().zip(&config.diff_ids) {
            let info = unpacked.iter().find(|(d, _)| *d == layer.digest).map(|(_, info)| info);
            unpacked_size += info.map_or(0, |i| i.size);
            layer_records.push(LayerRecord {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                size: layer.size,
                diff_id: diff_id.clone(),
            });
        }
        let platform = resolved.platform.clone().unwrap_or_else(|| config.platform.clone());
        if !platform.satisfies(&options.platform) {
            tracing::warn!(image = %image, image_platform = %platform, wanted = %options.platform,
                "the image's platform does not match the requested platform");
        }
        let record = ImageRecord {
            reference: image.to_string(),
            manifest: manifest.digest.clone(),
            media_type: manifest.manifest.media_type.clone(),
            manifest_size: manifest.bytes.len() as u64,
            index: resolved.index.as_ref().map(|i| i.digest.clone()),
            platform,
            config: config_desc.digest.clone(),
            layers: layer_records,
            created: config.created.clone(),
            unpacked_size,
            pulled_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        self.index.put(record.clone())?;
        progress.event(&PullEvent::Finished { image: record.reference.clone(), digest: record.manifest.clone() });
        Ok(record)
    }

    fn put_blob(&self, digest: &Digest, bytes: &[u8], what: &str) -> Result<(), PullError> {
        self.content
            .put(digest, bytes)
            .map_err(|source| PullError::Content { what: format!("{what} {digest}"), source })
    }

    /// The image config, from the store or the registry.
    async fn config(&self, client: &Client, image: &ImageRef, desc: &Descriptor) -> Result<Config, PullError> {
        let bytes = if self.content.has(&desc.digest) {
            self.content
                .read(&desc.digest)
                .map_err(|source| PullError::Content { what: format!("the image config {}", desc.digest), source })?
        } else {
            let bytes = client.blob_bytes(image, desc, client.config().max_config_bytes).await?;
            self.put_blob(&desc.digest, &bytes, "the image config")?;
            bytes
        };
        let not_image = |reason: String| PullError::NotAnImage { what: format!("config {}", desc.digest), reason };
        let config: ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| not_image(format!("not an image config: {e}")))?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse::<Digest>().map_err(|e| not_image(format!("rootfs.diff_ids: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let platform =
            Platform::new(&config.os().to_string(), &config.architecture().to_string(), config.variant().as_deref());
        Ok(Config { diff_ids, created: config.created().clone(), platform })
    }

    /// Downloads a layer blob into the content store, unless it is there.
    async fn fetch_layer(
        &self,
        client: &Client,
        image: &ImageRef,
        layer: &Descriptor,
        downloads: &Semaphore,
        progress: &dyn Progress,
    ) -> Result<(), PullError> {
        let digest = &layer.digest;
        if self.content.has(digest) {
            progress.event(&PullEvent::Exists { digest: digest.clone() });
            return Ok(());
        }
        let _permit = downloads.acquire().await.map_err(|_| PullError::Lock {
            path: self.paths.lock(),
            source: io::Error::other("download queue closed"),
        })?;
        let store_err = |source| PullError::Content { what: format!("layer {digest}"), source };
        let mut writer = self.content.writer(digest, layer.size).await.map_err(store_err)?;
        let total = layer.size;
        client
            .blob_to(image, layer, &mut writer, &mut |done| {
                progress.event(&PullEvent::Downloading { digest: digest.clone(), done, total });
            })
            .await?;
        writer.commit().await.map_err(store_err)?;
        progress.event(&PullEvent::Downloaded { digest: digest.clone() });
        Ok(())
    }

    /// Unpacks a layer into its snapshot, unless the snapshot exists.
    async fn unpack_layer(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        unpacks: &Arc<Semaphore>,
        progress: &dyn Progress,
    ) -> Result<SnapshotInfo, PullError> {
        if let Some(info) = self.snapshots.get(diff_id)? {
            progress.event(&PullEvent::Done { digest: layer.digest.clone() });
            return Ok(info);
        }
        // The permit moves into the thread: it is released when unpacking really ends.
        let permit = unpacks.clone().acquire_owned().await.map_err(|_| PullError::Lock {
            path: self.paths.lock(),
            source: io::Error::other("unpack queue closed"),
        })?;
        progress.event(&PullEvent::Extracting { digest: layer.digest.clone() });
        let blob = self
            .content
            .open(&layer.digest)
            .map_err(|source| PullError::Content { what: format!("layer {}", layer.digest), source })?;
        let snapshots = self.snapshots.clone();
        let diff = diff_id.clone();
        let info = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            snapshots.create(&diff, blob)
        })
        .await
        .map_err(PullError::Task)??;
        progress.event(&PullEvent::Done { digest: layer.digest.clone() });
        Ok(info)
    }
}
