//! The local image store: content, snapshots and the image index under one root (drawn
//! in [`crate::paths`]), and the operations `berth pull`, `berth images` and `berth rmi`
//! need: pull (in [`crate::pull`]), list, find, remove with garbage collection, and flatten.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use shared::Digest;

use crate::content::{ContentError, ContentStore};
use crate::images::{FileLock, ImageIndex, ImageRecord, IndexError};
use crate::paths::Paths;
use crate::snapshots::{SnapshotError, SnapshotStore};
use crate::unpack::{self, remove_tree, UnpackError, UnpackMode};

/// The default root of the store.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// The most the store's root may allow: everything for its owner, passing through for its
/// group, nothing for other users, as Docker's `/var/lib/docker` (CVE-2021-41091). Snapshots
/// and containers' upper directories hold files from images and containers, set-user-ID
/// ones among them, which other local users must not be able to run. Containers reach
/// their roots through their mounts, never by this path, so they still run as any user.
pub const ROOT_MODE: u32 = 0o710;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A directory of the store could not be created or used.
    #[error("{path}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The image index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The snapshot store failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// No image has this reference or digest.
    #[error("no such image: {0}")]
    NotFound(String),
    /// A digest prefix names more than one image manifest.
    #[error("{name} names {count} different images; give more digits or a reference")]
    Ambiguous {
        /// The name given.
        name: String,
        /// How many manifests it matches.
        count: usize,
    },
    /// A container (running or not) was made from the image.
    #[error("image {image} is used by container {container} (remove it first with `berth rm`)")]
    InUse {
        /// The image's reference.
        image: String,
        /// The container's name.
        container: String,
    },
    /// The containers could not be listed.
    #[error("cannot list the containers")]
    Containers(#[source] Box<crate::container::ContainerError>),
    /// The flatten destination exists.
    #[error("{0} already exists; flattening needs a new directory")]
    DestinationExists(PathBuf),
    /// A layer could not be applied while flattening.
    #[error("flattening layer {digest} into {dest}")]
    Flatten {
        /// The destination.
        dest: PathBuf,
        /// The layer blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: UnpackError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// What [`Store::remove`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The references removed from the index.
    pub references: Vec<String>,
    /// What garbage collection removed after that.
    pub collected: Collected,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Blobs no image uses any more.
    pub blobs: Vec<Digest>,
    /// Snapshots no image uses any more.
    pub snapshots: Vec<Digest>,
}

/// A local image store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) paths: Paths,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: SnapshotStore,
    pub(crate) index: ImageIndex,
}

impl Store {
    /// Opens (creating if needed) the store at `root`. When nobody else is using it, left-
    /// overs of interrupted work in `tmp/` are removed. The root is made (or, made by an
    /// older berth, changed to) mode [`ROOT_MODE`] at most.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let paths = Paths::new(root);
        create_private_root(paths.root())?;
        for dir in [paths.blobs(), paths.snapshots(), paths.tmp()] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let lock_path = paths.lock();
        if let Some(_lock) = FileLock::try_exclusive(&lock_path).map_err(io_err(&lock_path))? {
            clean_dir(&paths.tmp())?;
        }
        Ok(Store {
            content: ContentStore::new(paths.clone()),
            snapshots: SnapshotStore::new(paths.clone()),
            index: ImageIndex::new(paths.clone()),
            paths,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.paths.root()
    }

    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// Every image, sorted by reference.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self.index.load()?)
    }

    /// The images `name` means: the image of that reference (`busybox` is
    /// `docker.io/library/busybox:latest`), else every image whose manifest digest is
    /// `name` or starts with it (`sha256:` optional, at least 4 hex digits).
    pub fn find(&self, name: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let images = self.index.load()?;
        if let Ok(reference) = name.parse::<shared::ImageRef>() {
            let canonical = reference.to_string();
            if let Some(found) = images.iter().find(|r| r.reference == canonical) {
                return Ok(vec![found.clone()]);
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Ok(images.into_iter().filter(|r| r.manifest.hex().starts_with(hex)).collect());
        }
        Ok(Vec::new())
    }

    /// The one image `name` means (see [`Store::find`]): every record it matches must name
    /// the same manifest.
    pub fn find_one(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let found = self.find(name)?;
        let manifests: BTreeSet<&Digest> = found.iter().map(|r| &r.manifest).collect();
        match (found.first(), manifests.len()) {
            (None, _) => Err(StoreError::NotFound(name.to_string())),
            (Some(first), 1) => Ok(first.clone()),
            (_, count) => Err(StoreError::Ambiguous { name: name.to_string(), count }),
        }
    }

    /// Records the image `source` means (see [`Store::find_one`]) under `target` too, as
    /// `docker tag` does, replacing what `target` named; returns the new record. No content
    /// is copied: both records use the same blobs and snapshots.
    pub fn tag(&self, source: &str, target: &shared::ImageRef) -> Result<ImageRecord, StoreError> {
        // Shared: a removal cannot collect the image's content between lookup and record.
        let lock_path = self.paths.lock();
        let _lock = FileLock::shared(&lock_path).map_err(io_err(&lock_path))?;
        let record = ImageRecord { reference: target.to_string(), ..self.find_one(source)? };
        self.index.put(record.clone())?;
        Ok(record)
    }

    /// Removes the images `names` mean (see [`Store::find`]) from the index, then the
    /// blobs and snapshots no remaining image uses. Nothing is removed unless every name
    /// is found, nor when a container was made from one of them. Waits for running pulls
    /// to finish.
    pub fn remove(&self, names: &[String]) -> Result<Removed, StoreError> {
        let lock_path = self.paths.lock();
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err(&lock_path))?;
        let mut doomed = BTreeSet::new();
        for name in names {
            let found = self.find(name)?;
            if found.is_empty() {
                return Err(StoreError::NotFound(name.clone()));
            }
            doomed.extend(found.into_iter().map(|r| r.reference));
        }
        let containers = crate::container::Containers::new(self.paths.clone())
            .list()
            .map_err(|e| StoreError::Containers(Box::new(e)))?;
        if let Some(c) = containers.iter().find(|c| doomed.contains(&c.image_reference)) {
            return Err(StoreError::InUse { image: c.image_reference.clone(), container: c.name.clone() });
        }
        self.index.update(|images| images.retain(|r| !doomed.contains(&r.reference)))?;
        let collected = self.collect_locked()?;
        Ok(Removed { references: doomed.into_iter().collect(), collected })
    }

    /// Removes blobs and snapshots that no image uses. Waits for running pulls to finish.
    pub fn collect_garbage(&self) -> Result<Collected, StoreError> {
        let lock_path = self.paths.lock();
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err(&lock_path))?;
        self.collect_locked()
    }

    fn collect_locked(&self) -> Result<Collected, StoreError> {
        let images = self.index.load()?;
        let live_blobs: BTreeSet<&Digest> = images.iter().flat_map(ImageRecord::blobs).collect();
        let live_snapshots: BTreeSet<&Digest> =
            images.iter().flat_map(|r| r.layers.iter().map(|l| &l.diff_id)).collect();
        let mut collected = Collected::default();
        for digest in self.content.list()? {
            if !live_blobs.contains(&digest) && self.content.remove(&digest)? {
                collected.blobs.push(digest);
            }
        }
        for diff_id in self.snapshots.list()? {
            if !live_snapshots.contains(&diff_id) && self.snapshots.remove(&diff_id)? {
                collected.snapshots.push(diff_id);
            }
        }
        // Nobody else works in the store while the lock is held.
        clean_dir(&self.paths.tmp())?;
        Ok(collected)
    }

    /// Writes the image's root file system into the new directory `dest` as one plain tree:
    /// the layers applied in order, whiteouts applied, with the same containment checks as
    /// snapshots (a symbolic link from one layer cannot be written through by a later one).
    /// For hosts where overlayfs is not available. On failure `dest` is removed.
    pub fn flatten(&self, image: &ImageRecord, dest: &Path) -> Result<(), StoreError> {
        if dest.symlink_metadata().is_ok() {
            return Err(StoreError::DestinationExists(dest.to_path_buf()));
        }
        fs::create_dir_all(dest).map_err(io_err(dest))?;
        let result = image.layers.iter().try_for_each(|layer| {
            let blob = self.content.open(&layer.digest)?;
            unpack::unpack(BufReader::new(blob), dest, UnpackMode::Flatten, Some(&layer.diff_id)).map(drop).map_err(
                |source| StoreError::Flatten { dest: dest.to_path_buf(), digest: layer.digest.clone(), source },
            )
        });
        if result.is_err() {
            if let Err(e) = remove_tree(dest) {
                tracing::warn!(path = %dest.display(), error = %shared::error_chain(&e), "cannot remove a partly flattened tree");
            }
        }
        result
    }
}

/// Creates the store's root directory `root` (its parents as usual) with mode
/// [`ROOT_MODE`], or takes from an existing one every permission beyond it.
fn create_private_root(root: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    match fs::DirBuilder::new().mode(ROOT_MODE).create(root) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(root)(e)),
        _ => {}
    }
    let mode = fs::metadata(root).map_err(io_err(root))?.permissions().mode() & 0o7777;
    if mode & !ROOT_MODE != 0 {
        tracing::info!(path = %root.display(), from = format!("{mode:o}"), to = format!("{:o}", mode & ROOT_MODE), "closing the store's root to other users");
        fs::set_permissions(root, fs::Permissions::from_mode(mode & ROOT_MODE)).map_err(io_err(root))?;
    }
    Ok(())
}

/// Removes everything inside `dir`.
fn clean_dir(dir: &Path) -> Result<(), StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        remove_tree(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn record(reference: &str, manifest: &[u8]) -> ImageRecord {
        let d = Digest::sha256_of(manifest);
        ImageRecord {
            reference: reference.into(),
            manifest: d.clone(),
            media_type: shared::media_type::OCI_MANIFEST.into(),
            manifest_size: 1,
            index: None,
            platform: shared::manifest::Platform::host(),
            config: d,
            layers: Vec::new(),
            created: None,
            unpacked_size: 0,
            pulled_at: 0,
        }
    }

    #[test]
    fn tags_name_the_same_image_and_replace_what_they_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let busybox = record("docker.io/library/busybox:latest", b"busybox");
        store.index.put(busybox.clone()).unwrap();
        store.index.put(record("localhost:5000/copy:v1", b"older")).unwrap();

        let target: shared::ImageRef = "localhost:5000/copy:v1".parse().unwrap();
        let tagged = store.tag("busybox", &target).unwrap();
        assert_eq!(tagged, ImageRecord { reference: "localhost:5000/copy:v1".into(), ..busybox.clone() });
        assert_eq!(store.find("localhost:5000/copy:v1").unwrap(), vec![tagged]);
        assert_eq!(store.images().unwrap().len(), 2, "the tag replaced the old record");

        // By digest prefix, as `berth images` shows it.
        let short = &busybox.manifest.hex()[..12];
        let other: shared::ImageRef = "other:latest".parse().unwrap();
        assert_eq!(store.tag(short, &other).unwrap().manifest, busybox.manifest);
        // A prefix naming two manifests is refused, as is a name nothing has.
        assert!(matches!(store.tag("missing", &other), Err(StoreError::NotFound(n)) if n == "missing"));
        // Two manifests whose digests share 4 hex digits (a birthday search, a few hundred
        // hashes).
        let mut by_prefix = std::collections::HashMap::new();
        let (a, b) = (0u32..)
            .find_map(|i| {
                let body = i.to_string().into_bytes();
                let prefix = Digest::sha256_of(&body).hex()[..4].to_string();
                by_prefix.insert(prefix, body.clone()).map(|earlier| (earlier, body))
            })
            .unwrap();
        store.index.put(record("a:1", &a)).unwrap();
        store.index.put(record("b:1", &b)).unwrap();
        let prefix = Digest::sha256_of(&a).hex()[..4].to_string();
        assert!(matches!(store.tag(&prefix, &other), Err(StoreError::Ambiguous { count: 2, .. })));
    }

    #[test]
    fn the_root_is_closed_to_other_users_new_or_old() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("parent/store");
        Store::open(&root).unwrap();
        assert_eq!(mode(&root), 0o710);
        assert_eq!(mode(&root.join("..")) & 0o755, 0o755, "parents are made as usual");
        // A store made by an older berth (0755, or looser) is closed when opened.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        Store::open(&root).unwrap();
        assert_eq!(mode(&root), 0o710);
        // A stricter one stays as it is.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        Store::open(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
    }

    /// Runs `args` as user nobody (uid and gid 65534, no groups); true when it succeeds.
    /// A shell that already runs as nobody executes the program: setpriv may look it up
    /// before it changes user.
    fn as_nobody(args: &[&Path]) -> bool {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/busybox", "sh", "-c"])
            .arg("exec \"$0\" \"$@\"")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    #[test]
    fn other_users_cannot_reach_set_user_id_files_in_snapshots() {
        if !shared::testing::require_root("store::tests::other_users_cannot_reach_set_user_id_files_in_snapshots") {
            return;
        }
        // Everyone may enter the folder the store is in, as `/var/lib` is.
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap();
        // A set-user-ID root program of some image, as a snapshot holds it.
        let rootfs = store.snapshots().rootfs(&Digest::sha256_of(b"canary layer"));
        fs::create_dir_all(&rootfs).unwrap();
        // Named busybox, which then runs as busybox whatever folder it is in.
        let canary = rootfs.join("busybox");
        fs::copy("/bin/busybox", &canary).unwrap();
        fs::set_permissions(&canary, fs::Permissions::from_mode(0o4755)).unwrap();
        let true_ = Path::new("true");
        assert!(as_nobody(&[Path::new("/bin/busybox"), true_]), "setpriv cannot run commands as nobody here");
        assert!(!as_nobody(&[&canary, true_]), "user nobody ran a set-user-ID file inside the store");
        // The same file outside the store runs (so it is the store's root that stops it).
        let outside = dir.path().join("outside/busybox");
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::copy(&canary, &outside).unwrap();
        assert!(as_nobody(&[&outside, true_]), "the canary does not run as nobody at all");
    }
}
