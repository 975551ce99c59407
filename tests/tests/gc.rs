//! The collector on S3 (s3s-fs): its whole suite (`registry::gc::suite`, which also runs on
//! the filesystem), and what only S3 has: data objects behind blob links that nothing links
//! any more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::s3::S3Server;
use registry::gc::{Collector, Options};
use registry::storage::s3::S3Storage;
use registry::storage::Storage;
use registry::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collector_passes_its_suite_on_s3() {
    let server = S3Server::start().unwrap();
    let n = AtomicUsize::new(0);
    registry::gc::suite::run(|| {
        let bucket = format!("gc-suite-{}", n.fetch_add(1, Ordering::SeqCst));
        let server = &server;
        async move { Arc::new(server.bucket(&bucket).await.unwrap()) as Arc<dyn Storage> }
    })
    .await;
}

/// The keys below `_data/`.
async fn data_objects(driver: &S3Storage, bucket: &str) -> Vec<String> {
    let out = driver.client().list_objects_v2().bucket(bucket).prefix("_data/").send().await.unwrap();
    out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_objects_nothing_links_go() {
    let server = S3Server::start().unwrap();
    let driver = Arc::new(server.bucket("gc-data").await.unwrap());
    let storage: Arc<dyn Storage> = driver.clone();
    let store = Store::new(storage.clone());
    let repo = "r".parse().unwrap();
    let first = registry::gc::suite::push_blob(&store, &repo, b"first lonely blob").await.unwrap();
    registry::gc::suite::push_blob(&store, &repo, b"lonely").await.unwrap();
    // A data object whose link was never written (a process died in between).
    driver
        .client()
        .put_object()
        .bucket("gc-data")
        .key("_data/0123abcd")
        .body(b"lost".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(data_objects(&driver, "gc-data").await.len(), 3);

    let dry = Options { grace: Duration::ZERO, delete_untagged: false, dry_run: true };
    let report = Collector::new(storage.clone(), dry.clone()).run().await.unwrap();
    // The blobs' data objects are still linked: only the lost one is found.
    assert_eq!((report.own.objects, report.own.bytes), (1, 4), "{report:?}");
    assert_eq!(data_objects(&driver, "gc-data").await.len(), 3, "a dry run deletes nothing");

    let report = Collector::new(storage.clone(), Options { dry_run: false, ..dry }).run().await.unwrap();
    // Both blobs are unreferenced: their links go, then their data objects with the lost one.
    assert_eq!((report.own.objects, report.own.bytes), (3, 4 + 6 + 17), "{report:?}");
    assert_eq!(report.bytes_freed(), 6 + 17);
    assert!(data_objects(&driver, "gc-data").await.is_empty());
    assert!(store.blob_size(&repo, &first).await.is_err());
}

/// Pushes on two replicas race collections on a third, all on one bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_race_collections_on_s3() {
    let server = S3Server::start().unwrap();
    server.bucket("gc-race").await.unwrap();
    let mut replicas: Vec<Arc<dyn Storage>> = Vec::new();
    for _ in 0..3 {
        replicas.push(Arc::new(S3Storage::new(&server.config("gc-race")).await.unwrap()));
    }
    registry::gc::suite::pushes_race_collections(replicas).await;
}
