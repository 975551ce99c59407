//! `berth inspect [--type image|container] NAME...`: prints images and containers as a JSON
//! array shaped like `docker inspect`'s, through `runtime::Store::inspect_image` and
//! `runtime::Store::inspect_container`. Without `--type`, a container of that name or ID is shown,
//! else an image.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use runtime::container::{ContainerError, Containers};
use runtime::network::Networks;
use runtime::{InspectError, StoreError};

/// Flags of `berth inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only look for this kind of object.
    #[arg(long = "type", value_name = "image|container", value_parser = ["image", "container"])]
    pub kind: Option<String>,
    /// Containers (names, IDs, ID prefixes) or images (references, manifest digests).
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// Runs `berth inspect` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let store = super::open_store(root)?;
    let containers = Containers::at(root);
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        if args.kind.as_deref() != Some("image") {
            match containers.find(name) {
                Ok(record) => {
                    let mut value =
                        store.inspect_container(&record).with_context(|| format!("cannot inspect {name}"))?;
                    value["NetworkSettings"] = runtime::network::settings(&Networks::at(root), &record);
                    out.push(value);
                    continue;
                }
                Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(anyhow!(e).context(format!("cannot inspect {name}"))),
            }
        }
        if args.kind.as_deref() == Some("container") {
            missing.push(name.clone());
            continue;
        }
        match store.inspect_image(name) {
            Ok(image) => out.push(image),
            Err(InspectError::Store(StoreError::NotFound(_))) => missing.push(name.clone()),
            Err(e) => return Err(anyhow!(e).context(format!("cannot inspect {name}"))),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out).context("cannot print the result")?);
    if !missing.is_empty() {
        bail!("no such object: {} (`berth ps -a` lists containers, `berth images` images)", missing.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args { kind: None, names: vec!["nothing".into()] };
        let err = run(dir.path(), args).unwrap_err();
        assert!(format!("{err:#}").contains("no such object: nothing"), "{err:#}");
    }
}
