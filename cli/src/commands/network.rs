//! `berth network create|ls|rm|inspect`: container networks, through
//! `runtime::network::Networks` (definitions and leases under the store root).

use std::path::Path;

use anyhow::{bail, Context, Result};
use runtime::container::Containers;
use runtime::network::{Networks, Subnet};

/// Flags of `berth network`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `berth network`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a bridge network whose containers resolve each other by name.
    Create {
        /// IPv4 subnet in CIDR form [default: the first free /24 of 10.78.0.0/16].
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// The bridge's address, the containers' gateway [default: the subnet's first address].
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// Only the bridge driver exists.
        #[arg(long, short = 'd', default_value = "bridge", value_parser = ["bridge"])]
        driver: String,
        /// The network's name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only print names.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Remove networks (no container may be attached).
    #[command(alias = "remove")]
    Rm {
        /// Names or ID prefixes.
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Show networks as JSON (shaped like `docker network inspect`).
    Inspect {
        /// Names or ID prefixes.
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
}

/// Runs `berth network` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let networks = Networks::at(root);
    let containers = Containers::at(root);
    networks.collect_stale(&containers).context("cannot collect the attachments of ended containers")?;
    match args.command {
        Command::Create { subnet, gateway, name, .. } => {
            let subnet = subnet.map(|s| s.parse::<Subnet>()).transpose()?;
            let gateway = gateway
                .map(|g| g.parse().with_context(|| format!("invalid --gateway {g:?}: give an IPv4 address")))
                .transpose()?;
            let def = networks.create(&name, subnet, gateway)?;
            println!("{}", def.id);
        }
        Command::Ls { quiet } => {
            let all = networks.list()?;
            if quiet {
                all.iter().for_each(|d| println!("{}", d.name));
                return Ok(());
            }
            println!("{:<14}{:<20}{:<10}{:<8}SUBNET", "NETWORK ID", "NAME", "DRIVER", "SCOPE");
            for d in all {
                println!("{:<14}{:<20}{:<10}{:<8}{}", &d.id[..12], d.name, "bridge", "local", d.subnet);
            }
        }
        Command::Rm { names } => {
            let mut failed = 0;
            for name in &names {
                match networks.remove(name, &containers) {
                    Ok(_) => println!("{name}"),
                    Err(e) => {
                        eprintln!("berth: cannot remove network {name}: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} network(s) not removed");
            }
        }
        Command::Inspect { names } => {
            let mut out = Vec::new();
            for name in &names {
                let def = networks.get(name)?;
                out.push(networks.inspect(&def, &containers)?);
            }
            println!("{}", serde_json::to_string_pretty(&out).context("cannot print the result")?);
        }
    }
    Ok(())
}
