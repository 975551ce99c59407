//! The host's cgroup layout, as far as berth needs to know it: which of the three setups
//! the host has (v2 only, v1 only, or hybrid: v1 controllers with a v2 hierarchy mounted
//! beside them, usually at `/sys/fs/cgroup/unified`), whether swap can be limited, and the
//! directories a container's cgroup path names in every mounted hierarchy.
//!
//! The OCI runtime (embedded or not) creates the cgroups and sets the limits from
//! `config.json`; the supervisor ([`super::shim`]) and `berth rm` call [`Cgroups::remove`]
//! afterwards so that nothing is left behind even when the runtime's own clean-up did not
//! run (a killed supervisor, say).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

/// Which cgroup setup the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only the unified (v2) hierarchy.
    V2,
    /// Only v1 controller hierarchies.
    V1,
    /// v1 controllers plus a v2 hierarchy without controllers beside them.
    Hybrid,
}

/// Why cgroups could not be read or removed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be used.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup still had processes after they were killed.
    #[error("cgroup {0} is still busy")]
    Busy(PathBuf),
}

/// The mounted cgroup hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    /// The setup.
    pub mode: CgroupMode,
    /// Mount points of every hierarchy (v1 controllers, named ones, and the v2 one).
    pub mounts: Vec<PathBuf>,
    /// Where the v1 memory controller, or the v2 hierarchy with the memory controller, is.
    memory: Option<PathBuf>,
    /// The controllers of the v1 hierarchies (empty for v2 only: the v2 hierarchy says what
    /// it offers in its `cgroup.controllers`).
    v1_controllers: Vec<String>,
}

impl Cgroups {
    /// Reads the hierarchies from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Cgroups, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Io { path: path.into(), source })?;
        Ok(Self::from_mountinfo(&text))
    }

    /// Reads the hierarchies from the text of a `mountinfo` file.
    pub fn from_mountinfo(text: &str) -> Cgroups {
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        let mut memory = None;
        let mut v1_controllers = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(mount_point), Some(fs_type)) = (fields.get(4), right.first()) else { continue };
            let mount_point = PathBuf::from(unescape(mount_point));
            match *fs_type {
                "cgroup2" => v2.push(mount_point),
                "cgroup" => {
                    let options = right.get(2).copied().unwrap_or("");
                    if options.split(',').any(|o| o == "memory") {
                        memory = Some(mount_point.clone());
                    }
                    v1_controllers.extend(
                        options
                            .split(',')
                            .filter(|o| !matches!(*o, "rw" | "ro" | "xattr" | "noprefix") && !o.contains('='))
                            .map(str::to_string),
                    );
                    v1.push(mount_point);
                }
                _ => {}
            }
        }
        let mode = match (v1.is_empty(), v2.is_empty()) {
            (true, _) => CgroupMode::V2,
            (false, true) => CgroupMode::V1,
            (false, false) => CgroupMode::Hybrid,
        };
        if mode == CgroupMode::V2 {
            memory = v2.first().cloned();
        }
        let mut mounts = v1;
        mounts.extend(v2);
        mounts.sort();
        mounts.dedup();
        Cgroups { mode, mounts, memory, v1_controllers }
    }

    /// Of the controllers `wanted` (`memory`, `cpu`, `pids`), those the host cannot give a
    /// container: in v1 and hybrid setups, those no v1 hierarchy has; with v2 only, those
    /// missing from the v2 hierarchy's `cgroup.controllers` (on a host whose controllers are
    /// all bound to v1 hierarchies, a v2 hierarchy has none).
    pub fn missing<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        let v2_offered = match (self.mode, self.mounts.first()) {
            (CgroupMode::V2, Some(root)) => fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default(),
            _ => String::new(),
        };
        let offered = |controller: &str| match self.mode {
            CgroupMode::V2 => v2_offered.split_whitespace().any(|c| c == controller),
            _ => self.v1_controllers.iter().any(|c| c == controller),
        };
        wanted.iter().copied().filter(|w| !offered(w)).collect()
    }

    /// Whether memory plus swap can be limited (so `--memory` also forbids swapping).
    pub fn swap_limit(&self) -> bool {
        match (self.mode, &self.memory) {
            (CgroupMode::V2, Some(root)) => fs::read_to_string(root.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")),
            (_, Some(root)) => root.join("memory.memsw.limit_in_bytes").exists(),
            (_, None) => false,
        }
    }

    /// The directories the cgroup path `path` (`/berth/<id>`) names, one per hierarchy.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let relative = path.trim_start_matches('/');
        self.mounts.iter().map(|m| m.join(relative)).collect()
    }

    /// Whether any hierarchy has the cgroup `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.dirs(path).iter().any(|d| d.is_dir())
    }

    /// Kills what is left in the cgroup `path` and removes its directories (children first),
    /// in every hierarchy. Missing directories are fine.
    pub fn remove(&self, path: &str) -> Result<(), CgroupError> {
        for dir in self.dirs(path) {
            remove_dir(&dir)?;
        }
        Ok(())
    }
}

fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Io { path: dir.into(), source }),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dir(&entry.path())?;
        }
    }
    for attempt in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc_ebusy()) => {
                kill_all(dir);
                sleep(Duration::from_millis(if attempt < 10 { 2 } else { 20 }));
            }
            Err(source) => return Err(CgroupError::Io { path: dir.into(), source }),
        }
    }
    Err(CgroupError::Busy(dir.into()))
}

fn libc_ebusy() -> i32 {
    rustix::io::Errno::BUSY.raw_os_error()
}

/// Sends SIGKILL to every process of the cgroup directory `dir`.
fn kill_all(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else { return };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn tells_the_three_setups_apart() {
        let hybrid = Cgroups::from_mountinfo(HYBRID);
        assert_eq!(hybrid.mode, CgroupMode::Hybrid);
        assert_eq!(hybrid.mounts.len(), 4);
        assert_eq!(hybrid.memory.as_deref(), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(
            hybrid.dirs("/berth/abc")[0],
            Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/abc"),
            "every hierarchy, sorted"
        );
        let v1: String = HYBRID.lines().filter(|l| !l.contains("cgroup2")).map(|l| format!("{l}\n")).collect();
        assert_eq!(Cgroups::from_mountinfo(&v1).mode, CgroupMode::V1);
        let v2 = "40 25 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let v2 = Cgroups::from_mountinfo(v2);
        assert_eq!(v2.mode, CgroupMode::V2);
        assert_eq!(v2.dirs("berth/x"), [Path::new("/sys/fs/cgroup/berth/x")]);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn says_which_controllers_are_missing() {
        let hybrid = Cgroups::from_mountinfo(HYBRID);
        assert_eq!(hybrid.missing(&["memory", "cpu", "pids"]), Vec::<&str>::new());
        assert_eq!(hybrid.missing(&["memory", "hugetlb"]), ["hugetlb"]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpuset cpu pids\n").unwrap();
        let v2 = format!("40 25 0:30 / {} rw - cgroup2 cgroup2 rw\n", dir.path().display());
        let v2 = Cgroups::from_mountinfo(&v2);
        assert_eq!(v2.missing(&["memory", "cpu", "pids"]), ["memory"]);
    }

    #[test]
    fn removing_a_missing_cgroup_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let cgroups =
            Cgroups { mode: CgroupMode::V2, mounts: vec![dir.path().into()], memory: None, v1_controllers: Vec::new() };
        std::fs::create_dir_all(dir.path().join("berth/x/child")).unwrap();
        assert!(cgroups.exists("/berth/x"));
        cgroups.remove("/berth/x").unwrap();
        assert!(!cgroups.exists("/berth/x"));
        cgroups.remove("/berth/x").unwrap();
    }
}
