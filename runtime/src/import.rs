//! Recording an image made on this machine in the store, as a pull would have: `berth build
//! -t NAME` calls [`Store::import`] so that `berth images` lists the image and `berth run NAME`
//! runs it without a registry (as `docker build` does).
//!
//! The manifest and config are stored as blobs, each layer blob is taken into the content
//! store from the builder's file (hard-linked where both are on one filesystem, else copied;
//! hashed and counted on the way, visible only when digest and size match) and unpacked into its snapshot (checked against its diff ID), unless
//! either is already there; then each name gets an index record, replacing what it named
//! before. The store's shared lock is held throughout, as during a pull.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::ImageConfiguration;
use shared::manifest::Platform;
use shared::{Digest, ImageRef};

use crate::content::ContentError;
use crate::images::{FileLock, ImageRecord, IndexError, LayerRecord};
use crate::snapshots::SnapshotError;
use crate::Store;

/// An image to record: its manifest, config and layer blobs.
#[derive(Debug, Clone)]
pub struct LocalImage<'a> {
    /// The image manifest's bytes.
    pub manifest: &'a [u8],
    /// Their digest.
    pub manifest_digest: &'a Digest,
    /// The manifest's media type.
    pub media_type: &'a str,
    /// The image config's bytes.
    pub config: &'a [u8],
    /// Their digest.
    pub config_digest: &'a Digest,
    /// The layers, bottom first, each with the file holding its blob.
    pub layers: Vec<(LayerRecord, PathBuf)>,
}

/// Why an image could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A blob could not be stored.
    #[error("storing {what}")]
    Content {
        /// Which blob.
        what: String,
        /// The cause.
        #[source]
        source: ContentError,
    },
    /// A layer could not be unpacked.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The index could not be updated.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The config is not an image config.
    #[error("config {digest} is not an image config")]
    Config {
        /// The config.
        digest: Digest,
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The store lock could not be taken.
    #[error("{path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Store {
    /// Stores `image` and records it under each of `names`; returns the records. Blocking.
    pub fn import(&self, image: &LocalImage<'_>, names: &[ImageRef]) -> Result<Vec<ImageRecord>, ImportError> {
        let lock_path = self.paths.lock();
        let _lock =
            FileLock::shared(&lock_path).map_err(|source| ImportError::Lock { path: lock_path.clone(), source })?;
        let content_err = |what: String| move |source| ImportError::Content { what, source };
        self.content
            .put(image.manifest_digest, image.manifest)
            .map_err(content_err(format!("the image manifest {}", image.manifest_digest)))?;
        self.content
            .put(image.config_digest, image.config)
            .map_err(content_err(format!("the image config {}", image.config_digest)))?;
        let config = ImageConfiguration::from_reader(image.config)
            .map_err(|source| ImportError::Config { digest: image.config_digest.clone(), source })?;

        let mut unpacked_size = 0;
        for (layer, blob) in &image.layers {
            self.content
                .put_file(&layer.digest, layer.size, blob)
                .map_err(content_err(format!("layer {}", layer.digest)))?;
            let file = self.content.open(&layer.digest).map_err(content_err(format!("layer {}", layer.digest)))?;
            unpacked_size += self.snapshots.create(&layer.diff_id, file)?.size;
        }
        let platform =
            Platform::new(&config.os().to_string(), &config.architecture().to_string(), config.variant().as_deref());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut records = Vec::new();
        for name in names {
            let record = ImageRecord {
                reference: name.to_string(),
                manifest: image.manifest_digest.clone(),
                media_type: image.media_type.to_string(),
                manifest_size: image.manifest.len() as u64,
                index: None,
                platform: platform.clone(),
                config: image.config_digest.clone(),
                layers: image.layers.iter().map(|(l, _)| l.clone()).collect(),
                created: config.created().clone(),
                unpacked_size,
                pulled_at: now,
            };
            self.index.put(record.clone())?;
            records.push(record);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::layer::{write_layer_to_file, LayerOptions};
    use shared::media_type;
    use std::fs;

    #[test]
    fn records_a_built_image_under_each_name() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/motd"), "built\n").unwrap();
        let blob = dir.path().join("layer.tar.gz");
        let layer = write_layer_to_file(&tree, &LayerOptions::default(), &blob).unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}, "config": {},
        }))
        .unwrap();
        let config_digest = Digest::sha256_of(&config);
        let manifest = b"{}".to_vec();
        let manifest_digest = Digest::sha256_of(&manifest);
        let record = LayerRecord {
            digest: layer.digest.clone(),
            media_type: media_type::OCI_LAYER_GZIP.into(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
        };
        let image = LocalImage {
            manifest: &manifest,
            manifest_digest: &manifest_digest,
            media_type: media_type::OCI_MANIFEST,
            config: &config,
            config_digest: &config_digest,
            layers: vec![(record.clone(), blob.clone())],
        };
        let store = Store::open(dir.path().join("store")).unwrap();
        let names: Vec<ImageRef> = vec!["local/app:v1".parse().unwrap(), "local/app:latest".parse().unwrap()];
        let records = store.import(&image, &names).unwrap();
        assert_eq!(records.len(), 2);
        for name in ["local/app:v1", "local/app"] {
            let found = store.find(name).unwrap();
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].manifest, manifest_digest);
            assert_eq!(found[0].platform.architecture, "amd64");
        }
        assert!(store.content().has(&layer.digest) && store.content().has(&config_digest));
        // On one filesystem the layer is linked in, not stored a second time.
        use std::os::unix::fs::MetadataExt;
        let stored = fs::metadata(store.content().path(&layer.digest)).unwrap();
        assert_eq!(stored.ino(), fs::metadata(&blob).unwrap().ino(), "the layer blob was copied");
        let snapshot = store.snapshots().rootfs(&layer.diff_id);
        assert_eq!(fs::read_to_string(snapshot.join("etc/motd")).unwrap(), "built\n");

        // A blob that is not what its descriptor says is refused.
        let wrong = LayerRecord { digest: Digest::sha256_of(b"other"), ..record };
        let image = LocalImage { layers: vec![(wrong, blob)], ..image };
        let other = Store::open(dir.path().join("other")).unwrap();
        assert!(matches!(
            other.import(&image, &names),
            Err(ImportError::Content { source: ContentError::DigestMismatch { .. }, .. })
        ));
        assert!(other.images().unwrap().is_empty());
    }
}
