//! What every supervisor of a container does, whatever else it does: catch the signals meant
//! for the container and pass them on, be a child subreaper, and reap children until the
//! container's process ends. Used by the `berth run` supervisor ([`super::shim`]) and by the
//! foreground runner behind `berth oci-runtime run` ([`super::foreground`]).
//!
//! Signals are caught with handlers that only note the signal and write a byte to a pipe
//! (handlers, unlike a blocked mask, are reset by `exec`, so the container gets default
//! dispositions); the caller polls that pipe ([`Signals::fd`]) with whatever else it watches,
//! then calls [`Signals::forward`] and [`reap`]. A supervisor must be a child subreaper
//! ([`become_subreaper`]) because the embedded runtime makes the container's first process
//! a grandchild.
//!
//! The handlers and the pipe are process-wide: catch signals once per process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals passed on to the container.
pub const FORWARDED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Of [`FORWARDED`], those that end a supervisor whose container has not started yet:
/// preparing is given up (see [`Signals::terminating`]).
pub const TERMINATING: [Signal; 4] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT];

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static PENDING: [AtomicBool; 65] = [const { AtomicBool::new(false) }; 65];

extern "C" fn on_signal(sig: nix::libc::c_int) {
    if let Some(flag) = usize::try_from(sig).ok().and_then(|s| PENDING.get(s)) {
        flag.store(true, Ordering::SeqCst);
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is valid for one byte.
        unsafe { nix::libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

fn os_error(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// The caught signals: [`FORWARDED`], `SIGCHLD` and `SIGWINCH`, noted as they arrive.
#[derive(Debug)]
pub struct Signals {
    wake: OwnedFd,
}

/// What [`Signals::forward`] found besides the forwarded signals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Noted {
    /// The terminal's size changed (`SIGWINCH`).
    pub resized: bool,
}

impl Signals {
    /// Installs the handlers (once per process).
    pub fn catch() -> io::Result<Signals> {
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(os_error)?;
        // The write end lives as long as the process: the handler may run at any time.
        WAKE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        std::mem::forget(write);
        let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
        for sig in FORWARDED.iter().chain(&[Signal::SIGCHLD, Signal::SIGWINCH]) {
            // SAFETY: the handler only stores to atomics and calls write(2).
            unsafe { signal::sigaction(*sig, &action) }.map_err(os_error)?;
        }
        Ok(Signals { wake: read })
    }

    /// The descriptor that becomes readable when a signal arrived: poll it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The first of [`TERMINATING`] that arrived and was not passed on yet (it stays noted):
    /// a supervisor still preparing its container asks this between steps and gives up.
    pub fn terminating(&self) -> Option<Signal> {
        TERMINATING.into_iter().find(|sig| PENDING[*sig as usize].load(Ordering::SeqCst))
    }

    /// Empties the pipe and forgets every pending signal (they were meant for a process
    /// that is gone: a supervisor waiting to restart its container).
    pub fn discard(&self) {
        let mut drain = [0u8; 64];
        while nix::unistd::read(self.wake.as_raw_fd(), &mut drain).is_ok_and(|n| n > 0) {}
        for flag in &PENDING {
            flag.store(false, Ordering::SeqCst);
        }
    }

    /// Empties the pipe and sends every pending forwarded signal to `target`.
    pub fn forward(&self, target: Pid) -> Noted {
        let mut drain = [0u8; 64];
        while nix::unistd::read(self.wake.as_raw_fd(), &mut drain).is_ok_and(|n| n > 0) {}
        for sig in FORWARDED {
            if PENDING[sig as usize].swap(false, Ordering::SeqCst) {
                let _ = signal::kill(target, sig);
            }
        }
        PENDING[Signal::SIGCHLD as usize].store(false, Ordering::SeqCst);
        Noted { resized: PENDING[Signal::SIGWINCH as usize].swap(false, Ordering::SeqCst) }
    }

    /// Forwards signals to `target` and reaps children until `target` ends; returns its exit
    /// code (128 + signal when killed). `exited` is its code when it already ended.
    pub fn wait(&self, target: Pid, exited: Option<i32>) -> io::Result<i32> {
        if let Some(code) = exited {
            return Ok(code);
        }
        loop {
            if let Some(code) = reap(target) {
                return Ok(code);
            }
            let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(os_error(e)),
            }
            self.forward(target);
        }
    }
}

/// Makes this process the reaper of its orphaned descendants (the container's first process,
/// when the embedded runtime started it).
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(os_error)
}

/// Reaps every ended child; returns the exit code when `target` was among them.
pub fn reap(target: Pid) -> Option<i32> {
    reap_both(target, None).0
}

/// Reaps every ended child; returns the exit codes of `target` and of `other` (a health
/// check's process) when they were among them.
pub fn reap_both(target: Pid, other: Option<Pid>) -> (Option<i32>, Option<i32>) {
    let (mut code, mut other_code) = (None, None);
    loop {
        let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) => (pid, status),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return (code, other_code),
            Ok(_) => continue,
        };
        if pid == target {
            code = Some(status);
        } else if Some(pid) == other {
            other_code = Some(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this binary that catches signals (they are process-wide).
    #[test]
    fn notes_terminating_signals_until_passed_on() {
        let signals = Signals::catch().unwrap();
        assert_eq!(signals.terminating(), None);
        signal::raise(Signal::SIGUSR1).unwrap();
        assert_eq!(signals.terminating(), None, "SIGUSR1 does not end a supervisor");
        signal::raise(Signal::SIGTERM).unwrap();
        assert_eq!(signals.terminating(), Some(Signal::SIGTERM));
        // Passed on (here to a process that cannot exist), it is no longer pending.
        signals.forward(Pid::from_raw(i32::MAX));
        assert_eq!(signals.terminating(), None);
    }
}
