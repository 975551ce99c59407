//! `berth gc`: one garbage collection of the registry's storage, with the settings of
//! `berth serve` (file, then `BERTH_*` variables, then flags); prints what it removes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use registry::gc::{schedule, GcError, Removed, Report};
use runtime::progress::human_size;

/// How much `berth gc` lowers its CPU priority.
const GC_NICENESS: i32 = 10;

/// Flags of `berth gc`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The registry's TOML configuration file (as for `berth serve`).
    #[arg(long, short = 'c', env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder of the filesystem storage [default: ./berth-data].
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `berth gc`.
pub fn run(args: Args) -> Result<()> {
    let serve_args = super::serve::Args { config: args.config, root: args.root, ..Default::default() };
    let config = super::serve::load(&serve_args, std::env::vars())?;
    super::init_logging();
    // A collection is background work beside a serving registry: it yields the CPU to the
    // registry's requests (a niceness of 10, as `nice` gives). Threads made later inherit it.
    if let Err(e) = rustix::process::nice(GC_NICENESS) {
        tracing::debug!(error = %e, "cannot lower the collection's CPU priority");
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let report = runtime.block_on(async {
        let storage = registry::open_storage(&config).await.context("cannot open the registry's storage")?;
        let progress: Option<registry::gc::Progress> =
            std::io::stderr().is_terminal().then(|| Arc::new(show_progress) as registry::gc::Progress);
        match schedule::run_once(storage, config.gc_options(args.dry_run), progress).await {
            Err(e @ GcError::Busy { .. }) => Err(anyhow::Error::new(e)),
            other => other.context("garbage collection failed (nothing unchecked was removed; run it again)"),
        }
    });
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
    print!("{}", describe(&report?));
    Ok(())
}

/// One line of progress on the terminal, rewritten in place.
fn show_progress(step: &'static str, done: u64, total: u64) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[K{step}: {done}/{total}");
    let _ = err.flush();
}

/// What the report says, for people: by repository, then the blobs, then the totals.
pub fn describe(report: &Report) -> String {
    let verb = if report.dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for (repo, removed) in report.by_repository() {
        match repo {
            Some(repo) => out.push_str(&format!("repository {repo}:\n")),
            None => out.push_str("blobs:\n"),
        }
        for r in removed {
            let line = match r {
                Removed::Tag { tag, digest, rule, .. } => {
                    format!("  {verb} tag {tag} (pointing to {digest}): not kept by {rule}\n")
                }
                Removed::Manifest { digest, .. } => format!("  {verb} manifest {digest}\n"),
                Removed::Link { digest, .. } => format!("  {verb} link to blob {digest}\n"),
                Removed::Blob { digest, size } => format!("  {verb} blob {digest} ({})\n", human_size(*size)),
            };
            out.push_str(&line);
        }
    }
    let count = |f: fn(&Removed) -> bool| report.removed.iter().filter(|r| f(r)).count();
    out.push_str(&format!(
        "{} repositories and {} manifests looked at; {verb} {} tags, {} manifests, {} links and {} blobs: {} freed\n",
        report.repositories,
        report.manifests,
        count(|r| matches!(r, Removed::Tag { .. })),
        count(|r| matches!(r, Removed::Manifest { .. })),
        count(|r| matches!(r, Removed::Link { .. })),
        count(|r| matches!(r, Removed::Blob { .. })),
        human_size(report.bytes_freed()),
    ));
    if report.own.objects + report.own.uploads > 0 {
        out.push_str(&format!(
            "storage: {verb} {} objects nothing linked ({}) and {} abandoned multipart uploads\n",
            report.own.objects,
            human_size(report.own.bytes),
            report.own.uploads
        ));
    }
    if report.kept_fresh > 0 {
        out.push_str(&format!("kept {} candidates that pushes used during the run\n", report.kept_fresh));
    }
    out
}
