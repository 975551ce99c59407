//! Webhooks (`[[webhooks]]`): each manifest push and each manifest or tag deletion (and, when
//! asked, each manifest pull) is POSTed to the configured receivers as distribution's
//! notification envelope ([`envelope`]), so receivers written for distribution work; signed
//! with `X-Berth-Signature-256: sha256=<hex HMAC-SHA256 of the body>` when a secret is set.
//!
//! The events are those the handlers attach to their answers ([`crate::events`]); the
//! [`layer`] middleware, inside access control (it knows the caller), hands them to
//! [`Webhooks::notify`], which only puts them in each matching receiver's queue in memory.
//! One task per receiver ([`delivery`]) sends them in order, retrying with exponential
//! backoff while the receiver fails, up to `max_attempts`; a queue that is full drops its
//! oldest event (counted in `/metrics`). A slow or absent receiver never slows a request.
//! Recent deliveries, with their status, attempts and last error, are kept in memory for the
//! UI ([`Webhooks::deliveries`]). Events are not persisted: those queued when a server stops
//! are lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use shared::glob::{Glob, GlobError};

use crate::events::Event;
use crate::AppState;

mod delivery;
pub mod envelope;

pub use delivery::{Delivery, DeliveryStatus};

/// What a webhook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A manifest was pushed (with its tag, if any).
    Push,
    /// A manifest or a tag was deleted.
    Delete,
    /// A manifest was pulled (a `GET`; `HEAD` requests are not told).
    Pull,
}

/// One `[[webhooks]]` receiver.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (`http://` or `https://`; required).
    pub url: String,
    /// Which events: `push`, `delete`, `pull`. Default `["push", "delete"]`.
    pub events: Vec<EventKind>,
    /// Repository patterns (`*` matches any run of characters). Default `["*"]`.
    pub repositories: Vec<String>,
    /// Key of the HMAC-SHA256 signature of each body; without it, bodies are not signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// How long one attempt may take, in seconds. Default 10.
    pub timeout_secs: u64,
    /// Attempts per event before it is given up. Default 8.
    pub max_attempts: u32,
    /// Wait before the first retry, in milliseconds; it doubles with each retry, up to five
    /// minutes. Default 1000.
    pub backoff_ms: u64,
    /// Events waiting for this receiver at most; past that the oldest is dropped. Default 1000.
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            events: vec![EventKind::Push, EventKind::Delete],
            repositories: vec!["*".into()],
            secret: None,
            timeout_secs: 10,
            max_attempts: 8,
            backoff_ms: 1000,
            queue: 1000,
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    /// Like the derived one, without the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("repositories", &self.repositories)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_ms", &self.backoff_ms)
            .field("queue", &self.queue)
            .finish()
    }
}

impl WebhookConfig {
    /// Why the receiver's settings cannot work, if they cannot.
    pub fn problem(&self) -> Option<String> {
        let url_ok = (self.url.starts_with("http://") || self.url.starts_with("https://"))
            && reqwest::Url::parse(&self.url).is_ok();
        if !url_ok {
            return Some(format!("url {:?} is not an http:// or https:// URL", self.url));
        }
        if self.events.is_empty() {
            return Some("events must name push, delete or pull".into());
        }
        if self.repositories.is_empty() || self.repositories.iter().any(String::is_empty) {
            return Some("repositories must hold non-empty patterns".into());
        }
        if self.timeout_secs == 0 || self.max_attempts == 0 || self.queue == 0 {
            return Some("timeout_secs, max_attempts and queue must be at least 1".into());
        }
        if self.secret.as_deref() == Some("") {
            return Some("secret must not be empty (leave it out to send unsigned bodies)".into());
        }
        None
    }
}

/// What a request was, for the envelope's `request`, `actor` and `target.url`.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The client's address.
    pub addr: String,
    /// The `Host` the request was sent to.
    pub host: String,
    /// The method.
    pub method: String,
    /// The `User-Agent`.
    pub useragent: String,
    /// Who made it (`anonymous`, `user:alice`, ...).
    pub actor: String,
    /// Whether it came over HTTPS.
    pub tls: bool,
}

/// One receiver, running.
struct Endpoint {
    config: WebhookConfig,
    repositories: Vec<Glob>,
    queue: Mutex<VecDeque<delivery::Pending>>,
    wake: tokio::sync::Notify,
}

/// The configured receivers, their queues and their recent deliveries.
pub struct Webhooks {
    endpoints: Vec<Arc<Endpoint>>,
    log: Arc<delivery::Log>,
    dropped: AtomicU64,
    /// This process, for the envelope's `source`.
    source: envelope::Source,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Webhooks {
    /// Starts one delivery task per receiver (none without receivers); `source_addr` is the
    /// address the server listens on, for the envelope's `source`.
    pub fn start(configs: &[WebhookConfig], source_addr: String) -> Result<Webhooks, GlobError> {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build();
        let mut hooks = Webhooks {
            endpoints: Vec::new(),
            log: Arc::new(delivery::Log::default()),
            dropped: AtomicU64::new(0),
            source: envelope::Source { addr: source_addr, instance_id: envelope::random_id() },
            tasks: Vec::new(),
        };
        let Ok(client) = client else {
            tracing::warn!("cannot build the webhook client: webhooks are off");
            return Ok(hooks);
        };
        for config in configs {
            let repositories = config.repositories.iter().map(|p| Glob::star(p)).collect::<Result<Vec<_>, _>>()?;
            let endpoint = Arc::new(Endpoint {
                config: config.clone(),
                repositories,
                queue: Mutex::new(VecDeque::new()),
                wake: tokio::sync::Notify::new(),
            });
            let task = tokio::spawn(delivery::run(endpoint.clone(), client.clone(), hooks.log.clone()));
            hooks.tasks.push(task.abort_handle());
            hooks.endpoints.push(endpoint);
        }
        Ok(hooks)
    }

    /// Whether any receiver is configured.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Queues `event` for every receiver that wants it; returns at once.
    pub fn notify(&self, event: &Event, request: &RequestInfo) {
        let Some((kind, repo)) = envelope::kind_and_repository(event) else { return };
        let mut body: Option<bytes::Bytes> = None;
        for (index, e) in self.endpoints.iter().enumerate() {
            if !e.config.events.contains(&kind) || !e.repositories.iter().any(|g| g.is_match(repo)) {
                continue;
            }
            let body = body.get_or_insert_with(|| envelope::body(event, request, &self.source)).clone();
            let pending = self.log.start(index, &e.config.url, event, body);
            let dropped = {
                let mut q = e.queue.lock().unwrap_or_else(|p| p.into_inner());
                let dropped = (q.len() >= e.config.queue).then(|| q.pop_front()).flatten();
                q.push_back(pending);
                dropped
            };
            if let Some(old) = dropped {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.log.update(old.record, |d| d.status = DeliveryStatus::Dropped);
            }
            e.wake.notify_one();
        }
    }

    /// The recent deliveries (the last [`delivery::KEPT`]), newest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.recent()
    }

    /// Events dropped because a receiver's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The webhook figures for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let counts = self.log.counts();
        let mut out = String::from(
            "# HELP berth_webhook_dropped_events_total Events dropped because a receiver's queue was full.\n\
             # TYPE berth_webhook_dropped_events_total counter\n",
        );
        out.push_str(&format!("berth_webhook_dropped_events_total {}\n", self.dropped()));
        out.push_str("# HELP berth_webhook_deliveries_total Webhook deliveries finished, by result.\n");
        out.push_str("# TYPE berth_webhook_deliveries_total counter\n");
        out.push_str(&format!("berth_webhook_deliveries_total{{result=\"delivered\"}} {}\n", counts.0));
        out.push_str(&format!("berth_webhook_deliveries_total{{result=\"failed\"}} {}\n", counts.1));
        out
    }
}

/// What the envelope says of `req`.
fn request_info(state: &AppState, req: &Request) -> RequestInfo {
    let header = |name: axum::http::HeaderName| {
        req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    let trust = state.config.auth.as_ref().is_some_and(|a| a.trust_forwarded_for);
    RequestInfo {
        addr: crate::auth::client_addr(req, trust).map(|ip| ip.to_string()).unwrap_or_default(),
        host: header(axum::http::header::HOST),
        method: req.method().to_string(),
        useragent: header(axum::http::header::USER_AGENT),
        actor: req
            .extensions()
            .get::<crate::auth::Caller>()
            .map_or_else(|| "anonymous".to_string(), |c| c.identity.to_string()),
        tls: state.config.tls.is_some(),
    }
}

/// The middleware that tells the receivers what a request changed (or pulled). It sits
/// inside access control, so the caller is known.
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.webhooks.is_empty() {
        return next.run(req).await;
    }
    let info = request_info(&state, &req);
    let resp = next.run(req).await;
    if let Some(event) = resp.extensions().get::<Event>() {
        state.webhooks.notify(event, &info);
    }
    resp
}
