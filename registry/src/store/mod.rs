//! The registry's content logic above a storage driver: blobs and their membership in
//! repositories, upload sessions, manifests, tags and the referrers index.
//!
//! The HTTP handlers in [`crate::api`] call a [`Store`]; it decides what is valid and in what
//! order things are written (see [`crate::paths`] for the layout), and the driver only moves
//! bytes. All state lives in storage, so a restarted server (or another replica on the same
//! storage) carries on where this one stopped; the only in-memory state is a cache of
//! immutable manifest bytes (and of the blobs they reference) and per-process locks that
//! serialise writes to one upload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use shared::{Digest, RepoName};

use crate::paths;
use crate::storage::{ByteStream, Storage, StorageError};

pub mod catalog;
mod fetched;
mod locks;
mod manifests;
mod summary;
mod uploads;
mod usage;

pub(crate) use manifests::page;
pub use manifests::{Pushed, StoredManifest, TagPage};
pub use summary::{platform_text, RepoSummary, SummaryPlan, TagInfo};
pub use uploads::UploadStatus;
pub use usage::{Footprint, Usage};

/// Why a store operation failed. Every variant but `Storage` is the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The repository does not hold the blob.
    #[error("blob {0} unknown to repository")]
    BlobUnknown(Digest),
    /// No such upload session (or it belongs to another repository).
    #[error("upload {0} unknown")]
    UploadUnknown(String),
    /// A chunk does not start where the upload stands.
    #[error("chunk starts at {start}, upload holds {current} bytes")]
    RangeMismatch {
        /// Where the chunk said it starts.
        start: u64,
        /// Bytes received so far.
        current: u64,
    },
    /// The uploaded bytes do not have the digest the client gave.
    #[error("content has digest {actual}, not {expected}")]
    DigestMismatch {
        /// What the client said.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The upload's body ended early or failed.
    #[error("upload body failed: {0}")]
    BodyFailed(String),
    /// The manifest is not valid.
    #[error("{0}")]
    ManifestInvalid(String),
    /// The manifest refers to content the repository does not hold.
    #[error("manifest refers to unknown {0}")]
    ManifestBlobUnknown(Digest),
    /// The repository holds no such manifest or tag.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// The repository does not exist.
    #[error("repository {0} unknown")]
    NameUnknown(RepoName),
    /// The storage back end failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The result type of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Bytes of manifests kept in memory at most; the cache is emptied when it grows past this.
const MANIFEST_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The registry content store.
pub struct Store {
    storage: Arc<dyn Storage>,
    /// Manifest bytes and media type by digest (immutable content, so always safe to reuse
    /// once a revision link has been checked).
    manifest_cache: Mutex<(usize, HashMap<Digest, Arc<StoredManifest>>)>,
    /// The locks of the upload sessions this process is writing.
    upload_locks: locks::UploadLocks,
    /// What each manifest read for a quota references (immutable content).
    footprints: usage::FootprintCache,
    /// The platform each image config read for a listing names (immutable content).
    config_platforms: summary::PlatformCache,
}

impl Store {
    /// A store over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Store {
            storage,
            manifest_cache: Mutex::new((0, HashMap::new())),
            upload_locks: locks::UploadLocks::default(),
            footprints: usage::FootprintCache::default(),
            config_platforms: summary::PlatformCache::default(),
        }
    }

    /// The driver underneath.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The size of a blob the repository holds.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> StoreResult<u64> {
        let unknown =
            |e: StorageError| if e.is_not_found() { StoreError::BlobUnknown(digest.clone()) } else { e.into() };
        self.storage.stat(&paths::layer_link(repo, digest)).await.map_err(unknown)?;
        Ok(self.storage.stat(&paths::blob_data(digest)).await.map_err(unknown)?.size)
    }

    /// Streams a blob (or a byte range of it) the caller has checked with [`Store::blob_size`].
    pub async fn blob_stream(&self, digest: &Digest, range: Option<std::ops::Range<u64>>) -> StoreResult<ByteStream> {
        self.storage.get(&paths::blob_data(digest), range).await.map_err(|e| {
            if e.is_not_found() {
                StoreError::BlobUnknown(digest.clone())
            } else {
                e.into()
            }
        })
    }

    /// Where a client may fetch a blob directly, when the driver hands out such URLs.
    pub async fn blob_redirect(&self, digest: &Digest) -> StoreResult<Option<String>> {
        Ok(self.storage.redirect_url(&paths::blob_data(digest)).await?)
    }

    /// Removes a blob from a repository. The bytes stay while other repositories may hold
    /// them.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> StoreResult<()> {
        if self.storage.delete(&paths::layer_link(repo, digest)).await? {
            Ok(())
        } else {
            Err(StoreError::BlobUnknown(digest.clone()))
        }
    }

    /// Links a blob that `from` holds (or, without `from`, that the registry holds at all)
    /// into `repo`; returns false when there is nothing to mount.
    pub async fn mount_blob(&self, repo: &RepoName, digest: &Digest, from: Option<&RepoName>) -> StoreResult<bool> {
        crate::gc::fence(self.storage.as_ref(), &[digest]).await?;
        if let Some(from) = from {
            match self.storage.stat(&paths::layer_link(from, digest)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        match self.storage.stat(&paths::blob_data(digest)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.storage.put(&paths::layer_link(repo, digest), Bytes::new()).await?;
        Ok(true)
    }

    /// How many upload sessions have a lock entry (for tests: it is the sessions being
    /// written at the moment, not every id ever seen).
    #[cfg(test)]
    pub(crate) fn upload_locks_len(&self) -> usize {
        self.upload_locks.len()
    }

    /// True when the repository holds anything.
    pub async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool> {
        Ok(!self.storage.list(&paths::repo(repo)).await?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use futures_util::StreamExt;
    use shared::Algorithm;

    use super::*;
    use crate::storage::fs::FsStorage;
    use crate::storage::{Meta, Written};

    /// The filesystem driver, but strict as S3 is about aborts: aborting an upload that is
    /// no longer there (it was completed) fails. Its `delete_all` can be made to fail too.
    struct Strict {
        inner: FsStorage,
        failing_delete_all: AtomicBool,
    }

    #[async_trait]
    impl Storage for Strict {
        async fn get(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
            self.inner.get(path, range).await
        }
        async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
            self.inner.read(path).await
        }
        async fn stat(&self, path: &str) -> Result<Meta, StorageError> {
            self.inner.stat(path).await
        }
        async fn put(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
            self.inner.put(path, data).await
        }
        async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, StorageError> {
            self.inner.put_if_absent(path, data).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, path: &str) -> Result<bool, StorageError> {
            self.inner.delete(path).await
        }
        async fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
            if self.failing_delete_all.load(Ordering::Relaxed) {
                return Err(StorageError::Io { path: prefix.into(), source: std::io::Error::other("back end down") });
            }
            self.inner.delete_all(prefix).await
        }
        async fn write_part(
            &self,
            upload: &str,
            resume: &str,
            offset: u64,
            body: ByteStream,
        ) -> Result<Written, StorageError> {
            self.inner.write_part(upload, resume, offset, body).await
        }
        async fn complete(&self, upload: &str, resume: &str, dest: &str) -> Result<(), StorageError> {
            self.inner.complete(upload, resume, dest).await
        }
        async fn abort(&self, upload: &str, resume: &str) -> Result<(), StorageError> {
            match self.inner.stat(upload).await {
                Err(e) if e.is_not_found() => Err(StorageError::Io {
                    path: upload.into(),
                    source: std::io::Error::other("NoSuchUpload: the upload was completed"),
                }),
                _ => self.inner.abort(upload, resume).await,
            }
        }
    }

    fn strict() -> (tempfile::TempDir, Arc<Strict>, Store) {
        let dir = tempfile::tempdir().unwrap();
        let inner = FsStorage::new(dir.path(), false).unwrap();
        let driver = Arc::new(Strict { inner, failing_delete_all: AtomicBool::new(false) });
        let store = Store::new(driver.clone());
        (dir, driver, store)
    }

    fn body(data: &[u8]) -> ByteStream {
        futures_util::stream::iter(vec![Ok(Bytes::copy_from_slice(data))]).boxed()
    }

    #[tokio::test]
    async fn a_mismatch_found_after_completing_is_the_clients_error() {
        let (_dir, driver, store) = strict();
        let repo: RepoName = "r".parse().unwrap();
        // A sha256 session finished with a sha512 digest: the driver completes the upload
        // into a staged copy, then the bytes do not match.
        let up = store.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        store.append(&repo, &up.id, Some(0), Some(4), body(b"data")).await.unwrap();
        let wrong = Digest::of(Algorithm::Sha512, b"other");
        let err = store.finish_upload(&repo, &up.id, &wrong, None, None, body(b"")).await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(driver.list(paths::UPLOADS).await.unwrap().is_empty());
        assert!(store.blob_size(&repo, &wrong).await.is_err());
    }

    #[tokio::test]
    async fn a_failed_clean_up_never_replaces_the_answer() {
        let (_dir, driver, store) = strict();
        let repo: RepoName = "r".parse().unwrap();
        driver.failing_delete_all.store(true, Ordering::Relaxed);
        for wrong in [Digest::sha256_of(b"other"), Digest::of(Algorithm::Sha512, b"other")] {
            let up = store.start_upload(&repo, Algorithm::Sha256).await.unwrap();
            let err = store.finish_upload(&repo, &up.id, &wrong, None, Some(4), body(b"data")).await.unwrap_err();
            assert!(matches!(err, StoreError::DigestMismatch { .. }), "{wrong}: {err}");
        }
        // A blob stored is stored, whatever happens to the session's debris after.
        for right in [Digest::sha256_of(b"data"), Digest::of(Algorithm::Sha512, b"data")] {
            let up = store.start_upload(&repo, Algorithm::Sha256).await.unwrap();
            store.finish_upload(&repo, &up.id, &right, None, Some(4), body(b"data")).await.unwrap();
            assert_eq!(store.blob_size(&repo, &right).await.unwrap(), 4);
        }
    }
}
