//! What paths an image under construction has, without unpacking it: an index of every
//! path's kind, mode and owners, built from the layers' tar headers (whiteouts applied),
//! plus the contents of `/etc/passwd` and `/etc/group` for resolving `--chown` and `USER`
//! names.
//!
//! COPY needs to know whether its destination is an existing directory and which parent
//! directories it must create; WORKDIR whether its directory exists. The executor keeps one
//! index per stage and feeds it each new layer ([`FsIndex::apply`]).

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl FsIndex {
    /// Applies one layer blob (gzip, zstd or plain tar).
    pub fn apply(&mut self, blob: &Path) -> Result<(), IndexError> {
        let err = |source| IndexError { path: blob.to_path_buf(), source };
        let file = std::fs::File::open(blob).map_err(err)?;
        let reader = runtime::unpack::decompress(BufReader::with_capacity(256 * 1024, file)).map_err(err)?;
        self.apply_tar(reader).map_err(err)
    }

    /// Applies one uncompressed tar stream.
    pub fn apply_tar(&mut self, reader: impl Read) -> io::Result<()> {
        let mut archive = tar::Archive::new(reader);
        let mut whiteouts: Vec<String> = Vec::new();
        let mut opaque: Vec<String> = Vec::new();
        let mut written: Vec<(String, Node)> = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.to_string_lossy().into_owned();
            let path = normalise(&raw);
            if path.is_empty() {
                continue;
            }
            let (dir, name) = split(&path);
            if name == ".wh..wh..opq" {
                opaque.push(dir.to_string());
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                whiteouts.push(join(dir, hidden));
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
                    self.passwd = Some(text);
                } else {
                    self.group = Some(text);
                }
            }
            written.push((path, node));
        }
        // Whiteouts hide what lower layers had, then this layer's entries go on top.
        for w in whiteouts {
            self.remove_tree(&w);
        }
        for d in opaque {
            let prefix = format!("{d}/");
            self.nodes.retain(|p, _| !p.starts_with(&prefix));
        }
        for (path, node) in written {
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
        Ok(())
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
}
