//! `berth ps [-a] [-q] [--no-trunc] [--filter KEY=VALUE]`: lists containers as `docker ps`
//! does (CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, NAMES), from
//! `runtime::container::Containers`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use runtime::container::{now, ContainerRecord, Containers, Status};

use super::images::ago;

/// Flags of `berth ps`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Show every container (default: only running ones).
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Show only the IDs.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Do not shorten IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show only containers that match: label=KEY, label=KEY=VALUE, name=PART, id=PREFIX
    /// (several: all must match).
    #[arg(long = "filter", short = 'f', value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
}

/// Runs `berth ps` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    for f in &args.filters {
        parse_filter(f)?;
    }
    let records = Containers::at(root).list().context("cannot read the containers")?;
    print!("{}", table(&records, now() as i64, &args));
    Ok(())
}

/// `Up 5 minutes`, `Exited (0) 3 seconds ago`, `Created`, as `docker ps` words them.
pub fn status(r: &ContainerRecord, now: i64) -> String {
    let since = |t: Option<u64>| now - t.unwrap_or(r.created) as i64;
    match r.status {
        Status::Running if r.is_running() => {
            let up = format!("Up {}", ago(since(r.started)).trim_end_matches(" ago"));
            match &r.health {
                Some(health) => format!("{up} ({})", health.status),
                None => up,
            }
        }
        Status::Created if r.is_running() => "Created".to_string(),
        Status::Created if r.shim_pid.is_none() => "Created".to_string(),
        Status::Restarting if r.is_running() => {
            format!("Restarting ({}) {}", r.exit_code.unwrap_or(0), ago(since(r.finished)))
        }
        Status::Exited | Status::Restarting if !r.is_running() => match r.exit_code {
            Some(code) => format!("Exited ({code}) {}", ago(since(r.finished))),
            None => format!("Exited {}", ago(since(r.finished))),
        },
        // The record says it runs, but its supervisor is gone (killed, or the host rebooted).
        _ => "Dead".to_string(),
    }
}

/// A `--filter`: (key, value).
fn parse_filter(text: &str) -> Result<(&str, &str)> {
    match text.split_once('=') {
        Some((key @ ("label" | "name" | "id"), value)) if !value.is_empty() => Ok((key, value)),
        _ => bail!("invalid filter {text:?}: use label=KEY, label=KEY=VALUE, name=PART or id=PREFIX"),
    }
}

/// Whether `r` matches every filter (unparsable ones match nothing).
fn matches(r: &ContainerRecord, filters: &[String]) -> bool {
    filters.iter().all(|f| match parse_filter(f) {
        Ok(("label", want)) => match want.split_once('=') {
            Some((k, v)) => r.options.labels.get(k).is_some_and(|have| have == v),
            None => r.options.labels.contains_key(want),
        },
        Ok(("name", part)) => r.name.contains(part),
        Ok(("id", prefix)) => r.id.starts_with(prefix),
        _ => false,
    })
}

/// The listing, columns padded as `docker ps` pads them.
pub fn table(records: &[ContainerRecord], now: i64, args: &Args) -> String {
    let shown: Vec<&ContainerRecord> =
        records.iter().filter(|r| (args.all || r.is_running()) && matches(r, &args.filters)).collect();
    let id = |r: &ContainerRecord| if args.no_trunc { r.id.clone() } else { r.short_id().to_string() };
    if args.quiet {
        return shown.iter().map(|r| format!("{}\n", id(r))).collect();
    }
    let mut rows = vec![["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"].map(String::from)];
    for r in shown {
        let mut command = r.command.join(" ");
        if !args.no_trunc && command.chars().count() > 20 {
            command = command.chars().take(19).collect::<String>() + "…";
        }
        rows.push([
            id(r),
            r.image.clone(),
            format!("\"{command}\""),
            ago(now - r.created as i64),
            status(r, now),
            r.name.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::container::RunOptions;
    use shared::Digest;

    fn record(status: Status, exit_code: Option<i32>) -> ContainerRecord {
        let dir = tempfile::tempdir().unwrap();
        let containers = Containers::at(dir.path());
        let mut r = containers
            .create(
                "busybox",
                "docker.io/library/busybox:latest",
                &Digest::sha256_of(b"m"),
                &RunOptions::default(),
                None,
            )
            .unwrap();
        r.status = status;
        r.exit_code = exit_code;
        r.created = 1000;
        r.finished = Some(1060);
        r.command = vec!["sh".into(), "-c".into(), "echo a long command line here".into()];
        r
    }

    #[test]
    fn lists_like_docker_ps() {
        let exited = record(Status::Exited, Some(7));
        assert_eq!(status(&exited, 1063), "Exited (7) 3 seconds ago");
        let mut dead = record(Status::Running, None);
        dead.shim_pid = Some(i32::MAX);
        assert_eq!(status(&dead, 1063), "Dead");
        let records = vec![exited.clone()];
        assert_eq!(table(&records, 1063, &Args::default()).lines().count(), 1, "only running ones by default");
        let all = table(&records, 1063, &Args { all: true, ..Args::default() });
        let lines: Vec<&str> = all.lines().collect();
        assert!(lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND"), "{all}");
        assert!(lines[1].starts_with(exited.short_id()), "{all}");
        assert!(lines[1].contains("\"sh -c echo a long c…\""), "{all}");
        assert!(lines[1].ends_with(&exited.name), "{all}");
        // Columns line up (counted in characters: the ellipsis is one).
        assert_eq!(lines[0].find("STATUS"), lines[1].replace('…', ".").find("Exited"));
        let quiet = table(&records, 1063, &Args { all: true, quiet: true, no_trunc: true, ..Args::default() });
        assert_eq!(quiet, format!("{}\n", exited.id));
    }

    #[test]
    fn filters_by_label_name_and_id() {
        let mut r = record(Status::Exited, Some(0));
        r.options.labels.insert("tier".into(), "web".into());
        let filtered = |f: &[&str]| {
            let args =
                Args { all: true, quiet: true, filters: f.iter().map(|s| s.to_string()).collect(), ..Args::default() };
            !table(std::slice::from_ref(&r), 1063, &args).is_empty()
        };
        assert!(filtered(&["label=tier"]) && filtered(&["label=tier=web"]));
        assert!(!filtered(&["label=tier=db"]) && !filtered(&["label=other"]));
        assert!(filtered(&[&format!("name={}", &r.name[..3]), &format!("id={}", &r.id[..5])]));
        assert!(!filtered(&["label=tier", "name=zzz-no"]));
        assert!(parse_filter("colour=red").is_err() && parse_filter("label=").is_err());
    }
}
