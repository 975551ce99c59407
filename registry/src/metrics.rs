//! Prometheus metrics: requests by route and status, request durations, and bytes received
//! and sent, served as text at `/metrics`.
//!
//! The middleware in [`crate::api`] records one observation per request; counting is a few
//! atomic adds and one short lock, so it stays off the profile of the hot paths.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
}
