//! The S3 driver's memory of small objects and their ETags (see the module doc of
//! [`super`]): a re-read costs a `HeadObject`, and the bytes are fetched again only when the
//! object changed.

use std::collections::HashMap;

use bytes::Bytes;

/// The largest object whose bytes are remembered with its ETag.
const SMALL_OBJECT: usize = 64 * 1024;
/// The most bytes of small objects remembered at once; past it, all are forgotten.
const SMALL_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Small objects remembered with their ETags (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct SmallObjects {
    /// Key → (ETag, bytes).
    pub(super) entries: HashMap<String, (String, Bytes)>,
    /// The bytes of all entries.
    bytes: usize,
}

impl SmallObjects {
    /// Remembers `data` as the object at `key` with `etag`, when it is small enough.
    pub(super) fn insert(&mut self, key: &str, etag: Option<&str>, data: &Bytes) {
        self.remove(key);
        let Some(etag) = etag.filter(|_| data.len() <= SMALL_OBJECT) else { return };
        if self.bytes + data.len() > SMALL_CACHE_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += data.len();
        self.entries.insert(key.to_string(), (etag.to_string(), data.clone()));
    }

    pub(super) fn remove(&mut self, key: &str) {
        if let Some((_, data)) = self.entries.remove(key) {
            self.bytes -= data.len();
        }
    }

    pub(super) fn remove_all(&mut self, keys: &[String]) {
        keys.iter().for_each(|k| self.remove(k));
    }
}
