//! Stopping, killing and starting again: what `berth stop`, `kill`, `start` and `restart`
//! do to a container's record and processes. The supervisor ([`super::shim`]) writes the
//! record while the container exists; these only signal and leave a mark.
//!
//! A user's stop is a file in the container's folder, `stop-requested`, made before any
//! signal is sent: the supervisor reads it when the process ends and then does not restart
//! it, whatever the restart policy ([`super::restart`]). `berth stop` sends the stop signal
//! (`--stop-signal`, else the image's `StopSignal`, else `SIGTERM`), then `SIGKILL` after the
//! grace time (`-t`, else `--stop-timeout`, else 10 s). `berth kill` sends a signal (default
//! `SIGKILL`); as Docker, only `SIGKILL` or the stop signal count as a stop. `berth start`
//! clears the mark and the last run's outcome, and the CLI starts a detached supervisor on
//! the same record, root file system and name.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{io_err, ContainerError, ContainerRecord, Containers, Status};

/// The grace time of `berth stop` when neither `-t` nor `--stop-timeout` say otherwise.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a signal as Docker takes it: `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(text: &str) -> Result<Signal, ContainerError> {
    let invalid = || ContainerError::InvalidSignal(text.to_string());
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| invalid());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse().map_err(|_| invalid())
}

impl ContainerRecord {
    /// The signal `berth stop` sends first: `--stop-signal`, else the image's, else SIGTERM.
    pub fn stop_signal(&self) -> Result<Signal, ContainerError> {
        match self.options.stop_signal.as_deref().or(self.image_stop_signal.as_deref()) {
            Some(text) => parse_signal(text),
            None => Ok(Signal::SIGTERM),
        }
    }
}

impl Containers {
    /// The mark a user's stop leaves for the supervisor.
    pub fn stop_mark(&self, id: &str) -> PathBuf {
        self.paths.container(id).join("stop-requested")
    }

    /// Whether a user asked container `id` to stop since it last started.
    pub fn stop_requested(&self, id: &str) -> bool {
        self.stop_mark(id).exists()
    }

    fn mark_stopped(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let mark = self.stop_mark(&record.id);
        fs::write(&mark, b"").map_err(io_err(&mark))
    }

    /// Wakes the supervisor of a container that waits to restart, so it reads the stop mark.
    fn wake_supervisor(&self, record: &ContainerRecord) {
        if let (Status::Restarting, Some(pid)) = (record.status, record.shim_pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// `berth kill`: sends `signal` to the container's first process; `SIGKILL` and the
    /// stop signal also stop restarts. Fails when it does not run.
    pub fn kill_with(&self, name_or_id: &str, signal: Signal) -> Result<ContainerRecord, ContainerError> {
        let record = self.find(name_or_id)?;
        if !record.is_running() {
            return Err(ContainerError::NotRunning(record.name));
        }
        if signal == Signal::SIGKILL || record.stop_signal().is_ok_and(|s| s == signal) {
            self.mark_stopped(&record)?;
            self.wake_supervisor(&record);
        }
        self.kill(&record, signal)?;
        Ok(record)
    }

    /// `berth stop`: the stop signal, then SIGKILL after `timeout` (else the container's
    /// `--stop-timeout`, else 10 s); waits until its supervisor has recorded the end. True
    /// when it was running.
    pub fn stop_with(&self, name_or_id: &str, timeout: Option<Duration>) -> Result<bool, ContainerError> {
        let record = self.find(name_or_id)?;
        if !record.is_running() {
            return Ok(false);
        }
        let timeout = timeout.or(record.options.stop_timeout.map(Duration::from_secs)).unwrap_or(DEFAULT_STOP_TIMEOUT);
        self.mark_stopped(&record)?;
        self.wake_supervisor(&record);
        // Only the supervisor writes the record while the container runs.
        self.kill(&record, record.stop_signal()?)?;
        if self.wait_stopped(&record, timeout) {
            return Ok(true);
        }
        // The record read now names the process running at this moment (a restart may
        // have replaced the first one).
        let now = self.load(&record.id).unwrap_or(record);
        self.kill(&now, Signal::SIGKILL)?;
        if self.wait_stopped(&now, Duration::from_secs(10)) {
            return Ok(true);
        }
        Err(ContainerError::StopTimeout(now.id))
    }

    /// Readies a stopped container to start again: the last run's outcome and the stop
    /// mark are cleared, and its output goes to its log from now on (a detached supervisor
    /// runs it). Returns the record to hand to a new supervisor; fails when it runs.
    pub fn prepare_start(&self, name_or_id: &str) -> Result<ContainerRecord, ContainerError> {
        let record = self.find(name_or_id)?;
        if record.is_running() {
            return Err(ContainerError::AlreadyRunning(record.name));
        }
        // Whatever a supervisor that ended badly left mounted goes first.
        self.cleanup(&record)?;
        let _ = fs::remove_file(self.stop_mark(&record.id));
        self.update(&record.id, |r| {
            r.status = Status::Created;
            r.options.detach = true;
            r.shim_pid = None;
            r.pid = None;
            r.exit_code = None;
            r.error = None;
            r.finished = None;
            r.restart_count = 0;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::RunOptions;
    use shared::Digest;

    #[test]
    fn signals_parse_as_docker_takes_them() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("SIGHUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        for bad in ["", "NOPE", "0", "999", "-9"] {
            assert!(matches!(parse_signal(bad), Err(ContainerError::InvalidSignal(_))), "{bad}");
        }
    }

    #[test]
    fn stop_signals_and_restarts_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let containers = Containers::at(dir.path());
        let digest = Digest::sha256_of(b"m");
        let mut r = containers.create("busybox", "r", &digest, &RunOptions::default(), None).unwrap();
        assert_eq!(r.stop_signal().unwrap(), Signal::SIGTERM);
        r.image_stop_signal = Some("SIGQUIT".into());
        assert_eq!(r.stop_signal().unwrap(), Signal::SIGQUIT);
        r.options.stop_signal = Some("USR2".into());
        assert_eq!(r.stop_signal().unwrap(), Signal::SIGUSR2, "--stop-signal wins over the image");
        r.status = Status::Exited;
        r.exit_code = Some(1);
        r.restart_count = 2;
        containers.save(&r).unwrap();
        assert!(matches!(containers.kill_with(&r.name, Signal::SIGKILL), Err(ContainerError::NotRunning(_))));
        fs::write(containers.stop_mark(&r.id), b"").unwrap();
        assert!(containers.stop_requested(&r.id));
        let ready = containers.prepare_start(&r.name).unwrap();
        assert_eq!((ready.status, ready.exit_code, ready.restart_count), (Status::Created, None, 0));
        assert!(ready.options.detach && !containers.stop_requested(&r.id));
    }
}
