//! The registry's configuration: one serde struct whose defaults are what `berth serve` runs
//! with when given nothing.
//!
//! The binary fills it from the TOML file, then `BERTH_*` variables, then flags; this crate
//! never reads the environment. [`Config::validate`] runs at start-up so a bad setting stops
//! the server with a message instead of failing a request later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod policies;

pub use crate::mirror::config::MirrorConfig;
pub use crate::webhooks::{EventKind, WebhookConfig};
pub use policies::{ImmutableRule, QuotaRule, RetentionRule};

/// Everything `berth serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:5000`.
    pub addr: SocketAddr,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a `tracing` filter
    /// directive). Default `info`.
    pub log_level: String,
    /// Where content is stored.
    pub storage: StorageConfig,
    /// Limits on what clients may send.
    pub limits: Limits,
    /// Upload session housekeeping.
    pub uploads: Uploads,
    /// Garbage collection.
    pub gc: GcConfig,
    /// Access control: accounts, tokens and permissions. Without it every request is allowed,
    /// anonymously.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// HTTPS. Without it the server speaks plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Tags that cannot be moved to another manifest nor deleted (`[[immutable]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub immutable: Vec<ImmutableRule>,
    /// Storage quotas of repositories (`[[quota]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quota: Vec<QuotaRule>,
    /// Which tags the collector keeps (`[[retention]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<RetentionRule>,
    /// Receivers told of pushes, deletions and pulls (`[[webhooks]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
    /// The web UI at `/` (`[ui]`).
    pub ui: UiConfig,
    /// Upstream registries this one mirrors (`[[mirror]]`, see [`crate::mirror`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirror: Vec<MirrorConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            log_level: "info".into(),
            storage: StorageConfig::default(),
            limits: Limits::default(),
            uploads: Uploads::default(),
            gc: GcConfig::default(),
            auth: None,
            tls: None,
            immutable: Vec::new(),
            quota: Vec::new(),
            retention: Vec::new(),
            webhooks: Vec::new(),
            ui: UiConfig::default(),
            mirror: Vec::new(),
        }
    }
}

/// Storage settings: the filesystem driver unless an `[storage.s3]` section is given.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The filesystem driver (the default back end).
    pub filesystem: Filesystem,
    /// The S3 driver; when present it is used instead of the filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
}

/// S3 driver settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The bucket (required).
    pub bucket: String,
    /// A key prefix under which everything is stored, so one bucket can hold several
    /// registries. Default empty.
    pub prefix: String,
    /// The region. Default `us-east-1`.
    pub region: String,
    /// The endpoint URL, for S3-compatible servers (`http://127.0.0.1:9000`). Default: AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    /// Default `false`.
    pub path_style: bool,
    /// Static access key id; without it (and the secret) the SDK's usual credential chain
    /// applies (environment, profile, instance metadata).
    pub access_key_id: Option<String>,
    /// Static secret access key.
    pub secret_access_key: Option<String>,
    /// Answer blob GETs with a redirect to a presigned S3 URL, so bytes go straight from S3 to
    /// the client. Default `false`.
    pub redirect: bool,
    /// How long a presigned URL stays valid, in seconds. Default 1200.
    pub redirect_expiry_secs: u64,
    /// Size of the multipart parts, in MiB (at least 5). Default 16.
    pub part_size_mib: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            redirect: false,
            redirect_expiry_secs: 1200,
            part_size_mib: 16,
        }
    }
}

impl std::fmt::Debug for S3Config {
    /// Like the derived one, without the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("redirect", &self.redirect)
            .field("redirect_expiry_secs", &self.redirect_expiry_secs)
            .field("part_size_mib", &self.part_size_mib)
            .finish()
    }
}

/// Filesystem driver settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filesystem {
    /// The folder holding all content. Default `./berth-data`.
    pub root: PathBuf,
    /// Flush data to disk before it becomes visible, and a write (and the folder it lands
    /// in) before it is acknowledged, so a crash never leaves a visible but empty file nor
    /// loses an acknowledged one. Upload data is then written with `O_DIRECT` where the
    /// filesystem allows it. Default `true`.
    pub fsync: bool,
    /// Disk operations (a read of a chunk, a write of a buffer, a stat, a rename) running at
    /// once at most, each on a thread of the runtime's blocking pool (512 threads), like
    /// distribution's `maxthreads`; no thread is held while a client's bytes are awaited.
    /// From 1 to 256. Default 100.
    pub max_threads: usize,
}

impl Default for Filesystem {
    fn default() -> Self {
        Filesystem {
            root: PathBuf::from("./berth-data"),
            fsync: true,
            max_threads: crate::storage::fs::regulator::DEFAULT_MAX_THREADS,
        }
    }
}

/// Limits on requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest manifest accepted, in bytes (the spec asks registries to take at least
    /// 4 MiB). Default 4 MiB.
    pub max_manifest_bytes: usize,
    /// The chunk size clients are asked to use at least, sent as `OCI-Chunk-Min-Length` when
    /// an upload starts; 0 sends nothing. Default 0.
    pub chunk_min_length: u64,
    /// Largest page a tags or catalog listing returns when the client asks for more (or
    /// gives no `n`). Default 10000.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_manifest_bytes: 4 * 1024 * 1024, chunk_min_length: 0, max_page: 10_000 }
    }
}

/// Upload session housekeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Uploads {
    /// Sessions idle for longer than this many seconds are deleted. Default 86400 (a day).
    pub purge_after_secs: u64,
    /// How often, in seconds, to look for such sessions; 0 never purges. Default 3600.
    pub purge_interval_secs: u64,
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads { purge_after_secs: 86_400, purge_interval_secs: 3_600 }
    }
}

/// The web UI (`[ui]`; see [`crate::hub`]). The admin API under `/api/v1/` is always on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the web UI at `/`. Default `true`.
    pub enabled: bool,
    /// How long a sign-in lasts, in seconds. Default 43200 (12 hours).
    pub session_ttl_secs: u64,
    /// Storage reads a page of the repository list (or the API's) may spend on the figures
    /// of its repositories (one per tag link, one per manifest this process has not read
    /// yet); a repository that does not fit in what is left is summed up in the background
    /// and listed with its tag count until then. Default 1000.
    pub summary_budget: usize,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig { enabled: true, session_ttl_secs: 43_200, summary_budget: 1000 }
    }
}

/// Garbage collection (`[gc]`; see [`crate::gc`]): `berth serve` collects on this schedule,
/// one replica at a time, and `berth gc` once with these settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// How often `berth serve` collects, in seconds (the first time one interval after it
    /// starts); 0 never. Default 86400 (a day).
    pub interval_secs: u64,
    /// Nothing written, linked or referred to less than this many seconds before a
    /// collection starts is removed: it must exceed the time a client takes from uploading a
    /// blob to pushing the manifest that needs it, and the clock differences between replicas
    /// and storage. Default 86400 (a day).
    pub grace_secs: u64,
    /// Also remove manifests no tag needs (nor a live index, nor a live subject), as
    /// distribution's `--delete-untagged`. Default `false`.
    pub delete_untagged: bool,
    /// How long the collector's lease lasts unless renewed (it is renewed every third of
    /// that): a replica that dies mid-run holds up the next collection this long (plus
    /// `clock_skew_secs`). At least three times `clock_skew_secs`. Default 300.
    pub lease_secs: u64,
    /// How far apart the clocks of replicas and storage may be, in seconds: the collector
    /// stops deleting this long before its deadlines, pushers wait this long past them, and
    /// an expired lease is taken over only this long after it expired. Default 30.
    pub clock_skew_secs: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_secs: 86_400,
            grace_secs: 86_400,
            delete_untagged: false,
            lease_secs: 300,
            clock_skew_secs: 30,
        }
    }
}

impl Config {
    /// The collector's options for these settings: `[gc]`, with the `[[retention]]` rules,
    /// the `[[immutable]]` ones retention must respect, and the mirrors' `evict_after`.
    pub fn gc_options(&self, dry_run: bool) -> crate::gc::Options {
        crate::gc::Options {
            grace: std::time::Duration::from_secs(self.gc.grace_secs),
            delete_untagged: self.gc.delete_untagged,
            dry_run,
            lease: std::time::Duration::from_secs(self.gc.lease_secs),
            clock_skew: std::time::Duration::from_secs(self.gc.clock_skew_secs),
            retention: crate::gc::retention::Rules {
                retention: self.retention.clone(),
                immutable: self.immutable.clone(),
                evict: self
                    .mirror
                    .iter()
                    .filter_map(|m| {
                        let after = m.evict_after.clone()?;
                        Some(crate::gc::retention::Eviction { host: m.host.clone(), after })
                    })
                    .collect(),
            },
        }
    }
}

/// Access control (`[auth]`): who may pull, push and delete what, and how callers prove who
/// they are (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The name of this registry as a token audience: the `service` of challenges and the
    /// `aud` of tokens. Default `berth`.
    pub service: String,
    /// The `iss` of the tokens berth issues. Default `berth`.
    pub issuer: String,
    /// The token endpoint sent in challenges. Default: `/token` on the host and scheme the
    /// request came to (`http://127.0.0.1:5000/token`). Set it to send clients to an external
    /// token server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// An htpasswd file of users with bcrypt passwords (`htpasswd -B`), re-read when it
    /// changes. Default: no users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub htpasswd: Option<PathBuf>,
    /// A PEM private key (EC P-256, RSA or Ed25519) that signs tokens. Default: a P-256 key
    /// generated once and kept in storage, so every replica signs with the same key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// How long an access token lives, in seconds (at least 60). Default 300.
    pub token_ttl_secs: u64,
    /// How long a refresh token (`docker login`'s identity token) lives, in seconds.
    /// Default 2592000 (30 days).
    pub refresh_token_ttl_secs: u64,
    /// How long a robot account read from storage is trusted before it is read again, in
    /// seconds: a revocation reaches every replica within this time. Default 10.
    pub robot_cache_secs: u64,
    /// How long a verified user password is remembered, in seconds, so basic authentication on
    /// every request does not run bcrypt every time. Default 60.
    pub password_cache_secs: u64,
    /// Failed logins allowed for one user name from one client address per window before
    /// they get 429 `TOOMANYREQUESTS`; 0 means no limit. Default 10.
    pub max_failed_logins: u32,
    /// Failed logins allowed from one client address per window, whatever the user names,
    /// before it gets 429 `TOOMANYREQUESTS`; 0 means no limit. Default 100. Behind a proxy,
    /// set `trust_forwarded_for`, or every client counts as the proxy's address.
    pub max_failed_logins_per_address: u32,
    /// The window of both failed-login limits, in seconds. Default 60.
    pub failed_login_window_secs: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (set this behind a
    /// reverse proxy that appends it). Default `false`.
    pub trust_forwarded_for: bool,
    /// Named groups of subjects (`user:NAME`, `robot:NAME`).
    pub groups: BTreeMap<String, Vec<Subject>>,
    /// Permission rules; a caller may do what any rule naming it grants.
    pub rules: Vec<Rule>,
    /// Also trust tokens signed by another token server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalTokens>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            service: "berth".into(),
            issuer: "berth".into(),
            realm: None,
            htpasswd: None,
            signing_key: None,
            token_ttl_secs: 300,
            refresh_token_ttl_secs: 30 * 86_400,
            robot_cache_secs: 10,
            password_cache_secs: 60,
            max_failed_logins: 10,
            max_failed_logins_per_address: 100,
            failed_login_window_secs: 60,
            trust_forwarded_for: false,
            groups: BTreeMap::new(),
            rules: Vec::new(),
            external: None,
        }
    }
}

/// One permission rule: `who` may do `actions` on repositories matching `repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Repository patterns: `*` matches any run of characters, slashes included
    /// (`team-a/*`, `*`).
    pub repositories: Vec<String>,
    /// What is granted.
    pub actions: Vec<Action>,
    /// To whom.
    pub who: Vec<Subject>,
}

/// What a rule grants on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    #[serde(rename = "pull")]
    Pull,
    /// Upload blobs and manifests, tag, mount.
    #[serde(rename = "push")]
    Push,
    /// Delete manifests, tags and blobs.
    #[serde(rename = "delete")]
    Delete,
    /// All three.
    #[serde(rename = "*")]
    All,
}

/// Whom a rule names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subject {
    /// Everyone, signed in or not (`anonymous`).
    Anonymous,
    /// Anyone signed in, user or robot (`authenticated`).
    Authenticated,
    /// A user of the htpasswd file (`user:NAME`).
    User(String),
    /// A robot account (`robot:NAME`).
    Robot(String),
    /// A group of `[auth.groups]` (`group:NAME`).
    Group(String),
}

impl TryFrom<String> for Subject {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let named = |kind: &str, name: &str| {
            if name.is_empty() || name.contains(char::is_whitespace) {
                Err(format!("{kind}: needs a name, as in {kind}:NAME"))
            } else {
                Ok(name.to_string())
            }
        };
        match s.split_once(':') {
            None if s == "anonymous" => Ok(Subject::Anonymous),
            None if s == "authenticated" => Ok(Subject::Authenticated),
            Some(("user", name)) => Ok(Subject::User(named("user", name)?)),
            Some(("robot", name)) => Ok(Subject::Robot(named("robot", name)?)),
            Some(("group", name)) => Ok(Subject::Group(named("group", name)?)),
            _ => Err(format!(
                "unknown subject {s:?}: expected anonymous, authenticated, user:NAME, robot:NAME or group:NAME"
            )),
        }
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        match s {
            Subject::Anonymous => "anonymous".into(),
            Subject::Authenticated => "authenticated".into(),
            Subject::User(n) => format!("user:{n}"),
            Subject::Robot(n) => format!("robot:{n}"),
            Subject::Group(n) => format!("group:{n}"),
        }
    }
}

/// Tokens from another token server (distribution's `auth: token`): trusted when signed by
/// one of these keys, issued by `issuer`, for this registry's `service`; what they grant is
/// their `access` claim.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalTokens {
    /// The `iss` those tokens carry (required).
    pub issuer: String,
    /// PEM files of public keys or certificates whose keys sign the tokens.
    pub keys: Vec<PathBuf>,
    /// A JWKS file (`{"keys":[...]}`) of keys that sign the tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<PathBuf>,
}

/// HTTPS settings (`[tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first (required).
    pub certificate: PathBuf,
    /// PEM private key of the certificate (required).
    pub key: PathBuf,
    /// How often to look for changed certificate or key files, in seconds; a changed pair is
    /// loaded without a restart. 0 never reloads. Default 10.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { certificate: PathBuf::new(), key: PathBuf::new(), reload_interval_secs: 10 }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// The setting's dotted name.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Checks the settings that can be checked before starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.limits.max_manifest_bytes < 1024 {
            return Err(ConfigError { setting: "limits.max_manifest_bytes", reason: "must be at least 1024".into() });
        }
        if self.gc.clock_skew_secs == 0 || self.gc.lease_secs < 3 * self.gc.clock_skew_secs {
            return Err(ConfigError {
                setting: "gc.lease_secs",
                reason: "gc.clock_skew_secs must be at least 1, and gc.lease_secs at least three times it".into(),
            });
        }
        if self.limits.max_page == 0 {
            return Err(ConfigError { setting: "limits.max_page", reason: "must be at least 1".into() });
        }
        if self.storage.filesystem.root.as_os_str().is_empty() {
            return Err(ConfigError { setting: "storage.filesystem.root", reason: "must not be empty".into() });
        }
        if !(1..=256).contains(&self.storage.filesystem.max_threads) {
            return Err(ConfigError {
                setting: "storage.filesystem.max_threads",
                reason: "must be from 1 to 256 (the rest of the 512 blocking threads stay for other work)".into(),
            });
        }
        if let Some(s3) = &self.storage.s3 {
            if s3.bucket.is_empty() {
                return Err(ConfigError { setting: "storage.s3.bucket", reason: "must be set".into() });
            }
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                return Err(ConfigError {
                    setting: "storage.s3.secret_access_key",
                    reason: "access_key_id and secret_access_key go together".into(),
                });
            }
            if s3.part_size_mib < 5 || s3.part_size_mib > 5 * 1024 {
                return Err(ConfigError {
                    setting: "storage.s3.part_size_mib",
                    reason: "must be from 5 to 5120".into(),
                });
            }
            if s3.redirect && s3.redirect_expiry_secs == 0 {
                return Err(ConfigError {
                    setting: "storage.s3.redirect_expiry_secs",
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.uploads.purge_interval_secs > 0 && self.uploads.purge_after_secs == 0 {
            return Err(ConfigError { setting: "uploads.purge_after_secs", reason: "must be at least 1".into() });
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        self.validate_policies()?;
        for (i, hook) in self.webhooks.iter().enumerate() {
            if let Some(reason) = hook.problem() {
                return Err(ConfigError { setting: "webhooks", reason: format!("receiver {}: {reason}", i + 1) });
            }
        }
        crate::mirror::config::check(&self.mirror)?;
        if let Some(tls) = &self.tls {
            if tls.certificate.as_os_str().is_empty() {
                return Err(ConfigError { setting: "tls.certificate", reason: "must be set".into() });
            }
            if tls.key.as_os_str().is_empty() {
                return Err(ConfigError { setting: "tls.key", reason: "must be set".into() });
            }
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Checks the `[auth]` settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |setting: &'static str, reason: String| Err(ConfigError { setting, reason });
        if self.service.is_empty() {
            return err("auth.service", "must not be empty".into());
        }
        if self.issuer.is_empty() {
            return err("auth.issuer", "must not be empty".into());
        }
        if self.token_ttl_secs < 60 {
            return err("auth.token_ttl_secs", "must be at least 60 (clients expect a minute at least)".into());
        }
        if self.refresh_token_ttl_secs < self.token_ttl_secs {
            return err("auth.refresh_token_ttl_secs", "must be at least auth.token_ttl_secs".into());
        }
        if (self.max_failed_logins > 0 || self.max_failed_logins_per_address > 0) && self.failed_login_window_secs == 0
        {
            return err("auth.failed_login_window_secs", "must be at least 1".into());
        }
        if let Some(realm) = &self.realm {
            if !(realm.starts_with("http://") || realm.starts_with("https://")) {
                return err("auth.realm", format!("{realm:?} is not an http:// or https:// URL"));
            }
        }
        for (name, members) in &self.groups {
            for m in members {
                if !matches!(m, Subject::User(_) | Subject::Robot(_)) {
                    return err(
                        "auth.groups",
                        format!("group {name}: members are user:NAME or robot:NAME, not {}", String::from(m.clone())),
                    );
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.repositories.is_empty() || rule.repositories.iter().any(|p| p.is_empty()) {
                return err("auth.rules", format!("rule {}: repositories must hold non-empty patterns", i + 1));
            }
            if rule.actions.is_empty() || rule.who.is_empty() {
                return err("auth.rules", format!("rule {}: needs actions and who", i + 1));
            }
            for w in &rule.who {
                if let Subject::Group(g) = w {
                    if !self.groups.contains_key(g) {
                        return err("auth.rules", format!("rule {}: group {g} is not defined in [auth.groups]", i + 1));
                    }
                }
            }
        }
        if let Some(ext) = &self.external {
            if ext.issuer.is_empty() {
                return err("auth.external.issuer", "must be set".into());
            }
            if ext.keys.is_empty() && ext.jwks.is_none() {
                return err("auth.external.keys", "give keys or jwks".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.addr.to_string(), "127.0.0.1:5000");
        assert_eq!(c.storage.filesystem.root, PathBuf::from("./berth-data"));
        assert_eq!(c.limits.max_manifest_bytes, 4 << 20);
        assert_eq!(c.storage.filesystem.max_threads, 100);
        c.validate().unwrap();
    }

    #[test]
    fn filesystem_threads_are_bounded() {
        let c: Config = toml::from_str("[storage.filesystem]\nmax_threads = 8").unwrap();
        assert_eq!(c.storage.filesystem.max_threads, 8);
        c.validate().unwrap();
        for bad in [0, 257] {
            let c: Config = toml::from_str(&format!("[storage.filesystem]\nmax_threads = {bad}")).unwrap();
            assert_eq!(c.validate().unwrap_err().setting, "storage.filesystem.max_threads");
        }
    }

    #[test]
    fn s3_section_is_checked() {
        let c: Config = toml::from_str("[storage.s3]\nbucket = \"b\"\nendpoint = \"http://x\"").unwrap();
        let s3 = c.storage.s3.as_ref().unwrap();
        assert_eq!((s3.region.as_str(), s3.part_size_mib), ("us-east-1", 16));
        c.validate().unwrap();
        let c: Config = toml::from_str("[storage.s3]\naccess_key_id = \"k\"\nbucket = \"b\"").unwrap();
        assert_eq!(c.validate().unwrap_err().setting, "storage.s3.secret_access_key");
        let c: Config = toml::from_str("[storage.s3]\nregion = \"x\"").unwrap();
        assert_eq!(c.validate().unwrap_err().setting, "storage.s3.bucket");
        let c: Config =
            toml::from_str("[storage.s3]\nbucket = \"b\"\nsecret_access_key = \"hush\"\naccess_key_id = \"k\"")
                .unwrap();
        assert!(!format!("{c:?}").contains("hush"));
    }

    #[test]
    fn auth_section_parses_and_is_checked() {
        let text = r#"
[auth]
htpasswd = "/etc/berth/htpasswd"
[auth.groups]
ci = ["robot:builder", "user:alice"]
[[auth.rules]]
repositories = ["library/*"]
actions = ["pull"]
who = ["anonymous"]
[[auth.rules]]
repositories = ["team-a/*", "*"]
actions = ["pull", "push", "*"]
who = ["group:ci", "authenticated", "user:bob"]
"#;
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        let auth = c.auth.as_ref().unwrap();
        assert_eq!(auth.token_ttl_secs, 300);
        assert_eq!(auth.rules[1].who[0], Subject::Group("ci".into()));
        assert_eq!(auth.rules[1].actions[2], Action::All);
        // It prints back as it was read.
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);

        let bad = |t: &str| {
            toml::from_str::<Config>(t).map_err(|e| e.to_string()).and_then(|c| c.validate().map_err(|e| e.to_string()))
        };
        assert!(bad("[[auth.rules]]\nrepositories=[\"*\"]\nactions=[\"pull\"]\nwho=[\"root\"]")
            .unwrap_err()
            .contains("unknown subject"));
        assert!(bad("[[auth.rules]]\nrepositories=[\"*\"]\nactions=[\"pul\"]\nwho=[\"anonymous\"]").is_err());
        assert!(bad("[[auth.rules]]\nrepositories=[\"*\"]\nactions=[\"pull\"]\nwho=[\"group:x\"]")
            .unwrap_err()
            .contains("not defined"));
        assert!(bad("[auth]\ntoken_ttl_secs = 5").unwrap_err().contains("token_ttl_secs"));
        assert!(bad("[auth.external]\nissuer = \"x\"").unwrap_err().contains("auth.external.keys"));
        assert!(bad("[tls]\nkey = \"k.pem\"").unwrap_err().contains("tls.certificate"));
        assert!(bad("[auth.groups]\nx = [\"anonymous\"]").unwrap_err().contains("members"));
        assert!(bad("[auth]\nrealm = \"ftp://x\"").unwrap_err().contains("auth.realm"));
    }

    #[test]
    fn immutable_and_quota_rules_parse_and_are_checked() {
        let text = "[[immutable]]\nrepositories = [\"prod/*\"]\ntags = [\"v*\", \"latest\"]\n\
                    [[quota]]\nrepositories = [\"*\"]\nbytes = 1000\n";
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.immutable[0].tags, ["v*", "latest"]);
        assert_eq!(c.quota[0].bytes, 1000);
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        let setting = |t: &str| toml::from_str::<Config>(t).unwrap().validate().unwrap_err().setting;
        assert_eq!(setting("[[immutable]]\nrepositories = [\"*\"]\ntags = []"), "immutable");
        assert_eq!(setting("[[quota]]\nrepositories = [\"*\"]\nbytes = 0"), "quota");
        assert_eq!(setting("[[quota]]\nrepositories = [\"\"]\nbytes = 5"), "quota");
        assert!(toml::from_str::<Config>("[[quota]]\nrepositories = [\"*\"]").is_err(), "bytes is required");
    }

    #[test]
    fn retention_rules_parse_and_are_checked() {
        let text = "[[retention]]\nrepositories = [\"ci/*\"]\nkeep_last = 10\nkeep_within = \"30d\"\n\
                    keep_tags = [\"v*\", \"latest\"]\n[[retention]]\nrepositories = [\"*\"]\nkeep_tags = [\"*\"]\n";
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!((c.retention[0].keep_last, c.retention[0].keep_within.as_deref()), (Some(10), Some("30d")));
        assert_eq!(c.retention[1].keep_last, None);
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert_eq!(c.gc_options(false).retention.retention, c.retention);
        let reason = |t: &str| toml::from_str::<Config>(t).unwrap().validate().unwrap_err().reason;
        assert!(reason("[[retention]]\nrepositories = [\"*\"]").contains("needs keep_last"));
        assert!(reason("[[retention]]\nrepositories = [\"*\"]\nkeep_last = 0").contains("at least 1"));
        assert!(reason("[[retention]]\nrepositories = [\"*\"]\nkeep_within = \"30 days\"").contains("keep_within"));
        assert!(reason("[[retention]]\nrepositories = []\nkeep_last = 1").contains("repositories"));
        assert!(toml::from_str::<Config>("[[retention]]\nrepositories = [\"*\"]\nkeep = 1").is_err());
    }

    #[test]
    fn webhooks_parse_and_are_checked() {
        let text = "[[webhooks]]\nurl = \"https://ci.example.com/hook\"\nsecret = \"s3cret\"\n\
                    [[webhooks]]\nurl = \"http://127.0.0.1:9/x\"\nevents = [\"pull\"]\nrepositories = [\"team/*\"]\n";
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.webhooks[0].events, [EventKind::Push, EventKind::Delete]);
        assert_eq!((c.webhooks[0].max_attempts, c.webhooks[0].queue), (8, 1000));
        assert_eq!(c.webhooks[1].events, [EventKind::Pull]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        let reason = |t: &str| toml::from_str::<Config>(t).unwrap().validate().unwrap_err().reason;
        assert!(reason("[[webhooks]]\nurl = \"ftp://x\"").contains("not an http"));
        assert!(reason("[[webhooks]]\nurl = \"http://x\"\nevents = []").contains("events"));
        assert!(reason("[[webhooks]]\nurl = \"http://x\"\nqueue = 0").contains("at least 1"));
        assert!(toml::from_str::<Config>("[[webhooks]]\nurl = \"http://x\"\nevents = [\"tag\"]").is_err());
    }

    #[test]
    fn gc_section_parses() {
        let c = Config::default();
        assert_eq!((c.gc.interval_secs, c.gc.grace_secs, c.gc.delete_untagged), (86_400, 86_400, false));
        let c: Config = toml::from_str("[gc]\ninterval_secs = 60\ngrace_secs = 5\ndelete_untagged = true").unwrap();
        let o = c.gc_options(true);
        assert_eq!((o.grace.as_secs(), o.delete_untagged, o.dry_run), (5, true, true));
        assert!(toml::from_str::<Config>("[gc]\ngrace = 5").is_err());
        assert_eq!((o.lease.as_secs(), o.clock_skew.as_secs()), (300, 30));
        let c: Config = toml::from_str("[gc]\nlease_secs = 3\nclock_skew_secs = 1").unwrap();
        c.validate().unwrap();
        let reason = |t: &str| toml::from_str::<Config>(t).unwrap().validate().unwrap_err().reason;
        assert!(reason("[gc]\nlease_secs = 60").contains("three times"));
        assert!(reason("[gc]\nclock_skew_secs = 0").contains("at least 1"));
    }

    #[test]
    fn unknown_settings_are_refused() {
        assert!(toml::from_str::<Config>("adr = \"1\"").is_err());
        let c: Config = toml::from_str("[storage.filesystem]\nroot = \"/x\"").unwrap();
        assert_eq!(c.storage.filesystem.root, PathBuf::from("/x"));
        assert!(c.storage.filesystem.fsync);
    }
}
