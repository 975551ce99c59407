//! "Never panics" property tests of layer unpacking ([`crate::unpack`]), the runtime's
//! parser of untrusted input: generated tars of hostile shapes (`..`, absolute paths, links
//! through links, whiteouts), then damaged at random bytes, plain or gzip-compressed, into a
//! temporary directory in both modes. Whatever happens, nothing appears beside the
//! destination. The `unpack` fuzz target in `fuzz/` drives the same entry point.

use std::fs;
use std::io::Write as _;

use proptest::prelude::*;
use tar::{EntryType, Header};

use crate::unpack::{unpack, UnpackMode};

/// One tar entry: kind, path, link target, content.
type Entry = (u8, String, String, Vec<u8>);

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just(".."), Just("."), Just(".wh.a"), Just(".wh..wh..opq"), Just("")],
        1..4,
    )
    .prop_map(|parts| parts.join("/"))
}

fn entry() -> impl Strategy<Value = Entry> {
    (0u8..5, path(), prop_oneof![path(), Just("/etc".to_string())], proptest::collection::vec(any::<u8>(), 0..40))
}

/// Writes entries header by header, names byte for byte (`tar::Builder` refuses `..`).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, path, link, data) in entries {
        let mut h = Header::new_gnu();
        let kind = [EntryType::Regular, EntryType::Directory, EntryType::Symlink, EntryType::Link, EntryType::Fifo]
            [usize::from(*kind)];
        let old = h.as_old_mut();
        let n = path.len().min(99);
        old.name[..n].copy_from_slice(&path.as_bytes()[..n]);
        let n = link.len().min(99);
        old.linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_mtime(1);
        let data: &[u8] = if kind == EntryType::Regular { data } else { &[] };
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn damaged_layers_never_panic_or_escape(
        entries in proptest::collection::vec(entry(), 0..6),
        damage in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
        gzip in any::<bool>(),
        flatten in any::<bool>(),
    ) {
        let mut blob = tar_of(&entries);
        for (at, byte) in &damage {
            let i = at.index(blob.len());
            blob[i] = *byte;
        }
        if gzip {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&blob).unwrap();
            blob = z.finish().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(dir.path().join("sentinel"), b"x").unwrap();
        let mode = if flatten { UnpackMode::Flatten } else { UnpackMode::Snapshot };
        let _ = unpack(blob.as_slice(), &root, mode, None);
        let mut beside: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        beside.sort();
        prop_assert_eq!(beside, ["root", "sentinel"]);
        prop_assert_eq!(fs::read(dir.path().join("sentinel")).unwrap(), b"x");
    }

    #[test]
    fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = unpack(blob.as_slice(), dir.path(), UnpackMode::Snapshot, None);
    }
}
