//! The mark phase (see [`super`]): reads every repository's tags, revisions and links, and
//! works out which revisions are live and which digests live manifests refer to. It writes
//! nothing.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use futures_util::StreamExt;
use shared::manifest::Manifest;
use shared::{Digest, RepoName, Tag};

use super::{Collector, GcError};
use crate::paths;
use crate::storage::Storage;

/// Manifests read at once, in one repository.
const READS_AT_ONCE: usize = 16;
/// Repositories marked at once: their storage requests overlap (S3 round trips, the
/// filesystem's blocking threads).
const REPOS_AT_ONCE: usize = 8;

/// A manifest revision as the mark found it.
#[derive(Debug)]
pub(super) struct Revision {
    pub(super) digest: Digest,
    /// `None` when its modification time could not be read (then it counts as fresh).
    modified: Option<SystemTime>,
    /// `None` when the manifest cannot be read or parsed (then it is kept, unless it is
    /// missing).
    manifest: Option<Manifest>,
    /// The revision names a manifest whose bytes are gone: a link to nothing, which goes
    /// once untagged and older than the grace period (a push whose blob was collected
    /// because it took longer than the grace period can leave one).
    missing: bool,
}

/// What the mark found.
#[derive(Debug, Default)]
pub(super) struct Marked {
    pub(super) repositories: usize,
    pub(super) manifests: usize,
    /// Every digest a live manifest refers to (itself included), in any repository.
    pub(super) referenced: HashSet<Digest>,
    /// Revisions that are not live: repository, digest, and the subject it names.
    pub(super) dead: Vec<(RepoName, Digest, Option<Digest>)>,
    /// Every linked digest, with the repositories linking it.
    pub(super) links: HashMap<Digest, Vec<RepoName>>,
}

/// The digests below a folder laid out as `<alg>/<hex>`.
pub(super) async fn digests_below(storage: &dyn Storage, folder: &str) -> Result<Vec<Digest>, GcError> {
    let mut out = Vec::new();
    for alg in storage.list(folder).await.map_err(GcError::storage("listing digests"))? {
        let names = storage.list(&format!("{folder}/{alg}")).await.map_err(GcError::storage("listing digests"))?;
        out.extend(names.iter().filter_map(|hex| format!("{alg}:{hex}").parse::<Digest>().ok()));
    }
    Ok(out)
}

/// What reading a revision's manifest found.
enum Read {
    /// Its bytes are not stored.
    Missing,
    /// The manifest; `None` when the bytes are not a manifest.
    Manifest(Box<Option<Manifest>>),
}

/// Reads a stored manifest.
async fn read_manifest(storage: &dyn Storage, repo: &RepoName, digest: &Digest) -> Result<Read, GcError> {
    let Some(body) = storage.read_opt(paths::blob_data(digest)).await.map_err(GcError::storage("reading manifests"))?
    else {
        return Ok(Read::Missing);
    };
    if let Ok(m) = Manifest::parse(&body, None) {
        return Ok(Read::Manifest(Box::new(Some(m))));
    }
    // Bodies without a `mediaType` were typed by their push's Content-Type, kept in the revision.
    let media_type = storage
        .read_opt(paths::manifest_revision(repo, digest))
        .await
        .map_err(GcError::storage("reading manifests"))?;
    let media_type = media_type.map(|t| String::from_utf8_lossy(&t).into_owned());
    Ok(Read::Manifest(Box::new(Manifest::parse(&body, media_type.as_deref()).ok())))
}

/// The digests a repository's tags point to, but for the tags in `skip`.
async fn tagged(
    storage: &dyn Storage,
    repo: &RepoName,
    skip: Option<&HashSet<Tag>>,
) -> Result<HashSet<Digest>, GcError> {
    let names = storage.list(&paths::tags(repo)).await.map_err(GcError::storage("listing tags"))?;
    let tags: Vec<Tag> =
        names.into_iter().filter_map(|t| t.parse().ok()).filter(|t| skip.is_none_or(|s| !s.contains(t))).collect();
    let reads: Vec<_> = tags.iter().map(|t| storage.read_opt(paths::tag(repo, t))).collect();
    let raw = futures_util::future::try_join_all(reads).await.map_err(GcError::storage("reading tags"))?;
    Ok(raw.into_iter().flatten().filter_map(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok()).collect())
}

/// A repository's revisions with their times and manifests.
async fn revisions(storage: &dyn Storage, repo: &RepoName) -> Result<Vec<Revision>, GcError> {
    let digests = digests_below(storage, &paths::revisions(repo)).await?;
    let stat_paths: Vec<String> = digests.iter().map(|d| paths::manifest_revision(repo, d)).collect();
    let stats = storage.stat_many(&stat_paths).await;
    let mut manifests: Vec<Read> = Vec::with_capacity(digests.len());
    for chunk in digests.chunks(READS_AT_ONCE) {
        let reads: Vec<_> = chunk.iter().map(|d| read_manifest(storage, repo, d)).collect();
        manifests.extend(futures_util::future::try_join_all(reads).await?);
    }
    Ok(digests
        .into_iter()
        .zip(stats)
        .zip(manifests)
        .map(|((digest, stat), read)| {
            let modified = stat.ok().map(|m| m.modified);
            match read {
                Read::Missing => Revision { digest, modified, manifest: None, missing: true },
                Read::Manifest(manifest) => Revision { digest, modified, manifest: *manifest, missing: false },
            }
        })
        .collect())
}

/// Which of a repository's revisions are live (see the module doc of `gc`).
pub(super) fn live(
    revisions: &[Revision],
    tagged: &HashSet<Digest>,
    cutoff: SystemTime,
    delete_untagged: bool,
) -> HashSet<Digest> {
    let present: HashSet<&Digest> = revisions.iter().map(|r| &r.digest).collect();
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for r in revisions {
        if let Some(subject) = r.manifest.as_ref().and_then(|m| m.subject.as_ref()) {
            referrers.entry(&subject.digest).or_default().push(&r.digest);
        }
    }
    let root = |r: &Revision| {
        let orphan = r.manifest.as_ref().and_then(|m| m.subject.as_ref()).is_some_and(|s| !present.contains(&s.digest));
        tagged.contains(&r.digest)
            || r.modified.is_none_or(|t| t > cutoff)
            || (r.manifest.is_none() && !r.missing)
            || (!delete_untagged && !orphan && !r.missing)
    };
    let by_digest: HashMap<&Digest, &Revision> = revisions.iter().map(|r| (&r.digest, r)).collect();
    let mut live: HashSet<Digest> = HashSet::new();
    let mut queue: Vec<&Digest> = revisions.iter().filter(|r| root(r)).map(|r| &r.digest).collect();
    while let Some(d) = queue.pop() {
        if !live.insert(d.clone()) {
            continue;
        }
        let children = by_digest.get(d).and_then(|r| r.manifest.as_ref()).map(|m| m.manifests.iter());
        queue.extend(children.into_iter().flatten().map(|c| &c.digest).filter(|c| present.contains(c)));
        queue.extend(referrers.get(d).into_iter().flatten().copied());
    }
    live
}

/// What the mark found in one repository.
struct RepoMarked {
    manifests: usize,
    referenced: Vec<Digest>,
    dead: Vec<(RepoName, Digest, Option<Digest>)>,
    links: Vec<Digest>,
}

/// Marks one repository; with `evict`, its untagged revisions are not live once older than
/// that too (a mirror's eviction).
async fn mark_repo(
    c: &Collector,
    repo: &RepoName,
    skip: Option<&HashSet<Tag>>,
    evict: Option<SystemTime>,
    cutoff: SystemTime,
) -> Result<RepoMarked, GcError> {
    let storage = c.storage.as_ref();
    let layers = paths::layers(repo);
    let (tagged, revisions, links) =
        tokio::try_join!(tagged(storage, repo, skip), revisions(storage, repo), digests_below(storage, &layers))?;
    let live = match evict {
        Some(evict) => live(&revisions, &tagged, cutoff.min(evict), true),
        None => live(&revisions, &tagged, cutoff, c.options.delete_untagged),
    };
    let mut out = RepoMarked { manifests: revisions.len(), referenced: Vec::new(), dead: Vec::new(), links };
    for r in revisions {
        if !live.contains(&r.digest) {
            let subject = r.manifest.and_then(|m| m.subject).map(|s| s.digest);
            out.dead.push((repo.clone(), r.digest, subject));
            continue;
        }
        if let Some(m) = &r.manifest {
            let named = m.config.iter().chain(&m.layers).chain(&m.manifests);
            out.referenced.extend(named.map(|d| d.digest.clone()));
        }
        out.referenced.push(r.digest);
    }
    Ok(out)
}

/// Every repository, by name.
pub(super) async fn repositories(c: &Collector) -> Result<Vec<RepoName>, GcError> {
    let store = crate::store::Store::new(c.storage.clone());
    let names = store.repositories().await.map_err(GcError::store("listing repositories"))?;
    // Skipping one would let the sweep take what it refers to.
    names.into_iter().map(|n| n.parse::<RepoName>().map_err(|_| GcError::InvalidRepository(n))).collect()
}

/// Marks every repository of `repos`, not counting the tags in `skip`, [`REPOS_AT_ONCE`] at
/// a time; the repositories in `evict` lose their untagged revisions older than the time given.
pub(super) async fn mark(
    c: &Collector,
    repos: &[RepoName],
    skip: &HashMap<RepoName, HashSet<Tag>>,
    evict: &HashMap<RepoName, SystemTime>,
    cutoff: SystemTime,
) -> Result<Marked, GcError> {
    let mut marked = Marked::default();
    let total = repos.len() as u64;
    c.progress("marking repositories", 0, total);
    // Collected first: a lazy iterator of borrowing closures makes the future not `Send`.
    let each: Vec<_> = repos
        .iter()
        .map(|repo| async move { (repo, mark_repo(c, repo, skip.get(repo), evict.get(repo).copied(), cutoff).await) })
        .collect();
    let mut each = futures_util::stream::iter(each).buffer_unordered(REPOS_AT_ONCE);
    while let Some((repo, found)) = each.next().await {
        let found = found?;
        marked.repositories += 1;
        marked.manifests += found.manifests;
        marked.referenced.extend(found.referenced);
        marked.dead.extend(found.dead);
        for d in found.links {
            marked.links.entry(d).or_default().push(repo.clone());
        }
        c.progress("marking repositories", marked.repositories as u64, total);
    }
    Ok(marked)
}
