//! `berth exec`: one more process in a running container, as `docker exec` runs it.
//!
//! The process joins the container's namespaces and cgroup and runs with what its first
//! process runs with, read from the container's `config.json`: its environment (plus `-e`),
//! user (or `-u`, resolved from the container's own `/etc/passwd` and `/etc/group` by
//! [`super::user`], read safely with [`super::rootfs::read_in_root`]), working directory (or
//! `-w`), capabilities, `no_new_privs`, rlimits and seccomp profile. [`exec_process`] builds
//! that OCI `process` (pure, unit-tested); [`run`] hands it to the container's runtime:
//!
//! - the embedded runtime: libcontainer's tenant builder. libcontainer 0.7 drops the
//!   container's `linux.seccomp` from the spec it gives a tenant, so the process would run
//!   unfiltered; [`SeccompExecutor`] installs the container's filter itself, last thing before
//!   the `execve` (setting `no_new_privs` first when the container runs without it, since
//!   by then the process lacks `CAP_SYS_ADMIN`). The calling process runs from the sealed
//!   binary ([`super::sealed`]) and joins a fresh session keyring ([`super::keyring`]), as a
//!   container's supervisor does, so the process never sees the host's binary or keys;
//! - an external runtime: `RUNTIME --root STATE exec --process FILE ID`, in the foreground
//!   (runc relays a terminal itself), with signals passed on.
//!
//! The exit code is the process's (128 + signal when killed); 127 when the command is not
//! in the container, 126 when it is not executable, 125 when exec itself failed (Docker's).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxCapabilitiesBuilder, LinuxSeccomp, Process, Spec};

use super::console::ConsoleSocket;
use super::oci::OciError;
use super::rootfs::{self, RootfsError};
use super::supervise::{self, Signals};
use super::user::{self, ResolvedUser, UserError};
use super::{ContainerError, ContainerRecord, Containers};

/// The exit code when the command exists but cannot be executed (Docker's).
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

/// What to run, and how (`berth exec`'s flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// `KEY=VALUE` entries added to the container's environment.
    pub env: Vec<String>,
    /// `USER[:GROUP]`, else the container's user.
    pub user: Option<String>,
    /// The working directory (absolute), else the container's.
    pub workdir: Option<String>,
    /// Keep standard input open.
    pub interactive: bool,
    /// Give the process a terminal.
    pub tty: bool,
    /// Start it and return at once (its output is discarded).
    pub detach: bool,
}

/// Why a process could not be run in a container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The container could not be found or its record read.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The container does not run.
    #[error("container {0} is not running: start it first (berth start {0})")]
    NotRunning(String),
    /// The container's configuration is unreadable.
    #[error("reading the container's configuration {path}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// No command was given.
    #[error("no command given: berth exec CONTAINER COMMAND [ARG...]")]
    NoCommand,
    /// The working directory is relative.
    #[error("the working directory {0:?} is not absolute")]
    RelativeWorkdir(String),
    /// The user is not in the container.
    #[error(transparent)]
    User(#[from] UserError),
    /// The container's root could not be read.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The command is not in the container.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The command is not executable.
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    /// The runtime failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The process could not be described.
    #[error("building the process's configuration")]
    Spec(#[from] oci_spec::OciSpecError),
    /// A file, pipe or terminal could not be used.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ExecError {
    /// The exit code `berth exec` reports for this error (Docker's).
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::NotFound(_) => super::shim::EXIT_NOT_FOUND,
            ExecError::NotExecutable(_) => EXIT_NOT_EXECUTABLE,
            _ => super::shim::EXIT_START_FAILED,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ExecError {
    let what = what.into();
    move |source| ExecError::Io { what, source }
}

fn errno(what: &str) -> impl FnOnce(nix::Error) -> ExecError + '_ {
    move |e| ExecError::Io { what: what.to_string(), source: io::Error::from_raw_os_error(e as i32) }
}

/// The process to run: the container's `base` process with `options` applied; `user` is
/// the `-u` user resolved in the container.
pub fn exec_process(base: &Process, user: Option<&ResolvedUser>, options: &ExecOptions) -> Result<Process, ExecError> {
    if options.command.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let mut process = base.clone();
    process.set_args(Some(options.command.clone()));
    // A detached process's output is discarded: nobody would relay a terminal.
    process.set_terminal(Some(options.tty && !options.detach));
    process.set_console_size(None);
    let mut env = base.env().clone().unwrap_or_default();
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut set = |entry: &str| {
        let k = key(entry);
        env.retain(|e| key(e) != k);
        env.push(entry.to_string());
    };
    if let Some(user) = user {
        // The container's HOME was its own user's; an explicit -e HOME still wins below.
        set(&format!("HOME={}", user.home));
    }
    for entry in &options.env {
        set(entry);
    }
    if options.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    process.set_env(Some(env));
    if let Some(dir) = &options.workdir {
        if !dir.starts_with('/') {
            return Err(ExecError::RelativeWorkdir(dir.clone()));
        }
        process.set_cwd(dir.into());
    }
    if let Some(user) = user {
        let ids = process.user_mut();
        ids.set_uid(user.uid);
        ids.set_gid(user.gid);
        ids.set_additional_gids(Some(user.additional_gids.clone()));
        // As for the first process: a non-root user gets no effective capabilities.
        if let Some(caps) = base.capabilities() {
            let bounding = caps.bounding().clone().unwrap_or_default();
            let none = oci_spec::runtime::Capabilities::new();
            let granted = if user.uid == 0 { bounding.clone() } else { none.clone() };
            let caps = LinuxCapabilitiesBuilder::default()
                .bounding(bounding)
                .effective(granted.clone())
                .permitted(granted)
                .inheritable(none.clone())
                .ambient(none)
                .build()?;
            process.set_capabilities(Some(caps));
        }
    }
    Ok(process)
}

/// Fails unless `command` is an executable of the container's root: 127 when it is
/// nowhere, 126 when it exists but cannot be executed.
pub fn check_command(rootfs: &Path, command: &str, env: &[String], cwd: &str) -> Result<(), ExecError> {
    if rootfs::find_executable(rootfs, command, env, cwd) {
        return Ok(());
    }
    let exists = if command.contains('/') {
        let path = if command.starts_with('/') { command.to_string() } else { format!("{cwd}/{command}") };
        rootfs::exists_in_root(rootfs, &path)
    } else {
        let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(super::spec::DEFAULT_PATH);
        path.split(':').filter(|d| !d.is_empty()).any(|d| rootfs::exists_in_root(rootfs, &format!("{d}/{command}")))
    };
    if exists {
        Err(ExecError::NotExecutable(command.to_string()))
    } else {
        Err(ExecError::NotFound(command.to_string()))
    }
}

/// The container's configuration and the process `options` describe, checked.
fn prepare(
    containers: &Containers,
    record: &ContainerRecord,
    options: &ExecOptions,
) -> Result<(Spec, Process), ExecError> {
    if !record.is_running() || record.pid.is_none() {
        return Err(ExecError::NotRunning(record.name.clone()));
    }
    let paths = containers.paths();
    let path = paths.container_config(&record.id);
    let spec = Spec::load(&path).map_err(|source| ExecError::Config { path: path.clone(), source })?;
    let base = spec.process().clone().ok_or_else(|| ExecError::Config {
        path: path.clone(),
        source: oci_spec::OciSpecError::Other("no process".into()),
    })?;
    let rootfs = paths.container_rootfs(&record.id);
    let user = match &options.user {
        Some(spec) => {
            let passwd = rootfs::read_in_root(&rootfs, "etc/passwd")?.unwrap_or_default();
            let group = rootfs::read_in_root(&rootfs, "etc/group")?.unwrap_or_default();
            Some(user::resolve(spec, &passwd, &group)?)
        }
        None => None,
    };
    let process = exec_process(&base, user.as_ref(), options)?;
    let env = process.env().clone().unwrap_or_default();
    let cwd = process.cwd().to_string_lossy().into_owned();
    check_command(&rootfs, &options.command[0], &env, &cwd)?;
    Ok((spec, process))
}

/// Writes `process` as a `process.json` of its own in the container's folder.
fn write_process(containers: &Containers, record: &ContainerRecord, process: &Process) -> Result<PathBuf, ExecError> {
    let dir = containers.paths().container(&record.id);
    let path = dir.join(format!("exec-{}.json", &super::random_id()?[..16]));
    let body = serde_json::to_vec(process).map_err(|e| io_err("encoding the process")(io::Error::other(e)))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(format!("writing {}", path.display())))?;
    file.write_all(&body).map_err(io_err(format!("writing {}", path.display())))?;
    Ok(path)
}

/// Runs `options.command` in the running container `record` with this process's standard
/// streams (see the module docs) and returns its exit code.
///
/// Call it from a single-threaded process (the embedded runtime forks from it) that runs
/// from the sealed binary; it installs process-wide signal handlers.
pub fn run(containers: &Containers, record: &ContainerRecord, options: &ExecOptions) -> Result<i32, ExecError> {
    let (spec, process) = prepare(containers, record, options)?;
    let file = write_process(containers, record, &process)?;
    let outcome = match &record.options.runtime {
        None => run_embedded(containers, record, &spec, &file, options),
        Some(runtime) => run_external(containers, record, Path::new(runtime), &file, options),
    };
    let _ = fs::remove_file(&file);
    outcome
}

fn null(write: bool) -> Result<OwnedFd, ExecError> {
    let file = OpenOptions::new().read(!write).write(write).open("/dev/null").map_err(io_err("opening /dev/null"))?;
    Ok(file.into())
}

fn dup(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, ExecError> {
    fd.try_clone_to_owned().map_err(io_err("duplicating a standard stream"))
}

fn run_embedded(
    containers: &Containers,
    record: &ContainerRecord,
    spec: &Spec,
    process_file: &Path,
    options: &ExecOptions,
) -> Result<i32, ExecError> {
    let signals = Signals::catch().map_err(io_err("installing signal handlers"))?;
    supervise::become_subreaper().map_err(io_err("becoming a child subreaper"))?;
    let dir = containers.paths().container(&record.id);
    let console = if options.tty && !options.detach {
        let name = format!("exec-{}.sock", std::process::id());
        Some(ConsoleSocket::bind_as(&dir, &name).map_err(io_err("making the console socket"))?)
    } else {
        None
    };
    let quiet = options.detach || console.is_some();
    let stdin = if options.interactive && !quiet { dup(io::stdin().as_fd())? } else { null(false)? };
    let (stdout, stderr) =
        if quiet { (null(true)?, null(true)?) } else { (dup(io::stdout().as_fd())?, dup(io::stderr().as_fd())?) };
    let stdio = [stdin, stdout, stderr];
    let pid = start_tenant(containers, record, spec, process_file, stdio, console.as_ref().map(|c| c.path()))?;
    if options.detach {
        return Ok(0);
    }
    let mut terminal = match console {
        Some(console) => Some(Terminal::take(console.receive().map_err(io_err("receiving the terminal"))?, options)?),
        None => None,
    };
    let code = wait_relaying(&signals, pid, terminal.as_mut());
    drop(terminal);
    code
}

/// Starts the process of `process_file` in the container with the embedded runtime (a
/// tenant of the container: see the module docs), with `stdio` as its standard streams or
/// a terminal sent to `console`; returns its PID, an orphan this child subreaper reaps.
fn start_tenant(
    containers: &Containers,
    record: &ContainerRecord,
    spec: &Spec,
    process_file: &Path,
    stdio: [OwnedFd; 3],
    console: Option<&Path>,
) -> Result<Pid, ExecError> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    // The container's session keyring, as runc's exec joins it.
    super::keyring::join_fresh_session(&record.id).map_err(OciError::from)?;
    let [stdin, stdout, stderr] = stdio;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let state = containers.paths().container_runtime_state(&record.id);
    let pid = ContainerBuilder::new(record.id.clone(), SyscallType::default())
        .with_root_path(&state)
        .map_err(OciError::Embedded)?
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .with_console_socket(console)
        .with_executor(SeccompExecutor { seccomp })
        .as_tenant()
        .with_process(Some(process_file))
        .with_detach(true)
        .build()
        .map_err(OciError::Embedded)?;
    Ok(Pid::from_raw(pid.as_raw()))
}

/// A process started for the supervisor's health checks ([`spawn_probe`]).
#[derive(Debug)]
pub struct Probe {
    /// The process to wait for: the command itself (embedded runtime) or the runtime's
    /// `exec` process, which exits with the command's status.
    pub pid: Pid,
    /// The read end of the pipe its standard output and error go to.
    pub output: OwnedFd,
    /// Its `process.json`, removed once it ended ([`Probe::finish`]).
    file: PathBuf,
}

impl Probe {
    /// Removes what the probe left (call once it ended).
    pub fn finish(self) {
        let _ = fs::remove_file(&self.file);
    }
}

/// Starts `command` in the running container `record` with no input and its output into a
/// pipe, for the supervisor's health checks; the caller (a child subreaper) reaps it. The
/// process is described as `berth exec` describes one.
pub fn spawn_probe(containers: &Containers, record: &ContainerRecord, command: &[String]) -> Result<Probe, ExecError> {
    let options = ExecOptions { command: command.to_vec(), ..ExecOptions::default() };
    let (spec, process) = prepare(containers, record, &options)?;
    let file = write_process(containers, record, &process)?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("making a pipe"))?;
    let started = match &record.options.runtime {
        None => {
            let stdio = [null(false)?, dup(write.as_fd())?, write];
            start_tenant(containers, record, &spec, &file, stdio, None)
        }
        Some(runtime) => {
            let state = containers.paths().container_runtime_state(&record.id);
            Command::new(runtime)
                .arg("--root")
                .arg(&state)
                .arg("exec")
                .arg("--process")
                .arg(&file)
                .arg(&record.id)
                .stdin(Stdio::null())
                .stdout(Stdio::from(dup(write.as_fd())?))
                .stderr(Stdio::from(write))
                .spawn()
                .map(|child| {
                    let pid = Pid::from_raw(child.id() as i32);
                    // Reaped by the supervisor's loop, not through `child`.
                    std::mem::forget(child);
                    pid
                })
                .map_err(|source| ExecError::from(OciError::Spawn { path: PathBuf::from(runtime), source }))
        }
    };
    match started {
        Ok(pid) => Ok(Probe { pid, output: read, file }),
        Err(e) => {
            let _ = fs::remove_file(&file);
            Err(e)
        }
    }
}

fn run_external(
    containers: &Containers,
    record: &ContainerRecord,
    runtime: &Path,
    process_file: &Path,
    options: &ExecOptions,
) -> Result<i32, ExecError> {
    let signals = Signals::catch().map_err(io_err("installing signal handlers"))?;
    let state = containers.paths().container_runtime_state(&record.id);
    let mut cmd = Command::new(runtime);
    cmd.arg("--root").arg(&state).arg("exec").arg("--process").arg(process_file);
    if options.detach {
        cmd.arg("--detach");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    } else if !options.interactive && !options.tty {
        cmd.stdin(Stdio::null());
    }
    let child =
        cmd.arg(&record.id).spawn().map_err(|source| OciError::Spawn { path: runtime.to_path_buf(), source })?;
    let pid = Pid::from_raw(child.id() as i32);
    // Reaped by the loop below, not through `child`.
    std::mem::forget(child);
    signals.wait(pid, None).map_err(io_err("waiting for the runtime"))
}

/// Forwards signals to `target`, relays `terminal`, and reaps children until `target` ends.
fn wait_relaying(signals: &Signals, target: Pid, mut terminal: Option<&mut Terminal>) -> Result<i32, ExecError> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(code) = supervise::reap(target) {
            if let Some(t) = terminal.as_mut() {
                t.relay_out(&mut buf);
            }
            return Ok(code);
        }
        let stdin = io::stdin();
        let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
        if let Some(t) = terminal.as_ref() {
            fds.push(PollFd::new(t.master.as_fd(), PollFlags::POLLIN));
            if t.stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(errno("waiting for the process")(e)),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] && signals.forward(target).resized {
            if let Some(t) = terminal.as_ref() {
                t.resize();
            }
        }
        if let Some(t) = terminal.as_mut() {
            if ready.get(1).copied().unwrap_or(false) {
                t.relay_out(&mut buf);
            }
            if t.stdin_open && ready.get(2).copied().unwrap_or(false) {
                t.relay_in(&mut buf);
            }
        }
    }
}

/// The process's terminal (`-t`): its master end, relayed to this process's streams, with
/// the user's terminal made raw meanwhile (`-i`).
struct Terminal {
    master: OwnedFd,
    out: File,
    stdin_open: bool,
    saved: Option<termios::Termios>,
}

impl Terminal {
    fn take(master: OwnedFd, options: &ExecOptions) -> Result<Terminal, ExecError> {
        nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .map_err(errno("preparing the terminal"))?;
        let stdin = io::stdin();
        let saved = if options.interactive {
            termios::tcgetattr(stdin.as_fd()).ok().inspect(|saved| {
                let mut raw = saved.clone();
                termios::cfmakeraw(&mut raw);
                let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
            })
        } else {
            None
        };
        let terminal =
            Terminal { master, out: File::from(dup(io::stdout().as_fd())?), stdin_open: options.interactive, saved };
        terminal.resize();
        Ok(terminal)
    }

    fn resize(&self) {
        super::shim::copy_window_size(io::stdin().as_fd(), self.master.as_fd());
    }

    fn relay_out(&mut self, buf: &mut [u8]) {
        super::shim::relay(self.master.as_fd(), &mut self.out, buf);
    }

    fn relay_in(&mut self, buf: &mut [u8]) {
        match nix::unistd::read(io::stdin().as_raw_fd(), buf) {
            Ok(0) | Err(_) => self.stdin_open = false,
            Ok(n) => {
                if let Ok(master) = dup(self.master.as_fd()) {
                    let _ = File::from(master).write_all(&buf[..n]);
                }
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = termios::tcsetattr(io::stdin().as_fd(), termios::SetArg::TCSANOW, &saved);
        }
    }
}

/// libcontainer's default executor, after installing the container's seccomp filter (see
/// the module docs).
#[derive(Clone)]
struct SeccompExecutor {
    seccomp: Option<LinuxSeccomp>,
}

impl libcontainer::workload::Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), libcontainer::workload::ExecutorError> {
        use libcontainer::workload::ExecutorError;
        if let Some(seccomp) = &self.seccomp {
            // Without CAP_SYS_ADMIN (dropped by now) a filter needs no_new_privs.
            if !nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
                nix::sys::prctl::set_no_new_privs()
                    .map_err(|e| ExecutorError::Other(format!("setting no_new_privs: {e}")))?;
            }
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| ExecutorError::Other(format!("installing the container's seccomp filter: {e}")))?;
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder, ProcessBuilder, UserBuilder};
    use std::collections::HashSet;

    fn base() -> Process {
        let caps: HashSet<Capability> = [Capability::Chown, Capability::Kill].into();
        ProcessBuilder::default()
            .args(vec!["sleep".to_string()])
            .env(vec!["PATH=/bin".to_string(), "HOME=/root".to_string(), "A=run".to_string()])
            .cwd("/srv")
            .user(UserBuilder::default().uid(0u32).gid(0u32).build().unwrap())
            .capabilities(
                LinuxCapabilitiesBuilder::default()
                    .bounding(caps.clone())
                    .effective(caps.clone())
                    .permitted(caps)
                    .build()
                    .unwrap(),
            )
            .no_new_privileges(true)
            .build()
            .unwrap()
    }

    fn options(command: &[&str]) -> ExecOptions {
        ExecOptions { command: command.iter().map(|s| s.to_string()).collect(), ..ExecOptions::default() }
    }

    #[test]
    fn processes_keep_the_containers_settings() {
        let p = exec_process(&base(), None, &options(&["ps"])).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["ps".to_string()][..]));
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!(p.env().as_ref().unwrap(), &base().env().clone().unwrap());
        assert_eq!(p.capabilities(), base().capabilities());
        assert_eq!((p.no_new_privileges(), p.terminal()), (Some(true), Some(false)));
        assert!(matches!(exec_process(&base(), None, &options(&[])), Err(ExecError::NoCommand)));
    }

    #[test]
    fn flags_change_env_user_and_directory() {
        let mut o = options(&["id"]);
        o.env = vec!["A=exec".into(), "B=new".into()];
        o.workdir = Some("/tmp".into());
        o.tty = true;
        let app = ResolvedUser { uid: 1000, gid: 1000, additional_gids: vec![10], home: "/home/app".into() };
        let p = exec_process(&base(), Some(&app), &o).unwrap();
        let env = p.env().clone().unwrap();
        assert_eq!(env, ["PATH=/bin", "HOME=/home/app", "A=exec", "B=new", "TERM=xterm"]);
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[10][..]));
        let caps = p.capabilities().clone().unwrap();
        assert!(caps.effective().as_ref().unwrap().is_empty(), "a non-root user gets no effective capabilities");
        assert_eq!(caps.bounding(), base().capabilities().as_ref().unwrap().bounding());
        assert_eq!(p.terminal(), Some(true));
        o.workdir = Some("tmp".into());
        assert!(matches!(exec_process(&base(), None, &o), Err(ExecError::RelativeWorkdir(_))));
        o.workdir = None;
        o.detach = true;
        assert_eq!(exec_process(&base(), None, &o).unwrap().terminal(), Some(false), "nobody relays it");
    }

    #[test]
    fn missing_and_non_executable_commands_get_dockers_codes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(bin.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(bin.join("data"), "x").unwrap();
        fs::set_permissions(bin.join("data"), fs::Permissions::from_mode(0o644)).unwrap();
        let env = ["PATH=/bin".to_string()];
        check_command(dir.path(), "run", &env, "/").unwrap();
        let e = check_command(dir.path(), "data", &env, "/").unwrap_err();
        assert_eq!(e.exit_code(), EXIT_NOT_EXECUTABLE);
        assert_eq!(check_command(dir.path(), "/bin/data", &env, "/").unwrap_err().exit_code(), 126);
        assert_eq!(check_command(dir.path(), "nope", &env, "/").unwrap_err().exit_code(), 127);
        assert_eq!(check_command(dir.path(), "./run", &env, "/bin").ok(), Some(()));
    }
}
