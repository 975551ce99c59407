//! S3 storage against a real S3 server (s3s-fs): the driver test suite, and berth replicas
//! sharing one bucket acting as one registry — uploads moving between replicas, a replica
//! dying mid-upload, concurrent pushes, presigned redirects, and purging abandoned uploads.

use std::sync::Arc;
use std::time::Duration;

use e2e::s3::S3Server;
use registry::storage::Storage;
use shared::Digest;
use tokio::sync::oneshot;

/// A berth replica on a loopback port, stopped when dropped.
struct Replica {
    base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Replica {
    async fn start(config: registry::Config) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = registry::serve_on(listener, config, shutdown).await {
                eprintln!("replica stopped: {e}");
            }
        });
        Replica { base, stop: Some(stop) }
    }

    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn start_upload(base: &str, repo: &str) -> String {
    let r = client().post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_string()
}

async fn patch(base: &str, location: &str, start: usize, chunk: Vec<u8>) {
    let end = start + chunk.len() - 1;
    let r = client()
        .patch(format!("{base}{location}"))
        .header("content-range", format!("{start}-{end}"))
        .body(chunk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

async fn finish(base: &str, location: &str, digest: &Digest) {
    let r = client().put(format!("{base}{location}?digest={digest}")).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn get_blob(base: &str, repo: &str, digest: &Digest) -> Vec<u8> {
    let r = reqwest::get(format!("{base}/v2/{repo}/blobs/{digest}")).await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

async fn push_blob(base: &str, repo: &str, bytes: &[u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    let r =
        client().post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}")).body(bytes.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    d
}

fn manifest(config: &Digest, config_len: usize, layer: &Digest, layer_len: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_len}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{layer_len}}}]}}"#
    )
}

async fn push_manifest(base: &str, repo: &str, tag: &str, body: &str) -> reqwest::StatusCode {
    client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn driver_passes_the_storage_suite() {
    let server = S3Server::start().unwrap();
    let driver = server.bucket("suite").await.unwrap();
    registry::storage::suite::run(&driver).await;
    // The suite's sequential create-only check shows the driver sends `If-None-Match: *`.
    // The concurrent race (`suite::concurrent_create_only`) is not asserted here: s3s-fs
    // checks the condition and then writes, without a lock, so two racing writers can both
    // succeed on it (AWS S3 evaluates the condition atomically). It runs on the filesystem
    // driver, whose guarantee is berth's own.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multipart_upload_with_small_parts_and_rollback() {
    let server = S3Server::start().unwrap();
    let driver = server.bucket("multipart").await.unwrap();
    let blob = data(13 * 1024 * 1024 + 17, 7);
    let part = |b: &[u8]| -> registry::storage::ByteStream {
        use futures_util::StreamExt;
        futures_util::stream::iter(vec![Ok(bytes::Bytes::copy_from_slice(b))]).boxed()
    };
    // Chunks below S3's 5 MiB minimum are carried as a stored tail, not in memory.
    let (mut offset, mut resume) = (0usize, String::new());
    for size in [1_000_000usize, 3_000_000, 2_000_000, 7_000_000] {
        let w = driver
            .write_part("uploads/x/data", &resume, offset as u64, part(&blob[offset..offset + size]))
            .await
            .unwrap();
        assert_eq!(w.len as usize, size);
        (offset, resume) = (offset + size, w.resume);
    }
    // A write the caller never recorded (it "died" before saving its offset and resume text)
    // is rolled back by writing again from the recorded point.
    let rest = &blob[offset..];
    driver.write_part("uploads/x/data", &resume, offset as u64, part(&rest[..100])).await.unwrap();
    let w = driver.write_part("uploads/x/data", &resume, offset as u64, part(rest)).await.unwrap();
    driver.complete("uploads/x/data", &w.resume, "blobs/final").await.unwrap();
    assert_eq!(driver.read("blobs/final").await.unwrap(), blob);
    assert_eq!(driver.stat("blobs/final").await.unwrap().size, blob.len() as u64);
    let got = driver.read("blobs/final").await.unwrap();
    assert_eq!(got.len(), blob.len());
    // Nothing of the upload is left.
    let left = driver.list("uploads/x").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sized_writes_stream_their_parts_and_fail_cleanly() {
    use futures_util::StreamExt;
    let server = S3Server::start().unwrap();
    let mut config = server.config("sized");
    config.part_size_mib = 5;
    let driver = registry::storage::s3::S3Storage::new(&config).await.unwrap();
    driver.client().create_bucket().bucket("sized").send().await.unwrap();
    const MIB: usize = 1024 * 1024;
    let chunks = |b: &[u8]| -> registry::storage::ByteStream {
        futures_util::stream::iter(b.chunks(MIB / 3).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect::<Vec<_>>())
            .boxed()
    };
    let up = "uploads/x/data";
    let blob = data(12 * MIB + 3 * MIB + 8 * MIB + 9 * MIB + 6 * MIB, 8);
    let (mut offset, mut resume) = (0, String::new());
    // 12 MiB: parts of 5 and 7 MiB (no tail under S3's 5 MiB minimum); 3 MiB: a tail;
    // 8 MiB: with the tail, parts of 5 and 6 MiB.
    let sent = |op: &str| driver.request_counts().iter().find(|(k, _)| k == op).map_or(0, |(_, n)| *n);
    for (i, size) in [12 * MIB, 3 * MIB, 8 * MIB].into_iter().enumerate() {
        let body = chunks(&blob[offset..offset + size]);
        let parts = sent("UploadPart");
        let w = driver.write_part_sized(up, &resume, offset as u64, Some(size as u64), body).await.unwrap();
        assert_eq!(w.len as usize, size);
        assert_eq!(sent("UploadPart") - parts, [2, 0, 2][i], "parts of write {i}");
        (offset, resume) = (offset + size, w.resume);
        let left = driver.list("uploads/x").await.unwrap();
        // The third write leaves no tail of its own; the second's stays until the next write,
        // for a rollback of the third.
        let tails = left.iter().filter(|k| k.contains(".tail.")).count();
        assert_eq!(tails, [0, 1, 1][i], "after write {i}: {left:?}");
    }
    // A body that fails after some of its parts went out counts for nothing; a write of
    // other bytes from the same offset replaces it.
    let size = 9 * MIB;
    let cut = futures_util::stream::iter(vec![
        Ok(bytes::Bytes::from(vec![0xee; 7 * MIB])),
        Err(registry::storage::StorageError::Body("client went away".into())),
    ])
    .boxed();
    let err = driver.write_part_sized(up, &resume, offset as u64, Some(size as u64), cut).await.unwrap_err();
    assert!(matches!(err, registry::storage::StorageError::Body(_)), "{err}");
    let short = chunks(&[0xdd; 2 * MIB]);
    assert!(driver.write_part_sized(up, &resume, offset as u64, Some(size as u64), short).await.is_err());
    let body = chunks(&blob[offset..offset + size]);
    let w = driver.write_part_sized(up, &resume, offset as u64, Some(size as u64), body).await.unwrap();
    offset += size;
    // A body of unknown length: held a part at a time.
    let w = driver.write_part_sized(up, &w.resume, offset as u64, None, chunks(&blob[offset..])).await.unwrap();
    driver.complete(up, &w.resume, "blobs/sized").await.unwrap();
    assert!(driver.read("blobs/sized").await.unwrap() == blob);
    let left = driver.list("uploads/x").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_upload_alternating_between_replicas() {
    let server = S3Server::start().unwrap();
    let config = server.registry_config("alternate").await.unwrap();
    let a = Replica::start(config.clone()).await;
    let b = Replica::start(config).await;
    let blob = data(200 * 1024 * 1024, 1);
    let digest = Digest::sha256_of(&blob);
    let location = start_upload(&a.base, "big").await;
    let chunk = 16 * 1024 * 1024;
    for (i, start) in (0..blob.len()).step_by(chunk).enumerate() {
        let replica = if i % 2 == 0 { &a } else { &b };
        let end = (start + chunk).min(blob.len());
        patch(&replica.base, &location, start, blob[start..end].to_vec()).await;
    }
    finish(&a.base, &location, &digest).await;
    assert!(get_blob(&b.base, "big", &digest).await == blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_survives_the_replica_that_started_it() {
    let server = S3Server::start().unwrap();
    let config = server.registry_config("failover").await.unwrap();
    let mut a = Replica::start(config.clone()).await;
    let b = Replica::start(config).await;
    let blob = data(9 * 1024 * 1024, 2);
    let digest = Digest::sha256_of(&blob);
    let location = start_upload(&a.base, "r").await;
    patch(&a.base, &location, 0, blob[..6_000_000].to_vec()).await;
    a.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client().get(format!("{}/v2/", a.base)).send().await.is_err(), "replica a still answers");
    let status = client().get(format!("{}{location}", b.base)).send().await.unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(status.headers()["range"], "0-5999999");
    patch(&b.base, &location, 6_000_000, blob[6_000_000..].to_vec()).await;
    finish(&b.base, &location, &digest).await;
    assert!(get_blob(&b.base, "r", &digest).await == blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_push_the_same_image_concurrently() {
    let server = S3Server::start().unwrap();
    let config = server.registry_config("concurrent").await.unwrap();
    let a = Replica::start(config.clone()).await;
    let b = Replica::start(config).await;
    let layer = data(12 * 1024 * 1024, 3);
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let (ld, cd) = (Digest::sha256_of(&layer), Digest::sha256_of(&cfg));
    let body = manifest(&cd, cfg.len(), &ld, layer.len());
    let push = |base: String| {
        let (layer, cfg, body) = (layer.clone(), cfg.clone(), body.clone());
        tokio::spawn(async move {
            // Chunked, so the two uploads interleave part by part.
            let location = start_upload(&base, "app").await;
            for start in (0..layer.len()).step_by(5 * 1024 * 1024) {
                let end = (start + 5 * 1024 * 1024).min(layer.len());
                patch(&base, &location, start, layer[start..end].to_vec()).await;
            }
            finish(&base, &location, &Digest::sha256_of(&layer)).await;
            push_blob(&base, "app", &cfg).await;
            assert_eq!(push_manifest(&base, "app", "v1", &body).await, 201);
        })
    };
    let (ra, rb) = tokio::join!(push(a.base.clone()), push(b.base.clone()));
    ra.unwrap();
    rb.unwrap();
    for replica in [&a, &b] {
        assert!(get_blob(&replica.base, "app", &ld).await == layer);
        let m = reqwest::get(format!("{}/v2/app/manifests/v1", replica.base)).await.unwrap();
        assert_eq!(m.text().await.unwrap(), body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_pushed_through_one_replica_is_served_by_the_other() {
    let server = S3Server::start().unwrap();
    let config = server.registry_config("consistent").await.unwrap();
    let a = Replica::start(config.clone()).await;
    let b = Replica::start(config).await;
    let (layer, cfg) = (data(1000, 4), b"{}".to_vec());
    let (ld, cd) = (push_blob(&a.base, "r", &layer).await, push_blob(&a.base, "r", &cfg).await);
    for round in 0..5 {
        let body = manifest(&cd, cfg.len(), &ld, layer.len())
            .replace("schemaVersion\":2", &format!("schemaVersion\":2,\"annotations\":{{\"round\":\"{round}\"}}"));
        assert_eq!(push_manifest(&a.base, "r", "latest", &body).await, 201);
        let got = reqwest::get(format!("{}/v2/r/manifests/latest", b.base)).await.unwrap();
        assert_eq!(got.text().await.unwrap(), body, "round {round}");
    }
    let tags = reqwest::get(format!("{}/v2/r/tags/list", b.base)).await.unwrap().bytes().await.unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&tags).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["latest"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blob_gets_redirect_to_presigned_urls() {
    let server = S3Server::start().unwrap();
    let mut config = server.registry_config("redirect").await.unwrap();
    if let Some(s3) = config.storage.s3.as_mut() {
        s3.redirect = true;
        s3.redirect_expiry_secs = 2;
    }
    let r = Replica::start(config).await;
    let blob = data(3 * 1024 * 1024, 5);
    let digest = push_blob(&r.base, "r", &blob).await;
    let resp = client().get(format!("{}/v2/r/blobs/{digest}", r.base)).send().await.unwrap();
    assert_eq!(resp.status(), 307);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&server.endpoint()), "{location}");
    // HEAD stays on berth.
    let head = client().head(format!("{}/v2/r/blobs/{digest}", r.base)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], blob.len().to_string().as_str());
    // A client that follows redirects gets the right bytes.
    let followed = reqwest::get(format!("{}/v2/r/blobs/{digest}", r.base)).await.unwrap();
    assert_eq!(followed.status(), 200);
    assert!(followed.bytes().await.unwrap() == blob);
    // curl too.
    let out = tokio::process::Command::new("curl")
        .args(["-sSfL", &format!("{}/v2/r/blobs/{digest}", r.base)])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == blob);
    // Once expired, the URL is refused by S3.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let expired = reqwest::get(&location).await.unwrap();
    assert!(expired.status().is_client_error(), "expired URL answered {}", expired.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_uploads_are_purged() {
    let server = S3Server::start().unwrap();
    let driver: Arc<dyn Storage> = Arc::new(server.bucket("purge").await.unwrap());
    let store = registry::store::Store::new(driver.clone());
    let repo = "r".parse().unwrap();
    let up = store.start_upload(&repo, shared::Algorithm::Sha256).await.unwrap();
    let body: registry::storage::ByteStream = {
        use futures_util::StreamExt;
        futures_util::stream::iter(vec![Ok(bytes::Bytes::from(data(100_000, 6)))]).boxed()
    };
    store.append(&repo, &up.id, Some(0), Some(100_000), body).await.unwrap();
    assert_eq!(store.purge_uploads(Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.purge_uploads(Duration::from_millis(500)).await.unwrap(), 1);
    assert!(driver.list("uploads").await.unwrap().is_empty());
    assert!(store.upload_status(&repo, &up.id).await.is_err());
}

/// `berth_storage_requests_total` from a replica's `/metrics`, by operation.
/// The storage requests `/metrics` has counted so far, less those of the scrapes themselves:
/// a scrape reads the collector's run history (a listing) before it renders the counts, so
/// each scrape adds the same cost. That cost is measured by two scrapes in a row, with nothing
/// else going on, and taken away once for every scrape of `base` so far.
async fn storage_requests(base: &str) -> std::collections::BTreeMap<String, u64> {
    static SCRAPES: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let first = scrape_storage_requests(base).await;
    let second = scrape_storage_requests(base).await;
    let cost = diff(&second, &first);
    let scrapes = {
        let mut all = SCRAPES.lock().unwrap();
        let n = all.entry(base.to_string()).or_insert(0);
        *n += 2;
        *n
    };
    second.iter().map(|(k, v)| (k.clone(), v - scrapes * cost.get(k).copied().unwrap_or(0))).collect()
}

async fn scrape_storage_requests(base: &str) -> std::collections::BTreeMap<String, u64> {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("berth_storage_requests_total{operation=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(op, n)| (op.to_string(), n.trim().parse().unwrap()))
        .collect()
}

fn diff(
    after: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committing_a_blob_costs_the_same_requests_whatever_its_size_and_copies_nothing() {
    let server = S3Server::start().unwrap();
    let config = server.registry_config("requests").await.unwrap();
    let r = Replica::start(config).await;
    let mut commits = Vec::new();
    for (i, size) in [6 * 1024 * 1024, 60 * 1024 * 1024].into_iter().enumerate() {
        let blob = data(size, 10 + i as u64);
        let digest = Digest::sha256_of(&blob);
        let location = start_upload(&r.base, "r").await;
        patch(&r.base, &location, 0, blob).await;
        let before = storage_requests(&r.base).await;
        finish(&r.base, &location, &digest).await;
        commits.push(diff(&storage_requests(&r.base).await, &before));
    }
    eprintln!("S3 requests to commit a 6 MiB blob: {:?}", commits[0]);
    eprintln!("S3 requests to commit a 60 MiB blob: {:?}", commits[1]);
    assert_eq!(commits[0], commits[1], "the commit's requests depend on the blob's size");
    let total = storage_requests(&r.base).await;
    for copy in ["CopyObject", "UploadPartCopy"] {
        assert!(!total.contains_key(copy), "a {copy} was sent: {total:?}");
    }
    assert!(commits[0].values().sum::<u64>() <= 10, "{:?}", commits[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_costs_one_state_check_and_one_state_write() {
    let server = S3Server::start().unwrap();
    let config = server.registry_config("chunk-requests").await.unwrap();
    let r = Replica::start(config).await;
    let blob = data(12 * 1024 * 1024, 20);
    let location = start_upload(&r.base, "r").await;
    patch(&r.base, &location, 0, blob[..6 * 1024 * 1024].to_vec()).await;
    let before = storage_requests(&r.base).await;
    patch(&r.base, &location, 6 * 1024 * 1024, blob[6 * 1024 * 1024..].to_vec()).await;
    let chunk = diff(&storage_requests(&r.base).await, &before);
    // The session state this replica wrote is checked by its ETag (no body comes back) and
    // written once; the driver keeps no state object of its own.
    let want: std::collections::BTreeMap<String, u64> =
        [("HeadObject", 1), ("PutObject", 1), ("UploadPart", 1)].map(|(k, v)| (k.to_string(), v)).into();
    assert_eq!(chunk, want);
    finish(&r.base, &location, &Digest::sha256_of(&blob)).await;
    assert!(get_blob(&r.base, "r", &Digest::sha256_of(&blob)).await == blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remembered_small_objects_follow_other_writers() {
    let server = S3Server::start().unwrap();
    let a = server.bucket("remembered").await.unwrap();
    let b = registry::storage::s3::S3Storage::new(&server.config("remembered")).await.unwrap();
    let sent = |d: &registry::storage::s3::S3Storage, op: &str| {
        d.request_counts().iter().find(|(k, _)| k == op).map_or(0, |(_, n)| *n)
    };
    a.put("state/x", bytes::Bytes::from_static(b"one")).await.unwrap();
    let gets = sent(&a, "GetObject");
    assert_eq!(a.read("state/x").await.unwrap(), &b"one"[..]);
    assert_eq!(sent(&a, "GetObject"), gets, "a read of what this driver wrote fetched the body");
    // Another replica's write shows at once, and so does its delete.
    b.put("state/x", bytes::Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(a.read("state/x").await.unwrap(), &b"two"[..]);
    assert_eq!(b.read("state/x").await.unwrap(), &b"two"[..]);
    assert!(a.delete("state/x").await.unwrap());
    assert!(b.read("state/x").await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_digest_of_another_algorithm_is_the_clients_error() {
    // The session hashes as sha256; a sha512 digest at PUT makes the driver complete the
    // upload into a staged copy before the bytes can be checked. A mismatch found then is
    // the client's 400, and the completed upload is cleared away, not aborted.
    let server = S3Server::start().unwrap();
    let config = server.registry_config("rehash").await.unwrap();
    let driver = registry::storage::s3::S3Storage::new(&server.config("rehash")).await.unwrap();
    let r = Replica::start(config).await;
    // Bytes held as parts, and bytes held only as a tail (an upload without parts).
    for (i, size) in [6 * 1024 * 1024 + 5, 1000].into_iter().enumerate() {
        let blob = data(size, 30 + i as u64);
        let location = start_upload(&r.base, "r").await;
        patch(&r.base, &location, 0, blob.clone()).await;
        let wrong = Digest::of(shared::Algorithm::Sha512, b"other bytes");
        let resp = client().put(format!("{}{location}?digest={wrong}", r.base)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "size {size}");
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "DIGEST_INVALID", "size {size}");
        let status = client().get(format!("{}{location}", r.base)).send().await.unwrap();
        assert_eq!(status.status(), 404, "the session outlived its failed finish");
        let left = driver.list("uploads").await.unwrap();
        assert!(left.is_empty(), "size {size}: {left:?}");
        let head = client().head(format!("{}/v2/r/blobs/{wrong}", r.base)).send().await.unwrap();
        assert_eq!(head.status(), 404);
        // The right sha512 digest still stores the blob.
        let location = start_upload(&r.base, "r").await;
        patch(&r.base, &location, 0, blob.clone()).await;
        let right = Digest::of(shared::Algorithm::Sha512, &blob);
        finish(&r.base, &location, &right).await;
        assert!(get_blob(&r.base, "r", &right).await == blob);
    }
}

/// `_catalog` paging on S3: every repository exactly once for tricky names, and a page
/// sends about one listing per folder it opens, not one per repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_pages_walk_only_what_they_need() {
    let server = S3Server::start().unwrap();
    let driver = std::sync::Arc::new(server.bucket("catalog").await.unwrap());
    let counted = driver.clone();
    let lists = move || counted.request_counts().iter().find(|(k, _)| k == "ListObjectsV2").map_or(0, |(_, n)| *n);
    registry::store::catalog::check_paging(driver, lists).await;
}
