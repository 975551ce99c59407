//! The repository catalog (`GET /v2/_catalog`, spec.md "Listing Repositories"): names in
//! lexical order, a page of `n` after `last`, found by walking the repository folders only as
//! far as the page needs.
//!
//! A name may have several components, and the lexical order of full names is not a
//! depth-first walk's: `a`, `a-b`, `a/b` sort that way (`-` before `/`), but `a-b` is a
//! sibling of the folder `a` holding `a/b`. So the walk keeps a queue ordered by name of
//! folders still to open and repositories found: a folder's key is its own name, which sorts
//! before everything below it, so when a repository is the smallest key left, no folder
//! left can hold a smaller name, and it is the next name of the catalog. The walk stops once
//! the page is full (and one more name says whether more follow). Folders are listed from
//! `last` on ([`Storage::list_after`](crate::storage::Storage::list_after): on S3 the
//! listing starts after that key), so a page deep into a large catalog does not read the
//! names before it. The walk opens up to 16 folders at once (all of them smaller than any
//! repository still queued; a page no more than the names it still needs).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use futures_util::future::join_all;

use super::{Store, StoreResult, TagPage};
use crate::paths;

/// Folders the walk of the whole catalog lists at once.
const CONCURRENT_LISTS: usize = 16;

/// What the walk's queue holds, ordered by name (a folder before a repository of the same
/// name: opening the folder is what finds the repository).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Next {
    /// A folder not opened yet (below `repositories/`).
    Folder(String),
    /// A repository found.
    Repository,
}

impl Store {
    /// Every repository name, sorted.
    pub async fn repositories(&self) -> StoreResult<Vec<String>> {
        Ok(self.repository_page(None, None, |_| true).await?.tags)
    }

    /// Up to `n` repository names after `last` that `allow` lets through, in lexical order,
    /// and whether more follow.
    pub async fn repository_page(
        &self,
        n: Option<usize>,
        last: Option<&str>,
        allow: impl Fn(&str) -> bool,
    ) -> StoreResult<TagPage> {
        let mut queue: BinaryHeap<Reverse<(String, Next)>> = BinaryHeap::new();
        queue.push(Reverse((String::new(), Next::Folder(String::new()))));
        let mut found = Vec::new();
        while let Some(Reverse((name, next))) = queue.pop() {
            match next {
                Next::Repository if allow(&name) => {
                    if n.is_some_and(|n| found.len() == n) {
                        return Ok(TagPage { tags: found, more: true });
                    }
                    found.push(name);
                }
                Next::Repository => {}
                Next::Folder(folder) => {
                    // The smallest folders left: every one is opened before the next
                    // repository is taken, so no name smaller than it can still turn up.
                    // A page opens no more at once than the names it still needs (and one to
                    // say whether more follow), so it stays about as cheap as its size.
                    let batch = n.map_or(CONCURRENT_LISTS, |n| (n + 1).saturating_sub(found.len()));
                    let mut folders = vec![folder];
                    while folders.len() < batch.min(CONCURRENT_LISTS) {
                        match queue.peek() {
                            Some(Reverse((_, Next::Folder(_)))) => match queue.pop() {
                                Some(Reverse((_, Next::Folder(f)))) => folders.push(f),
                                _ => unreachable!("peeked a folder"),
                            },
                            _ => break,
                        }
                    }
                    let opened = join_all(folders.iter().map(|f| self.open(f, last))).await;
                    for entries in opened {
                        queue.extend(entries?.into_iter().map(Reverse));
                    }
                }
            }
        }
        Ok(TagPage { tags: found, more: false })
    }

    /// Lists the folder `folder` (a name, or empty for the top), queueing the repository it
    /// is (when after `last`) and its sub-folders that may hold names after `last`.
    async fn open(&self, folder: &str, last: Option<&str>) -> StoreResult<Vec<(String, Next)>> {
        let mut queue = Vec::new();
        let path = if folder.is_empty() {
            paths::REPOSITORIES.to_string()
        } else {
            format!("{}/{folder}", paths::REPOSITORIES)
        };
        // Below `folder/`, only what sorts after the rest of `last` matters.
        let prefix = if folder.is_empty() { String::new() } else { format!("{folder}/") };
        let after = last.and_then(|l| l.strip_prefix(prefix.as_str()));
        let children = match after {
            Some(after) => self.storage.list_after(&path, after).await?,
            None => self.storage.list(&path).await?,
        };
        if !folder.is_empty()
            && last.is_none_or(|l| folder > l)
            && children.iter().any(|c| c == "_manifests" || c == "_layers")
        {
            queue.push((folder.to_string(), Next::Repository));
        }
        for child in children.into_iter().filter(|c| !c.starts_with('_')) {
            let name = format!("{prefix}{child}");
            queue.push((name.clone(), Next::Folder(name)));
        }
        Ok(queue)
    }
}

/// Checks for every driver (the filesystem's unit test, S3's end-to-end test): paging through
/// a catalog of tricky names with every page size returns every repository exactly once, in
/// lexical order, and a page opens only the folders it needs. `list_calls` reads how many
/// listings the driver was asked for so far. Panics on the first failed check, as a test does.
pub async fn check_paging(storage: std::sync::Arc<dyn crate::storage::Storage>, list_calls: impl Fn() -> u64) {
    use bytes::Bytes;
    let names = [
        "a", "a-b", "a.b", "a/b", "a/b/c", "a/b-c", "a/b/c/d", "a-b/c", "a0", "ab", "a_b", "b", "x/y/z", "z9/a", "z9-1",
    ];
    let digest = shared::Digest::sha256_of(b"catalog");
    for name in names {
        let repo: shared::RepoName = name.parse().unwrap();
        storage.put(&paths::layer_link(&repo, &digest), Bytes::new()).await.unwrap();
    }
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    let store = Store::new(storage.clone());
    assert_eq!(store.repositories().await.unwrap(), sorted);
    for n in 1..=sorted.len() + 1 {
        let (mut seen, mut last): (Vec<String>, Option<String>) = (Vec::new(), None);
        loop {
            let page = store.repository_page(Some(n), last.as_deref(), |_| true).await.unwrap();
            assert!(page.tags.len() <= n);
            seen.extend(page.tags.iter().cloned());
            if !page.more {
                break;
            }
            last = page.tags.last().cloned();
            assert!(seen.len() <= sorted.len(), "n={n}: paging does not end: {seen:?}");
        }
        assert_eq!(seen, sorted, "pages of {n}");
    }
    // From any name, present or not, the rest of the catalog.
    for last in ["a", "a-", "a/b", "a/b/c/d", "a/c", "a1", "x", "x/y", "zz", "0"] {
        let rest: Vec<String> = sorted.iter().filter(|s| s.as_str() > last).cloned().collect();
        assert_eq!(store.repository_page(None, Some(last), |_| true).await.unwrap().tags, rest, "after {last}");
    }
    // Filtered, the page still holds `n` allowed names.
    let page = store.repository_page(Some(2), Some("a/b"), |r| !r.starts_with("a/")).await.unwrap();
    assert_eq!(page.tags, ["a0", "a_b"]);

    // A first page of 5 out of 300 more repositories opens about 5 folders, not 300.
    for i in 0..300 {
        let repo: shared::RepoName = format!("many/r{i:03}").parse().unwrap();
        storage.put(&paths::layer_link(&repo, &digest), Bytes::new()).await.unwrap();
    }
    let before = list_calls();
    let page = store.repository_page(Some(5), Some("b"), |_| true).await.unwrap();
    assert_eq!(page.tags, ["many/r000", "many/r001", "many/r002", "many/r003", "many/r004"]);
    let first = list_calls() - before;
    let before = list_calls();
    let page = store.repository_page(Some(5), Some("many/r200"), |_| true).await.unwrap();
    assert_eq!(page.tags, ["many/r201", "many/r202", "many/r203", "many/r204", "many/r205"]);
    let deep = list_calls() - before;
    assert!(first <= 12 && deep <= 12, "pages listed {first} and {deep} folders");
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;

    use crate::storage::fs::FsStorage;
    use crate::storage::{ByteStream, Meta, Storage, StorageError, Written};

    /// The filesystem driver, counting listings.
    struct Counting {
        inner: FsStorage,
        lists: AtomicU64,
    }

    #[async_trait]
    impl Storage for Counting {
        async fn get(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
            self.inner.get(path, range).await
        }
        async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
            self.inner.read(path).await
        }
        async fn stat(&self, path: &str) -> Result<Meta, StorageError> {
            self.inner.stat(path).await
        }
        async fn put(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
            self.inner.put(path, data).await
        }
        async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, StorageError> {
            self.inner.put_if_absent(path, data).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            self.inner.list(prefix).await
        }
        async fn delete(&self, path: &str) -> Result<bool, StorageError> {
            self.inner.delete(path).await
        }
        async fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
            self.inner.delete_all(prefix).await
        }
        async fn write_part(
            &self,
            upload: &str,
            resume: &str,
            offset: u64,
            body: ByteStream,
        ) -> Result<Written, StorageError> {
            self.inner.write_part(upload, resume, offset, body).await
        }
        async fn complete(&self, upload: &str, resume: &str, dest: &str) -> Result<(), StorageError> {
            self.inner.complete(upload, resume, dest).await
        }
        async fn abort(&self, upload: &str, resume: &str) -> Result<(), StorageError> {
            self.inner.abort(upload, resume).await
        }
    }

    #[tokio::test]
    async fn pages_return_every_repository_once_and_open_only_what_they_need() {
        let dir = tempfile::tempdir().unwrap();
        let driver = Arc::new(Counting { inner: FsStorage::new(dir.path(), false).unwrap(), lists: AtomicU64::new(0) });
        let counter = driver.clone();
        super::check_paging(driver, move || counter.lists.load(Ordering::SeqCst)).await;
    }
}
