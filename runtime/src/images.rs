//! The image index, `images.json`: which images the store holds, by reference.
//!
//! Each [`ImageRecord`] maps a canonical reference (`docker.io/library/busybox:latest`) to
//! the manifest pulled for it and everything it uses — index, config, layer blobs and the
//! layers' diff IDs — so `berth images` and garbage collection need not re-read manifests.
//! The file is replaced whole (temporary file, then rename) while `images.lock` is held, so
//! concurrent pulls do not lose each other's records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::manifest::Platform;
use shared::{Digest, ImageRef, ImageRefError};

use crate::paths::Paths;

/// The format version of `images.json`.
const VERSION: u32 = 1;

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The layer blob's digest.
    pub digest: Digest,
    /// The layer blob's media type.
    pub media_type: String,
    /// The layer blob's size.
    pub size: u64,
    /// The digest of the uncompressed tar, which names its snapshot.
    pub diff_id: Digest,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The canonical reference it was pulled by.
    pub reference: String,
    /// The image manifest's digest.
    pub manifest: Digest,
    /// The image manifest's media type.
    pub media_type: String,
    /// The image manifest's size.
    pub manifest_size: u64,
    /// The index the manifest was chosen from, when the reference named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// The platform of the image.
    pub platform: Platform,
    /// The image config's digest.
    pub config: Digest,
    /// The layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// When the image was created, as its config says (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Bytes of file content in all layers together.
    pub unpacked_size: u64,
    /// When it was pulled, in seconds since the Unix epoch.
    pub pulled_at: u64,
}

impl ImageRecord {
    /// The reference, parsed.
    pub fn image_ref(&self) -> Result<ImageRef, ImageRefError> {
        self.reference.parse()
    }

    /// Every blob the image uses: index, manifest, config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.index.iter().chain([&self.manifest, &self.config]).chain(self.layers.iter().map(|l| &l.digest))
    }

    /// `created` in seconds since the Unix epoch, when it parses.
    pub fn created_unix(&self) -> Option<i64> {
        self.created.as_deref().and_then(shared::date::parse_rfc3339)
    }
}

/// Why the image index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file or its lock could not be used.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid index.
    #[error("{path} is not a valid image index")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a newer berth.
    #[error("{path} has format version {version}; this berth reads version {VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IndexError + '_ {
    move |source| IndexError::Io { path: path.to_path_buf(), source }
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<ImageRecord>,
}

/// The image index of a store.
#[derive(Debug, Clone)]
pub struct ImageIndex {
    paths: Paths,
}

impl ImageIndex {
    /// The index of the store at `paths`.
    pub fn new(paths: Paths) -> ImageIndex {
        ImageIndex { paths }
    }

    /// Every image, sorted by reference.
    pub fn load(&self) -> Result<Vec<ImageRecord>, IndexError> {
        let path = self.paths.images();
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let file: IndexFile =
            serde_json::from_slice(&body).map_err(|source| IndexError::Json { path: path.clone(), source })?;
        if file.version > VERSION {
            return Err(IndexError::Version { path, version: file.version });
        }
        let mut images = file.images;
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(images)
    }

    /// Reads the index, lets `change` edit it, and writes it back, all under the index lock.
    pub fn update<T>(&self, change: impl FnOnce(&mut Vec<ImageRecord>) -> T) -> Result<T, IndexError> {
        let lock_path = self.paths.images_lock();
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err(&lock_path))?;
        let mut images = self.load()?;
        let result = change(&mut images);
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        let path = self.paths.images();
        let body = serde_json::to_vec_pretty(&IndexFile { version: VERSION, images })
            .map_err(|source| IndexError::Json { path: path.clone(), source })?;
        let temp = self.paths.temp("images");
        let write = || -> io::Result<()> {
            fs::create_dir_all(self.paths.tmp())?;
            let mut file = File::create(&temp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            fs::rename(&temp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temp);
            return Err(io_err(&path)(e));
        }
        Ok(result)
    }

    /// Adds `record`, replacing the record of the same reference; returns the replaced one.
    pub fn put(&self, record: ImageRecord) -> Result<Option<ImageRecord>, IndexError> {
        self.update(|images| {
            let old = images.iter().position(|r| r.reference == record.reference).map(|i| images.remove(i));
            images.push(record);
            old
        })
    }
}

/// An advisory lock (`flock`) on a file, released when dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).truncate(false).write(true).open(path)
    }

    /// Waits for an exclusive lock on `path` (created if missing).
    pub(crate) fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = Self::open(path)?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)?;
        Ok(FileLock { _file: file })
    }

    /// Waits for a shared lock on `path` (created if missing).
    pub(crate) fn shared(path: &Path) -> io::Result<FileLock> {
        let file = Self::open(path)?;
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockShared)?;
        Ok(FileLock { _file: file })
    }

    /// An exclusive lock on `path` if nobody holds any lock on it now.
    pub(crate) fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        let file = Self::open(path)?;
        match rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reference: &str) -> ImageRecord {
        let d = Digest::sha256_of(reference.as_bytes());
        ImageRecord {
            reference: reference.into(),
            manifest: d.clone(),
            media_type: shared::media_type::OCI_MANIFEST.into(),
            manifest_size: 1,
            index: None,
            platform: Platform::host(),
            config: d.clone(),
            layers: vec![LayerRecord { digest: d.clone(), media_type: "x".into(), size: 1, diff_id: d }],
            created: Some("2024-01-02T03:04:05Z".into()),
            unpacked_size: 7,
            pulled_at: 0,
        }
    }

    #[test]
    fn puts_replaces_and_removes_records() {
        let dir = tempfile::tempdir().unwrap();
        let index = ImageIndex::new(Paths::new(dir.path()));
        assert!(index.load().unwrap().is_empty());
        assert_eq!(index.put(record("docker.io/library/b:latest")).unwrap(), None);
        assert_eq!(index.put(record("docker.io/library/a:latest")).unwrap(), None);
        let mut changed = record("docker.io/library/b:latest");
        changed.unpacked_size = 9;
        assert!(index.put(changed).unwrap().is_some());
        let all = index.load().unwrap();
        assert_eq!(
            all.iter().map(|r| r.reference.as_str()).collect::<Vec<_>>(),
            ["docker.io/library/a:latest", "docker.io/library/b:latest"]
        );
        assert_eq!(all[1].unpacked_size, 9);
        index.update(|images| images.retain(|r| r.reference.contains("/a:"))).unwrap();
        assert_eq!(index.load().unwrap().len(), 1);
        assert_eq!(all[0].blobs().count(), 3);
        assert_eq!(all[0].image_ref().unwrap().familiar(), "a:latest");
    }

    #[test]
    fn refuses_newer_formats() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("images.json"), r#"{"version":99,"images":[]}"#).unwrap();
        let index = ImageIndex::new(Paths::new(dir.path()));
        assert!(matches!(index.load(), Err(IndexError::Version { version: 99, .. })));
        fs::write(dir.path().join("images.json"), "{").unwrap();
        assert!(matches!(index.load(), Err(IndexError::Json { .. })));
    }

    #[test]
    fn locks_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let shared = FileLock::shared(&path).unwrap();
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(shared);
        let exclusive = FileLock::try_exclusive(&path).unwrap();
        assert!(exclusive.is_some());
    }
}
