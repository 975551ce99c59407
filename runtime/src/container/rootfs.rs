//! A container's root file system: an overlayfs of the image's snapshots (top layer first)
//! with the container's own upper and work directories, or, where overlayfs cannot be used,
//! a plain copy of the image made by [`crate::Store::flatten`].
//!
//! overlayfs is used when the kernel knows it and every snapshot holds its whiteouts in
//! overlayfs form (0/0 character devices and `trusted.overlay.opaque`); snapshots unpacked
//! without the privileges for that keep `.wh.` marker files, which overlayfs would show as
//! files, so such an image is flattened instead (flattening understands both forms). The
//! supervisor ([`super::shim`]) mounts and unmounts; `berth rm` unmounts what a killed
//! supervisor left. Also here: reading and creating paths inside the root without
//! following its symbolic links out of it ([`crate::inroot`]).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{self as rmount, MountFlags, UnmountFlags};

use crate::images::ImageRecord;
use crate::inroot::Root;
use crate::store::{Store, StoreError};

/// How a container's root was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsKind {
    /// An overlayfs mount over the snapshots.
    Overlay,
    /// A plain copy of the flattened image.
    Copy,
}

/// Why the root file system could not be made, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A file or directory could not be used.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The overlayfs mount failed.
    #[error("mounting overlayfs on {target}")]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Flattening the image failed.
    #[error("copying the image into {0}")]
    Flatten(PathBuf, #[source] Box<StoreError>),
    /// A snapshot of the image is missing from the store.
    #[error("the image's layer {0} is not unpacked in the store; pull the image again")]
    MissingSnapshot(shared::Digest),
    /// A path inside the root could not be resolved, created or opened.
    #[error(transparent)]
    InRoot(#[from] crate::inroot::InRootError),
    /// A file the runtime reads from the image is not a regular file.
    #[error("{path} in the image is not a regular file (a {kind}); the image must ship it as a plain file")]
    NotRegular {
        /// The file, inside the root.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// A file the runtime reads from the image is larger than it will read.
    #[error("{path} in the image is larger than {limit} bytes")]
    TooLarge {
        /// The file, inside the root.
        path: String,
        /// The most that is read.
        limit: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io { path: path.to_path_buf(), source }
}

/// Whether the kernel lists overlayfs (it may also load it on first use, which
/// [`mount`] then finds out).
pub fn overlay_available() -> bool {
    fs::read_to_string("/proc/filesystems")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some("overlay")))
}

/// Makes `rootfs` the root of a container of `image`: an overlayfs with `upper` and `work`
/// when possible, else a flattened copy. `rootfs`, `upper` and `work` are created.
pub fn mount(
    store: &Store,
    image: &ImageRecord,
    rootfs: &Path,
    upper: &Path,
    work: &Path,
) -> Result<RootfsKind, RootfsError> {
    let mut overlay_whiteouts = true;
    for layer in &image.layers {
        match store.snapshots().get(&layer.diff_id) {
            Ok(Some(info)) => overlay_whiteouts &= info.overlay_whiteouts,
            Ok(None) => return Err(RootfsError::MissingSnapshot(layer.diff_id.clone())),
            Err(e) => return Err(io_err(&store.snapshots().rootfs(&layer.diff_id))(io::Error::other(e))),
        }
    }
    if overlay_whiteouts && overlay_available() {
        // A container started again (`berth start`) mounts its upper directory anew: the
        // work directory of the last mount is scratch, and holds the mark of a `volatile`
        // mount, which overlayfs refuses to mount over until it is gone.
        if work.exists() {
            crate::unpack::remove_tree(work).map_err(io_err(work))?;
        }
        for dir in [rootfs, upper, work] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        match mount_overlay(store, image, rootfs, upper, work) {
            Ok(()) => return Ok(RootfsKind::Overlay),
            Err(e) => {
                tracing::warn!(error = %shared::error_chain(&e), "overlayfs is not usable here; copying the image instead");
                fs::remove_dir(rootfs).map_err(io_err(rootfs))?;
            }
        }
    }
    store.flatten(image, rootfs).map_err(|e| RootfsError::Flatten(rootfs.to_path_buf(), Box::new(e)))?;
    Ok(RootfsKind::Copy)
}

fn mount_overlay(
    store: &Store,
    image: &ImageRecord,
    rootfs: &Path,
    upper: &Path,
    work: &Path,
) -> Result<(), RootfsError> {
    // Every directory is named by `/proc/self/fd/N` of a descriptor held open for the mount,
    // which keeps the options short (they must fit in a page: some 200 layers, whatever the
    // store's path) without changing the process's working directory, which other threads
    // use. overlayfs resolves each name once, when mounting.
    let open = |p: &Path| {
        rfs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| io_err(p)(e.into()))
    };
    let name = |fd: &rustix::fd::OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    // Top layer first. overlayfs refuses a directory twice (overlapping layers); a layer the
    // image lists again is its topmost copy only, which hides everything the lower one has.
    let mut seen = std::collections::HashSet::new();
    let lower = image
        .layers
        .iter()
        .rev()
        .filter(|l| seen.insert(&l.diff_id))
        .map(|l| open(&store.snapshots().rootfs(&l.diff_id)))
        .collect::<Result<Vec<_>, _>>()?;
    let (upper, work) = (open(upper)?, open(work)?);
    let lower: Vec<String> = lower.iter().map(name).collect();
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), name(&upper), name(&work));
    let volatile =
        std::ffi::CString::new(format!("{data},volatile")).map_err(|e| io_err(rootfs)(io::Error::other(e)))?;
    let data = std::ffi::CString::new(data).map_err(|e| io_err(rootfs)(io::Error::other(e)))?;
    let target = std::path::absolute(rootfs).map_err(io_err(rootfs))?;
    let mount = |data: &std::ffi::CStr| rmount::mount("overlay", &target, "overlay", MountFlags::empty(), Some(data));
    // `volatile` (Linux 5.10) leaves out every sync of the upper directory, above all the
    // one at unmount, which flushes the whole upper file system and so costs milliseconds
    // to tens of them. A container's upper directory is mounted again only by `berth start`
    // on the same boot (its writes are in the page cache, written back as any file's), and
    // is deleted with the container: it needs no durability across a crash of the host.
    // Older kernels refuse the option.
    let result = match mount(&volatile) {
        Err(Errno::INVAL) => mount(&data),
        other => other,
    };
    result.map_err(|e| RootfsError::Mount { target: target.clone(), source: e.into() })
}

/// Whether something is mounted at `path` (by `/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(path) = std::path::absolute(path) else { return false };
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = path.as_os_str().as_bytes();
    text.lines().any(|line| line.split(' ').nth(4).is_some_and(|m| m.replace("\\040", " ").as_bytes() == wanted))
}

/// Unmounts `rootfs` when it is a mount point (lazily, so a busy one goes away once free).
/// The kernel tells a path that is no mount point (`EINVAL`) or none at all (`ENOENT`), so
/// the mount table is not read first.
pub fn unmount(rootfs: &Path) -> Result<(), RootfsError> {
    match rmount::unmount(rootfs, UnmountFlags::DETACH) {
        Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
        Err(e) => Err(io_err(rootfs)(e.into())),
    }
}

fn open_root(rootfs: &Path) -> Result<rustix::fd::OwnedFd, RootfsError> {
    rfs::open(rootfs, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err(rootfs)(e.into()))
}

/// The most [`read_in_root`] reads.
pub const READ_LIMIT: u64 = 4 << 20;

/// Reads the file at `path` (relative to the container's root, such as `etc/passwd`)
/// resolving symbolic links as if `rootfs` were `/`; `None` when it does not exist.
///
/// The image is untrusted and this runs as host root outside the container's device
/// cgroup: only a regular file is read (a FIFO, device or socket is refused, and opening
/// one never blocks nor takes a controlling terminal), and at most [`READ_LIMIT`] bytes.
pub fn read_in_root(rootfs: &Path, path: &str) -> Result<Option<String>, RootfsError> {
    let root = open_root(rootfs)?;
    let inside = path.trim_start_matches('/');
    let shown = rootfs.join(inside);
    let how = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rfs::openat2(&root, inside, how, Mode::empty(), ResolveFlags::IN_ROOT) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(io_err(&shown)(e.into())),
    };
    let stat = rfs::fstat(&fd).map_err(|e| io_err(&shown)(e.into()))?;
    let kind = match rfs::FileType::from_raw_mode(stat.st_mode) {
        rfs::FileType::RegularFile => None,
        rfs::FileType::Fifo => Some("FIFO"),
        rfs::FileType::CharacterDevice => Some("character device"),
        rfs::FileType::BlockDevice => Some("block device"),
        rfs::FileType::Socket => Some("socket"),
        rfs::FileType::Directory => Some("directory"),
        _ => Some("special file"),
    };
    if let Some(kind) = kind {
        return Err(RootfsError::NotRegular { path: format!("/{inside}"), kind });
    }
    let mut text = Vec::new();
    File::from(fd).take(READ_LIMIT + 1).read_to_end(&mut text).map_err(io_err(&shown))?;
    if text.len() as u64 > READ_LIMIT {
        return Err(RootfsError::TooLarge { path: format!("/{inside}"), limit: READ_LIMIT });
    }
    Ok(Some(String::from_utf8_lossy(&text).into_owned()))
}

/// Creates the directory `path` (absolute, inside the container) and its parents, mode 755,
/// resolving symbolic links as if `rootfs` were `/`.
pub fn mkdir_in_root(rootfs: &Path, path: &str) -> Result<(), RootfsError> {
    Root::open(rootfs)?.mkdir_all(path, 0o755)?;
    Ok(())
}

/// Where the file `path` (absolute, inside the container) is once its symbolic links are
/// resolved as if `rootfs` were `/`: the path to mount a file on, as runc finds it for
/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (which images may make links, to
/// `/run/...` say). A missing file is created empty there, with its directories (mode 755).
/// The container is not running yet, so nothing changes the tree meanwhile.
pub fn file_in_root(rootfs: &Path, path: &str) -> Result<String, RootfsError> {
    let root = Root::open(rootfs)?;
    let resolved = root.resolve(path, true)?.path;
    if let Some((parent, _)) = resolved.rsplit_once('/') {
        root.mkdir_all(parent, 0o755)?;
    }
    root.create_file(&resolved, 0o644)?;
    Ok(format!("/{resolved}"))
}

/// Whether `path` (absolute, inside the container) is an executable regular file,
/// resolving symbolic links as if `rootfs` were `/`.
pub fn is_executable_in_root(rootfs: &Path, path: &str) -> bool {
    let Ok(root) = Root::open(rootfs) else { return false };
    let Ok(Some(fd)) = root.open_at(path, OFlags::PATH) else { return false };
    rfs::fstat(&fd).is_ok_and(|st| {
        rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile && st.st_mode & 0o111 != 0
    })
}

/// Whether `path` (absolute, inside the container) exists, resolving symbolic links as if
/// `rootfs` were `/`.
pub fn exists_in_root(rootfs: &Path, path: &str) -> bool {
    let Ok(root) = Root::open(rootfs) else { return false };
    matches!(root.open_at(path, OFlags::PATH), Ok(Some(_)))
}

/// Whether `command` names an executable in the container: a path (relative ones from
/// `cwd`), or a name found in the `PATH` of `env`.
pub fn find_executable(rootfs: &Path, command: &str, env: &[String], cwd: &str) -> bool {
    let candidates: Vec<String> = if command.contains('/') {
        if command.starts_with('/') {
            vec![command.to_string()]
        } else {
            vec![format!("{}/{command}", cwd.trim_end_matches('/'))]
        }
    } else {
        let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(super::spec::DEFAULT_PATH);
        path.split(':').filter(|d| !d.is_empty()).map(|d| format!("{}/{command}", d.trim_end_matches('/'))).collect()
    };
    candidates.iter().any(|c| is_executable_in_root(rootfs, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_and_creates_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("passwd"), "host secret").unwrap();
        fs::write(root.join("etc/group"), "g:x:1:\n").unwrap();
        // An absolute link and a `..` link both stay inside the root.
        symlink(outside.join("passwd"), root.join("etc/passwd")).unwrap();
        symlink("../../outside", root.join("escape")).unwrap();
        assert_eq!(read_in_root(&root, "etc/passwd").unwrap(), None);
        assert_eq!(read_in_root(&root, "/etc/group").unwrap().as_deref(), Some("g:x:1:\n"));
        assert_eq!(read_in_root(&root, "escape/passwd").unwrap(), None);

        // Through a dangling link: refused or made inside, never outside.
        let _ = mkdir_in_root(&root, "/escape/made/here");
        assert!(!outside.join("made").exists(), "a directory was created outside the root");
        mkdir_in_root(&root, "/srv/app").unwrap();
        assert!(root.join("srv/app").is_dir());
        mkdir_in_root(&root, "/srv/app").unwrap();
        assert!(!is_mounted(&root));
    }

    #[test]
    fn mount_targets_follow_links_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("data/hosts"), "image's hosts").unwrap();
        // Absolute and dangling, relative through `..`, one escaping upwards, and a loop.
        symlink("/run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
        symlink("../data/../data/hosts", root.join("etc/hosts")).unwrap();
        symlink("../../../../outside/hostname", root.join("etc/hostname")).unwrap();
        symlink("loop", root.join("etc/loop")).unwrap();
        assert_eq!(file_in_root(&root, "/etc/resolv.conf").unwrap(), "/run/systemd/resolve/stub-resolv.conf");
        assert!(root.join("run/systemd/resolve/stub-resolv.conf").is_file());
        assert_eq!(file_in_root(&root, "/etc/hosts").unwrap(), "/data/hosts");
        assert_eq!(fs::read_to_string(root.join("data/hosts")).unwrap(), "image's hosts");
        assert_eq!(file_in_root(&root, "/etc/hostname").unwrap(), "/outside/hostname");
        assert!(root.join("outside/hostname").is_file());
        assert!(!outside.join("hostname").exists(), "a file was created outside the root");
        assert!(file_in_root(&root, "/etc/loop").is_err());
        // A plain path stays as it is, and its file is made.
        assert_eq!(file_in_root(&root, "/etc/new").unwrap(), "/etc/new");
        assert!(root.join("etc/new").is_file());
    }

    #[test]
    fn reads_only_bounded_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        // A FIFO nobody writes to: opening or reading it would block forever.
        rustix::fs::mknodat(rfs::CWD, root.join("etc/passwd"), rfs::FileType::Fifo, Mode::from_raw_mode(0o644), 0)
            .unwrap();
        assert!(matches!(read_in_root(root, "etc/passwd"), Err(RootfsError::NotRegular { kind: "FIFO", .. })));
        // A link inside the root to a FIFO is refused too; one to a file is followed.
        fs::write(root.join("etc/real"), "root:x:0:0::/:/bin/sh\n").unwrap();
        symlink("/etc/real", root.join("etc/group")).unwrap();
        assert_eq!(read_in_root(root, "etc/group").unwrap().as_deref(), Some("root:x:0:0::/:/bin/sh\n"));
        symlink("passwd", root.join("etc/to-fifo")).unwrap();
        assert!(matches!(read_in_root(root, "etc/to-fifo"), Err(RootfsError::NotRegular { .. })));
        assert!(matches!(read_in_root(root, "etc"), Err(RootfsError::NotRegular { kind: "directory", .. })));
        let big = File::create(root.join("etc/big")).unwrap();
        big.set_len(READ_LIMIT + 1).unwrap();
        assert!(matches!(read_in_root(root, "etc/big"), Err(RootfsError::TooLarge { .. })));
        big.set_len(READ_LIMIT).unwrap();
        assert_eq!(read_in_root(root, "etc/big").unwrap().map(|t| t.len() as u64), Some(READ_LIMIT));
    }

    /// A device node (here `/dev/zero`'s numbers) is never read: host root reading it would
    /// bypass the container's device cgroup. Making one needs `CAP_MKNOD`.
    #[test]
    fn refuses_device_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        let dev = rustix::fs::makedev(1, 5);
        let made = rustix::fs::mknodat(
            rfs::CWD,
            root.join("etc/passwd"),
            rfs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o644),
            dev,
        );
        if let Err(e) = made {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but mknod failed: {e}");
            println!("SKIP refuses_device_nodes: making a device node needs CAP_MKNOD ({e})");
            return;
        }
        assert!(matches!(
            read_in_root(root, "etc/passwd"),
            Err(RootfsError::NotRegular { kind: "character device", .. })
        ));
    }

    #[test]
    fn finds_commands_like_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("srv")).unwrap();
        fs::write(root.join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::write(root.join("srv/data"), "not executable").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        assert!(find_executable(root, "tool", &env, "/"));
        assert!(find_executable(root, "/bin/tool", &env, "/"));
        assert!(find_executable(root, "../bin/tool", &env, "/srv"));
        assert!(!find_executable(root, "missing", &env, "/"));
        assert!(!find_executable(root, "/srv/data", &env, "/"));
        assert!(!find_executable(root, "tool", &["PATH=/srv".to_string()], "/"));
    }
}
