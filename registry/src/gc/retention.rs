//! Tag retention (`[[retention]]`, as Harbor's tag retention), the collection's first step:
//! of the tags of each repository a rule matches, those no keep setting keeps are removed;
//! their manifests and blobs then go by the usual mark and sweep, as any untagged content
//! (with `delete_untagged`, once older than the grace period).
//!
//! A tag's push time is when its link was last written (its modification time): a tag PUT
//! rewrites the link every time, so the time is that of the last push, by any replica.
//!
//! The first rule whose repository patterns match applies. It keeps a tag that is among the
//! `keep_last` most recently pushed, or was pushed within `keep_within` of the run's start,
//! or matches a `keep_tags` pattern; a tag an `[[immutable]]` rule covers is always kept.
//!
//! A mirror's eviction (`evict_after` of a `[[mirror]]`, see [`Eviction`]) comes in the same
//! step: in the repositories under the mirror's host, a tag goes when the manifest it points
//! to was not pulled within the age (a pull rewrites the manifest's revision, so its time is
//! that of the last pull), and the mark then treats the repository's manifests as with
//! `delete_untagged`, with the age as their grace period ([`CompiledRules::eviction`]). A
//! pull racing the eviction at worst makes the next pull a miss: the mirror fetches again.
//!
//! A push racing the removal: the tags to remove are chosen from one read of every tag's
//! time and target; just before each removal the tag is read again, and it stays if it moved
//! or was pushed again since. (Between that read and the removal a push can still land: the
//! window is one storage request long, and the push's manifest stays, untagged, for the
//! next pushes or the grace period.)

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use shared::glob::{Glob, GlobError};
use shared::{Digest, RepoName, Tag};

use super::{Collector, GcError, Point, Removed, Report};
use crate::config::{ImmutableRule, RetentionRule};
use crate::paths;
use crate::policy::Policies;
use crate::storage::Storage;

/// The rules retention applies, as configured (compiled when a run starts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The `[[retention]]` rules.
    pub retention: Vec<RetentionRule>,
    /// The `[[immutable]]` rules: the tags they cover are never removed.
    pub immutable: Vec<ImmutableRule>,
    /// The mirrors that evict what was not pulled for a while.
    pub evict: Vec<Eviction>,
}

/// A mirror that evicts (`evict_after` of a `[[mirror]]`): in the repositories under
/// `host/`, manifests not pulled within `after` go, with the tags pointing to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// The mirror's host, the first component of its repositories (`docker.io`).
    pub host: String,
    /// The age, as configured (`30d`).
    pub after: String,
}

/// An [`Eviction`], its age parsed.
pub(super) struct Evicting {
    host: String,
    pub(super) after: Duration,
    described: String,
}

/// Why the rules cannot be used (checked at start-up by [`crate::Config::validate`]).
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A pattern does not compile.
    #[error(transparent)]
    Glob(#[from] GlobError),
    /// A `keep_within` is not a duration.
    #[error(transparent)]
    Duration(#[from] shared::duration::DurationError),
}

/// One compiled `[[retention]]` rule.
struct Compiled {
    repositories: Vec<Glob>,
    keep_last: Option<usize>,
    keep_within: Option<Duration>,
    keep_tags: Vec<Glob>,
    /// The rule as the report names it.
    described: String,
}

/// The compiled rules of a run.
pub(super) struct CompiledRules {
    rules: Vec<Compiled>,
    immutable: Policies,
    evict: Vec<Evicting>,
}

impl CompiledRules {
    /// How long `repo`'s manifests are kept unpulled, when it belongs to a mirror that
    /// evicts.
    pub(super) fn eviction(&self, repo: &RepoName) -> Option<&Evicting> {
        let (first, _) = repo.as_str().split_once('/')?;
        self.evict.iter().find(|e| e.host == first)
    }
}

impl Rules {
    /// Compiles the rules.
    pub(super) fn compile(&self) -> Result<CompiledRules, RulesError> {
        let globs = |p: &[String]| p.iter().map(|p| Glob::star(p)).collect::<Result<Vec<_>, _>>();
        let mut rules = Vec::new();
        for (i, r) in self.retention.iter().enumerate() {
            let mut keeps = Vec::new();
            if let Some(n) = r.keep_last {
                keeps.push(format!("keep_last {n}"));
            }
            if let Some(w) = &r.keep_within {
                keeps.push(format!("keep_within {w}"));
            }
            if !r.keep_tags.is_empty() {
                keeps.push(format!("keep_tags {:?}", r.keep_tags));
            }
            rules.push(Compiled {
                repositories: globs(&r.repositories)?,
                keep_last: r.keep_last,
                keep_within: r.keep_within.as_deref().map(shared::duration::parse_duration_days).transpose()?,
                keep_tags: globs(&r.keep_tags)?,
                described: format!("[[retention]] rule {}: {}", i + 1, keeps.join(", ")),
            });
        }
        let mut evict = Vec::new();
        for e in &self.evict {
            evict.push(Evicting {
                host: e.host.clone(),
                after: shared::duration::parse_duration_days(&e.after)?,
                described: format!("[[mirror]] {}: evict_after {}", e.host, e.after),
            });
        }
        Ok(CompiledRules { rules, immutable: Policies::from_rules(&self.immutable, &[])?, evict })
    }
}

/// A tag as retention read it.
#[derive(Debug, Clone)]
struct Seen {
    tag: Tag,
    digest: Digest,
    pushed: SystemTime,
}

/// A tag retention removes (or, dry, would remove), and the rule that did not keep it.
#[derive(Debug, Clone)]
pub(super) struct Expired {
    repo: RepoName,
    seen: Seen,
    rule: String,
}

/// The tags of a repository that no keep setting of `rule` keeps, given their push times.
fn not_kept<'a>(
    rule: &Compiled,
    immutable: &Policies,
    repo: &RepoName,
    tags: &'a [Seen],
    now: SystemTime,
) -> Vec<&'a Seen> {
    let mut newest: Vec<&Seen> = tags.iter().collect();
    // Most recent first; equal times (coarse clocks) by name, so a run is repeatable.
    newest.sort_by(|a, b| b.pushed.cmp(&a.pushed).then_with(|| a.tag.as_str().cmp(b.tag.as_str())));
    let recent: HashSet<&str> = newest.iter().take(rule.keep_last.unwrap_or(0)).map(|s| s.tag.as_str()).collect();
    let within = |s: &Seen| rule.keep_within.is_some_and(|w| now.duration_since(s.pushed).map_or(true, |age| age <= w));
    newest
        .into_iter()
        .filter(|s| {
            !(recent.contains(s.tag.as_str())
                || within(s)
                || rule.keep_tags.iter().any(|g| g.is_match(s.tag.as_str()))
                || immutable.immutable_rule(repo, &s.tag).is_some())
        })
        .collect()
}

/// Every tag of a repository with its target and push time; tags that vanish or do not hold
/// a digest are left out (nothing is removed on their account).
async fn read_tags(storage: &dyn Storage, repo: &RepoName) -> Result<Vec<Seen>, GcError> {
    let names = storage.list(&paths::tags(repo)).await.map_err(GcError::storage("listing tags"))?;
    let tags: Vec<Tag> = names.into_iter().filter_map(|t| t.parse().ok()).collect();
    let stat_paths: Vec<String> = tags.iter().map(|t| paths::tag(repo, t)).collect();
    let stats = storage.stat_many(&stat_paths).await;
    let mut out = Vec::new();
    for (tag, stat) in tags.into_iter().zip(stats) {
        let pushed = match stat {
            Ok(meta) => meta.modified,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(GcError::Storage { step: "reading tags", source: e }),
        };
        let raw = storage.read_opt(paths::tag(repo, &tag)).await.map_err(GcError::storage("reading tags"))?;
        let Some(digest) = raw.and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok()) else { continue };
        out.push(Seen { tag, digest, pushed });
    }
    Ok(out)
}

/// The tags the rules do not keep, in every repository a rule matches.
pub(super) async fn expired(
    c: &Collector,
    rules: &CompiledRules,
    repos: &[RepoName],
    now: SystemTime,
) -> Result<Vec<Expired>, GcError> {
    let mut out = Vec::new();
    if rules.rules.is_empty() && rules.evict.is_empty() {
        return Ok(out);
    }
    for (i, repo) in repos.iter().enumerate() {
        c.progress("applying retention", i as u64, repos.len() as u64);
        let rule = rules.rules.iter().find(|r| r.repositories.iter().any(|g| g.is_match(repo.as_str())));
        let eviction = rules.eviction(repo);
        if rule.is_none() && eviction.is_none() {
            continue;
        }
        let tags = read_tags(c.storage.as_ref(), repo).await?;
        let mut evicted = HashSet::new();
        if let Some(e) = eviction {
            for s in unpulled(c.storage.as_ref(), repo, &tags, now, e.after).await? {
                evicted.insert(s.tag.clone());
                out.push(Expired { repo: repo.clone(), seen: s.clone(), rule: e.described.clone() });
            }
        }
        if let Some(rule) = rule {
            for s in not_kept(rule, &rules.immutable, repo, &tags, now) {
                if !evicted.contains(&s.tag) {
                    out.push(Expired { repo: repo.clone(), seen: s.clone(), rule: rule.described.clone() });
                }
            }
        }
    }
    Ok(out)
}

/// The tags of a mirrored repository that were not pulled within `after`: neither the tag
/// (written when fetched or checked with the upstream) nor the manifest it points to
/// (rewritten when pulled) is younger.
async fn unpulled<'a>(
    storage: &dyn Storage,
    repo: &RepoName,
    tags: &'a [Seen],
    now: SystemTime,
    after: Duration,
) -> Result<Vec<&'a Seen>, GcError> {
    let stat_paths: Vec<String> = tags.iter().map(|s| paths::manifest_revision(repo, &s.digest)).collect();
    let stats = storage.stat_many(&stat_paths).await;
    let old = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age > after);
    let mut out = Vec::new();
    for (s, stat) in tags.iter().zip(stats) {
        let pulled = match stat {
            Ok(meta) => meta.modified.max(s.pushed),
            Err(e) if e.is_not_found() => s.pushed,
            Err(e) => return Err(GcError::Storage { step: "reading manifest revisions", source: e }),
        };
        if old(pulled) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Removes the expired tags (unless dry), each only if it did not move since it was read;
/// records them in `report`. Returns, by repository, the tags the mark must not count.
pub(super) async fn remove(
    c: &Collector,
    expired: Vec<Expired>,
    report: &mut Report,
) -> Result<HashMap<RepoName, HashSet<Tag>>, GcError> {
    c.hook(Point::Retained).await;
    let mut gone: HashMap<RepoName, HashSet<Tag>> = HashMap::new();
    let storage = c.storage.as_ref();
    for e in expired {
        let path = paths::tag(&e.repo, &e.seen.tag);
        if !c.options.dry_run {
            if !c.may_delete() {
                return Err(GcError::LeaseLost);
            }
            let now = storage.stat(&path).await;
            let raw = storage.read_opt(path.clone()).await.map_err(GcError::storage("reading tags"))?;
            let target = raw.and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<Digest>().ok());
            let unmoved = now.is_ok_and(|m| m.modified == e.seen.pushed) && target.as_ref() == Some(&e.seen.digest);
            if !unmoved {
                report.kept_fresh += 1;
                continue;
            }
            storage.delete(&path).await.map_err(GcError::storage("removing a tag"))?;
        }
        gone.entry(e.repo.clone()).or_default().insert(e.seen.tag.clone());
        report.removed.push(Removed::Tag { repo: e.repo, tag: e.seen.tag, digest: e.seen.digest, rule: e.rule });
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(tag: &str, age_secs: u64, now: SystemTime) -> Seen {
        Seen {
            tag: tag.parse().unwrap(),
            digest: Digest::sha256_of(tag.as_bytes()),
            pushed: now - Duration::from_secs(age_secs),
        }
    }

    fn rule(keep_last: Option<usize>, keep_within: Option<&str>, keep_tags: &[&str]) -> Rules {
        Rules {
            retention: vec![RetentionRule {
                repositories: vec!["ci/*".into()],
                keep_last,
                keep_within: keep_within.map(str::to_string),
                keep_tags: keep_tags.iter().map(|s| s.to_string()).collect(),
            }],
            immutable: vec![ImmutableRule { repositories: vec!["ci/*".into()], tags: vec!["frozen-*".into()] }],
            evict: Vec::new(),
        }
    }

    fn removed(rules: &Rules, tags: &[Seen], now: SystemTime) -> Vec<String> {
        let compiled = rules.compile().unwrap();
        let repo: RepoName = "ci/app".parse().unwrap();
        let mut out: Vec<String> = not_kept(&compiled.rules[0], &compiled.immutable, &repo, tags, now)
            .iter()
            .map(|s| s.tag.to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn each_keep_setting_keeps_its_tags_and_the_rest_go() {
        let now = SystemTime::now();
        let tags = [
            seen("a", 500, now),
            seen("b", 400, now),
            seen("v1", 300, now),
            seen("c", 200, now),
            seen("frozen-1", 900, now),
        ];
        assert_eq!(removed(&rule(Some(2), None, &[]), &tags, now), ["a", "b"]);
        assert_eq!(removed(&rule(Some(2), None, &["v*"]), &tags, now), ["a", "b"]);
        assert_eq!(removed(&rule(Some(1), None, &["v*"]), &tags, now), ["a", "b"]);
        assert_eq!(removed(&rule(None, Some("7m"), &[]), &tags, now), ["a"]);
        assert_eq!(removed(&rule(None, None, &["*"]), &tags, now), Vec::<String>::new());
        assert_eq!(removed(&rule(None, None, &["nothing"]), &tags, now), ["a", "b", "c", "v1"]);
    }

    #[test]
    fn equal_push_times_are_ordered_by_name() {
        let now = SystemTime::now();
        let tags = [seen("x", 10, now), seen("y", 10, now), seen("z", 10, now)];
        assert_eq!(removed(&rule(Some(1), None, &[]), &tags, now), ["y", "z"]);
    }
}
