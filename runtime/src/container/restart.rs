//! Restart policies (`berth run --restart`) and the supervisor's backoff between restarts,
//! as moby's `restartmanager` decides them.
//!
//! The supervisor ([`super::shim`]) asks [`Restarts::next`] each time the container's
//! process ends: with the exit code, how long the process ran, and whether a user stopped
//! it (`berth stop`, `berth kill` with `SIGKILL` or the stop signal: see
//! [`super::lifecycle`]). The delay starts at 100 ms and doubles up to a minute, back to
//! 100 ms once a run lasted 10 s; `on-failure[:N]` restarts on a non-zero exit, at most N
//! times (0: no limit); `always` and `unless-stopped` restart whatever the exit code. A user's
//! stop ends every policy, as in Docker. The two differ in Docker only when its daemon
//! restarts (an `unless-stopped` container that was stopped stays so): berth has no daemon,
//! and supervisors end with the host, so after a reboot no container restarts by itself.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The first delay before a restart (moby's `defaultTimeout`).
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay (moby's `maxRestartTimeout`).
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// When the supervisor restarts the container's process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    /// Never (`no`).
    #[default]
    No,
    /// When it exits with a non-zero code, at most `max` times (0: no limit).
    OnFailure {
        /// The most restarts; 0 for no limit.
        max: u32,
    },
    /// Whatever the exit code.
    Always,
    /// Whatever the exit code (see the module docs for how it differs from `always`).
    UnlessStopped,
}

/// A `--restart` value that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid restart policy {0:?}: use no, on-failure[:MAX-RETRIES], always or unless-stopped")]
pub struct InvalidPolicy(pub String);

impl FromStr for RestartPolicy {
    type Err = InvalidPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPolicy(text.to_string());
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        match (name, count) {
            ("no" | "", None) => Ok(RestartPolicy::No),
            ("always", None) => Ok(RestartPolicy::Always),
            ("unless-stopped", None) => Ok(RestartPolicy::UnlessStopped),
            ("on-failure", None) => Ok(RestartPolicy::OnFailure { max: 0 }),
            ("on-failure", Some(n)) => n.parse().map(|max| RestartPolicy::OnFailure { max }).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { .. } => f.write_str("on-failure"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl RestartPolicy {
    /// Docker's `MaximumRetryCount`.
    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max } => *max,
            _ => 0,
        }
    }
}

/// The restart decisions for one container (moby's `RestartManager`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarts {
    policy: RestartPolicy,
    count: u32,
    delay: Duration,
}

impl Restarts {
    /// Decisions under `policy`, `count` restarts done already.
    pub fn new(policy: RestartPolicy, count: u32) -> Restarts {
        Restarts { policy, count, delay: Duration::ZERO }
    }

    /// The restarts done.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether to restart a process that exited with `code` after running for `ran`
    /// (`stopped`: a user stopped it): the delay to wait first, counted as one restart.
    pub fn next(&mut self, code: i32, ran: Duration, stopped: bool) -> Option<Duration> {
        if self.policy == RestartPolicy::No || stopped {
            return None;
        }
        if ran >= RESET_AFTER {
            self.delay = Duration::ZERO;
        }
        self.delay = if self.delay.is_zero() { FIRST_DELAY } else { (self.delay * 2).min(MAX_DELAY) };
        let restart = match self.policy {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max } => code != 0 && (max == 0 || self.count < max),
        };
        if !restart {
            return None;
        }
        self.count += 1;
        Some(self.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_like_docker() {
        assert_eq!("no".parse(), Ok(RestartPolicy::No));
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert_eq!("unless-stopped".parse(), Ok(RestartPolicy::UnlessStopped));
        assert_eq!("on-failure".parse(), Ok(RestartPolicy::OnFailure { max: 0 }));
        assert_eq!("on-failure:3".parse(), Ok(RestartPolicy::OnFailure { max: 3 }));
        for bad in ["sometimes", "on-failure:x", "on-failure:-1", "always:2"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
        assert_eq!(RestartPolicy::OnFailure { max: 3 }.to_string(), "on-failure");
        assert_eq!(RestartPolicy::OnFailure { max: 3 }.max_retries(), 3);
    }

    #[test]
    fn on_failure_counts_and_backs_off() {
        let mut r = Restarts::new(RestartPolicy::OnFailure { max: 3 }, 0);
        let quick = Duration::from_millis(5);
        assert_eq!(r.next(0, quick, false), None, "a success is not restarted");
        // The delay grew on that call too, as moby's does.
        assert_eq!(r.next(1, quick, false), Some(Duration::from_millis(200)));
        assert_eq!(r.next(1, quick, false), Some(Duration::from_millis(400)));
        assert_eq!(r.next(1, RESET_AFTER, false), Some(FIRST_DELAY), "a long run resets the delay");
        assert_eq!(r.count(), 3);
        assert_eq!(r.next(1, quick, false), None, "at most 3 restarts");
    }

    #[test]
    fn always_restarts_until_stopped_with_a_capped_delay() {
        let mut r = Restarts::new(RestartPolicy::Always, 0);
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = r.next(0, Duration::ZERO, false).unwrap();
        }
        assert_eq!(last, MAX_DELAY);
        assert_eq!(r.count(), 20);
        assert_eq!(r.next(0, Duration::ZERO, true), None);
        assert_eq!(Restarts::new(RestartPolicy::No, 0).next(1, Duration::ZERO, false), None);
        assert_eq!(Restarts::new(RestartPolicy::UnlessStopped, 0).next(1, Duration::ZERO, true), None);
    }
}
