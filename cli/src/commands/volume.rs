//! `berth volume create|ls|inspect|rm|prune`: Docker's volume verbs over
//! `runtime::volumes::Volumes`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use runtime::volumes::{VolumeError, Volumes};

/// Flags of `berth volume`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Make a volume (an existing one of that name is left as it is).
    Create {
        /// Set a label (KEY=VALUE, or KEY for an empty value).
        #[arg(long = "label", value_name = "KEY[=VALUE]")]
        labels: Vec<String>,
        /// The driver: only `local` (a folder of the store).
        #[arg(long, short = 'd', default_value = "local")]
        driver: String,
        /// Its name [default: 64 random hex digits].
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Show only the names.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show volumes as JSON (shaped like `docker volume inspect`).
    Inspect {
        /// Their names.
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove volumes (never one a container uses, running or not).
    #[command(alias = "remove")]
    Rm {
        /// Do not complain about volumes that do not exist.
        #[arg(long, short = 'f')]
        force: bool,
        /// Their names.
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove every volume no container uses.
    Prune {
        /// Do not ask for confirmation.
        #[arg(long, short = 'f')]
        force: bool,
    },
}

/// Runs `berth volume` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let volumes = Volumes::at(root);
    match args.command {
        Command::Create { labels, driver, name } => {
            if driver != "local" {
                bail!("volume driver {driver:?} is not supported: berth has only the local one");
            }
            let mut parsed = BTreeMap::new();
            for label in &labels {
                let (k, v) = label.split_once('=').unwrap_or((label, ""));
                if k.is_empty() {
                    bail!("invalid label {label:?}: use KEY=VALUE");
                }
                parsed.insert(k.to_string(), v.to_string());
            }
            let made = volumes.create(name.as_deref(), parsed).context("cannot create the volume")?;
            println!("{}", made.name);
        }
        Command::Ls { quiet } => {
            let all = volumes.list().context("cannot read the volumes")?;
            if !quiet {
                println!("DRIVER    VOLUME NAME");
            }
            for v in all {
                if quiet {
                    println!("{}", v.name);
                } else {
                    println!("local     {}", v.name);
                }
            }
        }
        Command::Inspect { names } => {
            let mut out = Vec::new();
            let mut missing = Vec::new();
            for name in &names {
                match volumes.get(name) {
                    Ok(v) => out.push(volumes.inspect(&v)),
                    Err(VolumeError::NotFound(_)) => missing.push(name.clone()),
                    Err(e) => return Err(e).with_context(|| format!("cannot inspect volume {name}")),
                }
            }
            println!("{}", serde_json::to_string_pretty(&out).context("cannot print the result")?);
            if !missing.is_empty() {
                bail!("no such volume: {} (`berth volume ls` lists them)", missing.join(", "));
            }
        }
        Command::Rm { force, names } => {
            let mut failed = false;
            for name in &names {
                match volumes.remove(name) {
                    Ok(_) => println!("{name}"),
                    Err(VolumeError::NotFound(_)) if force => {}
                    Err(e) => {
                        eprintln!("berth: cannot remove volume {name}: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some volumes were not removed");
            }
        }
        Command::Prune { force } => {
            if !force && !confirm("This removes every volume no container uses. Continue? [y/N] ")? {
                bail!("nothing removed (give --force to prune without being asked)");
            }
            let removed = volumes.prune().context("cannot prune the volumes")?;
            println!("Deleted Volumes:");
            for name in removed {
                println!("{name}");
            }
        }
    }
    Ok(())
}

/// Asks on the terminal; a standard input that is not one answers no.
fn confirm(question: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
