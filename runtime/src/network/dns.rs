//! Name resolution on user networks, by podman's `aardvark-dns` (Debian package
//! `aardvark-dns`): one server per store root, listening on port 53 of every DNS-enabled
//! network's gateway address, answering with the names of the containers on the asker's
//! network and forwarding other names to the host's resolvers.
//!
//! Its configuration is a folder with a file per network, named after it
//! (<https://github.com/containers/aardvark-dns/blob/main/config.md>): the first line lists the
//! addresses to listen on; each further line is `ID IPV4S IPV6S NAMES` (comma-separated
//! lists, the IPv6 one empty here). The server re-reads the folder on `SIGHUP`, so a
//! container started earlier resolves one started later. [`sync`] rewrites one network's
//! file from its attachments and starts, reloads or stops the server.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Attachment, NetworkDef, NetworkError};

/// Where aardvark-dns is looked for (Debian's folder first).
pub const AARDVARK: &[&str] = &["/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns"];

/// The server's pid file inside its configuration folder (it writes it itself).
const PID_FILE: &str = "aardvark.pid";

/// The configuration file of `network` for the containers `attached` to it.
pub fn config_file(network: &NetworkDef, attached: &[&Attachment]) -> String {
    let mut text = format!("{}\n", network.gateway);
    for a in attached {
        text.push_str(&format!("{} {}  {}\n", a.container, a.address, a.names.join(",")));
    }
    text
}

/// Writes network `network`'s file for `attached` (removed when nobody is attached) and
/// starts, reloads or stops the server to match.
pub fn sync(dir: &Path, network: &NetworkDef, attached: &[&Attachment]) -> Result<(), NetworkError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NetworkError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let file = dir.join(&network.name);
    if attached.is_empty() {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&file)(e)),
            _ => {}
        }
    } else {
        let temp = dir.join(format!(".{}.tmp", network.name));
        fs::write(&temp, config_file(network, attached)).map_err(io_err(&temp))?;
        fs::rename(&temp, &file).map_err(io_err(&file))?;
    }
    let networks = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n != PID_FILE && !n.starts_with('.')))
        .count();
    match (server_pid(dir), networks) {
        (Some(pid), 0) => signal(pid, nix::sys::signal::Signal::SIGTERM),
        (Some(pid), _) => signal(pid, nix::sys::signal::Signal::SIGHUP),
        (None, 0) => Ok(()),
        (None, _) => start(dir),
    }
}

/// The running server of folder `dir`, from its pid file.
fn server_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(dir.join(PID_FILE)).ok()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "aardvark-dns" && crate::container::process_alive(pid)).then_some(pid)
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) -> Result<(), NetworkError> {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(NetworkError::Dns(format!("signalling aardvark-dns ({pid}): {e}"))),
    }
}

/// Starts the server on folder `dir`; it puts itself in the background once it listens.
fn start(dir: &Path) -> Result<(), NetworkError> {
    let program = AARDVARK.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or_else(|| {
        NetworkError::Dns(
            "aardvark-dns is not installed (apt-get install aardvark-dns); user networks need it to resolve \
             container names"
                .into(),
        )
    })?;
    let status = Command::new(&program)
        .arg("--config")
        .arg(dir)
        .args(["-p", "53", "run"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the terminal's process group: a Ctrl-C for `berth run` is not for it.
        .process_group(0)
        .status()
        .map_err(|e| NetworkError::Dns(format!("starting {}: {e}", program.display())))?;
    if !status.success() {
        return Err(NetworkError::Dns(format!("{} run failed ({status})", program.display())));
    }
    Ok(())
}

/// Stops the server of folder `dir`, if it runs (for tests and `network rm`).
pub fn stop(dir: &Path) -> Result<(), NetworkError> {
    server_pid(dir).map_or(Ok(()), |pid| signal(pid, nix::sys::signal::Signal::SIGTERM))
}
