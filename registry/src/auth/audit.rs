//! The audit log and the failed-login limit: every push, delete and failed login is logged
//! on the `audit` tracing target (who, what, from where), and a client address with too many
//! failed logins in the window is refused for a while. Used by the access-control middleware
//! in [`super`].

use super::*;

/// Failed logins per client address.
pub(super) struct Limiter {
    pub(super) max: u32,
    pub(super) window: Duration,
    pub(super) failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Limiter {
    /// Seconds to wait when `ip` is over the limit.
    pub(super) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        if self.max == 0 {
            return None;
        }
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, count) = map.get(&ip)?;
        let elapsed = start.elapsed();
        (elapsed < self.window && *count >= self.max).then(|| (self.window - elapsed).as_secs().max(1))
    }

    pub(super) fn failed(&self, ip: IpAddr) {
        if self.max == 0 {
            return;
        }
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// A write request to log once its answer is known.
pub(super) struct Audit {
    who: String,
    client: Option<IpAddr>,
    method: Method,
    uri: Uri,
}

impl Audit {
    /// An audit record for `req` if it may push or delete something.
    pub(super) fn of(req: &Request, who: String, client: Option<IpAddr>) -> Option<Audit> {
        matches!(*req.method(), Method::PUT | Method::POST | Method::DELETE).then(|| Audit {
            who,
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
        })
    }

    /// Logs the push or delete the response confirms.
    pub(super) fn record(self, resp: &Response) {
        let Some(rest) = self.uri.path().strip_prefix("/v2/") else { return };
        let Some(route) = Route::parse(rest) else { return };
        let status = resp.status().as_u16();
        let digest = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).unwrap_or("");
        let (who, client) = (&self.who, shown(self.client));
        match (route, &self.method, status) {
            (Route::Manifest(repo, reference), &Method::PUT, 201) => {
                tracing::info!(
                    target: "audit",
                    event = "push",
                    who = %who,
                    client = %client,
                    repo,
                    reference,
                    digest,
                    "manifest pushed",
                );
            }
            (Route::Manifest(repo, reference), &Method::DELETE, 202) => {
                tracing::info!(
                    target: "audit",
                    event = "delete",
                    who = %who,
                    client = %client,
                    repo,
                    reference,
                    "manifest or tag deleted",
                );
            }
            (Route::Blob(repo, blob), &Method::DELETE, 202) => {
                tracing::info!(
                    target: "audit",
                    event = "delete",
                    who = %who,
                    client = %client,
                    repo,
                    digest = blob,
                    "blob deleted",
                );
            }
            (Route::UploadStart(repo), &Method::POST, 201) => {
                let from = query(&self.uri, "from").filter(|_| query(&self.uri, "mount").is_some());
                tracing::info!(
                    target: "audit",
                    event = "push",
                    who = %who,
                    client = %client,
                    repo,
                    digest,
                    mounted_from = from.as_deref().unwrap_or("-"),
                    "blob pushed",
                );
            }
            (Route::Upload(repo, _), &Method::PUT, 201) => {
                tracing::info!(
                    target: "audit",
                    event = "push",
                    who = %who,
                    client = %client,
                    repo,
                    digest,
                    "blob pushed",
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_per_address_within_the_window() {
        let l = Limiter { max: 2, window: Duration::from_secs(60), failures: Mutex::new(HashMap::new()) };
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        l.failed(a);
        assert!(l.blocked(a).is_none());
        l.failed(a);
        assert!(l.blocked(a).is_some_and(|s| s <= 60));
        assert!(l.blocked(b).is_none());
        let off = Limiter { max: 0, window: Duration::ZERO, failures: Mutex::new(HashMap::new()) };
        off.failed(a);
        off.failed(a);
        assert!(off.blocked(a).is_none());
        let short = Limiter { max: 1, window: Duration::from_millis(1), failures: Mutex::new(HashMap::new()) };
        short.failed(a);
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.blocked(a).is_none());
    }
}
