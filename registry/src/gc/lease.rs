//! The collector's lease: with several replicas on one storage, one collects at a time.
//!
//! The lease is a small object `_gc/lease.<n>` (see [`crate::paths`]) naming its holder and
//! when it expires. It is taken by a create-only write (`If-None-Match: *` on S3, a hard link
//! on the filesystem) of the *next* generation `n + 1`, and only once generation `n` has
//! expired (by more than the clock margin), so of two replicas racing for it exactly one
//! writes `n + 1`. The holder renews it by rewriting its own generation while it runs, after
//! checking that no later generation exists and that its own has not expired by its clock;
//! a holder that cannot renew in time stops deleting. A replica that dies mid-run stops
//! renewing; its lease expires and another replica takes the next generation later. Done,
//! the holder marks its generation expired. Older generations are deleted by the one that
//! replaces them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::fence::millis;
use super::{GcError, MARGIN};
use crate::paths;
use crate::storage::Storage;

/// The lease record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    holder: String,
    expires_ms: u64,
}

/// A lease this process holds. Check [`Held::valid`] before every deletion.
pub struct Held {
    storage: Arc<dyn Storage>,
    generation: u64,
    holder: String,
    ttl: Duration,
    expires_ms: AtomicU64,
    lost: AtomicBool,
}

fn now_ms() -> u64 {
    millis(SystemTime::now())
}

/// The generations of the lease in storage, highest last.
async fn generations(storage: &dyn Storage) -> Result<Vec<u64>, GcError> {
    let names = storage.list(paths::GC).await.map_err(GcError::storage("listing the lease"))?;
    let mut out: Vec<u64> = names.iter().filter_map(|n| n.strip_prefix("lease.")?.parse().ok()).collect();
    out.sort_unstable();
    Ok(out)
}

/// Takes the lease for `ttl` as `holder`, or says who has it.
pub async fn acquire(storage: Arc<dyn Storage>, holder: &str, ttl: Duration) -> Result<Arc<Held>, GcError> {
    let existing = generations(storage.as_ref()).await?;
    let next = match existing.last() {
        None => 1,
        Some(&n) => {
            let raw = storage.read_opt(paths::gc_lease(n)).await.map_err(GcError::storage("reading the lease"))?;
            let record = raw.and_then(|raw| serde_json::from_slice::<Record>(&raw).ok());
            if let Some(r) = record.filter(|r| now_ms() <= r.expires_ms + MARGIN.as_millis() as u64) {
                return Err(GcError::Busy { holder: r.holder });
            }
            n + 1
        }
    };
    let expires_ms = now_ms() + ttl.as_millis() as u64;
    let record = Record { holder: holder.to_string(), expires_ms };
    let json = serde_json::to_vec(&record).map_err(|source| GcError::Encode { what: "lease", source })?;
    let taken = storage
        .put_if_absent(&paths::gc_lease(next), Bytes::from(json))
        .await
        .map_err(GcError::storage("taking the lease"))?;
    if !taken {
        return Err(GcError::Busy { holder: "another replica".into() });
    }
    for old in existing {
        let _ = storage.delete(&paths::gc_lease(old)).await;
    }
    Ok(Arc::new(Held {
        storage,
        generation: next,
        holder: holder.to_string(),
        ttl,
        expires_ms: AtomicU64::new(expires_ms),
        lost: AtomicBool::new(false),
    }))
}

impl Held {
    /// True while the lease is held with at least the clock margin to spare.
    pub fn valid(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && now_ms() + (MARGIN.as_millis() as u64) < self.expires_ms.load(Ordering::SeqCst)
    }

    /// Extends the lease by its time to live; fails (and the lease counts as lost) when it
    /// expired meanwhile or another replica took it over.
    pub async fn renew(&self) -> Result<(), GcError> {
        let lost = |held: &Held| {
            held.lost.store(true, Ordering::SeqCst);
            Err(GcError::LeaseLost)
        };
        if !self.valid() {
            return lost(self);
        }
        let later = generations(self.storage.as_ref()).await?;
        if later.iter().any(|&g| g > self.generation) {
            return lost(self);
        }
        let expires_ms = now_ms() + self.ttl.as_millis() as u64;
        let json = serde_json::to_vec(&Record { holder: self.holder.clone(), expires_ms })
            .map_err(|source| GcError::Encode { what: "lease", source })?;
        self.storage.put(&paths::gc_lease(self.generation), Bytes::from(json)).await.map_err(|e| {
            self.lost.store(true, Ordering::SeqCst);
            GcError::Storage { step: "renewing the lease", source: e }
        })?;
        self.expires_ms.store(expires_ms, Ordering::SeqCst);
        Ok(())
    }

    /// Gives the lease up, so another replica may collect at once.
    pub async fn release(&self) -> Result<(), GcError> {
        self.lost.store(true, Ordering::SeqCst);
        let later = generations(self.storage.as_ref()).await?;
        if later.iter().any(|&g| g > self.generation) {
            return Ok(());
        }
        let json = serde_json::to_vec(&Record { holder: self.holder.clone(), expires_ms: 0 })
            .map_err(|source| GcError::Encode { what: "lease", source })?;
        self.storage
            .put(&paths::gc_lease(self.generation), Bytes::from(json))
            .await
            .map_err(GcError::storage("releasing the lease"))
    }

    /// Renews the lease every third of its time to live until dropped or lost.
    pub fn keep_renewed(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let held = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(held.ttl / 3).await;
                if held.lost.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = held.renew().await {
                    tracing::warn!(error = %shared::error_chain(&e), "the collector's lease could not be renewed");
                    return;
                }
            }
        })
    }
}
