//! The console socket through which the embedded runtime hands over a container's terminal
//! (`-t`), as the OCI runtime command line's `--console-socket` does.
//!
//! With `process.terminal` set, the container's first process makes a new terminal inside
//! the container, makes it its controlling terminal (`TIOCSCTTY`: job control, and Ctrl-C
//! becoming SIGINT for the foreground process group, work as under Docker) and sends the
//! terminal's master end over this socket. The supervisor relays between that master and
//! its own standard streams. A terminal merely passed in as standard streams could not be
//! the container's controlling terminal: its first process starts a session of its own.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use rustix::fs::{Mode, OFlags};

/// How long the container's process may take to send its terminal once it was started.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A listening console socket.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens on `DIR/console.sock`. The socket is bound through `/proc/self/fd/N/` of a
    /// descriptor of `dir`, so that a long store path does not overflow a socket address
    /// (108 bytes), without touching the process's working directory (other threads use it).
    pub fn bind(dir: &Path) -> io::Result<ConsoleSocket> {
        ConsoleSocket::bind_as(dir, "console.sock")
    }

    /// Listens on `DIR/NAME` (a name of its own for each `berth exec -t`), as [`Self::bind`].
    pub fn bind_as(dir: &Path, name: &str) -> io::Result<ConsoleSocket> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let handle = rustix::fs::open(dir, flags, Mode::empty())?;
        let short = format!("/proc/self/fd/{}/{name}", handle.as_raw_fd());
        let listener = UnixListener::bind(short)?;
        Ok(ConsoleSocket { listener, path })
    }

    /// The socket's path, for the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the terminal's master end that the runtime sends (the runtime connected when
    /// the container was created), and removes the socket.
    pub fn receive(self) -> io::Result<OwnedFd> {
        let received = self.accept_master();
        let _ = std::fs::remove_file(&self.path);
        received
    }

    fn accept_master(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept()?;
        stream.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(|e| io::Error::from_raw_os_error(e as i32))? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received);
            }
        }
        let mut fds = fds.into_iter();
        let master = fds.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the container ended before it sent its terminal")
        })?;
        for extra in fds {
            // SAFETY: received with SCM_RIGHTS, so this process owns it and nothing else does.
            drop(unsafe { OwnedFd::from_raw_fd(extra) });
        }
        // SAFETY: as above.
        Ok(unsafe { OwnedFd::from_raw_fd(master) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::io::{IoSlice, Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn receives_the_descriptor_a_runtime_sends() {
        let dir = tempfile::tempdir().unwrap();
        let socket = ConsoleSocket::bind(dir.path()).unwrap();
        let (mut read, mut write) = UnixStream::pair().unwrap();
        let client = UnixStream::connect(socket.path()).unwrap();
        let sent = [write.as_raw_fd()];
        sendmsg::<()>(
            client.as_raw_fd(),
            &[IoSlice::new(b"/dev/ptmx")],
            &[ControlMessage::ScmRights(&sent)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let received = socket.receive().unwrap();
        assert!(!dir.path().join("console.sock").exists(), "the socket is removed");
        // The received descriptor is the very same socket end.
        std::fs::File::from(received).write_all(b"through").unwrap();
        drop(write.flush());
        let mut got = [0u8; 7];
        read.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"through");
    }

    #[test]
    fn a_runtime_that_hangs_up_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = ConsoleSocket::bind(dir.path()).unwrap();
        drop(UnixStream::connect(socket.path()).unwrap());
        let e = socket.receive().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
