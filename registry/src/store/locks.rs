//! Per-process locks that serialise the writes to one upload session (two `PATCH`es of the
//! same session on one replica must not interleave their driver writes).
//!
//! A lock exists only while someone uses it: [`UploadLocks::get`] makes or shares the entry,
//! and the last [`UploadLock`] to go drops it, whether its request finished, failed or was
//! cancelled while waiting. So the map holds the sessions being written right now, never one
//! per id ever seen. Used by [`super::Store`]'s upload operations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

type Entries = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// The locks of the sessions in use.
#[derive(Default)]
pub(crate) struct UploadLocks {
    entries: Entries,
}

impl UploadLocks {
    /// A share of the lock of session `id` (made if no one holds it). The caller checks
    /// that `id` is a well-formed id first.
    pub(crate) fn get(&self, id: &str) -> UploadLock<'_> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = entries.entry(id.to_string()).or_default().clone();
        UploadLock { entries: &self.entries, id: id.to_string(), lock }
    }

    /// How many sessions have a lock entry.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// One user's share of a session's lock; [`UploadLock::lock`] waits for it.
pub(crate) struct UploadLock<'a> {
    entries: &'a Entries,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl UploadLock<'_> {
    /// Waits until no other user of this process holds the session.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Drop for UploadLock<'_> {
    fn drop(&mut self) {
        // Shares are only made under the map's mutex, so under it the count is exact: the
        // map's own and this one mean no one else uses the entry.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.get(&self.id).is_some_and(|l| Arc::ptr_eq(l, &self.lock) && Arc::strong_count(l) == 2) {
            entries.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_with_their_last_user() {
        let locks = UploadLocks::default();
        let a = locks.get("x");
        let b = locks.get("x");
        assert_eq!(locks.len(), 1);
        let held = a.lock().await;
        // b waits; its wait is cancelled (the future dropped), and its share stays until b goes.
        assert!(futures_util::FutureExt::now_or_never(b.lock()).is_none());
        drop(held);
        drop(a);
        assert_eq!(locks.len(), 1, "b still uses it");
        drop(b);
        assert_eq!(locks.len(), 0);
        // An entry made again after it went is a new lock, shared by its new users.
        let c = locks.get("x");
        let d = locks.get("x");
        let held = c.lock().await;
        assert!(d.lock.try_lock().is_err());
        drop(held);
        drop((c, d));
        assert_eq!(locks.len(), 0);
    }
}
