//! ADD's local archives: which source files ADD extracts, and the tar stream inside them.
//!
//! As Docker (moby's `archive.DetectCompression`, then Go's `tar.Reader.Next`): a file is an
//! archive when its first bytes name a compression ADD knows — gzip, bzip2, xz, zstd — or
//! none, and what that decompresses to starts with a tar header whose checksum is right
//! (ustar, GNU, pax or old V7). Identity is by content, never by name: a `.tar.gz` holding
//! text is copied as it is, and a tar named `data.bin` is extracted. A stream that fails to
//! decompress within its first block is not an archive either.
//!
//! [`crate::build`]'s COPY/ADD step calls [`is_archive`] while it computes the step's key and
//! [`open`] when it extracts on a miss. gzip, zstd and plain tar decode through
//! [`runtime::unpack::decompress`] (the layer decoders); bzip2 and xz, which OCI layers never
//! use, are decoded here.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use runtime::unpack;

/// The size of a tar block, and so of a tar header.
const BLOCK: usize = 512;

/// A compression ADD recognises, by the stream's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No compression recognised: maybe a plain tar.
    Plain,
    /// gzip (`1f 8b 08`).
    Gzip,
    /// bzip2 (`BZh`).
    Bzip2,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Format {
    /// The compression whose magic bytes `head` starts with (Docker's list).
    pub fn detect(head: &[u8]) -> Format {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Format::Gzip
        } else if head.starts_with(b"BZh") {
            Format::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Format::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Zstd
        } else {
            Format::Plain
        }
    }
}

/// `reader` decompressed by the format its first bytes name (the bytes as they are for
/// [`Format::Plain`]). Concatenated streams (`pigz`, `pbzip2`, `xz` appended to) are read
/// to the end.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<(Format, Box<dyn Read + 'a>)> {
    let format = Format::detect(reader.fill_buf()?);
    let stream: Box<dyn Read + 'a> = match format {
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
        Format::Xz => Box::new(lzma_rust2::XzReader::new(reader, true)),
        Format::Plain | Format::Gzip | Format::Zstd => unpack::decompress(reader)?,
    };
    Ok((format, stream))
}

/// An archive ADD extracts, opened.
pub struct Archive {
    /// The tar stream, decompressed, from its first block.
    pub stream: Box<dyn Read>,
    /// The archive's own root directory (`./`), when its first entry is that (as `tar -C DIR
    /// .` makes): Docker gives its owner and mode to the directory it extracts into.
    pub root: Option<RootDir>,
}

/// The metadata of an archive's `./` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootDir {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since 1970.
    pub mtime: u64,
}

/// The tar stream of the archive at `path`, decompressed; `None` when the file is not an
/// archive ADD extracts. Errors are those of opening or reading the file itself.
pub fn open(path: &Path) -> io::Result<Option<Archive>> {
    let file = File::open(path)?;
    let (_, mut stream) = decompress(BufReader::new(file))?;
    let mut header = [0u8; BLOCK];
    let mut got = 0;
    while got < BLOCK {
        match stream.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Not decodable: not an archive, as Docker copies such files as they are.
            Err(_) => return Ok(None),
        }
    }
    if got < BLOCK || !is_tar_header(&header) {
        return Ok(None);
    }
    let root = root_dir(&header);
    Ok(Some(Archive { stream: Box::new(Cursor::new(header).chain(stream)), root }))
}

/// The `./` directory entry whose header `block` is, if it is one.
fn root_dir(block: &[u8; BLOCK]) -> Option<RootDir> {
    let h = tar::Header::from_byte_slice(block);
    let path = h.path_bytes();
    let is_root = path.split(|b| *b == b'/').all(|part| part.is_empty() || part == b".");
    if !is_root || !h.entry_type().is_dir() {
        return None;
    }
    Some(RootDir { mode: h.mode().ok()? & 0o7777, uid: h.uid().ok()?, gid: h.gid().ok()?, mtime: h.mtime().ok()? })
}

/// True when the file at `path` is an archive ADD extracts (see the module docs).
pub fn is_archive(path: &Path) -> io::Result<bool> {
    Ok(open(path)?.is_some())
}

/// True when `block` is a tar header: its checksum field, octal, is the sum of the block's
/// bytes with that field counted as spaces, unsigned or signed (Go's and GNU tar's test). An
/// all-zero block (an empty archive's end) is not.
pub fn is_tar_header(block: &[u8; BLOCK]) -> bool {
    let field = &block[148..156];
    let text: Vec<u8> = field.iter().copied().filter(|b| *b != 0 && *b != b' ').collect();
    let Ok(text) = std::str::from_utf8(&text) else { return false };
    let Ok(want) = i64::from_str_radix(text, 8) else { return false };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    want == unsigned || want == signed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/archive").join(name)
    }

    /// The fixtures' tar: `./hello.txt`, `./d/f`, `./d/big.txt` (made with the system's
    /// `tar`, then `bzip2` and `xz`; `two-streams.*` compress its two halves separately).
    fn entries(mut stream: Box<dyn Read>) -> Vec<(String, String)> {
        let mut archive = tar::Archive::new(&mut stream);
        let mut out = Vec::new();
        for e in archive.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut text = String::new();
            e.read_to_string(&mut text).expect("content");
            out.push((name, text));
        }
        out
    }

    fn has_fixture_files(found: &[(String, String)]) {
        let get = |n: &str| found.iter().find(|(name, _)| name == n).map(|(_, t)| t.as_str());
        assert_eq!(get("./hello.txt"), Some("hello\n"), "{found:?}");
        assert_eq!(get("./d/f"), Some("inner\n"), "{found:?}");
        assert!(get("./d/big.txt").is_some_and(|t| t.len() > 4000), "{found:?}");
        assert!(get("./d/").is_some(), "{found:?}");
    }

    #[test]
    fn detects_each_format_by_magic_bytes() {
        assert_eq!(Format::detect(&[0x1f, 0x8b, 0x08, 0]), Format::Gzip);
        assert_eq!(Format::detect(b"BZh91AY&SY"), Format::Bzip2);
        assert_eq!(Format::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]), Format::Xz);
        assert_eq!(Format::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Format::Zstd);
        assert_eq!(Format::detect(b"hello"), Format::Plain);
        assert_eq!(Format::detect(b""), Format::Plain);
        assert_eq!(Format::detect(b"BZ"), Format::Plain);
    }

    #[test]
    fn bzip2_and_xz_archives_from_the_system_tools_extract() {
        for name in ["a.tar.bz2", "a.tar.xz", "two-streams.tar.bz2", "two-streams.tar.xz", "v7-sha256.tar.xz"] {
            let archive = open(&data(name)).expect("open").unwrap_or_else(|| panic!("{name} is an archive"));
            let root = archive.root.unwrap_or_else(|| panic!("{name} has ./"));
            assert_eq!((root.mode, root.uid, root.gid, root.mtime), (0o755, 0, 0, 1_600_000_000), "{name}");
            let found = entries(archive.stream);
            has_fixture_files(&found);
            assert_eq!(found.len(), 5, "{name}: {found:?}");
        }
    }

    #[test]
    fn compressed_files_that_hold_no_tar_are_not_archives() {
        for name in ["text.bz2", "text.xz"] {
            assert!(!is_archive(&data(name)).expect("read"), "{name}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // Right magic, broken stream.
        for (name, bytes) in [
            ("broken.xz", vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3]),
            ("broken.bz2", b"BZh9garbage".to_vec()),
            ("empty", Vec::new()),
            ("zeros.tar", vec![0; 1024]),
            ("text.tar", b"just text\n".repeat(100)),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            assert!(!is_archive(&path).expect("read"), "{name}");
        }
    }

    #[test]
    fn every_format_identifies_by_content_not_name() {
        // One tar, written by the tar crate, in each of the five forms, under a name that
        // says nothing.
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, "x", &b"xyz"[..]).expect("append");
        let tar = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).expect("bzip2");
        let bz = bz.finish().expect("bzip2");
        let zst = ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
        let xz = std::fs::read(data("a.tar.xz")).expect("fixture");
        let dir = tempfile::tempdir().expect("tempdir");
        for (i, bytes) in [tar.clone(), gz, bz, zst, xz].into_iter().enumerate() {
            let path = dir.path().join(format!("blob{i}.txt"));
            std::fs::write(&path, &bytes).expect("write");
            let archive = open(&path).expect("open").unwrap_or_else(|| panic!("form {i} is an archive"));
            // The tar crate's archive starts with `x`, not `./`.
            assert_eq!(archive.root.is_some(), i == 4, "form {i}");
            assert!(!entries(archive.stream).is_empty(), "form {i}");
        }
    }

    #[test]
    fn tar_header_checksums_are_checked() {
        let mut h = tar::Header::new_gnu();
        h.set_path("a").expect("path");
        h.set_size(0);
        h.set_cksum();
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(h.as_bytes());
        assert!(is_tar_header(&block));
        block[0] ^= 1;
        assert!(!is_tar_header(&block));
        assert!(!is_tar_header(&[0; BLOCK]));
    }
}
