//! `berth kill [-s SIGNAL] CONTAINER...`: sends a signal (default `KILL`; names with or
//! without `SIG`, or numbers, as `docker kill`) to containers' first processes, through
//! `runtime::container::Containers::kill_with`.

use std::path::Path;

use anyhow::{Context, Result};
use runtime::container::lifecycle::parse_signal;
use runtime::container::Containers;

/// Flags of `berth kill`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The signal: a name (KILL, SIGUSR1, hup) or a number.
    #[arg(long, short = 's', default_value = "KILL")]
    pub signal: String,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Runs `berth kill` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let signal = parse_signal(&args.signal)?;
    let containers = Containers::at(root);
    let mut failed = None;
    for name in &args.containers {
        match containers.kill_with(name, signal) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("berth: cannot kill {name}: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e).context("some containers were not signalled"),
        None => Ok(()),
    }
}
