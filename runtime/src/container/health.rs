//! Health checks, as Docker runs them: the image's `HEALTHCHECK` (its config's
//! `Healthcheck`) or `berth run --health-cmd ...`, run by the container's supervisor
//! ([`super::shim`]) in the container through the exec path ([`super::exec::spawn_probe`]).
//!
//! The first check runs one interval after the start, then one every interval (default 30
//! s); a check that takes longer than the timeout (30 s) is killed and fails. A success
//! makes the container `healthy`; `retries` (3) failures in a row make it `unhealthy`, except
//! that failures within the start period (0) do not count while it has never been healthy.
//! It is `starting` until then. The last five results are kept, with the first 4 KiB of each
//! check's output; `berth ps` shows the status and `berth inspect` `State.Health`, as Docker.
//! Both live in the record the supervisor writes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::exec::{self, Probe};
use super::{ContainerRecord, Containers};

/// Docker's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The default time a check may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default number of failures in a row before `unhealthy`.
pub const DEFAULT_RETRIES: u32 = 3;
/// How many results are kept.
pub const KEPT_RESULTS: usize = 5;
/// How much of a check's output is kept.
pub const OUTPUT_LIMIT: usize = 4096;

/// A health check as an image config stores it (`Healthcheck`; durations in nanoseconds,
/// 0 for the default), and as `--health-*` flags give it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ARGS...]`, `["CMD-SHELL", "COMMAND"]`, or empty (inherit).
    pub test: Vec<String>,
    /// Between checks.
    pub interval: i64,
    /// Before a check counts as failed.
    pub timeout: i64,
    /// Failures in it do not count.
    pub start_period: i64,
    /// Failures in a row before unhealthy.
    pub retries: u32,
}

fn nanos(n: i64, default: Duration) -> Duration {
    if n > 0 {
        Duration::from_nanos(n as u64)
    } else {
        default
    }
}

impl HealthConfig {
    /// The image's check, from its config (`config.Healthcheck` of the JSON).
    pub fn from_image_config(config: &serde_json::Value) -> Option<HealthConfig> {
        serde_json::from_value(config.get("config")?.get("Healthcheck")?.clone()).ok()
    }

    /// The check that runs: `flags` (from `berth run`) over the image's, as Docker merges
    /// them; `None` for no check (none given, `NONE`, or `--no-healthcheck`).
    pub fn effective(image: Option<&HealthConfig>, flags: Option<&HealthConfig>) -> Option<HealthConfig> {
        let mut config = image.cloned().unwrap_or_default();
        if let Some(flags) = flags {
            if !flags.test.is_empty() {
                config.test = flags.test.clone();
            }
            for (mine, theirs) in [
                (&mut config.interval, flags.interval),
                (&mut config.timeout, flags.timeout),
                (&mut config.start_period, flags.start_period),
            ] {
                if theirs != 0 {
                    *mine = theirs;
                }
            }
            if flags.retries != 0 {
                config.retries = flags.retries;
            }
        }
        config.command().map(|_| config)
    }

    /// The command to run, or `None` for no check.
    pub fn command(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            Some((kind, [line])) if kind == "CMD-SHELL" => Some(vec!["/bin/sh".into(), "-c".into(), line.clone()]),
            _ => None,
        }
    }

    /// Between checks.
    pub fn interval(&self) -> Duration {
        nanos(self.interval, DEFAULT_INTERVAL)
    }

    /// The time a check may take.
    pub fn timeout(&self) -> Duration {
        nanos(self.timeout, DEFAULT_TIMEOUT)
    }

    /// The start period.
    pub fn start_period(&self) -> Duration {
        nanos(self.start_period, Duration::ZERO)
    }

    /// Failures in a row before unhealthy.
    pub fn retries(&self) -> u32 {
        if self.retries > 0 {
            self.retries
        } else {
            DEFAULT_RETRIES
        }
    }
}

/// Where a container's health is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No verdict yet.
    #[default]
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthStatus::Starting => "health: starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        })
    }
}

/// One check's result, as `docker inspect` shows it (times as RFC 3339 text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    /// When it started.
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code: 0 passed; -1 when it could not run or took too long.
    pub exit_code: i32,
    /// The start of its output.
    pub output: String,
}

/// A container's health, `State.Health` of `docker inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: Vec<HealthResult>,
}

impl Health {
    /// Takes `result` into account; `in_start_period`: the container started less than the
    /// start period ago.
    pub fn record(&mut self, result: HealthResult, retries: u32, in_start_period: bool) {
        if result.exit_code == 0 {
            self.status = HealthStatus::Healthy;
            self.failing_streak = 0;
        } else if !(in_start_period && self.status == HealthStatus::Starting) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(result);
        if self.log.len() > KEPT_RESULTS {
            self.log.remove(0);
        }
    }
}

/// Runs the checks of one container for its supervisor, whose wait loop polls
/// [`Checker::fd`] up to [`Checker::wake_in`], reaps [`Checker::pid`] with the container's
/// process, and then calls [`Checker::step`].
#[derive(Debug)]
pub struct Checker {
    config: HealthConfig,
    command: Vec<String>,
    started: Instant,
    next: Instant,
    running: Option<Running>,
    /// The health so far.
    pub health: Health,
}

#[derive(Debug)]
struct Running {
    probe: Probe,
    start: String,
    deadline: Instant,
    output: Vec<u8>,
}

fn now_text() -> String {
    shared::date::rfc3339(super::now() as i64)
}

impl Checker {
    /// A checker for `config`; `None` when it runs no check.
    pub fn new(config: HealthConfig) -> Option<Checker> {
        let command = config.command()?;
        let now = Instant::now();
        Some(Checker {
            next: now + config.interval(),
            config,
            command,
            started: now,
            running: None,
            health: Health::default(),
        })
    }

    /// The container's process (re)started: checks start over, `starting`.
    pub fn started(&mut self) {
        let now = Instant::now();
        self.started = now;
        self.next = now + self.config.interval();
        self.health = Health::default();
        if let Some(running) = self.running.take() {
            running.probe.finish();
        }
    }

    /// How long the supervisor may wait before calling [`Self::step`].
    pub fn wake_in(&self) -> Duration {
        let at = self.running.as_ref().map_or(self.next, |r| r.deadline);
        at.saturating_duration_since(Instant::now())
    }

    /// The running check's output, to poll.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.running.as_ref().map(|r| r.probe.output.as_fd())
    }

    /// The running check's process, to reap.
    pub fn pid(&self) -> Option<Pid> {
        self.running.as_ref().map(|r| r.probe.pid)
    }

    /// Reads the running check's output, finishes it (`ended`: its exit code, reaped), or
    /// kills it when it took too long, or starts the next one when it is time. True when
    /// the health changed (the record is to be saved).
    pub fn step(&mut self, containers: &Containers, record: &ContainerRecord, ended: Option<i32>) -> bool {
        let now = Instant::now();
        if let Some(running) = self.running.as_mut() {
            read_available(running);
            let code = match ended {
                Some(code) => code,
                None if now >= running.deadline => {
                    let _ = nix::sys::signal::kill(running.probe.pid, nix::sys::signal::Signal::SIGKILL);
                    let limit = self.config.timeout();
                    running.output = format!("Health check exceeded timeout ({limit:?})").into_bytes();
                    -1
                }
                None => return false,
            };
            let Some(running) = self.running.take() else { return false };
            let output = String::from_utf8_lossy(&running.output).into_owned();
            running.probe.finish();
            self.finish(HealthResult { start: running.start, end: now_text(), exit_code: code, output });
            return true;
        }
        if now < self.next {
            return false;
        }
        let start = now_text();
        match exec::spawn_probe(containers, record, &self.command) {
            Ok(probe) => {
                let _ = nix::fcntl::fcntl(
                    probe.output.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                self.running =
                    Some(Running { probe, start, deadline: now + self.config.timeout(), output: Vec::new() });
                false
            }
            Err(e) => {
                let output = shared::error_chain(&e);
                self.finish(HealthResult { start, end: now_text(), exit_code: -1, output });
                true
            }
        }
    }

    fn finish(&mut self, result: HealthResult) {
        let in_start_period = self.started.elapsed() < self.config.start_period();
        self.health.record(result, self.config.retries(), in_start_period);
        self.next = Instant::now() + self.config.interval();
    }
}

/// Appends what the check's pipe holds now, up to [`OUTPUT_LIMIT`] bytes kept.
fn read_available(running: &mut Running) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = nix::unistd::read(running.probe.output.as_raw_fd(), &mut buf) {
        if n == 0 {
            return;
        }
        let room = OUTPUT_LIMIT.saturating_sub(running.output.len());
        running.output.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32) -> HealthResult {
        HealthResult { start: "s".into(), end: "e".into(), exit_code: code, output: String::new() }
    }

    #[test]
    fn configs_merge_like_docker() {
        let image: serde_json::Value = serde_json::json!({"config": {"Healthcheck": {
            "Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000i64, "Retries": 2}}});
        let image = HealthConfig::from_image_config(&image).unwrap();
        assert_eq!(image.command().unwrap(), ["/bin/sh", "-c", "wget -q localhost"]);
        assert_eq!((image.interval(), image.timeout(), image.retries()), (Duration::from_secs(5), DEFAULT_TIMEOUT, 2));
        let flags = HealthConfig { retries: 7, ..HealthConfig::default() };
        let merged = HealthConfig::effective(Some(&image), Some(&flags)).unwrap();
        assert_eq!((merged.retries(), merged.interval()), (7, Duration::from_secs(5)));
        let none = HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() };
        assert_eq!(HealthConfig::effective(Some(&image), Some(&none)), None);
        assert_eq!(HealthConfig::effective(None, None), None);
        let cmd = HealthConfig { test: vec!["CMD".into(), "true".into()], ..HealthConfig::default() };
        assert_eq!(HealthConfig::effective(None, Some(&cmd)).unwrap().command().unwrap(), ["true"]);
    }

    #[test]
    fn verdicts_follow_retries_and_the_start_period() {
        let mut h = Health::default();
        h.record(result(1), 2, true);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0), "start period failures do not count");
        h.record(result(1), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        h.record(result(0), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        h.record(result(1), 2, true);
        h.record(result(-1), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2), "counted once it was healthy");
        for _ in 0..5 {
            h.record(result(0), 2, false);
        }
        assert_eq!(h.log.len(), KEPT_RESULTS);
        assert_eq!(h.status.to_string(), "healthy");
    }
}
