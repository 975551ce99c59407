//! The collector's lease: with several replicas on one storage, one collects at a time.
//!
//! The lease is a small object `_gc/lease.<n>` (see [`crate::paths`]) naming its holder and
//! when it expires. It is taken by a create-only write (`If-None-Match: *` on S3, a hard link
//! on the filesystem) of the *next* generation `n + 1`, and only once generation `n` has
//! expired (by more than the clock skew, `[gc] clock_skew_secs`), so of two replicas racing for it exactly one
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
use super::GcError;
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
    /// How far apart clocks may be ([`super::Options::clock_skew`]).
    skew: Duration,
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

/// Takes the lease for `ttl` as `holder`, or says who has it. A lease expired less than
/// `skew` ago (the clocks may differ by that much) still counts as held.
pub async fn acquire(
    storage: Arc<dyn Storage>,
    holder: &str,
    ttl: Duration,
    skew: Duration,
) -> Result<Arc<Held>, GcError> {
    let existing = generations(storage.as_ref()).await?;
    let next = match existing.last() {
        None => 1,
        Some(&n) => {
            let raw = storage.read_opt(paths::gc_lease(n)).await.map_err(GcError::storage("reading the lease"))?;
            let record = raw.and_then(|raw| serde_json::from_slice::<Record>(&raw).ok());
            if let Some(r) = record.filter(|r| now_ms() <= r.expires_ms + skew.as_millis() as u64) {
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
        skew,
        expires_ms: AtomicU64::new(expires_ms),
        lost: AtomicBool::new(false),
    }))
}

impl Held {
    /// True while the lease is held with at least the clock skew to spare.
    pub fn valid(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && now_ms() + (self.skew.as_millis() as u64) < self.expires_ms.load(Ordering::SeqCst)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::FsStorage;

    fn storage() -> (tempfile::TempDir, Arc<dyn Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path(), false).unwrap());
        (dir, s)
    }

    const TTL: Duration = Duration::from_secs(300);
    const SKEW: Duration = crate::gc::CLOCK_SKEW;

    async fn acquire(storage: Arc<dyn Storage>, holder: &str, ttl: Duration) -> Result<Arc<Held>, GcError> {
        super::acquire(storage, holder, ttl, SKEW).await
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_release_frees_it() {
        let (_dir, s) = storage();
        let a = acquire(s.clone(), "a", TTL).await.unwrap();
        assert!(a.valid());
        assert!(matches!(acquire(s.clone(), "b", TTL).await, Err(GcError::Busy { holder }) if holder == "a"));
        a.renew().await.unwrap();
        a.release().await.unwrap();
        assert!(!a.valid());
        let b = acquire(s.clone(), "b", TTL).await.unwrap();
        assert_eq!(b.generation, a.generation + 1);
        assert_eq!(generations(s.as_ref()).await.unwrap(), vec![b.generation], "older generations are deleted");
    }

    /// A holder that died (its lease expired, margin included) is replaced by the next
    /// generation; should it come back, it cannot renew and stops.
    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_holder_stops() {
        let (_dir, s) = storage();
        let a = acquire(s.clone(), "a", TTL).await.unwrap();
        let expired = Record { holder: "a".into(), expires_ms: now_ms() - SKEW.as_millis() as u64 - 1000 };
        s.put(&paths::gc_lease(a.generation), Bytes::from(serde_json::to_vec(&expired).unwrap())).await.unwrap();
        let b = acquire(s.clone(), "b", TTL).await.unwrap();
        assert_eq!(b.generation, a.generation + 1);
        assert!(matches!(a.renew().await, Err(GcError::LeaseLost)));
        assert!(!a.valid(), "a lost lease stops deletions");
        // Its release leaves the new holder's lease alone.
        a.release().await.unwrap();
        assert!(matches!(acquire(s.clone(), "c", TTL).await, Err(GcError::Busy { holder }) if holder == "b"));
    }

    /// A run whose lease was lost deletes nothing.
    #[tokio::test]
    async fn a_run_without_its_lease_deletes_nothing() {
        let (_dir, s) = storage();
        let store = crate::store::Store::new(s.clone());
        let repo = "r".parse().unwrap();
        let lonely = crate::gc::suite::push_blob(&store, &repo, b"lonely").await.unwrap();
        let a = acquire(s.clone(), "a", TTL).await.unwrap();
        a.release().await.unwrap();
        let options = crate::gc::Options::new(Duration::ZERO, false, false);
        let run = crate::gc::Collector::new(s.clone(), options).with_lease(a).run().await;
        assert!(matches!(run, Err(GcError::LeaseLost)), "{run:?}");
        assert_eq!(store.blob_size(&repo, &lonely).await.unwrap(), 6);
    }

    /// Two replicas racing for a free lease: exactly one gets it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_replicas_get_it_once() {
        let (_dir, s) = storage();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { acquire(s, &format!("r{i}"), TTL).await.is_ok() })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1);
    }
}
