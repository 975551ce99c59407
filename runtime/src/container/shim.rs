//! The supervisor of one container, run in a fresh single-threaded process (the berth
//! binary re-executed as `berth container-shim ID`): prepares the bundle, starts the
//! container, forwards signals to it, relays a terminal, waits, records the exit status,
//! and cleans up.
//!
//! In the foreground the CLI becomes the supervisor (it `exec`s itself), so the terminal's
//! Ctrl-C and a SIGTERM sent to `berth run` reach it and are passed on, and its exit status
//! is the container's. For `-d`, [`spawn_detached`] starts it with a pipe on which it
//! reports the start; the supervisor then forks again in a new session ([`detach`]) and
//! outlives the CLI, writing the container's output to its log file.
//!
//! Signals are caught, forwarded and children reaped with [`super::supervise`] (shared with
//! `berth oci-runtime`); the loop here polls its pipe and the terminal. The supervisor is a
//! child subreaper, because the embedded runtime makes the container's first process a
//! grandchild.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios;
use nix::unistd::Pid;
use oci_spec::image::ImageConfiguration;

use super::console::ConsoleSocket;
use super::etc_files;
use super::health::{Checker, HealthConfig};
use super::mounts::{self, MountError};
use super::oci::{ContainerStdio, OciError, OciRuntime, Started};
use super::restart::Restarts;
use super::rootfs::{self, RootfsError, RootfsKind};
use super::spec::{self, HostFacts, Network, RunOptions, SpecError, SpecInput};
use super::supervise::{self, Signals};
use super::user::{self, UserError};
use super::{cgroups, now, ContainerError, ContainerRecord, Containers, Status};
use crate::images::ImageRecord;
use crate::network::{AttachRequest, Attachment, NetworkError, Networks};
use crate::store::{Store, StoreError};
use shared::error_chain;

/// The exit code of a container that could not be started (Docker's).
pub const EXIT_START_FAILED: i32 = 125;
/// The exit code when the command is not found in the image (Docker's).
pub const EXIT_NOT_FOUND: i32 = 127;

/// Why supervising failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The record could not be read or written.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The image store failed.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// The image of the container is gone.
    #[error("image {0} is no longer in the store")]
    ImageGone(String),
    /// The image config is unreadable.
    #[error("the image config of {image} is not valid")]
    ImageConfig {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The root could not be made.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The user is not in the image.
    #[error(transparent)]
    User(#[from] UserError),
    /// The configuration could not be built.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A mount point could not be made, or a volume filled.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The command is not in the image.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The OCI runtime failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The container could not be attached to its network.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A file, pipe or terminal could not be used.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A limit was asked for whose cgroup controller the host does not offer.
    #[error(
        "the limits asked for need the cgroup controller(s) {missing}, which this host does not offer \
         ({mode:?} cgroup layout); run without --memory/--cpus/--pids-limit, or enable the controller"
    )]
    NoController {
        /// The missing controllers.
        missing: String,
        /// The host's layout.
        mode: cgroups::CgroupMode,
    },
    /// A signal asked the supervisor to end before the container started.
    #[error("interrupted by {0} before the container started")]
    Interrupted(nix::sys::signal::Signal),
    /// The supervisor did not report the start.
    #[error("the container supervisor exited without reporting a start")]
    NoReport,
    /// The supervisor reported a failure.
    #[error("{0}")]
    Reported(String),
}

impl From<StoreError> for ShimError {
    fn from(e: StoreError) -> Self {
        ShimError::Store(Box::new(e))
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Io { what, source }
}

fn errno(what: &str) -> impl FnOnce(nix::Error) -> ShimError + '_ {
    move |e| ShimError::Io { what: what.to_string(), source: io::Error::from_raw_os_error(e as i32) }
}

/// Where the supervisor came from.
#[derive(Debug)]
pub struct ShimArgs {
    /// The store root.
    pub root: PathBuf,
    /// The container's full ID.
    pub id: String,
    /// The pipe on which to report the start to a waiting CLI (`-d`).
    pub ready: Option<OwnedFd>,
    /// The store and the container's image when the caller already has them (the CLI in the
    /// foreground); otherwise the supervisor opens the store and finds the image itself.
    pub image: Option<(Store, ImageRecord)>,
}

/// Starts a detached supervisor with `command(fd)` (the CLI's command line for
/// `container-shim`, told to report on fd `fd`) and waits for it to report that the
/// container runs; errors that happened before are returned.
pub fn spawn_detached(command: impl FnOnce(RawFd) -> Command) -> Result<(), ShimError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("creating a pipe"))?;
    let fd = write.as_raw_fd();
    let mut cmd = command(fd);
    // The write end is inherited by this supervisor only: close-on-exec is cleared in the
    // child, so a supervisor another thread starts at the same time does not hold it too
    // (both reports would then wait for each other's supervisor to exit).
    // SAFETY: fcntl is async-signal-safe; nothing is allocated between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().map_err(io_err("starting the container supervisor"))?;
    drop(write);
    let mut report = String::new();
    File::from(read).read_to_string(&mut report).map_err(io_err("reading the supervisor's report"))?;
    // The first supervisor process forks the real one and exits at once.
    let _ = child.wait();
    match report.strip_prefix("ok") {
        Some(_) => Ok(()),
        None if report.is_empty() => Err(ShimError::NoReport),
        None => Err(ShimError::Reported(report.trim().to_string())),
    }
}

/// Leaves the caller's session and process: a new session, then a fork whose parent exits,
/// so the supervisor is nobody's child and can never regain a terminal. Returns in the
/// grandchild only.
pub fn detach() -> Result<(), ShimError> {
    nix::unistd::setsid().map_err(errno("setsid"))?;
    // SAFETY: the supervisor is single-threaded here (fresh process, no threads started).
    match unsafe { nix::unistd::fork() }.map_err(errno("fork"))? {
        nix::unistd::ForkResult::Parent { .. } => std::process::exit(0),
        nix::unistd::ForkResult::Child => Ok(()),
    }
}

/// Runs the container to its end and returns the exit code for the supervisor process:
/// the container's (128 + signal when killed), 125 when it could not start, 127 when its
/// command is not in the image. Errors are recorded, reported on `ready`, and printed.
pub fn run(args: ShimArgs) -> i32 {
    let ShimArgs { root, id, ready, image } = args;
    // Kept from the runtime and the container: the CLI waits until every copy is closed.
    if let Some(fd) = &ready {
        let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    }
    let containers = Containers::at(&root);
    let mut ready = ready.map(File::from);
    let mut shim = Shim {
        containers: containers.clone(),
        root,
        id: id.clone(),
        terminal: None,
        saved_termios: None,
        cgroups: None,
        command: Vec::new(),
        rootfs: None,
        exit_code: None,
        checker: None,
    };
    let outcome = shim.supervise(&mut ready, image);
    let code = match &outcome {
        Ok(code) => *code,
        Err(e) => {
            let message = error_chain(e);
            if let Some(mut r) = ready.take() {
                let _ = r.write_all(message.as_bytes());
            }
            eprintln!("berth: {message}");
            let code = match e {
                ShimError::NotFound(_) => EXIT_NOT_FOUND,
                ShimError::Interrupted(signal) => 128 + *signal as i32,
                _ => EXIT_START_FAILED,
            };
            let _ = containers.update(&id, |r| {
                if r.command.is_empty() {
                    r.command = shim.command.clone();
                }
                r.rootfs = r.rootfs.or(shim.rootfs);
                r.status = Status::Exited;
                r.error = Some(message.clone());
                r.exit_code = Some(code);
                r.pid = None;
                r.finished = Some(now());
            });
            code
        }
    };
    shim.finish();
    code
}

struct Shim {
    containers: Containers,
    root: PathBuf,
    id: String,
    /// The master end of the container's terminal (`-t`), once it has one.
    terminal: Option<OwnedFd>,
    /// The settings of the user's terminal, put back at the end (`-it` makes it raw).
    saved_termios: Option<termios::Termios>,
    /// The host's cgroup hierarchies, read once for the spec and reused for the clean-up.
    cgroups: Option<cgroups::Cgroups>,
    /// The container's command, once known (recorded with the start, or with an error).
    command: Vec<String>,
    /// How the root was made, once it is.
    rootfs: Option<RootfsKind>,
    /// The exit code of a `--rm` container, recorded only if removing it fails.
    exit_code: Option<i32>,
    /// The health check, when the container has one.
    checker: Option<Checker>,
}

fn open_null(write: bool) -> Result<OwnedFd, ShimError> {
    let file = OpenOptions::new().read(!write).write(write).open("/dev/null").map_err(io_err("opening /dev/null"))?;
    Ok(file.into())
}

fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd, ShimError> {
    fd.try_clone_to_owned().map_err(io_err("duplicating a standard stream"))
}

impl Shim {
    fn supervise(&mut self, ready: &mut Option<File>, image: Option<(Store, ImageRecord)>) -> Result<i32, ShimError> {
        let paths = self.containers.paths().clone();
        let mut record = self.containers.load(&self.id)?;
        let me = std::process::id() as i32;
        if record.shim_pid != Some(me) {
            // A supervisor process of its own (`-d`, or after a pull): known from now on.
            record.shim_pid = Some(me);
            self.containers.save(&record)?;
        }
        let signals = Signals::catch().map_err(io_err("installing signal handlers"))?;
        supervise::become_subreaper().map_err(io_err("becoming a child subreaper"))?;

        let (store, image) = match image {
            Some((store, image)) if image.manifest == record.image_manifest => (store, image),
            _ => {
                let store = Store::open(&self.root)?;
                let images = store.images()?;
                let image = images
                    .iter()
                    .find(|i| i.manifest == record.image_manifest && i.reference == record.image_reference)
                    .or_else(|| images.iter().find(|i| i.manifest == record.image_manifest))
                    .cloned()
                    .ok_or_else(|| ShimError::ImageGone(record.image.clone()))?;
                (store, image)
            }
        };
        let config_body = store.content().read(&image.config).map_err(|e| ShimError::from(StoreError::from(e)))?;
        let config: ImageConfiguration = serde_json::from_slice(&config_body)
            .map_err(|source| ShimError::ImageConfig { image: record.image.clone(), source })?;
        let image_config = config.config().as_ref();
        let image_health = serde_json::from_slice::<serde_json::Value>(&config_body)
            .ok()
            .and_then(|json| HealthConfig::from_image_config(&json));
        self.checker =
            HealthConfig::effective(image_health.as_ref(), record.options.healthcheck.as_ref()).and_then(Checker::new);
        // A signal that asks for the end is honoured between the steps of preparing.
        let go_on = || signals.terminating().map_or(Ok(()), |signal| Err(ShimError::Interrupted(signal)));
        go_on()?;

        let rootfs = paths.container_rootfs(&self.id);
        tracing::debug!("image config read");
        let kind =
            rootfs::mount(&store, &image, &rootfs, &paths.container_upper(&self.id), &paths.container_work(&self.id))?;
        tracing::debug!(?kind, "root file system ready");
        self.rootfs = Some(kind);
        go_on()?;

        let options = &record.options.clone();
        let user_spec =
            options.user.clone().or_else(|| image_config.and_then(|c| c.user().clone())).unwrap_or_default();
        let passwd = rootfs::read_in_root(&rootfs, "etc/passwd")?.unwrap_or_default();
        let group = rootfs::read_in_root(&rootfs, "etc/group")?.unwrap_or_default();
        let user = user::resolve(&user_spec, &passwd, &group)?;
        go_on()?;

        let attachment = self.attach_network(&record, image_config)?;
        go_on()?;
        let hostname = spec::hostname(options, &self.id);
        let mut etc_files = self.write_etc_files(&hostname, options, attachment.as_ref())?;
        // Mounted where the image's links lead, inside the root, as runc would.
        for (target, _) in &mut etc_files {
            *target = rootfs::file_in_root(&rootfs, target)?;
        }
        let cgroups =
            cgroups::Cgroups::detect().map_err(|e| io_err("reading the cgroup mounts")(io::Error::other(e)))?;
        let cgroups = self.cgroups.insert(cgroups);
        let limits = [
            (options.memory.is_some(), "memory"),
            (options.cpus.is_some(), "cpu"),
            (options.pids_limit.is_some(), "pids"),
        ];
        let wanted: Vec<&str> =
            limits.into_iter().filter_map(|(asked, controller)| asked.then_some(controller)).collect();
        let missing = cgroups.missing(&wanted);
        if !missing.is_empty() {
            return Err(ShimError::NoController { missing: missing.join(", "), mode: cgroups.mode });
        }
        let volumes = crate::volumes::Volumes::new(paths.clone());
        let mounted = mounts::prepare(&rootfs, options, &volumes)?;
        go_on()?;
        let input = SpecInput {
            id: &self.id,
            image: image_config,
            options: &mounted,
            user: &user,
            cgroups_path: record.cgroups_path().into(),
            etc_files,
            host: HostFacts {
                swap_limit: cgroups.swap_limit(),
                nofile_max: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(0),
                cgroup_namespace: spec::host_has_cgroup_namespaces(),
                capability_mask: spec::host_capability_mask(),
                seccomp: super::seccomp::Target::host(),
                devices: if options.privileged { spec::host_devices() } else { Vec::new() },
            },
        };
        let mut oci_spec = spec::build(&input)?;
        if let Some(a) = &attachment {
            spec::join_network_namespace(&mut oci_spec, &a.netns)?;
        }
        // The command as given (under `--init`, the init binary runs it).
        let args = spec::process_args(image_config, options)?;
        let env = oci_spec.process().as_ref().and_then(|p| p.env().clone()).unwrap_or_default();
        let cwd = spec::working_dir(image_config, options)?;
        rootfs::mkdir_in_root(&rootfs, &cwd)?;
        if !rootfs::find_executable(&rootfs, &args[0], &env, &cwd) {
            return Err(ShimError::NotFound(args[0].clone()));
        }
        let config_path = paths.container_config(&self.id);
        oci_spec
            .save(&config_path)
            .map_err(|e| io_err(format!("writing {}", config_path.display()))(io::Error::other(e)))?;
        self.command = args.clone();

        let runtime = match &options.runtime {
            None => OciRuntime::Embedded,
            Some(path) => OciRuntime::External(PathBuf::from(path)),
        };
        record.rootfs = Some(kind);
        record.command = args.clone();
        record.image_stop_signal = image_config.and_then(|c| c.stop_signal().clone());
        go_on()?;
        let mut restarts = Restarts::new(options.restart, record.restart_count);
        loop {
            let ran = Instant::now();
            let code = self.run_once(&runtime, &mut record, ready, &signals)?;
            let stopped = self.containers.stop_requested(&self.id);
            let Some(delay) = restarts.next(code, ran.elapsed(), stopped) else {
                if options.remove {
                    // Removed in a moment: the exit is recorded only if that fails.
                    self.exit_code = Some(code);
                } else {
                    record_exit(&mut record, code);
                    self.containers.save(&record)?;
                }
                return Ok(code);
            };
            record_exit(&mut record, code);
            record.status = Status::Restarting;
            record.restart_count = restarts.count();
            self.containers.save(&record)?;
            tracing::debug!(?delay, count = restarts.count(), "restarting");
            if !self.back_off(delay, &signals) {
                record.status = Status::Exited;
                self.containers.save(&record)?;
                return Ok(code);
            }
            if let Some(cgroups) = &self.cgroups {
                cgroups.remove(&record.cgroups_path()).map_err(ContainerError::from)?;
            }
            // Written again: the embedded runtime adapts it as it starts (see `oci`).
            oci_spec
                .save(&config_path)
                .map_err(|e| io_err(format!("writing {}", config_path.display()))(io::Error::other(e)))?;
        }
    }

    /// Waits `delay` before a restart; false when a user stopped the container meanwhile
    /// (`berth stop` or `kill` leave a mark and wake the supervisor) or a signal asked the
    /// supervisor to end.
    fn back_off(&self, delay: Duration, signals: &Signals) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.containers.stop_requested(&self.id) || signals.terminating().is_some() {
                signals.discard();
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Signals noted meanwhile were meant for a process that is gone.
                signals.discard();
                return true;
            }
            let mut fds = [PollFd::new(signals.fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut fds, timeout);
        }
    }

    /// Starts the container's process once, records it, waits for its end, and deletes the
    /// runtime's state of it; returns its exit code.
    fn run_once(
        &mut self,
        runtime: &OciRuntime,
        record: &mut ContainerRecord,
        ready: &mut Option<File>,
        signals: &Signals,
    ) -> Result<i32, ShimError> {
        let paths = self.containers.paths().clone();
        let options = record.options.clone();
        let (stdio, console) = self.stdio(record, runtime)?;
        let bundle = paths.container(&self.id);
        let state = paths.container_runtime_state(&self.id);
        tracing::debug!("bundle written; starting the container");
        let started = runtime.start(&self.id, &bundle, &state, stdio)?;
        tracing::debug!(pid = started.pid, "container started");
        if let Some(console) = console {
            let master = console.receive().map_err(io_err("receiving the container's terminal"))?;
            self.set_terminal(master)?;
        }
        // One write for all the supervisor learnt while preparing and starting (only the
        // supervisor writes the record while the container exists, so its copy is current).
        // Every replaced record is a block freed, and so a discard on file systems mounted
        // with `discard`: the writes are kept few.
        record.status = Status::Running;
        record.pid = Some(started.pid);
        record.started = Some(now());
        record.exit_code = None;
        record.finished = None;
        if let Some(checker) = self.checker.as_mut() {
            checker.started();
            record.health = Some(checker.health.clone());
        }
        self.containers.save(record)?;
        if let Some(mut r) = ready.take() {
            let _ = r.write_all(b"ok\n");
        }
        if self.containers.stop_requested(&self.id) && record.restart_count > 0 {
            // Stopped while this restart was under way: the stop's signal reached nothing.
            if let Ok(signal) = record.stop_signal() {
                let _ = nix::sys::signal::kill(Pid::from_raw(started.waited), signal);
            }
        }
        let resize_runtime = options.tty && matches!(runtime, OciRuntime::External(_));
        let code = self.wait(&started, signals, record, resize_runtime)?;
        tracing::debug!(code, "container exited");
        let deleted = match runtime {
            // The container's first process has ended, and with it its PID namespace and
            // every process in it: nothing is left to kill, and libcontainer's `delete` would
            // only remove the cgroups (which [`Self::finish`] does, from the hierarchies
            // already read) and its state folder, after reading the mount table once per
            // cgroup controller. Removing the folder here is all that remains.
            OciRuntime::Embedded => crate::unpack::remove_tree(&state.join(&self.id))
                .map_err(|source| ShimError::Io { what: format!("removing {}", state.display()), source }),
            OciRuntime::External(_) => runtime.delete(&self.id, &state).map_err(ShimError::from),
        };
        if let Err(e) = deleted {
            tracing::warn!(error = %error_chain(&e), "the runtime could not delete the container");
        }
        tracing::debug!("runtime state deleted");
        Ok(code)
    }

    /// Attaches the container to its berth network, if it has one: its own namespace, an
    /// address, the published ports (`-P`: the image's exposed ones too). Detached again by
    /// the clean-up ([`Containers::cleanup`]), however the container ends.
    fn attach_network(
        &self,
        record: &ContainerRecord,
        image: Option<&oci_spec::image::Config>,
    ) -> Result<Option<Attachment>, ShimError> {
        let Network::Bridge(network) = &record.options.network else { return Ok(None) };
        let options = &record.options;
        let mut ports = options.publish.clone();
        if options.publish_all {
            let exposed = image.and_then(|c| c.exposed_ports().clone()).unwrap_or_default();
            ports.extend(crate::network::ports::exposed(&exposed, &options.publish));
        }
        let request = AttachRequest {
            container: &record.id,
            name: &record.name,
            network,
            aliases: &options.network_aliases,
            ports: &ports,
            owner: None,
        };
        let networks = Networks::new(self.containers.paths().clone());
        Ok(Some(networks.attach(&request, &self.containers)?))
    }

    /// Writes `/etc/hostname` and `/etc/hosts` (with the `--add-host` lines) and, on the
    /// host network, a berth network or with `--dns*` options, `/etc/resolv.conf` (with those
    /// options applied) for the container; returns (container path, file) pairs.
    fn write_etc_files(
        &self,
        hostname: &str,
        options: &RunOptions,
        attachment: Option<&Attachment>,
    ) -> Result<Vec<(String, PathBuf)>, ShimError> {
        let network = &options.network;
        let dir = self.containers.paths().container(&self.id);
        let mut files = Vec::new();
        let hosts = match (network, attachment) {
            (Network::Host, _) => fs::read_to_string("/etc/hosts").unwrap_or_default(),
            (_, Some(a)) => crate::network::etc::hosts(hostname, a),
            _ => {
                format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
            }
        };
        let mut write = |name: &str, body: &str, target: &str| -> Result<(), ShimError> {
            let path = dir.join(name);
            fs::write(&path, body).map_err(io_err(format!("writing {}", path.display())))?;
            files.push((target.to_string(), path));
            Ok(())
        };
        write("hostname", &format!("{hostname}\n"), "/etc/hostname")?;
        write("hosts", &etc_files::hosts(&hosts, options), "/etc/hosts")?;
        let host_resolv = || fs::read_to_string("/etc/resolv.conf").ok();
        let resolv = match (network, attachment) {
            (Network::Host, _) => host_resolv(),
            (_, Some(a)) => Some(crate::network::etc::resolv_conf(a, a.dns, &host_resolv().unwrap_or_default())),
            _ if etc_files::sets_resolv_conf(options) => Some(host_resolv().unwrap_or_default()),
            _ => None,
        };
        if let Some(resolv) = resolv {
            let resolv =
                if etc_files::sets_resolv_conf(options) { etc_files::resolv_conf(&resolv, options) } else { resolv };
            write("resolv.conf", &resolv, "/etc/resolv.conf")?;
        }
        Ok(files)
    }

    /// The container's standard streams: a terminal (`-t`), the log file (`-d`), or the
    /// supervisor's own (standard input only with `-i`).
    ///
    /// With `-t` the container gets a terminal of its own, its controlling terminal: the
    /// embedded runtime makes it inside the container and sends its master end over the
    /// returned console socket (see [`super::console`]); an external runtime (runc, crun),
    /// run in the foreground, makes one the same way and relays it to its standard streams,
    /// which are then a terminal made here.
    fn stdio(
        &mut self,
        record: &ContainerRecord,
        runtime: &OciRuntime,
    ) -> Result<(ContainerStdio, Option<ConsoleSocket>), ShimError> {
        let options = &record.options.clone();
        if options.tty {
            if options.interactive && !options.detach && self.saved_termios.is_none() {
                let stdin = io::stdin();
                self.saved_termios = termios::tcgetattr(stdin.as_fd()).ok().inspect(|saved| {
                    let mut raw = saved.clone();
                    termios::cfmakeraw(&mut raw);
                    let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
                });
            }
            if *runtime == OciRuntime::Embedded {
                let dir = self.containers.paths().container(&self.id);
                let console = ConsoleSocket::bind(&dir).map_err(io_err("making the console socket"))?;
                let stdio = ContainerStdio {
                    stdin: open_null(false)?,
                    stdout: open_null(true)?,
                    stderr: open_null(true)?,
                    console: Some(console.path().to_path_buf()),
                };
                return Ok((stdio, Some(console)));
            }
            let pty = nix::pty::openpty(None, None).map_err(errno("opening a terminal"))?;
            let slave = pty.slave;
            let stdio = ContainerStdio {
                stdin: dup(slave.as_fd())?,
                stdout: dup(slave.as_fd())?,
                stderr: slave,
                console: None,
            };
            self.set_terminal(pty.master)?;
            return Ok((stdio, None));
        }
        let stdio = if options.detach {
            let log = self.open_log()?;
            ContainerStdio { stdin: open_null(false)?, stdout: dup(log.as_fd())?, stderr: log, console: None }
        } else {
            let stdin = if options.interactive { dup(io::stdin().as_fd())? } else { open_null(false)? };
            ContainerStdio {
                stdin,
                stdout: dup(io::stdout().as_fd())?,
                stderr: dup(io::stderr().as_fd())?,
                console: None,
            }
        };
        Ok((stdio, None))
    }

    /// Takes `master` as the container's terminal, sized like the user's.
    fn set_terminal(&mut self, master: OwnedFd) -> Result<(), ShimError> {
        nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .map_err(errno("preparing the terminal"))?;
        self.terminal = Some(master);
        self.resize_tty();
        Ok(())
    }

    fn open_log(&self) -> Result<OwnedFd, ShimError> {
        let path = self.containers.paths().container_log(&self.id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        Ok(file.into())
    }

    /// Gives the container's terminal the size of the user's.
    fn resize_tty(&self) {
        if let Some(master) = &self.terminal {
            copy_window_size(io::stdin().as_fd(), master.as_fd());
        }
    }

    /// Forwards signals, relays the terminal and reaps children until the container ends.
    /// `resize_runtime`: the runtime process relays a terminal of its own and resizes it on
    /// `SIGWINCH`, which it must then be sent (it has no controlling terminal to get it from).
    fn wait(
        &mut self,
        started: &Started,
        signals: &Signals,
        record: &mut ContainerRecord,
        resize_runtime: bool,
    ) -> Result<i32, ShimError> {
        let target = Pid::from_raw(started.waited);
        let mut out: Option<File> = match (&self.terminal, record.options.detach) {
            (Some(_), true) => Some(File::from(self.open_log()?)),
            (Some(_), false) => Some(File::from(dup(io::stdout().as_fd())?)),
            (None, _) => None,
        };
        let mut stdin_open = self.terminal.is_some() && record.options.interactive && !record.options.detach;
        let mut exit = started.exited;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let probe = self.checker.as_ref().and_then(Checker::pid);
            let (reaped, probe_ended) = supervise::reap_both(target, probe);
            if exit.is_none() {
                exit = reaped;
            }
            if let Some(code) = exit {
                if let (Some(master), Some(out)) = (&self.terminal, out.as_mut()) {
                    relay(master.as_fd(), out, &mut buf);
                }
                return Ok(code);
            }
            if let Some(checker) = self.checker.as_mut() {
                if checker.step(&self.containers, record, probe_ended) {
                    record.health = Some(checker.health.clone());
                    self.containers.save(record)?;
                }
            }
            let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
            let stdin = io::stdin();
            if let Some(master) = &self.terminal {
                fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
                if stdin_open {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
            }
            // Last, so the indices above stay: read by the next `step`.
            if let Some(fd) = self.checker.as_ref().and_then(Checker::fd) {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            let timeout = match &self.checker {
                Some(checker) => {
                    let millis = checker.wake_in().as_millis().min(60_000) as i32 + 1;
                    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(errno("waiting for the container")(e)),
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            if ready[0] && signals.forward(target).resized {
                self.resize_tty();
                if resize_runtime {
                    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGWINCH);
                }
            }
            if let Some(master) = &self.terminal {
                if ready.get(1).copied().unwrap_or(false) {
                    if let Some(out) = out.as_mut() {
                        relay(master.as_fd(), out, &mut buf);
                    }
                }
                if stdin_open && ready.get(2).copied().unwrap_or(false) {
                    match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                        Ok(0) | Err(_) => stdin_open = false,
                        Ok(n) => {
                            let _ = File::from(dup(master.as_fd())?).write_all(&buf[..n]);
                        }
                    }
                }
            }
        }
    }

    /// Restores the terminal, removes the mount and cgroups, and, for `--rm`, the container.
    fn finish(&mut self) {
        self.terminal = None;
        if let Some(saved) = self.saved_termios.take() {
            let _ = termios::tcsetattr(io::stdin().as_fd(), termios::SetArg::TCSANOW, &saved);
        }
        let Ok(mut record) = self.containers.load(&self.id) else { return };
        let dir = self.containers.paths().container(&self.id);
        // For `--rm`, the container's folder goes while the network plugins detach it.
        let mut removed_tree = None;
        let then = || {
            if record.options.remove {
                removed_tree = Some(crate::unpack::remove_tree(&dir));
            }
        };
        let cleaned = match &self.cgroups {
            Some(cgroups) => self.containers.cleanup_then(&record, cgroups, then),
            None => cgroups::Cgroups::detect()
                .map_err(ContainerError::from)
                .and_then(|cgroups| self.containers.cleanup_then(&record, &cgroups, then)),
        };
        let mut removed = false;
        if let Err(e) = &cleaned {
            eprintln!("berth: cleaning up container {}: {}", record.short_id(), error_chain(e));
        }
        tracing::debug!("mount, cgroups and network removed");
        if record.options.remove {
            match removed_tree.unwrap_or_else(|| crate::unpack::remove_tree(&dir)) {
                Ok(()) => removed = true,
                Err(e) => eprintln!("berth: removing {}: {e}", dir.display()),
            }
            // As Docker's `--rm`: the anonymous volumes go too, named ones stay.
            let volumes = crate::volumes::Volumes::new(self.containers.paths().clone());
            if let Err(e) = volumes.remove_anonymous(&record) {
                eprintln!("berth: removing the volumes of {}: {}", record.short_id(), error_chain(&e));
            }
            tracing::debug!("container removed");
        }
        if let (Some(code), false) = (self.exit_code, removed) {
            // What is left of a `--rm` container says how it ended.
            record_exit(&mut record, code);
            let _ = self.containers.save(&record);
        }
    }
}

/// Marks `record` as ended with `code`.
fn record_exit(record: &mut ContainerRecord, code: i32) {
    record.status = Status::Exited;
    record.exit_code = Some(code);
    record.pid = None;
    record.finished = Some(now());
}

/// Gives the terminal `to` the window size of the terminal `from` (when it is one).
pub(crate) fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut size = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write one winsize through a valid pointer.
    unsafe {
        if nix::libc::ioctl(from.as_raw_fd(), nix::libc::TIOCGWINSZ, &mut size) == 0 {
            nix::libc::ioctl(to.as_raw_fd(), nix::libc::TIOCSWINSZ, &size);
        }
    }
}

/// Copies what the terminal has to `out` until it has nothing more right now.
pub(crate) fn relay(master: BorrowedFd<'_>, out: &mut File, buf: &mut [u8]) {
    loop {
        match nix::unistd::read(master.as_raw_fd(), buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
                let _ = out.flush();
            }
        }
    }
}

/// A raw descriptor number given on the command line, taken over.
///
/// # Safety
/// `fd` must be an open descriptor that nothing else owns.
pub unsafe fn take_fd(fd: RawFd) -> OwnedFd {
    // Not handed on to what the supervisor starts (a DNS server outliving it would keep
    // the waiting CLI from ever seeing the pipe close).
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    // SAFETY: the caller promises the descriptor is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The path of a container's log, for `berth logs`.
pub fn log_path(containers: &Containers, record: &ContainerRecord) -> PathBuf {
    containers.paths().container_log(&record.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two supervisors started at once from two threads: each report ends when its own
    /// supervisor has reported, not when the other's (long-lived) process exits.
    #[test]
    fn supervisors_started_at_once_do_not_hold_each_others_report() {
        let dir = tempfile::tempdir().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for i in 0..2 {
            let pid_file = dir.path().join(format!("pid{i}"));
            let done_tx = done_tx.clone();
            std::thread::spawn(move || {
                let result = spawn_detached(|fd| {
                    // Report, close the report's end, leave a process behind (as the real
                    // supervisor does), exit.
                    // (python3: sh cannot name descriptors above 9.)
                    let script = "import os, subprocess, sys\n\
                        fd = int(sys.argv[1]); os.write(fd, b'ok'); os.close(fd)\n\
                        p = subprocess.Popen(['sleep', '600'], close_fds=False)\n\
                        open(sys.argv[2], 'w').write(str(p.pid))\n";
                    let mut cmd = Command::new("python3");
                    cmd.arg("-c").arg(script).arg(fd.to_string()).arg(&pid_file);
                    cmd
                });
                let _ = done_tx.send(result.is_ok());
            });
        }
        let both = (0..2).map(|_| done_rx.recv_timeout(Duration::from_secs(120)));
        let results: Vec<_> = both.collect();
        for i in 0..2 {
            if let Ok(pid) = std::fs::read_to_string(dir.path().join(format!("pid{i}"))) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
    }

    #[test]
    fn error_chains_read_like_anyhow() {
        let e = ShimError::Io { what: "reading x".into(), source: io::Error::other("boom") };
        assert_eq!(error_chain(&e), "reading x: boom");
    }
}
