//! Snapshots: each layer unpacked once, into `snapshots/<alg>/<hex>/rootfs` named by its
//! diff ID, and shared by every image that has the layer.
//!
//! A snapshot is unpacked into a fresh directory in `tmp/` and renamed into place only
//! when the whole layer was written and its diff ID matched, so a snapshot either exists
//! complete or not at all; a refused or broken layer leaves nothing behind.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::Digest;

use crate::content::list_digests;
use crate::paths::{Paths, ROOTFS, SNAPSHOT_INFO};
use crate::unpack::{self, remove_tree, UnpackError, UnpackMode};

/// What a snapshot holds, as recorded in its `snapshot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The layer's diff ID.
    pub diff_id: Digest,
    /// Bytes of regular file content.
    pub size: u64,
    /// Tar entries in the layer.
    pub entries: u64,
    /// True when whiteouts are in overlayfs form (false: kept as `.wh.` files).
    pub overlay_whiteouts: bool,
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file or directory of the store could not be used.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer could not be unpacked.
    #[error("unpacking layer {diff_id}")]
    Unpack {
        /// The layer's diff ID.
        diff_id: Digest,
        /// The cause.
        #[source]
        source: UnpackError,
    },
    /// A `snapshot.json` is unreadable.
    #[error("{path} is not valid")]
    Info {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// The snapshots of a store.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    paths: Paths,
}

impl SnapshotStore {
    /// The snapshots of the store at `paths`.
    pub fn new(paths: Paths) -> SnapshotStore {
        SnapshotStore { paths }
    }

    /// The directory holding the layer's files (an overlayfs lower directory).
    pub fn rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.paths.snapshot_rootfs(diff_id)
    }

    /// The snapshot's description, when it exists.
    pub fn get(&self, diff_id: &Digest) -> Result<Option<SnapshotInfo>, SnapshotError> {
        let path = self.paths.snapshot_info(diff_id);
        match fs::read(&path) {
            Ok(body) => serde_json::from_slice(&body).map(Some).map_err(|source| SnapshotError::Info { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Unpacks the layer read from `blob` as the snapshot of `diff_id`, unless it exists.
    /// Blocking: call it from a blocking thread.
    pub fn create(&self, diff_id: &Digest, blob: impl Read) -> Result<SnapshotInfo, SnapshotError> {
        if let Some(info) = self.get(diff_id)? {
            return Ok(info);
        }
        let temp = self.paths.temp("unpack");
        let result = self.create_in(&temp, diff_id, blob);
        if result.is_err() {
            if let Err(e) = remove_tree(&temp) {
                tracing::warn!(path = %temp.display(), error = %shared::error_chain(&e), "cannot remove a partial snapshot");
            }
        }
        result
    }

    fn create_in(&self, temp: &Path, diff_id: &Digest, blob: impl Read) -> Result<SnapshotInfo, SnapshotError> {
        let rootfs = temp.join(ROOTFS);
        fs::create_dir_all(&rootfs).map_err(io_err(&rootfs))?;
        let unpacked = unpack::unpack(blob, &rootfs, UnpackMode::Snapshot, Some(diff_id))
            .map_err(|source| SnapshotError::Unpack { diff_id: diff_id.clone(), source })?;
        let info = SnapshotInfo {
            diff_id: diff_id.clone(),
            size: unpacked.content_bytes,
            entries: unpacked.entries,
            overlay_whiteouts: unpacked.overlay_whiteouts,
        };
        let info_path = temp.join(SNAPSHOT_INFO);
        let body = serde_json::to_vec_pretty(&info)
            .map_err(|source| SnapshotError::Info { path: info_path.clone(), source })?;
        fs::write(&info_path, body).map_err(io_err(&info_path))?;
        let dest = self.paths.snapshot(diff_id);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        match fs::rename(temp, &dest) {
            Ok(()) => Ok(info),
            // Someone else unpacked the same layer meanwhile: theirs is as good.
            Err(_) if self.get(diff_id)?.is_some() => {
                remove_tree(temp).map_err(io_err(temp))?;
                Ok(info)
            }
            Err(e) => Err(io_err(&dest)(e)),
        }
    }

    /// Removes a snapshot; false when it was not there.
    pub fn remove(&self, diff_id: &Digest) -> Result<bool, SnapshotError> {
        let dir = self.paths.snapshot(diff_id);
        if !dir.exists() {
            return Ok(false);
        }
        // Rename first, so a half-removed snapshot is never mistaken for a whole one.
        let doomed = self.paths.temp("remove");
        fs::create_dir_all(self.paths.tmp()).map_err(io_err(&self.paths.tmp()))?;
        fs::rename(&dir, &doomed).map_err(io_err(&dir))?;
        remove_tree(&doomed).map_err(io_err(&doomed))?;
        Ok(true)
    }

    /// Every snapshot in the store.
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        list_digests(&self.paths.snapshots(), true).map_err(|(path, source)| SnapshotError::Io { path, source })
    }
}
