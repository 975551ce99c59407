//! RUN steps: a container over the step's root, and the layer is what it changed.
//!
//! The OCI runtime configuration comes from the runtime crate's container module
//! ([`runtime::container::spec::build`], with the user resolved by
//! [`runtime::container::user::resolve`]): Docker's namespaces, mounts, masked paths and
//! capabilities, on the host network unless `--network=none`. The container is run by an
//! OCI runtime command with runc's foreground contract ([`RuntimeCommand`]): by default the
//! berth binary's hidden `berth oci-runtime`, a fresh single-threaded process that drives the
//! runtime crate's embedded runtime (which a build, with its threads, cannot do itself;
//! [`runtime::container::foreground`]), or runc, crun or another binary (`--runtime`). Its
//! output is streamed to the progress display. The runtime runs in a process group of its
//! own, so a terminal's Ctrl-C reaches only `berth build`, which cancels ([`Cancel`]): the
//! container's first process is killed (it is named by `--pid-file`; its PID namespace goes
//! with it), and the runtime then removes the container's state and cgroups and exits.
//!
//! The root is a plain directory holding the stage's layers. [`Snapshot::take`] records
//! every path's type, mode, owners, size, times, inode and link target before the step and
//! [`Snapshot::diff`] compares after: new and changed paths (with their parent directories)
//! become layer entries, deleted ones whiteouts, and files with several names inside the
//! change hard links. Mount points the runtime had to create for `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname` (and `/etc` itself, when it is left empty), and the
//! stub files of the step's `--mount`s, are removed again before the diff, so none of them
//! leaks into the image; the directories made for `/proc`, `/dev`, `/sys` and the step's
//! `--mount`s stay, as BuildKit's do (the executor decides which: `build/run_step.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runtime::container::spec::{self, HostFacts, RunOptions, SpecInput, Tmpfs, Volume};
use runtime::container::user;
use runtime::inroot::{InRootError, Root};

use crate::tarball::{Content, Entry, Kind};

/// Why a RUN step could not run or be captured.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file of the step's root or bundle could not be used.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The user does not resolve in the image.
    #[error("USER {spec}")]
    User {
        /// The user specification.
        spec: String,
        /// The cause.
        #[source]
        source: user::UserError,
    },
    /// The runtime configuration could not be built.
    #[error("building the container configuration")]
    Spec(#[source] spec::SpecError),
    /// The OCI runtime could not be started or waited for.
    #[error("cannot run the OCI runtime {runtime}")]
    Spawn {
        /// The runtime's command line.
        runtime: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path in the step's root could not be resolved inside it.
    #[error(transparent)]
    InRoot(#[from] InRootError),
    /// The build was cancelled while the step ran; its container was killed.
    #[error("cancelled")]
    Cancelled,
    /// The step could not be attached to the default network.
    #[error("attaching the RUN step to the default network (RUN --network=none or host avoids it)")]
    Network(#[source] runtime::network::NetworkError),
}

/// The OCI runtime command that runs RUN containers: a program and the arguments that come
/// before runc's own (`--root STATE run --bundle DIR --pid-file FILE ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCommand {
    /// The program.
    pub program: PathBuf,
    /// Its leading arguments.
    pub args: Vec<String>,
}

impl RuntimeCommand {
    /// An OCI runtime binary with runc's command line (runc, crun, a path).
    pub fn external(program: impl Into<PathBuf>) -> RuntimeCommand {
        RuntimeCommand { program: program.into(), args: Vec::new() }
    }

    /// The embedded runtime, through the berth binary `berth_exe` (`berth oci-runtime`).
    pub fn embedded(berth_exe: impl Into<PathBuf>) -> RuntimeCommand {
        RuntimeCommand { program: berth_exe.into(), args: vec!["oci-runtime".into()] }
    }
}

impl std::fmt::Display for RuntimeCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program.display())?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// Cancels a build from another thread (the CLI's signal handling): RUN containers that run
/// are killed, and no further step starts. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Cancels.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.to_path_buf(), source }
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The process's arguments.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// `USER` (empty: root).
    pub user: String,
    /// The step's network.
    pub network: StepNetwork,
    /// Bind mounts (cache, bind and secret mounts).
    pub binds: Vec<Volume>,
    /// tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
}

/// The network of a RUN step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StepNetwork {
    /// The host's network (`RUN --network=host`, allowed by `--allow network.host`; or a
    /// build without a store root to attach from).
    #[default]
    Host,
    /// Only loopback (`RUN --network=none`).
    None,
    /// The default bridge network of the store at this root (an isolated namespace with
    /// outbound NAT), as BuildKit's default.
    Bridge(PathBuf),
}

/// Detaches a RUN step's sandbox from its network when dropped, however the step ends.
struct Attached {
    networks: runtime::network::Networks,
    attachment: runtime::network::Attachment,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = self.networks.detach(&self.attachment.container) {
            tracing::warn!(error = %shared::error_chain(&e), "detaching a RUN step from its network");
        }
    }
}

/// Attaches sandbox `id` to the default network of the store at `root`.
fn attach(root: &Path, id: &str) -> Result<Attached, RunError> {
    let networks = runtime::network::Networks::at(root);
    let containers = runtime::container::Containers::at(root);
    let request = runtime::network::AttachRequest {
        container: id,
        name: "buildkitsandbox",
        network: runtime::network::DEFAULT_NETWORK,
        aliases: &[],
        ports: &[],
        owner: Some(std::process::id() as i32),
    };
    let attachment = networks.attach(&request, &containers).map_err(RunError::Network)?;
    Ok(Attached { networks, attachment })
}

/// Where to run it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The OCI runtime command.
    pub runtime: RuntimeCommand,
    /// The step's root (changed in place).
    pub rootfs: PathBuf,
    /// A private directory for the bundle, the runtime's state and the /etc files.
    pub work: PathBuf,
    /// The container's ID.
    pub id: String,
    /// Kills the container when the build is cancelled.
    pub cancel: Cancel,
}

/// Runs `request` in `sandbox`, passing each output line to `output`; returns the exit code
/// and the last lines of output ([`RunError::Cancelled`] when the build was cancelled).
pub fn run(
    request: &Request,
    sandbox: &Sandbox,
    output: &(dyn Fn(&str) + Sync),
) -> Result<(i32, Vec<String>), RunError> {
    fs::create_dir_all(&sandbox.work).map_err(io_err(&sandbox.work))?;
    let read = |p: &str| -> String { crate::run::read_in_root(&sandbox.rootfs, p).unwrap_or_default() };
    let resolved = user::resolve(&request.user, &read("etc/passwd"), &read("etc/group"))
        .map_err(|source| RunError::User { spec: request.user.clone(), source })?;

    let attached = match &request.network {
        StepNetwork::Bridge(root) => Some(attach(root, &sandbox.id)?),
        _ => None,
    };
    // /etc files of the build container, from the host's (on the bridge, without the
    // host's loopback name servers, which it cannot reach).
    let mut etc_files = Vec::new();
    let hostname = "buildkitsandbox";
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_else(|_| "nameserver 127.0.0.1\n".into());
    let resolv = match &attached {
        Some(a) => runtime::network::etc::resolv_conf(&a.attachment, false, &host_resolv),
        None => host_resolv,
    };
    for (name, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")),
        ("resolv.conf", resolv),
    ] {
        let path = sandbox.work.join(name);
        fs::write(&path, content).map_err(io_err(&path))?;
        etc_files.push((format!("/etc/{name}"), path));
    }

    let options = RunOptions {
        command: request.args.clone(),
        entrypoint: Some(String::new()),
        env: request.env.clone(),
        workdir: Some(request.cwd.clone()),
        volumes: request.binds.clone(),
        tmpfs: request.tmpfs.clone(),
        hostname: Some(hostname.into()),
        network: match request.network {
            StepNetwork::Host => spec::Network::Host,
            StepNetwork::None => spec::Network::None,
            StepNetwork::Bridge(_) => spec::Network::Bridge(runtime::network::DEFAULT_NETWORK.into()),
        },
        ..RunOptions::default()
    };
    let input = SpecInput {
        id: &sandbox.id,
        image: None,
        options: &options,
        user: &resolved,
        cgroups_path: PathBuf::from(format!("/berth-build/{}", sandbox.id)),
        etc_files,
        host: HostFacts {
            swap_limit: false,
            nofile_max: nofile_hard_limit(),
            cgroup_namespace: spec::host_has_cgroup_namespaces(),
            capability_mask: spec::host_capability_mask(),
            seccomp: runtime::container::seccomp::Target::host(),
            devices: Vec::new(),
        },
    };
    let mut config = spec::build(&input).map_err(RunError::Spec)?;
    if let Some(a) = &attached {
        spec::join_network_namespace(&mut config, &a.attachment.netns).map_err(RunError::Spec)?;
    }
    let root = oci_spec::runtime::RootBuilder::default()
        .path(&sandbox.rootfs)
        .readonly(false)
        .build()
        .map_err(|e| RunError::Spec(spec::SpecError::Oci(e)))?;
    config.set_root(Some(root));
    let bundle = sandbox.work.join("bundle");
    fs::create_dir_all(&bundle).map_err(io_err(&bundle))?;
    let config_path = bundle.join("config.json");
    let body = serde_json::to_vec(&config).map_err(|e| io_err(&config_path)(io::Error::other(e)))?;
    fs::write(&config_path, body).map_err(io_err(&config_path))?;

    let state = sandbox.work.join("state");
    let pid_file = sandbox.work.join("pid");
    let runtime = &sandbox.runtime;
    let spawn_err = |source| RunError::Spawn { runtime: runtime.to_string(), source };
    let mut child = Command::new(&runtime.program)
        .args(&runtime.args)
        .arg("--root")
        .arg(&state)
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&sandbox.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Out of the terminal's process group: Ctrl-C is for `berth build`, which cancels.
        .process_group(0)
        .spawn()
        .map_err(spawn_err)?;
    let tail = std::sync::Mutex::new(std::collections::VecDeque::<String>::new());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let waited = std::thread::scope(|s| {
        let pump = |stream: Box<dyn io::Read + Send>| {
            let tail = &tail;
            move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output(&line);
                    if let Ok(mut t) = tail.lock() {
                        t.push_back(line);
                        if t.len() > 20 {
                            t.pop_front();
                        }
                    }
                }
            }
        };
        if let Some(o) = stdout {
            s.spawn(pump(Box::new(o)));
        }
        if let Some(e) = stderr {
            s.spawn(pump(Box::new(e)));
        }
        wait(&mut child, &pid_file, &sandbox.cancel)
    });
    let (status, killed) = waited.map_err(spawn_err)?;
    if killed {
        return Err(RunError::Cancelled);
    }
    let code = runtime::container::oci::exit_code(status);
    let tail = tail.into_inner().map(Vec::from).unwrap_or_default();
    Ok((code, tail))
}

/// Waits for the runtime process; once `cancel` is set, kills the container's first process
/// (from `pid_file`, as soon as the runtime wrote it). Returns the runtime's status and
/// whether the container was killed.
fn wait(child: &mut Child, pid_file: &Path, cancel: &Cancel) -> io::Result<(ExitStatus, bool)> {
    let mut killed = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, killed));
        }
        if cancel.is_cancelled() && !killed {
            let pid = fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
            if let Some(pid) = pid.filter(|p| *p > 0) {
                // The runtime still runs, so it has not reaped the process: the PID is its.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This process's hard limit of open files (0 when unknown): containers cannot get more.
fn nofile_hard_limit() -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Reads a small file of the root, following no link out of it (best effort: `None` when
/// absent or unreadable).
pub fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    runtime::container::rootfs::read_in_root(root, rel).ok().flatten()
}

/// The paths among `targets` (absolute, inside the root) and their parents that do not
/// exist yet, parents first, as the root's canonical paths (links in the image resolved
/// inside it, as the runtime resolves mount targets): what a runtime will create as mount
/// points, or the builder as the working directory.
pub fn missing_mount_points(root: &Path, targets: &[String]) -> Result<Vec<String>, RunError> {
    let root = Root::open(root)?;
    let mut missing = Vec::new();
    for t in targets {
        for m in root.resolve(t, true)?.missing() {
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
    }
    Ok(missing)
}

/// The modification times of the directories that will hold the mount points in
/// `created` (canonical paths from [`missing_mount_points`]), so [`remove_mount_points`]
/// can put them back.
pub fn parent_times(root: &Path, created: &[String]) -> Result<Vec<(String, std::time::SystemTime)>, RunError> {
    let root = Root::open(root)?;
    let mut out = Vec::new();
    for rel in created {
        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p).to_string();
        if out.iter().any(|(p, _): &(String, _)| *p == parent) {
            continue;
        }
        let Some(dir) = root.open_dir_strict(&parent)? else { continue };
        if let Ok(t) = fs::File::from(dir).metadata().and_then(|m| m.modified()) {
            out.push((parent, t));
        }
    }
    Ok(out)
}

/// Removes mount points the runtime created (deepest first), when they are empty, and
/// restores their parents' modification times (`times` from [`parent_times`]), so the
/// parents do not look changed. Nothing is followed: a link the command put on the way
/// stops the removal there.
pub fn remove_mount_points(root: &Path, created: &[String], times: &[(String, std::time::SystemTime)]) {
    let Ok(root) = Root::open(root) else { return };
    for rel in created.iter().rev() {
        if let Err(e) = root.remove_if_empty(rel) {
            tracing::debug!(error = %shared::error_chain(&e), "mount point left in place");
        }
    }
    for (dir, t) in times {
        if let Ok(Some(fd)) = root.open_dir_strict(dir) {
            let _ = fs::File::from(fd).set_modified(*t);
        }
    }
}

/// Those of `created` (canonical paths from [`missing_mount_points`]) that are not
/// directories now: the stub files a runtime made for mounts of files, which go again while
/// the directories it made stay (as BuildKit's do).
pub fn stub_files(root: &Path, created: &[String]) -> Vec<String> {
    let Ok(r) = Root::open(root) else { return Vec::new() };
    created.iter().filter(|rel| !matches!(r.open_dir_strict(rel), Ok(Some(_)))).cloned().collect()
}

/// What a path looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
    nlink: u64,
    rdev: u64,
}

impl Stat {
    fn of(m: &fs::Metadata) -> Stat {
        Stat {
            kind: m.mode() & 0o170000,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
            rdev: m.rdev(),
        }
    }

    fn is_dir(&self) -> bool {
        self.kind == 0o040000
    }
}

/// Every path of a root and what it looked like.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    paths: BTreeMap<String, Stat>,
}

impl Snapshot {
    /// Records `root`.
    pub fn take(root: &Path) -> Result<Snapshot, RunError> {
        let mut paths = BTreeMap::new();
        let mut pending = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let abs = if dir.is_empty() { root.to_path_buf() } else { root.join(&dir) };
            for item in fs::read_dir(&abs).map_err(io_err(&abs))? {
                let item = item.map_err(io_err(&abs))?;
                let name = item.file_name().to_string_lossy().into_owned();
                let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
                let path = root.join(&rel);
                let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
                if meta.is_dir() {
                    pending.push(rel.clone());
                }
                paths.insert(rel, Stat::of(&meta));
            }
        }
        Ok(Snapshot { paths })
    }

    /// The layer entries that turn `self` into what `root` holds now.
    pub fn diff(&self, root: &Path) -> Result<Vec<Entry>, RunError> {
        let after = Snapshot::take(root)?;
        let mut changed: BTreeMap<String, &Stat> = BTreeMap::new();
        let mut entries = Vec::new();
        for (path, stat) in &after.paths {
            match self.paths.get(path) {
                Some(old) if old == stat => {}
                // Only its count of names (and so its ctime) changed: a link was added to or
                // removed from it elsewhere. The file itself is not in the layer (BuildKit's
                // differ compares neither), a new name of it is, with the content.
                Some(old) if !old.is_dir() && Stat { nlink: stat.nlink, ctime: stat.ctime, ..old.clone() } == *stat => {
                }
                Some(old)
                    if old.is_dir()
                        && stat.is_dir()
                        && old.mode == stat.mode
                        && old.uid == stat.uid
                        && old.gid == stat.gid
                        && old.mtime == stat.mtime => {}
                Some(old) => {
                    if old.is_dir() && !stat.is_dir() {
                        entries.push(Entry::whiteout(path));
                    }
                    changed.insert(path.clone(), stat);
                }
                None => {
                    changed.insert(path.clone(), stat);
                }
            }
        }
        // Parent directories of everything changed, as they are now.
        let parents: Vec<String> = changed
            .keys()
            .flat_map(|p| {
                let mut ps = Vec::new();
                let mut cur = p.as_str();
                while let Some((parent, _)) = cur.rsplit_once('/') {
                    ps.push(parent.to_string());
                    cur = parent;
                }
                ps
            })
            .collect();
        for p in parents {
            if let Some(stat) = after.paths.get(&p) {
                changed.entry(p).or_insert(stat);
            }
        }
        // Deleted paths whose parent still exists (a deleted directory's contents go with it).
        for path in self.paths.keys() {
            if after.paths.contains_key(path) {
                continue;
            }
            let parent_exists = match path.rsplit_once('/') {
                Some((parent, _)) => after.paths.contains_key(parent),
                None => true,
            };
            if parent_exists {
                entries.push(Entry::whiteout(path));
            }
        }
        // Files with several names in the change: the first name carries the content.
        let mut first_name: HashMap<(u64, u64), String> = HashMap::new();
        for (path, stat) in changed {
            let abs = root.join(&path);
            let kind = match stat.kind {
                0o040000 => Kind::Dir,
                0o120000 => Kind::Symlink(fs::read_link(&abs).map_err(io_err(&abs))?),
                0o010000 => Kind::Fifo,
                0o020000 | 0o060000 => {
                    let (major, minor) = dev_major_minor(stat.rdev);
                    if stat.kind == 0o020000 {
                        Kind::Char(major, minor)
                    } else {
                        Kind::Block(major, minor)
                    }
                }
                0o140000 => continue,
                _ => {
                    if stat.nlink > 1 {
                        if let Some(first) = first_name.get(&(stat.dev, stat.ino)) {
                            entries.push(Entry {
                                path: path.clone(),
                                kind: Kind::Hardlink(first.clone()),
                                mode: stat.mode,
                                uid: u64::from(stat.uid),
                                gid: u64::from(stat.gid),
                                mtime: stat.mtime.0,
                            });
                            continue;
                        }
                        first_name.insert((stat.dev, stat.ino), path.clone());
                    }
                    Kind::File { content: Content::Disk(abs.clone()), size: stat.size }
                }
            };
            entries.push(Entry {
                path,
                kind,
                mode: stat.mode,
                uid: u64::from(stat.uid),
                gid: u64::from(stat.gid),
                mtime: stat.mtime.0,
            });
        }
        Ok(entries)
    }
}

fn dev_major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// The in-memory content of an entry (for tests and heredoc files).
pub fn bytes(data: &[u8]) -> Content {
    Content::Bytes(Arc::new(data.to_vec()))
}

/// True for character devices, which overlay whiteouts are (never copied into layers).
pub fn is_char_device(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(entries: &[Entry]) -> Vec<String> {
        let mut e = entries.to_vec();
        crate::tarball::sort(&mut e);
        e.iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn diffs_additions_changes_deletions_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("usr/lib/deep")).unwrap();
        fs::create_dir_all(r.join("gone/sub")).unwrap();
        fs::write(r.join("etc/keep"), "k").unwrap();
        fs::write(r.join("etc/change"), "1").unwrap();
        fs::write(r.join("etc/remove"), "r").unwrap();
        fs::write(r.join("gone/sub/f"), "f").unwrap();
        let before = Snapshot::take(r).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));

        fs::write(r.join("etc/change"), "2").unwrap();
        fs::remove_file(r.join("etc/remove")).unwrap();
        fs::remove_dir_all(r.join("gone")).unwrap();
        fs::write(r.join("usr/lib/deep/new"), "n").unwrap();
        fs::hard_link(r.join("usr/lib/deep/new"), r.join("usr/lib/deep/new2")).unwrap();
        symlink("new", r.join("usr/lib/deep/ln")).unwrap();
        let entries = before.diff(r).unwrap();
        let got: std::collections::BTreeSet<String> = names(&entries).into_iter().collect();
        let want: std::collections::BTreeSet<String> = [
            ".wh.gone",
            "etc",
            "etc/.wh.remove",
            "etc/change",
            "usr",
            "usr/lib",
            "usr/lib/deep",
            "usr/lib/deep/ln",
            "usr/lib/deep/new",
            "usr/lib/deep/new2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(got, want);
        let by: HashMap<&str, &Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
        assert!(by.contains_key(".wh.gone") && !by.contains_key("gone/sub/.wh.f"));
        assert!(by.contains_key("etc/.wh.remove"));
        assert!(!by.contains_key("etc/keep"));
        assert!(matches!(by["usr/lib/deep/new2"].kind, Kind::Hardlink(ref t) if t == "usr/lib/deep/new"));
        assert!(matches!(by["usr/lib/deep/ln"].kind, Kind::Symlink(_)));
        assert!(matches!(by["etc/change"].kind, Kind::File { size: 1, .. }));
        assert!(by.contains_key("usr"), "parents of changes are included");
    }

    /// 14.11: a new name of an existing file is the only entry (with the content); the
    /// file, whose link count and ctime changed, is not in the layer.
    #[test]
    fn a_new_link_to_an_existing_file_is_the_only_entry() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("srv")).unwrap();
        fs::write(r.join("etc/data"), "d").unwrap();
        let before = Snapshot::take(r).unwrap();
        fs::hard_link(r.join("etc/data"), r.join("srv/data-link")).unwrap();
        let entries = before.diff(r).unwrap();
        assert_eq!(names(&entries), ["srv", "srv/data-link"]);
        let by: HashMap<&str, &Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
        assert!(matches!(by["srv/data-link"].kind, Kind::File { size: 1, .. }));
    }

    /// 14.10: of the mount points made for a step, stub files are removed and directories
    /// stay.
    #[test]
    fn only_stub_files_of_step_mounts_go() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        let created = missing_mount_points(r, &["/run/secrets/x".into(), "/mnt/cache".into()]).unwrap();
        fs::create_dir_all(r.join("run/secrets")).unwrap();
        fs::write(r.join("run/secrets/x"), "").unwrap();
        fs::create_dir_all(r.join("mnt/cache")).unwrap();
        let stubs = stub_files(r, &created);
        assert_eq!(stubs, ["run/secrets/x"]);
        remove_mount_points(r, &stubs, &[]);
        assert!(!r.join("run/secrets/x").exists() && r.join("run/secrets").is_dir() && r.join("mnt/cache").is_dir());
    }

    #[test]
    fn mount_points_through_links_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(outside.join("empty")).unwrap();
        // Links out of the root, as an image (or a RUN before) may hold them.
        symlink(&outside, r.join("run")).unwrap();
        symlink("../outside", r.join("up")).unwrap();
        let inside = outside.to_string_lossy().trim_start_matches('/').to_string();
        let missing = missing_mount_points(&r, &["/run/secrets/x".into(), "/up/new".into()]).unwrap();
        let mut want: Vec<String> = Vec::new();
        let mut cur = String::new();
        for part in format!("{inside}/secrets/x").split('/') {
            cur = if cur.is_empty() { part.to_string() } else { format!("{cur}/{part}") };
            want.push(cur.clone());
        }
        want.extend(["outside".to_string(), "outside/new".to_string()]);
        assert_eq!(missing, want);
        // Removing what a runtime made follows no link: `up/empty` is the host's directory.
        let times = parent_times(&r, &["up/empty".to_string()]).unwrap();
        remove_mount_points(&r, &["up/empty".to_string(), "run/x".to_string()], &times);
        assert!(outside.join("empty").is_dir(), "a host directory was removed through a link");
    }

    #[test]
    fn finds_and_removes_created_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        let missing = missing_mount_points(r, &["/proc".into(), "/etc/hosts".into(), "/run/secrets/x".into()]).unwrap();
        assert_eq!(missing, ["proc", "etc/hosts", "run", "run/secrets", "run/secrets/x"]);
        fs::create_dir_all(r.join("proc")).unwrap();
        fs::write(r.join("etc/hosts"), "").unwrap();
        fs::create_dir_all(r.join("run/secrets")).unwrap();
        fs::write(r.join("run/secrets/x"), "").unwrap();
        let times = parent_times(r, &missing).unwrap();
        remove_mount_points(r, &missing, &times);
        assert!(!r.join("proc").exists() && !r.join("run").exists() && !r.join("etc/hosts").exists());
        assert!(r.join("etc").exists());
    }
}
