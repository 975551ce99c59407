//! The hidden `berth oci-runtime --root STATE run --bundle DIR [--pid-file FILE] ID` (and
//! `delete [--force] ID`): runc's command line for what the builder needs, over the embedded
//! runtime. `main` dispatches it before any thread exists; the work is
//! `runtime::container::foreground`.

use std::path::PathBuf;
use std::process::ExitCode;

use runtime::container::foreground::{self, RunArgs};

/// Flags of `berth oci-runtime`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory of the runtime's state.
    #[arg(long, value_name = "STATE")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: OciCommand,
}

/// The runtime's subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum OciCommand {
    /// Create and start a container, wait for it, delete it; exit with its status.
    Run {
        /// The bundle directory (holding config.json).
        #[arg(short = 'b', long, value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        /// Write the container's process ID to this file.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// The container's ID.
        id: String,
    },
    /// Delete a container's state (and kill what is left of it).
    Delete {
        /// Accepted for runc's command line; deleting always kills.
        #[arg(short, long)]
        force: bool,
        /// The container's ID.
        id: String,
    },
}

/// Runs `berth oci-runtime`. Must be called while the process has a single thread.
pub fn main(args: Args) -> ExitCode {
    super::init_logging();
    let code = match args.command {
        OciCommand::Run { bundle, pid_file, id } => {
            foreground::run(&RunArgs { state: args.root, bundle, pid_file, id })
        }
        OciCommand::Delete { force: _, id } => match foreground::delete(&args.root, &id, None) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("berth oci-runtime: {:#}", anyhow::Error::from(e));
                1
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}
