//! The content store: blobs addressed by digest under `blobs/` (see [`crate::paths`]).
//!
//! Content is written to a temporary file in `tmp/`, hashed and counted on the way in,
//! synced, and renamed into place only when digest and size match, so a blob path always
//! holds the content its name promises. The image store writes manifests and configs with
//! [`ContentStore::put`] and streams layers through a [`BlobWriter`] (pulls) or copies them
//! with [`ContentStore::put_file`] (built images, [`crate::import`]).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use shared::{Digest, Hasher};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use crate::paths::Paths;

/// Why a content operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A file of the store could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Content did not match its digest.
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// Content did not have the expected size.
    #[error("{digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The expected size.
        expected: u64,
        /// The size written.
        actual: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io { path: path.to_path_buf(), source }
}

/// Blobs by digest.
#[derive(Debug, Clone)]
pub struct ContentStore {
    paths: Paths,
}

impl ContentStore {
    /// The content store of the store at `paths`.
    pub fn new(paths: Paths) -> ContentStore {
        ContentStore { paths }
    }

    /// Where blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.paths.blob(digest)
    }

    /// True when the blob is present.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of the blob, when present.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.path(digest)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// Reads a whole blob, checking it against its digest.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest);
        let body = fs::read(&path).map_err(io_err(&path))?;
        let actual = Digest::of(digest.algorithm(), &body);
        if actual != *digest {
            return Err(ContentError::DigestMismatch { expected: digest.clone(), actual });
        }
        Ok(body)
    }

    /// Opens a blob for reading (verified when it was stored).
    pub fn open(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.path(digest);
        File::open(&path).map_err(io_err(&path))
    }

    /// Stores `bytes` as blob `digest`, refusing them unless they hash to it.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ContentError> {
        let actual = Digest::of(digest.algorithm(), bytes);
        if actual != *digest {
            return Err(ContentError::DigestMismatch { expected: digest.clone(), actual });
        }
        if self.has(digest) {
            return Ok(());
        }
        let temp = self.temp_file()?;
        {
            let mut file = File::create(&temp.0).map_err(io_err(&temp.0))?;
            file.write_all(bytes).map_err(io_err(&temp.0))?;
            file.sync_all().map_err(io_err(&temp.0))?;
        }
        temp.persist(&self.path(digest))
    }

    /// Takes the file `src` in as blob `digest` of `size` bytes, unless the blob is there;
    /// refused unless what was read has that digest and size. Blocking.
    ///
    /// `src` must not change afterwards (the builder's blobs are written once and renamed into
    /// place): where it is on the store's filesystem it is hard-linked in, not copied, so a
    /// built image is not stored twice. What the link names is still read, hashed and counted
    /// before it becomes visible. Elsewhere it is copied.
    pub fn put_file(&self, digest: &Digest, size: u64, src: &Path) -> Result<(), ContentError> {
        if self.has(digest) {
            return Ok(());
        }
        let temp = self.temp_file()?;
        let linked = fs::hard_link(src, &temp.0).is_ok();
        let mut input = File::open(if linked { &temp.0 } else { src }).map_err(io_err(src))?;
        let mut copy = if linked { None } else { Some(File::create(&temp.0).map_err(io_err(&temp.0))?) };
        let mut hasher = Hasher::new(digest.algorithm());
        let mut written = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = io::Read::read(&mut input, &mut buf).map_err(io_err(src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            written += n as u64;
            if let Some(file) = copy.as_mut() {
                file.write_all(&buf[..n]).map_err(io_err(&temp.0))?;
            }
        }
        copy.as_ref().unwrap_or(&input).sync_all().map_err(io_err(&temp.0))?;
        if written != size {
            return Err(ContentError::SizeMismatch { digest: digest.clone(), expected: size, actual: written });
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(ContentError::DigestMismatch { expected: digest.clone(), actual });
        }
        temp.persist(&self.path(digest))
    }

    /// A writer for blob `digest` of `size` bytes; nothing is visible until
    /// [`BlobWriter::commit`] has checked both.
    pub async fn writer(&self, digest: &Digest, size: u64) -> Result<BlobWriter, ContentError> {
        let temp = self.temp_file()?;
        let file = tokio::fs::File::create(&temp.0).await.map_err(io_err(&temp.0))?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(1024 * 1024, file),
            temp,
            hasher: Hasher::new(digest.algorithm()),
            written: 0,
            digest: digest.clone(),
            size,
            dest: self.path(digest),
        })
    }

    /// Removes a blob; false when it was not there.
    pub fn remove(&self, digest: &Digest) -> Result<bool, ContentError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every blob in the store.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        list_digests(&self.paths.blobs(), false).map_err(|(path, source)| ContentError::Io { path, source })
    }

    fn temp_file(&self) -> Result<TempPath, ContentError> {
        let tmp = self.paths.tmp();
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        Ok(TempPath(self.paths.temp("blob")))
    }
}

/// The digests named by `<dir>/<alg>/<hex>` entries (directories when `dirs`, else files);
/// other names are ignored. Errors carry the directory that could not be read.
pub(crate) fn list_digests(dir: &Path, dirs: bool) -> Result<Vec<Digest>, (PathBuf, io::Error)> {
    let mut out = Vec::new();
    let algs = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(fail(dir)(e)),
    };
    for alg in algs {
        let alg = alg.map_err(fail(dir))?;
        let alg_path = alg.path();
        if !alg_path.is_dir() {
            continue;
        }
        for item in fs::read_dir(&alg_path).map_err(fail(&alg_path))? {
            let item = item.map_err(fail(&alg_path))?;
            let is_dir = item.file_type().map_err(fail(&alg_path))?.is_dir();
            let name = format!("{}:{}", alg.file_name().to_string_lossy(), item.file_name().to_string_lossy());
            if is_dir == dirs {
                if let Ok(d) = name.parse() {
                    out.push(d);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn fail(path: &Path) -> impl FnOnce(io::Error) -> (PathBuf, io::Error) + '_ {
    move |e| (path.to_path_buf(), e)
}

/// A temporary file, removed unless persisted.
struct TempPath(PathBuf);

impl TempPath {
    fn persist(mut self, dest: &Path) -> Result<(), ContentError> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::rename(&self.0, dest).map_err(io_err(dest))?;
        self.0 = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            // Nothing to do when it was never created.
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// Streams one blob into the store: hashes and counts what is written, and on
/// [`BlobWriter::commit`] syncs, checks and renames it into place. Dropped without a
/// commit, it removes its temporary file.
pub struct BlobWriter {
    file: BufWriter<tokio::fs::File>,
    temp: TempPath,
    hasher: Hasher,
    written: u64,
    digest: Digest,
    size: u64,
    dest: PathBuf,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter").field("digest", &self.digest).field("written", &self.written).finish()
    }
}

impl BlobWriter {
    /// Checks size and digest and makes the blob visible.
    pub async fn commit(mut self) -> Result<(), ContentError> {
        let temp = self.temp.0.clone();
        self.file.flush().await.map_err(io_err(&temp))?;
        self.file.get_ref().sync_all().await.map_err(io_err(&temp))?;
        if self.written != self.size {
            return Err(ContentError::SizeMismatch { digest: self.digest, expected: self.size, actual: self.written });
        }
        let actual = self.hasher.finish();
        if actual != self.digest {
            return Err(ContentError::DigestMismatch { expected: self.digest, actual });
        }
        self.temp.persist(&self.dest)
    }
}

impl AsyncWrite for BlobWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.file).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.hasher.update(&buf[..n]);
                this.written += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(Paths::new(dir.path()));
        (dir, store)
    }

    fn leftovers(dir: &Path) -> usize {
        fs::read_dir(dir.join("tmp")).map(|r| r.count()).unwrap_or(0)
    }

    #[test]
    fn puts_and_reads_verified_blobs() {
        let (dir, store) = store();
        let d = Digest::sha256_of(b"hello");
        store.put(&d, b"hello").unwrap();
        assert!(store.has(&d));
        assert_eq!(store.size(&d), Some(5));
        assert_eq!(store.read(&d).unwrap(), b"hello");
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        let wrong = Digest::sha256_of(b"other");
        assert!(matches!(store.put(&wrong, b"hello"), Err(ContentError::DigestMismatch { .. })));
        assert!(!store.has(&wrong));
        // A blob changed on disk is caught when read.
        fs::write(store.path(&d), b"HELLO").unwrap();
        assert!(matches!(store.read(&d), Err(ContentError::DigestMismatch { .. })));
        assert!(store.remove(&d).unwrap());
        assert!(!store.remove(&d).unwrap());
        assert_eq!(leftovers(dir.path()), 0);
    }

    #[tokio::test]
    async fn writers_commit_only_what_matches() {
        let (dir, store) = store();
        let data = vec![9u8; 3_000_000];
        let d = Digest::sha256_of(&data);

        let mut w = store.writer(&d, data.len() as u64).await.unwrap();
        w.write_all(&data[..1000]).await.unwrap();
        assert!(matches!(w.commit().await, Err(ContentError::SizeMismatch { .. })));
        assert!(!store.has(&d));

        let mut w = store.writer(&d, data.len() as u64).await.unwrap();
        let mut bad = data.clone();
        bad[12345] = 0;
        w.write_all(&bad).await.unwrap();
        assert!(matches!(w.commit().await, Err(ContentError::DigestMismatch { .. })));
        assert!(!store.has(&d));

        let mut w = store.writer(&d, data.len() as u64).await.unwrap();
        w.write_all(&data[..10]).await.unwrap();
        drop(w);
        assert_eq!(leftovers(dir.path()), 0, "an abandoned writer leaves nothing");

        let mut w = store.writer(&d, data.len() as u64).await.unwrap();
        w.write_all(&data).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(store.read(&d).unwrap(), data);
        assert_eq!(leftovers(dir.path()), 0);
    }
}
