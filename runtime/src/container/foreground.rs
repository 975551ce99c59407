//! Running one OCI bundle in the foreground with the embedded runtime, the way
//! `runc run` does: the process behind the hidden `berth oci-runtime` command, which the
//! builder runs for each RUN step (`berth oci-runtime --root STATE run --bundle DIR
//! [--pid-file FILE] ID`).
//!
//! The embedded runtime (youki's `libcontainer`, see [`super::oci`]) clones the container
//! from the calling process, so it must be driven from a fresh single-threaded process, which
//! a build (tokio, one thread per stage) is not: the builder starts this one instead. It
//! keeps runc's contract for what the builder uses: the container gets this process's
//! standard streams; `--pid-file` receives the container's first process; SIGINT, SIGTERM,
//! SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to it ([`super::supervise`]); when it
//! ends, its state under `STATE/ID` and its cgroups are removed; the exit code is the
//! container's (128 + signal when it was killed). Failing to start exits with 125 (127 when
//! the command is not in the root), after removing whatever the start left.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::cgroups::{CgroupError, Cgroups};
use super::oci::{ContainerStdio, OciError, OciRuntime};
use super::rootfs;
use super::shim::{EXIT_NOT_FOUND, EXIT_START_FAILED};
use super::supervise::{self, Signals};

/// Why a bundle could not be run or its container deleted.
#[derive(Debug, thiserror::Error)]
pub enum ForegroundError {
    /// The bundle's `config.json` is missing or not valid.
    #[error("reading {path}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The configuration has no process to run.
    #[error("{0}: no process arguments")]
    NoProcess(PathBuf),
    /// The command is not in the container's root.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The runtime failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// A signal asked for the end before the container started.
    #[error("interrupted by {0} before the container started")]
    Interrupted(nix::sys::signal::Signal),
    /// The cgroups could not be removed.
    #[error("removing the container's cgroups")]
    Cgroups(#[source] CgroupError),
    /// A file, descriptor or process setting could not be used.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ForegroundError {
    let what = what.into();
    move |source| ForegroundError::Io { what, source }
}

/// What to run: runc's `--root STATE run --bundle DIR [--pid-file FILE] ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// The directory of the runtime's state (`--root`); the container's is `STATE/ID`.
    pub state: PathBuf,
    /// The bundle directory, holding `config.json`.
    pub bundle: PathBuf,
    /// Where to write the container's first process ID.
    pub pid_file: Option<PathBuf>,
    /// The container's ID.
    pub id: String,
}

/// Runs the bundle to its end with this process's standard streams and returns the exit
/// code for this process (see the module docs). Errors are printed to standard error.
///
/// Call it from a single-threaded process only (the embedded runtime forks from it), and
/// once: it installs process-wide signal handlers.
pub fn run(args: &RunArgs) -> i32 {
    match run_bundle(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth oci-runtime: {}", shared::error_chain(&e));
            if let Err(e) = delete(&args.state, &args.id, Some(&args.bundle)) {
                eprintln!("berth oci-runtime: {}", shared::error_chain(&e));
            }
            match e {
                ForegroundError::NotFound(_) => EXIT_NOT_FOUND,
                ForegroundError::Interrupted(signal) => 128 + signal as i32,
                _ => EXIT_START_FAILED,
            }
        }
    }
}

fn run_bundle(args: &RunArgs) -> Result<i32, ForegroundError> {
    // Signals that arrive while the container starts are noted and passed on once it runs.
    let signals = Signals::catch().map_err(io_err("installing signal handlers"))?;
    supervise::become_subreaper().map_err(io_err("becoming a child subreaper"))?;
    let spec = load_spec(&args.bundle)?;
    check_command(&spec, &args.bundle)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state)
        .map_err(io_err(format!("creating {}", args.state.display())))?;
    let stdio = ContainerStdio {
        stdin: dup(io::stdin().as_fd())?,
        stdout: dup(io::stdout().as_fd())?,
        stderr: dup(io::stderr().as_fd())?,
        console: None,
    };
    if let Some(signal) = signals.terminating() {
        return Err(ForegroundError::Interrupted(signal));
    }
    let started = OciRuntime::Embedded.start(&args.id, &args.bundle, &args.state, stdio)?;
    if let Some(path) = &args.pid_file {
        write_pid_file(path, started.pid)?;
    }
    let code =
        signals.wait(Pid::from_raw(started.waited), started.exited).map_err(io_err("waiting for the container"))?;
    if let Err(e) = delete(&args.state, &args.id, Some(&args.bundle)) {
        eprintln!("berth oci-runtime: {}", shared::error_chain(&e));
    }
    Ok(code)
}

/// Removes container `id`'s state under `state`, killing what is left of it, and its
/// cgroups (named by the bundle's `config.json`, when `bundle` is given and readable).
pub fn delete(state: &Path, id: &str, bundle: Option<&Path>) -> Result<(), ForegroundError> {
    let cgroups_path =
        bundle.and_then(|b| load_spec(b).ok()).and_then(|s| s.linux().as_ref().and_then(|l| l.cgroups_path().clone()));
    let deleted = OciRuntime::Embedded.delete(id, state);
    if let Some(path) = cgroups_path {
        let cgroups = Cgroups::detect().map_err(ForegroundError::Cgroups)?;
        cgroups.remove(&path.to_string_lossy()).map_err(ForegroundError::Cgroups)?;
    }
    Ok(deleted?)
}

fn load_spec(bundle: &Path) -> Result<Spec, ForegroundError> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|source| ForegroundError::Config { path, source })
}

/// Fails with [`ForegroundError::NotFound`] when the process's command is not an executable
/// of the root, as Docker reports it (the runtime's own error would say less).
fn check_command(spec: &Spec, bundle: &Path) -> Result<(), ForegroundError> {
    let config = bundle.join("config.json");
    let process = spec.process().as_ref().ok_or_else(|| ForegroundError::NoProcess(config.clone()))?;
    let args = process.args().clone().unwrap_or_default();
    let command = args.first().ok_or(ForegroundError::NoProcess(config))?;
    let Some(root) = spec.root().as_ref().map(|r| bundle.join(r.path())) else { return Ok(()) };
    let env = process.env().clone().unwrap_or_default();
    let cwd = process.cwd().to_string_lossy();
    if rootfs::find_executable(&root, command, &env, &cwd) {
        Ok(())
    } else {
        Err(ForegroundError::NotFound(command.clone()))
    }
}

fn dup(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, ForegroundError> {
    fd.try_clone_to_owned().map_err(io_err("duplicating a standard stream"))
}

/// Writes `pid` to `path` through a temporary file renamed into place, so a reader never
/// sees it half written (as runc does).
fn write_pid_file(path: &Path, pid: i32) -> Result<(), ForegroundError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&temp, pid.to_string()).map_err(io_err(format!("writing {}", temp.display())))?;
    fs::rename(&temp, path).map_err(io_err(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{ProcessBuilder, RootBuilder, SpecBuilder};
    use std::os::unix::fs::PermissionsExt;

    fn bundle(dir: &Path, command: &str) {
        let root = dir.join("rootfs");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/sh"), "#!\n").unwrap();
        fs::set_permissions(root.join("bin/sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let process = ProcessBuilder::default()
            .args(vec![command.to_string()])
            .env(vec!["PATH=/bin".to_string()])
            .cwd("/")
            .build()
            .unwrap();
        let spec = SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build().unwrap())
            .process(process)
            .build()
            .unwrap();
        spec.save(dir.join("config.json")).unwrap();
    }

    #[test]
    fn refuses_a_command_the_root_lacks() {
        let dir = tempfile::tempdir().unwrap();
        bundle(dir.path(), "sh");
        let spec = load_spec(dir.path()).unwrap();
        check_command(&spec, dir.path()).unwrap();
        bundle(dir.path(), "nope");
        let spec = load_spec(dir.path()).unwrap();
        assert!(matches!(check_command(&spec, dir.path()), Err(ForegroundError::NotFound(c)) if c == "nope"));
        assert!(matches!(load_spec(&dir.path().join("missing")), Err(ForegroundError::Config { .. })));
    }

    #[test]
    fn pid_files_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        write_pid_file(&path, 4242).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4242");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn deleting_nothing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        delete(dir.path(), "absent", None).unwrap();
    }
}
