//! Manifests, tags and the referrers index (spec.md, "Pushing manifests", "Content
//! discovery", "Content management").
//!
//! A manifest PUT is validated ([`shared::manifest::Manifest::parse`]), every blob and child
//! manifest it names must already be in the repository with the size the descriptor gives,
//! and only then is it written: its bytes as a blob, its revision link, its referrer entry
//! (when it has a `subject`), and last its tag.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::try_join_all;
use shared::manifest::{Descriptor, Manifest};
use shared::{media_type, Algorithm, Digest, Hasher, Reference, RepoName, Tag};

use super::{Store, StoreError, StoreResult, MANIFEST_CACHE_BYTES};
use crate::paths;
use crate::storage::StorageError;

/// A manifest as stored: its bytes exactly as pushed, with their digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// The digest of `body`.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// The bytes.
    pub body: Bytes,
}

/// What the referrers index holds for one referrer: its subject and its descriptor.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ReferrerEntry {
    subject: Digest,
    descriptor: Descriptor,
}

/// One page of a repository's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    /// The tags, in lexical order.
    pub tags: Vec<String>,
    /// True when more tags follow the last one.
    pub more: bool,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest's digest.
    pub digest: Digest,
    /// The digest of its `subject`, if it has one.
    pub subject: Option<Digest>,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Whether a manifest being pushed is already stored.
struct Stored {
    /// Its bytes are stored (in any repository).
    blob: bool,
    /// The repository holds it.
    revision: bool,
}

fn not_found_as(e: StorageError, as_err: StoreError) -> StoreError {
    if e.is_not_found() {
        as_err
    } else {
        e.into()
    }
}

impl Store {
    /// Validates and stores a manifest pushed to `repo` under `reference`, and points
    /// `tags` (the `tag` query parameters of a push) at it too, once it is stored.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        tags: &[Tag],
        content_type: Option<&str>,
        body: Bytes,
    ) -> StoreResult<Pushed> {
        let manifest = Manifest::parse(&body, content_type).map_err(|e| StoreError::ManifestInvalid(e.to_string()))?;
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let mut hasher = Hasher::new(algorithm);
        hasher.update(&body);
        let digest = hasher.finish();
        if let Reference::Digest(expected) = reference {
            if expected != &digest {
                return Err(StoreError::DigestMismatch { expected: expected.clone(), actual: digest });
            }
        }
        // Before anything is checked: see the module doc of `gc`.
        let named = manifest.config.iter().chain(&manifest.layers).chain(&manifest.manifests);
        let named =
            named.filter(|d| !(media_type::is_non_distributable(&d.media_type) && d.urls.is_some())).map(|d| &d.digest);
        crate::gc::fence(self.storage.as_ref(), &named.chain([&digest]).collect::<Vec<_>>()).await?;
        let stored = self.check_references(repo, &manifest, &digest).await?;

        if !stored.blob {
            self.storage.put_if_absent(&paths::blob_data(&digest), body.clone()).await?;
        }
        // Re-pushing a manifest (a new tag for the same image) leaves its revision as it is.
        if !stored.revision {
            let revision = paths::manifest_revision(repo, &digest);
            self.storage.put_if_absent(&revision, Bytes::from(manifest.media_type.clone())).await?;
        }
        if let Some(subject) = &manifest.subject {
            let entry = ReferrerEntry {
                subject: subject.digest.clone(),
                descriptor: Descriptor {
                    media_type: manifest.media_type.clone(),
                    digest: digest.clone(),
                    size: body.len() as u64,
                    artifact_type: manifest.artifact_type.clone(),
                    annotations: manifest.annotations.clone(),
                    platform: None,
                    urls: None,
                },
            };
            let json = serde_json::to_vec(&entry).map_err(|e| StoreError::ManifestInvalid(e.to_string()))?;
            self.storage.put(&paths::referrer(repo, &subject.digest, &digest), Bytes::from(json)).await?;
        }
        let named = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        let link = Bytes::from(digest.to_string());
        let writes = named.into_iter().chain(tags).map(|tag| {
            let (path, link) = (paths::tag(repo, tag), link.clone());
            async move { self.storage.put(&path, link).await }
        });
        try_join_all(writes).await?;
        let (media_type, size) = (manifest.media_type.clone(), body.len() as u64);
        self.cache_put(StoredManifest { digest: digest.clone(), media_type: manifest.media_type, body });
        Ok(Pushed { digest, subject: manifest.subject.map(|s| s.digest), media_type, size })
    }

    /// Every blob a manifest names must be in the repository with the declared size, and
    /// every child manifest of an index must be in the repository. Also says whether the
    /// manifest `digest` itself is already stored, and in `repo`. All of it is one
    /// [`Storage::stat_many`](crate::storage::Storage::stat_many).
    async fn check_references(&self, repo: &RepoName, manifest: &Manifest, digest: &Digest) -> StoreResult<Stored> {
        let blobs: Vec<&Descriptor> = manifest
            .config
            .iter()
            .chain(&manifest.layers)
            .filter(|d| !(media_type::is_non_distributable(&d.media_type) && d.urls.is_some()))
            .collect();
        // For each blob its link and its data; for each child manifest its revision and its
        // data; last the manifest's own data and revision.
        let mut wanted = Vec::with_capacity(2 * (blobs.len() + manifest.manifests.len() + 1));
        for d in &blobs {
            wanted.push(paths::layer_link(repo, &d.digest));
            wanted.push(paths::blob_data(&d.digest));
        }
        for d in &manifest.manifests {
            wanted.push(paths::manifest_revision(repo, &d.digest));
            wanted.push(paths::blob_data(&d.digest));
        }
        wanted.push(paths::blob_data(digest));
        wanted.push(paths::manifest_revision(repo, digest));
        let mut stats = self.storage.stat_many(&wanted).await.into_iter();
        let described = blobs.iter().map(|d| (*d, "blob")).chain(manifest.manifests.iter().map(|d| (d, "manifest")));
        for (d, what) in described {
            let missing = || StoreError::ManifestBlobUnknown(d.digest.clone());
            let (link, data) = (stats.next(), stats.next());
            link.ok_or_else(missing)?.map_err(|e| not_found_as(e, missing()))?;
            let size = data.ok_or_else(missing)?.map_err(|e| not_found_as(e, missing()))?.size;
            if size != d.size {
                return Err(StoreError::ManifestInvalid(format!(
                    "descriptor of {} gives size {}, the {what} has {size} bytes",
                    d.digest, d.size
                )));
            }
        }
        let mut present = || match stats.next() {
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) if e.is_not_found() => Ok(false),
            Some(Err(e)) => Err(StoreError::from(e)),
            None => Ok(false),
        };
        Ok(Stored { blob: present()?, revision: present()? })
    }

    fn cache_get(&self, digest: &Digest) -> Option<Arc<StoredManifest>> {
        self.manifest_cache.lock().unwrap_or_else(|p| p.into_inner()).1.get(digest).cloned()
    }

    pub(super) fn cache_put(&self, m: StoredManifest) -> Arc<StoredManifest> {
        let m = Arc::new(m);
        let mut cache = self.manifest_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 + m.body.len() > MANIFEST_CACHE_BYTES {
            cache.1.clear();
            cache.0 = 0;
        }
        if cache.1.insert(m.digest.clone(), m.clone()).is_none() {
            cache.0 += m.body.len();
        }
        m
    }

    fn cache_evict(&self, digest: &Digest) {
        let mut cache = self.manifest_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = cache.1.remove(digest) {
            cache.0 -= m.body.len();
        }
    }

    /// The digest a tag points to.
    pub async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> StoreResult<Digest> {
        let raw = self
            .storage
            .read(&paths::tag(repo, tag))
            .await
            .map_err(|e| not_found_as(e, StoreError::ManifestUnknown))?;
        std::str::from_utf8(&raw).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| {
            StoreError::Storage(StorageError::Io {
                path: paths::tag(repo, tag),
                source: std::io::Error::other("tag link does not hold a digest"),
            })
        })
    }

    /// Fetches a manifest by tag or digest.
    pub async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> StoreResult<Arc<StoredManifest>> {
        let digest = match reference {
            Reference::Tag(tag) => {
                let digest = self.resolve_tag(repo, tag).await?;
                // A tag is only ever written after its manifest's revision, and deleting the
                // manifest deletes the tag: a cached body is this repository's.
                if let Some(m) = self.cache_get(&digest) {
                    return Ok(m);
                }
                digest
            }
            Reference::Digest(d) => d.clone(),
        };
        let media_type = self
            .storage
            .read(&paths::manifest_revision(repo, &digest))
            .await
            .map_err(|e| not_found_as(e, StoreError::ManifestUnknown))?;
        if let Some(m) = self.cache_get(&digest) {
            return Ok(m);
        }
        let body = self
            .storage
            .read(&paths::blob_data(&digest))
            .await
            .map_err(|e| not_found_as(e, StoreError::ManifestUnknown))?;
        Ok(self.cache_put(StoredManifest {
            digest,
            media_type: String::from_utf8_lossy(&media_type).into_owned(),
            body,
        }))
    }

    /// Deletes a tag, or a manifest by digest together with the tags pointing to it and its
    /// referrer entry.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> StoreResult<()> {
        let digest = match reference {
            Reference::Tag(tag) => {
                return if self.storage.delete(&paths::tag(repo, tag)).await? {
                    Ok(())
                } else {
                    Err(StoreError::ManifestUnknown)
                };
            }
            Reference::Digest(d) => d,
        };
        let manifest = self.get_manifest(repo, reference).await?;
        if let Ok(parsed) = Manifest::parse(&manifest.body, Some(&manifest.media_type)) {
            if let Some(subject) = parsed.subject {
                self.storage.delete(&paths::referrer(repo, &subject.digest, digest)).await?;
            }
        }
        for tag in self.storage.list(&paths::tags(repo)).await? {
            let Ok(tag) = tag.parse::<Tag>() else { continue };
            match self.resolve_tag(repo, &tag).await {
                Ok(d) if &d == digest => {
                    self.storage.delete(&paths::tag(repo, &tag)).await?;
                }
                _ => {}
            }
        }
        self.storage.delete(&paths::manifest_revision(repo, digest)).await?;
        self.cache_evict(digest);
        Ok(())
    }

    /// A page of the repository's tags: up to `n` of them after `last`.
    pub async fn tags(&self, repo: &RepoName, n: Option<usize>, last: Option<&str>) -> StoreResult<TagPage> {
        let all = self.storage.list(&paths::tags(repo)).await?;
        if all.is_empty() && !self.repo_exists(repo).await? {
            return Err(StoreError::NameUnknown(repo.clone()));
        }
        Ok(page(all, n, last))
    }

    /// The descriptors of the manifests in `repo` whose subject is `subject`, optionally only
    /// those of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> StoreResult<Vec<Descriptor>> {
        let folder = paths::referrers(repo, subject);
        let names = self.storage.list(&folder).await?;
        let reads = names.iter().map(|name| self.storage.read_opt(format!("{folder}/{name}")));
        let mut out = Vec::new();
        for raw in try_join_all(reads).await?.into_iter().flatten() {
            let Ok(entry) = serde_json::from_slice::<ReferrerEntry>(&raw) else {
                tracing::warn!(folder, "unreadable referrer entry skipped");
                continue;
            };
            let d = entry.descriptor;
            if &entry.subject == subject && artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Cuts a sorted list into the page after `last` of at most `n` entries.
pub(crate) fn page(mut all: Vec<String>, n: Option<usize>, last: Option<&str>) -> TagPage {
    let start = last.map_or(0, |last| all.partition_point(|t| t.as_str() <= last));
    all.drain(..start);
    let more = n.is_some_and(|n| all.len() > n);
    if let Some(n) = n {
        all.truncate(n);
    }
    TagPage { tags: all, more }
}

impl dyn crate::storage::Storage {
    /// Reads an object, `None` when it is gone (it may be deleted between list and read).
    pub(crate) async fn read_opt(&self, path: String) -> Result<Option<Bytes>, StorageError> {
        match self.read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(page(all.clone(), Some(2), None), TagPage { tags: vec!["a".into(), "b".into()], more: true });
        assert_eq!(page(all.clone(), Some(2), Some("b")), TagPage { tags: vec!["c".into(), "d".into()], more: false });
        assert_eq!(page(all.clone(), None, Some("bb")).tags, vec!["c".to_string(), "d".into()]);
        assert_eq!(page(all.clone(), Some(0), None), TagPage { tags: vec![], more: true });
        assert!(page(all, Some(10), Some("z")).tags.is_empty());
    }
}
