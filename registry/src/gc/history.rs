//! The collector's run history: one small record per real run (`_gc/runs/<start>-<id>`, see
//! [`crate::paths`]), written by the replica that ran it, so every replica (the admin API,
//! the UI, `/metrics`) reads the same last runs. [`schedule::run_once`](super::schedule::run_once)
//! writes them; [`recent`] reads them. The last [`KEPT`] runs are kept.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::fence::millis;
use super::{GcError, Removed, Report};
use crate::paths;
use crate::storage::Storage;

/// Runs kept in storage; older records are deleted by the run that writes a newer one.
pub const KEPT: usize = 100;

/// One collection, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Which process ran it (host, process id, random part).
    pub holder: String,
    /// Repositories looked at.
    pub repositories: u64,
    /// Tags removed by `[[retention]]`.
    pub tags: u64,
    /// Manifest revisions removed.
    pub manifests: u64,
    /// Repository links to blobs removed.
    pub links: u64,
    /// Blobs removed.
    pub blobs: u64,
    /// Bytes of the blobs removed.
    pub bytes_freed: u64,
    /// Objects of the driver's own removed (on S3: data objects, and multipart uploads).
    pub driver_objects: u64,
    /// Their bytes.
    pub driver_bytes: u64,
    /// Candidates kept because pushes used them during the run.
    pub kept_fresh: u64,
    /// Bytes in storage after the run, when the driver counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// Why it failed, if it did (what it removed before is counted above when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Run {
    /// The record of a run that started at `started_ms` and took `duration_ms`.
    pub fn of(report: Option<&Report>, error: Option<String>, holder: &str, started_ms: u64, duration_ms: u64) -> Run {
        let mut run = Run { started_ms, duration_ms, holder: holder.to_string(), error, ..Run::default() };
        if let Some(r) = report {
            let count = |f: fn(&Removed) -> bool| r.removed.iter().filter(|x| f(x)).count() as u64;
            run.repositories = r.repositories as u64;
            run.tags = count(|x| matches!(x, Removed::Tag { .. }));
            run.manifests = count(|x| matches!(x, Removed::Manifest { .. }));
            run.links = count(|x| matches!(x, Removed::Link { .. }));
            run.blobs = count(|x| matches!(x, Removed::Blob { .. }));
            run.bytes_freed = r.bytes_freed();
            run.driver_objects = r.own.objects + r.own.uploads;
            run.driver_bytes = r.own.bytes;
            run.kept_fresh = r.kept_fresh as u64;
            run.stored_bytes = r.stored_bytes;
        }
        run
    }

    /// Everything the run removed: tags, manifests, links, blobs and the driver's objects.
    pub fn objects_removed(&self) -> u64 {
        self.tags + self.manifests + self.links + self.blobs + self.driver_objects
    }
}

/// Writes the record of a run, then deletes records beyond the last [`KEPT`].
pub async fn record(storage: &dyn Storage, run: &Run) -> Result<(), GcError> {
    let name = format!("{:020}-{:08x}", run.started_ms, rand::random::<u32>());
    let json = serde_json::to_vec(run).map_err(|source| GcError::Encode { what: "run record", source })?;
    storage.put(&paths::gc_run(&name), Bytes::from(json)).await.map_err(GcError::storage("recording the run"))?;
    let names = storage.list(paths::GC_RUNS).await.map_err(GcError::storage("listing runs"))?;
    for old in names.iter().rev().skip(KEPT) {
        storage.delete(&paths::gc_run(old)).await.map_err(GcError::storage("deleting an old run record"))?;
    }
    Ok(())
}

/// The last `n` runs, newest first. A record that cannot be read is skipped.
pub async fn recent(storage: &dyn Storage, n: usize) -> Result<Vec<Run>, GcError> {
    let names = storage.list(paths::GC_RUNS).await.map_err(GcError::storage("listing runs"))?;
    let mut out = Vec::new();
    for name in names.iter().rev().take(n) {
        let raw = storage.read_opt(paths::gc_run(name)).await.map_err(GcError::storage("reading runs"))?;
        match raw.map(|b| serde_json::from_slice::<Run>(&b)) {
            Some(Ok(run)) => out.push(run),
            Some(Err(e)) => tracing::warn!(name, error = %e, "unreadable run record skipped"),
            None => {}
        }
    }
    Ok(out)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    millis(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::fs::FsStorage;

    #[tokio::test]
    async fn runs_are_kept_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path(), false).unwrap());
        assert!(recent(storage.as_ref(), 10).await.unwrap().is_empty());
        for i in 0..(KEPT as u64 + 5) {
            let run = Run { started_ms: 1_000 + i, duration_ms: i, blobs: i, ..Run::default() };
            record(storage.as_ref(), &run).await.unwrap();
        }
        let runs = recent(storage.as_ref(), 3).await.unwrap();
        let started: Vec<u64> = runs.iter().map(|r| r.started_ms).collect();
        assert_eq!(started, [1_000 + KEPT as u64 + 4, 1_000 + KEPT as u64 + 3, 1_000 + KEPT as u64 + 2]);
        assert_eq!(storage.list(paths::GC_RUNS).await.unwrap().len(), KEPT);
        assert_eq!(recent(storage.as_ref(), 1_000).await.unwrap().len(), KEPT);
    }
}
