//! `berth start CONTAINER...` and `berth restart [-t SECONDS] CONTAINER...`: a stopped
//! container runs again with the same configuration, root file system and name, in the
//! background (its output goes to its log), under a new detached supervisor; `restart`
//! stops it first, as `docker restart`. Through `runtime::container::lifecycle` and
//! `runtime::container::shim`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use runtime::container::{shim, Containers};

/// Flags of `berth start`.
#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Flags of `berth restart`.
#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait after the stop signal before SIGKILL [default: the container's --stop-timeout, else 10].
    #[arg(long = "time", short = 't')]
    pub time: Option<u64>,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Starts the detached supervisor of the recorded container `id` and waits until it reports
/// that the container runs (or why it could not start it). This process must run from the
/// sealed binary (`super::reexec_sealed`): the supervisor is started from `/proc/self/exe`.
pub fn spawn_supervisor(root: &Path, id: &str) -> Result<(), shim::ShimError> {
    let exe = Path::new("/proc/self/exe");
    shim::spawn_detached(|fd| {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--root").arg(root).arg("container-shim").arg("--detach").arg("--ready-fd").arg(fd.to_string());
        cmd.arg(id);
        cmd
    })
}

fn start_one(containers: &Containers, root: &Path, name: &str) -> Result<()> {
    let record = containers.find(name)?;
    if record.is_running() {
        // As `docker start`: nothing to do.
        return Ok(());
    }
    let record = containers.prepare_start(&record.id)?;
    spawn_supervisor(root, &record.id).with_context(|| format!("cannot start container {}", record.name))
}

fn each(names: &[String], verb: &str, mut act: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = None;
    for name in names {
        match act(name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("berth: cannot {verb} {name}: {e:#}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e).context(format!("some containers were not {verb}ed")),
        None => Ok(()),
    }
}

/// Runs `berth start` on the store at `root`.
pub fn start(root: &Path, args: StartArgs) -> Result<()> {
    let containers = Containers::at(root);
    each(&args.containers, "start", |name| start_one(&containers, root, name))
}

/// Runs `berth restart` on the store at `root`.
pub fn restart(root: &Path, args: RestartArgs) -> Result<()> {
    let containers = Containers::at(root);
    each(&args.containers, "restart", |name| {
        containers.stop_with(name, args.time.map(Duration::from_secs))?;
        start_one(&containers, root, name)
    })
}
