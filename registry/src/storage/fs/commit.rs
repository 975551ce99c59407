//! The group commit of the filesystem driver's small writes (see the module doc of
//! [`super`]).
//!
//! [`Committer::write`] queues a write and waits. One thread per driver takes every write
//! queued at that moment as a batch and writes each one's temporary file beside its target.
//! With `fsync`, one round of flushes then syncs all of them: one `syncfs` of their
//! filesystem when there are several, which writes them all out and flushes the disk's cache
//! once (a third of the time of 64 `fdatasync`s here, even issued from several threads);
//! else `fdatasync` each, from several threads at once so the filesystem merges their
//! journal commits and the disk's cache flushes. Then the batch is published in the order it was queued (rename, or hard link for
//! create-only writes) and every caller answered: a write is acknowledged once its bytes are
//! on disk and visible, never visible before its bytes are on disk.
//!
//! The folders a batch changed (and the parents of folders it created) are flushed in the
//! next round, together with the next batch's data (a round runs at once when there are such
//! folders), so a published name is on disk within one round. Waiting for that round before
//! answering would double every write's latency, and with it halve the throughput of a fixed
//! number of clients; the driver never waited for it (it left the folder to the kernel's
//! periodic commit), so the acknowledgement means what it meant before.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::tmp_name;

/// Most writes taken into one batch.
const MAX_BATCH: usize = 512;
/// Threads that flush one batch's files and folders together (the commit thread included).
const FLUSH_THREADS: usize = 8;
/// Rounds with at least this many files and folders to flush use one `syncfs`.
const SYNCFS_MIN: usize = 4;

/// One queued write.
struct Job {
    target: PathBuf,
    data: Bytes,
    /// Write only if nothing is at `target` (answer `false` then).
    create_only: bool,
    done: oneshot::Sender<io::Result<bool>>,
}

/// The queue of small writes of one driver; the thread that commits them ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct Committer {
    queue: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committing thread.
    pub(super) fn start(fsync: bool) -> io::Result<Self> {
        let (queue, jobs) = mpsc::channel();
        std::thread::Builder::new().name("berth-fs-commit".into()).spawn(move || run(jobs, fsync))?;
        Ok(Committer { queue })
    }

    /// Writes `data` at `target` (only if nothing is there, with `create_only`) and returns
    /// once it is published, and durable when the driver flushes; `Ok(false)` when a
    /// create-only write found its target taken.
    pub(super) async fn write(&self, target: PathBuf, data: Bytes, create_only: bool) -> io::Result<bool> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Job { target, data, create_only, done })
            .map_err(|_| io::Error::other("the commit thread has stopped"))?;
        answer.await.map_err(|_| io::Error::other("the commit thread dropped a write"))?
    }
}

fn run(jobs: mpsc::Receiver<Job>, fsync: bool) {
    // Folders the previous batch changed, still to be flushed.
    let mut folders = Folders::default();
    loop {
        let mut batch = Vec::new();
        if folders.0.is_empty() {
            match jobs.recv() {
                Ok(job) => batch.push(job),
                Err(_) => return,
            }
        }
        batch.extend(jobs.try_iter().take(MAX_BATCH - batch.len()));
        let mut next_folders = Folders::default();
        let mut staged = stage_all(batch, &mut next_folders);
        if fsync {
            // One round of flushes: this batch's data, and the folders the previous batch
            // changed, all at once.
            for (dir, e) in flush(&mut staged, &folders) {
                tracing::warn!(folder = %dir.display(), error = %e, "flushing a folder failed");
            }
        }
        folders = next_folders;
        let published = publish_all(staged, &mut folders);
        for (job, wrote) in published {
            let _ = job.done.send(Ok(wrote));
        }
        if !fsync {
            folders = Folders::default();
        }
    }
}

/// A job whose temporary file is written.
struct Staged {
    job: Job,
    tmp: PathBuf,
    file: File,
}

/// Folders to flush once a batch is published: each changed folder, and the parent of each
/// folder created for the batch.
#[derive(Default)]
struct Folders(Vec<PathBuf>);

impl Folders {
    fn add(&mut self, dir: &Path) {
        if !self.0.iter().any(|d| d == dir) {
            self.0.push(dir.to_path_buf());
        }
    }
}

/// Answers create-only writes whose target exists, and writes the others' temporary files.
fn stage_all(batch: Vec<Job>, folders: &mut Folders) -> Vec<Staged> {
    let mut staged = Vec::with_capacity(batch.len());
    for job in batch {
        if job.create_only && fs::symlink_metadata(&job.target).is_ok() {
            let _ = job.done.send(Ok(false));
            continue;
        }
        match stage(&job.target, &job.data, folders) {
            Ok((tmp, file)) => staged.push(Staged { job, tmp, file }),
            Err(e) => {
                let _ = job.done.send(Err(e));
            }
        }
    }
    staged
}

/// Something to flush: a staged file's data, or a folder.
enum Target<'a> {
    File(&'a File),
    Folder(&'a Path),
}

impl Target<'_> {
    fn sync(&self) -> io::Result<()> {
        match self {
            Target::File(f) => f.sync_data(),
            Target::Folder(d) => File::open(d).and_then(|d| d.sync_all()),
        }
    }
}

/// Flushes every staged file's data and every folder in `folders`; fails (and drops) the
/// staged writes whose flush failed, and returns the folders whose flush failed.
fn flush(staged: &mut Vec<Staged>, folders: &Folders) -> Vec<(PathBuf, io::Error)> {
    let targets: Vec<Target> =
        staged.iter().map(|s| Target::File(&s.file)).chain(folders.0.iter().map(|d| Target::Folder(d))).collect();
    let mut results = sync_together(&targets).into_iter();
    let mut file_results: Vec<io::Result<()>> = results.by_ref().take(staged.len()).collect::<Vec<_>>();
    let failed_folders = folders.0.iter().zip(results).filter_map(|(d, r)| r.err().map(|e| (d.clone(), e))).collect();
    let mut i = 0;
    staged.retain_mut(|s| {
        let result = std::mem::replace(&mut file_results[i], Ok(()));
        i += 1;
        match result {
            Ok(()) => true,
            Err(e) => {
                let _ = fs::remove_file(&s.tmp);
                let done = std::mem::replace(&mut s.job.done, oneshot::channel().0);
                let _ = done.send(Err(e));
                false
            }
        }
    });
    failed_folders
}

/// Syncs `targets`: with one `syncfs` when there are [`SYNCFS_MIN`] or more on one
/// filesystem, else from up to [`FLUSH_THREADS`] threads at once: flushes issued together
/// share the filesystem's journal commits and the disk's cache flushes, where one thread
/// syncing them in turn would wait for a cache flush each.
fn sync_together(targets: &[Target]) -> Vec<io::Result<()>> {
    if targets.len() >= SYNCFS_MIN {
        if let Some(results) = sync_filesystem(targets) {
            return results;
        }
    }
    let threads = targets.len().min(FLUSH_THREADS);
    if threads <= 1 {
        return targets.iter().map(Target::sync).collect();
    }
    let per = targets.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut shares = targets.chunks(per);
        let own = shares.next().unwrap_or_default();
        let helpers: Vec<_> = shares
            .map(|share| {
                let helper = std::thread::Builder::new()
                    .name("berth-fs-flush".into())
                    .spawn_scoped(scope, move || share.iter().map(Target::sync).collect::<Vec<_>>());
                (share, helper)
            })
            .collect();
        let mut results: Vec<io::Result<()>> = own.iter().map(Target::sync).collect();
        for (share, helper) in helpers {
            match helper {
                Ok(h) => match h.join() {
                    Ok(r) => results.extend(r),
                    Err(_) => results.extend(share.iter().map(|_| Err(io::Error::other("flush thread panicked")))),
                },
                // No thread to be had: sync this share here.
                Err(_) => results.extend(share.iter().map(Target::sync)),
            }
        }
        results
    })
}

/// Syncs the one filesystem that holds every target with `syncfs`, which writes out all of
/// its dirty data and metadata and then flushes the disk's cache: each target is as durable
/// as after its own `fdatasync`. The price is that it also writes whatever else is dirty on
/// that filesystem (upload data is not: it is written with `O_DIRECT` and flushed per
/// part). `None` when the targets are on several filesystems (a mount inside the root), or
/// one cannot be examined: the caller syncs them one by one.
fn sync_filesystem(targets: &[Target]) -> Option<Vec<io::Result<()>>> {
    let device = |t: &Target| match t {
        Target::File(f) => rustix::fs::fstat(f).ok().map(|s| s.st_dev),
        Target::Folder(d) => rustix::fs::stat(*d).ok().map(|s| s.st_dev),
    };
    let first = device(&targets[0])?;
    for t in &targets[1..] {
        if device(t)? != first {
            return None;
        }
    }
    let synced: io::Result<()> = match &targets[0] {
        Target::File(f) => rustix::fs::syncfs(f).map_err(io::Error::from),
        Target::Folder(d) => File::open(d).and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from)),
    };
    // Every target gets the outcome (an error is not `Clone`: each gets its own copy).
    let copy = |e: &io::Error| match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    };
    Some(targets.iter().map(|_| synced.as_ref().map(|&()| ()).map_err(copy)).collect())
}

/// Makes each staged write visible, in order; returns the writes published, with whether each
/// wrote, and notes the folders they changed.
fn publish_all(staged: Vec<Staged>, folders: &mut Folders) -> Vec<(Job, bool)> {
    let mut published = Vec::with_capacity(staged.len());
    for Staged { job, tmp, file } in staged {
        drop(file);
        match publish(&job.target, &tmp, job.create_only) {
            Ok(wrote) => {
                if wrote {
                    if let Some(dir) = job.target.parent() {
                        folders.add(dir);
                    }
                }
                published.push((job, wrote));
            }
            Err(e) => {
                let _ = job.done.send(Err(e));
            }
        }
    }
    published
}

/// Writes `data` to a new temporary file beside `target`, creating the folders on the way.
fn stage(target: &Path, data: &[u8], folders: &mut Folders) -> io::Result<(PathBuf, File)> {
    if let Some(parent) = target.parent() {
        if !parent.is_dir() {
            create_folders(parent, folders)?;
        }
    }
    let tmp = tmp_name(target);
    let written = File::create(&tmp).and_then(|mut f| f.write_all(data).map(|()| f));
    match written {
        Ok(f) => Ok((tmp, f)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates `dir` and its missing ancestors, noting the parent of each for the flush.
fn create_folders(dir: &Path, folders: &mut Folders) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.is_dir() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    fs::create_dir_all(dir)?;
    for d in missing {
        if let Some(parent) = d.parent() {
            folders.add(parent);
        }
    }
    Ok(())
}

/// Makes the temporary file visible at `target`; `false` when a create-only write lost.
fn publish(target: &Path, tmp: &Path, create_only: bool) -> io::Result<bool> {
    if create_only {
        let linked = fs::hard_link(tmp, target);
        let _ = fs::remove_file(tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    } else {
        fs::rename(tmp, target).inspect_err(|_| {
            let _ = fs::remove_file(tmp);
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Targets on one filesystem are synced by one `syncfs`, all answered; targets on two
    /// filesystems are left to the one-by-one flush (a `syncfs` covers one filesystem only).
    #[test]
    fn syncfs_only_for_targets_on_one_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..3).map(|i| File::create(dir.path().join(format!("f{i}"))).unwrap()).collect();
        let mut targets: Vec<Target> = files.iter().map(Target::File).collect();
        targets.push(Target::Folder(dir.path()));
        let synced = sync_filesystem(&targets).expect("one filesystem");
        assert_eq!(synced.len(), 4);
        assert!(synced.iter().all(Result::is_ok));
        assert_eq!(sync_together(&targets).len(), 4);

        targets.push(Target::Folder(Path::new("/proc")));
        assert!(sync_filesystem(&targets).is_none(), "/proc is another filesystem");
        assert!(sync_together(&targets[..4]).iter().all(Result::is_ok));
    }
}
