//! Containers: records of what was run and how it ended, and the pieces that run them.
//!
//! `berth run` ([`Containers::create`]) writes a container's folder (an OCI bundle, drawn
//! in [`crate::paths`]) with its record `container.json`, then hands it to the supervisor
//! ([`shim`]): the CLI re-executes itself as `berth container-shim ID`, a fresh
//! single-threaded process that mounts the root ([`rootfs`]), writes `config.json`
//! ([`spec`], with the user resolved by [`user`]), starts the container with the embedded
//! runtime (youki's `libcontainer`) or an external OCI runtime ([`oci`]), forwards
//! signals, waits, records the exit status, and cleans up (runtime state, mount, cgroups
//! in every hierarchy ([`cgroups`]), and the whole folder for `--rm`). A detached
//! container's supervisor is double-forked into its own session, so the record stays
//! true after the CLI exits. `berth ps`, `logs`, `stop` and `rm` read and act on records.
//! Both that supervisor and [`foreground`] (the hidden `berth oci-runtime`, which runs the
//! builder's RUN containers with the embedded runtime as `runc run` would) forward signals
//! and reap with [`supervise`]. Before the embedded runtime starts a container, the process
//! runs from a read-only view of the berth binary ([`sealed`]) and joins a fresh session
//! keyring ([`keyring`]).
//!
//! The supervisor also restarts the process by its `--restart` policy ([`restart`]) and runs
//! its health check ([`health`]) through [`exec`], which `berth exec` uses too. `berth stop`,
//! `kill`, `start` and `restart` act on a container through [`lifecycle`].

pub mod cgroups;
pub mod console;
pub mod etc_files;
pub mod exec;
pub mod foreground;
pub mod health;
pub mod keyring;
pub mod lifecycle;
pub mod mounts;
pub mod oci;
pub mod restart;
pub mod rootfs;
pub mod sealed;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod supervise;
pub mod user;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shared::Digest;

use crate::images::FileLock;
use crate::paths::Paths;
pub use rootfs::RootfsKind;
pub use spec::{Device, ExtraHost, Network, RunOptions, SeccompProfile, Tmpfs, Ulimit, Volume};

/// The cgroup parent of every container: a container's cgroup is `/berth/<id>`.
pub const CGROUP_PARENT: &str = "/berth";

/// The format version of `container.json`.
const VERSION: u32 = 1;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Recorded, not started (or starting).
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (see the exit code), or it never started (see the error).
    Exited,
    /// Its process ended and its supervisor waits to start it again (`--restart`).
    Restarting,
}

/// Berth's record of a container, `container.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Format version.
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image reference as given.
    pub image: String,
    /// The canonical reference of the image in the store.
    pub image_reference: String,
    /// The image manifest's digest.
    pub image_manifest: Digest,
    /// The options it was run with.
    pub options: RunOptions,
    /// The command line, for display (set once the configuration is written).
    pub command: Vec<String>,
    /// When it was created, Unix seconds.
    pub created: u64,
    /// Its status.
    pub status: Status,
    /// The supervisor's process ID while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim_pid: Option<i32>,
    /// The container's first process (host PID) while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// When it started, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// When it ended, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// Its exit code: the process's, or 128 + the signal that killed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it could not start, or what went wrong supervising it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the root was made, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootfsKind>,
    /// How many times the supervisor restarted it (`--restart`) since it last started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
    /// The image's `StopSignal`, recorded by the supervisor (`--stop-signal` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_stop_signal: Option<String>,
    /// Its health, while it runs with a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<health::Health>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ContainerRecord {
    /// The cgroup path of the container.
    pub fn cgroups_path(&self) -> String {
        format!("{CGROUP_PARENT}/{}", self.id)
    }

    /// The first 12 digits of the ID, as `ps` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// Whether the record says it runs (or waits to restart) and its supervisor is indeed
    /// alive.
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Created | Status::Restarting)
            && self.shim_pid.is_some_and(process_alive)
    }
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
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
    #[error("{path} is not a valid container record")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No container has this name or ID (prefix).
    #[error("no such container: {0}")]
    NotFound(String),
    /// An ID prefix names more than one container.
    #[error("{0} names more than one container; give more of the ID")]
    Ambiguous(String),
    /// The name is taken.
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse {
        /// The name.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// The name has characters Docker does not allow.
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// The container runs and removal was not forced.
    #[error("container {0} is running: stop it first, or remove it with --force")]
    Running(String),
    /// The container did not stop within the time.
    #[error("container {0} did not stop")]
    StopTimeout(String),
    /// The container does not run.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container runs already.
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    /// A signal name or number that is not one.
    #[error("invalid signal {0:?}: use a name such as TERM, SIGKILL or USR1, or a number")]
    InvalidSignal(String),
    /// Cleaning up the root failed.
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// Cleaning up the cgroups failed.
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    /// A volume of the container could not be made.
    #[error(transparent)]
    Volume(Box<crate::volumes::VolumeError>),
    /// Detaching the container from its network failed.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
}

impl From<crate::volumes::VolumeError> for ContainerError {
    fn from(e: crate::volumes::VolumeError) -> Self {
        ContainerError::Volume(Box::new(e))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Io { path: path.to_path_buf(), source }
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The containers of a store root.
#[derive(Debug, Clone)]
pub struct Containers {
    paths: Paths,
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble", "proud",
    "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "young", "zesty",
];
const NOUNS: &[&str] = &[
    "anchor", "barge", "buoy", "cabin", "dock", "ferry", "galley", "harbor", "hull", "jetty", "keel", "mast", "pier",
    "quay", "rudder", "sail", "schooner", "tug", "wharf", "yacht",
];

/// 32 random bytes as 64 hex digits.
pub(crate) fn random_id() -> Result<String, ContainerError> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        filled += rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
            .map_err(|e| io_err(Path::new("getrandom"))(e.into()))?;
    }
    Ok(hex::encode(bytes))
}

/// Whether `name` is a valid container name (Docker's rule).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Containers {
    /// The containers of the store at `paths`.
    pub fn new(paths: Paths) -> Containers {
        Containers { paths }
    }

    /// The containers of the store at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Containers {
        Containers::new(Paths::new(root))
    }

    /// The store's paths.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The lock under which container names are checked, records created or removed, and
    /// volumes made, checked for use or removed.
    pub(crate) fn lock(&self) -> Result<FileLock, ContainerError> {
        let path = self.paths.containers_lock();
        fs::create_dir_all(self.paths.root()).map_err(io_err(self.paths.root()))?;
        FileLock::exclusive(&path).map_err(io_err(&path))
    }

    /// Records a new container of the image (`image` as given, `reference` and `manifest`
    /// from the store) and creates its folder. `shim_pid` is the supervisor's PID when the
    /// caller is the supervisor itself (saving it a write). Fails when `options.name` is taken.
    /// The volumes of `options` are made (named ones when missing, anonymous ones always)
    /// and their host paths set in the record's copy of the options.
    pub fn create(
        &self,
        image: &str,
        reference: &str,
        manifest: &Digest,
        options: &RunOptions,
        shim_pid: Option<i32>,
    ) -> Result<ContainerRecord, ContainerError> {
        let _lock = self.lock()?;
        let existing = self.list()?;
        let name = match &options.name {
            Some(name) => {
                if !valid_name(name) {
                    return Err(ContainerError::InvalidName(name.clone()));
                }
                if let Some(other) = existing.iter().find(|r| &r.name == name) {
                    return Err(ContainerError::NameInUse { name: name.clone(), id: other.id.clone() });
                }
                name.clone()
            }
            None => {
                let seed = random_id()?;
                let b = seed.as_bytes();
                let base =
                    format!("{}_{}", ADJECTIVES[b[0] as usize % ADJECTIVES.len()], NOUNS[b[1] as usize % NOUNS.len()]);
                let mut name = base.clone();
                let mut n = 1;
                while existing.iter().any(|r| r.name == name) {
                    n += 1;
                    name = format!("{base}{n}");
                }
                name
            }
        };
        let id = random_id()?;
        let mut options = options.clone();
        let volumes = crate::volumes::Volumes::new(self.paths.clone());
        for v in options.volumes.iter_mut().filter(|v| v.is_volume()) {
            let made = volumes.create_locked(v.name.as_deref(), Default::default(), v.anonymous)?;
            v.host = volumes.data(&made.name);
            v.name = Some(made.name);
        }
        let record = ContainerRecord {
            version: VERSION,
            id: id.clone(),
            name,
            image: image.to_string(),
            image_reference: reference.to_string(),
            image_manifest: manifest.clone(),
            options,
            command: Vec::new(),
            created: now(),
            status: Status::Created,
            shim_pid,
            pid: None,
            started: None,
            finished: None,
            exit_code: None,
            error: None,
            rootfs: None,
            restart_count: 0,
            image_stop_signal: None,
            health: None,
        };
        let dir = self.paths.container(&id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        self.save(&record)?;
        Ok(record)
    }

    /// Writes `record` (temporary file, then rename).
    pub fn save(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let path = self.paths.container_record(&record.id);
        let temp = path.with_extension("json.tmp");
        let body =
            serde_json::to_vec_pretty(record).map_err(|source| ContainerError::Json { path: path.clone(), source })?;
        let write = || -> io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&body)?;
            fs::rename(&temp, &path)
        };
        write().map_err(io_err(&path))
    }

    /// Reads the record of container `id` (a full ID).
    pub fn load(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let path = self.paths.container_record(id);
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ContainerError::NotFound(id.to_string())),
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&body).map_err(|source| ContainerError::Json { path, source })
    }

    /// Changes the record of `id` with `change` and saves it; returns the new record.
    pub fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, ContainerError> {
        let mut record = self.load(id)?;
        change(&mut record);
        self.save(&record)?;
        Ok(record)
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, ContainerError> {
        let dir = self.paths.containers();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else { continue };
            match self.load(&id) {
                Ok(r) => records.push(r),
                // Removed meanwhile, or not written yet.
                Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        records.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(records)
    }

    /// The container `name_or_id` means: a name, a full ID, or a unique ID prefix.
    pub fn find(&self, name_or_id: &str) -> Result<ContainerRecord, ContainerError> {
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.id == name_or_id || r.name == name_or_id) {
            return Ok(r.clone());
        }
        let matches: Vec<&ContainerRecord> =
            all.iter().filter(|r| !name_or_id.is_empty() && r.id.starts_with(name_or_id)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ContainerError::NotFound(name_or_id.to_string())),
            _ => Err(ContainerError::Ambiguous(name_or_id.to_string())),
        }
    }

    /// Sends `signal` to the container's first process, when it runs.
    pub fn kill(&self, record: &ContainerRecord, signal: nix::sys::signal::Signal) -> Result<bool, ContainerError> {
        let (Some(pid), true) = (record.pid, record.is_running()) else { return Ok(false) };
        if pid <= 0 {
            return Ok(false);
        }
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
            Ok(()) => Ok(true),
            Err(nix::Error::ESRCH) => Ok(false),
            Err(e) => Err(io_err(Path::new("kill"))(io::Error::from_raw_os_error(e as i32))),
        }
    }

    /// Stops a running container: its stop signal, then SIGKILL after `timeout`; waits
    /// until its supervisor has recorded the end. True when it was running. See
    /// [`Self::stop_with`].
    pub fn stop(&self, name_or_id: &str, timeout: Duration) -> Result<bool, ContainerError> {
        self.stop_with(name_or_id, Some(timeout))
    }

    fn wait_stopped(&self, record: &ContainerRecord, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            // The supervisor records the exit, then cleans up, then exits.
            let gone = match self.load(&record.id) {
                Ok(r) => r.status == Status::Exited && !r.is_running_shim(),
                Err(_) => true,
            };
            if gone {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes a container that is not running (or, with `force`, kills it first): its
    /// mount, cgroups and folder.
    pub fn remove(&self, name_or_id: &str, force: bool) -> Result<ContainerRecord, ContainerError> {
        let record = self.find(name_or_id)?;
        if record.is_running() {
            if !force {
                return Err(ContainerError::Running(record.id));
            }
            self.kill(&record, nix::sys::signal::Signal::SIGKILL)?;
            if !self.wait_stopped(&record, Duration::from_secs(10)) {
                return Err(ContainerError::StopTimeout(record.id));
            }
        }
        let _lock = self.lock()?;
        self.cleanup(&record)?;
        let dir = self.paths.container(&record.id);
        crate::unpack::remove_tree(&dir).map_err(io_err(&dir))?;
        Ok(record)
    }

    /// Undoes what a container left on the host: its network attachment, the root's
    /// mount, and its cgroups.
    pub fn cleanup(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        self.cleanup_with(record, &cgroups::Cgroups::detect()?)
    }

    /// [`Self::cleanup`] with the cgroup hierarchies already read.
    pub fn cleanup_with(&self, record: &ContainerRecord, cgroups: &cgroups::Cgroups) -> Result<(), ContainerError> {
        self.cleanup_then(record, cgroups, || {})
    }

    /// [`Self::cleanup_with`], running `then` once the root file system is unmounted, while
    /// the network plugins still detach the container (they run as processes of their own
    /// from the start of the clean-up to its end).
    pub fn cleanup_then(
        &self,
        record: &ContainerRecord,
        cgroups: &cgroups::Cgroups,
        then: impl FnOnce(),
    ) -> Result<(), ContainerError> {
        let networks = crate::network::Networks::new(self.paths.clone());
        let detaching = networks.start_detach(&record.id);
        let unmounted = rootfs::unmount(&self.paths.container_rootfs(&record.id));
        let removed = cgroups.remove(&record.cgroups_path());
        then();
        let detached = detaching.and_then(|d| d.map_or(Ok(()), |d| d.finish()));
        unmounted?;
        removed?;
        detached?;
        Ok(())
    }
}

impl ContainerRecord {
    fn is_running_shim(&self) -> bool {
        self.shim_pid.is_some_and(process_alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_names_and_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let containers = Containers::at(dir.path());
        let digest = Digest::sha256_of(b"m");
        let named = RunOptions { name: Some("web".into()), ..RunOptions::default() };
        let a = containers.create("busybox", "docker.io/library/busybox:latest", &digest, &named, None).unwrap();
        assert_eq!(a.id.len(), 64);
        assert_eq!(a.status, Status::Created);
        assert!(matches!(
            containers.create("busybox", "r", &digest, &named, None),
            Err(ContainerError::NameInUse { .. })
        ));
        let bad = RunOptions { name: Some("-x".into()), ..RunOptions::default() };
        assert!(matches!(containers.create("busybox", "r", &digest, &bad, None), Err(ContainerError::InvalidName(_))));
        let b = containers.create("busybox", "r", &digest, &RunOptions::default(), Some(7)).unwrap();
        assert_eq!(b.shim_pid, Some(7));
        assert!(b.name.contains('_'), "{}", b.name);
        assert_eq!(containers.list().unwrap().len(), 2);
        assert_eq!(containers.find("web").unwrap().id, a.id);
        assert_eq!(containers.find(&b.id[..10]).unwrap().id, b.id);
        assert!(matches!(containers.find("nope"), Err(ContainerError::NotFound(_))));
        let updated = containers.update(&a.id, |r| r.exit_code = Some(3)).unwrap();
        assert_eq!(containers.load(&a.id).unwrap(), updated);
        assert!(!updated.is_running());
        assert!(valid_name("a.b-c_1") && !valid_name("") && !valid_name("a/b"));
    }
}
