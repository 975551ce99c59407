//! The berth binary as containers may see it: read-only, never the host's file itself
//! (runc's protection against CVE-2019-5736).
//!
//! The embedded runtime forks the container's first process from the supervisor, so until
//! it executes the container's command that process *is* the berth binary, and a command
//! that is a script starting `#!/proc/self/exe` makes the kernel run the berth binary again,
//! as the container's process, with the container's credentials. Were that the host's file,
//! any process of the container could open it through `/proc/<pid>/exe` and, once no berth
//! process runs it any more, overwrite it: the next `berth` run by host root would be the
//! container's program. (A `berth exec` that joins a container would open the same hole.)
//!
//! So the processes that start containers (`berth run`, `berth container-shim`, `berth
//! oci-runtime`) first re-execute themselves from [`sealed_exe`]: the binary seen through a
//! read-only overlayfs mount that is attached nowhere (no upper layer, so nothing can ever
//! make it writable; runc 1.2 does the same), or, where overlayfs cannot be used, a sealed
//! `memfd` copy (runc's older way). Opening it for writing fails (`EROFS`, or `EPERM` on
//! write for the copy), and the host's file is never reachable. [`is_sealed`] tells whether
//! the running binary already is such a file. The binary's `main` does the re-execution;
//! this module only makes the file.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, SealFlags, StatVfsMountFlags};
use rustix::mount::{self as rmount, FsMountFlags, FsOpenFlags, MountAttrFlags};

/// Why a read-only copy of the binary could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The running binary could not be found or read.
    #[error("reading the berth binary {path}")]
    Exe {
        /// The binary (or `/proc/self/exe`).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Neither a read-only mount nor a sealed copy could be made.
    #[error(
        "cannot protect the berth binary from containers (CVE-2019-5736): no read-only overlayfs view \
         ({overlay}) and no sealed memfd copy"
    )]
    Copy {
        /// Why the overlayfs view failed.
        overlay: String,
        /// Why the copy failed.
        #[source]
        source: io::Error,
    },
}

const SELF_EXE: &str = "/proc/self/exe";

/// Whether the running binary is one containers cannot write through: on a read-only
/// mount, or a memfd sealed against writes.
pub fn is_sealed() -> bool {
    let Ok(exe) = rfs::open(SELF_EXE, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else { return false };
    if rfs::fstatvfs(&exe).is_ok_and(|st| st.f_flag.contains(StatVfsMountFlags::RDONLY)) {
        return true;
    }
    rfs::fcntl_get_seals(&exe).is_ok_and(|seals| seals.contains(SealFlags::WRITE))
}

/// A descriptor of the running binary that containers cannot write through, to execute
/// with `execveat(fd, "", AT_EMPTY_PATH)` (`fexecve`): see the module docs.
pub fn sealed_exe() -> Result<OwnedFd, SealError> {
    let exe_err = |source: io::Error| SealError::Exe { path: SELF_EXE.into(), source };
    let path = std::fs::read_link(SELF_EXE).map_err(exe_err)?;
    let overlay = match overlay_view(&path) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    tracing::debug!(error = %overlay, "no read-only overlayfs view of the berth binary; copying it");
    let exe = File::open(SELF_EXE).map_err(exe_err)?;
    memfd_copy(&exe).map_err(|source| SealError::Copy { overlay: overlay.to_string(), source })
}

/// The binary at `path` seen through a read-only overlayfs attached nowhere: its directory
/// as the upper lower layer, over an empty tmpfs (itself attached nowhere) because an
/// overlayfs without an upper layer needs two.
fn overlay_view(path: &Path) -> io::Result<OwnedFd> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the binary has no directory"));
    };
    let text = dir.to_str().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "non-UTF-8 directory"))?;
    if text.contains([':', ',', '\\']) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the directory's name needs escaping"));
    }
    let empty = detached_mount("tmpfs", &[("mode", "0500"), ("size", "4k")])?;
    let empty_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&empty));
    let lower = format!("{text}:{empty_path}");
    let view = detached_mount("overlay", &[("lowerdir", &lower)])?;
    Ok(rfs::openat(&view, name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?)
}

/// A new `fs` file system with the `options`, mounted read-only, nodev and nosuid, and
/// attached nowhere; its root directory.
fn detached_mount(fs: &str, options: &[(&str, &str)]) -> io::Result<OwnedFd> {
    let context = rmount::fsopen(fs, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, value) in options {
        rmount::fsconfig_set_string(context.as_fd(), *key, *value)?;
    }
    rmount::fsconfig_create(context.as_fd())?;
    let attributes =
        MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID;
    Ok(rmount::fsmount(context.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attributes)?)
}

/// A memfd holding a copy of `exe`, sealed against any change.
fn memfd_copy(exe: &File) -> io::Result<OwnedFd> {
    let flags = rfs::MemfdFlags::CLOEXEC | rfs::MemfdFlags::ALLOW_SEALING;
    let memfd = rfs::memfd_create("berth-sealed", flags)?;
    let mut copy = File::from(memfd);
    io::copy(&mut &*exe, &mut copy)?;
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    rfs::fcntl_add_seals(&copy, seals)?;
    Ok(copy.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Whatever the way, the result runs the same bytes and cannot be written through.
    fn assert_read_only_copy(fd: OwnedFd) {
        let reopen = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let mut bytes = Vec::new();
        File::open(&reopen).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, std::fs::read(SELF_EXE).unwrap());
        let written = std::fs::OpenOptions::new().write(true).open(&reopen).and_then(|mut f| f.write_all(b"x"));
        assert!(written.is_err(), "the sealed binary was writable");
    }

    #[test]
    fn memfd_copies_are_sealed() {
        let exe = File::open(SELF_EXE).unwrap();
        assert_read_only_copy(memfd_copy(&exe).unwrap());
    }

    #[test]
    fn the_sealed_binary_is_read_only() {
        // Where mounts cannot be made (no CAP_SYS_ADMIN) this is the memfd copy.
        assert_read_only_copy(sealed_exe().unwrap());
        assert!(!is_sealed(), "a test binary in target/ is not on a read-only mount");
    }
}
