//! Deterministic image layers: a directory tree in, a gzip-compressed tar out, with the
//! digests an image config and manifest need.
//!
//! The same tree always gives the same bytes, whatever order its files were created in and
//! whatever their timestamps: entries are sorted by path (component by component, so a
//! directory is directly followed by its contents), modification times are clamped to
//! [`LayerOptions::mtime_epoch`] (default 0), and nothing that varies between machines is
//! written — no access or change times, no user or group names, no extended attributes.
//! Owner ids and permission bits are those on disk unless [`LayerOptions`] gives the ids.
//! Symbolic links are stored as links, and a file with several names inside the tree is
//! stored once, its other names as hard links to the first in sort order. Sockets are
//! skipped, as `docker build` and `tar` do.
//!
//! The tar stream is ustar; paths or link targets too long for ustar get a PAX extended
//! header (`path`, `linkpath`), as the image spec's layer.md allows. The gzip header is
//! fixed (no file name, modification time 0, OS "unknown").
//!
//! Called by whoever builds images (`builder`, and the end-to-end tests). Everything is
//! streamed: file contents go from disk through the tar and gzip encoders and both hashers
//! to the writer, so a layer is never held in memory. Extraction lives elsewhere.
#![cfg(unix)]

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest::Descriptor;
use crate::media_type;

/// How a layer is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// Modification times later than this (seconds since the Unix epoch) are written as this;
    /// earlier ones are kept. Default 0, so every entry has modification time 0. Set it to
    /// `SOURCE_DATE_EPOCH` for reproducible builds that keep meaningful older times.
    pub mtime_epoch: u64,
    /// The user id written for every entry; `None` (the default) keeps each file's own.
    pub uid: Option<u64>,
    /// The group id written for every entry; `None` (the default) keeps each file's own.
    pub gid: Option<u64>,
}

/// What writing a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The digest of the compressed bytes: the layer blob's digest in a manifest.
    pub digest: Digest,
    /// The size of the compressed bytes.
    pub size: u64,
    /// The digest of the uncompressed tar: the layer's entry in the config's
    /// `rootfs.diff_ids`.
    pub diff_id: Digest,
}

impl Layer {
    /// A descriptor for this layer as an OCI gzip layer
    /// (`application/vnd.oci.image.layer.v1.tar+gzip`).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: media_type::OCI_LAYER_GZIP.to_string(),
            digest: self.digest.clone(),
            size: self.size,
            artifact_type: None,
            annotations: None,
            platform: None,
            urls: None,
        }
    }
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file or directory in the tree could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or directory on disk.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file changed size while it was being archived, so the tar would not match it.
    #[error("{path} changed while it was being archived")]
    Changed {
        /// The file on disk.
        path: PathBuf,
    },
    /// An entry could not be added to the archive (encoding its header or writing it out).
    #[error("cannot add {path} to the layer")]
    Entry {
        /// The entry's path inside the layer.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer could not be written to its destination.
    #[error("cannot write the layer{}", dest.as_ref().map(|p| format!(" to {}", p.display())).unwrap_or_default())]
    Write {
        /// The destination file, when writing to one.
        dest: Option<PathBuf>,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Writes the tree under `root` as a gzip-compressed layer to `out`, returning the layer's
/// digests and the writer (flushed, but not synced). `root` itself is not an entry; its
/// contents are, by paths relative to it.
pub fn write_layer<W: Write>(root: &Path, options: &LayerOptions, out: W) -> Result<(Layer, W), LayerError> {
    let write_err = |source| LayerError::Write { dest: None, source };
    let entries = walk(root)?;

    let compressed = HashingWriter::new(out);
    // GzBuilder's defaults are the fixed header: no name, no comment, mtime 0, OS 255.
    let gzip = GzBuilder::new().write(compressed, Compression::default());
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));

    let mut first_name: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for (rel, meta) in &entries {
        append_file(&mut tar, root, rel, meta, options, &mut first_name)?;
    }

    let uncompressed = tar.into_inner().map_err(write_err)?;
    let (gzip, diff_id, _) = uncompressed.finish();
    let compressed = gzip.finish().map_err(write_err)?;
    let (mut out, digest, size) = compressed.finish();
    out.flush().map_err(write_err)?;
    Ok((Layer { digest, size, diff_id }, out))
}

/// Writes the tree under `root` as a gzip-compressed layer to the file `dest` (created or
/// truncated, and synced to disk before returning).
pub fn write_layer_to_file(root: &Path, options: &LayerOptions, dest: &Path) -> Result<Layer, LayerError> {
    let write_err = |source| LayerError::Write { dest: Some(dest.to_path_buf()), source };
    let file = File::create(dest).map_err(write_err)?;
    let (layer, out) = write_layer(root, options, BufWriter::new(file)).map_err(|e| match e {
        LayerError::Write { dest: None, source } => write_err(source),
        other => other,
    })?;
    let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    Ok(layer)
}

/// Every path under `root` (relative to it) with its metadata, not following links, sorted.
fn walk(root: &Path) -> Result<Vec<(PathBuf, Metadata)>, LayerError> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let abs = root.join(&dir);
        let read_err = |source| LayerError::Read { path: abs.clone(), source };
        for item in fs::read_dir(&abs).map_err(read_err)? {
            let item = item.map_err(read_err)?;
            let rel = dir.join(item.file_name());
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(|source| LayerError::Read { path, source })?;
            if meta.file_type().is_socket() {
                continue;
            }
            if meta.is_dir() {
                pending.push(rel.clone());
            }
            found.push((rel, meta));
        }
    }
    // `Path`'s order compares component by component: "a", "a/b", "a-b".
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Appends one file of the tree. `first_name` maps (device, inode) of multiply-linked files to the
/// first name they were archived under, so later names become hard links.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    meta: &Metadata,
    options: &LayerOptions,
    first_name: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), LayerError> {
    let abs = root.join(rel);
    let entry_err = |source| LayerError::Entry { path: rel.to_path_buf(), source };
    let file_type = meta.file_type();

    let mut header = Header::new_ustar();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(options.uid.unwrap_or(u64::from(meta.uid())));
    header.set_gid(options.gid.unwrap_or(u64::from(meta.gid())));
    header.set_mtime(clamp_mtime(meta.mtime(), options.mtime_epoch));
    header.set_size(0);
    let mut pax = PaxRecords::new();

    if !file_type.is_dir() && meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(target) = first_name.get(&key) {
            header.set_entry_type(EntryType::Link);
            set_link(&mut header, target.as_os_str().as_bytes(), &mut pax);
            set_path(&mut header, rel.as_os_str().as_bytes(), &mut pax);
            return append_entry(tar, &header, &pax, io::empty()).map_err(entry_err);
        }
        first_name.insert(key, rel.to_path_buf());
    }
    set_path(&mut header, rel.as_os_str().as_bytes(), &mut pax);

    if file_type.is_file() {
        header.set_entry_type(EntryType::Regular);
        header.set_size(meta.len());
        let file = File::open(&abs).map_err(|source| LayerError::Read { path: abs.clone(), source })?;
        let mut reader = ExactReader::new(file, meta.len());
        let result = append_entry(tar, &header, &pax, &mut reader);
        if reader.changed() {
            return Err(LayerError::Changed { path: abs });
        }
        return result.map_err(entry_err);
    }

    if file_type.is_dir() {
        header.set_entry_type(EntryType::Directory);
    } else if file_type.is_symlink() {
        header.set_entry_type(EntryType::Symlink);
        let target = fs::read_link(&abs).map_err(|source| LayerError::Read { path: abs.clone(), source })?;
        set_link(&mut header, target.as_os_str().as_bytes(), &mut pax);
    } else if file_type.is_fifo() {
        header.set_entry_type(EntryType::Fifo);
    } else if file_type.is_char_device() || file_type.is_block_device() {
        header.set_entry_type(if file_type.is_char_device() { EntryType::Char } else { EntryType::Block });
        let (major, minor) = dev_major_minor(meta.rdev());
        header.set_device_major(major).map_err(entry_err)?;
        header.set_device_minor(minor).map_err(entry_err)?;
    }
    append_entry(tar, &header, &pax, io::empty()).map_err(entry_err)
}

/// PAX records of one entry, written as an extended header before it: `path` and
/// `linkpath` when ustar's fields are too short for them.
pub type PaxRecords = Vec<(&'static str, Vec<u8>)>;

/// Appends one entry to `tar`: the PAX extended header first when there are records, then
/// the header (its checksum set here) and `data`. The builder's entry writer uses it too, so
/// both kinds of layer encode entries alike.
pub fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &Header,
    pax: &[(&'static str, Vec<u8>)],
    data: impl Read,
) -> io::Result<()> {
    if !pax.is_empty() {
        let records: Vec<u8> = pax.iter().flat_map(|(key, value)| pax_record(key, value)).collect();
        let mut pax_header = Header::new_ustar();
        pax_header.set_entry_type(EntryType::XHeader);
        pax_header.set_mode(0o644);
        pax_header.set_mtime(0);
        pax_header.set_size(records.len() as u64);
        pax_header.set_path("PaxHeader")?;
        pax_header.set_cksum();
        tar.append(&pax_header, records.as_slice())?;
    }
    let mut header = header.clone();
    header.set_cksum();
    tar.append(&header, data)
}

/// Sets the header's path byte for byte (a trailing `/` is kept; nothing is normalised),
/// split into ustar's prefix and name at a `/` when it is longer than 100 bytes, or, when
/// no split fits, a truncated stand-in plus a PAX `path` record.
pub fn set_path(header: &mut Header, path: &[u8], pax: &mut PaxRecords) {
    let Some(ustar) = header.as_ustar_mut() else { return };
    ustar.prefix.fill(0);
    ustar.name.fill(0);
    if path.len() <= ustar.name.len() {
        ustar.name[..path.len()].copy_from_slice(path);
        return;
    }
    // Prefix (at most 155 bytes) and name (at most 100), split at a slash.
    let split = (1..path.len()).rev().find(|&i| {
        path[i] == b'/' && i <= ustar.prefix.len() && path.len() - i - 1 <= ustar.name.len() && i + 1 < path.len()
    });
    match split {
        Some(i) => {
            ustar.prefix[..i].copy_from_slice(&path[..i]);
            ustar.name[..path.len() - i - 1].copy_from_slice(&path[i + 1..]);
        }
        None => {
            let n = ustar.name.len();
            ustar.name.copy_from_slice(&path[..n]);
            pax.push(("path", path.to_vec()));
        }
    }
}

/// Sets the header's link target byte for byte (a symlink's target is kept as written), or,
/// when it is longer than 100 bytes, a truncated stand-in plus a PAX `linkpath` record.
pub fn set_link(header: &mut Header, target: &[u8], pax: &mut PaxRecords) {
    let linkname = &mut header.as_old_mut().linkname;
    linkname.fill(0);
    let n = target.len().min(linkname.len());
    linkname[..n].copy_from_slice(&target[..n]);
    if target.len() > linkname.len() {
        pax.push(("linkpath", target.to_vec()));
    }
}

/// One PAX record, `"<length> <key>=<value>\n"`, where the length counts the whole record,
/// its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while rest + len.to_string().len() != len {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// The modification time to write: the file's own, unless it is negative or after `epoch`.
fn clamp_mtime(mtime: i64, epoch: u64) -> u64 {
    u64::try_from(mtime).unwrap_or(0).min(epoch)
}

/// Splits a Linux `st_rdev` into major and minor numbers (glibc's `gnu_dev_major`/`minor`).
fn dev_major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Reads exactly the size a file had when it was listed, noting whether it turned out
/// shorter or longer, so a file that changes underneath never produces an entry whose size
/// lies: the read fails, and [`ExactReader::changed`] tells why.
pub struct ExactReader<R> {
    inner: R,
    remaining: u64,
    changed: bool,
}

impl<R> ExactReader<R> {
    /// Reads `size` bytes of `inner`.
    pub fn new(inner: R, size: u64) -> Self {
        ExactReader { inner, remaining: size, changed: false }
    }

    /// True when the source turned out shorter or longer than its size.
    pub fn changed(&self) -> bool {
        self.changed
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One more byte means the file grew.
            if self.inner.read(&mut [0u8])? != 0 {
                self.changed = true;
                return Err(io::Error::other("file grew while being archived"));
            }
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            self.changed = true;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being archived"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::new(Algorithm::Sha256), count: 0 }
    }

    fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::{Duration, SystemTime};

    use flate2::read::GzDecoder;
    use proptest::prelude::*;

    /// What a test needs to know about one archived entry.
    struct Seen {
        path: String,
        kind: EntryType,
        mtime: u64,
        mode: u32,
        uid: u64,
        gid: u64,
        link: Option<String>,
        data: Vec<u8>,
    }

    fn read_entries(gz: &[u8]) -> Vec<Seen> {
        let mut archive = tar::Archive::new(GzDecoder::new(gz));
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push(Seen {
                path,
                kind: h.entry_type(),
                mtime: h.mtime().unwrap(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link,
                data,
            });
        }
        out
    }

    fn decompress(gz: &[u8]) -> Vec<u8> {
        let mut tar = Vec::new();
        GzDecoder::new(gz).read_to_end(&mut tar).unwrap();
        tar
    }

    fn set_mtime(path: &Path, secs: u64) {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        File::open(path).unwrap().set_modified(t).unwrap();
    }

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), b"not really busybox").unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("busybox", root.join("bin/sh")).unwrap();
        fs::write(root.join("a-file"), b"hello").unwrap();
        fs::hard_link(root.join("a-file"), root.join("z-link")).unwrap();
        fs::create_dir(root.join("empty")).unwrap();
        fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn writes_a_sorted_normalised_tar_with_matching_digests() {
        let dir = sample_tree();
        set_mtime(&dir.path().join("a-file"), 1_000_000);
        let options = LayerOptions { uid: Some(0), gid: Some(0), ..LayerOptions::default() };
        let (layer, gz) = write_layer(dir.path(), &options, Vec::new()).unwrap();

        assert_eq!(layer.size, gz.len() as u64);
        assert_eq!(layer.digest, Digest::sha256_of(&gz));
        assert_eq!(layer.diff_id, Digest::sha256_of(&decompress(&gz)));
        assert_eq!(layer.descriptor().media_type, media_type::OCI_LAYER_GZIP);

        // Fixed gzip header: magic, deflate, no flags (so no name), mtime 0, OS unknown.
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
        assert_eq!(gz[9], 255);

        let entries = read_entries(&gz);
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a-file", "bin", "bin/busybox", "bin/sh", "empty", "z-link"]);
        for e in &entries {
            assert_eq!((e.mtime, e.uid, e.gid), (0, 0, 0), "{}: mtime, uid, gid", e.path);
        }
        let by_name: BTreeMap<_, _> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
        assert_eq!(by_name["bin/busybox"].mode, 0o4755);
        assert_eq!(by_name["bin/busybox"].data, b"not really busybox");
        assert_eq!(by_name["bin/sh"].kind, EntryType::Symlink);
        assert_eq!(by_name["bin/sh"].link.as_deref(), Some("busybox"));
        assert_eq!(by_name["empty"].kind, EntryType::Directory);
        assert_eq!(by_name["empty"].mode, 0o700);
        assert_eq!(by_name["a-file"].kind, EntryType::Regular);
        assert_eq!(by_name["z-link"].kind, EntryType::Link);
        assert_eq!(by_name["z-link"].link.as_deref(), Some("a-file"));

        // No user or group names in any header.
        let tar = decompress(&gz);
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            assert_eq!(entry.header().username_bytes(), Some(&b""[..]));
            assert_eq!(entry.header().groupname_bytes(), Some(&b""[..]));
        }
    }

    #[test]
    fn clamps_mtimes_to_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("old"), b"").unwrap();
        fs::write(dir.path().join("new"), b"").unwrap();
        set_mtime(&dir.path().join("old"), 100);
        set_mtime(&dir.path().join("new"), 5_000);
        let options = LayerOptions { mtime_epoch: 1_000, ..LayerOptions::default() };
        let (_, gz) = write_layer(dir.path(), &options, Vec::new()).unwrap();
        let mtimes: Vec<_> = read_entries(&gz).into_iter().map(|e| (e.path, e.mtime)).collect();
        assert_eq!(mtimes, [("new".to_string(), 1_000), ("old".to_string(), 100)]);
    }

    #[test]
    fn long_paths_and_link_targets_use_pax() {
        let dir = tempfile::tempdir().unwrap();
        let deep: PathBuf = (0..30).map(|i| format!("directory{i:02}")).collect();
        fs::create_dir_all(dir.path().join(&deep)).unwrap();
        let long_name = "f".repeat(150);
        fs::write(dir.path().join(&deep).join(&long_name), b"deep").unwrap();
        let target = deep.join(&long_name);
        symlink(&target, dir.path().join("link")).unwrap();

        let (layer, gz) = write_layer(dir.path(), &LayerOptions::default(), Vec::new()).unwrap();
        let entries = read_entries(&gz);
        let file = entries.iter().find(|e| e.data == b"deep").unwrap();
        assert_eq!(Path::new(&file.path), target);
        let link = entries.iter().find(|e| e.path == "link").unwrap();
        assert_eq!(link.link.as_deref().map(Path::new), Some(target.as_path()));
        assert_eq!(layer.diff_id, Digest::sha256_of(&decompress(&gz)));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        // 9 bytes of text + 1 digit = 10 would be wrong: the length itself needs 2 digits.
        let r = pax_record("path", &[b'x'; 91]);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 path="));
    }

    #[test]
    fn writes_to_a_file() {
        let dir = sample_tree();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("layer.tar.gz");
        let layer = write_layer_to_file(dir.path(), &LayerOptions::default(), &dest).unwrap();
        let bytes = fs::read(&dest).unwrap();
        assert_eq!(layer.digest, Digest::sha256_of(&bytes));
        assert_eq!(layer.size, bytes.len() as u64);
    }

    #[test]
    fn reports_missing_root() {
        let err = write_layer(Path::new("/nonexistent/berth"), &LayerOptions::default(), Vec::new()).unwrap_err();
        assert!(matches!(err, LayerError::Read { ref path, .. } if path.ends_with("berth")), "{err}");
    }

    /// One node of a generated tree.
    #[derive(Debug, Clone)]
    enum Node {
        File(Vec<u8>, u32),
        Dir(u32),
        Symlink(String),
    }

    fn node() -> impl Strategy<Value = Node> {
        prop_oneof![
            (proptest::collection::vec(any::<u8>(), 0..64), prop_oneof![Just(0o644u32), Just(0o755), Just(0o600)])
                .prop_map(|(c, m)| Node::File(c, m)),
            prop_oneof![Just(0o755u32), Just(0o700)].prop_map(Node::Dir),
            "[a-c./]{1,8}".prop_map(Node::Symlink),
        ]
    }

    /// A consistent tree: no entry below a path that is not a directory.
    fn tree() -> impl Strategy<Value = Vec<(String, Node)>> {
        proptest::collection::btree_map("[a-c]{1,2}(/[a-c]{1,2}){0,2}", node(), 1..24).prop_map(|map| {
            let keep: Vec<(String, Node)> = map
                .iter()
                .filter(|(path, _)| {
                    let mut ancestor = Path::new(path.as_str()).parent();
                    while let Some(a) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
                        if matches!(map.get(a.to_str().unwrap()), Some(Node::File(..) | Node::Symlink(_))) {
                            return false;
                        }
                        ancestor = a.parent();
                    }
                    true
                })
                .map(|(p, n)| (p.clone(), n.clone()))
                .collect();
            keep
        })
    }

    /// Creates `nodes` under `root` in the order given by `order`, hard links last, then
    /// gives every entry the matching time from `mtimes`.
    fn build(root: &Path, nodes: &[(String, Node)], order: &[usize], links: &[(String, usize)], mtimes: &[u64]) {
        for &i in order {
            let (path, node) = &nodes[i];
            let abs = root.join(path);
            fs::create_dir_all(abs.parent().unwrap()).unwrap();
            match node {
                Node::File(content, mode) => {
                    fs::write(&abs, content).unwrap();
                    fs::set_permissions(&abs, fs::Permissions::from_mode(*mode)).unwrap();
                }
                Node::Dir(_) => fs::create_dir_all(&abs).unwrap(),
                Node::Symlink(target) => symlink(target, &abs).unwrap(),
            }
        }
        let files: Vec<&String> = nodes.iter().filter(|(_, n)| matches!(n, Node::File(..))).map(|(p, _)| p).collect();
        for (name, which) in links {
            if !files.is_empty() {
                fs::hard_link(root.join(files[which % files.len()]), root.join(name)).unwrap();
            }
        }
        // Modes and times of directories last: creating children changes a directory's
        // times, and a read-only directory could not be filled.
        for (i, (path, node)) in nodes.iter().enumerate() {
            let abs = root.join(path);
            if !matches!(node, Node::Symlink(_)) {
                set_mtime(&abs, mtimes[i % mtimes.len()]);
            }
            if let Node::Dir(mode) = node {
                fs::set_permissions(&abs, fs::Permissions::from_mode(*mode)).unwrap();
            }
        }
    }

    /// A temporary directory on tmpfs when there is one: tmpfs lists a directory in the
    /// order its entries were created (ext4 lists them by name hash), so creating the same
    /// tree in another order really does change what `read_dir` returns.
    fn creation_ordered_tempdir() -> tempfile::TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(dir) = tempfile::tempdir_in(shm) {
                return dir;
            }
        }
        tempfile::tempdir().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn same_tree_same_layer(
            (nodes, order) in tree().prop_flat_map(|nodes| {
                let order: Vec<usize> = (0..nodes.len()).collect();
                (Just(nodes), Just(order).prop_shuffle())
            }),
            links in proptest::collection::vec(("link-[0-9]", any::<usize>()), 0..3)
                .prop_map(|l| l.into_iter().collect::<BTreeMap<_, _>>().into_iter().collect::<Vec<_>>()),
            mtimes_a in proptest::collection::vec(0u64..4_000_000_000, 1..8),
            mtimes_b in proptest::collection::vec(0u64..4_000_000_000, 1..8),
        ) {
            let (a, b) = (creation_ordered_tempdir(), creation_ordered_tempdir());
            let forward: Vec<usize> = (0..nodes.len()).collect();
            build(a.path(), &nodes, &forward, &links, &mtimes_a);
            build(b.path(), &nodes, &order, &links, &mtimes_b);
            let (layer_a, gz_a) = write_layer(a.path(), &LayerOptions::default(), Vec::new()).unwrap();
            let (layer_b, gz_b) = write_layer(b.path(), &LayerOptions::default(), Vec::new()).unwrap();
            prop_assert_eq!(&layer_a, &layer_b);
            prop_assert_eq!(gz_a, gz_b);
        }
    }
}
