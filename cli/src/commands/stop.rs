//! `berth stop [-t SECONDS] CONTAINER...`: the stop signal (`--stop-signal`, the image's
//! `StopSignal`, else SIGTERM), then SIGKILL after the grace time, as `docker stop`; a
//! stopped container is not restarted by its `--restart` policy. Through
//! `runtime::container::Containers::stop_with`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use runtime::container::Containers;

/// Flags of `berth stop`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait after the stop signal before SIGKILL [default: the container's --stop-timeout, else 10].
    #[arg(long = "time", short = 't')]
    pub time: Option<u64>,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Runs `berth stop` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let containers = Containers::at(root);
    let mut failed = None;
    for name in &args.containers {
        match containers.stop_with(name, args.time.map(Duration::from_secs)) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("berth: cannot stop {name}: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e).context("some containers were not stopped"),
        None => Ok(()),
    }
}
