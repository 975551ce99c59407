//! `berth rm [-f] CONTAINER...`: removes stopped containers (running ones too with `-f`,
//! killing them first) with their mounts, cgroups and files, through
//! `runtime::container::Containers::remove`; with `-v`, their anonymous volumes too
//! (`runtime::volumes::Volumes::remove_anonymous`).

use std::path::Path;

use anyhow::{Context, Result};
use runtime::container::Containers;

/// Flags of `berth rm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill and remove running containers too.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Remove the containers' anonymous volumes too (named ones stay).
    #[arg(long, short = 'v')]
    pub volumes: bool,
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
            Ok(record) => {
                println!("{name}");
                if args.volumes {
                    let volumes = runtime::volumes::Volumes::at(root);
                    if let Err(e) = volumes.remove_anonymous(&record) {
                        eprintln!("berth: cannot remove the volumes of {name}: {e}");
                    }
                }
            }
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
