//! Image archives: `berth save` and `berth load` (in `cli`) call [`Store::save`] and
//! [`Store::load`].
//!
//! [`Store::save`] writes one tar in the shape Docker 25+ writes, which both `docker load`
//! (20.10 and later) and OCI tools read:
//!
//! ```text
//! manifest.json        [{"Config":"blobs/sha256/<config>","RepoTags":["busybox:latest"],
//!                        "Layers":["blobs/sha256/<layer>",…]}]   (what `docker load` reads)
//! repositories         {"busybox":{"latest":"<config hex>"}}     (older Docker tools)
//! oci-layout           {"imageLayoutVersion":"1.0.0"}
//! index.json           one entry per name, with io.containerd.image.name and
//!                      org.opencontainers.image.ref.name annotations
//! blobs/sha256/<hex>   manifests, configs and layer blobs exactly as the store holds them
//! ```
//!
//! [`Store::load`] reads such archives, the archives of `docker save` 20.10 (config
//! `<id>.json`, uncompressed `<id>/layer.tar`, no OCI layout) and OCI layout archives (such
//! as skopeo's `oci-archive:`), plain or gzip-compressed. Entries are written to numbered
//! files in the store's `tmp/`, never by their names, so no entry can land outside it; every
//! blob is then verified by [`Store::import`] (digest, size, and each layer's diff ID while
//! it is unpacked) before anything is recorded.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::layout::{Index, REF_NAME_ANNOTATION};
use shared::manifest::{Descriptor, Manifest, Platform};
use shared::{media_type, Digest, ImageRef};

use crate::images::{FileLock, ImageRecord, LayerRecord};
use crate::import::{ImportError, LocalImage};
use crate::store::StoreError;
use crate::unpack::remove_tree;
use crate::Store;

/// The annotation containerd and Docker 25+ give an `index.json` entry: the image's full name.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// Why an archive could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store could not find the images, or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the archive failed.
    #[error("writing the archive")]
    Write(#[source] io::Error),
    /// Reading the archive failed (not a tar, or cut short).
    #[error("reading the archive")]
    Read(#[source] io::Error),
    /// A file of the store or of the unpacked archive could not be used.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry's name is absolute or climbs out with `..`.
    #[error("archive entry {0:?} has an unsafe name")]
    UnsafeEntry(String),
    /// A file the archive's manifest names is not in it.
    #[error("the archive has no {0}")]
    Missing(String),
    /// The archive is neither a Docker archive nor an OCI layout.
    #[error("not an image archive: it has neither manifest.json (docker save) nor index.json (OCI layout)")]
    NotAnArchive,
    /// A JSON file of the archive is not what its name says.
    #[error("{what} is not valid: {reason}")]
    Invalid {
        /// The file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An image in the archive has no name to record it under.
    #[error("image {config} in the archive has no name (docker save by ID); save it by name")]
    Unnamed {
        /// Its config digest (Docker's image ID).
        config: Digest,
    },
    /// Recording an image failed (verification included).
    #[error("loading image {config}")]
    Import {
        /// Its config digest.
        config: Digest,
        /// The cause.
        #[source]
        source: Box<ImportError>,
    },
}

fn invalid(what: &str, reason: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Invalid { what: what.to_string(), reason: reason.to_string() }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

/// One entry of a Docker archive's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The path of a blob inside an archive.
fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

impl Store {
    /// Writes the images `names` mean (see [`Store::find_one`]) to `out` as one archive (see
    /// the module doc). Every name must be found before anything is written.
    pub fn save(&self, names: &[String], out: impl Write) -> Result<(), ArchiveError> {
        let lock_path = self.paths.lock();
        let _lock = FileLock::shared(&lock_path).map_err(io_err(&lock_path))?;
        let mut images: Vec<ImageRecord> = Vec::new();
        for name in names {
            let record = self.find_one(name)?;
            if !images.iter().any(|r| r.reference == record.reference) {
                images.push(record);
            }
        }
        let mut tar = tar::Builder::new(out);
        let mut written = std::collections::BTreeSet::new();
        for dir in ["blobs/", "blobs/sha256/"] {
            append(&mut tar, dir, tar::EntryType::Directory, &[])?;
        }
        for record in &images {
            for digest in record.blobs().filter(|d| Some(*d) != record.index.as_ref()) {
                if written.insert(digest.clone()) {
                    let path = self.content.path(digest);
                    let mut file = File::open(&path).map_err(io_err(&path))?;
                    let size = file.metadata().map_err(io_err(&path))?.len();
                    let mut header = file_header(size);
                    tar.append_data(&mut header, blob_name(digest), &mut file).map_err(ArchiveError::Write)?;
                }
            }
        }
        let (manifest_json, repositories, index) = describe(&images);
        for (name, body) in [
            ("manifest.json", serde_json::to_vec(&manifest_json)),
            ("repositories", serde_json::to_vec(&repositories)),
            ("oci-layout", serde_json::to_vec(&serde_json::json!({"imageLayoutVersion": "1.0.0"}))),
            ("index.json", serde_json::to_vec(&index)),
        ] {
            let body = body.map_err(|e| ArchiveError::Write(e.into()))?;
            append(&mut tar, name, tar::EntryType::Regular, &body)?;
        }
        tar.into_inner().and_then(|mut out| out.flush()).map_err(ArchiveError::Write)
    }

    /// Reads an archive (see the module doc) from `input` and records each image in it under
    /// its names, replacing what they named; returns the records.
    pub fn load(&self, input: impl Read) -> Result<Vec<ImageRecord>, ArchiveError> {
        let dir = self.paths.temp("load");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let result = self.load_into(input, &dir);
        if let Err(e) = remove_tree(&dir) {
            tracing::warn!(path = %dir.display(), error = %shared::error_chain(&e), "cannot remove an unpacked archive");
        }
        result
    }

    fn load_into(&self, input: impl Read, dir: &Path) -> Result<Vec<ImageRecord>, ArchiveError> {
        let files = Unpacked::read(input, dir)?;
        let oci = match files.get("index.json") {
            Some(path) => Some(oci_images(&files, &read_json::<Index>(path, "index.json")?)?),
            None => None,
        };
        let images = match (files.get("manifest.json"), oci) {
            (Some(path), oci) => docker_images(&files, path, oci.unwrap_or_default())?,
            (None, Some(oci)) => oci,
            (None, None) => return Err(ArchiveError::NotAnArchive),
        };
        let mut records = Vec::new();
        for image in images {
            let config = image.config_digest.clone();
            if image.names.is_empty() {
                return Err(ArchiveError::Unnamed { config });
            }
            let local = LocalImage {
                manifest: &image.manifest,
                manifest_digest: &image.manifest_digest,
                media_type: &image.media_type,
                config: &image.config,
                config_digest: &image.config_digest,
                layers: image.layers.clone(),
            };
            records.extend(
                self.import(&local, &image.names)
                    .map_err(|source| ArchiveError::Import { config, source: Box::new(source) })?,
            );
        }
        Ok(records)
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    kind: tar::EntryType,
    body: &[u8],
) -> Result<(), ArchiveError> {
    let mut header = file_header(body.len() as u64);
    header.set_entry_type(kind);
    if kind == tar::EntryType::Directory {
        header.set_mode(0o755);
    }
    tar.append_data(&mut header, name, body).map_err(ArchiveError::Write)
}

/// `manifest.json`, `repositories` and `index.json` for `images`.
fn describe(images: &[ImageRecord]) -> (Vec<DockerEntry>, BTreeMap<String, BTreeMap<String, String>>, Index) {
    let mut entries: Vec<(Digest, DockerEntry)> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut index = Index::default();
    for record in images {
        let familiar = record.image_ref().map_or_else(|_| record.reference.clone(), |r| r.familiar());
        let position = entries.iter().position(|(m, _)| *m == record.manifest);
        let entry = match position {
            Some(i) => &mut entries[i].1,
            None => {
                let layers = record.layers.iter().map(|l| blob_name(&l.digest)).collect();
                let entry = DockerEntry { config: blob_name(&record.config), repo_tags: Some(Vec::new()), layers };
                entries.push((record.manifest.clone(), entry));
                &mut entries.last_mut().expect("just pushed").1
            }
        };
        entry.repo_tags.get_or_insert_with(Vec::new).push(familiar);
        let mut annotations = BTreeMap::from([(CONTAINERD_NAME_ANNOTATION.to_string(), record.reference.clone())]);
        if let Ok(image) = record.image_ref() {
            if let Some(tag) = image.tag() {
                repositories
                    .entry(image.familiar_name())
                    .or_default()
                    .insert(tag.to_string(), record.config.hex().into());
                annotations.insert(REF_NAME_ANNOTATION.to_string(), tag.to_string());
            }
        }
        index.manifests.push(Descriptor {
            media_type: record.media_type.clone(),
            digest: record.manifest.clone(),
            size: record.manifest_size,
            artifact_type: None,
            annotations: Some(annotations),
            platform: None,
            urls: None,
        });
    }
    (entries.into_iter().map(|(_, e)| e).collect(), repositories, index)
}

/// An image found in an archive, ready for [`Store::import`].
#[derive(Debug, Clone)]
struct Found {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    media_type: String,
    config: Vec<u8>,
    config_digest: Digest,
    layers: Vec<(LayerRecord, PathBuf)>,
    names: Vec<ImageRef>,
}

/// The regular files of an unpacked archive, by normalised entry name; symbolic links
/// (`docker save` 20.10 links a layer shared by two images) resolve to their targets.
struct Unpacked {
    files: HashMap<String, PathBuf>,
    links: HashMap<String, String>,
}

impl Unpacked {
    /// Writes each regular file of the tar `input` (gzip-compressed or not) to a numbered
    /// file in `dir`.
    fn read(input: impl Read, dir: &Path) -> Result<Unpacked, ArchiveError> {
        let mut input = BufReader::new(input);
        let gzip = input.fill_buf().map_err(ArchiveError::Read)?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(input)) } else { Box::new(input) };
        let mut archive = tar::Archive::new(reader);
        let mut unpacked = Unpacked { files: HashMap::new(), links: HashMap::new() };
        for (n, entry) in archive.entries().map_err(ArchiveError::Read)?.enumerate() {
            let mut entry = entry.map_err(ArchiveError::Read)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = normalise(Path::new(&raw)).ok_or_else(|| ArchiveError::UnsafeEntry(raw.clone()))?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = dir.join(format!("f{n}"));
                    let mut file = File::create(&path).map_err(io_err(&path))?;
                    io::copy(&mut entry, &mut file).map_err(ArchiveError::Read)?;
                    unpacked.files.insert(name, path);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name().map_err(ArchiveError::Read)?.unwrap_or_default().into_owned();
                    let base = if entry.header().entry_type() == tar::EntryType::Link {
                        PathBuf::new()
                    } else {
                        Path::new(&name).parent().map(Path::to_path_buf).unwrap_or_default()
                    };
                    let joined = normalise(&base.join(&target))
                        .ok_or_else(|| ArchiveError::UnsafeEntry(target.display().to_string()))?;
                    unpacked.links.insert(name, joined);
                }
                _ => {}
            }
        }
        Ok(unpacked)
    }

    /// The file the entry `name` holds (through up to 8 links).
    fn get(&self, name: &str) -> Option<&Path> {
        let mut name = normalise(Path::new(name))?;
        for _ in 0..8 {
            if let Some(path) = self.files.get(&name) {
                return Some(path);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn need(&self, name: &str) -> Result<&Path, ArchiveError> {
        self.get(name).ok_or_else(|| ArchiveError::Missing(name.to_string()))
    }

    /// The bytes of blob `digest`, checked against it.
    fn blob(&self, digest: &Digest) -> Result<Vec<u8>, ArchiveError> {
        let name = blob_name(digest);
        let path = self.need(&name)?;
        let body = fs::read(path).map_err(io_err(path))?;
        if Digest::of(digest.algorithm(), &body) != *digest {
            return Err(invalid(&name, "content does not match its digest"));
        }
        Ok(body)
    }
}

/// `name` relative, without `.`, refused when absolute or climbing out with `..`.
fn normalise(name: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, ArchiveError> {
    let body = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&body).map_err(|e| invalid(what, e))
}

/// The diff IDs a config lists.
fn diff_ids(config: &[u8], what: &str) -> Result<Vec<Digest>, ArchiveError> {
    let parsed: oci_spec::image::ImageConfiguration = serde_json::from_slice(config).map_err(|e| invalid(what, e))?;
    parsed.rootfs().diff_ids().iter().map(|d| d.parse().map_err(|e| invalid(what, e))).collect()
}

/// The images of an OCI layout's index: each entry (an index entry resolved to the host's
/// platform), named by its annotations.
fn oci_images(files: &Unpacked, index: &Index) -> Result<Vec<Found>, ArchiveError> {
    let mut found: Vec<Found> = Vec::new();
    for entry in &index.manifests {
        let mut manifest_desc = entry.clone();
        let mut body = files.blob(&manifest_desc.digest)?;
        let what = format!("manifest {}", manifest_desc.digest);
        let mut manifest = Manifest::parse(&body, Some(&manifest_desc.media_type)).map_err(|e| invalid(&what, e))?;
        if manifest.is_index() {
            let child = shared::platform::select(&manifest.manifests, &Platform::host())
                .ok_or_else(|| invalid(&what, "no entry for this machine's platform"))?;
            manifest_desc = child.clone();
            body = files.blob(&manifest_desc.digest)?;
            manifest = Manifest::parse(&body, Some(&manifest_desc.media_type)).map_err(|e| invalid(&what, e))?;
        }
        let names = entry_name(entry).into_iter().collect::<Vec<_>>();
        if let Some(same) = found.iter_mut().find(|f| f.manifest_digest == manifest_desc.digest) {
            same.names.extend(names);
            continue;
        }
        let config_desc = manifest.config.clone().ok_or_else(|| invalid(&what, "no config"))?;
        let config = files.blob(&config_desc.digest)?;
        let ids = diff_ids(&config, &format!("config {}", config_desc.digest))?;
        if ids.len() != manifest.layers.len() {
            return Err(invalid(&what, format!("{} layers but {} diff IDs", manifest.layers.len(), ids.len())));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(ids) {
            let path = files.need(&blob_name(&layer.digest))?.to_path_buf();
            let record = LayerRecord {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                size: layer.size,
                diff_id,
            };
            layers.push((record, path));
        }
        found.push(Found {
            manifest: body,
            manifest_digest: manifest_desc.digest,
            media_type: manifest.media_type,
            config,
            config_digest: config_desc.digest,
            layers,
            names,
        });
    }
    Ok(found)
}

/// The name of an `index.json` entry: its containerd name, else its ref name when that is
/// a whole reference (has a repository).
fn entry_name(entry: &Descriptor) -> Option<ImageRef> {
    let annotations = entry.annotations.as_ref()?;
    if let Some(name) = annotations.get(CONTAINERD_NAME_ANNOTATION) {
        return name.parse().ok();
    }
    annotations.get(REF_NAME_ANNOTATION).filter(|n| n.contains('/') || n.contains(':')).and_then(|n| n.parse().ok())
}

/// The images of a Docker archive's `manifest.json`. An image the archive's OCI layout also
/// describes (`oci`, same config) keeps that manifest; otherwise (`docker save` 20.10) an
/// OCI manifest is made for the layer files as they are.
fn docker_images(files: &Unpacked, path: &Path, oci: Vec<Found>) -> Result<Vec<Found>, ArchiveError> {
    let entries: Vec<DockerEntry> = read_json(path, "manifest.json")?;
    let mut found: Vec<Found> = Vec::new();
    for entry in entries {
        let config_path = files.need(&entry.config)?;
        let config = fs::read(config_path).map_err(io_err(config_path))?;
        let config_digest = Digest::sha256_of(&config);
        let names = entry
            .repo_tags
            .iter()
            .flatten()
            .map(|t| t.parse().map_err(|e| invalid("manifest.json", format!("RepoTags {t:?}: {e}"))))
            .collect::<Result<Vec<ImageRef>, _>>()?;
        let described = oci.iter().find(|f| f.config_digest == config_digest && f.layers.len() == entry.layers.len());
        let mut image = match described {
            Some(image) => Found { names: Vec::new(), ..image.clone() },
            None => docker_manifest(files, &entry, config, config_digest)?,
        };
        image.names = names;
        found.push(image);
    }
    Ok(found)
}

/// An OCI image manifest for a Docker archive entry whose layers are files of the archive
/// (uncompressed tars from `docker save` 20.10, or compressed blobs), with the config's
/// diff IDs.
fn docker_manifest(
    files: &Unpacked,
    entry: &DockerEntry,
    config: Vec<u8>,
    config_digest: Digest,
) -> Result<Found, ArchiveError> {
    let ids = diff_ids(&config, &entry.config)?;
    if ids.len() != entry.layers.len() {
        let reason = format!("{} layers in manifest.json but {} diff IDs", entry.layers.len(), ids.len());
        return Err(invalid(&entry.config, reason));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in entry.layers.iter().zip(ids) {
        let path = files.need(name)?.to_path_buf();
        let (digest, size, media_type) = describe_layer(&path)?;
        layers.push((LayerRecord { digest, media_type: media_type.into(), size, diff_id }, path));
    }
    let descriptor = |media_type: &str, digest: &Digest, size: u64| serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, &config_digest, config.len() as u64),
        "layers": layers.iter().map(|(l, _)| descriptor(&l.media_type, &l.digest, l.size)).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| invalid("the manifest made for the archive", e))?;
    Ok(Found {
        manifest_digest: Digest::sha256_of(&manifest),
        manifest,
        media_type: media_type::OCI_MANIFEST.into(),
        config,
        config_digest,
        layers,
        names: Vec::new(),
    })
}

/// A layer file's digest, size and media type (by its first bytes: gzip, zstd or plain tar).
fn describe_layer(path: &Path) -> Result<(Digest, u64, &'static str), ArchiveError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = shared::Hasher::new(shared::digest::Algorithm::Sha256);
    let mut buf = vec![0u8; 1024 * 1024];
    let (mut size, mut magic) = (0u64, Vec::new());
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        if magic.len() < 4 {
            magic.extend_from_slice(&buf[..n.min(4 - magic.len())]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let media_type = if magic.starts_with(&[0x1f, 0x8b]) {
        media_type::OCI_LAYER_GZIP
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        media_type::OCI_LAYER_ZSTD
    } else {
        media_type::OCI_LAYER_TAR
    };
    Ok((hasher.finish(), size, media_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::layer::{write_layer_to_file, LayerOptions};

    /// A store holding one image `local/app:v1` of one layer (`/etc/motd`), and that layer.
    fn store_with_image(dir: &Path) -> (Store, ImageRecord, PathBuf) {
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/motd"), "saved\n").unwrap();
        let blob = dir.join("layer.tar.gz");
        let layer = write_layer_to_file(&tree, &LayerOptions::default(), &blob).unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}, "config": {},
        }))
        .unwrap();
        let record = LayerRecord {
            digest: layer.digest.clone(),
            media_type: media_type::OCI_LAYER_GZIP.into(),
            size: layer.size,
            diff_id: layer.diff_id.clone(),
        };
        let config_digest = Digest::sha256_of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": record.media_type, "digest": record.digest, "size": record.size}],
        }))
        .unwrap();
        let image = LocalImage {
            manifest: &manifest,
            manifest_digest: &Digest::sha256_of(&manifest),
            media_type: media_type::OCI_MANIFEST,
            config: &config,
            config_digest: &config_digest,
            layers: vec![(record, blob.clone())],
        };
        let store = Store::open(dir.join("store")).unwrap();
        let names = ["local/app:v1".parse().unwrap()];
        let record = store.import(&image, &names).unwrap().remove(0);
        (store, record, blob)
    }

    fn entries(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (e.path().unwrap().display().to_string(), body)
            })
            .collect()
    }

    #[test]
    fn saved_images_load_with_the_same_manifest_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let (store, record, _) = store_with_image(dir.path());
        let mut archive = Vec::new();
        store.save(&["local/app:v1".into()], &mut archive).unwrap();

        let files = entries(&archive);
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["local/app:v1"]));
        assert_eq!(manifest[0]["Config"], format!("blobs/sha256/{}", record.config.hex()));
        assert_eq!(manifest[0]["Layers"][0], format!("blobs/sha256/{}", record.layers[0].digest.hex()));
        let index: Index = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(index.manifests[0].digest, record.manifest);
        assert_eq!(
            index.manifests[0].annotations.as_ref().unwrap()[CONTAINERD_NAME_ANNOTATION],
            "docker.io/local/app:v1"
        );
        assert!(files.contains_key("oci-layout") && files.contains_key("repositories"));

        let other = Store::open(dir.path().join("other")).unwrap();
        let loaded = other.load(archive.as_slice()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            (loaded[0].manifest.clone(), loaded[0].reference.as_str()),
            (record.manifest, "docker.io/local/app:v1")
        );
        let motd = other.snapshots().rootfs(&record.layers[0].diff_id).join("etc/motd");
        assert_eq!(fs::read_to_string(motd).unwrap(), "saved\n");
        assert_eq!(fs::read_dir(dir.path().join("other/tmp")).unwrap().count(), 0, "the unpacked archive is left");
        assert!(matches!(
            store.save(&["missing".into()], Vec::new()),
            Err(ArchiveError::Store(StoreError::NotFound(_)))
        ));
    }

    /// A tar of `(name, body)` files and `(name, target)` symbolic links.
    fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut header = file_header(body.len() as u64);
            tar.append_data(&mut header, name, *body).unwrap();
        }
        for (name, target) in links {
            let mut header = file_header(0);
            header.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut header, name, target).unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn loads_docker_20_10_archives_with_uncompressed_and_linked_layers() {
        let dir = tempfile::tempdir().unwrap();
        let (_, record, blob) = store_with_image(dir.path());
        let mut layer = Vec::new();
        flate2::read::GzDecoder::new(File::open(blob).unwrap()).read_to_end(&mut layer).unwrap();
        let diff_id = &record.layers[0].diff_id;
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]}, "config": {},
        }))
        .unwrap();
        let manifest = serde_json::json!([{"Config": "abc.json", "RepoTags": ["old:v1"],
            "Layers": ["l1/layer.tar", "l2/layer.tar"]}]);
        let archive = tar_of(
            &[
                ("abc.json", &config),
                ("./l1/layer.tar", &layer),
                ("manifest.json", &serde_json::to_vec(&manifest).unwrap()),
            ],
            &[("l2/layer.tar", "../l1/layer.tar")],
        );
        let other = Store::open(dir.path().join("other")).unwrap();
        let loaded = other.load(archive.as_slice()).unwrap();
        assert_eq!(loaded[0].reference, "docker.io/library/old:v1");
        assert_eq!(loaded[0].layers.len(), 2);
        assert_eq!(loaded[0].layers[0].media_type, media_type::OCI_LAYER_TAR);
        assert_eq!(loaded[0].layers[0].digest, *diff_id, "an uncompressed layer's digest is its diff ID");
        assert_eq!(other.find("old:v1").unwrap().len(), 1);

        // A layer that is not what the config says is refused, and nothing is recorded.
        let wrong = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(b"x")]}, "config": {},
        }))
        .unwrap();
        let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": ["bad:v1"], "Layers": ["l/layer.tar"]}]);
        let archive = tar_of(
            &[("c.json", &wrong), ("l/layer.tar", &layer), ("manifest.json", &serde_json::to_vec(&manifest).unwrap())],
            &[],
        );
        assert!(matches!(other.load(archive.as_slice()), Err(ArchiveError::Import { .. })));
        assert!(other.find("bad:v1").unwrap().is_empty());
    }

    #[test]
    fn unsafe_names_and_other_tars_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = file_header(1);
        // `append_data` refuses `..`; write the name into the header as a hostile tool would.
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        tar.append(&header, &b"x"[..]).unwrap();
        let archive = tar.into_inner().unwrap();
        assert!(matches!(store.load(archive.as_slice()), Err(ArchiveError::UnsafeEntry(n)) if n == "../escape"));
        assert!(!dir.path().join("escape").exists() && !dir.path().join("tmp/escape").exists());
        let links = tar_of(&[], &[("manifest.json", "../../etc/passwd")]);
        assert!(matches!(store.load(links.as_slice()), Err(ArchiveError::UnsafeEntry(_))));
        let plain = tar_of(&[("hello.txt", b"hi")], &[]);
        assert!(matches!(store.load(plain.as_slice()), Err(ArchiveError::NotAnArchive)));
        assert!(matches!(
            store.load(&b"not a tar at all"[..]),
            Err(ArchiveError::Read(_) | ArchiveError::NotAnArchive)
        ));
    }
}
