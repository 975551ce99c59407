//! What the pull-through cache ([`crate::mirror`]) stores: manifests fetched from an upstream
//! (without a push's reference checks: their blobs are fetched when clients ask for them),
//! when a tag was last checked with the upstream, when a manifest was last pulled (for
//! `evict_after`), and blobs streamed in through the upload path, which checks their digest
//! before anything becomes visible.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use shared::manifest::Manifest;
use shared::{Digest, Hasher, RepoName, Tag};

use super::{Store, StoreError, StoreResult, StoredManifest};
use crate::paths;
use crate::storage::ByteStream;

impl Store {
    /// Stores a manifest fetched from an upstream in `repo` (its bytes, its revision, and
    /// `tag` pointing at it, written last), once its bytes hash to `digest`.
    pub async fn put_fetched_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: &str,
        body: Bytes,
        tag: Option<&Tag>,
    ) -> StoreResult<Arc<StoredManifest>> {
        let mut hasher = Hasher::new(digest.algorithm());
        hasher.update(&body);
        let actual = hasher.finish();
        if &actual != digest {
            return Err(StoreError::DigestMismatch { expected: digest.clone(), actual });
        }
        crate::gc::fence(self.storage.as_ref(), &[digest]).await?;
        self.storage.put_if_absent(&paths::blob_data(digest), body.clone()).await?;
        self.storage
            .put_if_absent(&paths::manifest_revision(repo, digest), Bytes::from(media_type.to_string()))
            .await?;
        if let Some(tag) = tag {
            self.storage.put(&paths::tag(repo, tag), Bytes::from(digest.to_string())).await?;
        }
        Ok(self.cache_put(StoredManifest { digest: digest.clone(), media_type: media_type.to_string(), body }))
    }

    /// The digest a tag points to and when it was last written (fetched or checked with the
    /// upstream); `None` when the repository has no such tag.
    pub async fn tag_link(&self, repo: &RepoName, tag: &Tag) -> StoreResult<Option<(Digest, SystemTime)>> {
        let meta = match self.storage.stat(&paths::tag(repo, tag)).await {
            Ok(meta) => meta,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match self.resolve_tag(repo, tag).await {
            Ok(digest) => Ok(Some((digest, meta.modified))),
            Err(StoreError::ManifestUnknown) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a tag again with the digest it holds, so that it counts as checked now.
    pub async fn touch_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> StoreResult<()> {
        Ok(self.storage.put(&paths::tag(repo, tag), Bytes::from(digest.to_string())).await?)
    }

    /// Records that `manifest` of `repo` was pulled: its revision is written again, so that
    /// its time is that of the last pull (which a mirror's eviction reads), unless it was
    /// written less than `within` ago. Fenced as a push is (the manifest and what it names),
    /// so that a collection deleting the revision is never undone, nor its blobs deleted
    /// from under it; a revision gone meanwhile stays gone.
    pub async fn record_pull(&self, repo: &RepoName, manifest: &StoredManifest, within: Duration) -> StoreResult<()> {
        let path = paths::manifest_revision(repo, &manifest.digest);
        let recent = |t: SystemTime| SystemTime::now().duration_since(t).map_or(true, |age| age < within);
        match self.storage.stat(&path).await {
            Ok(meta) if recent(meta.modified) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let parsed = Manifest::parse(&manifest.body, Some(&manifest.media_type)).ok();
        let named = parsed.iter().flat_map(|m| m.config.iter().chain(&m.layers).chain(&m.manifests));
        let digests: Vec<&Digest> = named.map(|d| &d.digest).chain([&manifest.digest]).collect();
        crate::gc::fence(self.storage.as_ref(), &digests).await?;
        match self.storage.stat(&path).await {
            Ok(_) => Ok(self.storage.put(&path, Bytes::from(manifest.media_type.clone())).await?),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// True when the registry stores blob `digest` (in any repository).
    pub async fn blob_stored(&self, digest: &Digest) -> StoreResult<bool> {
        match self.storage.stat(&paths::blob_data(digest)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `body` as blob `digest` of `repo` through an upload session: written as it
    /// streams, of `len` bytes when known, and visible only once its digest checked out. A
    /// body that fails or does not match leaves nothing behind.
    pub async fn ingest_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: ByteStream,
    ) -> StoreResult<()> {
        let up = self.start_upload(repo, digest.algorithm()).await?;
        let result = self.finish_upload(repo, &up.id, digest, None, len, body).await;
        if result.is_err() {
            // The session may still be there (a body that failed while appending); a session
            // already cleared away is unknown, which is fine.
            let _ = self.cancel_upload(repo, &up.id).await;
        }
        result
    }
}
