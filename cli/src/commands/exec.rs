//! `berth exec [-i] [-t] [-d] [-e K=V]... [-u USER[:GROUP]] [-w DIR] CONTAINER COMMAND...`:
//! runs one more process in a running container, as `docker exec`, through
//! `runtime::container::exec`. `main` runs it before any thread exists (the embedded runtime
//! forks from this process). Into a container of the embedded runtime it runs from the
//! sealed binary (`super::reexec_sealed`), since the process it forks is this binary until it
//! executes the command; into one of an external runtime (runc, crun) it only runs that
//! runtime's `exec`, which protects itself, and spares the re-execution.

use std::path::Path;
use std::process::ExitCode;

use runtime::container::exec::{self, ExecOptions};
use runtime::container::shim::EXIT_START_FAILED;
use runtime::container::Containers;

/// Flags of `berth exec`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep standard input open.
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Give the process a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Start the process in the background and return at once (its output is discarded).
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(long = "env", short = 'e', value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// User: name or uid, optionally with :group or :gid (from the container's /etc/passwd and /etc/group).
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory inside the container (absolute) [default: the container's].
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// The container: a name, an ID or an ID prefix.
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs `berth exec` on the store at `root`; the exit code is the command's.
pub fn main(root: &Path, args: Args) -> ExitCode {
    super::init_logging();
    let containers = Containers::at(root);
    let lookup = |k: &str| std::env::var(k).ok();
    let options = ExecOptions {
        command: args.command,
        env: args.env.iter().filter_map(|e| super::run::env_entry(e, &lookup)).collect(),
        user: args.user,
        workdir: args.workdir,
        interactive: args.interactive,
        tty: args.tty,
        detach: args.detach,
    };
    let found = containers.find(&args.container).map_err(exec::ExecError::from);
    if let Ok(record) = &found {
        if record.options.runtime.is_none() {
            // Does not return when it succeeds: the copy runs `main` again.
            if let Err(e) = super::reexec_sealed() {
                eprintln!("berth: {e:#}");
                return ExitCode::from(EXIT_START_FAILED as u8);
            }
        }
    }
    let outcome = found.and_then(|record| exec::run(&containers, &record, &options));
    match outcome {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("berth: {}", shared::error_chain(&e));
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_START_FAILED as u8))
        }
    }
}
