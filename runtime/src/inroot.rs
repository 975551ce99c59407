//! Paths inside a root directory, resolved as a chroot would.
//!
//! A root (an image's file system, a build context, a stage's root) may hold symbolic links
//! that point anywhere: `/bin -> usr/bin`, `w -> /tmp`, `r -> /`, `x -> ../../etc`. Resolved
//! by the host's kernel from the root's path they lead out of it. [`Root`] resolves them as
//! if the root were `/`: an absolute target starts again at the root, and `..` at the root
//! stays there, so nothing outside is ever reached. What it hands back is what was resolved,
//! never a path for the kernel to follow again: a descriptor, or the canonical path inside
//! the root (no `.`, `..` or symbolic link in it).
//!
//! [`Root::open`] uses `openat2` with `RESOLVE_IN_ROOT` where the kernel has it (5.6) and
//! otherwise walks the path one component at a time from the root's descriptor with
//! `O_NOFOLLOW`, reading each link with `readlinkat` ([`Root::resolve`], which also gives
//! the canonical path); [`Root::mkdir_all`] creates missing directories relative to their
//! parent's descriptor along the same walk. [`Root::open_dir_strict`] follows no link at
//! all, for undoing what the caller made (a link planted since is then not followed).
//!
//! The builder calls it for everything it reads, creates or mounts in a step's root or a
//! build context (`builder::build`, `builder::run`); the runtime's helpers for a
//! container's root ([`crate::container::rootfs`]) for the mount points and directories
//! they make there.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How many symbolic links one resolution may follow (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Why a path inside a root could not be resolved, opened or created.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    /// The root directory itself could not be opened.
    #[error("cannot open the root directory {root}")]
    Root {
        /// The root.
        root: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path inside the root could not be resolved, opened or created.
    #[error("{path:?} inside {root}")]
    Path {
        /// The root.
        root: PathBuf,
        /// The path as asked for, relative to the root.
        path: String,
        /// The cause (`ELOOP` for too many links, `ENOTDIR` when a component is no
        /// directory).
        #[source]
        source: io::Error,
    },
}

/// A path resolved inside a root.
#[derive(Debug)]
pub struct Resolved {
    /// The canonical path relative to the root, `/`-separated, without symbolic links
    /// (empty for the root itself). Components past the first missing one are as written.
    pub path: String,
    /// How many leading components of [`Resolved::path`] exist.
    pub existing: usize,
    /// An `O_PATH` descriptor of what the path names, when it exists.
    pub fd: Option<OwnedFd>,
}

impl Resolved {
    /// The canonical paths of the missing components, shortest first (`a/b`, `a/b/c`).
    pub fn missing(&self) -> Vec<String> {
        let parts: Vec<&str> = self.path.split('/').filter(|p| !p.is_empty()).collect();
        (self.existing..parts.len()).map(|end| parts[..=end].join("/")).collect()
    }
}

/// A directory treated as `/` (see the module docs).
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
}

/// One step of a walk: what it does at a missing component.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Stop descending; the rest of the path is kept as written.
    Keep,
    /// Create the directory (with this mode) and go on.
    Create(u32),
}

impl Root {
    /// Opens the directory `path` as a root (the path itself is the caller's, and trusted).
    pub fn open(path: &Path) -> Result<Root, InRootError> {
        let dir = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| InRootError::Root { root: path.to_path_buf(), source: e.into() })?;
        Ok(Root { dir, path: path.to_path_buf() })
    }

    /// The root's path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` (canonical, from [`Resolved::path`]) on the host: a path without links to
    /// follow, for a program that needs a path (a mount source). Only as safe as the root is
    /// private: nobody else may change it in the meantime.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    fn err(&self, path: &str) -> impl FnOnce(Errno) -> InRootError + '_ {
        let path = path.to_string();
        move |e| InRootError::Path { root: self.path.clone(), path, source: e.into() }
    }

    /// Opens `rel` (absolute or relative: both start at the root) with `flags`, following
    /// symbolic links inside the root (the last one too, unless `flags` has `NOFOLLOW`).
    /// `Ok(None)` when it does not exist.
    pub fn open_at(&self, rel: &str, flags: OFlags) -> Result<Option<OwnedFd>, InRootError> {
        self.open_mode(rel, flags, Mode::empty())
    }

    /// Creates the regular file `rel` (mode `mode`) if it is missing and opens it for
    /// writing, following links inside the root on the way but not a last one (a link there
    /// is `ELOOP`). Its directory must exist.
    pub fn create_file(&self, rel: &str, mode: u32) -> Result<File, InRootError> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW;
        let fd = self.open_mode(rel, flags, Mode::from_raw_mode(mode))?;
        fd.map(File::from).ok_or_else(|| self.err(rel)(Errno::NOENT))
    }

    fn open_mode(&self, rel: &str, flags: OFlags, mode: Mode) -> Result<Option<OwnedFd>, InRootError> {
        let trimmed = rel.trim_start_matches('/');
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let name = if trimmed.is_empty() { "." } else { trimmed };
        match rfs::openat2(&self.dir, name, flags | OFlags::CLOEXEC, mode, how) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::NOENT) => return Ok(None),
            // No openat2 (before 5.6, or refused by a seccomp filter): walk instead.
            Err(Errno::NOSYS | Errno::PERM) => {}
            Err(e) => return Err(self.err(rel)(e)),
        }
        let follow_last = !flags.contains(OFlags::NOFOLLOW);
        let (parent, name, _) = self.walk(rel, follow_last, Missing::Keep)?;
        let Some(parent) = parent else { return Ok(None) };
        let name = name.unwrap_or_else(|| OsString::from("."));
        match rfs::openat(&parent, name.as_os_str(), flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, mode) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err(rel)(e)),
        }
    }

    /// Opens the regular file `rel` for reading, following links inside the root except a
    /// last component that is one, and without blocking (a FIFO is refused, not waited on).
    /// `Ok(None)` when it does not exist; `ENOENT`-free errors (a link, a FIFO, a device:
    /// `EINVAL`) otherwise.
    pub fn open_file(&self, rel: &str) -> Result<Option<File>, InRootError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let Some(fd) = self.open_at(rel, flags)? else { return Ok(None) };
        let st = rfs::fstat(&fd).map_err(self.err(rel))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(self.err(rel)(Errno::INVAL));
        }
        Ok(Some(File::from(fd)))
    }

    /// Removes `rel` when it is an empty directory or an empty regular file, following no
    /// link on the way (see [`Root::open_dir_strict`]); anything else stays. Returns whether
    /// it was removed.
    pub fn remove_if_empty(&self, rel: &str) -> Result<bool, InRootError> {
        let rel = rel.trim_matches('/');
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Ok(false);
        }
        let Some(dir) = self.open_dir_strict(parent)? else { return Ok(false) };
        remove_if_empty(&dir, OsStr::new(name)).map_err(|source| InRootError::Path {
            root: self.path.clone(),
            path: rel.to_string(),
            source,
        })
    }

    /// Resolves `rel`, following every symbolic link inside the root (the last component's
    /// too, unless `follow_last` is false).
    pub fn resolve(&self, rel: &str, follow_last: bool) -> Result<Resolved, InRootError> {
        let (_, _, resolved) = self.walk(rel, follow_last, Missing::Keep)?;
        Ok(resolved)
    }

    /// Creates the directory `rel` and its missing parents (with `mode`) inside the root,
    /// following symbolic links inside it: a link to a missing directory makes that
    /// directory, as `mkdir -p` in a chroot would. Returns the directory as resolved.
    pub fn mkdir_all(&self, rel: &str, mode: u32) -> Result<Resolved, InRootError> {
        let (_, _, resolved) = self.walk(rel, true, Missing::Create(mode))?;
        match &resolved.fd {
            Some(fd) if is_dir(fd) => Ok(resolved),
            _ => Err(self.err(rel)(Errno::NOTDIR)),
        }
    }

    /// Opens the directory `rel` for reading without following any symbolic link (none of
    /// its components may be one). `Ok(None)` when it does not exist or a component is a
    /// link or no directory.
    pub fn open_dir_strict(&self, rel: &str) -> Result<Option<OwnedFd>, InRootError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir = rfs::openat(&self.dir, ".", flags, Mode::empty()).map_err(self.err(rel))?;
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                return Ok(None);
            }
            dir = match rfs::openat(&dir, part, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(self.err(rel)(e)),
            };
        }
        Ok(Some(dir))
    }

    /// The walk behind [`Root::resolve`], [`Root::mkdir_all`] and the fallback of
    /// [`Root::open_at`]: returns the descriptor of the last component's parent (when it
    /// exists), the last component's name (`None` for the root) and the resolution.
    #[allow(clippy::type_complexity)]
    fn walk(
        &self,
        rel: &str,
        follow_last: bool,
        missing: Missing,
    ) -> Result<(Option<OwnedFd>, Option<OsString>, Resolved), InRootError> {
        let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let root = rfs::openat(&self.dir, ".", path_flags | OFlags::DIRECTORY, Mode::empty()).map_err(self.err(rel))?;
        // `dirs[i]` is the directory reached after `i` components of `resolved`; it is one
        // longer than `resolved` while everything exists.
        let mut dirs: Vec<OwnedFd> = vec![root];
        let mut resolved: Vec<OsString> = Vec::new();
        // The descriptor of a last component that is no directory.
        let mut leaf: Option<OwnedFd> = None;
        let mut pending: Vec<OsString> = components(rel.as_bytes());
        pending.reverse();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            leaf = None;
            if part.as_bytes() == b".." {
                if resolved.pop().is_some() && dirs.len() > resolved.len() + 1 {
                    dirs.truncate(resolved.len() + 1);
                }
                continue;
            }
            if dirs.len() <= resolved.len() {
                // Below a missing component: the rest is as written.
                resolved.push(part);
                continue;
            }
            let parent = dirs.last().ok_or_else(|| self.err(rel)(Errno::NOENT))?;
            let fd = match rfs::openat(parent, part.as_os_str(), path_flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => match missing {
                    Missing::Keep => {
                        resolved.push(part);
                        continue;
                    }
                    Missing::Create(mode) => {
                        match rfs::mkdirat(parent, part.as_os_str(), Mode::from_raw_mode(mode)) {
                            Ok(()) | Err(Errno::EXIST) => {}
                            Err(e) => return Err(self.err(rel)(e)),
                        }
                        // Looked at again: what is there now decides (a link made meanwhile
                        // is followed inside the root like any other).
                        pending.push(part);
                        continue;
                    }
                },
                Err(e) => return Err(self.err(rel)(e)),
            };
            let st = rfs::fstat(&fd).map_err(self.err(rel))?;
            let last = pending.iter().all(|p| p.as_bytes() == b".");
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink if !last || follow_last => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(self.err(rel)(Errno::LOOP));
                    }
                    let target = rfs::readlinkat(parent, part.as_os_str(), Vec::new()).map_err(self.err(rel))?;
                    let target = target.into_bytes();
                    if target.first() == Some(&b'/') {
                        resolved.clear();
                        dirs.truncate(1);
                    }
                    let mut parts = components(&target);
                    parts.reverse();
                    pending.extend(parts);
                }
                FileType::Directory => {
                    resolved.push(part);
                    dirs.push(fd);
                }
                _ if last => {
                    resolved.push(part);
                    leaf = Some(fd);
                }
                _ => return Err(self.err(rel)(Errno::NOTDIR)),
            }
        }
        let existing = resolved.len().min(dirs.len() - 1) + usize::from(leaf.is_some());
        let exists = existing == resolved.len();
        let name = resolved.last().cloned();
        // The parent's descriptor: the directory before the last component, when it exists.
        let parent = match name {
            Some(_) if dirs.len() >= resolved.len() => {
                let i = resolved.len() - 1;
                Some(rfs::openat(&dirs[i], ".", path_flags | OFlags::DIRECTORY, Mode::empty()).map_err(self.err(rel))?)
            }
            Some(_) => None,
            None => {
                Some(rfs::openat(&dirs[0], ".", path_flags | OFlags::DIRECTORY, Mode::empty()).map_err(self.err(rel))?)
            }
        };
        let fd = match (exists, leaf) {
            (false, _) => None,
            (true, Some(leaf)) => Some(leaf),
            (true, None) => dirs.pop(),
        };
        let shown: Vec<String> = resolved.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        Ok((parent, name, Resolved { path: shown.join("/"), existing, fd }))
    }
}

/// The components of a path, without empty ones and `.`.
fn components(raw: &[u8]) -> Vec<OsString> {
    raw.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").map(|c| OsString::from_vec(c.to_vec())).collect()
}

fn is_dir(fd: &OwnedFd) -> bool {
    rfs::fstat(fd).is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Removes `name` in the directory `dir` when it is an empty directory or an empty regular
/// file, never following a link; anything else stays. Returns whether it was removed.
pub fn remove_if_empty(dir: impl AsFd, name: &OsStr) -> io::Result<bool> {
    let dir = dir.as_fd();
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let result = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => rfs::unlinkat(dir, name, AtFlags::REMOVEDIR),
        FileType::RegularFile if st.st_size == 0 => rfs::unlinkat(dir, name, AtFlags::empty()),
        _ => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A root with links out of it (absolute, `..`, to `/`), and a host directory beside it.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "host").unwrap();
        fs::write(root.join("usr/bin/tool"), "in root").unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../outside", root.join("up")).unwrap();
        symlink("/", root.join("r")).unwrap();
        (dir, root, outside)
    }

    #[test]
    fn resolves_links_as_a_chroot_would() {
        let (_dir, root, outside) = setup();
        let r = Root::open(&root).unwrap();
        let got = r.resolve("/bin/tool", true).unwrap();
        assert_eq!((got.path.as_str(), got.existing), ("usr/bin/tool", 3));
        assert!(got.fd.is_some());
        // Links out of the root land inside it.
        let outside_rel = outside.to_string_lossy().trim_start_matches('/').to_string();
        let got = r.resolve("abs/secret", true).unwrap();
        assert_eq!(got.path, format!("{outside_rel}/secret"));
        assert!(got.fd.is_none() && got.existing == 0);
        assert_eq!(r.resolve("up/secret", true).unwrap().path, "outside/secret");
        assert_eq!(r.resolve("r/usr/../bin", true).unwrap().path, "usr/bin");
        assert_eq!(r.resolve("/bin", false).unwrap().path, "bin");
        assert_eq!(r.resolve("/", true).unwrap().path, "");
        assert_eq!(r.resolve("usr/new/deeper", true).unwrap().missing(), ["usr/new", "usr/new/deeper"]);
        // Opening never reaches the host's file.
        for p in ["abs/secret", "up/secret", "r/../../outside/secret"] {
            assert!(r.open_at(p, OFlags::RDONLY).unwrap().is_none(), "{p} was opened");
        }
        assert!(r.open_at("bin/tool", OFlags::RDONLY).unwrap().is_some());
        assert!(r.open_at("bin", OFlags::RDONLY | OFlags::NOFOLLOW).is_err(), "NOFOLLOW on a link");
    }

    #[test]
    fn creates_directories_inside_only() {
        let (_dir, root, outside) = setup();
        let r = Root::open(&root).unwrap();
        let made = r.mkdir_all("/abs/made/here", 0o755).unwrap();
        assert!(made.path.ends_with("outside/made/here"), "{}", made.path);
        assert!(root.join(&made.path).is_dir());
        let made = r.mkdir_all("up/made", 0o755).unwrap();
        assert_eq!(made.path, "outside/made");
        assert!(root.join("outside/made").is_dir());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "the host directory gained entries");
        assert_eq!(r.mkdir_all("bin/sub", 0o755).unwrap().path, "usr/bin/sub");
        assert!(r.mkdir_all("bin/tool/x", 0o755).is_err(), "below a file");
        // Files: regular ones only, never through a last link, never blocking.
        assert!(r.open_file("bin/tool").unwrap().is_some());
        assert!(r.open_file("abs/secret").unwrap().is_none());
        rustix::fs::mknodat(&r.dir, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        assert!(r.open_file("fifo").is_err(), "a FIFO was opened");
        symlink("usr/bin/tool", root.join("tool-link")).unwrap();
        assert!(r.open_file("tool-link").is_err(), "a last link was followed");
        // Removal: empty things only, never through a link.
        fs::create_dir_all(outside.join("empty")).unwrap();
        assert!(!r.remove_if_empty("abs/empty").unwrap());
        assert!(outside.join("empty").is_dir());
        assert!(r.remove_if_empty("outside/made").unwrap());
        assert!(!r.remove_if_empty("bin").unwrap(), "a link is no empty directory");
        // The strict open follows no link.
        assert!(r.open_dir_strict("usr/bin").unwrap().is_some());
        assert!(r.open_dir_strict("bin").unwrap().is_none());
        assert!(r.open_dir_strict("abs").unwrap().is_none());
    }
}
