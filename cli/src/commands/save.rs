//! `berth save [-o FILE] IMAGE...` and `berth load [-i FILE]`: images of the local store to
//! and from one tar archive that `docker load` and `docker save` also read and write,
//! through `runtime::Store::save` and `runtime::Store::load`.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use runtime::{ArchiveError, StoreError};

/// Flags of `berth save`.
#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Write the archive to FILE (replaced once complete) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Images: references (busybox, ghcr.io/org/app:v1) or manifest digests.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Flags of `berth load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Read the archive from FILE instead of standard input (plain or gzip-compressed tar).
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: Option<PathBuf>,
}

fn explain(e: ArchiveError) -> anyhow::Error {
    match e {
        ArchiveError::Store(StoreError::NotFound(name)) => {
            anyhow!("no such image: {name} (nothing was written; `berth images` lists what the store holds)")
        }
        other => anyhow!(other),
    }
}

/// Runs `berth save` on the store at `root`.
pub fn save(root: &Path, args: SaveArgs) -> Result<()> {
    let store = super::open_store(root)?;
    let Some(output) = args.output else {
        if std::io::stdout().is_terminal() {
            bail!("refusing to write an archive to a terminal; pass -o FILE or redirect the output");
        }
        let mut out = BufWriter::new(std::io::stdout().lock());
        store.save(&args.images, &mut out).map_err(explain)?;
        return out.flush().context("cannot write the archive to standard output");
    };
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = output.file_name().context("-o needs a file name")?.to_string_lossy();
    let temp = dir.join(format!(".{name}.berth-{}", std::process::id()));
    let written = File::create(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))
        .and_then(|file| {
            let mut out = BufWriter::new(file);
            store.save(&args.images, &mut out).map_err(explain)?;
            let file = out.into_inner().map_err(|e| anyhow!(e.into_error()))?;
            file.sync_all().with_context(|| format!("cannot write {}", temp.display()))
        })
        .and_then(|()| std::fs::rename(&temp, &output).with_context(|| format!("cannot replace {}", output.display())));
    if written.is_err() {
        // It may not have been created.
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Runs `berth load` on the store at `root`.
pub fn load(root: &Path, args: LoadArgs) -> Result<()> {
    let store = super::open_store(root)?;
    super::init_logging();
    let records = match &args.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            store.load(file)
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("no archive on standard input; pass -i FILE or redirect one in");
            }
            store.load(std::io::stdin().lock())
        }
    }
    .map_err(anyhow::Error::from)
    .context("cannot load the archive")?;
    for record in records {
        let shown = record.image_ref().map_or_else(|_| record.reference.clone(), |r| r.familiar());
        println!("Loaded image: {shown}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saving_an_unknown_image_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.tar");
        let args = SaveArgs { output: Some(output.clone()), images: vec!["busybox".into()] };
        let err = save(&dir.path().join("store"), args).unwrap_err();
        assert!(format!("{err:#}").contains("no such image: busybox"), "{err:#}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the store is left");
        let err = load(&dir.path().join("store"), LoadArgs { input: Some(output) }).unwrap_err();
        assert!(format!("{err:#}").contains("cannot open"), "{err:#}");
    }
}
