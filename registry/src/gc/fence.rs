//! The pushers' half of the collector's protocol (see [`super`]): before anything is made to
//! refer to a digest, its `touched` marker is rewritten, and then the pusher waits while a
//! collector is deleting it. [`crate::store::Store`] calls [`fence`] on manifest PUTs, upload
//! commits and mounts; the collector writes and reads the same [`Doomed`] records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use shared::Digest;

use super::CLOCK_SKEW;
use crate::paths;
use crate::storage::{Storage, StorageError};

/// What a collector run is deleting: `_gc/doomed/<run>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Doomed {
    /// Milliseconds since the epoch after which the run deletes nothing of this batch (less
    /// the margin); pushers wait no longer than that (plus the margin).
    pub(super) until_ms: u64,
    /// The digests of the batch.
    pub(super) digests: Vec<Digest>,
    /// How far apart the collector takes clocks to be ([`super::Options::clock_skew`]):
    /// pushers wait this long past `until_ms`. Absent in older records: [`CLOCK_SKEW`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) skew_ms: Option<u64>,
}

impl Doomed {
    /// Until when (milliseconds since the epoch, by a pusher's clock) a pusher waits for it.
    pub(super) fn hold_until_ms(&self) -> u64 {
        self.until_ms + self.skew_ms.unwrap_or(CLOCK_SKEW.as_millis() as u64)
    }
}

/// Milliseconds since the epoch of `t`.
pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How often a waiting pusher looks again.
const POLL: Duration = Duration::from_millis(20);

/// Marks `digests` as about to be referred to, then waits until no collector is deleting any
/// of them. Afterwards the caller checks that what it needs exists, as usual, and whatever it
/// finds stays for as long as the grace period.
pub(crate) async fn fence(storage: &dyn Storage, digests: &[&Digest]) -> Result<(), StorageError> {
    let mut unique: Vec<&Digest> = digests.to_vec();
    unique.sort();
    unique.dedup();
    let markers: Vec<String> = unique.iter().map(|d| paths::blob_touched(d)).collect();
    try_join_all(markers.iter().map(|m| touch(storage, m))).await?;
    // Only after the markers are written: see the argument in the module doc of `gc`.
    while let Some(wait_until) = doomed_until(storage, &unique).await? {
        if millis(SystemTime::now()) > wait_until {
            // The run that wrote the record stopped deleting long ago (it died or stalled).
            break;
        }
        tracing::debug!(digests = unique.len(), "waiting for the collector to finish with a digest");
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Rewrites a marker. On a filesystem the collector may remove the blob's folder while the
/// marker is being written into it (the write then finds no folder): write it again.
async fn touch(storage: &dyn Storage, marker: &str) -> Result<(), StorageError> {
    let mut tries = 0;
    loop {
        match storage.put(marker, Bytes::new()).await {
            Err(e) if e.is_not_found() && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

/// Until when the doomed records (of any run) listing one of `digests` hold pushers, the
/// latest (see [`Doomed::hold_until_ms`]).
async fn doomed_until(storage: &dyn Storage, digests: &[&Digest]) -> Result<Option<u64>, StorageError> {
    let mut until = None;
    for run in storage.list(paths::GC_DOOMED).await? {
        let Some(raw) = storage.read_opt(paths::gc_doomed(&run)).await? else { continue };
        let Ok(record) = serde_json::from_slice::<Doomed>(&raw) else {
            tracing::warn!(run, "unreadable doomed record ignored");
            continue;
        };
        if record.digests.iter().any(|d| digests.contains(&d)) {
            until = until.max(Some(record.hold_until_ms()));
        }
    }
    Ok(until)
}

/// Deletes the doomed records no pusher waits for any more (a run that died left them);
/// returns how many. Unreadable ones stay (pushers ignore them).
pub(super) async fn forget_stale(storage: &dyn Storage) -> Result<usize, StorageError> {
    let now = millis(SystemTime::now());
    let mut forgotten = 0;
    for run in storage.list(paths::GC_DOOMED).await? {
        let path = paths::gc_doomed(&run);
        let Some(raw) = storage.read_opt(path.clone()).await? else { continue };
        if serde_json::from_slice::<Doomed>(&raw).is_ok_and(|r| r.hold_until_ms() < now) {
            forgotten += usize::from(storage.delete(&path).await?);
        }
    }
    Ok(forgotten)
}
