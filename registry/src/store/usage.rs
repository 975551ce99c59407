//! How many bytes a repository holds, for `[[quota]]` (see [`crate::policy`]): its
//! manifests and the distinct blobs (configs, layers) they reference, each counted once.
//!
//! The usage is computed from storage on every call (one listing of the repository's
//! revisions), so several replicas on the same storage agree and a deletion counts at once.
//! What each manifest references is content-addressed and never changes, so it is kept in
//! memory by manifest digest and a manifest's bytes are read and parsed only the first time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use shared::manifest::{Descriptor, Manifest};
use shared::{media_type, Digest, Reference, RepoName};

use super::{Store, StoreError, StoreResult};
use crate::paths;

/// Manifests whose references are remembered at most; the cache is emptied past this.
const MAX_CACHED_MANIFESTS: usize = 100_000;

/// What one manifest adds to its repository: its own bytes and the blobs it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// The manifest's digest.
    pub digest: Digest,
    /// The size of the manifest itself.
    pub size: u64,
    /// The stored blobs it references, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
}

impl Footprint {
    /// The footprint of a parsed manifest whose bytes have `digest` and `size`.
    pub fn of(manifest: &Manifest, digest: Digest, size: u64) -> Footprint {
        let stored = |d: &&Descriptor| !(media_type::is_non_distributable(&d.media_type) && d.urls.is_some());
        let blobs = manifest.config.iter().chain(&manifest.layers).filter(stored);
        Footprint { digest, size, blobs: blobs.map(|d| (d.digest.clone(), d.size)).collect() }
    }
}

/// The footprints of manifests already read, by digest.
#[derive(Default)]
pub(super) struct FootprintCache(Mutex<HashMap<Digest, Arc<Footprint>>>);

impl FootprintCache {
    fn get(&self, digest: &Digest) -> Option<Arc<Footprint>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(digest).cloned()
    }

    fn put(&self, f: Footprint) -> Arc<Footprint> {
        let f = Arc::new(f);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED_MANIFESTS {
            map.clear();
        }
        map.insert(f.digest.clone(), f.clone());
        f
    }
}

/// The bytes a repository holds, and what they are made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Total bytes: manifests plus distinct blobs.
    pub bytes: u64,
    /// The digests counted (manifests and blobs).
    counted: HashSet<Digest>,
}

impl Usage {
    /// The bytes `f` would add: its manifest and the blobs not counted yet.
    pub fn added_by(&self, f: &Footprint) -> u64 {
        let mut seen = HashSet::new();
        std::iter::once((&f.digest, f.size))
            .chain(f.blobs.iter().map(|(d, s)| (d, *s)))
            .filter(|(d, _)| !self.counted.contains(*d) && seen.insert(*d))
            .map(|(_, s)| s)
            .sum()
    }

    fn add(&mut self, f: &Footprint) {
        self.bytes += self.added_by(f);
        self.counted.insert(f.digest.clone());
        self.counted.extend(f.blobs.iter().map(|(d, _)| d.clone()));
    }
}

impl Store {
    /// What `repo` holds now, read from storage.
    pub async fn usage(&self, repo: &RepoName) -> StoreResult<Usage> {
        let revisions = self.revisions(repo).await?;
        self.usage_of(repo, &revisions).await
    }

    /// What the manifests `revisions` of `repo` hold (each read once per process, then kept
    /// by digest).
    pub(crate) async fn usage_of(&self, repo: &RepoName, revisions: &[Digest]) -> StoreResult<Usage> {
        let mut usage = Usage::default();
        for digest in revisions {
            if let Some(footprint) = self.footprint(repo, digest).await? {
                usage.add(&footprint);
            }
        }
        Ok(usage)
    }

    /// What the manifest `digest` of `repo` references; `None` when it is gone or cannot be
    /// parsed.
    pub(crate) async fn footprint(&self, repo: &RepoName, digest: &Digest) -> StoreResult<Option<Arc<Footprint>>> {
        if let Some(f) = self.footprints.get(digest) {
            return Ok(Some(f));
        }
        match self.get_manifest(repo, &Reference::Digest(digest.clone())).await {
            Ok(m) => {
                let Ok(parsed) = Manifest::parse(&m.body, Some(&m.media_type)) else {
                    tracing::warn!(repo = %repo, digest = %digest, "unparsable manifest left out of the usage");
                    return Ok(None);
                };
                Ok(Some(self.footprints.put(Footprint::of(&parsed, digest.clone(), m.body.len() as u64))))
            }
            // Deleted between the listing and the read.
            Err(StoreError::ManifestUnknown) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How many of `revisions` have not been read yet (reading them is what makes a first
    /// usage of a big repository slow).
    pub(crate) fn unread(&self, revisions: &[Digest]) -> usize {
        let cache = self.footprints.0.lock().unwrap_or_else(|p| p.into_inner());
        revisions.iter().filter(|d| !cache.contains_key(*d)).count()
    }

    /// The digests of the manifests `repo` holds.
    pub(crate) async fn revisions(&self, repo: &RepoName) -> StoreResult<Vec<Digest>> {
        let folder = paths::revisions(repo);
        let mut out = Vec::new();
        for algorithm in self.storage.list(&folder).await? {
            for hex in self.storage.list(&format!("{folder}/{algorithm}")).await? {
                match format!("{algorithm}:{hex}").parse() {
                    Ok(d) => out.push(d),
                    Err(_) => tracing::warn!(folder, algorithm, hex, "stray entry among revisions skipped"),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()
    }

    #[test]
    fn shared_blobs_count_once() {
        let a = Footprint { digest: digest('a'), size: 10, blobs: vec![(digest('c'), 100), (digest('1'), 1000)] };
        let b = Footprint { digest: digest('b'), size: 20, blobs: vec![(digest('c'), 100), (digest('2'), 7)] };
        let mut usage = Usage::default();
        assert_eq!(usage.added_by(&a), 1110);
        usage.add(&a);
        assert_eq!(usage.added_by(&a), 0);
        assert_eq!(usage.added_by(&b), 27);
        usage.add(&b);
        assert_eq!(usage.bytes, 1137);
        let twice = Footprint { digest: digest('d'), size: 1, blobs: vec![(digest('3'), 5), (digest('3'), 5)] };
        assert_eq!(usage.added_by(&twice), 6, "a blob named twice counts once");
    }
}
