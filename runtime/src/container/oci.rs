//! Running an OCI bundle: with the embedded runtime (youki's `libcontainer`, nothing to
//! install) or with an external OCI runtime binary such as runc or crun (`--runtime`).
//!
//! Both get the very same bundle. The embedded runtime clones the container from the
//! calling process, so it must be called from a single-threaded process: the supervisor
//! ([`super::shim`]), never a tokio runtime. It makes the container's first process a
//! grandchild of the caller, which therefore must be a child subreaper to wait for it. An
//! external runtime runs as `RUNTIME --root STATE run --bundle DIR --pid-file FILE ID` in the
//! foreground: it forwards signals to the container and exits with its status, so the
//! supervisor waits for the runtime process instead.
//!
//! Before the embedded runtime clones the container, the calling process joins a fresh
//! session keyring ([`super::keyring`]), which the container inherits; runc does the same
//! in its own init, so an external runtime is left to it.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which OCI runtime runs a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciRuntime {
    /// youki's `libcontainer`, in this process.
    Embedded,
    /// An OCI runtime binary (runc's command line).
    External(PathBuf),
}

/// The container's standard streams.
#[derive(Debug)]
pub struct ContainerStdio {
    /// Standard input.
    pub stdin: OwnedFd,
    /// Standard output.
    pub stdout: OwnedFd,
    /// Standard error.
    pub stderr: OwnedFd,
    /// The embedded runtime only: give the container a terminal of its own, its controlling
    /// terminal, and send its master end to this console socket (the streams above are then
    /// unused). An external runtime makes one itself when the spec asks for a terminal, and
    /// relays it to the streams.
    pub console: Option<PathBuf>,
}

/// A started container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The container's first process, as the host sees it.
    pub pid: i32,
    /// The process whose end is the container's end and which gets forwarded signals:
    /// the container's first process (embedded) or the runtime's process (external).
    pub waited: i32,
    /// Set when that process already ended (and was reaped) during the start: its exit code.
    pub exited: Option<i32>,
}

/// The exit code a shell would report: the code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Why the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The embedded runtime failed.
    #[error("the embedded runtime failed")]
    Embedded(#[source] libcontainer::error::LibcontainerError),
    /// The external runtime could not be run.
    #[error("cannot run {path}")]
    Spawn {
        /// The runtime binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The external runtime failed before the container started.
    #[error("{runtime} failed to start the container (exit status {status})")]
    ExternalFailed {
        /// The runtime binary.
        runtime: PathBuf,
        /// Its exit status.
        status: i32,
    },
    /// The container's process could not be found after the start.
    #[error("the runtime did not report the container's process")]
    NoPid,
    /// The bundle's configuration could not be adapted for the embedded runtime.
    #[error("cannot adapt {path} for the embedded runtime")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The container's session keyring could not be made.
    #[error(transparent)]
    Keyring(#[from] super::keyring::KeyringError),
}

impl OciRuntime {
    /// Starts the container `id` from the bundle `bundle`, keeping the runtime's state in
    /// `state` (a directory of its own). Blocks until the container's process runs.
    pub fn start(&self, id: &str, bundle: &Path, state: &Path, stdio: ContainerStdio) -> Result<Started, OciError> {
        match self {
            OciRuntime::Embedded => start_embedded(id, bundle, state, stdio),
            OciRuntime::External(path) => start_external(path, id, bundle, state, stdio),
        }
    }

    /// Removes the runtime's state of container `id` (and its cgroup), killing what is left.
    pub fn delete(&self, id: &str, state: &Path) -> Result<(), OciError> {
        match self {
            OciRuntime::Embedded => {
                let dir = state.join(id);
                if !dir.exists() {
                    return Ok(());
                }
                let mut container = libcontainer::container::Container::load(dir).map_err(OciError::Embedded)?;
                container.delete(true).map_err(OciError::Embedded)
            }
            OciRuntime::External(path) => {
                // `run` in the foreground deletes the container when it ends; only a runtime
                // that was interrupted leaves its state behind.
                if !state.join(id).exists() {
                    return Ok(());
                }
                let status = Command::new(path)
                    .arg("--root")
                    .arg(state)
                    .args(["delete", "--force", id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map_err(|source| OciError::Spawn { path: path.clone(), source })?;
                // A container that is already gone is not an error worth reporting.
                let _ = status;
                Ok(())
            }
        }
    }
}

/// libcontainer 0.7 reads `SCMP_CMP_MASKED_EQ`'s operands the other way round from the
/// runtime spec and runc (`valueTwo` as the mask, `value` as the datum): Docker's `clone`
/// rule would then mask with 0 and let `clone(CLONE_NEWUSER)` through (`tests/tests/run.rs`
/// shows it). The bundle's `config.json` is rewritten with them swapped before it reads it;
/// a bundle is started once, by one runtime.
fn adapt_seccomp_for_libcontainer(bundle: &Path) -> Result<(), OciError> {
    let path = bundle.join("config.json");
    let config_err = |source| OciError::Config { path: path.clone(), source };
    let mut spec = oci_spec::runtime::Spec::load(&path).map_err(config_err)?;
    let Some(seccomp) = spec.linux_mut().as_mut().and_then(|l| l.seccomp_mut().as_mut()) else { return Ok(()) };
    if super::seccomp::swap_masked_operands(seccomp) {
        spec.save(&path).map_err(config_err)?;
    }
    Ok(())
}

fn start_embedded(id: &str, bundle: &Path, state: &Path, stdio: ContainerStdio) -> Result<Started, OciError> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    // libcontainer 0.7 leaves the keyrings alone: without this the container would share the
    // caller's session keyring.
    super::keyring::join_fresh_session(id)?;
    adapt_seccomp_for_libcontainer(bundle)?;
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(state)
        .map_err(OciError::Embedded)?
        .with_stdin(stdio.stdin)
        .with_stdout(stdio.stdout)
        .with_stderr(stdio.stderr)
        .with_console_socket(stdio.console)
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(OciError::Embedded)?;
    container.start().map_err(OciError::Embedded)?;
    let pid = container.pid().ok_or(OciError::NoPid)?.as_raw();
    Ok(Started { pid, waited: pid, exited: None })
}

fn start_external(
    path: &Path,
    id: &str,
    bundle: &Path,
    state: &Path,
    stdio: ContainerStdio,
) -> Result<Started, OciError> {
    let pid_file = state.join(format!("{id}.pid"));
    fs::create_dir_all(state).map_err(|source| OciError::Spawn { path: state.to_path_buf(), source })?;
    // A container started again (a restart, `berth start`) would otherwise find its last
    // process's PID there.
    match fs::remove_file(&pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(OciError::Spawn { path: pid_file, source: e });
        }
        _ => {}
    }
    let mut child = Command::new(path)
        .arg("--root")
        .arg(state)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id)
        .stdin(Stdio::from(stdio.stdin))
        .stdout(Stdio::from(stdio.stdout))
        .stderr(Stdio::from(stdio.stderr))
        .spawn()
        .map_err(|source| OciError::Spawn { path: path.to_path_buf(), source })?;
    let waited = child.id() as i32;
    let start = Instant::now();
    // runc and crun start a container in some tens of milliseconds: polling every 200 µs
    // to 1 ms costs a few dozen wake-ups and finds the PID file at most 1 ms late (doubling
    // up to 10 ms found it up to 10 ms late).
    let mut pause = Duration::from_micros(200);
    let read_pid = || fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
    loop {
        if let Some(pid) = read_pid() {
            // The child is waited for by the supervisor's reaping loop, not through `child`.
            std::mem::forget(child);
            return Ok(Started { pid, waited, exited: None });
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                // A container that ran and ended before its PID was read.
                if let Some(pid) = read_pid() {
                    return Ok(Started { pid, waited, exited: Some(exit_code(status)) });
                }
                return Err(OciError::ExternalFailed { runtime: path.to_path_buf(), status: exit_code(status) });
            }
            Ok(None) => {}
            Err(source) => return Err(OciError::Spawn { path: path.to_path_buf(), source }),
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(OciError::NoPid);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}
