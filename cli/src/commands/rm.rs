//! `berth rm [-f] CONTAINER...`: removes stopped containers (running ones too with `-f`,
//! killing them first) with their mounts, cgroups and files, through
//! `runtime::container::Containers::remove`.

use std::path::Path;

use anyhow::{Context, Result};
use runtime::container::Containers;

/// Flags of `berth rm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill and remove running containers too.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Containers: names, IDs or ID prefixes.
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Runs `berth rm` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let containers = Containers::at(root);
    let mut failed = None;
    for name in &args.containers {
        match containers.remove(name, args.force) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("berth: cannot remove {name}: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e).context("some containers were not removed"),
        None => Ok(()),
    }
}
