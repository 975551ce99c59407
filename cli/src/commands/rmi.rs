//! `berth rmi IMAGE...`: removes images from the local store, then the blobs and snapshots
//! no remaining image uses, through `runtime::Store::remove`.

use std::path::Path;

use anyhow::{anyhow, Result};
use runtime::StoreError;

/// Flags of `berth rmi`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images to remove: references (busybox, ghcr.io/org/app:v1) or manifest digests
    /// (as `berth images` shows them, at least 4 hex digits; a digest removes every
    /// reference to that manifest).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Runs `berth rmi` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let store = super::open_store(root)?;
    let removed = store.remove(&args.images).map_err(|e| match e {
        StoreError::NotFound(name) => {
            anyhow!("no such image: {name} (nothing was removed; `berth images` lists what the store holds)")
        }
        other => anyhow!(other).context("cannot remove the images"),
    })?;
    for reference in &removed.references {
        let shown = reference.parse::<shared::ImageRef>().map_or_else(|_| reference.clone(), |r| r.familiar());
        println!("Untagged: {shown}");
    }
    for digest in &removed.collected.blobs {
        println!("Deleted: {digest}");
    }
    for diff_id in &removed.collected.snapshots {
        println!("Deleted layer: {diff_id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_images_are_reported_and_nothing_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(dir.path(), Args { images: vec!["busybox".into()] }).unwrap_err();
        assert!(format!("{err:#}").contains("no such image: busybox"), "{err:#}");
    }
}
