//! The filesystem driver: objects are files below a root folder.
//!
//! Every write goes to a temporary file (`.tmp-*`, never listed) in the target's folder and is
//! renamed into place, so a reader sees a whole object or none. Create-only writes use a hard
//! link, which fails atomically if the target exists. A multipart upload is one file that
//! parts are written into at their offset; `complete` renames it to its destination.
//!
//! Disk I/O runs on blocking threads so the async workers keep serving, one bounded operation
//! at a time (a stat, a rename, one read of a chunk, one write of a buffer) through the
//! [`regulator`], which lets at most `max_threads` of them run at once. No thread is held
//! while a client's bytes are awaited or sent: a blob streams out one regulated read at a
//! time ([`reader`]), and upload data is gathered in large buffers on the async side and each
//! full buffer written by one regulated operation ([`direct`]). A blob never sits in memory
//! whole, and slow clients, however many, cannot take the threads that other requests need.
//!
//! Small writes (tags, links, upload states: `put` and `put_if_absent` of at most
//! [`SMALL_WRITE`] bytes) go through a group commit (see [`commit`]): one thread per driver
//! takes every small write waiting at that moment, writes their temporary files, makes them
//! durable together, publishes them in the order they came, and answers all of them.
//! Concurrent writers thus share one round of flushes instead of paying one each, and never
//! contend for a folder's lock; each caller still returns only once its own bytes are on disk.
//! A blob's `complete` (and a large `put`) also flushes the folder it lands in before
//! returning.
//!
//! With `fsync`, upload data is written with `O_DIRECT` where the filesystem takes it: the
//! bytes must reach the disk before the blob is acknowledged anyway, and writing them straight
//! from the request's buffers skips the copy into the page cache and leaves the final flush
//! almost nothing to write.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::{check_path, ByteStream, Meta, Storage, StorageError, Written};

mod commit;
mod direct;
mod reader;
pub mod regulator;

use regulator::Regulator;

/// Prefix of temporary files; never a valid path component of ours, never listed.
const TMP_PREFIX: &str = ".tmp-";
/// Writes of at most this many bytes go through the group commit; larger ones are written
/// on a blocking thread of their own.
const SMALL_WRITE: usize = 256 * 1024;

/// A driver storing objects as files below `root`.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
    fsync: bool,
    listings: Arc<ListingCache>,
    committer: commit::Committer,
    writer: Arc<direct::Writer>,
    regulator: Regulator,
}

/// Sorted folder listings, reused while the folder's modification time is unchanged.
///
/// A listing is remembered only when the folder's mtime was at least [`SETTLED`] old when it
/// was read: file times tick coarsely, so a change within the same tick as a fresh listing
/// could leave the mtime as it was; a change after a settled mtime always moves it.
#[derive(Debug, Default)]
struct ListingCache(Mutex<HashMap<PathBuf, Listing>>);

/// A folder's modification time when it was listed, and its sorted entries.
type Listing = (SystemTime, Arc<Vec<String>>);

/// How old a folder's mtime must be before a listing of it is remembered.
const SETTLED: Duration = Duration::from_secs(1);
/// Folders whose listings are remembered at most (the cache is emptied past this).
const LISTINGS_KEPT: usize = 1024;
/// Folders with fewer entries than this are cheap to read and are not remembered.
const LISTING_WORTH_KEEPING: usize = 256;

impl FsStorage {
    /// Opens (creating if needed) a store at `root`. With `fsync`, data is flushed to disk
    /// before it becomes visible, so a crash never leaves a visible but empty object, and a
    /// write returns only once it is on disk. Starts the thread that commits small writes.
    /// At most [`regulator::DEFAULT_MAX_THREADS`] disk operations run at once (see
    /// [`FsStorage::with_max_threads`]).
    pub fn new(root: impl Into<PathBuf>, fsync: bool) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let committer = commit::Committer::start(fsync)?;
        Ok(FsStorage {
            root,
            fsync,
            listings: Arc::default(),
            committer,
            writer: Arc::new(direct::Writer::new(fsync)),
            regulator: Regulator::new(regulator::DEFAULT_MAX_THREADS),
        })
    }

    /// Lets at most `max` blocking disk operations run at once (at least one), each on a
    /// thread of tokio's blocking pool (see [`regulator`]).
    pub fn with_max_threads(mut self, max: usize) -> Self {
        self.regulator = Regulator::new(max);
        self
    }

    /// The folder this driver stores into.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> Result<PathBuf, StorageError> {
        check_path(path)?;
        Ok(self.root.join(path))
    }

    /// Runs `f` on `path` as one regulated disk operation.
    async fn blocking<T: Send + 'static>(
        &self,
        path: PathBuf,
        f: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let shown = path.clone();
        let ran = self.regulator.run(move || f(&path)).await;
        ran.and_then(|r| r).map_err(|e| io_err(&shown, e))
    }
}

fn io_err(path: &Path, source: io::Error) -> StorageError {
    if source.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound(path.display().to_string())
    } else {
        StorageError::Io { path: path.display().to_string(), source }
    }
}

fn tmp_name(target: &Path) -> PathBuf {
    let n: u64 = rand::random();
    target.with_file_name(format!("{TMP_PREFIX}{n:016x}"))
}

/// Writes `data` to a new temporary file beside `target` and returns its path.
fn write_tmp(target: &Path, data: &[u8], fsync: bool) -> io::Result<PathBuf> {
    if let Some(parent) = target.parent() {
        create_folders(parent, fsync)?;
    }
    let tmp = tmp_name(target);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The size and age of the file at `path`; a folder counts as nothing.
fn stat_file(path: &Path) -> io::Result<Meta> {
    let m = fs::metadata(path)?;
    if !m.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    Ok(Meta { size: m.len(), modified: m.modified()? })
}

/// Creates `dir` and its missing ancestors; with `fsync`, flushes the parent of each folder
/// created, so the new folders are on disk.
fn create_folders(dir: &Path, fsync: bool) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.is_dir()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    fs::create_dir_all(dir)?;
    if fsync {
        for d in missing.iter().rev() {
            sync_parent(d, true)?;
        }
    }
    Ok(())
}

/// With `fsync`, flushes the folder holding `path`, so a rename or link into it is on disk.
fn sync_parent(path: &Path, fsync: bool) -> io::Result<()> {
    match path.parent() {
        Some(dir) if fsync => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[async_trait]
impl Storage for FsStorage {
    async fn get(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        let full = self.full(path)?;
        reader::stream(&self.regulator, full, range).await
    }

    async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
        let full = self.full(path)?;
        self.blocking(full, |p| fs::read(p).map(Bytes::from)).await
    }

    async fn stat(&self, path: &str) -> Result<Meta, StorageError> {
        let full = self.full(path)?;
        self.blocking(full, stat_file).await
    }

    async fn stat_many(&self, paths: &[String]) -> Vec<Result<Meta, StorageError>> {
        let full: Vec<Result<PathBuf, StorageError>> = paths.iter().map(|p| self.full(p)).collect();
        let stats = self
            .regulator
            .run(move || {
                full.into_iter().map(|p| p.and_then(|p| stat_file(&p).map_err(|e| io_err(&p, e)))).collect::<Vec<_>>()
            })
            .await;
        match stats {
            Ok(stats) => stats,
            Err(e) => paths
                .iter()
                .map(|p| Err(StorageError::Io { path: p.clone(), source: io::Error::new(e.kind(), e.to_string()) }))
                .collect(),
        }
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
        let full = self.full(path)?;
        if data.len() <= SMALL_WRITE {
            return match self.committer.write(full.clone(), data, false).await {
                Ok(_) => Ok(()),
                Err(e) => Err(io_err(&full, e)),
            };
        }
        let fsync = self.fsync;
        self.blocking(full, move |p| {
            let tmp = write_tmp(p, &data, fsync)?;
            fs::rename(&tmp, p).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })?;
            sync_parent(p, fsync)
        })
        .await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, StorageError> {
        let full = self.full(path)?;
        if data.len() <= SMALL_WRITE {
            return self.committer.write(full.clone(), data, true).await.map_err(|e| io_err(&full, e));
        }
        let fsync = self.fsync;
        self.blocking(full, move |p| {
            if p.exists() {
                return Ok(false);
            }
            let tmp = write_tmp(p, &data, fsync)?;
            let linked = fs::hard_link(&tmp, p);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => sync_parent(p, fsync).map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let full = if prefix.is_empty() { self.root.clone() } else { self.full(prefix.trim_end_matches('/'))? };
        let cache = self.listings.clone();
        self.blocking(full, move |p| {
            let modified = match fs::metadata(p) {
                Ok(m) => m.modified()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            if let Some((at, names)) = cache.0.lock().unwrap_or_else(|e| e.into_inner()).get(p) {
                if *at == modified {
                    return Ok(names.as_ref().clone());
                }
            }
            let entries = match fs::read_dir(p) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut names = Vec::new();
            for entry in entries {
                let name = entry?.file_name();
                if let Some(name) = name.to_str() {
                    if !name.starts_with(TMP_PREFIX) {
                        names.push(name.to_string());
                    }
                }
            }
            names.sort_unstable();
            let settled = SystemTime::now().duration_since(modified).is_ok_and(|age| age >= SETTLED);
            if settled && names.len() >= LISTING_WORTH_KEEPING {
                let mut cache = cache.0.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= LISTINGS_KEPT {
                    cache.clear();
                }
                cache.insert(p.to_path_buf(), (modified, Arc::new(names.clone())));
            }
            Ok(names)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let full = self.full(path)?;
        self.blocking(full, |p| match fs::remove_file(p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
        let full = self.full(prefix.trim_end_matches('/'))?;
        self.blocking(full, |p| {
            // A writer may add an entry while the folder is being emptied (the collector
            // removing a blob's folder as a push writes its `touched` marker there): the
            // removal then finds the folder not empty, and goes again, as a removal that
            // came a moment later would have.
            let mut attempts = 0;
            loop {
                match fs::remove_dir_all(p) {
                    Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && attempts < 16 => attempts += 1,
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => return Ok(()),
                }
            }
        })
        .await
    }

    async fn bytes_stored(&self) -> Result<Option<u64>, StorageError> {
        self.blocking(self.root.clone(), |root| bytes_below(root, WALKERS).map(Some)).await
    }

    async fn write_part(
        &self,
        upload: &str,
        _resume: &str,
        offset: u64,
        body: ByteStream,
    ) -> Result<Written, StorageError> {
        let full = self.full(upload)?;
        let len = self.writer.write(&self.regulator, full, offset, body).await?;
        // The upload's file is all its state: its length is checked against `offset`.
        Ok(Written { len, resume: String::new() })
    }

    async fn complete(&self, upload: &str, _resume: &str, dest: &str) -> Result<(), StorageError> {
        let from = self.full(upload)?;
        let to = self.full(dest)?;
        let fsync = self.fsync;
        self.blocking(from, move |from| {
            // With fsync every write_part flushed its bytes before returning (and the size
            // with them: fdatasync), so the data is on disk; what remains is the rename.
            if let Some(parent) = to.parent() {
                create_folders(parent, fsync)?;
            }
            fs::rename(from, &to)?;
            sync_parent(&to, fsync)
        })
        .await
    }

    async fn abort(&self, upload: &str, _resume: &str) -> Result<(), StorageError> {
        self.delete(upload).await.map(|_| ())
    }
}

/// Threads [`bytes_below`] reads folders with: the walk is mostly the kernel's work, which
/// a few threads overlap.
const WALKERS: usize = 4;

/// The bytes of the regular files below `root` (`touched` markers, empty by construction,
/// are not even looked at), read by `workers` threads taking folders from one queue; the
/// type of each entry comes from the folder's listing, so only files are stat'ed. Folders
/// removed meanwhile (the collector, an upload finishing) are skipped.
fn bytes_below(root: &Path, workers: usize) -> io::Result<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Condvar;
    // Folders to read, and how many are being read (whose subfolders may still come).
    let queue = Mutex::new((vec![root.to_path_buf()], 0usize));
    let changed = Condvar::new();
    let total = AtomicU64::new(0);
    let failure: Mutex<Option<io::Error>> = Mutex::new(None);
    let work = || loop {
        let dir = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(dir) = q.0.pop() {
                    q.1 += 1;
                    break Some(dir);
                }
                if q.1 == 0 {
                    break None;
                }
                q = changed.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(dir) = dir else {
            changed.notify_all();
            return;
        };
        let mut found = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    match entry.file_type() {
                        Ok(t) if t.is_dir() => found.push(entry.path()),
                        Ok(t) if t.is_file() && entry.file_name() != "touched" => {
                            if let Ok(m) = entry.metadata() {
                                total.fetch_add(m.len(), Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        }
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        q.0.extend(found);
        q.1 -= 1;
        changed.notify_all();
    };
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(work);
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(total.into_inner()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_stored_counts_every_file_below_the_root_but_the_markers() {
        let dir = tempfile::tempdir().unwrap();
        let driver = FsStorage::new(dir.path(), false).unwrap();
        let mut expected = 0;
        for i in 0..300u64 {
            let body = vec![b'x'; (i % 37) as usize * 11];
            expected += body.len() as u64;
            driver.put(&format!("blobs/sha256/{:02x}/{i:064x}/data", i % 7), Bytes::from(body)).await.unwrap();
            driver.put(&format!("blobs/sha256/{:02x}/{i:064x}/touched", i % 7), Bytes::new()).await.unwrap();
        }
        driver.put("repositories/a/b/_layers/sha256/x/link", Bytes::from_static(b"sha256:x")).await.unwrap();
        expected += 8;
        assert_eq!(driver.bytes_stored().await.unwrap(), Some(expected));
        for workers in [1, 3, 16] {
            assert_eq!(bytes_below(dir.path(), workers).unwrap(), expected, "{workers} workers");
        }
        assert_eq!(bytes_below(&dir.path().join("gone"), 4).unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_driver_suite() {
        let dir = tempfile::tempdir().unwrap();
        let driver = FsStorage::new(dir.path(), false).unwrap();
        super::super::suite::run(&driver).await;
        let racing = tempfile::tempdir().unwrap();
        let racing = FsStorage::new(racing.path(), false).unwrap();
        super::super::suite::concurrent_create_only(std::sync::Arc::new(racing)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_driver_suite_flushing() {
        let dir = tempfile::tempdir().unwrap();
        let driver = FsStorage::new(dir.path(), true).unwrap();
        super::super::suite::run(&driver).await;
        let racing = tempfile::tempdir().unwrap();
        let racing = FsStorage::new(racing.path(), true).unwrap();
        super::super::suite::concurrent_create_only(std::sync::Arc::new(racing)).await;
    }

    /// Many small writes at once are committed together; each caller sees its own write
    /// done, replacing writes keep the last value, and no temporary file is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_small_writes_commit_together() {
        for fsync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let driver = Arc::new(FsStorage::new(dir.path(), fsync).unwrap());
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let d = driver.clone();
                    tokio::spawn(async move {
                        d.put(&format!("tags/t{i:03}"), Bytes::from(format!("v{i}"))).await.unwrap();
                        d.put_if_absent(&format!("new/n{}/x", i % 7), Bytes::from(format!("{i}"))).await.unwrap()
                    })
                })
                .collect();
            let mut created = 0;
            for t in tasks {
                created += usize::from(t.await.unwrap());
            }
            assert_eq!(created, 7, "one create-only write per target wins");
            let tags = driver.list("tags").await.unwrap();
            assert_eq!(tags.len(), 200);
            assert_eq!(driver.read("tags/t123").await.unwrap(), &b"v123"[..]);
            let raw: Vec<_> = fs::read_dir(dir.path().join("tags")).unwrap().collect();
            assert_eq!(raw.len(), 200, "no temporary file left");
        }
    }

    /// Parts at aligned offsets are written direct, a ragged tail through the page cache, and
    /// a part at an unaligned offset through the page cache; the bytes come out as written.
    #[tokio::test]
    async fn direct_and_buffered_parts_join_up() {
        let dir = tempfile::tempdir().unwrap();
        let driver = FsStorage::new(dir.path(), true).unwrap();
        let data: Vec<u8> = (0..9_000_123u32).map(|i| (i % 253) as u8).collect();
        let cut = 8 * 1024 * 1024;
        let pieces = |r: std::ops::Range<usize>| -> ByteStream {
            let chunks: Vec<_> = data[r].chunks(65_537).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            futures_util::stream::iter(chunks).boxed()
        };
        assert_eq!(driver.write_part("up/data", "", 0, pieces(0..cut)).await.unwrap().len, cut as u64);
        let n = driver.write_part("up/data", "", cut as u64, pieces(cut..cut + 5000)).await.unwrap();
        assert_eq!(n.len, 5000);
        let rest = driver.write_part("up/data", "", cut as u64 + 5000, pieces(cut + 5000..data.len())).await.unwrap();
        assert_eq!(rest.len as usize, data.len() - cut - 5000);
        driver.complete("up/data", "", "blobs/b/data").await.unwrap();
        assert_eq!(driver.read("blobs/b/data").await.unwrap(), &data[..]);
    }

    /// A download that stops reading and an upload whose body stops coming hold no blocking
    /// thread between their disk operations: with a pool of two threads, a stat still runs.
    #[test]
    fn stalled_transfers_hold_no_thread() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let limit = Duration::from_secs(10);
            let dir = tempfile::tempdir().unwrap();
            let driver = FsStorage::new(dir.path(), false).unwrap();
            driver.put("blob", Bytes::from(vec![5u8; 8 << 20])).await.unwrap();
            let mut download = tokio::time::timeout(limit, driver.get("blob", None)).await.unwrap().unwrap();
            tokio::time::timeout(limit, download.next()).await.unwrap().unwrap().unwrap();
            let body = futures_util::stream::iter([Ok(Bytes::from(vec![1u8; 5 << 20]))])
                .chain(futures_util::stream::pending())
                .boxed();
            let d = driver.clone();
            let upload = tokio::spawn(async move { d.write_part("up/data", "", 0, body).await });
            // The upload's first buffer reaches the disk; then it waits for bytes.
            let written = || fs::metadata(dir.path().join("up/data")).map(|m| m.len()).unwrap_or(0);
            tokio::time::timeout(limit, async {
                while written() < 4 << 20 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the upload's first buffer was not written");
            let stat = tokio::time::timeout(limit, driver.stat("blob")).await;
            assert_eq!(stat.expect("a stat waited for a thread").unwrap().size, 8 << 20);
            upload.abort();
            drop(download);
        });
    }

    #[tokio::test]
    async fn remembered_listings_follow_changes() {
        let dir = tempfile::tempdir().unwrap();
        let driver = FsStorage::new(dir.path(), false).unwrap();
        for i in 0..300 {
            driver.put(&format!("t/{i:04}"), Bytes::new()).await.unwrap();
        }
        // Age the folder so its listing is remembered, then change it: the change shows.
        let old = SystemTime::now() - Duration::from_secs(10);
        File::open(dir.path().join("t")).unwrap().set_modified(old).unwrap();
        assert_eq!(driver.list("t").await.unwrap().len(), 300);
        assert_eq!(driver.listings.0.lock().unwrap().len(), 1);
        driver.put("t/new", Bytes::new()).await.unwrap();
        assert_eq!(driver.list("t").await.unwrap().len(), 301);
        driver.delete("t/0000").await.unwrap();
        let names = driver.list("t").await.unwrap();
        assert_eq!(names.len(), 300);
        assert!(!names.contains(&"0000".to_string()));
    }

    #[tokio::test]
    async fn temporary_files_are_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let driver = FsStorage::new(dir.path(), true).unwrap();
        fs::create_dir_all(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/.tmp-0123"), b"x").unwrap();
        driver.put("a/b", Bytes::from_static(b"y")).await.unwrap();
        assert_eq!(driver.list("a").await.unwrap(), vec!["b".to_string()]);
    }
}
