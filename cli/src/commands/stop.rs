//! `berth stop [-t SECONDS] CONTAINER...`: SIGTERM, then SIGKILL after the grace time, as
//! `docker stop`; through `runtime::container::Containers::stop`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use runtime::container::Containers;

/// Flags of `berth stop`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(long = "time", short = 't', default_value_t = 10)]
    pub time: u64,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Runs `berth stop` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let containers = Containers::at(root);
    let mut failed = None;
    for name in &args.containers {
        match containers.stop(name, Duration::from_secs(args.time)) {
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
