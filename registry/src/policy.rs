//! Repository policies checked before a manifest is written or deleted: tag immutability
//! (`[[immutable]]`) and repository quotas (`[[quota]]`).
//!
//! The manifest handlers ([`crate::api`]) call these checks; a refusal is `DENIED` (403) with a
//! message that names the rule or gives the numbers, because docker and skopeo print an
//! error's `message` and nothing else. Everything is read from storage at the time of the
//! request, so replicas sharing storage enforce the same state. Patterns are compiled once,
//! at start-up, with [`shared::glob::Glob::star`], as those of `[[auth.rules]]`.
//!
//! A check and the write it guards are not one atomic step: two pushes racing past a quota
//! check may both land.

use bytes::Bytes;
use shared::manifest::Manifest;
use shared::{Algorithm, Digest, Hasher, Reference, RepoName, Tag};

use shared::glob::{Glob, GlobError};

use crate::config::{Config, ImmutableRule, QuotaRule};
use crate::error::{ApiError, Code};
use crate::store::{Footprint, Store, StoreError};

/// Why a policy refuses a request; each becomes `DENIED` with this text as its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A push would move an immutable tag to another manifest.
    #[error("tag {tag} of {repo} is immutable ({rule}): it points to {current} and cannot be moved to {pushed}")]
    TagMoved {
        /// The repository.
        repo: String,
        /// The tag.
        tag: String,
        /// The rule, described.
        rule: String,
        /// The digest the tag points to.
        current: Digest,
        /// The digest pushed.
        pushed: Digest,
    },
    /// A tag deletion of an immutable tag.
    #[error("tag {tag} of {repo} is immutable ({rule}) and cannot be deleted")]
    TagDeleted {
        /// The repository.
        repo: String,
        /// The tag.
        tag: String,
        /// The rule, described.
        rule: String,
    },
    /// A manifest deletion while an immutable tag points to the manifest.
    #[error("manifest {digest} of {repo} cannot be deleted: immutable tag {tag} points to it ({rule})")]
    ManifestHeld {
        /// The repository.
        repo: String,
        /// The manifest.
        digest: Digest,
        /// The immutable tag pointing to it.
        tag: String,
        /// The rule, described.
        rule: String,
    },
    /// A push would take the repository over its quota.
    #[error("quota of {limit} bytes for repository {repo} would be exceeded: {used} used + {added} new")]
    QuotaExceeded {
        /// The repository.
        repo: String,
        /// Its quota.
        limit: u64,
        /// Bytes it holds.
        used: u64,
        /// Bytes the push adds.
        added: u64,
    },
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::new(Code::Denied).message(&r)
    }
}

/// Why a check could not be made, or its refusal.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy refuses the request.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Reading the repository's state failed.
    #[error("policy check of {repo}: {source}")]
    Store {
        /// The repository.
        repo: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Refused(r) => r.into(),
            PolicyError::Store { source, .. } => source.into(),
        }
    }
}

/// The result of a policy check.
pub type PolicyResult = Result<(), PolicyError>;

/// One compiled `[[immutable]]` rule.
struct Immutable {
    repositories: Vec<Glob>,
    tags: Vec<Glob>,
    /// The rule as messages name it.
    described: String,
}

/// The `[[immutable]]` and `[[quota]]` rules of a configuration, compiled.
#[derive(Default)]
pub struct Policies {
    immutable: Vec<Immutable>,
    quota: Vec<(Vec<Glob>, u64)>,
}

fn any_match(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|g| g.is_match(text))
}

impl Policies {
    /// Compiles the rules of `config`.
    pub fn new(config: &Config) -> Result<Policies, GlobError> {
        Policies::from_rules(&config.immutable, &config.quota)
    }

    /// Compiles `[[immutable]]` and `[[quota]]` rules.
    pub fn from_rules(immutable: &[ImmutableRule], quota: &[QuotaRule]) -> Result<Policies, GlobError> {
        let compile = |patterns: &[String]| patterns.iter().map(|p| Glob::star(p)).collect::<Result<Vec<_>, _>>();
        let mut out = Policies::default();
        for (i, rule) in immutable.iter().enumerate() {
            out.immutable.push(Immutable {
                repositories: compile(&rule.repositories)?,
                tags: compile(&rule.tags)?,
                described: format!(
                    "[[immutable]] rule {}: repositories {:?}, tags {:?}",
                    i + 1,
                    rule.repositories,
                    rule.tags
                ),
            });
        }
        for rule in quota {
            out.quota.push((compile(&rule.repositories)?, rule.bytes));
        }
        Ok(out)
    }

    /// The first `[[immutable]]` rule covering `tag` of `repo`, described for a message.
    pub(crate) fn immutable_rule(&self, repo: &RepoName, tag: &Tag) -> Option<String> {
        let covers = |r: &&Immutable| any_match(&r.repositories, repo.as_str()) && any_match(&r.tags, tag.as_str());
        self.immutable.iter().find(covers).map(|r| r.described.clone())
    }

    /// Whether any `[[immutable]]` rule covers tags of `repo`.
    fn guards(&self, repo: &RepoName) -> bool {
        self.immutable.iter().any(|r| any_match(&r.repositories, repo.as_str()))
    }

    /// The quota of `repo`: that of the first `[[quota]]` rule matching it.
    pub fn quota(&self, repo: &RepoName) -> Option<u64> {
        self.quota.iter().find(|(globs, _)| any_match(globs, repo.as_str())).map(|(_, bytes)| *bytes)
    }
}

/// The digest a push of `body` under `reference` will store it as.
fn pushed_digest(reference: &Reference, body: &Bytes) -> Digest {
    let algorithm = match reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let mut hasher = Hasher::new(algorithm);
    hasher.update(body);
    hasher.finish()
}

/// The checks of a manifest push of `body` to `repo` under `reference`, also pointing `tags`
/// at it: no immutable tag may move, and the repository must stay within its quota. An
/// unparsable manifest passes: the store refuses it with the right error.
pub async fn check_push(
    store: &Store,
    policies: &Policies,
    repo: &RepoName,
    reference: &Reference,
    tags: &[Tag],
    content_type: Option<&str>,
    body: &Bytes,
) -> PolicyResult {
    let named = match reference {
        Reference::Tag(t) => Some(t),
        Reference::Digest(_) => None,
    };
    let guarded: Vec<(&Tag, String)> =
        named.into_iter().chain(tags).filter_map(|t| Some((t, policies.immutable_rule(repo, t)?))).collect();
    let limit = policies.quota(repo);
    if guarded.is_empty() && limit.is_none() {
        return Ok(());
    }
    let store_err = |source| PolicyError::Store { repo: repo.to_string(), source };
    let pushed = pushed_digest(reference, body);
    for (tag, rule) in guarded {
        match store.resolve_tag(repo, tag).await {
            Ok(current) if current != pushed => {
                let (repo, tag) = (repo.to_string(), tag.to_string());
                return Err(Refusal::TagMoved { repo, tag, rule, current, pushed }.into());
            }
            Ok(_) | Err(StoreError::ManifestUnknown) => {}
            Err(e) => return Err(store_err(e)),
        }
    }
    let Some(limit) = limit else { return Ok(()) };
    let Ok(manifest) = Manifest::parse(body, content_type) else { return Ok(()) };
    let footprint = Footprint::of(&manifest, pushed, body.len() as u64);
    let usage = store.usage(repo).await.map_err(store_err)?;
    let added = usage.added_by(&footprint);
    if added > 0 && usage.bytes + added > limit {
        return Err(Refusal::QuotaExceeded { repo: repo.to_string(), limit, used: usage.bytes, added }.into());
    }
    Ok(())
}

/// The checks of a `DELETE` of `reference` in `repo`: an immutable tag cannot be deleted,
/// nor a manifest an immutable tag points to.
pub async fn check_delete(store: &Store, policies: &Policies, repo: &RepoName, reference: &Reference) -> PolicyResult {
    let store_err = |source| PolicyError::Store { repo: repo.to_string(), source };
    match reference {
        Reference::Tag(tag) => {
            let Some(rule) = policies.immutable_rule(repo, tag) else { return Ok(()) };
            match store.resolve_tag(repo, tag).await {
                Ok(_) => Err(Refusal::TagDeleted { repo: repo.to_string(), tag: tag.to_string(), rule }.into()),
                Err(StoreError::ManifestUnknown) => Ok(()),
                Err(e) => Err(store_err(e)),
            }
        }
        Reference::Digest(digest) => {
            if !policies.guards(repo) {
                return Ok(());
            }
            let all = match store.tags(repo, None, None).await {
                Ok(page) => page.tags,
                Err(StoreError::NameUnknown(_)) => return Ok(()),
                Err(e) => return Err(store_err(e)),
            };
            for tag in all.iter().filter_map(|t| t.parse::<Tag>().ok()) {
                let Some(rule) = policies.immutable_rule(repo, &tag) else { continue };
                match store.resolve_tag(repo, &tag).await {
                    Ok(d) if &d == digest => {
                        let (repo, digest, tag) = (repo.to_string(), digest.clone(), tag.to_string());
                        return Err(Refusal::ManifestHeld { repo, digest, tag, rule }.into());
                    }
                    Ok(_) | Err(StoreError::ManifestUnknown) => {}
                    Err(e) => return Err(store_err(e)),
                }
            }
            Ok(())
        }
    }
}
