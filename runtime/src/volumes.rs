//! Volumes: folders of the store ([`crate::paths`]: `volumes/<name>/_data`) that outlive
//! the containers mounting them, as Docker's `local` volumes.
//!
//! `berth volume create|ls|inspect|rm|prune` (in `cli`) call [`Volumes`] directly. `berth
//! run -v NAME:/path` makes a missing named volume on first use, and an anonymous one (named
//! by 64 hex digits) for each of the image's `VOLUME` paths that nothing else is mounted
//! on, in [`crate::container::Containers::create`]; `berth rm -v` and `run --rm` remove a
//! container's anonymous volumes ([`Volumes::remove_anonymous`]). Before a container starts,
//! its supervisor fills an empty volume with what the image has at the mount point, owners
//! and modes kept ([`Volumes::fill`]), as Docker does.
//!
//! A volume is in use while any container record (running or not) names it; such a volume
//! is never removed. Volumes are made, checked for use and removed while holding the
//! containers' lock, the same lock under which containers are recorded and removed, so a
//! volume cannot disappear between a container's check and its record.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::container::{now, ContainerError, ContainerRecord, Containers};
use crate::images::FileLock;
use crate::paths::Paths;

/// The format version of `volume.json`.
const VERSION: u32 = 1;

/// Berth's record of a volume, `volume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Format version.
    pub version: u32,
    /// Its name.
    pub name: String,
    /// When it was made, Unix seconds.
    pub created: u64,
    /// `--label` values given to `volume create`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container (the image's `VOLUME`, or `-v /path` alone).
    #[serde(default)]
    pub anonymous: bool,
}

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A file or directory could not be used.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record is unreadable.
    #[error("{path} is not a valid volume record")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No volume has this name.
    #[error("no such volume: {0}")]
    NotFound(String),
    /// The name has characters Docker does not allow.
    #[error("invalid volume name {0:?}: use at least two of [a-zA-Z0-9_.-], starting with a letter or digit")]
    InvalidName(String),
    /// Containers use the volume.
    #[error("volume {name} is in use by container(s) {}: remove them first (berth rm)", containers.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The containers (short IDs) that name it.
        containers: Vec<String>,
    },
    /// Copying the image's files into a new volume failed.
    #[error("copying {from} into volume {name}: {reason}")]
    Fill {
        /// The volume.
        name: String,
        /// The folder copied.
        from: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The container records could not be read.
    #[error(transparent)]
    Containers(Box<ContainerError>),
}

impl From<ContainerError> for VolumeError {
    fn from(e: ContainerError) -> Self {
        VolumeError::Containers(Box::new(e))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { path: path.to_path_buf(), source }
}

/// Whether `name` is a valid volume name (Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_name(name: &str) -> bool {
    name.len() >= 2 && crate::container::valid_name(name)
}

/// The volumes of a store root.
#[derive(Debug, Clone)]
pub struct Volumes {
    paths: Paths,
}

impl Volumes {
    /// The volumes of the store at `paths`.
    pub fn new(paths: Paths) -> Volumes {
        Volumes { paths }
    }

    /// The volumes of the store at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Volumes {
        Volumes::new(Paths::new(root))
    }

    fn containers(&self) -> Containers {
        Containers::new(self.paths.clone())
    }

    /// Where the files of volume `name` are (its mount point).
    pub fn data(&self, name: &str) -> PathBuf {
        self.paths.volume_data(name)
    }

    /// Makes the volume `name` (a random name when `None`) with `labels`, or returns the
    /// existing one of that name (as `docker volume create` does).
    pub fn create(&self, name: Option<&str>, labels: BTreeMap<String, String>) -> Result<VolumeRecord, VolumeError> {
        let _lock = self.containers().lock()?;
        self.create_locked(name, labels, false)
    }

    /// [`Self::create`] for a caller holding the containers' lock.
    pub(crate) fn create_locked(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeRecord, VolumeError> {
        let name = match name {
            Some(n) if !valid_name(n) => return Err(VolumeError::InvalidName(n.to_string())),
            Some(n) => n.to_string(),
            None => crate::container::random_id()?,
        };
        match self.get(&name) {
            Ok(existing) => return Ok(existing),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let data = self.paths.volume_data(&name);
        fs::create_dir_all(&data).map_err(io_err(&data))?;
        let record = VolumeRecord { version: VERSION, name, created: now(), labels, anonymous };
        let path = self.paths.volume_record(&record.name);
        let temp = path.with_extension("json.tmp");
        let body =
            serde_json::to_vec_pretty(&record).map_err(|source| VolumeError::Json { path: path.clone(), source })?;
        let write = || -> io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&body)?;
            fs::rename(&temp, &path)
        };
        write().map_err(io_err(&path))?;
        Ok(record)
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let path = self.paths.volume_record(name);
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(VolumeError::NotFound(name.to_string())),
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&body).map_err(|source| VolumeError::Json { path, source })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRecord>, VolumeError> {
        let dir = self.paths.volumes();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            match self.get(&name) {
                Ok(r) => out.push(r),
                // Being made or removed right now (or a stray folder).
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The containers among `records` that name volume `name`.
    pub fn users<'a>(name: &str, records: &'a [ContainerRecord]) -> Vec<&'a ContainerRecord> {
        records.iter().filter(|r| r.options.volumes.iter().any(|v| v.name.as_deref() == Some(name))).collect()
    }

    /// Removes volume `name` and its files; refused while a container names it.
    pub fn remove(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        let _lock = self.containers().lock()?;
        let record = self.get(name)?;
        let all = self.containers().list()?;
        let users = Self::users(name, &all);
        if !users.is_empty() {
            let containers = users.iter().map(|r| r.short_id().to_string()).collect();
            return Err(VolumeError::InUse { name: name.to_string(), containers });
        }
        self.remove_locked(name)?;
        Ok(record)
    }

    /// Removes the folder of volume `name`: renamed out of sight first (a name with a dot
    /// is no volume's), so that a removal cut short never leaves half a volume listed.
    fn remove_locked(&self, name: &str) -> Result<(), VolumeError> {
        let dir = self.paths.volume(name);
        let doomed = self.paths.volumes().join(format!(".removing-{name}"));
        fs::rename(&dir, &doomed).map_err(io_err(&dir))?;
        crate::unpack::remove_tree(&doomed).map_err(io_err(&doomed))
    }

    /// Removes every volume no container names; returns their names.
    pub fn prune(&self) -> Result<Vec<String>, VolumeError> {
        let _lock = self.containers().lock()?;
        let all = self.containers().list()?;
        let mut removed = Vec::new();
        for volume in self.list()? {
            if Self::users(&volume.name, &all).is_empty() {
                self.remove_locked(&volume.name)?;
                removed.push(volume.name);
            }
        }
        Ok(removed)
    }

    /// Removes the anonymous volumes of `container` (a container already removed, or being
    /// removed) that no other container names; returns their names.
    pub fn remove_anonymous(&self, container: &ContainerRecord) -> Result<Vec<String>, VolumeError> {
        let _lock = self.containers().lock()?;
        let others: Vec<ContainerRecord> =
            self.containers().list()?.into_iter().filter(|r| r.id != container.id).collect();
        let mut removed = Vec::new();
        for v in container.options.volumes.iter().filter(|v| v.anonymous) {
            let Some(name) = &v.name else { continue };
            if !Self::users(name, &others).is_empty() {
                continue;
            }
            match self.get(name) {
                Ok(_) => {
                    self.remove_locked(name)?;
                    removed.push(name.clone());
                }
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Fills volume `name` with a copy of `from` (the image's folder at the mount point,
    /// inside the container's root, its links already resolved) when the volume is empty:
    /// owners, modes, times, links and extended attributes kept (`cp -a`, as the builder
    /// copies trees). Returns whether it copied.
    pub fn fill(&self, name: &str, from: &Path) -> Result<bool, VolumeError> {
        let data = self.paths.volume_data(name);
        let lock_path = self.paths.volume(name).join("fill.lock");
        let _lock = FileLock::exclusive(&lock_path).map_err(io_err(&lock_path))?;
        let empty = fs::read_dir(&data).map_err(io_err(&data))?.next().is_none();
        if !empty || !from.is_dir() {
            return Ok(false);
        }
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(&data)
            .output()
            .map_err(io_err(Path::new("cp")))?;
        if !out.status.success() {
            let reason = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(VolumeError::Fill { name: name.to_string(), from: from.to_path_buf(), reason });
        }
        Ok(true)
    }

    /// `docker volume inspect`'s shape for `record`.
    pub fn inspect(&self, record: &VolumeRecord) -> Value {
        json!({
            "CreatedAt": shared::date::rfc3339(record.created as i64),
            "Driver": "local",
            "Labels": if record.labels.is_empty() { Value::Null } else { json!(record.labels) },
            "Mountpoint": self.data(&record.name),
            "Name": record.name,
            "Options": Value::Null,
            "Scope": "local",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{RunOptions, Volume};
    use shared::Digest;

    #[test]
    fn volumes_are_made_listed_and_removed_unless_used() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = Volumes::at(dir.path());
        let labels = BTreeMap::from([("team".to_string(), "web".to_string())]);
        let a = volumes.create(Some("data"), labels.clone()).unwrap();
        assert_eq!((a.name.as_str(), &a.labels, a.anonymous), ("data", &labels, false));
        assert!(volumes.data("data").is_dir());
        // Made again: the same volume.
        assert_eq!(volumes.create(Some("data"), BTreeMap::new()).unwrap(), a);
        let b = volumes.create(None, BTreeMap::new()).unwrap();
        assert_eq!(b.name.len(), 64);
        assert!(matches!(volumes.create(Some("x"), BTreeMap::new()), Err(VolumeError::InvalidName(_))));
        assert!(matches!(volumes.create(Some("../up"), BTreeMap::new()), Err(VolumeError::InvalidName(_))));
        assert!(matches!(volumes.get("../x"), Err(VolumeError::NotFound(_))));
        assert_eq!(volumes.list().unwrap().len(), 2);
        let shown = volumes.inspect(&a);
        assert_eq!((shown["Name"].as_str(), shown["Driver"].as_str()), (Some("data"), Some("local")));
        assert_eq!(shown["Labels"]["team"], "web");

        // A container naming it keeps it, stopped or not.
        let containers = Containers::at(dir.path());
        let options = RunOptions {
            volumes: vec![Volume { name: Some("data".into()), container: "/d".into(), ..Volume::default() }],
            ..RunOptions::default()
        };
        let c = containers.create("i", "r", &Digest::sha256_of(b"m"), &options, None).unwrap();
        assert_eq!(c.options.volumes[0].host, volumes.data("data"));
        let refused = volumes.remove("data").unwrap_err();
        assert!(matches!(&refused, VolumeError::InUse { containers, .. } if containers == &[c.short_id().to_string()]));
        assert!(refused.to_string().contains("in use"), "{refused}");
        assert_eq!(volumes.prune().unwrap(), vec![b.name.clone()]);
        containers.remove(&c.id, false).unwrap();
        volumes.remove("data").unwrap();
        assert!(!volumes.paths.volume("data").exists());
        assert!(matches!(volumes.remove("data"), Err(VolumeError::NotFound(_))));
        assert!(volumes.list().unwrap().is_empty());
    }

    #[test]
    fn anonymous_volumes_go_with_their_container() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = Volumes::at(dir.path());
        let containers = Containers::at(dir.path());
        let anonymous = Volume { anonymous: true, container: "/var/data".into(), ..Volume::default() };
        let named = Volume { name: Some("kept".into()), container: "/k".into(), ..Volume::default() };
        let options = RunOptions { volumes: vec![anonymous, named], ..RunOptions::default() };
        let c = containers.create("i", "r", &Digest::sha256_of(b"m"), &options, None).unwrap();
        let made = c.options.volumes[0].name.clone().unwrap();
        assert!(volumes.get(&made).unwrap().anonymous);
        assert!(volumes.get("kept").is_ok(), "a named volume is made on first use");
        containers.remove(&c.id, false).unwrap();
        assert_eq!(volumes.remove_anonymous(&c).unwrap(), vec![made]);
        assert_eq!(volumes.list().unwrap().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["kept"]);
    }

    #[test]
    fn an_empty_volume_is_filled_once() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let volumes = Volumes::at(dir.path());
        volumes.create(Some("v1"), BTreeMap::new()).unwrap();
        let image = dir.path().join("image");
        fs::create_dir_all(image.join("sub")).unwrap();
        fs::write(image.join("sub/file"), "from the image").unwrap();
        fs::set_permissions(image.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("/etc/passwd", image.join("link")).unwrap();
        assert!(volumes.fill("v1", &image).unwrap());
        let data = volumes.data("v1");
        assert_eq!(fs::read_to_string(data.join("sub/file")).unwrap(), "from the image");
        assert_eq!(fs::metadata(data.join("sub")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::read_link(data.join("link")).unwrap(), Path::new("/etc/passwd"), "links stay links");
        fs::write(image.join("later"), "x").unwrap();
        assert!(!volumes.fill("v1", &image).unwrap(), "a volume with files is left alone");
        assert!(!data.join("later").exists());
        assert!(!volumes.fill("v1", &dir.path().join("missing")).unwrap());
    }
}
