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
//! following its symbolic links out of it (`openat2` with `RESOLVE_IN_ROOT`).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{self as rmount, MountFlags, UnmountFlags};

use crate::images::ImageRecord;
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
    // to tens of them. A container's upper directory is never mounted again and is deleted
    // with the container, so it needs no durability. Older kernels refuse the option.
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

/// Reads the file at `path` (relative to the container's root, such as `etc/passwd`)
/// resolving symbolic links as if `rootfs` were `/`; `None` when it does not exist.
pub fn read_in_root(rootfs: &Path, path: &str) -> Result<Option<String>, RootfsError> {
    let root = open_root(rootfs)?;
    let shown = rootfs.join(path.trim_start_matches('/'));
    let how = rfs::OFlags::RDONLY | OFlags::CLOEXEC;
    match rfs::openat2(&root, path.trim_start_matches('/'), how, Mode::empty(), ResolveFlags::IN_ROOT) {
        Ok(fd) => {
            let mut text = Vec::new();
            File::from(fd).take(16 << 20).read_to_end(&mut text).map_err(io_err(&shown))?;
            Ok(Some(String::from_utf8_lossy(&text).into_owned()))
        }
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(io_err(&shown)(e.into())),
    }
}

/// Creates the directory `path` (absolute, inside the container) and its parents, mode 755,
/// resolving symbolic links as if `rootfs` were `/`.
pub fn mkdir_in_root(rootfs: &Path, path: &str) -> Result<(), RootfsError> {
    let root = open_root(rootfs)?;
    let shown = rootfs.join(path.trim_start_matches('/'));
    let mut dir = rfs::openat(&root, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err(&shown)(e.into()))?;
    let mut so_far = PathBuf::new();
    for component in Path::new(path).components() {
        let Component::Normal(name) = component else { continue };
        so_far.push(name);
        let how = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        dir = match rfs::openat2(&root, &so_far, how, Mode::empty(), ResolveFlags::IN_ROOT) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err(&shown)(e.into())),
                }
                rfs::openat2(&root, &so_far, how, Mode::empty(), ResolveFlags::IN_ROOT)
                    .map_err(|e| io_err(&shown)(e.into()))?
            }
            Err(e) => return Err(io_err(&shown)(e.into())),
        };
    }
    Ok(())
}

/// Whether `path` (absolute, inside the container) is an executable regular file,
/// resolving symbolic links as if `rootfs` were `/`.
pub fn is_executable_in_root(rootfs: &Path, path: &str) -> bool {
    let Ok(root) = open_root(rootfs) else { return false };
    let how = OFlags::PATH | OFlags::CLOEXEC;
    let Ok(fd) = rfs::openat2(&root, path.trim_start_matches('/'), how, Mode::empty(), ResolveFlags::IN_ROOT) else {
        return false;
    };
    rfs::fstat(&fd).is_ok_and(|st| {
        rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile && st.st_mode & 0o111 != 0
    })
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
