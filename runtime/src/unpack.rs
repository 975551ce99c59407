//! Layer extraction that a hostile layer cannot escape.
//!
//! [`unpack`] reads a layer blob (gzip, zstd or plain tar, told apart by their first bytes),
//! hashes the uncompressed tar while it goes (the layer's diff ID, checked against the image
//! config's `rootfs.diff_ids`), and writes each entry under a destination directory. The
//! snapshot store calls it with [`UnpackMode::Snapshot`] to make one directory per layer;
//! [`crate::Store::flatten`] calls it with [`UnpackMode::Flatten`] to apply an image's layers
//! in order onto one plain directory.
//!
//! **Containment.** Every path is resolved one component at a time from a directory file
//! descriptor of the destination, with `O_NOFOLLOW`, and every file is created with
//! `openat`/`mkdirat`/`symlinkat`/`linkat`/`mknodat` relative to its parent's descriptor, so
//! nothing can be created or written outside the destination. Refused, with an error naming
//! the entry ([`UnpackError::Unsafe`]): absolute paths, `..` components, paths that go
//! through a symbolic link (one planted earlier in the same layer, or in a lower layer when
//! flattening), hard links whose target is outside or goes through a symbolic link, hard
//! links to directories. A symbolic link itself may point anywhere: it is stored, never
//! followed. An entry that replaces a symbolic link replaces the link, not what it points at.
//!
//! **What is kept:** contents, permission bits (set-id and sticky included), owners (when
//! running as root), modification times, extended attributes from PAX `SCHILY.xattr.*`
//! records (except `trusted.overlay.*`, which only berth may set), symbolic and hard links,
//! FIFOs and device nodes (skipped with a warning where the kernel does not permit them).
//!
//! **Whiteouts** (image-spec layer.md): `.wh.<name>` deletes `<name>` of lower layers and
//! `.wh..wh..opq` hides everything lower layers have in its directory. In a snapshot they are
//! stored as overlayfs expects — a character device 0/0 named `<name>`, and the xattr
//! `trusted.overlay.opaque=y` on the directory — so a container's root can be an overlay
//! of snapshots. Where those cannot be made (no `CAP_MKNOD` or `CAP_SYS_ADMIN`), the marker
//! files are kept as they were in the tar and [`Unpacked::overlay_whiteouts`] is false; both
//! forms are understood when flattening. When flattening, whiteouts delete from what lower
//! layers wrote, never what the same layer wrote.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use shared::{Algorithm, Digest, Hasher};
use tar::EntryType;

/// How whiteouts are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpackMode {
    /// One layer into its own directory, whiteouts stored in overlayfs form.
    Snapshot,
    /// One layer onto the layers already in the directory, whiteouts applied.
    Flatten,
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The SHA-256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The bytes of regular file content written.
    pub content_bytes: u64,
    /// The tar entries seen.
    pub entries: u64,
    /// False when a whiteout or opaque marker had to be kept as a plain file.
    pub overlay_whiteouts: bool,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would reach outside the destination, or is otherwise refused for safety.
    #[error("refusing layer entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's path as the tar has it.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry could not be written.
    #[error("layer entry {entry:?}")]
    Entry {
        /// The entry's path as the tar has it.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer is not a readable (compressed) tar.
    #[error("cannot read the layer")]
    Read(#[source] io::Error),
    /// The uncompressed content is not what the image config says.
    #[error("the layer's uncompressed content has digest {actual}, but the image config lists {expected}")]
    DiffId {
        /// The diff ID from the image config.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
    /// Writing the entry would leave less than [`DISK_RESERVE`] free on the destination's
    /// file system.
    #[error(
        "layer entry {entry:?} needs {size} bytes, but its file system has {available} bytes free and berth \
         keeps {DISK_RESERVE} of them free: make room (berth rmi, berth rm) and try again"
    )]
    NoSpace {
        /// The entry's path as the tar has it.
        entry: String,
        /// Its size.
        size: u64,
        /// What the file system had free when asked.
        available: u64,
    },
    /// The free space of the destination's file system could not be read.
    #[error("cannot read the free space of {path}")]
    FreeSpace {
        /// The destination.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The destination directory could not be opened.
    #[error("cannot open {path}")]
    Destination {
        /// The destination.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Unpacks the layer read from `blob` into the existing directory `dest`. With
/// `expected_diff_id`, fails with [`UnpackError::DiffId`] unless the uncompressed tar has
/// that digest (the caller removes what was written).
pub fn unpack(
    blob: impl Read,
    dest: &Path,
    mode: UnpackMode,
    expected_diff_id: Option<&Digest>,
) -> Result<Unpacked, UnpackError> {
    let root = rfs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| UnpackError::Destination { path: dest.to_path_buf(), source: e.into() })?;
    let free = || {
        let st =
            rfs::statvfs(dest).map_err(|e| UnpackError::FreeSpace { path: dest.to_path_buf(), source: e.into() })?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    };
    unpack_within(blob, root, mode, expected_diff_id, SpaceGuard::new(free))
}

/// [`unpack`] into the directory `root`, with `space` deciding whether each file fits.
fn unpack_within(
    blob: impl Read,
    root: OwnedFd,
    mode: UnpackMode,
    expected_diff_id: Option<&Digest>,
    space: SpaceGuard<'_>,
) -> Result<Unpacked, UnpackError> {
    let algorithm = expected_diff_id.map_or(Algorithm::Sha256, Digest::algorithm);
    let reader = decompress(BufReader::with_capacity(256 * 1024, blob)).map_err(UnpackError::Read)?;
    let hashing = HashingReader { inner: reader, hasher: Hasher::new(algorithm) };
    let mut archive = tar::Archive::new(hashing);
    let mut extractor = Extractor {
        root,
        mode,
        is_root: rustix::process::geteuid().is_root(),
        dirs: Vec::new(),
        created: HashSet::new(),
        overlay_whiteouts: true,
        content_bytes: 0,
        entries: 0,
        space,
    };
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        extractor.entry(&mut entry)?;
    }
    extractor.finish()?;
    let mut hashing = archive.into_inner();
    // The end-of-archive blocks and any padding after them are part of the diff ID.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    let diff_id = hashing.hasher.finish();
    if let Some(expected) = expected_diff_id.filter(|e| **e != diff_id) {
        return Err(UnpackError::DiffId { expected: expected.clone(), actual: diff_id });
    }
    Ok(Unpacked {
        diff_id,
        content_bytes: extractor.content_bytes,
        entries: extractor.entries,
        overlay_whiteouts: extractor.overlay_whiteouts,
    })
}

/// The uncompressed stream of a layer: gzip (`1f 8b`), zstd (`28 b5 2f fd`) or else a plain
/// tar, by the first bytes rather than the media type, which is sometimes wrong.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(Zstd { source: reader, decoder: ruzstd::decoding::FrameDecoder::new(), in_frame: false }))
    } else {
        Ok(Box::new(reader))
    }
}

/// A zstd stream of one or more frames (skippable frames are skipped).
struct Zstd<R> {
    source: R,
    decoder: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        loop {
            if self.in_frame {
                while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(io::Error::other)?;
                }
                let n = self.decoder.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                if self.decoder.is_finished() {
                    self.in_frame = false;
                }
                continue;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.decoder.init(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A directory whose mode and time are set once everything under it is written.
struct PendingDir {
    path: Vec<OsString>,
    mode: u32,
    mtime: u64,
}

/// What an unpack keeps free on the destination's file system: a layer that would take
/// more stops with [`UnpackError::NoSpace`] (and the caller removes what it wrote), rather
/// than filling the disk that the store, the containers and the host share.
pub const DISK_RESERVE: u64 = 256 << 20;

/// Keeps an unpack from filling its file system. The free space is asked for when a file
/// does not fit in what was left of the last answer, so a layer of many small files costs
/// few `statvfs` calls; a file larger than the free space less [`DISK_RESERVE`] is refused
/// before a byte of it is written.
struct SpaceGuard<'a> {
    free: Box<dyn FnMut() -> Result<u64, UnpackError> + 'a>,
    /// Bytes that may still be written before asking again.
    budget: u64,
}

impl<'a> SpaceGuard<'a> {
    fn new(free: impl FnMut() -> Result<u64, UnpackError> + 'a) -> SpaceGuard<'a> {
        SpaceGuard { free: Box::new(free), budget: 0 }
    }

    /// Takes `size` bytes for `entry`, or refuses them.
    fn take(&mut self, size: u64, entry: &str) -> Result<(), UnpackError> {
        if size <= self.budget {
            self.budget -= size;
            return Ok(());
        }
        let available = (self.free)()?;
        let usable = available.saturating_sub(DISK_RESERVE);
        if size > usable {
            return Err(UnpackError::NoSpace { entry: entry.to_string(), size, available });
        }
        self.budget = usable - size;
        Ok(())
    }
}

struct Extractor<'a> {
    root: OwnedFd,
    mode: UnpackMode,
    is_root: bool,
    dirs: Vec<PendingDir>,
    /// Paths this layer wrote (flatten mode), which its own whiteouts must not delete.
    created: HashSet<Vec<OsString>>,
    overlay_whiteouts: bool,
    content_bytes: u64,
    entries: u64,
    space: SpaceGuard<'a>,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The components of a path from a tar, or why it is refused. `.` components and
/// separators at either end are dropped.
fn components(raw: &[u8]) -> Result<Vec<OsString>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path has a \"..\" component".into()),
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

fn shown(path: &[OsString]) -> String {
    path.iter().map(|c| c.to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

fn io_err(e: Errno) -> io::Error {
    e.into()
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec { tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX), tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

impl Extractor<'_> {
    fn unsafe_entry(entry: &str, reason: impl Into<String>) -> UnpackError {
        UnpackError::Unsafe { entry: entry.to_string(), reason: reason.into() }
    }

    fn entry_err(entry: &str) -> impl FnOnce(Errno) -> UnpackError + '_ {
        move |e| UnpackError::Entry { entry: entry.to_string(), source: e.into() }
    }

    /// Opens the directory `path` (relative to the root) one component at a time without
    /// following symbolic links. Missing directories are created (mode 0755) with `create`,
    /// else `Ok(None)`.
    fn open_dir(&self, path: &[OsString], entry: &str, create: bool) -> Result<Option<OwnedFd>, UnpackError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir = rfs::openat(&self.root, ".", flags, Mode::empty()).map_err(Self::entry_err(entry))?;
        for (i, c) in path.iter().enumerate() {
            let next = match rfs::openat(&dir, c.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&dir, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(Self::entry_err(entry)(e)),
                    }
                    rfs::openat(&dir, c.as_os_str(), flags, Mode::empty()).map_err(Self::entry_err(entry))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                    let prefix = shown(&path[..=i]);
                    let is_link = rfs::statat(&dir, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                    return Err(if is_link {
                        Self::unsafe_entry(entry, format!("its path goes through the symbolic link {prefix:?}"))
                    } else if e == Errno::NOTDIR {
                        Self::unsafe_entry(entry, format!("{prefix:?} is not a directory"))
                    } else {
                        Self::entry_err(entry)(e)
                    });
                }
                Err(e) => return Err(Self::entry_err(entry)(e)),
            };
            dir = next;
        }
        Ok(Some(dir))
    }

    /// Removes whatever is at `name` in `dir` (recursively for a directory), except that
    /// with `keep_dir` an existing directory stays. Returns true when a directory was kept.
    fn clear(&self, dir: BorrowedFd<'_>, name: &OsStr, keep_dir: bool, entry: &str) -> Result<bool, UnpackError> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(Self::entry_err(entry)(e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                if keep_dir {
                    return Ok(true);
                }
                remove_all_at(dir, name).map_err(|source| UnpackError::Entry { entry: entry.to_string(), source })?;
                Ok(false)
            }
            Ok(_) => {
                rfs::unlinkat(dir, name, AtFlags::empty()).map_err(Self::entry_err(entry))?;
                Ok(false)
            }
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let name_shown = String::from_utf8_lossy(&raw).into_owned();
        let shown_entry = name_shown.as_str();
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        if kind == EntryType::GNUSparse || is_pax_sparse(entry) {
            // Docker refuses them too; expanded, a few bytes of tar can declare gigabytes.
            return Err(Self::unsafe_entry(shown_entry, "sparse files (GNU or PAX sparse format) are not supported"));
        }
        let path = components(&raw).map_err(|reason| Self::unsafe_entry(shown_entry, reason))?;
        let Some((name, parents)) = path.split_last() else {
            // The root itself ("./"): nothing to create.
            return Ok(());
        };
        if let Some(rest) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parents, name, rest, shown_entry);
        }
        // Empty numeric fields read as 0, as Go's archive/tar (which wrote most layers) does.
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let xattrs = xattrs(entry);

        let parent = self.open_dir(parents, shown_entry, true)?.ok_or_else(|| {
            Self::entry_err(shown_entry)(Errno::NOENT) // unreachable: created above
        })?;
        let parent = parent.as_fd();
        let err = Self::entry_err(shown_entry);
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                self.space.take(header.size().unwrap_or(0), shown_entry)?;
                self.clear(parent, name, false, shown_entry)?;
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rfs::openat(parent, name.as_os_str(), flags, Mode::from_raw_mode(0o600)).map_err(err)?;
                let mut file = File::from(fd);
                let written = copy(entry, &mut file)
                    .map_err(|source| UnpackError::Entry { entry: shown_entry.to_string(), source })?;
                self.content_bytes += written;
                // Owner first: a change of owner clears `security.capability` (and the set-id
                // bits, which the mode below sets again).
                self.own(file.as_fd(), uid, gid, shown_entry)?;
                self.set_xattrs(file.as_fd(), &xattrs, shown_entry)?;
                rfs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(Self::entry_err(shown_entry))?;
                rfs::futimens(&file, &timestamps(mtime)).map_err(Self::entry_err(shown_entry))?;
            }
            EntryType::Directory => {
                if !self.clear(parent, name, true, shown_entry)? {
                    rfs::mkdirat(parent, name.as_os_str(), Mode::from_raw_mode(0o700)).map_err(err)?;
                }
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let dir = rfs::openat(parent, name.as_os_str(), flags, Mode::empty())
                    .map_err(Self::entry_err(shown_entry))?;
                self.own(dir.as_fd(), uid, gid, shown_entry)?;
                self.set_xattrs(dir.as_fd(), &xattrs, shown_entry)?;
                self.dirs.push(PendingDir { path: path.clone(), mode, mtime });
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::unsafe_entry(shown_entry, "symbolic link without a target"))?
                    .into_owned();
                self.clear(parent, name, false, shown_entry)?;
                rfs::symlinkat(OsStr::from_bytes(&target), parent, name.as_os_str()).map_err(err)?;
                self.own_at(parent, name, uid, gid, shown_entry)?;
                rfs::utimensat(parent, name.as_os_str(), &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(Self::entry_err(shown_entry))?;
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::unsafe_entry(shown_entry, "hard link without a target"))?
                    .into_owned();
                let target = components(&raw_target)
                    .map_err(|reason| Self::unsafe_entry(shown_entry, format!("hard link target: {reason}")))?;
                if target == path {
                    return Ok(());
                }
                let Some((target_name, target_parents)) = target.split_last() else {
                    return Err(Self::unsafe_entry(shown_entry, "hard link to the root directory"));
                };
                let target_dir = self
                    .open_dir(target_parents, shown_entry, false)
                    .map_err(|e| match e {
                        UnpackError::Unsafe { entry, reason } => {
                            UnpackError::Unsafe { entry, reason: format!("hard link target: {reason}") }
                        }
                        other => other,
                    })?
                    .ok_or_else(|| self.missing_link_target(shown_entry, &target))?;
                match rfs::statat(&target_dir, target_name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => return Err(self.missing_link_target(shown_entry, &target)),
                    Err(e) => return Err(Self::entry_err(shown_entry)(e)),
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(Self::unsafe_entry(shown_entry, "hard link to a directory"));
                    }
                    Ok(_) => {}
                }
                self.clear(parent, name, false, shown_entry)?;
                rfs::linkat(&target_dir, target_name.as_os_str(), parent, name.as_os_str(), AtFlags::empty())
                    .map_err(err)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.clear(parent, name, false, shown_entry)?;
                match rfs::mknodat(
                    parent,
                    name.as_os_str(),
                    file_type,
                    Mode::from_raw_mode(mode),
                    rfs::makedev(major, minor),
                ) {
                    Ok(()) => {}
                    Err(Errno::PERM) if file_type != FileType::Fifo => {
                        tracing::warn!(entry = shown_entry, "device node skipped: creating it is not permitted here");
                        return Ok(());
                    }
                    Err(e) => return Err(err(e)),
                }
                self.own_at(parent, name, uid, gid, shown_entry)?;
                rfs::chmodat(parent, name.as_os_str(), Mode::from_raw_mode(mode), AtFlags::empty())
                    .map_err(Self::entry_err(shown_entry))?;
                rfs::utimensat(parent, name.as_os_str(), &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(Self::entry_err(shown_entry))?;
            }
            other => {
                tracing::debug!(entry = shown_entry, kind = ?other, "skipping tar entry of unsupported type");
                return Ok(());
            }
        }
        if self.mode == UnpackMode::Flatten {
            // The entry and its parents are this layer's: its own whiteouts keep them.
            for end in 1..=path.len() {
                self.created.insert(path[..end].to_vec());
            }
        }
        Ok(())
    }

    fn missing_link_target(&self, entry: &str, target: &[OsString]) -> UnpackError {
        let where_ = match self.mode {
            UnpackMode::Snapshot => "earlier in this layer",
            UnpackMode::Flatten => "in this or a lower layer",
        };
        Self::unsafe_entry(entry, format!("hard link target {:?} does not exist {where_}", shown(target)))
    }

    /// A `.wh.` entry: `name` is the marker's own name, `rest` what follows the prefix.
    fn whiteout(&mut self, parents: &[OsString], name: &OsStr, rest: &[u8], entry: &str) -> Result<(), UnpackError> {
        if name.as_bytes() == OPAQUE_MARKER {
            return self.opaque(parents, entry);
        }
        if rest.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are AUFS bookkeeping (hard link directories), not content.
            return Ok(());
        }
        if rest.is_empty() || rest == b"." || rest == b".." || rest.contains(&b'/') {
            return Err(Self::unsafe_entry(entry, "whiteout of an invalid name"));
        }
        let target = OsStr::from_bytes(rest);
        match self.mode {
            UnpackMode::Snapshot => {
                let dir = self.open_dir(parents, entry, true)?.ok_or_else(|| Self::entry_err(entry)(Errno::NOENT))?;
                self.clear(dir.as_fd(), target, false, entry)?;
                match rfs::mknodat(&dir, target, FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0)) {
                    Ok(()) => Ok(()),
                    Err(Errno::PERM) => {
                        self.overlay_whiteouts = false;
                        self.clear(dir.as_fd(), name, false, entry)?;
                        create_marker(dir.as_fd(), name).map_err(Self::entry_err(entry))
                    }
                    Err(e) => Err(Self::entry_err(entry)(e)),
                }
            }
            UnpackMode::Flatten => {
                let mut path = parents.to_vec();
                path.push(target.to_os_string());
                if self.created.contains(&path) {
                    return Ok(());
                }
                match self.open_dir(parents, entry, false)? {
                    Some(dir) => self.clear(dir.as_fd(), target, false, entry).map(|_| ()),
                    None => Ok(()),
                }
            }
        }
    }

    /// A `.wh..wh..opq` entry for the directory `dir_path`.
    fn opaque(&mut self, dir_path: &[OsString], entry: &str) -> Result<(), UnpackError> {
        let dir = self.open_dir(dir_path, entry, true)?.ok_or_else(|| Self::entry_err(entry)(Errno::NOENT))?;
        match self.mode {
            UnpackMode::Snapshot => match rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty()) {
                Ok(()) => Ok(()),
                Err(Errno::PERM | Errno::NOTSUP) => {
                    self.overlay_whiteouts = false;
                    let marker = OsStr::from_bytes(OPAQUE_MARKER);
                    self.clear(dir.as_fd(), marker, false, entry)?;
                    create_marker(dir.as_fd(), marker).map_err(Self::entry_err(entry))
                }
                Err(e) => Err(Self::entry_err(entry)(e)),
            },
            UnpackMode::Flatten => {
                let children =
                    list_dir(dir.as_fd()).map_err(|source| UnpackError::Entry { entry: entry.into(), source })?;
                for child in children {
                    let mut path = dir_path.to_vec();
                    path.push(child.clone());
                    if !self.created.contains(&path) {
                        self.clear(dir.as_fd(), &child, false, entry)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn own(&self, fd: BorrowedFd<'_>, uid: u64, gid: u64, entry: &str) -> Result<(), UnpackError> {
        if !self.is_root {
            return Ok(());
        }
        let (uid, gid) = ids(uid, gid, entry)?;
        rfs::fchown(fd, Some(uid), Some(gid)).map_err(Self::entry_err(entry))
    }

    fn own_at(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u64, gid: u64, entry: &str) -> Result<(), UnpackError> {
        if !self.is_root {
            return Ok(());
        }
        let (uid, gid) = ids(uid, gid, entry)?;
        rfs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).map_err(Self::entry_err(entry))
    }

    fn set_xattrs(&self, fd: BorrowedFd<'_>, xattrs: &[(String, Vec<u8>)], entry: &str) -> Result<(), UnpackError> {
        for (name, value) in xattrs {
            if name.starts_with("trusted.overlay.") {
                tracing::warn!(entry, xattr = %name, "ignoring an overlayfs attribute from the layer");
                continue;
            }
            match rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e @ (Errno::PERM | Errno::NOTSUP | Errno::ACCESS)) => {
                    tracing::warn!(entry, xattr = %name, error = %shared::error_chain(&e), "extended attribute not set");
                }
                Err(e) => return Err(Self::entry_err(entry)(e)),
            }
        }
        Ok(())
    }

    /// Sets the modes and times of directories, deepest last-created first, now that
    /// nothing more is written under them.
    fn finish(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dirs);
        for dir in dirs.iter().rev() {
            let entry = shown(&dir.path);
            let Some(fd) = self.open_dir(&dir.path, &entry, false)? else { continue };
            rfs::fchmod(&fd, Mode::from_raw_mode(dir.mode)).map_err(Self::entry_err(&entry))?;
            rfs::futimens(&fd, &timestamps(dir.mtime)).map_err(Self::entry_err(&entry))?;
        }
        Ok(())
    }
}

fn ids(uid: u64, gid: u64, entry: &str) -> Result<(rfs::Uid, rfs::Gid), UnpackError> {
    // -1 (u32::MAX) means "leave unchanged" to chown, so it is no id either.
    let uid = u32::try_from(uid)
        .ok()
        .filter(|&u| u != u32::MAX)
        .ok_or_else(|| Extractor::unsafe_entry(entry, format!("user id {uid} out of range")))?;
    let gid = u32::try_from(gid)
        .ok()
        .filter(|&g| g != u32::MAX)
        .ok_or_else(|| Extractor::unsafe_entry(entry, format!("group id {gid} out of range")))?;
    Ok((rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid)))
}

/// Whether the entry's PAX records describe a sparse file (`GNU.sparse.*`, formats 0.0,
/// 0.1 and 1.0), whose data is a map of holes rather than the file's bytes.
fn is_pax_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> bool {
    let Ok(Some(extensions)) = entry.pax_extensions() else { return false };
    extensions.filter_map(Result::ok).any(|ext| ext.key_bytes().starts_with(b"GNU.sparse."))
}

/// The entry's `SCHILY.xattr.*` PAX records as (name, value).
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(extensions)) = entry.pax_extensions() else { return Vec::new() };
    extensions
        .filter_map(Result::ok)
        .filter_map(|ext| {
            let name = ext.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            Some((name, ext.value_bytes().to_vec()))
        })
        .collect()
}

fn create_marker(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map(drop)
}

/// Copies an entry's data with a large buffer.
fn copy(from: &mut impl Read, to: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// The names in a directory, without `.` and `..`.
fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let fd =
        rfs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(io_err)?;
    let mut names = Vec::new();
    // `Dir::new` reads through this descriptor; `read_from` would open the directory again.
    for item in rfs::Dir::new(fd).map_err(io_err)? {
        let item = item.map_err(io_err)?;
        let name = item.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    Ok(names)
}

/// Removes `name` in `dir` and, for a directory, everything under it, never following
/// symbolic links. Directories without full access for their owner are made writable
/// first, so read-only ones go too (the others are left alone: a change of mode is one more
/// journalled write, on the path of every `berth run --rm`).
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io_err);
    }
    if st.st_mode & 0o700 != 0o700 {
        let _ = rfs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let child = rfs::openat(dir, name, flags, Mode::empty()).map_err(io_err)?;
    for entry in list_dir(child.as_fd())? {
        remove_all_at(child.as_fd(), &entry)?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io_err)
}

/// Removes the directory tree at `path` (read-only directories included); a missing path
/// is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cannot remove {}", path.display())));
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let dir = match rfs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove_all_at(dir.as_fd(), name)
}

#[cfg(test)]
mod tests;
