//! One module per subcommand: each parses its flags and calls a library crate.

pub mod build;
pub mod images;
pub mod login;
pub mod logs;
pub mod oci_runtime;
pub mod ps;
pub mod pull;
pub mod rm;
pub mod rmi;
pub mod robot;
pub mod run;
pub mod serve;
pub mod stop;

use std::path::Path;

use anyhow::{Context, Result};

/// Opens the image store at `root`, saying what to do when that is not possible.
pub fn open_store(root: &Path) -> Result<runtime::Store> {
    runtime::Store::open(root).with_context(|| {
        format!(
            "cannot open the image store at {} (run as root, or choose a folder you can write with --root DIR or BERTH_ROOT)",
            root.display()
        )
    })
}
