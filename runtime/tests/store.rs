//! The image store against the fake registry: pulling (concurrently, resuming, refusing
//! bad content), listing, finding, removing with garbage collection, and flattening.

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use runtime::{PullError, PullEvent, PullOptions, Store, StoreError};
use shared::client::testing::{FakeAuth, FakeRegistry, Fault};
use shared::client::{Anonymous, Client, ClientConfig, ClientError};
use shared::{Digest, ImageRef};
use support::{add_image, layer, Layer};

fn image(registry: &FakeRegistry, name: &str) -> ImageRef {
    format!("{}/{name}", registry.host()).parse().unwrap()
}

fn client() -> Client {
    Client::new(ClientConfig::default(), Arc::new(Anonymous)).unwrap()
}

/// Records every event.
#[derive(Default)]
struct Recorder(Mutex<Vec<PullEvent>>);

impl runtime::Progress for Recorder {
    fn event(&self, event: &PullEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// The error and its causes, as `berth` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

fn tmp_is_empty(root: &Path) -> bool {
    let left: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    if !left.is_empty() {
        eprintln!("left in tmp: {left:?}");
    }
    left.is_empty()
}

#[tokio::test]
async fn pulls_lists_flattens_and_removes() {
    let registry = FakeRegistry::start(FakeAuth::Bearer(None), false).await.unwrap();
    let base = layer(&[("etc/", b""), ("etc/os-release", b"berth test"), ("bin/", b""), ("bin/tool", b"v1")]);
    let app = layer(&[("bin/", b""), ("bin/tool", b"v2"), ("app/", b""), ("app/main", b"main")]);
    let other = layer(&[("data", b"other")]);
    let digest = add_image(&registry, "team/app", "v1", &[&base, &app], None);
    add_image(&registry, "team/other", "v1", &[&base, &other], None);

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    let recorder = Recorder::default();
    let record =
        store.pull(&client(), &image(&registry, "team/app:v1"), &PullOptions::default(), &recorder).await.unwrap();
    assert_eq!(record.manifest, digest);
    assert_eq!(record.layers.len(), 2);
    assert_eq!(record.unpacked_size, "berth test".len() as u64 + 2 + 2 + 4);
    assert_eq!(record.created_unix(), Some(1_704_164_645));
    let events = recorder.0.lock().unwrap().clone();
    assert!(matches!(events.first(), Some(PullEvent::Resolving { .. })));
    assert!(matches!(events.last(), Some(PullEvent::Finished { .. })));
    assert_eq!(events.iter().filter(|e| matches!(e, PullEvent::Extracting { .. })).count(), 2);

    // Each layer is a snapshot; flattening applies them in order.
    assert_eq!(fs::read(store.snapshots().rootfs(&base.diff_id).join("bin/tool")).unwrap(), b"v1");
    assert_eq!(fs::read(store.snapshots().rootfs(&app.diff_id).join("bin/tool")).unwrap(), b"v2");
    let flat = root.path().join("flat");
    store.flatten(&record, &flat).unwrap();
    assert_eq!(fs::read(flat.join("bin/tool")).unwrap(), b"v2");
    assert_eq!(fs::read(flat.join("etc/os-release")).unwrap(), b"berth test");
    assert!(matches!(store.flatten(&record, &flat), Err(StoreError::DestinationExists(_))));

    // The second image shares the base layer: neither downloaded nor unpacked again.
    let recorder = Recorder::default();
    store.pull(&client(), &image(&registry, "team/other:v1"), &PullOptions::default(), &recorder).await.unwrap();
    assert_eq!(registry.blob_gets(&Digest::sha256_of(&base.gz)), 1);
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events.iter().filter(|e| matches!(e, PullEvent::Exists { .. })).count(), 1);
    assert_eq!(events.iter().filter(|e| matches!(e, PullEvent::Extracting { .. })).count(), 1);

    let images = store.images().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(store.find(&format!("{}/team/app:v1", registry.host())).unwrap(), vec![record.clone()]);
    assert_eq!(store.find(&digest.hex()[..12]).unwrap(), vec![record.clone()]);
    assert_eq!(store.find(&digest.to_string()).unwrap().len(), 1);
    assert!(store.find("nothing-here").unwrap().is_empty());

    // Removing one image keeps what the other uses.
    let err = store.remove(&["nothing-here".to_string(), record.reference.clone()]).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(ref n) if n == "nothing-here"), "{err}");
    assert_eq!(store.images().unwrap().len(), 2, "nothing is removed unless every name is found");
    let removed = store.remove(std::slice::from_ref(&record.reference)).unwrap();
    assert_eq!(removed.references, vec![record.reference.clone()]);
    assert_eq!(removed.collected.snapshots, vec![app.diff_id.clone()]);
    assert_eq!(removed.collected.blobs.len(), 3, "manifest, config and the app layer");
    assert!(store.snapshots().get(&base.diff_id).unwrap().is_some());
    assert!(store.content().has(&Digest::sha256_of(&base.gz)));

    let removed = store.remove(&[format!("{}/team/other:v1", registry.host())]).unwrap();
    assert_eq!(removed.collected.snapshots.len(), 2);
    assert!(store.images().unwrap().is_empty());
    assert!(store.content().list().unwrap().is_empty());
    assert!(store.snapshots().list().unwrap().is_empty());
    assert!(tmp_is_empty(&root.path().join("store")));
}

#[tokio::test]
async fn resumes_an_interrupted_pull_without_fetching_finished_layers() {
    let registry = FakeRegistry::start(FakeAuth::None, false).await.unwrap();
    let first = layer(&[("one", &[1u8; 100_000][..])]);
    let second = layer(&[("two", &[2u8; 100_000][..])]);
    add_image(&registry, "app", "v1", &[&first, &second], None);
    let second_digest = Digest::sha256_of(&second.gz);
    registry.fault(&second_digest, Fault::Truncate);

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    // One download at a time, so the first layer is complete when the second fails.
    let options = PullOptions { max_concurrent_downloads: 1, ..PullOptions::default() };
    let img = image(&registry, "app:v1");
    let err = store.pull(&client(), &img, &options, &runtime::NoProgress).await.unwrap_err();
    assert!(matches!(err, PullError::Client(ClientError::SizeMismatch { .. })), "{err}");
    assert!(store.images().unwrap().is_empty());
    assert!(!store.content().has(&second_digest));
    assert!(tmp_is_empty(root.path()));

    registry.heal(&second_digest);
    let record = store.pull(&client(), &img, &options, &runtime::NoProgress).await.unwrap();
    assert_eq!(record.layers.len(), 2);
    assert_eq!(registry.blob_gets(&Digest::sha256_of(&first.gz)), 1, "the finished layer was fetched again");
    assert_eq!(registry.blob_gets(&second_digest), 2);
}

#[tokio::test]
async fn refuses_corrupt_layers_and_leaves_nothing() {
    let registry = FakeRegistry::start(FakeAuth::None, true).await.unwrap();
    let good = layer(&[("good", b"fine")]);
    let bad = layer(&[("bad", &[9u8; 50_000][..])]);
    add_image(&registry, "app", "v1", &[&good, &bad], None);
    let bad_digest = Digest::sha256_of(&bad.gz);
    registry.fault(&bad_digest, Fault::Corrupt);

    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store
        .pull(&client(), &image(&registry, "app:v1"), &PullOptions::default(), &runtime::NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Client(ClientError::DigestMismatch { .. })), "{err}");
    assert!(!store.content().has(&bad_digest));
    assert!(store.snapshots().get(&bad.diff_id).unwrap().is_none());
    assert!(store.images().unwrap().is_empty());
    assert!(tmp_is_empty(root.path()));
    // What was fetched and verified may stay (a retry reuses it); garbage collection
    // removes it when no image wants it.
    store.collect_garbage().unwrap();
    assert!(store.content().list().unwrap().is_empty());
    assert!(store.snapshots().list().unwrap().is_empty());
}

#[tokio::test]
async fn refuses_layers_whose_content_is_not_the_configs() {
    let registry = FakeRegistry::start(FakeAuth::None, false).await.unwrap();
    let real = layer(&[("x", b"x")]);
    let claimed = Digest::sha256_of(b"some other tar");
    add_image(&registry, "app", "v1", &[&real], Some(vec![claimed.clone()]));
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store
        .pull(&client(), &image(&registry, "app:v1"), &PullOptions::default(), &runtime::NoProgress)
        .await
        .unwrap_err();
    assert!(chain(&err).contains(&claimed.to_string()), "{}", chain(&err));
    assert!(store.snapshots().list().unwrap().is_empty());
    assert!(tmp_is_empty(root.path()));

    // A config listing fewer diff IDs than there are layers is refused too.
    add_image(&registry, "app", "v2", &[&real], Some(vec![]));
    let err = store
        .pull(&client(), &image(&registry, "app:v2"), &PullOptions::default(), &runtime::NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::NotAnImage { .. }), "{err}");
}

#[tokio::test]
async fn refuses_hostile_layers_during_a_pull() {
    let registry = FakeRegistry::start(FakeAuth::None, false).await.unwrap();
    // A symlink to / and a file written through it.
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    builder.append_link(&mut h, "root", "/").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(4);
    h.set_mode(0o644);
    builder.append_data(&mut h, "root/tmp/berth-escape", &b"evil"[..]).unwrap();
    let tar = builder.into_inner().unwrap();
    let hostile = Layer { diff_id: Digest::sha256_of(&tar), gz: tar };
    add_image(&registry, "evil", "v1", &[&hostile], None);
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store
        .pull(&client(), &image(&registry, "evil:v1"), &PullOptions::default(), &runtime::NoProgress)
        .await
        .unwrap_err();
    assert!(chain(&err).contains("refusing layer entry \"root/tmp/berth-escape\""), "{}", chain(&err));
    assert!(!Path::new("/tmp/berth-escape").exists());
    assert!(store.snapshots().list().unwrap().is_empty());
    assert!(tmp_is_empty(root.path()));
}

/// A gzip layer of one GNU sparse file declaring `real_size` bytes, nearly all of them a
/// hole: some 93 bytes of blob.
fn sparse_bomb(real_size: u64) -> Layer {
    let mut h = tar::Header::new_gnu();
    h.set_path("bomb").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_mtime(0);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    gnu.sparse[0].set_offset(real_size - 1);
    gnu.sparse[0].set_length(1);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.push(b'x');
    tar.extend(std::iter::repeat_n(0u8, 511 + 1024));
    let diff_id = Digest::sha256_of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    Layer { gz: gz.finish().unwrap(), diff_id }
}

#[tokio::test]
async fn refuses_a_sparse_file_bomb_and_leaves_nothing() {
    let registry = FakeRegistry::start(FakeAuth::None, false).await.unwrap();
    let bomb = sparse_bomb(2 << 30);
    assert!(bomb.gz.len() < 128, "the bomb is {} bytes", bomb.gz.len());
    add_image(&registry, "bomb", "v1", &[&bomb], None);
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let err = store
        .pull(&client(), &image(&registry, "bomb:v1"), &PullOptions::default(), &runtime::NoProgress)
        .await
        .unwrap_err();
    let message = chain(&err);
    assert!(message.contains("refusing layer entry \"bomb\"") && message.contains("sparse"), "{message}");
    assert!(store.snapshots().list().unwrap().is_empty());
    assert!(store.images().unwrap().is_empty());
    assert!(tmp_is_empty(root.path()));
}
