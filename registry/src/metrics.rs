//! Prometheus metrics: requests by route and status, request durations, and bytes received
//! and sent; the collections this process ran; and, from the collector's [run
//! history](crate::gc::history) that every replica reads, the last collection's figures and
//! the bytes in storage it counted. Served as text at `/metrics`.
//!
//! The middleware in [`crate::api`] records one observation per request; counting is a few
//! atomic adds and one short lock, so it stays off the profile of the hot paths.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::gc::history::Run;

/// Request count and total microseconds, by (method, route, status).
type RequestTable = BTreeMap<(&'static str, &'static str, u16), (u64, u64)>;

/// The method's name without allocating, for the methods the API uses.
fn method_name(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The registry's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestTable>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    gc_runs: AtomicU64,
    gc_failed: AtomicU64,
    gc_objects: AtomicU64,
    gc_bytes: AtomicU64,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &'static str, status: u16, elapsed: Duration) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry((method_name(method), route, status)).or_default();
        entry.0 += 1;
        entry.1 += elapsed.as_micros() as u64;
    }

    /// Counts bytes received in request bodies.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes sent in response bodies.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a collection this process ran.
    pub fn observe_gc(&self, run: &Run) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        if run.error.is_some() {
            self.gc_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.gc_objects.fetch_add(run.objects_removed(), Ordering::Relaxed);
        self.gc_bytes.fetch_add(run.bytes_freed, Ordering::Relaxed);
    }

    /// The collector's figures: this process's runs, and `last`, the last run of any replica
    /// (from the run history).
    pub fn render_gc(&self, last: Option<&Run>) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric("berth_gc_runs_total", "counter", "Collections this process ran.", load(&self.gc_runs));
        metric(
            "berth_gc_failed_runs_total",
            "counter",
            "Collections this process ran that failed.",
            load(&self.gc_failed),
        );
        metric(
            "berth_gc_removed_objects_total",
            "counter",
            "Tags, manifests, links, blobs and storage objects removed by this process's collections.",
            load(&self.gc_objects),
        );
        metric(
            "berth_gc_freed_bytes_total",
            "counter",
            "Blob bytes freed by this process's collections.",
            load(&self.gc_bytes),
        );
        let Some(last) = last else { return out };
        let gauges = [
            (
                "berth_gc_last_run_timestamp_seconds",
                "When the last collection (of any replica) started.",
                last.started_ms as f64 / 1e3,
            ),
            ("berth_gc_last_run_duration_seconds", "How long the last collection took.", last.duration_ms as f64 / 1e3),
            (
                "berth_gc_last_run_removed_objects",
                "Objects the last collection removed.",
                last.objects_removed() as f64,
            ),
            ("berth_gc_last_run_freed_bytes", "Blob bytes the last collection freed.", last.bytes_freed as f64),
            (
                "berth_gc_last_run_failed",
                "1 when the last collection failed.",
                f64::from(u8::from(last.error.is_some())),
            ),
        ];
        for (name, help, value) in gauges {
            metric(name, "gauge", help, value.to_string());
        }
        if let Some(bytes) = last.stored_bytes {
            metric(
                "berth_storage_bytes",
                "gauge",
                "Bytes in storage, as the last collection counted them.",
                bytes.to_string(),
            );
        }
        out
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP berth_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE berth_http_requests_total counter\n");
        let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((method, route, status), (count, _)) in map.iter() {
            let _ = writeln!(
                out,
                "berth_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP berth_http_request_duration_seconds_sum Total time spent serving requests.\n");
        out.push_str("# TYPE berth_http_request_duration_seconds_sum counter\n");
        for ((method, route, status), (_, micros)) in map.iter() {
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                *micros as f64 / 1e6
            );
        }
        drop(map);
        out.push_str("# HELP berth_http_received_bytes_total Bytes received in request bodies.\n");
        out.push_str("# TYPE berth_http_received_bytes_total counter\n");
        let _ = writeln!(out, "berth_http_received_bytes_total {}", self.bytes_in.load(Ordering::Relaxed));
        out.push_str("# HELP berth_http_sent_bytes_total Bytes sent in response bodies.\n");
        out.push_str("# TYPE berth_http_sent_bytes_total counter\n");
        let _ = writeln!(out, "berth_http_sent_bytes_total {}", self.bytes_out.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.observe("GET", "manifest", 200, Duration::from_millis(2));
        m.observe("GET", "manifest", 200, Duration::from_millis(2));
        m.add_bytes_in(10);
        m.add_bytes_out(20);
        let text = m.render();
        assert!(text.contains("berth_http_requests_total{method=\"GET\",route=\"manifest\",status=\"200\"} 2"));
        assert!(text.contains("berth_http_received_bytes_total 10"));
        assert!(text.contains("berth_http_sent_bytes_total 20"));
    }

    #[test]
    fn renders_the_collectors_figures() {
        let m = Metrics::default();
        assert!(m.render_gc(None).contains("berth_gc_runs_total 0\n"));
        let run =
            Run { blobs: 3, links: 2, bytes_freed: 300, duration_ms: 1500, stored_bytes: Some(42), ..Run::default() };
        m.observe_gc(&run);
        m.observe_gc(&Run { error: Some("lease lost".into()), ..run.clone() });
        let text = m.render_gc(Some(&run));
        for line in [
            "berth_gc_runs_total 2\n",
            "berth_gc_failed_runs_total 1\n",
            "berth_gc_removed_objects_total 10\n",
            "berth_gc_freed_bytes_total 600\n",
            "berth_gc_last_run_duration_seconds 1.5\n",
            "berth_gc_last_run_removed_objects 5\n",
            "berth_gc_last_run_freed_bytes 300\n",
            "berth_gc_last_run_failed 0\n",
            "berth_storage_bytes 42\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
