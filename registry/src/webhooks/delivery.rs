//! Sending queued events to one receiver, in order, with retries; and the record of recent
//! deliveries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::envelope::{self, MEDIA_TYPE};
use super::Endpoint;
use crate::events::Event;

/// Deliveries remembered at most.
pub const KEPT: usize = 200;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting in the queue, or between attempts.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; given up.
    Failed,
    /// Dropped from a full queue before it was sent.
    Dropped,
}

/// One event for one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// A number, increasing, unique in this process.
    pub id: u64,
    /// The receiver's index in `[[webhooks]]` (from 0) and URL.
    pub webhook: usize,
    /// The receiver's URL.
    pub url: String,
    /// `push`, `delete` or `pull`.
    pub action: String,
    /// The repository.
    pub repository: String,
    /// The tag or digest of the request.
    pub reference: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The HTTP status of the last answer, if one came.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub queued_ms: u64,
}

impl Delivery {
    /// The record as the UI and the API show it: the receiver's URL cut to its origin
    /// (`https://hooks.example:8443`), there and in the last error, since a receiver's path or
    /// query often holds its secret token.
    pub fn shown(&self) -> Delivery {
        let mut d = self.clone();
        if let Ok(url) = reqwest::Url::parse(&self.url) {
            let origin = url.origin().ascii_serialization();
            d.last_error = d.last_error.map(|e| e.replace(url.as_str(), &origin).replace(&self.url, &origin));
            d.url = origin;
        } else {
            d.url = "-".into();
            d.last_error = d.last_error.map(|e| e.replace(&self.url, "-"));
        }
        d
    }
}

/// An event waiting for a receiver: its record and its body.
pub(super) struct Pending {
    pub(super) record: u64,
    body: Bytes,
}

/// The recent deliveries.
#[derive(Default)]
pub(super) struct Log {
    next: AtomicU64,
    entries: Mutex<VecDeque<Delivery>>,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl Log {
    /// Records a new delivery of `event` to receiver `webhook`.
    pub(super) fn start(&self, webhook: usize, url: &str, event: &Event, body: Bytes) -> Pending {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (action, repository, reference) = match event {
            Event::ManifestPushed { repo, reference, .. } => ("push", repo, reference),
            Event::ManifestPulled { repo, reference, .. } => ("pull", repo, reference),
            Event::ManifestDeleted { repo, reference } => ("delete", repo, reference),
            Event::BlobPushed { repo, digest, .. } => ("push", repo, digest),
            Event::BlobDeleted { repo, digest } => ("delete", repo, digest),
        };
        let delivery = Delivery {
            id,
            webhook,
            url: url.to_string(),
            action: action.to_string(),
            repository: repository.clone(),
            reference: reference.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            queued_ms: crate::gc::history::now_ms(),
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= KEPT {
            entries.pop_front();
        }
        entries.push_back(delivery);
        Pending { record: id, body }
    }

    /// Changes the record `id`, if it is still remembered.
    pub(super) fn update(&self, id: u64, change: impl FnOnce(&mut Delivery)) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = entries.iter_mut().rev().find(|d| d.id == id) {
            change(d);
        }
    }

    /// The remembered deliveries, newest first.
    pub(super) fn recent(&self) -> Vec<Delivery> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().cloned().collect()
    }

    /// Deliveries finished: delivered, failed.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.delivered.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

/// Sends the receiver's queue, forever (the task is aborted when the server stops).
pub(super) async fn run(endpoint: Arc<Endpoint>, client: reqwest::Client, log: Arc<Log>) {
    loop {
        let next = endpoint.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        match next {
            Some(p) => deliver(&endpoint, &client, &log, p).await,
            // A notification sent while nothing waited is kept for this call.
            None => endpoint.wake.notified().await,
        }
    }
}

/// One attempt: `Ok` when the receiver answered 2xx, else the status (if any) and why.
async fn attempt(endpoint: &Endpoint, client: &reqwest::Client, body: &Bytes) -> Result<u16, (Option<u16>, String)> {
    let config = &endpoint.config;
    let mut req = client
        .post(&config.url)
        .timeout(Duration::from_secs(config.timeout_secs))
        .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
        .body(body.clone());
    if let Some(secret) = &config.secret {
        req = req.header("X-Berth-Signature-256", envelope::signature(secret, body));
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
        Ok(resp) => Err((Some(resp.status().as_u16()), format!("the receiver answered {}", resp.status()))),
        Err(e) => Err((None, shared::error_chain(&e))),
    }
}

/// Sends one event, retrying with exponential backoff up to `max_attempts`.
async fn deliver(endpoint: &Endpoint, client: &reqwest::Client, log: &Log, pending: Pending) {
    let config = &endpoint.config;
    let mut wait = Duration::from_millis(config.backoff_ms);
    for n in 1..=config.max_attempts {
        let result = attempt(endpoint, client, &pending.body).await;
        let done = result.is_ok();
        log.update(pending.record, |d| {
            d.attempts = n;
            match &result {
                Ok(status) => {
                    d.status = DeliveryStatus::Delivered;
                    d.last_status = Some(*status);
                    d.last_error = None;
                }
                Err((status, error)) => {
                    d.last_status = *status;
                    d.last_error = Some(error.clone());
                    if n == config.max_attempts {
                        d.status = DeliveryStatus::Failed;
                    }
                }
            }
        });
        if done {
            log.delivered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if n < config.max_attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }
    log.failed.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(url = config.url, attempts = config.max_attempts, "a webhook delivery failed; given up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_deliveries_keep_the_receivers_path_and_query_to_themselves() {
        let url = "https://hooks.example:8443/services/T0/B1/s3cr3t?token=abc";
        let d = Delivery {
            id: 1,
            webhook: 0,
            url: url.into(),
            action: "push".into(),
            repository: "a".into(),
            reference: "v1".into(),
            status: DeliveryStatus::Failed,
            attempts: 8,
            last_status: None,
            last_error: Some(format!("error sending request for url ({url}): connection refused")),
            queued_ms: 0,
        };
        let shown = d.shown();
        assert_eq!(shown.url, "https://hooks.example:8443");
        let error = shown.last_error.unwrap();
        assert!(!error.contains("s3cr3t") && !error.contains("abc"), "{error}");
        assert!(error.contains("connection refused"), "{error}");
    }
}
