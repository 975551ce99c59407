//! The audit log and the failed-login limit: every push and delete (the [`Event`] its handler
//! attached to the answer) is logged on the `audit` tracing target with who and from where,
//! and a client address and user name with too many failed logins in the window are refused
//! for a while. Used by the access-control middleware in [`super`].

use super::*;
use crate::events::Event;

/// Entries a failure counter keeps at most: past it, expired entries go, then the older
/// half.
const COUNTER_ENTRIES: usize = 100_000;

/// Bytes of a user name a counter keys on at most.
const USER_KEY_BYTES: usize = 256;

/// Failures per key within a window.
pub(super) struct Counter<K> {
    /// Failures allowed in the window; 0 means no limit.
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: std::hash::Hash + Eq + Clone> Counter<K> {
    pub(super) fn new(max: u32, window: Duration) -> Self {
        Counter { max, window, failures: Mutex::new(HashMap::new()) }
    }

    /// Seconds to wait when `key` is over the limit.
    fn blocked(&self, key: &K) -> Option<u64> {
        if self.max == 0 {
            return None;
        }
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, count) = map.get(key)?;
        let elapsed = start.elapsed();
        (elapsed < self.window && *count >= self.max).then(|| (self.window - elapsed).as_secs().max(1))
    }

    fn failed(&self, key: K) {
        if self.max == 0 {
            return;
        }
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= COUNTER_ENTRIES && !map.contains_key(&key) {
            let window = self.window;
            map.retain(|_, (start, _)| start.elapsed() < window);
            if map.len() >= COUNTER_ENTRIES / 2 {
                // Most are in the window (many addresses or names at once): drop the older half.
                let mut by_age: Vec<(Instant, K)> = map.iter().map(|(k, (start, _))| (*start, k.clone())).collect();
                let half = by_age.len() / 2;
                by_age.select_nth_unstable_by_key(half, |(start, _)| *start);
                for (_, key) in &by_age[..half] {
                    map.remove(key);
                }
            }
        }
        let entry = map.entry(key).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Failed logins, counted per client address and user name (so one client's mistakes, or
/// an attacker's guesses at one account, do not lock out the other users at that address,
/// which behind a proxy without `trust_forwarded_for` is every user), and per address alone
/// with a much higher limit (so guessing at many names from one address is slowed too).
pub(super) struct Limiter {
    pub(super) by_user: Counter<(IpAddr, Box<str>)>,
    pub(super) by_address: Counter<IpAddr>,
}

/// The key of a user name: bounded in length (at a character boundary).
fn user_key(ip: IpAddr, user: &str) -> (IpAddr, Box<str>) {
    let mut end = user.len().min(USER_KEY_BYTES);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    (ip, user[..end].into())
}

impl Limiter {
    /// Seconds to wait when `user` at `ip`, or `ip` itself, is over its limit.
    pub(super) fn blocked(&self, ip: IpAddr, user: &str) -> Option<u64> {
        let by_user = self.by_user.blocked(&user_key(ip, user));
        by_user.max(self.by_address.blocked(&ip))
    }

    /// Counts a failed login of `user` at `ip`.
    pub(super) fn failed(&self, ip: IpAddr, user: &str) {
        self.by_user.failed(user_key(ip, user));
        self.by_address.failed(ip);
    }
}

/// Who made a request and from where, to log the audit event its handler attached to the
/// answer (see [`crate::events`]).
pub(super) struct Audit {
    who: String,
    client: Option<IpAddr>,
}

impl Audit {
    /// An audit record of a request by `who` from `client`.
    pub(super) fn new(who: String, client: Option<IpAddr>) -> Audit {
        Audit { who, client }
    }

    /// Logs what the answer says the request changed, if anything.
    pub(super) fn record(self, resp: &Response) {
        if let Some(event) = resp.extensions().get::<Event>() {
            event.log(&self.who, &shown(self.client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_user: u32, per_address: u32, window: Duration) -> Limiter {
        Limiter { by_user: Counter::new(per_user, window), by_address: Counter::new(per_address, window) }
    }

    #[test]
    fn the_limiter_counts_per_address_and_user_within_the_window() {
        let l = limiter(2, 5, Duration::from_secs(60));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        l.failed(a, "alice");
        assert!(l.blocked(a, "alice").is_none());
        l.failed(a, "alice");
        assert!(l.blocked(a, "alice").is_some_and(|s| s <= 60));
        // Another user at the same address, and the same user elsewhere, go on.
        assert!(l.blocked(a, "bob").is_none());
        assert!(l.blocked(b, "alice").is_none());
        // Guessing at many names from one address meets the address's limit.
        for user in ["c", "d", "e"] {
            l.failed(a, user);
        }
        assert!(l.blocked(a, "bob").is_some());
        assert!(l.blocked(b, "bob").is_none());
        let off = limiter(0, 0, Duration::ZERO);
        off.failed(a, "alice");
        off.failed(a, "alice");
        assert!(off.blocked(a, "alice").is_none());
        let short = limiter(1, 1, Duration::from_millis(1));
        short.failed(a, "alice");
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.blocked(a, "alice").is_none());
    }

    #[test]
    fn counters_stay_bounded() {
        let c: Counter<u32> = Counter::new(3, Duration::from_secs(60));
        for key in 0..(COUNTER_ENTRIES as u32 + 10) {
            c.failed(key);
        }
        assert!(c.len() <= COUNTER_ENTRIES, "{}", c.len());
        // The newest are kept.
        c.failed(COUNTER_ENTRIES as u32 + 9);
        c.failed(COUNTER_ENTRIES as u32 + 9);
        assert!(c.blocked(&(COUNTER_ENTRIES as u32 + 9)).is_some());
        // Long names are keyed by their first bytes.
        let long = "é".repeat(USER_KEY_BYTES);
        assert!(user_key(IpAddr::from([10, 0, 0, 1]), &long).1.len() <= USER_KEY_BYTES);
    }
}
