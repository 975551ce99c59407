//! The storage layout, drawn once. Every path the registry reads or writes is built here.
//!
//! ```text
//! blobs/<alg>/<hex[0..2]>/<hex>/data              blob bytes: layers, configs and manifests, stored
//!                                                 once for the whole registry, keyed by digest
//! blobs/<alg>/<hex[0..2]>/<hex>/touched           empty; rewritten (its modification time is what
//!                                                 counts) by every push, mount or manifest that
//!                                                 is about to refer to the digest (see [`crate::gc`])
//! repositories/<name>/                            <name> may hold several components (a/b/c);
//!                                                 a component never starts with "_", so the
//!                                                 folders below cannot clash with a name
//!     _layers/<alg>/<hex>                         empty marker: the repository holds this blob
//!     _manifests/revisions/<alg>/<hex>            the manifest's media type: the repository holds
//!                                                 this manifest
//!     _manifests/tags/<tag>                       the digest the tag points to
//!     _referrers/<hex[0..16]>/<alg>-<hex2>        referrer entry (JSON: the subject's full digest
//!                                                 and the descriptor of manifest <hex2>) of a
//!                                                 manifest whose `subject` has digest <hex>; the
//!                                                 folder is a 16-hex bucket and readers keep only
//!                                                 entries naming their exact subject
//! uploads/<id>/state                              upload session (JSON): repository, bytes received,
//!                                                 saved hash state, start time, the driver's
//!                                                 resume text for its multipart upload
//! uploads/<id>/data                               the driver's multipart upload of those bytes
//! _auth/robots/<name>                             robot account (JSON): salted SHA-256 of its
//!                                                 secret (never the secret), created, expires
//! _gc/doomed/<run>                                the digests collector run <run> is deleting
//!                                                 right now (JSON), and until when (see [`crate::gc`])
//! _gc/runs/<start>-<id>                          the record of a finished collection (JSON: when,
//!                                                 how long, what it removed; see [`crate::gc::history`])
//! _gc/lease.<n>                                   the collector's lease, generation <n> (20 digits,
//!                                                 JSON: who collects, until when); taken by a
//!                                                 create-only write of the next generation
//! _auth/token-key.pem                             the key that signs tokens when none is
//!                                                 configured: written once, create-only, so
//!                                                 every replica signs with the same key
//! _auth/ui-key                                    the key that signs the web UI's session
//!                                                 cookies and CSRF tokens (hex), written once,
//!                                                 create-only (see [`crate::hub`])
//! _mirror/fetching/<alg>-<hex>                    a replica is fetching this blob from a mirrored
//!                                                 upstream (JSON: who); created create-only,
//!                                                 rewritten while the fetch goes on, deleted after
//!                                                 it (see [`crate::mirror`])
//! ```
//!
//! Keys stay short (about 115 bytes plus the repository name): some S3-compatible servers
//! built on a filesystem turn a whole key into one file name of at most 255 bytes.
//!
//! Writes happen in an order that keeps every reader's view whole: blob bytes before any link
//! to them, a manifest's blob and revision before its referrer entry and its tag.

use shared::{Digest, RepoName, Tag};

/// The bytes of a blob.
pub fn blob_data(d: &Digest) -> String {
    format!("blobs/{}/{}/{}/data", d.algorithm(), &d.hex()[..2], d.hex())
}

/// The folder of all blobs.
pub const BLOBS: &str = "blobs";

/// The folder of one blob (its data and its touch marker).
pub fn blob_folder(d: &Digest) -> String {
    format!("blobs/{}/{}/{}", d.algorithm(), &d.hex()[..2], d.hex())
}

/// The marker whose modification time says when the digest was last about to be referred to.
pub fn blob_touched(d: &Digest) -> String {
    format!("{}/touched", blob_folder(d))
}

/// The folder of the collector's own objects.
pub const GC: &str = "_gc";

/// The folder of the digests collector runs are deleting at the moment.
pub const GC_DOOMED: &str = "_gc/doomed";

/// The digests collector run `run` is deleting at the moment.
pub fn gc_doomed(run: &str) -> String {
    format!("_gc/doomed/{run}")
}

/// The folder of the collector's run records.
pub const GC_RUNS: &str = "_gc/runs";

/// The record of one collection.
pub fn gc_run(name: &str) -> String {
    format!("_gc/runs/{name}")
}

/// Generation `n` of the collector's lease.
pub fn gc_lease(n: u64) -> String {
    format!("_gc/lease.{n:020}")
}

/// A repository's folder.
pub fn repo(name: &RepoName) -> String {
    format!("repositories/{name}")
}

/// The folder that holds every repository.
pub const REPOSITORIES: &str = "repositories";

/// The marker saying a repository holds a blob.
pub fn layer_link(name: &RepoName, d: &Digest) -> String {
    format!("repositories/{name}/_layers/{}/{}", d.algorithm(), d.hex())
}

/// The marker saying a repository holds a manifest; its content is the media type.
pub fn manifest_revision(name: &RepoName, d: &Digest) -> String {
    format!("repositories/{name}/_manifests/revisions/{}/{}", d.algorithm(), d.hex())
}

/// The folder of a repository's blob links (below it: `<alg>/<hex>`).
pub fn layers(name: &RepoName) -> String {
    format!("repositories/{name}/_layers")
}

/// The folder of a repository's manifest revisions (below it: `<alg>/<hex>`).
pub fn revisions(name: &RepoName) -> String {
    format!("repositories/{name}/_manifests/revisions")
}

/// The folder of a repository's tags.
pub fn tags(name: &RepoName) -> String {
    format!("repositories/{name}/_manifests/tags")
}

/// A tag's link; its content is a digest.
pub fn tag(name: &RepoName, tag: &Tag) -> String {
    format!("repositories/{name}/_manifests/tags/{tag}")
}

/// The folder holding the referrer entries of `subject` (and possibly of other subjects
/// whose digests start alike: entries name their subject).
pub fn referrers(name: &RepoName, subject: &Digest) -> String {
    format!("repositories/{name}/_referrers/{}", &subject.hex()[..16])
}

/// One referrer entry.
pub fn referrer(name: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!("{}/{}-{}", referrers(name, subject), referrer.algorithm(), referrer.hex())
}

/// The folder of all upload sessions.
pub const UPLOADS: &str = "uploads";

/// An upload session's folder.
pub fn upload(id: &str) -> String {
    format!("uploads/{id}")
}

/// An upload session's state.
pub fn upload_state(id: &str) -> String {
    format!("uploads/{id}/state")
}

/// An upload session's bytes (the driver's multipart upload key).
pub fn upload_data(id: &str) -> String {
    format!("uploads/{id}/data")
}

/// The folder of robot accounts.
pub const ROBOTS: &str = "_auth/robots";

/// A robot account's record.
pub fn robot(name: &str) -> String {
    format!("_auth/robots/{name}")
}

/// The token signing key generated when none is configured.
pub const TOKEN_KEY: &str = "_auth/token-key.pem";

/// The key that signs the web UI's session cookies and CSRF tokens (hex).
pub const UI_KEY: &str = "_auth/ui-key";

/// The claim of a replica fetching blob `d` from a mirrored upstream.
pub fn mirror_fetching(d: &Digest) -> String {
    format!("_mirror/fetching/{}-{}", d.algorithm(), d.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = Digest::sha256_of(b"");
        let name: RepoName = "a/b".parse().unwrap();
        assert_eq!(
            blob_data(&d),
            "blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data"
        );
        assert!(layer_link(&name, &d).starts_with("repositories/a/b/_layers/sha256/"));
        assert_eq!(tag(&name, &"v1".parse().unwrap()), "repositories/a/b/_manifests/tags/v1");
        assert_eq!(
            referrer(&name, &d, &d),
            "repositories/a/b/_referrers/e3b0c44298fc1c14/sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
