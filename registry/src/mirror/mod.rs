//! The pull-through cache: this registry mirrors any number of upstream registries at once
//! (`[[mirror]]`, [`config`]).
//!
//! [`crate::route`] works out once which upstream a request's repository is for (the
//! [`Upstream`]), and [`crate::api`] keeps its content under the local name
//! (`docker.io/library/nginx`) and refuses writes to it (unless the mirror accepts pushes).
//! For reads the handlers call in here when the content is not cached ([`serve`]):
//!
//! - Manifests by digest and blobs are content-addressed: fetched once, stored, then served
//!   from storage. A blob is stored through the upload path (its digest checked before it
//!   becomes visible; an interrupted fetch leaves nothing) while clients are sent its bytes
//!   as they arrive; concurrent requests for it share one fetch ([`flight`]), and so do
//!   replicas sharing a storage ([`claim`]).
//! - A manifest by tag is served from the cache for `tag_ttl_secs`, then checked again with
//!   a `HEAD` (its body fetched only when the digest changed); when the upstream fails the
//!   cached one is served and the failure logged.
//! - With `evict_after`, each pull of a manifest is recorded (its revision rewritten, at most
//!   every tenth of the age) for the collector, which evicts what was not pulled for that long.
//!
//! Each upstream has its own registry client ([`shared::client::Client`]), holding only that
//! upstream's credentials, so they can never be sent to another. Cached content is ordinary
//! content for the collector ([`crate::gc`]).

mod claim;
pub mod config;
mod flight;
mod serve;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use shared::client::{Client, ClientConfig, ClientError, Credentials, StaticCredentials};
use shared::{Digest, ImageRef, Reference, RepoName};

pub use self::config::MirrorConfig;
use self::flight::Flight;
pub(crate) use self::serve::{blob, manifest};
use crate::config::ConfigError;
use crate::error::{ApiError, Code};
pub use crate::route::Upstream;

/// What happened with one upstream, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered from the cache without asking the upstream.
    pub hits: AtomicU64,
    /// Requests that fetched from the upstream.
    pub misses: AtomicU64,
    /// Tags checked again with the upstream once older than their TTL.
    pub revalidations: AtomicU64,
    /// Bytes received from the upstream.
    pub bytes: AtomicU64,
    /// Upstream requests that failed (not counting "not found").
    pub errors: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Picks one counter of a [`Counters`].
type Pick = fn(&Counters) -> &AtomicU64;

/// One upstream and its client.
struct Mirror {
    config: MirrorConfig,
    client: Client,
    /// The upstream's `host[:port]`, as image references name it.
    registry: String,
    counters: Counters,
}

/// Every configured upstream, and the blob fetches in progress.
#[derive(Default)]
pub struct Mirrors {
    mirrors: Vec<Mirror>,
    /// Fetches in progress, by local repository and digest.
    flights: Mutex<HashMap<(String, Digest), Arc<Flight>>>,
}

impl Mirrors {
    /// The clients for `configs` (already checked by [`config::check`]); reads password
    /// files.
    pub fn new(configs: &[MirrorConfig]) -> Result<Mirrors, ConfigError> {
        let mut mirrors = Vec::with_capacity(configs.len());
        for c in configs {
            let bad = |reason: String| ConfigError { setting: "mirror", reason: format!("{}: {reason}", c.host) };
            let (https, host) = match c.url.strip_prefix("https://") {
                Some(rest) => (true, rest),
                None => (false, c.url.strip_prefix("http://").unwrap_or(&c.url)),
            };
            let host = host.trim_end_matches('/');
            let probe = ImageRef::new(host, "probe".parse().map_err(|e| bad(format!("{e}")))?, None, None)
                .map_err(|e| bad(e.to_string()))?;
            let credentials = credentials(c).map_err(bad)?;
            let provider = match credentials {
                Some(cred) => StaticCredentials::single(probe.registry(), cred),
                None => StaticCredentials::default(),
            };
            let settings = ClientConfig { plain_http: !https, ..ClientConfig::default() };
            let client = Client::new(settings, Arc::new(provider)).map_err(|e| bad(shared::error_chain(&e)))?;
            client.pin_scheme(probe.api_host(), https);
            mirrors.push(Mirror {
                config: c.clone(),
                client,
                registry: host.to_string(),
                counters: Counters::default(),
            });
        }
        Ok(Mirrors { mirrors, flights: Mutex::new(HashMap::new()) })
    }

    fn get(&self, up: &Upstream) -> &Mirror {
        &self.mirrors[up.mirror]
    }

    /// Counts a request answered from the cache.
    pub(crate) fn hit(&self, up: &Upstream) {
        Counters::add(&self.get(up).counters.hits, 1);
    }

    /// The counters of the mirror of `host`.
    pub fn counters(&self, host: &str) -> Option<&Counters> {
        self.mirrors.iter().find(|m| m.config.host == host).map(|m| &m.counters)
    }

    /// The upstream's reference for `reference` of `up`'s repository.
    fn image(&self, up: &Upstream, reference: Reference) -> Result<ImageRef, ApiError> {
        let name: RepoName = up.remote.parse().map_err(|e| ApiError::new(Code::NameInvalid).detail(e))?;
        let (tag, digest) = match reference {
            Reference::Tag(t) => (Some(t), None),
            Reference::Digest(d) => (None, Some(d)),
        };
        ImageRef::new(&self.get(up).registry, name, tag, digest).map_err(|e| ApiError::new(Code::NameInvalid).detail(e))
    }

    /// The API error for a failed upstream request (`unknown`: `MANIFEST_UNKNOWN` or
    /// `BLOB_UNKNOWN`), naming the upstream and the cause; failures other than "not found"
    /// are logged and counted. Unreachable upstreams are answered 404 too, not 5xx: skopeo,
    /// podman and docker print the message of a 4xx only (of a 5xx just its status), and
    /// containerd and Docker go on to their next host either way.
    fn failure(&self, up: &Upstream, e: &ClientError, unknown: Code) -> ApiError {
        let m = self.get(up);
        let (host, url) = (&m.config.host, &m.config.url);
        if let ClientError::NotFound { what, .. } = e {
            return ApiError::new(unknown).message(format!("{what} not found in upstream {host} ({url})"));
        }
        Counters::add(&m.counters.errors, 1);
        let chain = shared::error_chain(e);
        tracing::warn!(upstream = %host, error = %chain, "upstream request failed");
        ApiError::new(unknown).message(failed_message(host, url, &chain))
    }

    /// Appends the per-upstream counters to the `/metrics` text.
    pub fn render(&self, out: &mut String) {
        if self.mirrors.is_empty() {
            return;
        }
        let series: [(&str, &str, Pick); 5] = [
            ("berth_mirror_hits_total", "Requests answered from the cache.", |c| &c.hits),
            ("berth_mirror_misses_total", "Requests that fetched from the upstream.", |c| &c.misses),
            ("berth_mirror_revalidations_total", "Tags checked again with the upstream.", |c| &c.revalidations),
            ("berth_mirror_upstream_bytes_total", "Bytes received from the upstream.", |c| &c.bytes),
            ("berth_mirror_upstream_errors_total", "Upstream requests that failed.", |c| &c.errors),
        ];
        for (name, help, counter) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for m in &self.mirrors {
                let value = counter(&m.counters).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {value}", m.config.host);
            }
        }
    }
}

/// What a client is told when nothing is cached and the upstream failed.
fn failed_message(host: &str, url: &str, cause: &str) -> String {
    format!("not cached, and upstream {host} ({url}) failed: {cause}")
}

/// The credentials a mirror is configured with, if any.
fn credentials(c: &MirrorConfig) -> Result<Option<Credentials>, String> {
    if let Some(token) = &c.identity_token {
        let username = shared::client::docker_config::IDENTITY_TOKEN_USER.to_string();
        return Ok(Some(Credentials { username, password: token.clone() }));
    }
    let Some(username) = &c.username else { return Ok(None) };
    let password = match (&c.password, &c.password_file) {
        (Some(p), _) => p.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read password_file {}: {e}", file.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => return Err("username without a password".into()),
    };
    Ok(Some(Credentials { username: username.clone(), password }))
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.mirrors.iter().map(|m| &m.config)).finish()
    }
}
