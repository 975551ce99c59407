//! One module per subcommand: each parses its flags and calls a library crate.

pub mod build;
pub mod compose;
pub mod compose_engine;
pub mod compose_verbs;
pub mod exec;
pub mod gc;
pub mod images;
pub mod inspect;
pub mod kill;
pub mod login;
pub mod logs;
pub mod network;
pub mod oci_runtime;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rm;
pub mod rmi;
pub mod robot;
pub mod run;
pub mod save;
pub mod serve;
pub mod start;
pub mod stop;
pub mod tag;
pub mod volume;

use std::path::Path;

use anyhow::{Context, Result};

/// The registry client's settings for pulls: `plain_http`, and the mirrors of
/// `registry-mirrors` in Docker's configuration folder (`$DOCKER_CONFIG` or `~/.docker`).
pub fn client_config(plain_http: bool) -> Result<shared::client::ClientConfig> {
    let mirrors = login::docker_config()?.registry_mirrors().context("reading registry-mirrors")?;
    Ok(shared::client::ClientConfig { plain_http, mirrors, ..shared::client::ClientConfig::default() })
}

/// Opens the image store at `root`, saying what to do when that is not possible.
pub fn open_store(root: &Path) -> Result<runtime::Store> {
    runtime::Store::open(root).with_context(|| {
        format!(
            "cannot open the image store at {} (run as root, or choose a folder you can write with --root DIR or BERTH_ROOT)",
            root.display()
        )
    })
}

/// Re-executes this process from a copy of the berth binary that containers cannot write
/// through (`runtime::container::sealed`, runc's CVE-2019-5736 protection), unless it already
/// runs from one. Called first by the commands that start containers, before any thread
/// exists; on success it does not return. Afterwards `/proc/self/exe` (not the path of the
/// installed binary) names the binary to run again.
pub fn reexec_sealed() -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    if runtime::container::sealed::is_sealed() {
        return Ok(());
    }
    let exe = runtime::container::sealed::sealed_exe()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "berth".into());
    // The descriptor is close-on-exec: the kernel opens it before closing it, as for any
    // ELF binary run through /proc/self/fd.
    let err = std::process::Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd())).arg0(arg0).args(args).exec();
    Err(anyhow::Error::from(err).context("cannot re-execute the berth binary from its read-only copy"))
}

/// Logs warnings to standard error (for the commands that are not a server: run, pull,
/// oci-runtime); with `BERTH_LOG` set, what its filter selects, each line
/// stamped with the time since the start (to see where a start's milliseconds go).
pub fn init_logging() {
    match std::env::var("BERTH_LOG") {
        Ok(filter) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_timer(tracing_subscriber::fmt::time::uptime())
                .try_init();
        }
        Err(_) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn,libcgroups=error,libcontainer=error"))
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .without_time()
                .try_init();
        }
    }
}
