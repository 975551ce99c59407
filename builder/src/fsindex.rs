//! What paths an image under construction has, without unpacking it: an index of every
//! path's kind, mode and owners, built from the layers' tar headers (whiteouts applied),
//! plus the contents of `/etc/passwd` and `/etc/group` for resolving `--chown` and `USER`
//! names.
//!
//! COPY needs to know whether its destination is an existing directory and which parent
//! directories it must create; WORKDIR whether its directory exists. The executor keeps one
//! index per stage and feeds it each new layer's summary ([`LayerIndex`], [`FsIndex::apply_layer`]),
//! which the build cache keeps per layer blob: a step after a big RUN layer (an `apt-get
//! install`) indexes it from the summary instead of decompressing it again.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::tarball::{Content, Entry, Kind};

/// Why a layer could not be indexed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read layer {path}")]
pub struct IndexError {
    /// The layer blob.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// One path of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// A directory.
    pub dir: bool,
    /// The symbolic link target, for links.
    pub link: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
}

/// The paths of an image.
#[derive(Debug, Clone, Default)]
pub struct FsIndex {
    nodes: HashMap<String, Node>,
    passwd: Option<String>,
    group: Option<String>,
    /// How many of the stage's layers have been applied.
    pub applied: usize,
}

/// What one layer says about the image's paths: its entries, whiteouts and opaque
/// directories, and the `/etc/passwd` and `/etc/group` it writes. Made once per layer from
/// its tar headers ([`LayerIndex::read`]) and kept beside the build cache as JSON
/// ([`LayerIndex::load`], [`LayerIndex::save`]), so a later build indexes a big layer
/// without decompressing it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    /// Paths the layer writes (normalised), in its order.
    pub entries: Vec<(String, Node)>,
    /// Paths its whiteouts hide.
    pub whiteouts: Vec<String>,
    /// Directories it makes opaque.
    pub opaque: Vec<String>,
    /// The `/etc/passwd` it writes.
    pub passwd: Option<String>,
    /// The `/etc/group` it writes.
    pub group: Option<String>,
}

impl LayerIndex {
    /// Reads one layer blob (gzip, zstd or plain tar).
    pub fn read(blob: &Path) -> Result<LayerIndex, IndexError> {
        let err = |source| IndexError { path: blob.to_path_buf(), source };
        let file = std::fs::File::open(blob).map_err(err)?;
        let reader = runtime::unpack::decompress(BufReader::with_capacity(256 * 1024, file)).map_err(err)?;
        LayerIndex::read_tar(reader).map_err(err)
    }

    /// Reads one uncompressed tar stream.
    pub fn read_tar(reader: impl Read) -> io::Result<LayerIndex> {
        let mut archive = tar::Archive::new(reader);
        let mut layer = LayerIndex::default();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.to_string_lossy().into_owned();
            let path = normalise(&raw);
            if path.is_empty() {
                continue;
            }
            let (dir, name) = split(&path);
            if name == ".wh..wh..opq" {
                layer.opaque.push(dir.to_string());
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                layer.whiteouts.push(join(dir, hidden));
                continue;
            }
            let h = entry.header();
            let kind = h.entry_type();
            let link = if kind == EntryType::Symlink {
                entry.link_name()?.map(|l| l.to_string_lossy().into_owned())
            } else {
                None
            };
            let node = Node {
                dir: kind == EntryType::Directory,
                link,
                mode: h.mode()? & 0o7777,
                uid: h.uid()?,
                gid: h.gid()?,
            };
            if kind == EntryType::Regular && (path == "etc/passwd" || path == "etc/group") {
                let mut text = String::new();
                entry.read_to_string(&mut text)?;
                if path == "etc/passwd" {
                    layer.passwd = Some(text);
                } else {
                    layer.group = Some(text);
                }
            }
            layer.entries.push((path, node));
        }
        Ok(layer)
    }

    /// The summary of the layer `entries` make, in the order [`crate::tarball::write`] left
    /// them: what [`LayerIndex::read`] gets from the blob, without reading it.
    pub fn of_entries(entries: &[Entry]) -> io::Result<LayerIndex> {
        let mut layer = LayerIndex::default();
        for e in entries {
            let path = normalise(&e.path);
            if path.is_empty() {
                continue;
            }
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            if name == ".wh..wh..opq" {
                layer.opaque.push(dir.to_string());
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                layer.whiteouts.push(if dir.is_empty() { hidden.to_string() } else { format!("{dir}/{hidden}") });
                continue;
            }
            if let Kind::File { content, .. } = &e.kind {
                if path == "etc/passwd" || path == "etc/group" {
                    let text = match content {
                        Content::Disk(file) => String::from_utf8_lossy(&std::fs::read(file)?).into_owned(),
                        Content::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    };
                    if path == "etc/passwd" {
                        layer.passwd = Some(text);
                    } else {
                        layer.group = Some(text);
                    }
                }
            }
            let link = match &e.kind {
                Kind::Symlink(t) => Some(t.to_string_lossy().into_owned()),
                _ => None,
            };
            let node = Node { dir: e.kind == Kind::Dir, link, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid };
            layer.entries.push((path, node));
        }
        Ok(layer)
    }

    /// The summary saved at `path`, if there is one that parses.
    pub fn load(path: &Path) -> Option<LayerIndex> {
        let body = std::fs::read(path).ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// Saves the summary at `path` (through a temporary file and a rename, so a reader
    /// never sees half of one).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let body = serde_json::to_vec(self).map_err(io::Error::other)?;
        let temp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&temp, body)?;
        std::fs::rename(&temp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }
}

impl FsIndex {
    /// Applies one layer blob (gzip, zstd or plain tar).
    pub fn apply(&mut self, blob: &Path) -> Result<(), IndexError> {
        self.apply_layer(LayerIndex::read(blob)?);
        Ok(())
    }

    /// Applies one uncompressed tar stream.
    pub fn apply_tar(&mut self, reader: impl Read) -> io::Result<()> {
        self.apply_layer(LayerIndex::read_tar(reader)?);
        Ok(())
    }

    /// Applies one layer's summary: whiteouts hide what lower layers had, then its entries
    /// go on top.
    pub fn apply_layer(&mut self, layer: LayerIndex) {
        for w in layer.whiteouts {
            self.remove_tree(&w);
        }
        for d in layer.opaque {
            let prefix = format!("{d}/");
            self.nodes.retain(|p, _| !p.starts_with(&prefix));
        }
        for (path, node) in layer.entries {
            if !node.dir {
                // A file replacing a directory hides the directory's contents.
                if self.nodes.get(&path).is_some_and(|n| n.dir) {
                    self.remove_tree(&path);
                }
            }
            if path == "etc/passwd" && node.link.is_some() {
                self.passwd = None;
            }
            self.nodes.insert(path, node);
        }
        if layer.passwd.is_some() {
            self.passwd = layer.passwd;
        }
        if layer.group.is_some() {
            self.group = layer.group;
        }
    }

    fn remove_tree(&mut self, path: &str) {
        let prefix = format!("{path}/");
        self.nodes.retain(|p, _| p != path && !p.starts_with(&prefix));
        if path == "etc/passwd" || path == "etc" {
            self.passwd = None;
        }
        if path == "etc/group" || path == "etc" {
            self.group = None;
        }
    }

    /// Records paths a step created (so later steps see them before the layer is indexed).
    pub fn insert(&mut self, path: &str, node: Node) {
        self.nodes.insert(normalise(path), node);
    }

    /// The node at `path` (absolute or relative to `/`), following symbolic links in the
    /// parents and, when `follow` is set, in the last component too.
    pub fn lookup(&self, path: &str, follow: bool) -> Option<(String, &Node)> {
        let resolved = self.resolve(path, follow)?;
        if resolved.is_empty() {
            return None;
        }
        self.nodes.get(&resolved).map(|n| (resolved, n))
    }

    /// Whether `path` is (or leads by links to) a directory. `/` always is.
    pub fn is_dir(&self, path: &str) -> bool {
        match self.resolve(path, true) {
            Some(p) if p.is_empty() => true,
            Some(p) => self.nodes.get(&p).is_some_and(|n| n.dir),
            None => false,
        }
    }

    /// `path` with symbolic links resolved inside the image.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Option<String> {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: Vec<String> =
            normalise(path).split('/').filter(|p| !p.is_empty()).rev().map(String::from).collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            if part == "." {
                continue;
            }
            resolved.push(part);
            let current = resolved.join("/");
            let last = pending.is_empty();
            if let Some(Node { link: Some(target), .. }) = self.nodes.get(&current) {
                if last && !follow_last {
                    break;
                }
                hops += 1;
                if hops > 40 {
                    return None;
                }
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for p in target.split('/').filter(|p| !p.is_empty()).rev() {
                    pending.push(p.to_string());
                }
            }
        }
        Some(resolved.join("/"))
    }

    /// The image's `/etc/passwd`, if it has one.
    pub fn passwd(&self) -> Option<&str> {
        self.passwd.as_deref()
    }

    /// The image's `/etc/group`, if it has one.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

/// `./a/b/` → `a/b`.
pub fn normalise(path: &str) -> String {
    path.split('/').filter(|p| !p.is_empty() && *p != ".").collect::<Vec<_>>().join("/")
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tar_of(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(*kind);
            h.set_mode(if *kind == EntryType::Directory { 0o755 } else { 0o644 });
            h.set_size(if *kind == EntryType::Regular { data.len() as u64 } else { 0 });
            if *kind == EntryType::Symlink {
                h.set_link_name(data).unwrap();
            }
            h.set_path(path).unwrap();
            h.set_cksum();
            let body: &[u8] = if *kind == EntryType::Regular { data.as_bytes() } else { b"" };
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn indexes_layers_with_whiteouts_and_links() {
        let mut ix = FsIndex::default();
        ix.apply_tar(
            tar_of(&[
                ("usr/", EntryType::Directory, ""),
                ("usr/bin/", EntryType::Directory, ""),
                ("bin", EntryType::Symlink, "usr/bin"),
                ("etc/", EntryType::Directory, ""),
                ("etc/passwd", EntryType::Regular, "root:x:0:0::/root:/bin/sh\n"),
                ("old/", EntryType::Directory, ""),
                ("old/f", EntryType::Regular, "x"),
                ("keep/", EntryType::Directory, ""),
                ("keep/a", EntryType::Regular, "x"),
            ])
            .as_slice(),
        )
        .unwrap();
        assert!(ix.is_dir("/bin"));
        assert!(ix.is_dir("/bin/"));
        assert!(ix.is_dir("/"));
        assert!(!ix.is_dir("/etc/passwd"));
        assert_eq!(ix.resolve("/bin/sh", true).as_deref(), Some("usr/bin/sh"));
        assert!(ix.passwd().unwrap().starts_with("root:"));

        ix.apply_tar(
            tar_of(&[
                ("./.wh.old", EntryType::Regular, ""),
                ("keep/.wh..wh..opq", EntryType::Regular, ""),
                ("keep/b", EntryType::Regular, ""),
            ])
            .as_slice(),
        )
        .unwrap();
        assert!(ix.lookup("old", false).is_none());
        assert!(ix.lookup("old/f", false).is_none());
        assert!(ix.lookup("keep/a", false).is_none());
        assert!(ix.lookup("keep/b", false).is_some());
        assert!(ix.is_dir("keep"));
    }

    #[test]
    fn a_layers_summary_from_its_entries_is_what_its_blob_says() {
        let dir = tempfile::tempdir().unwrap();
        let group = dir.path().join("group");
        std::fs::write(&group, "staff:x:50:\n").unwrap();
        let file = |path: &str, content: Content, size: u64| Entry {
            path: path.into(),
            kind: Kind::File { content, size },
            mode: 0o4755,
            uid: 1,
            gid: 2,
            mtime: 0,
        };
        let mut entries = vec![
            Entry::dir("etc", 0o755, 0, 0),
            file("etc/passwd", Content::Bytes(Arc::new(b"app:x:1:2::/:/bin/sh\n".to_vec())), 21),
            file("etc/group", Content::Disk(group), 12),
            Entry { kind: Kind::Symlink("usr/bin".into()), mode: 0o777, ..Entry::dir("bin", 0, 0, 0) },
            Entry { kind: Kind::Hardlink("etc/passwd".into()), ..Entry::dir("etc/pw2", 0o644, 3, 4) },
            Entry::whiteout("old/gone"),
            Entry::whiteout("keep/.wh..opq"),
            Entry::dir("z/", 0o700, 5, 6),
        ];
        let options = crate::tarball::WriteOptions {
            clamp_mtime: Some(0),
            compression: crate::tarball::Compression::Gzip,
            level: 1,
            threads: 0,
        };
        let (_, blob) = crate::tarball::write(&mut entries, &options, Vec::new()).unwrap();
        let blob_path = dir.path().join("blob");
        std::fs::write(&blob_path, blob).unwrap();
        let read = LayerIndex::read(&blob_path).unwrap();
        assert_eq!(LayerIndex::of_entries(&entries).unwrap(), read);
        assert_eq!(read.whiteouts, ["old/gone"]);
        assert_eq!(read.opaque, ["keep"]);
        assert!(read.passwd.as_deref().unwrap().starts_with("app:") && read.group.is_some());
        // Saved and loaded back whole; a damaged summary is none (the blob is read again).
        let saved = dir.path().join("index/x.json");
        read.save(&saved).unwrap();
        assert_eq!(LayerIndex::load(&saved), Some(read));
        std::fs::write(&saved, "{").unwrap();
        assert_eq!(LayerIndex::load(&saved), None);
    }
}
