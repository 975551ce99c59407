//! `berth gc` on a filesystem storage: what `--dry-run` prints and leaves alone, what a real
//! run removes, and the message when another collector holds the lease.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use registry::storage::fs::FsStorage;
use registry::storage::Storage;
use registry::store::Store;

fn gc(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("gc")
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("BERTH_CONFIG")
        .env("BERTH_GC__GRACE_SECS", "0")
        .output()
        .expect("run berth")
}

/// Every file below `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                pending.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_prints_and_keeps_then_a_run_removes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path(), false).unwrap());
    let store = Store::new(storage.clone());
    let repo = "team/app".parse().unwrap();
    let lonely = rt.block_on(registry::gc::suite::push_blob(&store, &repo, b"nobody needs me")).unwrap();
    let before = files(dir.path());

    let out = gc(dir.path(), &["--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("repository team/app:") && text.contains(&format!("would remove link to blob {lonely}")),
        "{text}"
    );
    assert!(text.contains(&format!("would remove blob {lonely} (15B)")), "{text}");
    assert!(text.contains("15B freed"), "{text}");
    assert_eq!(files(dir.path()), before, "a dry run changed the storage");

    let out = gc(dir.path(), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("removed blob {lonely}")), "{text}");
    assert!(rt.block_on(store.blob_size(&repo, &lonely)).is_err());
    let left = files(dir.path());
    assert!(left.iter().all(|f| f.starts_with("_gc/")), "only the released lease is left: {left:?}");
}

#[test]
fn a_held_lease_says_another_collector_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path(), false).unwrap());
    let _held = rt
        .block_on(registry::gc::lease::acquire(
            storage,
            "replica-a",
            Duration::from_secs(300),
            registry::gc::CLOCK_SKEW,
        ))
        .unwrap();
    let out = gc(dir.path(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("another collector (replica-a) is running; try again after it finishes"), "{err}");
    // A dry run needs no lease.
    assert!(gc(dir.path(), &["--dry-run"]).status.success());
}
