//! The repository policy rules of the configuration: `[[immutable]]`, `[[quota]]` and
//! `[[retention]]` (applied by [`crate::policy`] and [`crate::gc::retention`]).

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};

/// One `[[immutable]]` rule: tags matching `tags` in repositories matching `repositories`
/// cannot be moved to another manifest nor deleted (pushing the same manifest again is
/// allowed). `*` in a pattern matches any run of characters, as in `[[auth.rules]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// Repository patterns (`prod/*`, `*`).
    pub repositories: Vec<String>,
    /// Tag patterns (`v*`, `latest`).
    pub tags: Vec<String>,
}

/// One `[[quota]]` rule: each repository matching `repositories` may hold at most `bytes`
/// bytes of manifests and the blobs they reference (each blob counted once). The first rule
/// that matches a repository applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRule {
    /// Repository patterns (`team-a/*`, `*`).
    pub repositories: Vec<String>,
    /// The limit of each matching repository, in bytes.
    pub bytes: u64,
}

/// One `[[retention]]` rule (as Harbor's tag retention): of the tags of each repository
/// matching `repositories`, the collector keeps those any of `keep_last`, `keep_within` and
/// `keep_tags` keeps, and removes the other tags (their manifests and blobs then go as any
/// untagged content does). The first rule that matches a repository applies; repositories no
/// rule matches keep every tag, and so do tags an `[[immutable]]` rule covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repository patterns (`ci/*`, `*`).
    pub repositories: Vec<String>,
    /// Keep the N most recently pushed tags (pushed: when the tag was last written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// Keep tags pushed within this long before the collection (`30d`, `12h`, `2w`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    /// Always keep tags matching these patterns (`v*`, `latest`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
}

impl Config {
    /// Checks the `[[immutable]]` and `[[quota]]` rules.
    pub(super) fn validate_policies(&self) -> Result<(), ConfigError> {
        let patterns = |p: &[String]| !p.is_empty() && p.iter().all(|p| !p.is_empty());
        for (i, rule) in self.immutable.iter().enumerate() {
            if !patterns(&rule.repositories) || !patterns(&rule.tags) {
                return Err(ConfigError {
                    setting: "immutable",
                    reason: format!("rule {}: repositories and tags must hold non-empty patterns", i + 1),
                });
            }
        }
        for (i, rule) in self.retention.iter().enumerate() {
            let reason = if !patterns(&rule.repositories) {
                Some("repositories must hold non-empty patterns".to_string())
            } else if rule.keep_last.is_none() && rule.keep_within.is_none() && rule.keep_tags.is_empty() {
                Some("needs keep_last, keep_within or keep_tags (a rule keeping nothing would remove every tag)".into())
            } else if rule.keep_last == Some(0) {
                Some("keep_last must be at least 1 (leave it out to keep by the other settings only)".into())
            } else if rule.keep_tags.iter().any(String::is_empty) {
                Some("keep_tags must hold non-empty patterns".into())
            } else {
                let within = rule.keep_within.as_deref().map(shared::duration::parse_duration_days);
                within.and_then(Result::err).map(|e| format!("keep_within: {e}"))
            };
            if let Some(reason) = reason {
                return Err(ConfigError { setting: "retention", reason: format!("rule {}: {reason}", i + 1) });
            }
        }
        for (i, rule) in self.quota.iter().enumerate() {
            if !patterns(&rule.repositories) {
                return Err(ConfigError {
                    setting: "quota",
                    reason: format!("rule {}: repositories must hold non-empty patterns", i + 1),
                });
            }
            if rule.bytes == 0 {
                return Err(ConfigError {
                    setting: "quota",
                    reason: format!("rule {}: bytes must be at least 1", i + 1),
                });
            }
        }
        Ok(())
    }
}
