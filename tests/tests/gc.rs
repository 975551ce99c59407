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

    let dry = Options { grace: Duration::ZERO, delete_untagged: false, dry_run: true, retention: Default::default() };
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

/// Bytes of every file below `dir`.
fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                pending.push(e.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// A tarball of one 2 MiB file of bytes that differ with `seed`.
fn layer_tar(dir: &std::path::Path, seed: u64) -> std::path::PathBuf {
    let content = dir.join(format!("content-{seed}"));
    std::fs::create_dir_all(&content).unwrap();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..2 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(content.join("data"), bytes).unwrap();
    let tar = dir.join(format!("layer-{seed}.tar"));
    let out =
        std::process::Command::new("tar").arg("-C").arg(&content).arg("-cf").arg(&tar).arg("data").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tar
}

/// `docker push` of one tag with new layers twenty times, then a collection: the storage is
/// back to about one image's size, and `docker pull` still gets the last image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_one_tag_twenty_times_then_collection_frees_the_rest() -> anyhow::Result<()> {
    if !e2e::docker_available("docker_pushes_one_tag_twenty_times_then_collection_frees_the_rest").await? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let registry = e2e::Registry::start().await?;
    let image = format!("{}/e2e/gc-retag:latest", registry.host());
    let _cleanup = RemoveImage(image.clone());
    let mut one_image = 0;
    let mut last_id = String::new();
    for i in 0..20 {
        let tar = layer_tar(work.path(), i);
        e2e::run_ok("docker", &["import", tar.to_str().unwrap(), &image]).await?;
        e2e::run_ok("docker", &["push", &image]).await?;
        last_id = e2e::run_ok("docker", &["image", "inspect", "--format", "{{.Id}}", &image]).await?;
        if i == 0 {
            one_image = du(registry.root());
        }
    }
    let pushed = du(registry.root());
    assert!(pushed > 15 * one_image, "twenty images take {pushed} bytes, one took {one_image}");

    let storage: Arc<dyn Storage> = Arc::new(registry::storage::fs::FsStorage::new(registry.root(), false)?);
    let options =
        Options { grace: Duration::ZERO, delete_untagged: true, dry_run: false, retention: Default::default() };
    let report = registry::gc::schedule::run_once(storage, options, None).await?;
    let after = du(registry.root());
    assert!(after < one_image + one_image / 4, "after collection {after} bytes, one image took {one_image}");
    assert!(report.bytes_freed() > 19 * 2 * 1024 * 1024, "{report:?}");

    e2e::run_ok("docker", &["rmi", &image]).await?;
    e2e::run_ok("docker", &["pull", &image]).await?;
    let pulled = e2e::run_ok("docker", &["image", "inspect", "--format", "{{.Id}}", &image]).await?;
    assert_eq!(pulled, last_id, "the pulled image is not the last one pushed");
    Ok(())
}

/// Removes a local Docker image when the test ends, however it ends.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// `berth serve` with `[gc]` collects on its schedule, under the lease, while it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_collects_on_its_schedule() {
    let registry = e2e::Registry::start_with(|c| {
        c.gc.interval_secs = 1;
        c.gc.grace_secs = 0;
    })
    .await
    .unwrap();
    let storage: Arc<dyn Storage> = Arc::new(registry::storage::fs::FsStorage::new(registry.root(), false).unwrap());
    let store = Store::new(storage.clone());
    let repo = "r".parse().unwrap();
    let lonely = registry::gc::suite::push_blob(&store, &repo, b"lonely").await.unwrap();
    // Polled, with a generous deadline: the outcome does not depend on when the run happens.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.blob_size(&repo, &lonely).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the scheduled collection never removed the blob");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It took the lease, and released it.
    let names = storage.list("_gc").await.unwrap();
    assert!(names.iter().any(|n| n.starts_with("lease.")), "{names:?}");
}

/// `[[retention]]` with docker: of four tags pushed one after the other, `keep_last = 2` and
/// `keep_tags = ["v*"]` keep the last two and `v1`; `berth gc --dry-run` names the other tag
/// and the rule, the real run removes it (and its image), and `docker pull` of a kept tag
/// still works while the removed one is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_the_tags_its_rule_does_not_keep() -> anyhow::Result<()> {
    if !e2e::docker_available("retention_removes_the_tags_its_rule_does_not_keep").await? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let registry = e2e::Registry::start().await?;
    let repo = format!("{}/e2e/retention", registry.host());
    let mut cleanup = Vec::new();
    for (i, tag) in ["old", "v1", "mid", "new"].iter().enumerate() {
        let image = format!("{repo}:{tag}");
        cleanup.push(RemoveImage(image.clone()));
        let tar = layer_tar(work.path(), 100 + i as u64);
        e2e::run_ok("docker", &["import", tar.to_str().unwrap(), &image]).await?;
        e2e::run_ok("docker", &["push", &image]).await?;
    }
    let config = work.path().join("berth.toml");
    std::fs::write(
        &config,
        "[gc]\ngrace_secs = 0\ndelete_untagged = true\n\
         [[retention]]\nrepositories = [\"e2e/*\"]\nkeep_last = 2\nkeep_tags = [\"v*\"]\n",
    )?;
    let bin = e2e::berth_binary()?;
    let (bin, config, root) = (bin.to_str().unwrap(), config.to_str().unwrap(), registry.root().to_str().unwrap());
    let dry = e2e::run_ok(bin, &["gc", "--config", config, "--root", root, "--dry-run"]).await?;
    assert!(dry.contains("would remove tag old (pointing to sha256:"), "{dry}");
    assert!(dry.contains("not kept by [[retention]] rule 1: keep_last 2, keep_tags [\"v*\"]"), "{dry}");
    assert!(!dry.contains("tag mid") && !dry.contains("tag v1") && !dry.contains("tag new"), "{dry}");
    assert_eq!(e2e::list_tags(&repo).await?, ["mid", "new", "old", "v1"].map(String::from).into());

    let real = e2e::run_ok(bin, &["gc", "--config", config, "--root", root]).await?;
    assert!(real.contains("removed tag old") && real.contains("removed 1 tags, 1 manifests"), "{real}");
    assert_eq!(e2e::list_tags(&repo).await?, ["mid", "new", "v1"].map(String::from).into());
    for tag in ["old", "new"] {
        let _ = e2e::run("docker", &["rmi", "-f", &format!("{repo}:{tag}")]).await;
    }
    e2e::run_ok("docker", &["pull", &format!("{repo}:new")]).await?;
    let refused = e2e::run("docker", &["pull", &format!("{repo}:old")]).await?;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("manifest unknown") || said.contains("not found"), "{said}");
    drop(cleanup);
    Ok(())
}
