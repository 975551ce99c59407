//! What the admin API and the web UI ([`crate::hub`]) show of repositories and tags: a
//! repository's tag count, size and last push; each tag's digest, media type, platforms,
//! compressed size and push time; and deleting a whole repository.
//!
//! Everything is read from storage on each call (listings, the tag links' modification times,
//! the manifests, which the store caches by digest), so replicas on the same storage agree and
//! nothing has to be kept in step. A tag's push time is its link's modification time: every
//! push of the tag rewrites the link.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

use futures_util::future::{join_all, try_join_all};
use shared::manifest::{Descriptor, Manifest};
use shared::{media_type, Digest, Reference, RepoName, Tag};

use super::{Store, StoreError, StoreResult};
use crate::paths;

/// How many manifests are read at once for one page.
const CONCURRENT_READS: usize = 16;

/// A repository as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    /// Its name.
    pub name: String,
    /// How many tags it has.
    pub tags: usize,
    /// The bytes it holds: manifests and distinct blobs ([`Store::usage`]).
    pub bytes: u64,
    /// The newest tag link's modification time; `None` without tags.
    pub last_push: Option<SystemTime>,
}

/// A tag as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag.
    pub tag: String,
    /// The manifest it points to.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// `os/architecture[/variant]` of each image of an index, or of the image (from its
    /// config); empty when unknown.
    pub platforms: Vec<String>,
    /// Compressed size: the config and layers of the image, or of every image of an index
    /// (each distinct blob counted once).
    pub size: u64,
    /// When the tag was last pushed.
    pub pushed: Option<SystemTime>,
}

/// What summarising a repository takes, from two listings: its tags (each link is read for
/// its time) and its manifests (each read once per process for what it references).
#[derive(Debug, Clone)]
pub struct SummaryPlan {
    repo: RepoName,
    tags: Vec<String>,
    revisions: Vec<Digest>,
    unread: usize,
}

impl SummaryPlan {
    /// How many tags the repository has.
    pub fn tags(&self) -> usize {
        self.tags.len()
    }

    /// The storage reads summarising costs: one per tag link and one per manifest not read
    /// yet by this process.
    pub fn cost(&self) -> usize {
        self.tags.len() + self.unread
    }
}

impl Store {
    /// Tag count, size and last push of `repo`.
    pub async fn repo_summary(&self, repo: &RepoName) -> StoreResult<RepoSummary> {
        let plan = self.summary_plan(repo).await?;
        self.summarise(plan).await
    }

    /// Lists what summarising `repo` takes (a listing of its tags and one of its manifests),
    /// so a caller can tell a cheap summary from a dear one before paying for it.
    pub async fn summary_plan(&self, repo: &RepoName) -> StoreResult<SummaryPlan> {
        let tags = self.storage.list(&paths::tags(repo)).await?;
        let revisions = self.revisions(repo).await?;
        let unread = self.unread(&revisions);
        Ok(SummaryPlan { repo: repo.clone(), tags, revisions, unread })
    }

    /// Carries out `plan`: the tag links' times and the usage of the manifests listed.
    pub async fn summarise(&self, plan: SummaryPlan) -> StoreResult<RepoSummary> {
        let repo = &plan.repo;
        let links: Vec<String> =
            plan.tags.iter().filter_map(|t| t.parse::<Tag>().ok()).map(|t| paths::tag(repo, &t)).collect();
        let last_push =
            self.storage.stat_many(&links).await.into_iter().filter_map(|r| r.ok()).map(|m| m.modified).max();
        let bytes = self.usage_of(repo, &plan.revisions).await?.bytes;
        Ok(RepoSummary { name: repo.to_string(), tags: plan.tags.len(), bytes, last_push })
    }

    /// The push time of each of `tags` (`None` for a tag that is gone), in order.
    pub async fn tag_times(&self, repo: &RepoName, tags: &[String]) -> Vec<Option<SystemTime>> {
        let links: Vec<String> = tags
            .iter()
            .map(|t| t.parse::<Tag>().map(|t| paths::tag(repo, &t)).unwrap_or_else(|_| paths::tags(repo) + "/-"))
            .collect();
        self.storage.stat_many(&links).await.into_iter().map(|r| r.ok().map(|m| m.modified)).collect()
    }

    /// What each of `tags` is; tags deleted meanwhile are left out.
    pub async fn tag_infos(&self, repo: &RepoName, tags: &[String]) -> StoreResult<Vec<TagInfo>> {
        let times = self.tag_times(repo, tags).await;
        let mut out = Vec::with_capacity(tags.len());
        let wanted: Vec<(Tag, Option<SystemTime>)> =
            tags.iter().zip(times).filter_map(|(t, at)| Some((t.parse::<Tag>().ok()?, at))).collect();
        for chunk in wanted.chunks(CONCURRENT_READS) {
            let reads = chunk.iter().map(|(tag, at)| self.tag_info(repo, tag, *at));
            for info in join_all(reads).await {
                match info {
                    Ok(info) => out.push(info),
                    // Deleted meanwhile.
                    Err(StoreError::ManifestUnknown) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    async fn tag_info(&self, repo: &RepoName, tag: &Tag, pushed: Option<SystemTime>) -> StoreResult<TagInfo> {
        let m = self.get_manifest(repo, &Reference::Tag(tag.clone())).await?;
        let parsed = Manifest::parse(&m.body, Some(&m.media_type)).ok();
        let mut platforms = Vec::new();
        let mut blobs: Vec<(Digest, u64)> = Vec::new();
        match &parsed {
            Some(p) if p.is_index() => {
                for child in &p.manifests {
                    if let Some(pl) = &child.platform {
                        platforms.push(platform_text(&pl.os, &pl.architecture, pl.variant.as_deref()));
                    }
                    if let Some(f) = self.footprint(repo, &child.digest).await? {
                        blobs.extend(f.blobs.iter().cloned());
                    }
                }
            }
            Some(p) => {
                blobs.extend(p.config.iter().chain(&p.layers).map(|d| (d.digest.clone(), d.size)));
                if let Some(config) = &p.config {
                    platforms.extend(self.config_platform(repo, config).await?);
                }
            }
            None => {}
        }
        blobs.sort();
        blobs.dedup();
        let size = blobs.iter().map(|(_, s)| s).sum();
        Ok(TagInfo {
            tag: tag.to_string(),
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            platforms,
            size,
            pushed,
        })
    }

    /// The bytes of a blob `repo` holds, when it is at most `max` bytes (`None` when bigger).
    pub async fn read_small_blob(&self, repo: &RepoName, digest: &Digest, max: u64) -> StoreResult<Option<Bytes>> {
        if self.blob_size(repo, digest).await? > max {
            return Ok(None);
        }
        match self.storage.read(&paths::blob_data(digest)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Err(StoreError::BlobUnknown(digest.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a repository: its tags, manifests, blob links and referrer entries. The blob
    /// bytes stay until the collector finds nothing refers to them.
    pub async fn delete_repository(&self, repo: &RepoName) -> StoreResult<()> {
        if !self.repo_exists(repo).await? {
            return Err(StoreError::NameUnknown(repo.clone()));
        }
        // Tags first, so that no reader finds a tag whose manifest is gone.
        let links: Vec<String> = self
            .storage
            .list(&paths::tags(repo))
            .await?
            .iter()
            .filter_map(|t| t.parse::<Tag>().ok())
            .map(|t| paths::tag(repo, &t))
            .collect();
        for chunk in links.chunks(CONCURRENT_READS) {
            try_join_all(chunk.iter().map(|link| self.storage.delete(link))).await?;
        }
        self.storage.delete_all(&paths::repo(repo)).await?;
        Ok(())
    }
}

/// The platform each image config names, by the config's digest (`None`: not an image
/// config, or none named).
#[derive(Default)]
pub(super) struct PlatformCache(Mutex<HashMap<Digest, Option<String>>>);

/// Image configs whose platform is remembered at most; the cache is emptied past this.
const MAX_CACHED_PLATFORMS: usize = 100_000;

/// Image configs bigger than this are not read for their platform.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl Store {
    /// `os/architecture[/variant]` of the image config `config` of `repo`.
    async fn config_platform(&self, repo: &RepoName, config: &Descriptor) -> StoreResult<Option<String>> {
        if !matches!(config.media_type.as_str(), media_type::OCI_CONFIG | media_type::DOCKER_CONFIG) {
            return Ok(None);
        }
        if let Some(p) = self.config_platforms.0.lock().unwrap_or_else(|p| p.into_inner()).get(&config.digest) {
            return Ok(p.clone());
        }
        let raw = match self.read_small_blob(repo, &config.digest, MAX_CONFIG_BYTES).await {
            Ok(raw) => raw,
            Err(StoreError::BlobUnknown(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let parsed: Option<serde_json::Value> = raw.and_then(|b| serde_json::from_slice(&b).ok());
        let text = |v: &serde_json::Value, k: &str| {
            v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty()).map(String::from)
        };
        let platform = parsed.and_then(|v| {
            Some(platform_text(&text(&v, "os")?, &text(&v, "architecture")?, text(&v, "variant").as_deref()))
        });
        let mut cache = self.config_platforms.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_PLATFORMS {
            cache.clear();
        }
        cache.insert(config.digest.clone(), platform.clone());
        Ok(platform)
    }
}

/// A platform as shown: `os/architecture[/variant]`.
pub fn platform_text(os: &str, architecture: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{architecture}/{v}"),
        _ => format!("{os}/{architecture}"),
    }
}
