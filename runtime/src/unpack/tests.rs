//! Extraction tests: hand-made hostile layers (each escape kind, with a sentinel outside
//! the destination that must stay untouched), whiteouts in both modes, metadata, formats,
//! and round trips through `shared::layer`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;
use tar::{EntryType, Header};

use super::*;

/// Builds tars entry by entry, writing names byte for byte (so `..` and absolute paths,
/// which `tar::Builder` refuses, can be made).
struct Tar {
    out: Vec<u8>,
}

impl Tar {
    fn new() -> Tar {
        Tar { out: Vec::new() }
    }

    fn raw(mut self, kind: EntryType, path: &str, link: Option<&str>, data: &[u8], mode: u32) -> Tar {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name.fill(0);
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                old.linkname.fill(0);
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Tar {
        self.raw(EntryType::Regular, path, None, data, 0o644)
    }

    fn dir(self, path: &str) -> Tar {
        self.raw(EntryType::Directory, path, None, b"", 0o755)
    }

    fn symlink(self, path: &str, target: &str) -> Tar {
        self.raw(EntryType::Symlink, path, Some(target), b"", 0o777)
    }

    fn hardlink(self, path: &str, target: &str) -> Tar {
        self.raw(EntryType::Link, path, Some(target), b"", 0o644)
    }

    /// A PAX header with `records` for the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Tar {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while rest + len.to_string().len() != len {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.raw(EntryType::XHeader, "PaxHeader", None, &body, 0o644)
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

/// A temporary directory with a sentinel file and directory beside the destination.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("sentinel"), b"original").unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::create_dir(dir.path().join("dest")).unwrap();
        Sandbox { dir }
    }

    fn dest(&self) -> std::path::PathBuf {
        self.dir.path().join("dest")
    }

    fn outside(&self) -> String {
        self.dir.path().join("outside").display().to_string()
    }

    fn sentinel(&self) -> String {
        self.dir.path().join("sentinel").display().to_string()
    }

    /// Fails unless the sentinel is unchanged and nothing appeared outside `dest`.
    fn assert_untouched(&self) {
        assert_eq!(fs::read(self.dir.path().join("sentinel")).unwrap(), b"original");
        let names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["dest", "outside", "sentinel"]);
        assert_eq!(fs::read_dir(self.dir.path().join("outside")).unwrap().count(), 0, "something was written outside");
    }

    fn unpack(&self, tar: &[u8], mode: UnpackMode) -> Result<Unpacked, UnpackError> {
        unpack(tar, &self.dest(), mode, None)
    }
}

fn refused(result: Result<Unpacked, UnpackError>, entry: &str, reason: &str) {
    match result {
        Err(UnpackError::Unsafe { entry: e, reason: r }) => {
            assert_eq!(e, entry);
            assert!(r.contains(reason), "reason {r:?} does not mention {reason:?}");
            let message = UnpackError::Unsafe { entry: e, reason: r }.to_string();
            assert!(message.contains(entry), "{message}");
        }
        other => panic!("expected {entry:?} to be refused ({reason}), got {other:?}"),
    }
}

#[test]
fn refuses_parent_components() {
    for path in ["../sentinel", "a/../../sentinel", "./../outside/x", "a/b/../../../outside/x"] {
        let s = Sandbox::new();
        let tar = Tar::new().dir("a").file(path, b"evil").finish();
        refused(s.unpack(&tar, UnpackMode::Snapshot), path, "\"..\"");
        s.assert_untouched();
    }
}

#[test]
fn refuses_absolute_paths() {
    let s = Sandbox::new();
    let path = s.sentinel();
    let tar = Tar::new().file(&path, b"evil").finish();
    refused(s.unpack(&tar, UnpackMode::Snapshot), &path, "absolute");
    s.assert_untouched();
}

#[test]
fn refuses_writing_through_a_planted_symlink() {
    let s = Sandbox::new();
    // Absolute and relative links to outside, then an entry under each.
    for (target, entry) in
        [(s.outside(), "link/x"), ("../outside".to_string(), "link/x"), ("..".to_string(), "link/sentinel")]
    {
        let tar = Tar::new().symlink("link", &target).file(entry, b"evil").finish();
        refused(s.unpack(&tar, UnpackMode::Snapshot), entry, "symbolic link \"link\"");
        s.assert_untouched();
        fs::remove_dir_all(s.dest()).unwrap();
        fs::create_dir(s.dest()).unwrap();
    }
    // A directory entry and a hard link through the link are refused the same way.
    let tar = Tar::new().symlink("d", &s.outside()).dir("d/sub").finish();
    refused(s.unpack(&tar, UnpackMode::Snapshot), "d/sub", "symbolic link");
    s.assert_untouched();
}

#[test]
fn replaces_a_symlink_instead_of_writing_through_it() {
    let s = Sandbox::new();
    let tar = Tar::new().symlink("f", &s.sentinel()).file("f", b"new content").finish();
    s.unpack(&tar, UnpackMode::Snapshot).unwrap();
    s.assert_untouched();
    let meta = fs::symlink_metadata(s.dest().join("f")).unwrap();
    assert!(meta.is_file());
    assert_eq!(fs::read(s.dest().join("f")).unwrap(), b"new content");
    // Symbolic links may point anywhere; they are kept, not followed.
    let s = Sandbox::new();
    let tar = Tar::new().symlink("abs", "/etc/passwd").symlink("rel", "../../../etc").finish();
    s.unpack(&tar, UnpackMode::Snapshot).unwrap();
    assert_eq!(fs::read_link(s.dest().join("abs")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(fs::read_link(s.dest().join("rel")).unwrap(), Path::new("../../../etc"));
}

#[test]
fn refuses_hard_links_that_point_out() {
    let s = Sandbox::new();
    let sentinel = s.sentinel();
    for (target, reason) in [
        ("../sentinel", "\"..\""),
        (sentinel.as_str(), "absolute"),
        ("link/sentinel", "symbolic link \"link\""),
        ("missing", "does not exist"),
        ("dir", "directory"),
    ] {
        let tar = Tar::new().symlink("link", "..").dir("dir").hardlink("hl", target).finish();
        refused(s.unpack(&tar, UnpackMode::Snapshot), "hl", reason);
        s.assert_untouched();
        assert_eq!(fs::metadata(s.dir.path().join("sentinel")).unwrap().nlink(), 1, "the sentinel got a second name");
        fs::remove_dir_all(s.dest()).unwrap();
        fs::create_dir(s.dest()).unwrap();
    }
}

#[test]
fn refuses_symlinks_planted_in_a_lower_layer_when_flattening() {
    let s = Sandbox::new();
    let lower = Tar::new().symlink("etc", &s.outside()).symlink("up", "..").finish();
    s.unpack(&lower, UnpackMode::Flatten).unwrap();
    let upper = Tar::new().dir("etc").file("etc/passwd", b"evil").finish();
    // A directory entry replaces the link; nothing goes outside.
    s.unpack(&upper, UnpackMode::Flatten).unwrap();
    s.assert_untouched();
    assert!(fs::symlink_metadata(s.dest().join("etc")).unwrap().is_dir());
    // Writing under the link without replacing it is refused.
    let upper = Tar::new().file("up/sentinel", b"evil").finish();
    refused(s.unpack(&upper, UnpackMode::Flatten), "up/sentinel", "symbolic link \"up\"");
    // So is a whiteout through it (it would delete outside).
    let upper = Tar::new().file("up/.wh.sentinel", b"").finish();
    refused(s.unpack(&upper, UnpackMode::Flatten), "up/.wh.sentinel", "symbolic link \"up\"");
    let upper = Tar::new().file("up/.wh..wh..opq", b"").finish();
    refused(s.unpack(&upper, UnpackMode::Flatten), "up/.wh..wh..opq", "symbolic link \"up\"");
    s.assert_untouched();
}

#[test]
fn refuses_bad_whiteouts() {
    let s = Sandbox::new();
    for name in [".wh..", ".wh...", ".wh."] {
        let tar = Tar::new().file(name, b"").finish();
        refused(s.unpack(&tar, UnpackMode::Flatten), name, "invalid name");
    }
    s.assert_untouched();
}

#[test]
fn stores_whiteouts_in_overlay_form() {
    let s = Sandbox::new();
    let tar = Tar::new()
        .dir("a")
        .file("a/.wh.gone", b"")
        .dir("b")
        .file("b/.wh..wh..opq", b"")
        .file("b/kept", b"k")
        .file(".wh..wh.plnk", b"")
        .finish();
    let unpacked = s.unpack(&tar, UnpackMode::Snapshot).unwrap();
    let dest = s.dest();
    if unpacked.overlay_whiteouts {
        let gone = fs::symlink_metadata(dest.join("a/gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        let mut value = [0u8; 8];
        let n = rfs::getxattr(dest.join("b"), OPAQUE_XATTR, &mut value[..]).unwrap();
        assert_eq!(&value[..n], b"y");
        assert!(!dest.join("a/.wh.gone").exists());
        assert!(!dest.join("b/.wh..wh..opq").exists());
    } else {
        // Without the privileges for overlay whiteouts the markers stay as files.
        assert!(dest.join("a/.wh.gone").is_file());
        assert!(dest.join("b/.wh..wh..opq").is_file());
    }
    assert_eq!(fs::read(dest.join("b/kept")).unwrap(), b"k");
    assert!(!dest.join(".wh..wh.plnk").exists());
    // An overlay attribute carried by the layer itself is not applied.
    let s = Sandbox::new();
    let tar = Tar::new().pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")]).dir("c").finish();
    s.unpack(&tar, UnpackMode::Snapshot).unwrap();
    let mut value = [0u8; 8];
    assert!(rfs::getxattr(s.dest().join("c"), OPAQUE_XATTR, &mut value[..]).is_err());
}

#[test]
fn applies_whiteouts_when_flattening() {
    let s = Sandbox::new();
    let lower = Tar::new()
        .dir("a")
        .file("a/x", b"x")
        .file("a/y", b"y")
        .dir("b")
        .file("b/z", b"z")
        .dir("b/deep")
        .file("b/deep/w", b"w")
        .dir("gone")
        .file("gone/inside", b"i")
        .finish();
    s.unpack(&lower, UnpackMode::Flatten).unwrap();
    let upper = Tar::new()
        .file("a/.wh.x", b"")
        .file("b/new", b"n")
        .file("b/made/under", b"u")
        .file("b/.wh..wh..opq", b"")
        .file(".wh.gone", b"")
        .file("a/.wh.never-existed", b"")
        .file("missing-dir/.wh.x", b"")
        .finish();
    s.unpack(&upper, UnpackMode::Flatten).unwrap();
    let dest = s.dest();
    assert!(!dest.join("a/x").exists());
    assert_eq!(fs::read(dest.join("a/y")).unwrap(), b"y");
    assert!(!dest.join("b/z").exists());
    assert!(!dest.join("b/deep").exists());
    assert_eq!(fs::read(dest.join("b/new")).unwrap(), b"n", "the opaque marker hid this layer's own file");
    assert_eq!(fs::read(dest.join("b/made/under")).unwrap(), b"u", "the opaque marker hid this layer's own directory");
    assert!(!dest.join("gone").exists());
    assert!(!dest.join("a/.wh.x").exists());
    s.assert_untouched();
}

#[test]
fn keeps_metadata() {
    let s = Sandbox::new();
    let tar = Tar::new()
        .raw(EntryType::Directory, "ro", None, b"", 0o555)
        .raw(EntryType::Regular, "ro/suid", None, b"#!", 0o4755)
        .raw(EntryType::Char, "null", None, b"", 0o666)
        .raw(EntryType::Fifo, "pipe", None, b"", 0o600)
        .pax(&[("SCHILY.xattr.user.note", b"hello")])
        .file("tagged", b"t")
        .file("orig", b"same inode")
        .hardlink("again", "orig")
        .finish();
    s.unpack(&tar, UnpackMode::Snapshot).unwrap();
    let dest = s.dest();
    let ro = fs::metadata(dest.join("ro")).unwrap();
    assert_eq!(ro.permissions().mode() & 0o7777, 0o555);
    assert_eq!(ro.mtime(), 1_000_000);
    let suid = fs::metadata(dest.join("ro/suid")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(suid.mtime(), 1_000_000);
    assert!(fs::symlink_metadata(dest.join("pipe")).unwrap().file_type().is_fifo());
    if shared::testing::require_root("unpack::tests::keeps_metadata (devices, owners)") {
        assert!(fs::symlink_metadata(dest.join("null")).unwrap().file_type().is_char_device());
        assert_eq!(suid.uid(), 0);
    }
    let mut value = [0u8; 16];
    if let Ok(n) = rfs::getxattr(dest.join("tagged"), "user.note", &mut value[..]) {
        assert_eq!(&value[..n], b"hello");
    }
    let (a, b) = (fs::metadata(dest.join("orig")).unwrap(), fs::metadata(dest.join("again")).unwrap());
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn checks_the_diff_id_and_reads_every_format() {
    let tar = Tar::new().dir("d").file("d/f", &[7u8; 5000]).finish();
    let diff_id = Digest::sha256_of(&tar);
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zstd = ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    // Two zstd frames, as some tools write, decode as one stream.
    let (first, second) = tar.split_at(1024);
    let two_frames = [
        ruzstd::encoding::compress_to_vec(first, ruzstd::encoding::CompressionLevel::Fastest),
        ruzstd::encoding::compress_to_vec(second, ruzstd::encoding::CompressionLevel::Fastest),
    ]
    .concat();
    for (name, blob) in [("tar", &tar), ("gzip", &gzip), ("zstd", &zstd), ("zstd frames", &two_frames)] {
        let s = Sandbox::new();
        let unpacked = unpack(blob.as_slice(), &s.dest(), UnpackMode::Snapshot, Some(&diff_id))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(unpacked.diff_id, diff_id, "{name}");
        assert_eq!(unpacked.content_bytes, 5000);
        assert_eq!(fs::read(s.dest().join("d/f")).unwrap(), vec![7u8; 5000], "{name}");
    }
    let s = Sandbox::new();
    let wrong = Digest::sha256_of(b"not this");
    assert!(matches!(
        unpack(gzip.as_slice(), &s.dest(), UnpackMode::Snapshot, Some(&wrong)),
        Err(UnpackError::DiffId { .. })
    ));
    // Garbage is a read error, not a panic.
    let s = Sandbox::new();
    assert!(unpack(&[0x1f, 0x8b, 0, 1, 2, 3][..], &s.dest(), UnpackMode::Snapshot, None).is_err());
}

/// A GNU sparse entry (`S`) `path` of `real_size` bytes: one byte of data at its end, the
/// rest a hole, so the tar stays tiny however large the file it declares.
fn gnu_sparse_tar(path: &str, real_size: u64) -> Vec<u8> {
    let mut h = Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_mtime(0);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    gnu.sparse[0].set_offset(real_size - 1);
    gnu.sparse[0].set_length(1);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.push(b'x');
    out.extend(std::iter::repeat_n(0u8, 511 + 1024));
    out
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn refuses_sparse_files_before_writing_them() {
    for mode in [UnpackMode::Snapshot, UnpackMode::Flatten] {
        // GNU's old format: 2 GiB declared by a 2.5 KiB tar.
        let s = Sandbox::new();
        refused(s.unpack(&gnu_sparse_tar("bomb", 2 << 30), mode), "bomb", "sparse");
        assert!(is_empty(&s.dest()), "a refused sparse file left something behind");
        // PAX formats 0.1 and 1.0: a regular entry whose records say it is sparse.
        for records in [
            &[("GNU.sparse.offset", &b"0"[..]), ("GNU.sparse.numbytes", b"1"), ("GNU.sparse.size", b"1000000")][..],
            &[("GNU.sparse.major", &b"1"[..]), ("GNU.sparse.minor", b"0"), ("GNU.sparse.realsize", b"1000000")][..],
        ] {
            let s = Sandbox::new();
            let tar = Tar::new().file("plain", b"ok").pax(records).file("GNUSparseFile.0/pax", b"1\n0\n1\nx").finish();
            refused(s.unpack(&tar, mode), "GNUSparseFile.0/pax", "sparse");
        }
    }
}

/// Unpacks `tar` into `dest` as if its file system had `free` bytes free before it, less
/// what the files in `dest` take; counts the asks.
fn unpack_with_free(tar: &[u8], dest: &Path, free: u64, asked: &std::cell::Cell<u32>) -> Result<Unpacked, UnpackError> {
    let root = rfs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let space = SpaceGuard::new(|| {
        asked.set(asked.get() + 1);
        let used: u64 = fs::read_dir(dest).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        Ok(free - used)
    });
    unpack_within(tar, root, UnpackMode::Snapshot, None, space)
}

#[test]
fn stops_before_the_disk_is_full() {
    let asked = std::cell::Cell::new(0);
    let small = Tar::new().file("a", &[1; 300]).file("b", &[2; 300]).file("c", &[3; 300]).finish();
    // 1000 bytes beyond the reserve: three files of 300 fit, with one look at the disk.
    let s = Sandbox::new();
    unpack_with_free(&small, &s.dest(), DISK_RESERVE + 1000, &asked).unwrap();
    assert_eq!(fs::read(s.dest().join("c")).unwrap(), [3; 300]);
    assert_eq!(asked.get(), 1, "the free space was asked for more often than needed");
    // 500 beyond it: the second file would eat into the reserve, and is not written.
    let s = Sandbox::new();
    match unpack_with_free(&small, &s.dest(), DISK_RESERVE + 500, &asked) {
        Err(e @ UnpackError::NoSpace { .. }) => {
            let message = e.to_string();
            assert!(message.contains("\"b\"") && message.contains("300 bytes"), "{message}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(!s.dest().join("b").exists(), "the file that did not fit was written");
    // A real file system has room for a small layer.
    let s = Sandbox::new();
    s.unpack(&small, UnpackMode::Snapshot).unwrap();
}

#[test]
fn keeps_file_capabilities() {
    if !shared::testing::require_root("unpack::tests::keeps_file_capabilities") {
        return;
    }
    // vfs_cap_data revision 2, effective, permitted: CAP_NET_RAW (13).
    let mut cap = vec![0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00];
    cap.extend([0u8; 12]);
    for mode in [UnpackMode::Snapshot, UnpackMode::Flatten] {
        let s = Sandbox::new();
        // Owned by someone else than the unpacking user, so its owner really changes.
        let mut tar = Tar::new().pax(&[("SCHILY.xattr.security.capability", &cap)]);
        let mut h = Header::new_gnu();
        h.set_path("ping").unwrap();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o755);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(2);
        h.set_cksum();
        tar.out.extend_from_slice(h.as_bytes());
        tar.out.extend_from_slice(b"#!");
        tar.out.extend([0u8; 510]);
        s.unpack(&tar.finish(), mode).unwrap();
        let mut value = [0u8; 64];
        let n = rfs::getxattr(s.dest().join("ping"), "security.capability", &mut value[..])
            .expect("the file capability was lost");
        assert_eq!(&value[..n], &cap[..]);
        assert_eq!(fs::metadata(s.dest().join("ping")).unwrap().uid(), 1000);
    }
}

#[test]
fn removes_read_only_trees() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    fs::write(tree.join("a/b/f"), b"x").unwrap();
    fs::set_permissions(tree.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
    remove_tree(&tree).unwrap();
    assert!(!tree.exists());
    remove_tree(&tree).unwrap();
}

/// One node of a generated tree: what `shared::layer` writes and `unpack` must restore.
#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, u32),
    Dir(u32),
    Symlink(String),
}

fn build(root: &Path, nodes: &BTreeMap<String, Node>) {
    for (name, node) in nodes {
        let path = root.join(name);
        match node {
            Node::File(data, mode) => {
                fs::write(&path, data).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Dir(mode) => {
                fs::create_dir(&path).unwrap();
                fs::write(path.join("inner"), name.as_bytes()).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
        }
    }
}

/// Everything about a tree that a layer keeps, by relative path.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_string()
            } else if meta.file_type().is_symlink() {
                format!("link->{}", fs::read_link(&path).unwrap().display())
            } else {
                format!("file:{:?}", fs::read(&path).unwrap())
            };
            let mode = if meta.file_type().is_symlink() { 0 } else { meta.permissions().mode() & 0o7777 };
            out.insert(
                rel,
                format!("{kind} mode={mode:o} uid={} gid={} mtime={}", meta.uid(), meta.gid(), meta.mtime()),
            );
        }
    }
    out
}

fn round_trip(nodes: &BTreeMap<String, Node>) {
    let src = tempfile::tempdir().unwrap();
    build(src.path(), nodes);
    // Layers clamp mtimes to 0; make the source agree before comparing.
    let options = shared::layer::LayerOptions::default();
    let (layer, gz) = shared::layer::write_layer(src.path(), &options, Vec::new()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let unpacked = unpack(gz.as_slice(), dest.path(), UnpackMode::Snapshot, Some(&layer.diff_id)).unwrap();
    assert_eq!(unpacked.diff_id, layer.diff_id);
    let mut want = describe(src.path());
    for v in want.values_mut() {
        let at = v.rfind("mtime=").unwrap();
        v.replace_range(at.., "mtime=0");
    }
    assert_eq!(describe(dest.path()), want);
    // And the unpacked tree makes the very same layer again.
    let (again, _) = shared::layer::write_layer(dest.path(), &options, Vec::new()).unwrap();
    assert_eq!(again, layer);
}

#[test]
fn round_trips_a_layer_from_shared() {
    let nodes = BTreeMap::from([
        ("bin".to_string(), Node::Dir(0o755)),
        ("script".to_string(), Node::File(b"#!/bin/sh\n".to_vec(), 0o4755)),
        ("sh".to_string(), Node::Symlink("bin/inner".into())),
        ("locked".to_string(), Node::Dir(0o500)),
        ("dangling".to_string(), Node::Symlink("/nowhere/at/all".into())),
    ]);
    round_trip(&nodes);
    // Hard links come back as one inode.
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a"), b"shared").unwrap();
    fs::hard_link(src.path().join("a"), src.path().join("b")).unwrap();
    let (layer, gz) = shared::layer::write_layer(src.path(), &Default::default(), Vec::new()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    unpack(gz.as_slice(), dest.path(), UnpackMode::Snapshot, Some(&layer.diff_id)).unwrap();
    assert_eq!(fs::metadata(dest.path().join("a")).unwrap().ino(), fs::metadata(dest.path().join("b")).unwrap().ino());
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..2000),
            prop_oneof![Just(0o644u32), Just(0o755), Just(0o600), Just(0o4755)]
        )
            .prop_map(|(d, m)| Node::File(d, m)),
        prop_oneof![Just(0o755u32), Just(0o700), Just(0o555)].prop_map(Node::Dir),
        "[a-z./]{1,20}".prop_map(Node::Symlink),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn generated_trees_round_trip(nodes in proptest::collection::btree_map("[a-z]{1,8}", node(), 1..8)) {
        round_trip(&nodes);
    }
}
