//! COPY and ADD steps of the executor: sources from the context, another stage or an image,
//! archives ADD extracts, URLs it downloads, and the directories a destination needs. The
//! layer is built straight from the sources, without a container.

use super::*;

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
        let what = if c.add { "ADD" } else { "COPY" };
        let workdir = st.image.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
        let dest_raw = self.expand(st, &c.dest)?;
        let dest_abs = absolute(&workdir, &dest_raw);
        let trailing = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
        let mut paths = Vec::new();
        let mut heredocs = Vec::new();
        let mut urls = Vec::new();
        for s in &c.sources {
            match s {
                Source::Path(p) => {
                    let p = self.expand(st, p)?;
                    if c.add && (p.starts_with("http://") || p.starts_with("https://")) {
                        urls.push(p);
                    } else if c.add && (p.starts_with("git@") || p.ends_with(".git")) {
                        return Err(StepError::Invalid(format!("ADD of git repositories is not supported: {p}")));
                    } else {
                        paths.push(p);
                    }
                }
                Source::Heredoc(h) => heredocs.push(h.clone()),
            }
        }
        let chown = match &c.chown {
            Some(spec) => Some(self.expand(st, spec)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => {
                let m = self.expand(st, m)?;
                Some(u32::from_str_radix(&m, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                    StepError::Invalid(format!("invalid --chmod {m:?}: expected an octal mode such as 0755"))
                })?)
            }
            None => None,
        };
        let exclude: Vec<String> = c.exclude.iter().map(|e| self.expand(st, e)).collect::<Result<_, _>>()?;
        let many = c.sources.len() > 1 || paths.iter().any(|p| has_glob(p));
        let from = match &c.from {
            Some(f) => Some(self.expand(st, f)?),
            None => None,
        };
        // The key needs neither the image's paths (is the destination a directory?) nor its
        // users (--chown by name): both follow from the parent's layer key, which is part of
        // the key, so they are looked at on a miss only. Sources from another stage or image
        // are keyed by its layer key, and unpacked on a miss only.
        let stage_index = self.stage_index(st);
        let source_image = match &from {
            None => None,
            Some(f) => Some(self.source_image(f, stage_index)?),
        };
        let tree_key = source_image.as_ref().map(|i| i.layer_key.clone());
        let key_dest_is_dir = trailing || many;
        // `--link` (BuildKit's semantics): the layer is made as on an empty root, so neither
        // its content nor its cache key depends on the layers below; only the stage's layer
        // key, which later steps build on, chains it onto the parent's.
        let parent_key = st.image.layer_key.clone();
        let sel = Select {
            what,
            sources: &paths,
            dest: &dest_abs,
            dest_is_dir: key_dest_is_dir,
            exclude: &exclude,
            parents: c.parents,
        };
        let picks = if paths.is_empty() || from.is_some() { Vec::new() } else { self.context.select(&sel)? };

        // The key: parent, arguments, and every selected path.
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut feed = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        if c.link {
            feed(b"--link");
        } else {
            feed(parent_key.to_string().as_bytes());
        }
        feed(what.as_bytes());
        feed(dest_abs.as_bytes());
        feed(&[
            u8::from(key_dest_is_dir),
            u8::from(c.parents),
            u8::from(c.link),
            u8::from(self.options.keep_timestamps),
        ]);
        feed(format!("{chown:?}:{chmod:?}").as_bytes());
        for e in &exclude {
            feed(e.as_bytes());
        }
        for p in &paths {
            feed(p.as_bytes());
        }
        if let Some(k) = &tree_key {
            feed(k.to_string().as_bytes());
        }
        let files: Vec<(&Path, &fs::Metadata)> =
            picks.iter().filter(|p| p.kind == PickKind::File).map(|p| (p.source.as_path(), &p.meta)).collect();
        let digests = self.stat.digest_all(&files)?;
        let mut digest_of: HashMap<&Path, &Digest> = HashMap::new();
        for ((p, _), d) in files.iter().zip(&digests) {
            digest_of.insert(p, d);
        }
        let mut archives: BTreeSet<PathBuf> = BTreeSet::new();
        for p in &picks {
            use std::os::unix::fs::MetadataExt;
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
        let mut heredoc_files = Vec::new();
        for hd in &heredocs {
            let content = if hd.expand {
                expand::expand_keep_quotes(&hd.content, self.plan.escape, &|n| st.lookup(n))?
            } else {
                hd.content.clone()
            };
            feed(hd.name.as_bytes());
            feed(content.as_bytes());
            heredoc_files.push((hd.name.clone(), content));
        }
        let mut downloads = Vec::new();
        for url in &urls {
            let bytes = self.download(url, c.checksum.as_deref())?;
            let name = url.split(['?', '#']).next().unwrap_or(url).rsplit('/').next().unwrap_or("download").to_string();
            let name = if name.is_empty() { "download".to_string() } else { name };
            feed(name.as_bytes());
            feed(Digest::sha256_of(&bytes).to_string().as_bytes());
            downloads.push((name, bytes));
        }
        let key = h.finish();
        let layer_key = if c.link {
            key_of(&[parent_key.to_string().as_bytes(), b"--link", key.to_string().as_bytes()])
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
        let empty = FsIndex::default();
        let index = if c.link {
            &empty
        } else {
            self.index(st)?;
            &st.index
        };
        let dest_is_dir = key_dest_is_dir || index.is_dir(&dest_abs);
        let (uid, gid) = match &chown {
            Some(spec) => resolve_chown(spec, (!c.link).then_some(index))?,
            None => (0, 0),
        };
        let picks = match (&source_image, &from) {
            (Some(image), Some(name)) => {
                let dir = self.materialise(image)?;
                let tree = Tree::new(&dir, Ignore::default(), &format!("stage {name}"))?;
                tree.select(&Select { dest_is_dir, ..sel })?
            }
            _ if dest_is_dir != key_dest_is_dir && !paths.is_empty() => {
                self.context.select(&Select { dest_is_dir, ..sel })?
            }
            _ => picks,
        };
        let target_of =
            |name: &str| if dest_is_dir { join_rel(&dest_abs, name) } else { fsindex::normalise(&dest_abs) };
        let mut entries: Vec<Entry> = Vec::new();
        let mut targets: Vec<String> = Vec::new();
        let mode_of = |m: u32| chmod.unwrap_or(m);
        for p in &picks {
            use std::os::unix::fs::MetadataExt;
            let mode = p.meta.mode() & 0o7777;
            let mtime = p.meta.mtime();
            if p.kind == PickKind::Dir && index.is_dir(&p.target) {
                // An existing directory keeps its metadata.
                continue;
            }
            if archives.contains(&p.source) {
                let (extracted, root) = self.extract_archive(&p.source)?;
                let dir = parent_dir_for_archive(&p.target, dest_is_dir, &dest_abs);
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
                    targets.push(q.target.clone());
                    entries.push(pick_entry(&q, q.meta.uid().into(), q.meta.gid().into(), q.meta.mode() & 0o7777));
                }
                // Last, over any entry of the same path: the archive's `./` gives its owner and
                // mode to the directory it extracts into (Docker's untar merges it), never `/`.
                if let (Some(r), false) = (root, dir.is_empty()) {
                    entries.retain(|e| e.path != dir);
                    targets.push(dir.clone());
                    let mut e = Entry::dir(dir.clone(), r.mode, r.uid, r.gid);
                    e.mtime = i64::try_from(r.mtime).unwrap_or(i64::MAX);
                    entries.push(e);
                }
                continue;
            }
            targets.push(p.target.clone());
            let mut e = pick_entry(p, uid, gid, mode_of(mode));
            e.mtime = mtime;
            entries.push(e);
        }
        for (name, content) in heredoc_files {
            let target = target_of(&name);
            targets.push(target.clone());
            let bytes = content.into_bytes();
            entries.push(Entry {
                path: target,
                kind: Kind::File { size: bytes.len() as u64, content: Content::Bytes(Arc::new(bytes)) },
                mode: mode_of(0o644),
                uid,
                gid,
                mtime: self.epoch,
            });
        }
        for (name, bytes) in downloads {
            let target = target_of(&name);
            targets.push(target.clone());
            entries.push(Entry {
                path: target,
                kind: Kind::File { size: bytes.len() as u64, content: Content::Bytes(Arc::new(bytes)) },
                mode: mode_of(0o600),
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
        for t in &mut targets {
            *t = resolver.resolve(t)?;
        }
        // Parent directories the image lacks.
        let parents: Vec<String> =
            targets.iter().filter_map(|t| t.rsplit_once('/').map(|(d, _)| d.to_string())).collect();
        let existing: BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
        for d in self.missing_dirs(index, &parents, uid, gid) {
            if !existing.contains(&d.path) {
                entries.push(d);
            }
        }
        let size = self.commit(st, &key, entries, &created_by)?;
        st.image.layer_key = layer_key;
        Ok((Outcome::Done, size))
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

    #[test]
    fn parents_resolve_through_the_images_links() {
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
        let mut r = ParentResolver::new(&index);
        assert_eq!(r.resolve("bin/tool").unwrap(), "usr/bin/tool");
        assert_eq!(r.resolve("bin").unwrap(), "bin", "the link itself stays");
        assert_eq!(r.resolve("w/sub/f").unwrap(), "srv/app/sub/f", "a link to a missing directory");
        assert_eq!(r.resolve("r/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(r.resolve("up/etc/x").unwrap(), "etc/x", "`..` stops at the root");
        assert_eq!(r.resolve("top").unwrap(), "top");
    }
}
