//! Removing build cache: `berth build prune`, as `docker builder prune`.
//!
//! What goes, in this order, and while the cache (everything under `<root>/build`) is larger
//! than [`PruneOptions::keep_storage`] (until nothing eligible is left without it):
//! 1. `tmp/`: the debris of interrupted builds (always; no build runs during a prune);
//! 2. blobs nothing references (the configs and manifests of builds not named with `-t`,
//!    layers no entry has any more), oldest first;
//! 3. cache entries ([`crate::cache`]'s `keys/`), least recently used first (a hit counts
//!    as a use), each with its layer unless another entry or a named image has it.
//!
//! 4. the summaries of layers no longer in the cache (`index/`, see
//!    [`crate::fsindex::LayerIndex`]), which a build makes again when it needs them.
//!
//! Without `--all`, entries whose layer belongs to an image named in the cache's layout
//! (`berth build -t`) are kept, and so are those names, the `RUN --mount=type=cache`
//! directories and the stat cache. `--all` removes those too: the names before step 2 (so
//! their blobs are unreferenced), the cache mounts and the stat cache after step 3.
//! [`PruneOptions::until`] limits all of it (but step 1) to what was last used or written
//! more than that long ago.
//!
//! **Safety.** [`prune`] holds the cache's lock exclusively ([`Cache::open_exclusive`]): it
//! waits for running builds, which hold it shared from start to their last output, and
//! builds that start meanwhile wait for it. An entry's key file goes before its layer, so an
//! interrupted prune leaves at worst a blob no entry has (the next prune removes it), never
//! an entry without its layer (which would anyway be a miss, see [`Cache::get_local`]).
//!
//! The CLI's `berth build prune` parses its flags with [`parse_size`] and [`parse_filter`]
//! and calls [`prune`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use shared::manifest::Manifest;
use shared::Digest;

use crate::cache::{Cache, CacheError, Entry};

/// Why a prune, or its options, failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The cache could not be opened or locked.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A file could not be read or removed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A `--keep-storage` size that does not parse.
    #[error("invalid size {0:?}: expected bytes with an optional unit, such as 512MB or 10GB")]
    Size(String),
    /// A `--filter` that does not parse or is not supported.
    #[error("invalid filter {0:?}: expected until=DURATION, such as until=24h or until=1h30m")]
    Filter(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PruneError + '_ {
    move |source| PruneError::Io { path: path.to_path_buf(), source }
}

/// What to remove. The default removes every unused entry (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// `--all`: also the layers of named images, the names, cache mounts and the stat cache.
    pub all: bool,
    /// `--keep-storage`: stop once the cache takes at most this many bytes.
    pub keep_storage: Option<u64>,
    /// `--filter until=`: only what was last used (or written) longer ago than this.
    pub until: Option<Duration>,
}

/// One removed thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// What it was: `entry <key>`, `blob <digest>`, `tmp <name>`, `mount <name>`,
    /// `name <ref>`, `stat cache`.
    pub what: String,
    /// The step that made it, for entries.
    pub created_by: Option<String>,
    /// The bytes freed by removing it (its layer included, when that went with it).
    pub size: u64,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Each removed thing, in the order removed.
    pub removed: Vec<Removed>,
    /// The bytes freed.
    pub freed: u64,
    /// The cache's size afterwards.
    pub remaining: u64,
}

/// Removes unused build cache under `root` (`<store root>/build`) as `options` say. Waits
/// for running builds first (see the module docs).
pub fn prune(root: &Path, options: &PruneOptions) -> Result<Pruned, PruneError> {
    let cache = Cache::open_exclusive(root)?;
    Pruner::new(&cache, options)?.run()
}

/// A prune in progress: the cache's contents as read at the start.
struct Pruner<'a> {
    cache: &'a Cache,
    options: &'a PruneOptions,
    cutoff: Option<SystemTime>,
    total: u64,
    out: Pruned,
    /// Layer digest → how many entries have it.
    refs: BTreeMap<Digest, usize>,
    /// Blobs of named images (those `--all` has not dropped): never removed.
    named: BTreeSet<Digest>,
}

/// A cache entry as found on disk.
struct Found {
    key: PathBuf,
    entry: Option<Entry>,
    used: SystemTime,
    size: u64,
}

impl<'a> Pruner<'a> {
    fn new(cache: &'a Cache, options: &'a PruneOptions) -> Result<Pruner<'a>, PruneError> {
        let cutoff = options.until.and_then(|d| SystemTime::now().checked_sub(d));
        let total = dir_size(cache.root())?;
        Ok(Pruner {
            cache,
            options,
            cutoff,
            total,
            out: Pruned::default(),
            refs: BTreeMap::new(),
            named: BTreeSet::new(),
        })
    }

    fn run(mut self) -> Result<Pruned, PruneError> {
        self.tmp()?;
        let mut entries = self.entries()?;
        self.named = self.named_blobs();
        for f in &entries {
            if let Some(layer) = f.entry.as_ref().and_then(|e| e.layer.as_ref()) {
                *self.refs.entry(layer.digest.clone()).or_default() += 1;
            }
        }
        if self.options.all {
            self.names()?;
        }
        self.unreferenced_blobs()?;
        entries.sort_by_key(|f| f.used);
        for f in entries {
            self.entry(f)?;
        }
        self.layer_indexes()?;
        if self.options.all {
            self.mounts()?;
            let stat = self.cache.stat_cache_path();
            if self.may_remove(&stat) {
                let size = file_size(&stat);
                if remove_file(&stat)? {
                    self.record("stat cache".into(), None, size);
                }
            }
        }
        self.out.remaining = self.total;
        Ok(self.out)
    }

    /// True while the cache is over `--keep-storage` (always without it).
    fn over(&self) -> bool {
        self.options.keep_storage.is_none_or(|keep| self.total > keep)
    }

    /// True when `path` was last changed before the `until` cutoff (always without it).
    fn old_enough(&self, time: SystemTime) -> bool {
        self.cutoff.is_none_or(|cutoff| time < cutoff)
    }

    fn may_remove(&self, path: &Path) -> bool {
        self.over() && fs::symlink_metadata(path).is_ok_and(|m| self.old_enough(modified(&m)))
    }

    fn record(&mut self, what: String, created_by: Option<String>, size: u64) {
        self.total = self.total.saturating_sub(size);
        self.out.freed += size;
        self.out.removed.push(Removed { what, created_by, size });
    }

    fn tmp(&mut self) -> Result<(), PruneError> {
        let dir = self.cache.root().join("tmp");
        for item in read_dir(&dir)? {
            let size = dir_size(&item)?;
            remove_any(&item)?;
            let name = item.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            self.record(format!("tmp {name}"), None, size);
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<Found>, PruneError> {
        let mut out = Vec::new();
        for key in read_dir(&self.cache.root().join("keys"))? {
            let Ok(meta) = fs::symlink_metadata(&key) else { continue };
            // An entry that does not parse is of no use to any build: removed as unused.
            let entry = fs::read(&key).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
            out.push(Found { key, entry, used: modified(&meta), size: meta.len() });
        }
        Ok(out)
    }

    /// The manifests named in the cache's layout, with their configs and layers.
    fn named_blobs(&self) -> BTreeSet<Digest> {
        let layout = self.cache.layout();
        let mut out = BTreeSet::new();
        for d in layout.index().map(|i| i.manifests).unwrap_or_default() {
            out.insert(d.digest.clone());
            let Ok(body) = layout.read_blob(&d.digest) else { continue };
            let Ok(manifest) = Manifest::parse(&body, Some(&d.media_type)) else { continue };
            out.extend(manifest.config.iter().chain(&manifest.layers).map(|b| b.digest.clone()));
        }
        out
    }

    fn protected(&self, digest: &Digest) -> bool {
        self.refs.get(digest).is_some_and(|n| *n > 0) || self.named.contains(digest)
    }

    fn unreferenced_blobs(&mut self) -> Result<(), PruneError> {
        let mut blobs: Vec<(SystemTime, Digest, PathBuf, u64)> = Vec::new();
        let dir = self.cache.root().join("blobs");
        for alg in read_dir(&dir)? {
            for path in read_dir(&alg)? {
                let (Some(alg_name), Some(hex)) = (alg.file_name(), path.file_name()) else { continue };
                let Ok(digest) = format!("{}:{}", alg_name.to_string_lossy(), hex.to_string_lossy()).parse() else {
                    continue;
                };
                let Ok(meta) = fs::symlink_metadata(&path) else { continue };
                if !self.protected(&digest) {
                    blobs.push((modified(&meta), digest, path, meta.len()));
                }
            }
        }
        blobs.sort();
        for (time, digest, path, size) in blobs {
            if self.over() && self.old_enough(time) && remove_file(&path)? {
                self.record(format!("blob {digest}"), None, size);
            }
        }
        Ok(())
    }

    fn entry(&mut self, f: Found) -> Result<(), PruneError> {
        let layer = f.entry.as_ref().and_then(|e| e.layer.clone());
        let named = layer.as_ref().is_some_and(|l| self.named.contains(&l.digest));
        if !self.over() || !self.old_enough(f.used) || named {
            return Ok(());
        }
        // The key first: an entry never outlives its layer.
        if !remove_file(&f.key)? {
            return Ok(());
        }
        let mut size = f.size;
        if let Some(layer) = &layer {
            if let Some(n) = self.refs.get_mut(&layer.digest) {
                *n = n.saturating_sub(1);
            }
            if !self.protected(&layer.digest) {
                let path = self.cache.layout().blob_path(&layer.digest);
                let blob_size = file_size(&path);
                if remove_file(&path)? {
                    size += blob_size;
                }
            }
        }
        let name = f.key.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.record(format!("entry {name}"), f.entry.map(|e| e.created_by), size);
        Ok(())
    }

    /// `--all`: the names of `berth build -t` images in the cache's layout.
    fn names(&mut self) -> Result<(), PruneError> {
        let layout = self.cache.layout();
        let Ok(mut index) = layout.index() else { return Ok(()) };
        let before = index.manifests.len();
        let mut gone = Vec::new();
        index.manifests.retain(|d| {
            let time = fs::symlink_metadata(layout.blob_path(&d.digest)).map(|m| modified(&m)).ok();
            let keep = !self.over() || !time.is_none_or(|t| self.old_enough(t));
            if !keep {
                gone.push(shared::layout::ref_name(d).unwrap_or("(unnamed)").to_string());
            }
            keep
        });
        if index.manifests.len() != before {
            layout.write_index(&index).map_err(CacheError::from)?;
            for name in gone {
                self.record(format!("name {name}"), None, 0);
            }
            self.named = self.named_blobs();
        }
        Ok(())
    }

    /// The layer summaries ([`crate::fsindex::LayerIndex`]) whose layer is not among the
    /// cache's blobs (any more): a base image's are made again when a build next needs them.
    fn layer_indexes(&mut self) -> Result<(), PruneError> {
        for path in read_dir(&self.cache.root().join("index"))? {
            let hex = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let kept = format!("sha256:{hex}").parse::<Digest>().is_ok_and(|d| self.cache.layout().has_blob(&d));
            if !kept || self.options.all {
                let size = file_size(&path);
                if remove_file(&path)? {
                    self.record(format!("layer index {hex}"), None, size);
                }
            }
        }
        Ok(())
    }

    /// `--all`: the `RUN --mount=type=cache` directories.
    fn mounts(&mut self) -> Result<(), PruneError> {
        for dir in read_dir(&self.cache.root().join("mounts"))? {
            if self.may_remove(&dir) {
                let size = dir_size(&dir)?;
                remove_any(&dir)?;
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.record(format!("mount {name}"), None, size);
            }
        }
        Ok(())
    }
}

fn modified(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

fn file_size(path: &Path) -> u64 {
    fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The paths in `dir`, sorted; none when it does not exist.
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, PruneError> {
    let items = match fs::read_dir(dir) {
        Ok(items) => items,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for item in items {
        out.push(item.map_err(io_err(dir))?.path());
    }
    out.sort();
    Ok(out)
}

/// The bytes of the files under `path` (not following links).
fn dir_size(path: &Path) -> Result<u64, PruneError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path)(e)),
    };
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for item in read_dir(path)? {
        total += dir_size(&item)?;
    }
    Ok(total)
}

/// Removes a file; false when it was already gone.
fn remove_file(path: &Path) -> Result<bool, PruneError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Removes a file or a whole directory tree.
fn remove_any(path: &Path) -> Result<(), PruneError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => runtime::unpack::remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// A `--keep-storage` size: bytes, or a number with a unit `k`, `m`, `g`, `t` (powers of
/// 1024, as Docker's), optionally followed by `i` and/or `b`: `512MB`, `1.5g`, `10GiB`
/// (read by [`shared::size::parse_size`]).
pub fn parse_size(text: &str) -> Result<u64, PruneError> {
    shared::size::parse_size(text).map_err(|_| PruneError::Size(text.to_string()))
}

/// A `--filter`: `until=DURATION`, DURATION as Go writes them (`24h`, `1h30m`, `90s`,
/// `1.5h`, `500ms`), as `docker builder prune` takes.
pub fn parse_filter(text: &str) -> Result<Duration, PruneError> {
    let bad = || PruneError::Filter(text.to_string());
    let (name, value) = text.split_once('=').ok_or_else(bad)?;
    if name.trim() != "until" {
        return Err(bad());
    }
    shared::duration::parse_duration(value.trim()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::LayerRef;
    use shared::media_type;

    fn layer(cache: &Cache, data: &[u8]) -> LayerRef {
        let digest = cache.layout().add_blob(data).unwrap();
        LayerRef {
            digest,
            size: data.len() as u64,
            diff_id: Digest::sha256_of(data),
            media_type: media_type::OCI_LAYER_GZIP.into(),
        }
    }

    fn put(cache: &Cache, name: &str, layer: Option<LayerRef>, age: Duration) -> Digest {
        let key = Digest::sha256_of(name.as_bytes());
        cache.put(&key, &Entry { layer, created_by: name.into() }).unwrap();
        let path = cache.root().join("keys").join(format!("{}.json", key.hex()));
        let time = SystemTime::now() - age;
        fs::File::options().write(true).open(path).unwrap().set_modified(time).unwrap();
        key
    }

    fn removed(p: &Pruned, prefix: &str) -> Vec<String> {
        p.removed.iter().filter(|r| r.what.starts_with(prefix)).filter_map(|r| r.created_by.clone()).collect()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn removes_entries_their_layers_debris_and_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (shared_layer, orphan);
        {
            let cache = Cache::open(root).unwrap();
            let a = layer(&cache, &[1; 1000]);
            shared_layer = layer(&cache, &[2; 2000]);
            put(&cache, "RUN a", Some(a.clone()), HOUR);
            put(&cache, "RUN b", Some(shared_layer.clone()), 2 * HOUR);
            put(&cache, "RUN c", Some(shared_layer.clone()), 3 * HOUR);
            put(&cache, "RUN nothing", None, HOUR);
            orphan = cache.layout().add_blob(b"an unnamed build's config").unwrap();
            fs::write(cache.temp("layer"), [0; 300]).unwrap();
            fs::create_dir_all(cache.mount_dir("apt").join("sub")).unwrap();
            fs::write(cache.mount_dir("apt").join("sub/f"), b"kept").unwrap();
        }
        let p = prune(root, &PruneOptions::default()).unwrap();
        assert_eq!(removed(&p, "entry"), ["RUN c", "RUN b", "RUN a", "RUN nothing"], "least recently used first");
        assert!(p.removed.iter().any(|r| r.what == format!("blob {orphan}")));
        assert!(p.removed.iter().any(|r| r.what.starts_with("tmp layer-") && r.size == 300));
        assert!(p.freed >= 300 + 1000 + 2000 + 25, "{p:?}");
        let cache = Cache::open(root).unwrap();
        assert!(!cache.layout().has_blob(&shared_layer.digest) && !cache.layout().has_blob(&orphan));
        assert_eq!(fs::read_dir(root.join("keys")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        // The default keeps cache mounts.
        assert!(cache.mount_dir("apt").join("sub/f").is_file());
        assert_eq!(p.remaining, dir_size(root).unwrap());
    }

    #[test]
    fn until_and_keep_storage_limit_what_goes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (old, shared_layer);
        {
            let cache = Cache::open(root).unwrap();
            old = layer(&cache, &[1; 5000]);
            shared_layer = layer(&cache, &[2; 3000]);
            put(&cache, "old", Some(old.clone()), 48 * HOUR);
            put(&cache, "older sharer", Some(shared_layer.clone()), 30 * HOUR);
            put(&cache, "new sharer", Some(shared_layer.clone()), Duration::ZERO);
            put(&cache, "new", Some(layer(&cache, &[3; 4000])), Duration::ZERO);
        }
        let until = PruneOptions { until: Some(24 * HOUR), ..PruneOptions::default() };
        let p = prune(root, &until).unwrap();
        assert_eq!(removed(&p, "entry"), ["old", "older sharer"]);
        let cache = Cache::open(root).unwrap();
        assert!(!cache.layout().has_blob(&old.digest));
        // Still used by the newer entry.
        assert!(cache.layout().has_blob(&shared_layer.digest));
        drop(cache);

        // Keep one byte less than the cache takes: one entry goes (with its layer), and
        // nothing more once under.
        let size = dir_size(root).unwrap();
        let keep = PruneOptions { keep_storage: Some(size - 1), ..PruneOptions::default() };
        let p = prune(root, &keep).unwrap();
        assert_eq!(p.removed.len(), 1, "{p:?}");
        assert!(p.remaining < size);
        let p = prune(root, &PruneOptions { keep_storage: Some(p.remaining), ..PruneOptions::default() }).unwrap();
        assert!(p.removed.is_empty(), "{p:?}");
    }

    #[test]
    fn named_images_stay_unless_all() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (l, manifest_digest, config);
        {
            let cache = Cache::open(root).unwrap();
            l = layer(&cache, &[7; 100]);
            put(&cache, "COPY app", Some(l.clone()), HOUR);
            config = cache.layout().add_blob(b"{}").unwrap();
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": {"mediaType": media_type::OCI_CONFIG, "digest": config, "size": 2},
                "layers": [l.descriptor()],
            });
            let body = serde_json::to_vec(&manifest).unwrap();
            manifest_digest =
                cache.layout().add_manifest(media_type::OCI_MANIFEST, &body, Some("app:v1")).unwrap().digest;
            fs::create_dir_all(cache.mount_dir("go")).unwrap();
            fs::write(cache.stat_cache_path(), b"{}").unwrap();
        }
        let p = prune(root, &PruneOptions::default()).unwrap();
        assert!(p.removed.is_empty(), "{p:?}");
        let p = prune(root, &PruneOptions { all: true, ..PruneOptions::default() }).unwrap();
        let what: Vec<&str> = p.removed.iter().map(|r| r.what.as_str()).collect();
        assert!(what.contains(&"name app:v1") && what.contains(&"stat cache"), "{what:?}");
        assert_eq!(removed(&p, "entry"), ["COPY app"]);
        let cache = Cache::open(root).unwrap();
        for d in [&l.digest, &manifest_digest, &config] {
            assert!(!cache.layout().has_blob(d), "{d}");
        }
        assert!(cache.layout().index().unwrap().manifests.is_empty());
        assert!(!cache.mount_dir("go").exists() && !cache.stat_cache_path().exists());
    }

    #[test]
    fn waits_for_running_builds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let building = Cache::open(&root).unwrap();
        let key = put(&building, "RUN long", Some(layer(&building, b"in use")), HOUR);
        let (tx, rx) = std::sync::mpsc::channel();
        let pruner = std::thread::spawn(move || {
            let p = prune(&root, &PruneOptions::default());
            tx.send(()).unwrap();
            p
        });
        // The build holds the lock: the prune has not removed anything yet.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert!(building.get_local(&key).is_some());
        drop(building);
        let p = pruner.join().unwrap().unwrap();
        assert_eq!(removed(&p, "entry"), ["RUN long"]);
    }

    #[test]
    fn parses_sizes_and_filters() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("3 MB").unwrap(), 3 << 20);
        for bad in ["", "GB", "10XB", "-1", "1e3", "99999999999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_filter("until=24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_filter("until=1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_filter("until=1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_filter("until=500ms").unwrap(), Duration::from_millis(500));
        for bad in ["until=", "until=24", "until=1d", "type=regular", "24h"] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
