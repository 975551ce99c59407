//! The `berth` binary's image commands on an empty store: what they print and how they
//! fail. (Pulling from a registry is tested end to end in `tests/tests/pull.rs`, which also
//! runs this binary.)

use std::process::Command;

fn berth(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("BERTH_ROOT")
        .output()
        .expect("run berth")
}

#[test]
fn images_on_an_empty_store_prints_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth(dir.path(), &["images"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.split_whitespace().collect::<Vec<_>>(), ["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"]);
}

#[test]
fn the_root_comes_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("from-env");
    let out = Command::new(env!("CARGO_BIN_EXE_berth")).arg("images").env("BERTH_ROOT", &root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(root.join("blobs").is_dir());
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth(dir.path(), &["rmi", "busybox"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no such image: busybox") && err.contains("berth images"), "{err}");

    let out = berth(dir.path(), &["pull", "Not/Valid"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("lowercase"));

    // Nothing listens on port 9 of localhost.
    let out = berth(dir.path(), &["pull", "127.0.0.1:9/app:v1"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot pull 127.0.0.1:9/app:v1") && err.contains("cannot connect"), "{err}");

    let out = berth(dir.path(), &["pull", "--platform", "linux", "busybox"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("os/architecture"));
}
