//! COPY and ADD steps of the executor: sources from the context, another stage or an image,
//! archives ADD extracts, URLs it downloads, and the directories a destination needs. The
//! layer is built straight from the sources, without a container, in three steps: the
//! arguments expanded (`copy_args`), the key over everything they select (`copy_key`), and on
//! a miss the layer's entries (`copy_entries`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runtime::unpack::{self, UnpackMode};
use shared::{Algorithm, Digest, Hasher};

use super::chmod::Chmod;
use super::{absolute, apply_layer, key_of, resolve_chown, step_io, Exec, Image, StageState, StepError};
use crate::archive;
use crate::context::{Pick, PickKind, Select, Tree};
use crate::expand;
use crate::fsindex::{self, FsIndex};
use crate::ignore::{has_glob, Ignore};
use crate::instructions::{Copy, Source};
use crate::progress::Outcome;
use crate::syntax::Heredoc;
use crate::tarball::{Content, Entry, Kind};

impl Exec<'_> {
    /// Directory entries for every ancestor of `paths` (and the paths themselves) missing
    /// from the image.
    pub(super) fn missing_dirs(&self, index: &FsIndex, paths: &[String], uid: u64, gid: u64) -> Vec<Entry> {
        let mut out: BTreeMap<String, Entry> = BTreeMap::new();
        for p in paths {
            let mut cur = String::new();
            for part in p.split('/').filter(|s| !s.is_empty()) {
                cur = if cur.is_empty() { part.to_string() } else { format!("{cur}/{part}") };
                if !index.is_dir(&cur) && !out.contains_key(&cur) {
                    let mut e = Entry::dir(cur.clone(), 0o755, uid, gid);
                    e.mtime = self.epoch;
                    out.insert(cur.clone(), e);
                }
            }
        }
        out.into_values().collect()
    }

    /// Another stage's result, or an image (for COPY --from and bind mounts).
    pub(super) fn source_image(&self, from: &str, index: usize) -> Result<Image, StepError> {
        match self.plan.stage_named(from, index) {
            Some(i) => self
                .results
                .lock()
                .ok()
                .and_then(|r| r.get(&i).cloned())
                .ok_or_else(|| StepError::Invalid(format!("stage {from} has not been built"))),
            None => Ok(self.pull(from, &self.platform)?.0),
        }
    }

    /// Unpacks an image's layers into a fresh directory (once per build and image).
    pub(super) fn materialise(&self, image: &Image) -> Result<PathBuf, StepError> {
        if let Some(dir) = self.rootfs.lock().ok().and_then(|m| m.get(&image.layer_key).cloned()) {
            return Ok(dir);
        }
        let dir = self.temp_dir("rootfs")?;
        for layer in &image.layers {
            apply_layer(&dir, layer)?;
        }
        if let Ok(mut m) = self.rootfs.lock() {
            m.insert(image.layer_key.clone(), dir.clone());
        }
        Ok(dir)
    }

    pub(super) fn stage_index(&self, st: &StageState) -> usize {
        self.plan.stages.iter().find(|s| s.label() == st.label).map_or(usize::MAX, |s| s.index)
    }

    pub(super) fn copy(&self, st: &mut StageState, c: &Copy, text: &str) -> Result<(Outcome, Option<u64>), StepError> {
        let args = self.copy_args(st, c)?;
        // The key needs neither the image's paths (is the destination a directory?) nor its
        // users (--chown by name): both follow from the parent's layer key, which is part of
        // the key, so they are looked at on a miss only. Sources from another stage or image
        // are keyed by its layer key, and unpacked on a miss only.
        let source_image = match &args.from {
            None => None,
            Some(f) => Some(self.source_image(f, self.stage_index(st))?),
        };
        let picks = if args.paths.is_empty() || args.from.is_some() {
            Vec::new()
        } else {
            self.context.select(&args.select(args.dest_is_dir))?
        };
        let keyed = self.copy_key(st, c, &args, source_image.as_ref(), &picks)?;
        // `--link` (BuildKit's semantics): the layer is made as on an empty root, so neither
        // its content nor its cache key depends on the layers below; only the stage's layer
        // key, which later steps build on, chains it onto the parent's.
        let key = keyed.key.clone();
        let layer_key = if c.link {
            key_of(&[st.image.layer_key.to_string().as_bytes(), b"--link", key.to_string().as_bytes()])
        } else {
            key.clone()
        };
        let created_by = format!("{text} # buildkit");
        if let Some(size) = self.lookup(st, &key, &created_by)? {
            st.image.layer_key = layer_key;
            return Ok((Outcome::Cached, size));
        }
        // A miss: look at the image (an empty one for --link), then write the layer straight
        // from the files.
        self.index(st)?;
        if c.link {
            if let Some(warning) = unfollowed_link(&st.index, &args) {
                self.progress.note(&warning);
            }
        }
        let empty = FsIndex::default();
        let index = if c.link { &empty } else { &st.index };
        let entries = self.copy_entries(index, c.link, &args, source_image.as_ref(), picks, keyed)?;
        let size = self.commit(st, &key, entries, &created_by)?;
        st.image.layer_key = layer_key;
        Ok((Outcome::Done, size))
    }

    /// The step's arguments, expanded, its sources sorted into paths, heredocs and URLs.
    fn copy_args(&self, st: &StageState, c: &Copy) -> Result<CopyArgs, StepError> {
        let workdir = st.image.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
        let dest_raw = self.expand(st, &c.dest)?;
        let trailing = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
        let mut args = CopyArgs {
            what: if c.add { "ADD" } else { "COPY" },
            dest_abs: absolute(&workdir, &dest_raw),
            dest_is_dir: trailing,
            parents: c.parents,
            paths: Vec::new(),
            heredocs: Vec::new(),
            urls: Vec::new(),
            chown: c.chown.as_ref().map(|s| self.expand(st, s)).transpose()?,
            chmod: None,
            exclude: c.exclude.iter().map(|e| self.expand(st, e)).collect::<Result<_, _>>()?,
            from: c.from.as_ref().map(|f| self.expand(st, f)).transpose()?,
        };
        for s in &c.sources {
            match s {
                Source::Path(p) => {
                    let p = self.expand(st, p)?;
                    if c.add && (p.starts_with("http://") || p.starts_with("https://")) {
                        args.urls.push(p);
                    } else if c.add && (p.starts_with("git@") || p.ends_with(".git")) {
                        return Err(StepError::Invalid(format!("ADD of git repositories is not supported: {p}")));
                    } else {
                        args.paths.push(p);
                    }
                }
                Source::Heredoc(h) => args.heredocs.push(h.clone()),
            }
        }
        if let Some(m) = &c.chmod {
            args.chmod = Some(Chmod::parse(&self.expand(st, m)?)?);
        }
        args.dest_is_dir |= c.sources.len() > 1 || args.paths.iter().any(|p| has_glob(p));
        Ok(args)
    }

    /// The step's key: the parent (unless `--link`), the arguments, and every selected
    /// path's name, kind, mode and content (heredocs' and downloads' too); with what it read
    /// that writing the layer needs again.
    fn copy_key(
        &self,
        st: &StageState,
        c: &Copy,
        args: &CopyArgs,
        source_image: Option<&Image>,
        picks: &[Pick],
    ) -> Result<Keyed, StepError> {
        use std::os::unix::fs::MetadataExt;
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut feed = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        if c.link {
            feed(b"--link");
        } else {
            feed(st.image.layer_key.to_string().as_bytes());
        }
        feed(args.what.as_bytes());
        feed(args.dest_abs.as_bytes());
        feed(&[
            u8::from(args.dest_is_dir),
            u8::from(c.parents),
            u8::from(c.link),
            u8::from(self.options.keep_timestamps),
        ]);
        feed(format!("{:?}:{:?}", args.chown, args.chmod).as_bytes());
        for e in args.exclude.iter().chain(&args.paths) {
            feed(e.as_bytes());
        }
        if let Some(image) = source_image {
            feed(image.layer_key.to_string().as_bytes());
        }
        let files: Vec<(&Path, &fs::Metadata)> =
            picks.iter().filter(|p| p.kind == PickKind::File).map(|p| (p.source.as_path(), &p.meta)).collect();
        let digests = self.stat.digest_all(&files)?;
        let digest_of: HashMap<&Path, &Digest> = files.iter().map(|(p, _)| *p).zip(&digests).collect();
        let (mut archives, mut heredoc_files, mut downloads) = (BTreeSet::new(), Vec::new(), Vec::new());
        for p in picks {
            feed(p.target.as_bytes());
            feed(format!("{:?}:{:o}", p.kind, p.meta.mode() & 0o7777).as_bytes());
            if let Some(d) = digest_of.get(p.source.as_path()) {
                feed(d.to_string().as_bytes());
            }
            if self.options.keep_timestamps {
                feed(&p.meta.mtime().to_le_bytes());
            }
            if c.add && p.kind == PickKind::File {
                let is_archive = archive::is_archive(&p.source).map_err(step_io(&p.source))?;
                if is_archive {
                    archives.insert(p.source.clone());
                }
                feed(&[u8::from(is_archive)]);
            }
        }
        for hd in &args.heredocs {
            let content = if hd.expand {
                expand::expand_keep_quotes(&hd.content, self.plan.escape, &|n| st.lookup(n))?
            } else {
                hd.content.clone()
            };
            feed(hd.name.as_bytes());
            feed(content.as_bytes());
            heredoc_files.push((hd.name.clone(), content));
        }
        for url in &args.urls {
            let bytes = self.download(url, c.checksum.as_deref())?;
            let name = url.split(['?', '#']).next().unwrap_or(url).rsplit('/').next().unwrap_or("download").to_string();
            let name = if name.is_empty() { "download".to_string() } else { name };
            feed(name.as_bytes());
            feed(Digest::sha256_of(&bytes).to_string().as_bytes());
            downloads.push((name, bytes));
        }
        Ok(Keyed { key: h.finish(), archives, heredoc_files, downloads })
    }

    /// The layer's entries, on a miss: the selected paths (re-selected when the image makes
    /// the destination a directory, or from the stage's root), extracted archives, heredocs
    /// and downloads, below their parents as resolved in the image, and the parent
    /// directories the image lacks.
    fn copy_entries(
        &self,
        index: &FsIndex,
        link: bool,
        args: &CopyArgs,
        source_image: Option<&Image>,
        picks: Vec<Pick>,
        keyed: Keyed,
    ) -> Result<Vec<Entry>, StepError> {
        use std::os::unix::fs::MetadataExt;
        let dest_is_dir = args.dest_is_dir || index.is_dir(&args.dest_abs);
        let (uid, gid) = match &args.chown {
            Some(spec) => resolve_chown(spec, (!link).then_some(index))?,
            None => (0, 0),
        };
        let picks = match (source_image, &args.from) {
            (Some(image), Some(name)) => {
                let dir = self.materialise(image)?;
                let tree = Tree::new(&dir, Ignore::default(), &format!("stage {name}"))?;
                tree.select(&args.select(dest_is_dir))?
            }
            _ if dest_is_dir != args.dest_is_dir && !args.paths.is_empty() => {
                self.context.select(&args.select(dest_is_dir))?
            }
            _ => picks,
        };
        // `--chmod` applies to what is copied; the directories made on the way keep 0755.
        let mode_of = |m: u32, is_dir: bool| args.chmod.as_ref().map_or(m, |c| c.apply(m, is_dir));
        // Without `--chown`, files from a stage or an image keep their owners (BuildKit's
        // rule); the context's are root's.
        let keep_owners = args.chown.is_none() && args.from.is_some();
        let dest_rel = fsindex::normalise(&args.dest_abs);
        let mut entries: Vec<Entry> = Vec::new();
        // For files with several names: the entry's index and the file's (device, inode).
        let mut linked: Vec<(usize, (u64, u64))> = Vec::new();
        for p in &picks {
            if p.kind == PickKind::Dir && index.is_dir(&p.target) {
                // An existing directory keeps its metadata.
                continue;
            }
            if keyed.archives.contains(&p.source) {
                let dir = parent_dir_for_archive(&p.target, dest_is_dir, &args.dest_abs);
                self.archive_entries(index, args.what, &p.source, &dir, (uid, gid), &mut entries)?;
                continue;
            }
            if p.kind == PickKind::Dir && p.target == dest_rel {
                // A source directory's destination, which the step makes: 0755 and
                // `--chown`'s ids (or root's), whatever the source's mode and owners and
                // `--chmod` (BuildKit's rule).
                let mut e = Entry::dir(dest_rel.clone(), 0o755, uid, gid);
                e.mtime = self.epoch;
                entries.push(e);
                continue;
            }
            let (u, g) = if keep_owners { (p.meta.uid().into(), p.meta.gid().into()) } else { (uid, gid) };
            let mut e = pick_entry(p, u, g, mode_of(p.meta.mode() & 0o7777, p.kind == PickKind::Dir));
            e.mtime = p.meta.mtime();
            if p.kind == PickKind::File && p.meta.nlink() > 1 {
                linked.push((entries.len(), (p.meta.dev(), p.meta.ino())));
            }
            entries.push(e);
        }
        let target_of =
            |name: &str| if dest_is_dir { join_rel(&args.dest_abs, name) } else { fsindex::normalise(&args.dest_abs) };
        let generated = keyed.heredoc_files.into_iter().map(|(n, c)| (n, c.into_bytes(), 0o644));
        for (name, bytes, mode) in generated.chain(keyed.downloads.into_iter().map(|(n, b)| (n, b, 0o600))) {
            entries.push(Entry {
                path: target_of(&name),
                kind: Kind::File { size: bytes.len() as u64, content: Content::Bytes(Arc::new(bytes)) },
                mode: mode_of(mode, false),
                uid,
                gid,
                mtime: self.epoch,
            });
        }
        // Links of the image on the way (`/bin -> usr/bin`) are followed inside it, and the
        // links themselves stay: each path is written below its parent as resolved.
        let mut resolver = ParentResolver::new(index);
        for e in &mut entries {
            e.path = resolver.resolve(&e.path)?;
        }
        hard_links(&mut entries, &linked);
        // Parent directories the image lacks.
        let parents: Vec<String> =
            entries.iter().filter_map(|e| e.path.rsplit_once('/').map(|(d, _)| d.to_string())).collect();
        let existing: BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
        for d in self.missing_dirs(index, &parents, uid, gid) {
            if !existing.contains(&d.path) {
                entries.push(d);
            }
        }
        Ok(entries)
    }

    /// Adds the entries of the archive `source` extracted into `dir` (relative to the root)
    /// to `entries`, owners and modes from the archive.
    fn archive_entries(
        &self,
        index: &FsIndex,
        what: &str,
        source: &Path,
        dir: &str,
        (uid, gid): (u64, u64),
        entries: &mut Vec<Entry>,
    ) -> Result<(), StepError> {
        use std::os::unix::fs::MetadataExt;
        // The archive's `./` entry changes nothing: an existing directory keeps its owner and
        // mode, one the step makes gets the above (BuildKit's rule, where buildah differs).
        let (extracted, _) = self.extract_archive(source)?;
        let t = Tree::new(&extracted, Ignore::default(), "archive")?;
        let all = vec![".".to_string()];
        let inner = t.select(&Select {
            what,
            sources: &all,
            dest: &format!("/{dir}"),
            dest_is_dir: true,
            exclude: &[],
            parents: false,
        })?;
        for q in inner {
            if q.kind == PickKind::Dir && index.is_dir(&q.target) {
                continue;
            }
            if q.kind == PickKind::Dir && q.target == dir {
                // The directory extracted into, when ADD makes it: 0755 and `--chown`'s ids
                // (BuildKit's MkdirAll before the untar).
                let mut e = Entry::dir(dir.to_string(), 0o755, uid, gid);
                e.mtime = self.epoch;
                entries.push(e);
                continue;
            }
            entries.push(pick_entry(&q, q.meta.uid().into(), q.meta.gid().into(), q.meta.mode() & 0o7777));
        }
        Ok(())
    }

    /// Extracts the archive at `path` into a fresh directory; returns it and the archive's
    /// `./` entry.
    pub(super) fn extract_archive(&self, path: &Path) -> Result<(PathBuf, Option<archive::RootDir>), StepError> {
        let dir = self.temp_dir("archive")?;
        let Some(opened) = archive::open(path).map_err(step_io(path))? else {
            return Err(StepError::Invalid(format!("{} is no longer an archive", path.display())));
        };
        unpack::unpack(opened.stream, &dir, UnpackMode::Flatten, None)
            .map_err(|source| StepError::Extract { path: path.to_path_buf(), source })?;
        Ok((dir, opened.root))
    }

    pub(super) fn download(&self, url: &str, checksum: Option<&str>) -> Result<Vec<u8>, StepError> {
        let fail = |reason: String| StepError::Download { url: url.to_string(), reason };
        let bytes = self.handle.block_on(async {
            let response = reqwest::get(url).await.map_err(|e| fail(e.to_string()))?;
            if !response.status().is_success() {
                return Err(fail(format!("the server answered {}", response.status())));
            }
            response.bytes().await.map(|b| b.to_vec()).map_err(|e| fail(e.to_string()))
        })?;
        if let Some(sum) = checksum {
            let want: Digest = sum.parse().map_err(|_| fail(format!("invalid checksum {sum:?}")))?;
            let got = Digest::of(want.algorithm(), &bytes);
            if got != want {
                return Err(fail(format!("checksum mismatch: expected {want}, got {got}")));
            }
        }
        Ok(bytes)
    }
}

/// A COPY or ADD step's arguments, expanded.
struct CopyArgs {
    what: &'static str,
    /// The destination, absolute and cleaned.
    dest_abs: String,
    /// Whether the destination is a directory whatever the image holds (a trailing `/`,
    /// several sources, a wildcard).
    dest_is_dir: bool,
    parents: bool,
    paths: Vec<String>,
    heredocs: Vec<Heredoc>,
    urls: Vec<String>,
    chown: Option<String>,
    chmod: Option<Chmod>,
    exclude: Vec<String>,
    from: Option<String>,
}

impl CopyArgs {
    /// The selection of the step's paths, into a destination that is a directory or not.
    fn select(&self, dest_is_dir: bool) -> Select<'_> {
        Select {
            what: self.what,
            sources: &self.paths,
            dest: &self.dest_abs,
            dest_is_dir,
            exclude: &self.exclude,
            parents: self.parents,
        }
    }
}

/// A COPY or ADD step's key, and what computing it read that writing the layer needs.
struct Keyed {
    key: Digest,
    /// Selected files that ADD extracts.
    archives: BTreeSet<PathBuf>,
    /// Heredocs as (name, expanded content).
    heredoc_files: Vec<(String, String)>,
    /// Downloads as (name, content).
    downloads: Vec<(String, Vec<u8>)>,
}

/// An entry for a selected path.
fn pick_entry(p: &Pick, uid: u64, gid: u64, mode: u32) -> Entry {
    use std::os::unix::fs::MetadataExt;
    let kind = match &p.kind {
        PickKind::File => Kind::File { content: Content::Disk(p.source.clone()), size: p.meta.len() },
        PickKind::Dir => Kind::Dir,
        PickKind::Symlink(t) => Kind::Symlink(t.clone()),
        PickKind::Special => Kind::Fifo,
    };
    let mode = if matches!(p.kind, PickKind::Symlink(_)) { 0o777 } else { mode };
    Entry { path: p.target.clone(), kind, mode, uid, gid, mtime: p.meta.mtime() }
}

/// The warning for a `--link` step whose destination goes through a symbolic link of the
/// image: its layer, made as on an empty root, has a directory there (BuildKit's documented
/// rule: "the destination path created with --link will always be a path containing only
/// directories"), which replaces the link when the image is unpacked. None when the path
/// has no link (or only its last part is one and the step writes a file there).
fn unfollowed_link(index: &FsIndex, args: &CopyArgs) -> Option<String> {
    let parts: Vec<&str> = args.dest_abs.split('/').filter(|p| !p.is_empty()).collect();
    // Every part of a directory destination becomes a directory; a file's parents do.
    let dirs = if args.dest_is_dir { parts.len() } else { parts.len().saturating_sub(1) };
    let mut path = String::new();
    for part in &parts[..dirs] {
        path = if path.is_empty() { (*part).to_string() } else { format!("{path}/{part}") };
        // Earlier parts are no links, so `path` is what the image has.
        if let Some((_, node)) = index.lookup(&path, false) {
            if let Some(target) = &node.link {
                let resolved = index.resolve(&args.dest_abs, args.dest_is_dir).unwrap_or_default();
                return Some(format!(
                    "warning: {} --link to {}: /{path} is a symbolic link to {target} in the image, which a --link \
                     layer does not follow (as BuildKit's): /{path} becomes a directory holding only what the step \
                     copies. Copy to /{resolved}{} instead, or drop --link.",
                    args.what,
                    args.dest_abs,
                    if args.dest_is_dir { "/" } else { "" },
                ));
            }
        }
    }
    None
}

/// Makes the entries `linked` names (entry index, file's device and inode) that share a
/// file hard links to the first of them in the layer's order, which alone carries the
/// content: hard links in the context stay hard links (BuildKit's copy keeps them).
fn hard_links(entries: &mut [Entry], linked: &[(usize, (u64, u64))]) {
    let mut groups: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, file) in linked {
        groups.entry(*file).or_default().push(*i);
    }
    for mut names in groups.into_values().filter(|g| g.len() > 1) {
        names.sort_by(|a, b| Path::new(&entries[*a].path).cmp(Path::new(&entries[*b].path)));
        let first = entries[names[0]].path.clone();
        for i in &names[1..] {
            if entries[*i].path != first {
                entries[*i].kind = Kind::Hardlink(first.clone());
            }
        }
    }
}

/// The folder an extracted archive's entries go under (relative to the root): the folder
/// the archive itself would have been copied into, or the destination itself when it does
/// not end in `/` (ADD extracts into it).
fn parent_dir_for_archive(target: &str, dest_is_dir: bool, dest_abs: &str) -> String {
    if dest_is_dir {
        target.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default()
    } else {
        fsindex::normalise(dest_abs)
    }
}

/// `name` below the folder `dir_abs`, as a path relative to the root.
fn join_rel(dir_abs: &str, name: &str) -> String {
    let d = fsindex::normalise(dir_abs);
    if d.is_empty() {
        name.to_string()
    } else {
        format!("{d}/{name}")
    }
}

/// Resolves the parent directories of layer paths through the image's symbolic links, as
/// a chroot would (see [`FsIndex::resolve`]), remembering each parent's resolution.
pub(super) struct ParentResolver<'a> {
    index: &'a FsIndex,
    seen: HashMap<String, String>,
}

impl<'a> ParentResolver<'a> {
    pub(super) fn new(index: &'a FsIndex) -> ParentResolver<'a> {
        ParentResolver { index, seen: HashMap::new() }
    }

    /// `path` (relative to the root) with its parent resolved; the last component is kept.
    pub(super) fn resolve(&mut self, path: &str) -> Result<String, StepError> {
        let path = fsindex::normalise(path);
        let Some((parent, name)) = path.rsplit_once('/') else { return Ok(path) };
        let parent = match self.seen.get(parent) {
            Some(p) => p.clone(),
            None => {
                let resolved = self.index.resolve(parent, true).ok_or_else(|| {
                    StepError::Invalid(format!("/{parent}: too many levels of symbolic links in the image"))
                })?;
                self.seen.insert(parent.to_string(), resolved.clone());
                resolved
            }
        };
        Ok(if parent.is_empty() { name.to_string() } else { format!("{parent}/{name}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index of Debian's merged-/usr links: `usr/bin`, `bin -> usr/bin`, `w -> /srv/app`,
    /// `r -> /`, `up -> ../../..`.
    fn linked_index() -> FsIndex {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, target) in [
            ("usr/", tar::EntryType::Directory, ""),
            ("usr/bin/", tar::EntryType::Directory, ""),
            ("bin", tar::EntryType::Symlink, "usr/bin"),
            ("w", tar::EntryType::Symlink, "/srv/app"),
            ("r", tar::EntryType::Symlink, "/"),
            ("up", tar::EntryType::Symlink, "../../.."),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(0);
            if !target.is_empty() {
                h.set_link_name(target).unwrap();
            }
            h.set_path(path).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        let mut index = FsIndex::default();
        index.apply_tar(b.into_inner().unwrap().as_slice()).unwrap();
        index
    }

    #[test]
    fn parents_resolve_through_the_images_links() {
        let index = linked_index();
        let mut r = ParentResolver::new(&index);
        assert_eq!(r.resolve("bin/tool").unwrap(), "usr/bin/tool");
        assert_eq!(r.resolve("bin").unwrap(), "bin", "the link itself stays");
        assert_eq!(r.resolve("w/sub/f").unwrap(), "srv/app/sub/f", "a link to a missing directory");
        assert_eq!(r.resolve("r/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(r.resolve("up/etc/x").unwrap(), "etc/x", "`..` stops at the root");
        assert_eq!(r.resolve("top").unwrap(), "top");
    }

    fn args(dest: &str, dest_is_dir: bool) -> CopyArgs {
        CopyArgs {
            what: "COPY",
            dest_abs: dest.to_string(),
            dest_is_dir,
            parents: false,
            paths: vec!["tool".into()],
            heredocs: Vec::new(),
            urls: Vec::new(),
            chown: None,
            chmod: None,
            exclude: Vec::new(),
            from: None,
        }
    }

    #[test]
    fn a_link_layer_warns_of_the_links_it_replaces() {
        let index = linked_index();
        let warning = unfollowed_link(&index, &args("/bin", true)).expect("a warning for /bin/");
        assert!(warning.contains("/bin is a symbolic link to usr/bin"), "{warning}");
        assert!(warning.contains("Copy to /usr/bin/ instead"), "{warning}");
        let warning = unfollowed_link(&index, &args("/w/sub/tool", false)).expect("a warning for /w/sub/tool");
        assert!(warning.contains("/w is a symbolic link to /srv/app") && warning.contains("/srv/app/sub/tool"));
        // A file written over a link, and paths without links, make no directory over a link.
        assert_eq!(unfollowed_link(&index, &args("/bin", false)), None);
        assert_eq!(unfollowed_link(&index, &args("/usr/bin", true)), None);
        assert_eq!(unfollowed_link(&index, &args("/opt/x", true)), None);
    }
}
