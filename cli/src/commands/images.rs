//! `berth images`: lists the local store's images as `docker images` does (REPOSITORY, TAG,
//! DIGEST, SIZE, CREATED), from `runtime::Store::images`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use runtime::progress::human_size;
use runtime::ImageRecord;

/// Flags of `berth images`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Show whole digests.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show only the manifest digests.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Runs `berth images` on the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let store = super::open_store(root)?;
    let images = store.images().context("cannot read the image index")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    print!("{}", table(&images, now, &args));
    Ok(())
}

/// The listing, one line per image under a header, columns padded as `docker images`
/// pads them.
pub fn table(images: &[ImageRecord], now: i64, args: &Args) -> String {
    let digest = |r: &ImageRecord| {
        if args.no_trunc {
            r.manifest.to_string()
        } else {
            r.manifest.hex()[..12].to_string()
        }
    };
    if args.quiet {
        return images.iter().map(|r| format!("{}\n", digest(r))).collect();
    }
    let mut rows = vec![["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"].map(String::from)];
    for r in images {
        let (repository, tag) = match r.image_ref() {
            Ok(i) => (i.familiar_name(), i.tag().map_or_else(|| "<none>".to_string(), |t| t.to_string())),
            Err(_) => (r.reference.clone(), "<none>".to_string()),
        };
        let created = r.created_unix().map_or_else(|| "N/A".to_string(), |t| ago(now.saturating_sub(t)));
        rows.push([repository, tag, digest(r), human_size(r.unpacked_size), created]);
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How long ago, in the words `docker images` uses: `5 minutes ago`, `2 weeks ago`.
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    let (minute, hour, day) = (60, 3600, 86_400);
    let text = match s {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < minute => format!("{s} seconds"),
        s if s < 2 * minute => "About a minute".to_string(),
        s if s < hour => format!("{} minutes", s / minute),
        s if s < 2 * hour => "About an hour".to_string(),
        s if s < 2 * day => format!("{} hours", s / hour),
        s if s < 14 * day => format!("{} days", s / day),
        s if s < 90 * day => format!("{} weeks", s / (7 * day)),
        s if s < 730 * day => format!("{} months", s / (30 * day)),
        s => format!("{} years", s / (365 * day)),
    };
    format!("{text} ago")
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::LayerRecord;
    use shared::manifest::Platform;
    use shared::Digest;

    fn record(reference: &str, created: Option<&str>, size: u64) -> ImageRecord {
        let d = Digest::sha256_of(reference.as_bytes());
        ImageRecord {
            reference: reference.into(),
            manifest: d.clone(),
            media_type: shared::media_type::OCI_MANIFEST.into(),
            manifest_size: 1,
            index: None,
            platform: Platform::host(),
            config: d.clone(),
            layers: vec![LayerRecord { digest: d.clone(), media_type: String::new(), size: 1, diff_id: d }],
            created: created.map(String::from),
            unpacked_size: size,
            pulled_at: 0,
        }
    }

    #[test]
    fn lists_like_docker() {
        let d = Digest::sha256_of(
            b"127.0.0.1:5000/e2e/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        let images = vec![
            record("docker.io/library/busybox:latest", Some("2024-01-01T00:00:00Z"), 4_260_000),
            record(&format!("127.0.0.1:5000/e2e/busybox@{d}"), None, 999),
        ];
        let now = 1_704_067_200 + 3 * 86_400;
        let out = table(&images, now, &Args::default());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("REPOSITORY "), "{out}");
        assert!(lines[0].ends_with("SIZE     CREATED"), "{out}");
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&first[..4], ["busybox", "latest", &images[0].manifest.hex()[..12], "4.26MB"]);
        assert_eq!(&first[4..], ["3", "days", "ago"]);
        let second: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&second[..2], ["127.0.0.1:5000/e2e/busybox", "<none>"]);
        assert_eq!(second.last(), Some(&"N/A"));
        // Columns line up.
        assert_eq!(lines[0].find("TAG"), lines[1].find("latest"));

        let quiet = table(&images, now, &Args { quiet: true, no_trunc: true });
        assert_eq!(quiet.lines().next(), Some(images[0].manifest.to_string().as_str()));
    }

    #[test]
    fn says_how_long_ago() {
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(45), "45 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(600), "10 minutes ago");
        assert_eq!(ago(5 * 3600), "5 hours ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(ago(21 * 86_400), "3 weeks ago");
        assert_eq!(ago(200 * 86_400), "6 months ago");
        assert_eq!(ago(1000 * 86_400), "2 years ago");
        assert_eq!(ago(-5), "Less than a second ago");
    }

    proptest::proptest! {
        // Listing is cheap: enough cases that a two-byte character lands on each byte the
        // old parser sliced at.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Whatever an image's config says it was created (issue 11.7: a multi-byte
        /// character where the parser sliced bytes), and whenever now is, the listing is made.
        #[test]
        fn never_panics_on_any_created_date(
            created in proptest::option::of(proptest::prop_oneof![
                "\\PC{0,40}",
                // A valid date and time, then an offset made of few characters, one of
                // them two bytes long, so that offsets of odd byte lengths come up often.
                "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9][-+Z]?[0:é]{0,5}",
            ]),
            reference in "\\PC{0,30}",
            now: i64,
            size: u64,
        ) {
            let image = record(&reference, created.as_deref(), size);
            let out = table(&[image], now, &Args::default());
            proptest::prop_assert_eq!(out.lines().count(), 2);
        }
    }
}
