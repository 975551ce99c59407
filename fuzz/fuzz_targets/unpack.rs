//! Layer unpacking into a fresh temporary directory (the first byte picks the mode). Nothing
//! may appear beside the destination. Run with TMPDIR on a small tmpfs (see README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::unpack::{unpack, UnpackMode};

fuzz_target!(|data: &[u8]| {
    let Some((mode, blob)) = data.split_first() else { return };
    let mode = if mode & 1 == 0 { UnpackMode::Snapshot } else { UnpackMode::Flatten };
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path().join("root");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let _ = unpack(blob, &root, mode, None);
    let beside: Vec<_> = std::fs::read_dir(dir.path()).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
    assert_eq!(beside, ["root"], "unpacking wrote beside its destination");
});
