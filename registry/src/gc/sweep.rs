//! The sweep phase (see [`super`]): from what the mark found, the candidates; then, batch by
//! batch, the doomed record, the evidence check and the deletions.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use shared::{Digest, RepoName};

use super::fence::{forget_stale, millis, Doomed};
use super::mark::Marked;
use super::{Collector, GcError, Point, Removed, Report};
use crate::paths;
use crate::storage::{Meta, StorageError};

/// Candidates per doomed record.
const BATCH: usize = 256;
/// Blob buckets listed at once.
const LISTS_AT_ONCE: usize = 16;
/// Candidates whose deletions run at once (each candidate's own deletions stay in order).
const DELETES_AT_ONCE: usize = 16;

/// What may be deleted of one digest.
#[derive(Debug, Default)]
pub(super) struct Candidate {
    /// Revisions of it that are not live: repository, and the subject it names.
    revisions: Vec<(RepoName, Option<Digest>)>,
    /// Links to it (when nothing refers to it).
    links: Vec<RepoName>,
    /// Its bytes and marker go too (nothing refers to it).
    blob: bool,
}

impl Candidate {
    /// Everything whose modification time keeps the candidate, marker first.
    fn evidence(&self, d: &Digest) -> Vec<String> {
        let mut out = vec![paths::blob_touched(d)];
        if self.blob {
            out.push(paths::blob_data(d));
        }
        out.extend(self.revisions.iter().map(|(repo, _)| paths::manifest_revision(repo, d)));
        out.extend(self.links.iter().map(|repo| paths::layer_link(repo, d)));
        out
    }
}

/// The digests of every stored blob folder (bytes, or only a marker), listing
/// [`LISTS_AT_ONCE`] buckets at a time.
async fn stored(c: &Collector) -> Result<Vec<Digest>, GcError> {
    let storage = c.storage.as_ref();
    let mut out = Vec::new();
    for alg in storage.list(paths::BLOBS).await.map_err(GcError::storage("listing blobs"))? {
        let folder = format!("{}/{alg}", paths::BLOBS);
        let buckets = storage.list(&folder).await.map_err(GcError::storage("listing blobs"))?;
        let lists: Vec<_> = buckets
            .iter()
            .map(|bucket| {
                let path = format!("{folder}/{bucket}");
                async move { storage.list(&path).await }
            })
            .collect();
        let mut lists = futures_util::stream::iter(lists).buffered(LISTS_AT_ONCE);
        let mut done = 0;
        while let Some(names) = lists.next().await {
            let names = names.map_err(GcError::storage("listing blobs"))?;
            out.extend(names.iter().filter_map(|hex| format!("{alg}:{hex}").parse::<Digest>().ok()));
            done += 1;
            c.progress("listing blobs", done, buckets.len() as u64);
        }
    }
    Ok(out)
}

/// The candidates: revisions that are not live, and digests nothing refers to.
pub(super) async fn candidates(c: &Collector, marked: &Marked) -> Result<BTreeMap<Digest, Candidate>, GcError> {
    let mut out: BTreeMap<Digest, Candidate> = BTreeMap::new();
    for (repo, d, subject) in &marked.dead {
        out.entry(d.clone()).or_default().revisions.push((repo.clone(), subject.clone()));
    }
    let stored = stored(c).await?;
    for d in stored.iter().chain(marked.links.keys()) {
        if !marked.referenced.contains(d) {
            let candidate = out.entry(d.clone()).or_default();
            candidate.blob = true;
            candidate.links = marked.links.get(d).cloned().unwrap_or_default();
        }
    }
    Ok(out)
}

/// Whether the evidence keeps a candidate: something younger than the cutoff, or something
/// that could not be read.
fn fresh(stats: &[Result<Meta, StorageError>], cutoff: SystemTime) -> bool {
    stats.iter().any(|s| match s {
        Ok(meta) => meta.modified > cutoff,
        Err(e) => !e.is_not_found(),
    })
}

/// Sweeps the candidates in batches, recording what goes in `report`.
pub(super) async fn sweep(
    c: &Collector,
    candidates: BTreeMap<Digest, Candidate>,
    cutoff: SystemTime,
    report: &mut Report,
) -> Result<(), GcError> {
    let run = format!("{:032x}", rand::random::<u128>());
    if !c.options.dry_run {
        let stale =
            forget_stale(c.storage.as_ref()).await.map_err(GcError::storage("deleting stale doomed records"))?;
        if stale > 0 {
            tracing::info!(stale, "deleted the doomed records of runs that stopped");
        }
    }
    let total = candidates.len() as u64;
    let mut rest: Vec<(Digest, Candidate)> = candidates.into_iter().collect();
    let mut done = 0;
    while !rest.is_empty() {
        let batch: Vec<(Digest, Candidate)> = rest.drain(..BATCH.min(rest.len())).collect();
        c.progress("sweeping", done, total);
        done += batch.len() as u64;
        let until = SystemTime::now() + c.window;
        if !c.options.dry_run {
            let record = Doomed {
                until_ms: millis(until),
                digests: batch.iter().map(|(d, _)| d.clone()).collect(),
                skew_ms: Some(c.options.clock_skew.as_millis() as u64),
            };
            let json =
                serde_json::to_vec(&record).map_err(|source| GcError::Encode { what: "doomed record", source })?;
            c.storage
                .put(&paths::gc_doomed(&run), Bytes::from(json))
                .await
                .map_err(GcError::storage("writing the doomed record"))?;
        }
        c.hook(Point::Doomed).await;
        let result = sweep_batch(c, &batch, cutoff, until, report).await;
        if !c.options.dry_run {
            c.storage.delete(&paths::gc_doomed(&run)).await.map_err(GcError::storage("deleting the doomed record"))?;
        }
        result?;
    }
    c.progress("sweeping", total, total);
    Ok(())
}

/// Checks one batch's evidence, then deletes what nothing touched.
async fn sweep_batch(
    c: &Collector,
    batch: &[(Digest, Candidate)],
    cutoff: SystemTime,
    until: SystemTime,
    report: &mut Report,
) -> Result<(), GcError> {
    let evidence: Vec<Vec<String>> = batch.iter().map(|(d, cand)| cand.evidence(d)).collect();
    let flat: Vec<String> = evidence.iter().flatten().cloned().collect();
    let mut stats = c.storage.stat_many(&flat).await.into_iter();
    let mut doomed = Vec::new();
    for ((d, cand), paths) in batch.iter().zip(&evidence) {
        let stats: Vec<_> = stats.by_ref().take(paths.len()).collect();
        if fresh(&stats, cutoff) {
            report.kept_fresh += 1;
            continue;
        }
        let size = if cand.blob { stats.get(1).and_then(|s| s.as_ref().ok()).map(|m| m.size) } else { None };
        doomed.push((d, cand, size));
    }
    c.hook(Point::Checked).await;
    let deletions: Vec<_> = doomed
        .into_iter()
        .map(|(d, cand, size)| async move {
            if !c.may_delete() {
                return Err(GcError::LeaseLost);
            }
            if SystemTime::now() + c.options.clock_skew > until {
                return Ok(None);
            }
            delete(c, d, cand, size).await.map(Some)
        })
        .collect();
    let mut deletions = futures_util::stream::iter(deletions).buffered(DELETES_AT_ONCE);
    let mut out_of_time = false;
    while let Some(removed) = deletions.next().await {
        match removed? {
            Some(removed) => report.removed.extend(removed),
            None => out_of_time = true,
        }
    }
    if out_of_time {
        tracing::warn!("a collection batch ran out of time; the rest waits for the next run");
    }
    Ok(())
}

/// Deletes (or, dry, only records) what goes of one digest, in the order readers need.
async fn delete(c: &Collector, d: &Digest, cand: &Candidate, size: Option<u64>) -> Result<Vec<Removed>, GcError> {
    let mut removed = Vec::new();
    let dry = c.options.dry_run;
    let storage = c.storage.as_ref();
    let failed = GcError::storage;
    for (repo, subject) in &cand.revisions {
        if !dry {
            if let Some(subject) = subject {
                storage
                    .delete(&paths::referrer(repo, subject, d))
                    .await
                    .map_err(failed("deleting a referrer entry"))?;
            }
            storage.delete(&paths::manifest_revision(repo, d)).await.map_err(failed("deleting a manifest"))?;
        }
        removed.push(Removed::Manifest { repo: repo.clone(), digest: d.clone() });
    }
    for repo in &cand.links {
        if !dry {
            storage.delete(&paths::layer_link(repo, d)).await.map_err(failed("deleting a blob link"))?;
        }
        removed.push(Removed::Link { repo: repo.clone(), digest: d.clone() });
    }
    if cand.blob {
        if !dry {
            // Its bytes and its marker, and on a filesystem the folder holding them.
            storage.delete_all(&paths::blob_folder(d)).await.map_err(failed("deleting a blob"))?;
        }
        if let Some(size) = size {
            removed.push(Removed::Blob { digest: d.clone(), size });
        }
    }
    Ok(removed)
}
