//! OCI image layout directories (image-spec image-layout.md): write one, add blobs and
//! manifests to it, and read it back.
//!
//! ```text
//! <root>/
//!   oci-layout              {"imageLayoutVersion":"1.0.0"}
//!   index.json              an image index: the layout's entry points, each manifest named
//!                           by its org.opencontainers.image.ref.name annotation
//!   blobs/<alg>/<hex>       content, addressed by digest
//! ```
//!
//! Image builders write layouts, the end-to-end tests hand them to skopeo (`oci:<dir>:<ref>`)
//! and read back what skopeo wrote. Blobs are hashed while they stream in and only renamed
//! into place once their digest is checked, so a blob path always holds the content its
//! name promises. One writer at a time: `index.json` is read, changed and replaced whole.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest::Descriptor;
use crate::media_type;

/// The layout version this module writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";

/// The annotation naming an `index.json` entry (image-spec annotations.md).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The `oci-layout` file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutMarker {
    image_layout_version: String,
}

/// An image index (image-spec image-index.md), as `index.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// `application/vnd.oci.image.index.v1+json` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The entries.
    pub manifests: Vec<Descriptor>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            annotations: None,
        }
    }
}

impl Index {
    /// The entry whose ref name annotation is `name`.
    pub fn find(&self, name: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| ref_name(d) == Some(name))
    }
}

/// The ref name annotation of a descriptor, if it has one.
pub fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor.annotations.as_ref()?.get(REF_NAME_ANNOTATION).map(String::as_str)
}

/// Why a layout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Reading or writing a file of the layout failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `oci-layout` or `index.json` is not the JSON it should be.
    #[error("{path} is not valid")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The directory's `oci-layout` names a version this module does not read.
    #[error("{path}: unsupported image layout version {version:?}")]
    Version {
        /// The `oci-layout` file.
        path: PathBuf,
        /// The version it names.
        version: String,
    },
    /// Content did not match the digest it was given or stored under.
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the content should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// `index.json` names no entry by this ref name.
    #[error("no manifest named {0:?} in index.json")]
    UnknownRef(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io { path: path.to_path_buf(), source }
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates a layout at `root` (and the directory, if missing), with an empty
    /// `index.json`; an existing layout is opened as it is.
    pub fn create(root: impl Into<PathBuf>) -> Result<Layout, LayoutError> {
        let layout = Layout { root: root.into() };
        let marker = layout.root.join("oci-layout");
        if marker.exists() {
            return Layout::open(layout.root);
        }
        fs::create_dir_all(layout.root.join("blobs")).map_err(io_err(&layout.root))?;
        if !layout.index_path().exists() {
            layout.write_index(&Index::default())?;
        }
        let body = serde_json::to_vec(&LayoutMarker { image_layout_version: LAYOUT_VERSION.into() })
            .map_err(|source| LayoutError::Json { path: marker.clone(), source })?;
        write_atomically(&marker, &body)?;
        Ok(layout)
    }

    /// Opens an existing layout, checking its `oci-layout` version.
    pub fn open(root: impl Into<PathBuf>) -> Result<Layout, LayoutError> {
        let layout = Layout { root: root.into() };
        let path = layout.root.join("oci-layout");
        let body = fs::read(&path).map_err(io_err(&path))?;
        let marker: LayoutMarker =
            serde_json::from_slice(&body).map_err(|source| LayoutError::Json { path: path.clone(), source })?;
        if marker.image_layout_version != LAYOUT_VERSION {
            return Err(LayoutError::Version { path, version: marker.image_layout_version });
        }
        Ok(layout)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().as_str()).join(digest.hex())
    }

    /// True when the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores `data` as a SHA-256 blob and returns its digest.
    pub fn add_blob(&self, data: &[u8]) -> Result<Digest, LayoutError> {
        let (digest, _) = self.add_blob_from(data, None)?;
        Ok(digest)
    }

    /// Streams `reader` into a blob, hashing as it goes, and returns its digest and size.
    /// With `expected`, the content is hashed with that digest's algorithm and refused with
    /// [`LayoutError::DigestMismatch`] unless it matches; without, SHA-256 is used. Nothing
    /// is visible under `blobs/` until the digest is known and checked.
    pub fn add_blob_from(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), LayoutError> {
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let dir = self.root.join("blobs").join(algorithm.as_str());
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let temp = TempFile::new(&dir);
        let mut hasher = Hasher::new(algorithm);
        let mut size = 0u64;
        {
            let mut file = File::create(&temp.0).map_err(io_err(&temp.0))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(LayoutError::Io { path: temp.0.clone(), source }),
                };
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n]).map_err(io_err(&temp.0))?;
                size += n as u64;
            }
            file.sync_all().map_err(io_err(&temp.0))?;
        }
        let digest = hasher.finish();
        if let Some(expected) = expected.filter(|e| **e != digest) {
            return Err(LayoutError::DigestMismatch { expected: expected.clone(), actual: digest });
        }
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            temp.persist(&dest)?;
        }
        Ok((digest, size))
    }

    /// Streams the file at `path` into a blob; see [`Layout::add_blob_from`].
    pub fn add_blob_file(&self, path: &Path, expected: Option<&Digest>) -> Result<(Digest, u64), LayoutError> {
        let file = File::open(path).map_err(io_err(path))?;
        self.add_blob_from(BufReader::new(file), expected)
    }

    /// Stores a manifest (or index) blob and returns its descriptor. With `ref_name`, also
    /// lists it in `index.json` under that name, replacing any entry of the same name;
    /// without, it is stored only (as the children of an index are).
    pub fn add_manifest(
        &self,
        media_type: &str,
        bytes: &[u8],
        ref_name: Option<&str>,
    ) -> Result<Descriptor, LayoutError> {
        let digest = self.add_blob(bytes)?;
        let mut descriptor = Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
            urls: None,
        };
        if let Some(name) = ref_name {
            descriptor.annotations = Some(BTreeMap::from([(REF_NAME_ANNOTATION.to_string(), name.to_string())]));
            let mut index = self.index()?;
            index.manifests.retain(|d| self::ref_name(d) != Some(name));
            index.manifests.push(descriptor.clone());
            self.write_index(&index)?;
        }
        Ok(descriptor)
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<Index, LayoutError> {
        let path = self.index_path();
        let body = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&body).map_err(|source| LayoutError::Json { path, source })
    }

    /// Replaces `index.json`.
    pub fn write_index(&self, index: &Index) -> Result<(), LayoutError> {
        let path = self.index_path();
        let body = serde_json::to_vec(index).map_err(|source| LayoutError::Json { path: path.clone(), source })?;
        write_atomically(&path, &body)
    }

    /// The `index.json` entry named `name`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor, LayoutError> {
        self.index()?.find(name).cloned().ok_or_else(|| LayoutError::UnknownRef(name.to_string()))
    }

    /// Reads a whole blob, checking it against its digest. For large blobs use
    /// [`Layout::open_blob`].
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        let body = fs::read(&path).map_err(io_err(&path))?;
        let actual = Digest::of(digest.algorithm(), &body);
        if actual != *digest {
            return Err(LayoutError::DigestMismatch { expected: digest.clone(), actual });
        }
        Ok(body)
    }

    /// Opens a blob for reading; the caller checks the digest if it needs to.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, LayoutError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(io_err(&path))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }
}

/// A temporary file beside its destination, removed unless persisted.
struct TempFile(PathBuf);

impl TempFile {
    fn new(dir: &Path) -> TempFile {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TempFile(dir.join(format!(".tmp-{}-{n}", std::process::id())))
    }

    fn persist(self, dest: &Path) -> Result<(), LayoutError> {
        fs::rename(&self.0, dest).map_err(io_err(dest))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Already renamed away, or never created: nothing to remove.
        let _ = fs::remove_file(&self.0);
    }
}

/// Writes `body` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, body: &[u8]) -> Result<(), LayoutError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = TempFile::new(dir);
    {
        let mut file = File::create(&temp.0).map_err(io_err(&temp.0))?;
        file.write_all(body).map_err(io_err(&temp.0))?;
        file.sync_all().map_err(io_err(&temp.0))?;
    }
    temp.persist(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_marker_and_an_empty_index() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path().join("img")).unwrap();
        assert_eq!(fs::read_to_string(layout.root().join("oci-layout")).unwrap(), r#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.root().join("index.json")).unwrap()).unwrap();
        assert_eq!(index, serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []}));
        // Creating again opens what is there.
        layout.add_manifest(media_type::OCI_MANIFEST, b"{}", Some("v1")).unwrap();
        let again = Layout::create(layout.root()).unwrap();
        assert_eq!(again.index().unwrap().manifests.len(), 1);
    }

    #[test]
    fn stores_blobs_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let digest = layout.add_blob(b"hello").unwrap();
        assert_eq!(digest, Digest::sha256_of(b"hello"));
        assert_eq!(layout.blob_path(&digest), dir.path().join("blobs/sha256").join(digest.hex()));
        assert_eq!(layout.read_blob(&digest).unwrap(), b"hello");
        // Adding the same content again is harmless.
        assert_eq!(layout.add_blob(b"hello").unwrap(), digest);
        // Nothing but the blob is left in the blob directory.
        assert_eq!(fs::read_dir(dir.path().join("blobs/sha256")).unwrap().count(), 1);
    }

    #[test]
    fn streams_files_and_checks_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path().join("layout")).unwrap();
        let src = dir.path().join("src");
        fs::write(&src, vec![7u8; 200_000]).unwrap();
        let expected = Digest::sha256_of(&[7u8; 200_000]);
        assert_eq!(layout.add_blob_file(&src, Some(&expected)).unwrap(), (expected.clone(), 200_000));
        assert!(layout.has_blob(&expected));

        let wrong = Digest::sha256_of(b"something else");
        let err = layout.add_blob_file(&src, Some(&wrong)).unwrap_err();
        assert!(matches!(err, LayoutError::DigestMismatch { ref actual, .. } if *actual == expected), "{err}");
        assert!(!layout.has_blob(&wrong));
        assert_eq!(fs::read_dir(dir.path().join("layout/blobs/sha256")).unwrap().count(), 1);
    }

    #[test]
    fn sha512_blobs_go_under_their_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let expected = Digest::of(Algorithm::Sha512, b"abc");
        let (digest, size) = layout.add_blob_from(&b"abc"[..], Some(&expected)).unwrap();
        assert_eq!((digest.clone(), size), (expected, 3));
        assert!(layout.blob_path(&digest).starts_with(dir.path().join("blobs/sha512")));
        assert_eq!(layout.read_blob(&digest).unwrap(), b"abc");
    }

    #[test]
    fn names_manifests_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let child = layout.add_manifest(media_type::OCI_MANIFEST, br#"{"child":1}"#, None).unwrap();
        assert!(layout.index().unwrap().manifests.is_empty());
        assert!(layout.has_blob(&child.digest));

        let first = layout.add_manifest(media_type::OCI_MANIFEST, br#"{"a":1}"#, Some("v1")).unwrap();
        let other = layout.add_manifest(media_type::OCI_INDEX, br#"{"b":1}"#, Some("multi")).unwrap();
        let second = layout.add_manifest(media_type::OCI_MANIFEST, br#"{"a":2}"#, Some("v1")).unwrap();
        assert_ne!(first.digest, second.digest);

        let reopened = Layout::open(dir.path()).unwrap();
        let index = reopened.index().unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(reopened.resolve("v1").unwrap(), second);
        assert_eq!(reopened.resolve("multi").unwrap(), other);
        assert_eq!(ref_name(&second), Some("v1"));
        assert_eq!(second.size, 7);
        assert_eq!(reopened.read_blob(&second.digest).unwrap(), br#"{"a":2}"#);
        assert!(matches!(reopened.resolve("nope"), Err(LayoutError::UnknownRef(_))));
    }

    #[test]
    fn refuses_other_versions_and_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        assert!(matches!(Layout::open(dir.path()), Err(LayoutError::Version { .. })));
        assert!(matches!(Layout::open(dir.path().join("missing")), Err(LayoutError::Io { .. })));

        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let digest = layout.add_blob(b"good").unwrap();
        fs::write(layout.blob_path(&digest), b"evil").unwrap();
        assert!(matches!(layout.read_blob(&digest), Err(LayoutError::DigestMismatch { .. })));
    }
}
