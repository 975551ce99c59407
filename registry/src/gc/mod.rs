//! Garbage collection: frees the blobs, links and manifests nothing needs any more, online,
//! while any number of replicas serve and push, with no database. `berth gc` runs one
//! [`Collector::run`]; `berth serve` runs it on the `[gc]` schedule.
//!
//! # What is removed
//!
//! - Tags the `[[retention]]` rules do not keep (see [`retention`]): this comes first, so
//!   what only those tags kept goes in the same run, as the rest of this list says.
//! - Blobs (their bytes and every repository's link to them) that no live manifest of any
//!   repository refers to: a live manifest keeps its config and layers, an index keeps its
//!   child manifests, and a manifest keeps the referrers whose `subject` it is.
//! - Untagged manifests, when [`Options::delete_untagged`] is set (a manifest is kept while a
//!   tag, a live index or its live subject needs it).
//! - In the repositories of a mirror with `evict_after`: the tags and manifests not pulled
//!   within that age (see [`retention`]), and so the blobs only they needed.
//! - Referrers whose subject is not in the repository (whatever `delete_untagged` says),
//!   unless tagged.
//! - What a driver stores of its own that nothing refers to ([`Storage::sweep_own`]: on S3,
//!   data objects no link names and multipart uploads no upload session knows).
//!
//! Nothing written, linked or referred to less than [`Options::grace`] before the run
//! started is removed.
//!
//! # The algorithm
//!
//! 1. **Mark** (no writes). For every repository: its tags, its manifest revisions (with
//!    their modification times) and its blob links. A revision is *live* when a tag points to
//!    it, when it is younger than the grace period, when it cannot be read (kept, to be
//!    safe; but a revision whose manifest bytes are gone is a link to nothing, and is not
//!    live unless tagged), or, without `delete_untagged`, always except a referrer whose
//!    subject is absent;
//!    then whatever a live manifest keeps is live (child manifests, referrers of it). Every
//!    digest a live manifest names (itself, config, layers, children) is *referenced*.
//! 2. **Candidates**: revisions that are not live, and every stored or linked digest that is
//!    not referenced (with its links in every repository).
//! 3. **Sweep**, in batches: write the batch's digests to `_gc/doomed/<run>` with a deadline
//!    (`until`); then read each candidate's *evidence* — its `touched` marker, its data, the
//!    revisions and links to be deleted — and drop every candidate any of whose evidence is
//!    younger than the cutoff (`run start − grace`) or could not be read; then delete what is
//!    left (several digests at once), a digest's referrer entries, revisions and links before
//!    its data, and stop at `until − skew`; then delete the doomed record. (`skew` is
//!    [`Options::clock_skew`], which the record states; `until` is at most the lease's time to
//!    live away.) Records left behind by runs that died are deleted once no pusher waits for
//!    them.
//! 4. The driver's own objects ([`Storage::sweep_own`]), given the upload sessions listed
//!    before it looks.
//!
//! # Why it is safe under concurrent pushes
//!
//! Every operation about to make something refer to a digest — a manifest PUT (for its own
//! digest and every blob and child it names), an upload's commit, a mount — first runs
//! [`fence`]: it rewrites the digest's `touched` marker, *then* reads `_gc/doomed/`, and waits
//! while a live record lists one of its digests; only after that does it check that what it
//! needs exists and write its reference. The sweep does the mirror image: it writes the doomed
//! record, *then* reads the touched markers. Storage is linearizable per object (a POSIX
//! filesystem; S3 since 2020), so for a pusher's digest `d` and a sweep's batch holding `d`,
//! one of two orders holds:
//!
//! - the sweep read `d`'s marker after the pusher rewrote it: the marker is younger than the
//!   cutoff, and `d` is not deleted;
//! - the sweep read the marker before the pusher wrote it: then the doomed record was written
//!   before the pusher read `_gc/doomed/`, so the pusher either sees the record and waits
//!   until the batch is over, or finds it already deleted — either way every deletion of the
//!   batch is over before the pusher checks existence. It finds `d` whole, or missing and
//!   answers as for any missing blob (`MANIFEST_BLOB_UNKNOWN`; an upload stores its bytes
//!   anew; a mount does not happen).
//!
//! A reference the mark did not see was written after the mark read that repository, hence
//! after the run started, and its fence rewrote the markers of everything it names shortly
//! before: those markers are younger than the cutoff, so the sweep keeps those digests. (This
//! assumes a push takes less than the grace period from its fence to its last write, and that
//! clocks of replicas and storage differ by much less than the grace period.)
//!
//! A batch's deletions stop at `until − skew` by the collector's clock, and pushers wait at
//! most until `until + skew` by theirs, so a collector that dies or stalls cannot keep
//! pushers waiting for longer than its lease would have lasted, and a pusher that stops
//! waiting never races a deletion (clocks differing by less than the skew). Readers never see anything half-deleted: referrer entries and
//! revisions go before the blob bytes they name, links before the bytes, and a tag is never
//! deleted.
//!
//! With several replicas one collects at a time: see [`lease`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use shared::{Digest, RepoName};

use crate::storage::{OwnSwept, Storage, StorageError};

mod fence;
pub mod history;
pub mod lease;
mod mark;
pub mod retention;
pub mod schedule;
pub mod suite;
mod sweep;

pub(crate) use fence::fence;

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Storage failed; nothing that was not checked was deleted.
    #[error("storage failed while {step}")]
    Storage {
        /// What the collector was doing.
        step: &'static str,
        /// The cause.
        #[source]
        source: StorageError,
    },
    /// A record the collector itself wrote could not be encoded.
    #[error("cannot encode {what}")]
    Encode {
        /// The record.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The content store failed.
    #[error("storage failed while {step}")]
    Store {
        /// What the collector was doing.
        step: &'static str,
        /// The cause.
        #[source]
        source: crate::store::StoreError,
    },
    /// A repository folder's name is not a repository name; the run stops rather than
    /// ignore what it refers to.
    #[error("repository folder {0:?} does not have a valid repository name: rename or remove it")]
    InvalidRepository(String),
    /// Another collector holds the lease.
    #[error("another collector ({holder}) is running; try again after it finishes")]
    Busy {
        /// Who holds it.
        holder: String,
    },
    /// The lease expired or was taken over while this run held it; the run stopped.
    #[error("the collector's lease was lost; the run stopped")]
    LeaseLost,
    /// A `[[retention]]` or `[[immutable]]` rule cannot be used.
    #[error("invalid retention rules")]
    Rules(#[from] retention::RulesError),
}

impl GcError {
    pub(crate) fn storage(step: &'static str) -> impl FnOnce(StorageError) -> GcError {
        move |source| GcError::Storage { step, source }
    }

    pub(crate) fn store(step: &'static str) -> impl FnOnce(crate::store::StoreError) -> GcError {
        move |source| GcError::Store { step, source }
    }
}

/// How a collection runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Nothing written, linked or referred to less than this long before the run started is
    /// removed.
    pub grace: Duration,
    /// Also remove manifests no tag (and no live index or subject) needs.
    pub delete_untagged: bool,
    /// Find and report, change nothing.
    pub dry_run: bool,
    /// Which tags to keep (`[[retention]]`); no rule keeps every tag.
    pub retention: retention::Rules,
    /// How long the lease lasts unless renewed ([`schedule::run_once`] takes it).
    pub lease: Duration,
    /// How far apart the clocks of replicas and storage may be (see the module doc).
    pub clock_skew: Duration,
}

impl Options {
    /// Options with the `[gc]` defaults but for these.
    pub fn new(grace: Duration, delete_untagged: bool, dry_run: bool) -> Options {
        Options {
            grace,
            delete_untagged,
            dry_run,
            retention: Default::default(),
            lease: schedule::LEASE_TTL,
            clock_skew: CLOCK_SKEW,
        }
    }
}

/// One thing a run removed (or, dry, would remove).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Removed {
    /// A tag a `[[retention]]` rule did not keep.
    Tag {
        /// The repository.
        repo: RepoName,
        /// The tag.
        tag: shared::Tag,
        /// The manifest it pointed to.
        digest: Digest,
        /// The rule, described.
        rule: String,
    },
    /// A manifest revision of a repository (with its referrer entry).
    Manifest {
        /// The repository.
        repo: RepoName,
        /// The manifest.
        digest: Digest,
    },
    /// A repository's link to a blob being removed.
    Link {
        /// The repository.
        repo: RepoName,
        /// The blob.
        digest: Digest,
    },
    /// A blob's bytes.
    Blob {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Repositories looked at.
    pub repositories: usize,
    /// Manifest revisions looked at.
    pub manifests: usize,
    /// What was removed, in order of removal.
    pub removed: Vec<Removed>,
    /// Candidates kept because something touched them after the mark (pushes racing the run).
    pub kept_fresh: usize,
    /// What the driver removed of its own.
    pub own: OwnSwept,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Bytes in storage after the run, when the driver counts them ([`Storage::bytes_stored`]).
    pub stored_bytes: Option<u64>,
}

impl Report {
    /// Bytes of the blobs removed. What the driver removed of its own is in [`Report::own`]
    /// (on S3 that includes the data objects of these blobs, so the two are not added up).
    pub fn bytes_freed(&self) -> u64 {
        self.removed.iter().map(|r| if let Removed::Blob { size, .. } = r { *size } else { 0 }).sum()
    }

    /// The removals grouped by repository (`None`: the blobs, stored once for all).
    pub fn by_repository(&self) -> BTreeMap<Option<&RepoName>, Vec<&Removed>> {
        let mut out: BTreeMap<Option<&RepoName>, Vec<&Removed>> = BTreeMap::new();
        for r in &self.removed {
            let key = match r {
                Removed::Tag { repo, .. } | Removed::Manifest { repo, .. } | Removed::Link { repo, .. } => Some(repo),
                Removed::Blob { .. } => None,
            };
            out.entry(key).or_default().push(r);
        }
        out
    }
}

/// A point of a run where [`Hooks`] are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The tags retention removes are chosen; none is removed yet.
    Retained,
    /// A batch's doomed record is written; its evidence is not read yet.
    Doomed,
    /// The batch's evidence is read; nothing of it is deleted yet.
    Checked,
}

/// Called at each [`Point`] of a run, which waits for the returned future: tests hold a run
/// there to play a push against it deterministically.
pub trait Hooks: Send + Sync {
    /// The run reached `point`.
    fn at(&self, point: Point) -> BoxFuture<'static, ()>;
}

/// Progress of a run, for a terminal: the step, and how far it is.
pub type Progress = Arc<dyn Fn(&'static str, u64, u64) + Send + Sync>;

/// One collection over a storage.
pub struct Collector {
    storage: Arc<dyn Storage>,
    options: Options,
    hooks: Option<Arc<dyn Hooks>>,
    progress: Option<Progress>,
    lease: Option<Arc<lease::Held>>,
    /// How long a batch's doomed record holds pushers at most (less the clock skew).
    window: Duration,
}

/// The default [`Options::clock_skew`]: a batch's deletions stop this long before its
/// deadline, and pushers wait this long past it (the record says how long): the clocks of
/// replicas may differ by less.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

impl Collector {
    /// A collector over `storage`.
    pub fn new(storage: Arc<dyn Storage>, options: Options) -> Self {
        // A batch holds pushers no longer than a dead collector holds the lease (two minutes
        // at most), and its deletions stop `clock_skew` before the end: leave them most of it.
        let window = options.lease.min(Duration::from_secs(120)).max(options.clock_skew * 3);
        Collector { storage, options, hooks: None, progress: None, lease: None, window }
    }

    /// Calls `hooks` at each [`Point`] of the run.
    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Deletes only while `lease` is [valid](lease::Held::valid).
    pub fn with_lease(mut self, lease: Arc<lease::Held>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Whether the run may still delete (it holds its lease, if it has one).
    fn may_delete(&self) -> bool {
        self.lease.as_ref().is_none_or(|l| l.valid())
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    async fn hook(&self, point: Point) {
        if let Some(h) = &self.hooks {
            h.at(point).await;
        }
    }

    fn progress(&self, step: &'static str, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(step, done, total);
        }
    }

    /// Runs one collection: mark, sweep, then the driver's own objects. The caller holds the
    /// lease (see [`lease`]) unless this is a dry run or the only process on the storage.
    pub async fn run(&self) -> Result<Report, GcError> {
        let started = SystemTime::now();
        let cutoff = started.checked_sub(self.options.grace).unwrap_or(UNIX_EPOCH);
        // Upload sessions are listed before anything the driver looks at (see `sweep_own`).
        let store = crate::store::Store::new(self.storage.clone());
        let sessions = store.upload_resumes().await.map_err(GcError::store("listing upload sessions"))?;
        let rules = self.options.retention.compile()?;
        let repos = mark::repositories(self).await?;
        let mut report = Report { dry_run: self.options.dry_run, ..Report::default() };
        let expired = retention::expired(self, &rules, &repos, started).await?;
        let untagged = retention::remove(self, expired, &mut report).await?;
        // A dry run removed no tag: the mark leaves out those a real run would have.
        let skip = if self.options.dry_run { untagged } else { Default::default() };
        // A mirror's repositories that evict: untagged manifests go once not pulled for the age.
        let evicting: HashMap<RepoName, SystemTime> = repos
            .iter()
            .filter_map(|r| Some((r.clone(), started.checked_sub(rules.eviction(r)?.after).unwrap_or(UNIX_EPOCH))))
            .collect();
        let marked = mark::mark(self, &repos, &skip, &evicting, cutoff).await?;
        report.repositories = marked.repositories;
        report.manifests = marked.manifests;
        let candidates = sweep::candidates(self, &marked).await?;
        sweep::sweep(self, candidates, cutoff, &mut report).await?;
        self.progress("driver objects", 0, 1);
        report.own = self
            .storage
            .sweep_own(&sessions, cutoff, self.options.dry_run)
            .await
            .map_err(GcError::storage("sweeping the driver's own objects"))?;
        self.progress("driver objects", 1, 1);
        report.stored_bytes =
            self.storage.bytes_stored().await.map_err(GcError::storage("counting the bytes stored"))?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::storage::fs::FsStorage;
    use crate::storage::Storage;

    /// The collector suite on the filesystem driver.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_collector_suite_on_the_filesystem() {
        let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
        super::suite::run(|| {
            let dirs = dirs.clone();
            async move {
                let dir = tempfile::tempdir().unwrap();
                let driver: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path(), false).unwrap());
                dirs.lock().unwrap().push(dir);
                driver
            }
        })
        .await;
    }

    /// Pushes on two replicas race collections on a third, all on one folder.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pushes_race_collections_on_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let replicas: Vec<Arc<dyn Storage>> =
            (0..3).map(|_| Arc::new(FsStorage::new(dir.path(), false).unwrap()) as Arc<dyn Storage>).collect();
        super::suite::pushes_race_collections(replicas).await;
    }
}
