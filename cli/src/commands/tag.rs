//! `berth tag SOURCE TARGET`: names an image of the local store anew, through
//! `runtime::Store::tag`, as `docker tag` does.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use runtime::StoreError;
use shared::ImageRef;

/// Flags of `berth tag`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: a reference (busybox, ghcr.io/org/app:v1) or a manifest digest (at least 4
    /// hex digits, as `berth images` shows it).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new name: [HOST[:PORT]/]NAME[:TAG]; it replaces whatever image it named before.
    #[arg(value_name = "TARGET")]
    pub target: String,
}

/// Runs `berth tag` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let target: ImageRef = args
        .target
        .parse()
        .with_context(|| format!("{} is not an image name ([HOST[:PORT]/]NAME[:TAG])", args.target))?;
    if target.digest().is_some() {
        return Err(anyhow!("{}: a tag cannot hold a digest; name the target NAME[:TAG]", args.target));
    }
    let store = super::open_store(root)?;
    store.tag(&args.source, &target).map_err(|e| match e {
        StoreError::NotFound(name) => anyhow!("no such image: {name} (`berth images` lists what the store holds)"),
        other => anyhow!(other).context(format!("cannot tag {} as {}", args.source, args.target)),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_sources_and_digest_targets_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let args = |target: &str| Args { source: "busybox".into(), target: target.into() };
        let err = run(dir.path(), args("copy:v1")).unwrap_err();
        assert!(format!("{err:#}").contains("no such image: busybox"), "{err:#}");
        let digest = format!("copy@{}", shared::Digest::sha256_of(b"x"));
        let err = run(dir.path(), args(&digest)).unwrap_err();
        assert!(format!("{err:#}").contains("cannot hold a digest"), "{err:#}");
    }
}
