//! `berth logs [-f] CONTAINER`: prints what a detached container wrote (stdout and stderr,
//! in the order written), following it while it runs with `-f`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use runtime::container::{shim, Containers};

/// Flags of `berth logs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep printing new output until the container stops.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The container: name, ID or ID prefix.
    pub container: String,
}

/// Runs `berth logs` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let containers = Containers::at(root);
    let record = containers.find(&args.container)?;
    let path = shim::log_path(&containers, &record);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        // A container run in the foreground has no log.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n > 0 {
            out.write_all(&buf[..n]).context("cannot write the log")?;
            continue;
        }
        out.flush().context("cannot write the log")?;
        if !args.follow {
            return Ok(());
        }
        match containers.load(&record.id) {
            Ok(r) if r.is_running() => std::thread::sleep(Duration::from_millis(100)),
            // Stopped: print what was written last, then end.
            _ => {
                io::copy(&mut file, &mut out).context("cannot write the log")?;
                return Ok(());
            }
        }
    }
}
