//! Running the collector under the lease: once (`berth gc`, [`run_once`]) or on the `[gc]`
//! schedule of `berth serve` ([`spawn`]), in whichever replica takes the lease.

use std::sync::Arc;
use std::time::Duration;

use super::{history, lease, Collector, GcError, Options, Progress, Report};
use crate::storage::Storage;

/// How long a lease lasts unless renewed by default (it is renewed every third of that
/// while the run goes on): `[gc] lease_secs`.
pub const LEASE_TTL: Duration = Duration::from_secs(300);

/// A name for this process in the lease: the host's name when known, the process id, and a
/// random part.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}:{:08x}", host.trim(), std::process::id(), rand::random::<u32>())
}

/// Runs one collection: a dry run at once (it changes nothing); a real one only under the
/// lease, renewed while it runs and released after, and recorded in the [`history`].
pub async fn run_once(
    storage: Arc<dyn Storage>,
    options: Options,
    progress: Option<Progress>,
) -> Result<Report, GcError> {
    let (dry_run, ttl, skew) = (options.dry_run, options.lease, options.clock_skew);
    let mut collector = Collector::new(storage.clone(), options);
    if let Some(p) = progress {
        collector = collector.with_progress(p);
    }
    if dry_run {
        return collector.run().await;
    }
    let holder = holder();
    let held = lease::acquire(storage.clone(), &holder, ttl, skew).await?;
    let renewing = held.keep_renewed();
    let started = history::now_ms();
    let result = collector.with_lease(held.clone()).run().await;
    let took = history::now_ms().saturating_sub(started);
    let error = result.as_ref().err().map(|e| shared::error_chain(e));
    let run = history::Run::of(result.as_ref().ok(), error, &holder, started, took);
    if let Err(e) = history::record(storage.as_ref(), &run).await {
        tracing::warn!(error = %shared::error_chain(&e), "the collection could not be recorded");
    }
    renewing.abort();
    if let Err(e) = held.release().await {
        tracing::warn!(error = %shared::error_chain(&e), "the collector's lease could not be released; it expires");
    }
    result
}

/// Collects every `interval_secs` (the first time one interval after the start), unless
/// another replica holds the lease then; `None` when the schedule is off.
pub fn spawn(
    storage: Arc<dyn Storage>,
    config: &crate::Config,
    metrics: Arc<crate::metrics::Metrics>,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.gc.interval_secs == 0 {
        return None;
    }
    let every = Duration::from_secs(config.gc.interval_secs);
    let options = config.gc_options(false);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = history::now_ms();
            let result = run_once(storage.clone(), options.clone(), None).await;
            let took = history::now_ms().saturating_sub(started);
            match result {
                Ok(report) => {
                    metrics.observe_gc(&history::Run::of(Some(&report), None, "", started, took));
                    tracing::info!(
                        removed = report.removed.len(),
                        bytes = report.bytes_freed(),
                        driver_objects = report.own.objects,
                        kept_fresh = report.kept_fresh,
                        "garbage collected"
                    )
                }
                Err(GcError::Busy { holder }) => tracing::debug!(holder, "another replica is collecting"),
                Err(e) => {
                    let error = shared::error_chain(&e);
                    metrics.observe_gc(&history::Run::of(None, Some(error.clone()), "", started, took));
                    tracing::warn!(error, "garbage collection failed")
                }
            }
        }
    }))
}
