//! The build cache: step keys to layers, and the blobs of every layer, config and manifest a
//! build wrote.
//!
//! ```text
//! <store root>/build/             (the store root is `berth --root`, default /var/lib/berth)
//!   lock                          flock: shared while a build runs, exclusive while a
//!                                 prune does ([`crate::prune`])
//!   oci-layout, index.json        an OCI image layout ([`shared::layout::Layout`])…
//!   blobs/sha256/<hex>            …holding the layers, configs and manifests of builds
//!                                 (index.json names those built with `-t`)
//!   keys/<hex>.json               one cache entry: step key → the layer it made; its
//!                                 modification time is its last use (write or hit)
//!   stat-cache.json               content digests of context files by stat ([`crate::context::StatCache`])
//!   index/<hex>.json              what the layer blob <hex> holds, path by path, for the
//!                                 executor's path index ([`crate::fsindex::LayerIndex`]),
//!                                 so a big layer is not decompressed again to index it
//!   mounts/<id>/                  RUN --mount=type=cache directories, kept between builds
//!   tmp/                          work in progress: layers being written, step roots
//! ```
//!
//! A step's key is the SHA-256 of its parent's key and what the step does (see
//! [`crate::build`]). An entry is written only after its layer blob is in place, each by a
//! rename from `tmp/`, so an interrupted build leaves no entry that points at nothing and no
//! half-written blob under a digest.
//!
//! `--cache-to REF` pushes the entries a build used as an OCI artifact: a manifest whose
//! config (media type [`CACHE_CONFIG_TYPE`]) lists the entries and whose layers are the layer
//! blobs. `--cache-from REF` reads that list; a hit on an imported entry downloads its layer
//! then (verified by digest) and records the entry locally.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use serde::{Deserialize, Serialize};
use shared::client::{Client, ClientError};
use shared::layout::{Layout, LayoutError};
use shared::manifest::Descriptor;
use shared::{media_type, Digest, ImageRef};

/// The media type of an exported cache's config (and the manifest's artifact type).
pub const CACHE_CONFIG_TYPE: &str = "application/vnd.berth.build.cache.v1+json";

/// Why the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file of the cache could not be used.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Talking to the registry failed.
    #[error("cache {what} {reference}")]
    Registry {
        /// `export to` or `import from`.
        what: &'static str,
        /// The cache reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<ClientError>,
    },
    /// An imported cache is not berth's.
    #[error("{reference} is not a berth build cache: {reason}")]
    NotACache {
        /// The cache reference.
        reference: String,
        /// Why.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

/// A layer a step made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size.
    pub size: u64,
    /// The tar's digest.
    pub diff_id: Digest,
    /// The blob's media type.
    pub media_type: String,
}

impl LayerRef {
    /// A descriptor for the blob.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            artifact_type: None,
            annotations: None,
            platform: None,
            urls: None,
        }
    }
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The layer; `None` when the step changed nothing.
    pub layer: Option<LayerRef>,
    /// The step, for people reading the cache.
    pub created_by: String,
}

/// The exported form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Exported {
    entries: BTreeMap<String, Entry>,
}

/// The build cache of one store. It holds the cache's lock while it lives.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    layout: Layout,
    imported: Mutex<BTreeMap<String, (Entry, ImageRef)>>,
    used: Mutex<BTreeMap<String, Entry>>,
    _lock: Flock<File>,
}

impl Cache {
    /// Opens (creating) the cache at `root` for a build: holds its lock shared, waiting
    /// while a prune runs.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        Cache::open_with(root, FlockArg::LockShared)
    }

    /// Opens (creating) the cache at `root` for a prune: holds its lock exclusively,
    /// waiting while builds run.
    pub fn open_exclusive(root: &Path) -> Result<Cache, CacheError> {
        Cache::open_with(root, FlockArg::LockExclusive)
    }

    fn open_with(root: &Path, how: FlockArg) -> Result<Cache, CacheError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let path = root.join("lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        let lock = Flock::lock(file, how).map_err(|(_, errno)| io_err(&path)(errno.into()))?;
        for dir in [root.join("keys"), root.join("tmp"), root.join("mounts")] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let layout = Layout::create(root)?;
        Ok(Cache { root: root.to_path_buf(), layout, imported: Mutex::default(), used: Mutex::default(), _lock: lock })
    }

    /// The cache's layout (its blobs).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path in `tmp/`.
    pub fn temp(&self, prefix: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{prefix}-{}-{n}", std::process::id()))
    }

    /// Where RUN --mount=type=cache directory `id` lives.
    pub fn mount_dir(&self, id: &str) -> PathBuf {
        let safe: String =
            id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
        let hash = &Digest::sha256_of(id.as_bytes()).hex()[..12].to_string();
        self.root.join("mounts").join(format!("{safe}-{hash}"))
    }

    /// Where the stat cache is saved.
    pub fn stat_cache_path(&self) -> PathBuf {
        self.root.join("stat-cache.json")
    }

    fn key_path(&self, key: &Digest) -> PathBuf {
        self.root.join("keys").join(format!("{}.json", key.hex()))
    }

    /// Where the summary of the layer blob `digest` is kept ([`crate::fsindex::LayerIndex`]).
    pub fn layer_index_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("index").join(format!("{}.json", digest.hex()))
    }

    /// The entry for `key`, if it and its layer blob are present locally. A hit marks the
    /// entry used now (for `berth build prune`).
    pub fn get_local(&self, key: &Digest) -> Option<Entry> {
        let path = self.key_path(key);
        let body = fs::read(&path).ok()?;
        let entry: Entry = serde_json::from_slice(&body).ok()?;
        if let Some(layer) = &entry.layer {
            if !self.layout.has_blob(&layer.digest) {
                return None;
            }
        }
        if let Ok(file) = File::options().write(true).open(&path) {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(entry)
    }

    /// The entry for `key`: local, else imported (downloading its layer now).
    pub async fn get(&self, client: &Client, key: &Digest) -> Result<Option<Entry>, CacheError> {
        if let Some(e) = self.get_local(key) {
            self.mark_used(key, &e);
            return Ok(Some(e));
        }
        let imported = self.imported.lock().ok().and_then(|m| m.get(&key.to_string()).cloned());
        let Some((entry, source)) = imported else { return Ok(None) };
        if let Some(layer) = &entry.layer {
            if !self.layout.has_blob(&layer.digest) {
                let temp = self.temp("import");
                let result = self.download(client, &source, layer, &temp).await;
                let _ = fs::remove_file(&temp);
                result?;
            }
        }
        self.put(key, &entry)?;
        self.mark_used(key, &entry);
        Ok(Some(entry))
    }

    async fn download(
        &self,
        client: &Client,
        source: &ImageRef,
        layer: &LayerRef,
        temp: &Path,
    ) -> Result<(), CacheError> {
        let mut file = tokio::fs::File::create(temp).await.map_err(io_err(temp))?;
        client.blob_to(source, &layer.descriptor(), &mut file, &mut |_| {}).await.map_err(|source_err| {
            CacheError::Registry { what: "import from", reference: source.to_string(), source: Box::new(source_err) }
        })?;
        file.sync_all().await.map_err(io_err(temp))?;
        drop(file);
        self.layout.add_blob_file(temp, Some(&layer.digest))?;
        Ok(())
    }

    fn mark_used(&self, key: &Digest, entry: &Entry) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(key.to_string(), entry.clone());
        }
    }

    /// Records `entry` under `key` (its layer blob must be in place already).
    pub fn put(&self, key: &Digest, entry: &Entry) -> Result<(), CacheError> {
        let path = self.key_path(key);
        let temp = self.temp("key");
        let body = serde_json::to_vec_pretty(entry).map_err(|e| io_err(&path)(io::Error::other(e)))?;
        let write = || -> io::Result<()> {
            let mut f = File::create(&temp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            fs::rename(&temp, &path)
        };
        let result = write().map_err(io_err(&path));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        self.mark_used(key, entry);
        result
    }

    /// Moves the finished layer file `temp` into the blobs under `digest`.
    pub fn commit_blob(&self, temp: &Path, digest: &Digest) -> Result<(), CacheError> {
        let dest = self.layout.blob_path(digest);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        if dest.exists() {
            let _ = fs::remove_file(temp);
            return Ok(());
        }
        fs::rename(temp, &dest).map_err(io_err(&dest))
    }

    /// Reads the cache exported at `reference` and offers its entries to [`Cache::get`].
    /// Returns how many entries it has.
    pub async fn import(&self, client: &Client, reference: &ImageRef) -> Result<usize, CacheError> {
        let err = |source| CacheError::Registry {
            what: "import from",
            reference: reference.to_string(),
            source: Box::new(source),
        };
        let pulled = match client.manifest(reference, &reference.reference()).await {
            Ok(p) => p,
            // No cache there yet: a cold build.
            Err(ClientError::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(err(e)),
        };
        let config = pulled.manifest.config.clone().ok_or_else(|| CacheError::NotACache {
            reference: reference.to_string(),
            reason: "the manifest has no config".into(),
        })?;
        if config.media_type != CACHE_CONFIG_TYPE {
            return Err(CacheError::NotACache {
                reference: reference.to_string(),
                reason: format!("its config is {}", config.media_type),
            });
        }
        let body = client.blob_bytes(reference, &config, 64 << 20).await.map_err(err)?;
        let exported: Exported = serde_json::from_slice(&body)
            .map_err(|e| CacheError::NotACache { reference: reference.to_string(), reason: e.to_string() })?;
        let n = exported.entries.len();
        if let Ok(mut imported) = self.imported.lock() {
            for (k, e) in exported.entries {
                imported.insert(k, (e, reference.clone()));
            }
        }
        Ok(n)
    }

    /// Pushes the entries this build used to `reference`. Returns how many.
    pub async fn export(&self, client: &Client, reference: &ImageRef) -> Result<usize, CacheError> {
        let err = |source| CacheError::Registry {
            what: "export to",
            reference: reference.to_string(),
            source: Box::new(source),
        };
        let entries = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        let mut layers: Vec<LayerRef> = entries.values().filter_map(|e| e.layer.clone()).collect();
        layers.sort_by(|a, b| a.digest.cmp(&b.digest));
        layers.dedup_by(|a, b| a.digest == b.digest);
        for layer in &layers {
            let path = self.layout.blob_path(&layer.digest);
            let file = tokio::fs::File::open(&path).await.map_err(io_err(&path))?;
            client.push_blob(reference, &layer.digest, layer.size, file, None).await.map_err(err)?;
        }
        let config = serde_json::to_vec(&Exported { entries: entries.clone() })
            .map_err(|e| io_err(&self.root)(io::Error::other(e)))?;
        let config_digest = client.push_blob_bytes(reference, config.clone().into()).await.map_err(err)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": CACHE_CONFIG_TYPE,
            "config": {"mediaType": CACHE_CONFIG_TYPE, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(LayerRef::descriptor).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| io_err(&self.root)(io::Error::other(e)))?;
        client
            .push_manifest(reference, &reference.reference(), media_type::OCI_MANIFEST, bytes.into())
            .await
            .map_err(err)?;
        Ok(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(layout: &Layout, data: &[u8]) -> LayerRef {
        let digest = layout.add_blob(data).unwrap();
        LayerRef {
            digest,
            size: data.len() as u64,
            diff_id: Digest::sha256_of(b"tar"),
            media_type: media_type::OCI_LAYER_GZIP.into(),
        }
    }

    #[test]
    fn entries_need_their_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Digest::sha256_of(b"step");
        assert!(cache.get_local(&key).is_none());
        let l = layer(cache.layout(), b"layer bytes");
        let entry = Entry { layer: Some(l.clone()), created_by: "COPY a b".into() };
        cache.put(&key, &entry).unwrap();
        assert_eq!(cache.get_local(&key), Some(entry));
        // Nothing left in tmp.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        // A missing blob makes the entry a miss.
        fs::remove_file(cache.layout().blob_path(&l.digest)).unwrap();
        assert!(cache.get_local(&key).is_none());
        // A step that changed nothing has no layer.
        let empty = Entry { layer: None, created_by: "RUN true".into() };
        cache.put(&key, &empty).unwrap();
        assert_eq!(cache.get_local(&key), Some(empty));
    }

    #[test]
    fn commits_blobs_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let temp = cache.temp("layer");
        fs::write(&temp, b"abc").unwrap();
        let d = Digest::sha256_of(b"abc");
        cache.commit_blob(&temp, &d).unwrap();
        assert!(cache.layout().has_blob(&d) && !temp.exists());
        assert_ne!(cache.mount_dir("a/b"), cache.mount_dir("a_b"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_and_imports_through_a_registry() {
        let registry =
            shared::client::testing::FakeRegistry::start(shared::client::testing::FakeAuth::None, false).await.unwrap();
        let client = Client::anonymous().unwrap();
        let reference: ImageRef = format!("{}/cache/app:buildcache", registry.host()).parse().unwrap();

        let a = tempfile::tempdir().unwrap();
        let cache = Cache::open(a.path()).unwrap();
        let l = layer(cache.layout(), b"exported layer");
        let key = Digest::sha256_of(b"k");
        cache.put(&key, &Entry { layer: Some(l.clone()), created_by: "RUN make".into() }).unwrap();
        assert_eq!(cache.export(&client, &reference).await.unwrap(), 1);

        let b = tempfile::tempdir().unwrap();
        let other = Cache::open(b.path()).unwrap();
        assert!(other.get(&client, &key).await.unwrap().is_none());
        assert_eq!(other.import(&client, &reference).await.unwrap(), 1);
        let got = other.get(&client, &key).await.unwrap().unwrap();
        assert_eq!(got.layer, Some(l.clone()));
        assert_eq!(other.layout().read_blob(&l.digest).unwrap(), b"exported layer");
        // Now it is local.
        assert!(other.get_local(&key).is_some());
        // A missing cache is an empty one.
        let none: ImageRef = format!("{}/cache/none:x", registry.host()).parse().unwrap();
        assert_eq!(other.import(&client, &none).await.unwrap(), 0);
    }
}
