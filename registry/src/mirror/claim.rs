//! One upstream fetch of a blob across replicas that share a storage (S3), with the storage
//! alone: before fetching, a replica creates the blob's claim object create-only
//! ([`crate::paths::mirror_fetching`]). The replica that created it fetches, rewrites it
//! every [`REFRESH`] while the fetch goes on, and deletes it when the fetch ends (stored or
//! failed). The others wait: they serve the blob from storage once it is stored, and take a
//! claim themselves once the claim is gone without the blob (the fetch failed), or fetch
//! anyway once it was not rewritten for [`STALE`] (its replica died).
//!
//! Within one replica [`super::flight`] already shares one fetch between requests; this
//! covers the replicas. A waiting client gets its first byte only once the other replica has
//! stored the whole blob.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use shared::Digest;

use crate::paths;
use crate::storage::{Storage, StorageError};
use crate::store::{Store, StoreError};

/// How often the fetching replica rewrites its claim.
pub(super) const REFRESH: Duration = Duration::from_secs(10);
/// A claim not rewritten for this long belongs to a replica that stopped.
pub(super) const STALE: Duration = Duration::from_secs(60);
/// How often a waiting replica looks again.
const POLL: Duration = Duration::from_millis(100);

/// What a replica about to fetch a blob found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// It holds the claim: fetch, then [`release`].
    Mine,
    /// Another replica stored the blob meanwhile.
    Stored,
    /// The claim could not be used (storage failed, or its holder stopped): fetch without it.
    Unclaimed,
}

/// Waits for this replica's turn to fetch `digest`: claims it, or waits for the replica
/// that did.
pub(super) async fn wait_turn(store: &Store, digest: &Digest, me: &str) -> Turn {
    let storage = store.storage();
    let path = paths::mirror_fetching(digest);
    loop {
        match storage.put_if_absent(&path, Bytes::from(me.to_string())).await {
            // The blob may have been stored, and its claim released, since it was looked for.
            Ok(true) => {
                return match store.blob_stored(digest).await {
                    Ok(true) => {
                        release(storage.as_ref(), digest).await;
                        Turn::Stored
                    }
                    _ => Turn::Mine,
                }
            }
            Ok(false) => {}
            // A create racing another may fail otherwise than "exists" on some servers.
            Err(e) if storage.stat(&path).await.is_ok() => {
                tracing::debug!(%digest, error = %shared::error_chain(&e), "claiming a blob fetch failed; it is claimed");
            }
            Err(e) => {
                tracing::warn!(%digest, error = %shared::error_chain(&e), "cannot claim a blob fetch");
                return Turn::Unclaimed;
            }
        }
        // Another replica holds it: wait until the blob is stored, or the claim is gone or stale.
        loop {
            match store.blob_stored(digest).await {
                Ok(true) => return Turn::Stored,
                Ok(false) => {}
                Err(e) => return unusable(digest, &e),
            }
            match storage.stat(&path).await {
                Ok(meta) if SystemTime::now().duration_since(meta.modified).is_ok_and(|age| age > STALE) => {
                    tracing::warn!(%digest, "the replica fetching a blob stopped; fetching it here");
                    return Turn::Unclaimed;
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                // Released: stored (looked at again first) or failed (claim it here).
                Err(e) if e.is_not_found() => match store.blob_stored(digest).await {
                    Ok(true) => return Turn::Stored,
                    Ok(false) => break,
                    Err(e) => return unusable(digest, &e),
                },
                Err(e) => return unusable(digest, &StoreError::from(e)),
            }
        }
    }
}

fn unusable(digest: &Digest, e: &StoreError) -> Turn {
    tracing::warn!(%digest, error = %shared::error_chain(e), "cannot wait for another replica's blob fetch");
    Turn::Unclaimed
}

/// Rewrites the claim every [`REFRESH`] until dropped (abort the task).
pub(super) async fn refresh(storage: std::sync::Arc<dyn Storage>, digest: Digest, me: String) {
    let path = paths::mirror_fetching(&digest);
    loop {
        tokio::time::sleep(REFRESH).await;
        if let Err(e) = storage.put(&path, Bytes::from(me.clone())).await {
            tracing::warn!(%digest, error = %shared::error_chain(&e), "cannot renew a blob fetch's claim");
        }
    }
}

/// Deletes the claim after the fetch (stored or failed).
pub(super) async fn release(storage: &dyn Storage, digest: &Digest) {
    let result: Result<bool, StorageError> = storage.delete(&paths::mirror_fetching(digest)).await;
    if let Err(e) = result {
        tracing::warn!(%digest, error = %shared::error_chain(&e), "cannot release a blob fetch's claim");
    }
}
