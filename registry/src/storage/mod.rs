//! The storage driver interface: a small key/value store of byte objects keyed by
//! `/`-separated paths, with streamed reads, atomic writes, create-only writes, listing, and
//! multipart uploads for blob data.
//!
//! All OCI logic (what the paths mean, digests, links) lives above this trait, in
//! [`crate::store`]; a driver only moves bytes. Every driver passes the one test suite in
//! [`suite`]. Paths given to drivers are built by [`crate::paths`] from validated names and
//! digests; drivers still refuse `..` and empty components.
//!
//! Visibility rules every driver keeps: a `put` or `complete` becomes visible to readers all at
//! once or not at all, and bytes written by `write_part` are never readable at any path other
//! than through `complete`.

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub mod fs;
pub mod s3;
pub mod suite;

/// A stream of bytes read from or written to storage.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// What a driver can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Nothing is stored at the path.
    #[error("not found: {0}")]
    NotFound(String),
    /// The path is not one a driver accepts (empty or `..` components).
    #[error("invalid storage path {0:?}")]
    InvalidPath(String),
    /// A write's body stream failed (the client went away or sent less than it announced);
    /// nothing of that write is kept.
    #[error("request body failed: {0}")]
    Body(String),
    /// The back end failed.
    #[error("storage I/O on {path}")]
    Io {
        /// The path involved.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// True when the error means "nothing at that path".
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}

/// The size and age of a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// What a multipart write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The bytes written.
    pub len: u64,
    /// What the driver needs to continue the upload after this write (opaque text; empty for
    /// drivers that need nothing). The caller records it with the upload's length, in storage,
    /// and hands it to the next write, to `complete` or to `abort`: a driver keeps no state of
    /// its own between writes, so recording a write costs the caller's one storage write, and
    /// any process can continue the upload.
    pub resume: String,
}

/// What [`Storage::sweep_own`] found (and, unless dry, removed). A dry run finds only what
/// nothing referred to already: not what the blobs it would remove refer to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnSwept {
    /// Objects nothing refers to.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Multipart uploads no upload session knows.
    pub uploads: u64,
}

/// A storage back end.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Streams the object at `path`, or the byte range `range` of it (which the caller has
    /// checked against the object's size).
    async fn get(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream, StorageError>;

    /// Reads a whole (small) object into memory.
    async fn read(&self, path: &str) -> Result<Bytes, StorageError>;

    /// The size and modification time of the object at `path`.
    async fn stat(&self, path: &str) -> Result<Meta, StorageError>;

    /// [`Storage::stat`] of several objects, answered in order. Drivers for which each call
    /// has a fixed cost (the filesystem driver's trip to a blocking thread) answer them all in
    /// one; the default sends the stats concurrently.
    async fn stat_many(&self, paths: &[String]) -> Vec<Result<Meta, StorageError>> {
        futures_util::future::join_all(paths.iter().map(|p| self.stat(p))).await
    }

    /// Writes `data` at `path`, replacing what was there; readers see the old or the new
    /// object, never a mix.
    async fn put(&self, path: &str, data: Bytes) -> Result<(), StorageError>;

    /// Writes `data` at `path` only if nothing is there; returns whether it wrote.
    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, StorageError>;

    /// The names of the immediate children of the folder `prefix` (objects and folders),
    /// sorted; empty when there is no such folder.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// The children of the folder `prefix` that may hold something sorting after
    /// `prefix/after`, sorted: every child `c` with `c + "0" > after` (`0` follows `/`, so
    /// `c + "0"` sorts after `c` and everything below it). A driver may leave out children
    /// it knows hold nothing after it (S3 asks the back end to start after that key). For
    /// walks that resume from a name, as `_catalog` paging does.
    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<String>, StorageError> {
        let all = self.list(prefix).await?;
        Ok(all.into_iter().filter(|c| may_follow(c, after)).collect())
    }

    /// Deletes the object at `path`; returns whether there was one.
    async fn delete(&self, path: &str) -> Result<bool, StorageError>;

    /// Deletes everything below the folder `prefix`.
    async fn delete_all(&self, prefix: &str) -> Result<(), StorageError>;

    /// Writes `body` into the multipart upload `upload` starting at byte `offset`, which must
    /// be the upload's length as the caller recorded it, with the [`Written::resume`] it
    /// recorded along (empty before the first write). Anything a write the caller did not
    /// record left past that point is discarded. Returns the bytes written and the resume
    /// text for the next write; on error nothing of this part counts.
    async fn write_part(
        &self,
        upload: &str,
        resume: &str,
        offset: u64,
        body: ByteStream,
    ) -> Result<Written, StorageError>;

    /// [`Storage::write_part`] of a body whose length the caller knows before it arrives (a
    /// request's `Content-Length`), so that a driver can send the bytes on while they arrive
    /// instead of holding them first. A body of another length than `len` fails with
    /// [`StorageError::Body`], and nothing of it counts. `None` is [`Storage::write_part`].
    async fn write_part_sized(
        &self,
        upload: &str,
        resume: &str,
        offset: u64,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<Written, StorageError> {
        let written = self.write_part(upload, resume, offset, body).await?;
        match len {
            // Not recorded by the caller, so the next write discards it.
            Some(len) if len != written.len => {
                Err(StorageError::Body(format!("{} bytes, where {len} were announced", written.len)))
            }
            _ => Ok(written),
        }
    }

    /// Makes the upload's bytes readable at `dest` in one step and forgets the upload;
    /// `resume` is that of the upload's last recorded write.
    async fn complete(&self, upload: &str, resume: &str, dest: &str) -> Result<(), StorageError>;

    /// Discards an upload's bytes; `resume` is that of its last recorded write (empty when
    /// none is known).
    async fn abort(&self, upload: &str, resume: &str) -> Result<(), StorageError>;

    /// Finds what the driver stored of its own, beside the paths it was given, that nothing
    /// refers to any more and that is older than `before`, and deletes it unless `dry_run`
    /// (for [`crate::gc`]). `sessions` are the [`Written::resume`] texts recorded by every
    /// upload session, listed before this call: what they name is in use. The default, for
    /// drivers that store nothing of their own, finds nothing.
    async fn sweep_own(
        &self,
        sessions: &[String],
        before: SystemTime,
        dry_run: bool,
    ) -> Result<OwnSwept, StorageError> {
        let _ = (sessions, before, dry_run);
        Ok(OwnSwept::default())
    }

    /// The bytes of everything stored, when the driver can count them in about one listing
    /// of everything (for the collector's report and `/metrics`); `None` otherwise.
    async fn bytes_stored(&self) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }

    /// Requests sent to the back end so far, by operation (empty for drivers that send none).
    fn request_counts(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// A URL a client may fetch the object at `path` from directly, when the driver is
    /// configured to hand such URLs out; `None` means "serve it yourself".
    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        let _ = path;
        Ok(None)
    }
}

/// Whether the child `child` of a folder, or something below it, may sort after `after`
/// (see [`Storage::list_after`]).
pub fn may_follow(child: &str, after: &str) -> bool {
    let mut bound = String::with_capacity(child.len() + 1);
    bound.push_str(child);
    bound.push('0');
    bound.as_str() > after
}

/// Splits and checks a driver path: no empty, `.` or `..` components.
pub fn check_path(path: &str) -> Result<(), StorageError> {
    let bad = path.is_empty() || path.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(StorageError::InvalidPath(path.to_string()))
    } else {
        Ok(())
    }
}
