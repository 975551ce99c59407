//! The collector's test suite, run on every driver: the filesystem here, S3 (s3s-fs) from
//! the end-to-end tests. Public (not `cfg(test)`) for that reason, like
//! [`crate::storage::suite`]; it panics on the first failed check, as a test does.
//!
//! Each check takes an empty storage. Ages are real: content a check wants "old" is written
//! before a run with no grace period; the races hold a run at a [`Point`] with [`Hooks`] and
//! play a push against it, so their outcome never depends on timing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use shared::{Algorithm, Digest, Reference, RepoName};
use tokio::sync::Notify;

use super::{Collector, Hooks, Options, Point, Removed, Report};
use crate::paths;
use crate::storage::Storage;
use crate::store::{Store, StoreError};

/// Runs every check, each on a fresh storage from `fresh`.
pub async fn run<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Storage>>,
{
    unreferenced_blobs_go(fresh().await).await;
    blobs_referenced_elsewhere_stay(fresh().await).await;
    index_children_and_referrers_stay(fresh().await).await;
    untagged_manifests_per_configuration(fresh().await).await;
    revisions_of_missing_manifests_go_unless_tagged(fresh().await).await;
    grace_period_holds(fresh().await).await;
    dry_run_changes_nothing(fresh().await).await;
    race_push_touches_before_the_check(fresh().await).await;
    race_push_after_the_check_is_refused(fresh().await).await;
    race_upload_and_mount_end_with_the_blob_present(fresh().await).await;
    retention_keeps_what_its_rules_say(fresh().await).await;
    retention_spares_a_tag_pushed_again(fresh().await).await;
}

fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

fn options(grace: u64, delete_untagged: bool) -> Options {
    Options::new(Duration::from_secs(grace), delete_untagged, false)
}

/// Uploads `data` as a blob of `repo`.
pub async fn push_blob(store: &Store, repo: &RepoName, data: &[u8]) -> Result<Digest, StoreError> {
    let digest = Digest::sha256_of(data);
    let up = store.start_upload(repo, Algorithm::Sha256).await?;
    let body = futures_util::stream::iter(vec![Ok(Bytes::copy_from_slice(data))]).boxed();
    store.finish_upload(repo, &up.id, &digest, None, Some(data.len() as u64), body).await?;
    Ok(digest)
}

fn descriptor(media_type: &str, d: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": d.to_string(), "size": size })
}

/// An image manifest naming a config and layers, optionally with a subject.
fn image(config: (&Digest, usize), layers: &[(&Digest, usize)], subject: Option<(&Digest, usize)>) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.0, config.1),
        "layers": layers.iter().map(|(d, n)| descriptor("application/vnd.oci.image.layer.v1.tar", d, *n)).collect::<Vec<_>>(),
    });
    if let Some((d, n)) = subject {
        m["subject"] = descriptor("application/vnd.oci.image.manifest.v1+json", d, n);
        m["artifactType"] = "application/example.signature".into();
    }
    serde_json::to_vec(&m).unwrap()
}

/// Pushes a manifest under `reference` (a tag or the digest itself when `None`).
async fn push_manifest(store: &Store, repo: &RepoName, body: &[u8], tag: Option<&str>) -> Result<Digest, StoreError> {
    let digest = Digest::sha256_of(body);
    let reference = match tag {
        Some(t) => Reference::Tag(t.parse().unwrap()),
        None => Reference::Digest(digest.clone()),
    };
    store.put_manifest(repo, &reference, &[], None, Bytes::copy_from_slice(body)).await?;
    Ok(digest)
}

/// An image of one config and one layer, built from `seed`, pushed under `tag`: (manifest,
/// config, layer, manifest size).
async fn push_image(store: &Store, repo: &RepoName, seed: &str, tag: Option<&str>) -> (Digest, Digest, Digest, usize) {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer of {seed}").repeat(100);
    let c = push_blob(store, repo, config.as_bytes()).await.unwrap();
    let l = push_blob(store, repo, layer.as_bytes()).await.unwrap();
    let body = image((&c, config.len()), &[(&l, layer.len())], None);
    let m = push_manifest(store, repo, &body, tag).await.unwrap();
    (m, c, l, body.len())
}

async fn stored(s: &dyn Storage, d: &Digest) -> bool {
    s.stat(&paths::blob_data(d)).await.is_ok()
}

/// Whether the repository's blob reads back whole, with its digest.
pub async fn pulls(store: &Store, repo: &RepoName, d: &Digest) -> bool {
    if store.blob_size(repo, d).await.is_err() {
        return false;
    }
    let Ok(mut stream) = store.blob_stream(d, None).await else { return false };
    let mut hasher = shared::Hasher::new(d.algorithm());
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return false };
        hasher.update(&chunk);
    }
    &hasher.finish() == d
}

async fn linked(s: &dyn Storage, repo: &RepoName, d: &Digest) -> bool {
    s.stat(&paths::layer_link(repo, d)).await.is_ok()
}

async fn has_revision(s: &dyn Storage, repo: &RepoName, d: &Digest) -> bool {
    s.stat(&paths::manifest_revision(repo, d)).await.is_ok()
}

async fn collect(s: &Arc<dyn Storage>, options: Options) -> Report {
    Collector::new(s.clone(), options).run().await.unwrap()
}

/// An unreferenced blob goes, with its link; what a tag needs stays.
async fn unreferenced_blobs_go(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let a = repo("suite/a");
    let (m, c, l, _) = push_image(&store, &a, "one", Some("v1")).await;
    let lonely = push_blob(&store, &a, b"nobody needs me").await.unwrap();
    let report = collect(&s, options(0, false)).await;
    assert!(!stored(s.as_ref(), &lonely).await, "the unreferenced blob is gone");
    assert!(!linked(s.as_ref(), &a, &lonely).await, "and its link");
    assert!(report.removed.contains(&Removed::Blob { digest: lonely.clone(), size: 15 }), "{report:?}");
    assert!(report.removed.contains(&Removed::Link { repo: a.clone(), digest: lonely.clone() }));
    assert_eq!(report.bytes_freed(), 15);
    for d in [&m, &c, &l] {
        assert!(stored(s.as_ref(), d).await, "{d} stays");
    }
    assert!(pulls(&store, &a, &l).await && pulls(&store, &a, &c).await);
    assert_eq!(store.get_manifest(&a, &Reference::Tag("v1".parse().unwrap())).await.unwrap().digest, m);
    assert_eq!(store.blob_size(&a, &l).await.unwrap(), "layer of one".repeat(100).len() as u64);
    assert!(matches!(store.blob_size(&a, &lonely).await, Err(StoreError::BlobUnknown(_))));
    // A second run finds nothing more.
    let again = collect(&s, options(0, false)).await;
    assert!(again.removed.is_empty(), "{again:?}");
}

/// A blob only one repository's manifest refers to stays, in every repository linking it.
async fn blobs_referenced_elsewhere_stay(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let (_, _, l, _) = push_image(&store, &a, "shared", Some("v1")).await;
    assert!(store.mount_blob(&b, &l, Some(&a)).await.unwrap());
    let report = collect(&s, options(0, true)).await;
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(pulls(&store, &a, &l).await && pulls(&store, &b, &l).await);
}

/// An index keeps its children, and a manifest its referrers; a referrer whose subject is
/// gone goes.
async fn index_children_and_referrers_stay(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let r = repo("suite/multi");
    let (amd, _, amd_layer, amd_size) = push_image(&store, &r, "amd64", None).await;
    let (arm, _, _, arm_size) = push_image(&store, &r, "arm64", None).await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            descriptor("application/vnd.oci.image.manifest.v1+json", &amd, amd_size),
            descriptor("application/vnd.oci.image.manifest.v1+json", &arm, arm_size),
        ],
    }))
    .unwrap();
    let idx = push_manifest(&store, &r, &index, Some("latest")).await.unwrap();
    // A signature of the (untagged) amd64 image, and one of a manifest that is not there.
    let sig_config = push_blob(&store, &r, b"{}").await.unwrap();
    let sig = push_manifest(&store, &r, &image((&sig_config, 2), &[], Some((&amd, amd_size))), None).await.unwrap();
    let ghost = Digest::sha256_of(b"never pushed");
    let orphan = push_manifest(&store, &r, &image((&sig_config, 2), &[], Some((&ghost, 10))), None).await.unwrap();
    let report = collect(&s, options(0, true)).await;
    for d in [&idx, &amd, &arm, &sig] {
        assert!(has_revision(s.as_ref(), &r, d).await && stored(s.as_ref(), d).await, "{d} stays: {report:?}");
    }
    assert!(pulls(&store, &r, &amd_layer).await && pulls(&store, &r, &sig_config).await);
    assert_eq!(store.referrers(&r, &amd, None).await.unwrap().len(), 1);
    assert!(!has_revision(s.as_ref(), &r, &orphan).await, "the referrer of a missing subject goes");
    assert!(!stored(s.as_ref(), &orphan).await);
    assert!(store.referrers(&r, &ghost, None).await.unwrap().is_empty());
    assert_eq!(report.removed.iter().filter(|x| matches!(x, Removed::Manifest { .. })).count(), 1, "{report:?}");
}

/// A re-tagged image's old manifest stays without `delete_untagged`, and goes with it, with
/// the layers only it needed.
async fn untagged_manifests_per_configuration(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let r = repo("suite/u");
    let (old, old_config, old_layer, _) = push_image(&store, &r, "old", Some("t")).await;
    let (new, _, new_layer, _) = push_image(&store, &r, "new", Some("t")).await;
    let kept = collect(&s, options(0, false)).await;
    assert!(kept.removed.is_empty(), "{kept:?}");
    assert!(store.get_manifest(&r, &Reference::Digest(old.clone())).await.is_ok());
    let report = collect(&s, options(0, true)).await;
    assert!(report.removed.contains(&Removed::Manifest { repo: r.clone(), digest: old.clone() }), "{report:?}");
    assert!(matches!(store.get_manifest(&r, &Reference::Digest(old.clone())).await, Err(StoreError::ManifestUnknown)));
    for d in [&old, &old_config, &old_layer] {
        assert!(!stored(s.as_ref(), d).await, "{d} goes");
    }
    assert_eq!(store.get_manifest(&r, &Reference::Tag("t".parse().unwrap())).await.unwrap().digest, new);
    assert!(pulls(&store, &r, &new_layer).await);
}

/// A revision whose manifest bytes are gone (left by a push that outlived the grace period)
/// goes once old enough, even without `delete_untagged`; one a tag points to stays (the tag
/// is the user's to move), and a fresh one stays.
async fn revisions_of_missing_manifests_go_unless_tagged(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let r = repo("suite/m");
    let (old, ..) = push_image(&store, &r, "old", Some("t")).await;
    let (tagged, ..) = push_image(&store, &r, "new", Some("t")).await;
    let (other, ..) = push_image(&store, &r, "other", None).await;
    for d in [&old, &tagged] {
        s.delete(&paths::blob_data(d)).await.unwrap();
    }
    let fresh = collect(&s, options(3600, false)).await;
    assert!(fresh.removed.is_empty(), "{fresh:?}");
    let report = collect(&s, options(0, false)).await;
    assert!(report.removed.contains(&Removed::Manifest { repo: r.clone(), digest: old.clone() }), "{report:?}");
    let revisions = |d: &Digest| paths::manifest_revision(&r, d);
    assert!(s.read(&revisions(&old)).await.is_err(), "the revision of a missing manifest is left");
    assert!(s.read(&revisions(&tagged)).await.is_ok(), "the tagged revision went");
    // A readable untagged manifest stays without delete_untagged.
    assert!(store.get_manifest(&r, &Reference::Digest(other)).await.is_ok());
}

/// Nothing younger than the grace period goes, however unreferenced.
async fn grace_period_holds(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let r = repo("suite/g");
    push_image(&store, &r, "old", Some("t")).await;
    push_image(&store, &r, "new", Some("t")).await;
    let lonely = push_blob(&store, &r, b"just uploaded").await.unwrap();
    let report = collect(&s, options(3600, true)).await;
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(stored(s.as_ref(), &lonely).await);
}

/// Every object below `folder`, with its bytes.
async fn everything(s: &dyn Storage, folder: String) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    let mut pending = vec![folder];
    while let Some(f) = pending.pop() {
        for name in s.list(&f).await.unwrap() {
            let path = if f.is_empty() { name } else { format!("{f}/{name}") };
            match s.read(&path).await {
                Ok(bytes) => out.push((path, bytes)),
                Err(_) => pending.push(path),
            }
        }
    }
    out.sort();
    out
}

/// A dry run reports what a real one removes, and changes nothing.
async fn dry_run_changes_nothing(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let r = repo("suite/d");
    push_image(&store, &r, "old", Some("t")).await;
    push_image(&store, &r, "new", Some("t")).await;
    push_blob(&store, &r, b"lonely").await.unwrap();
    let before = everything(s.as_ref(), String::new()).await;
    let dry = collect(&s, Options { dry_run: true, ..options(0, true) }).await;
    assert_eq!(everything(s.as_ref(), String::new()).await, before, "a dry run wrote or deleted something");
    assert!(dry.dry_run && dry.removed.len() >= 5, "{dry:?}");
    let real = collect(&s, options(0, true)).await;
    let (mut a, mut b) = (dry.removed.clone(), real.removed.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(dry.bytes_freed(), real.bytes_freed());
}

/// Holds a run at one point until released, saying when it got there.
#[derive(Default)]
pub struct Pause {
    at: Option<Point>,
    reached: Notify,
    release: Notify,
    done: AtomicBool,
}

impl Pause {
    /// Holds the first batch that reaches `at`.
    pub fn at(at: Point) -> Arc<Pause> {
        Arc::new(Pause { at: Some(at), ..Pause::default() })
    }

    /// Waits until the run is held.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the run go on.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Hooks for Arc<Pause> {
    fn at(&self, point: Point) -> BoxFuture<'static, ()> {
        let me = self.clone();
        Box::pin(async move {
            if Some(point) == me.at && !me.done.swap(true, Ordering::SeqCst) {
                me.reached.notify_one();
                me.release.notified().await;
            }
        })
    }
}

/// A moment before which nothing of a race was written, yet after the setup (which is older
/// by more than the second S3 rounds times to).
fn race_start() -> SystemTime {
    SystemTime::now() - Duration::from_millis(1050)
}

/// Waits until `d`'s marker was rewritten after `since` (by a push under way).
async fn touched_since(s: &dyn Storage, d: &Digest, since: SystemTime) {
    let deadline = SystemTime::now() + Duration::from_secs(60);
    loop {
        assert!(SystemTime::now() < deadline, "the push never rewrote the marker of {d}");
        if s.stat(&paths::blob_touched(d)).await.is_ok_and(|m| m.modified >= since) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Old content for the races: an image whose layer a re-tag left unreferenced, aged past the
/// one-second grace period the races run with (S3 keeps times to the second). Returns the
/// config, the orphaned layer and its bytes.
async fn orphaned_layer(store: &Store, r: &RepoName) -> (Digest, Digest, Vec<u8>) {
    let (_, config, layer, _) = push_image(store, r, "orphan", Some("t")).await;
    push_image(store, r, "current", Some("t")).await;
    let bytes = "layer of orphan".repeat(100).into_bytes();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    (config, layer, bytes)
}

/// A run held with the orphaned layer's batch at `at`, and the point it was started.
fn held_run(s: &Arc<dyn Storage>, at: Point) -> (Arc<Pause>, tokio::task::JoinHandle<Report>) {
    let pause = Pause::at(at);
    let collector = Collector::new(s.clone(), options(1, true)).with_hooks(Arc::new(pause.clone()));
    (pause, tokio::spawn(async move { collector.run().await.unwrap() }))
}

/// A manifest push whose fence ran before the run read the evidence: the blob stays, and the
/// push succeeds.
async fn race_push_touches_before_the_check(s: Arc<dyn Storage>) {
    let store = Arc::new(Store::new(s.clone()));
    let r = repo("suite/race1");
    let (config, layer, bytes) = orphaned_layer(&store, &r).await;
    let (pause, run) = held_run(&s, Point::Doomed);
    pause.reached().await;
    let since = race_start();
    let body = image((&config, "{\"seed\":\"orphan\"}".len()), &[(&layer, bytes.len())], None);
    let push = {
        let (store, r, body) = (store.clone(), r.clone(), body.clone());
        tokio::spawn(async move { push_manifest(&store, &r, &body, Some("again")).await })
    };
    touched_since(s.as_ref(), &layer, since).await;
    pause.release();
    let report = run.await.unwrap();
    push.await.unwrap().expect("the push finds its blobs");
    assert!(report.kept_fresh >= 1, "{report:?}");
    assert!(stored(s.as_ref(), &layer).await);
    let m = store.get_manifest(&r, &Reference::Tag("again".parse().unwrap())).await.unwrap();
    assert_eq!(m.body, Bytes::from(body));
    assert!(pulls(&store, &r, &layer).await);
}

/// A manifest push whose fence ran after the run read the evidence waits for the deletions,
/// then is refused: nothing is stored pointing at the missing blob.
async fn race_push_after_the_check_is_refused(s: Arc<dyn Storage>) {
    let store = Arc::new(Store::new(s.clone()));
    let r = repo("suite/race2");
    let (config, layer, bytes) = orphaned_layer(&store, &r).await;
    let (pause, run) = held_run(&s, Point::Checked);
    pause.reached().await;
    let since = race_start();
    let body = image((&config, "{\"seed\":\"orphan\"}".len()), &[(&layer, bytes.len())], None);
    let push = {
        let (store, r) = (store.clone(), r.clone());
        tokio::spawn(async move { push_manifest(&store, &r, &body, Some("again")).await })
    };
    touched_since(s.as_ref(), &layer, since).await;
    pause.release();
    run.await.unwrap();
    let refused = push.await.unwrap();
    assert!(matches!(refused, Err(StoreError::ManifestBlobUnknown(_))), "{refused:?}");
    assert!(!stored(s.as_ref(), &layer).await);
    assert!(store.get_manifest(&r, &Reference::Tag("again".parse().unwrap())).await.is_err());
}

/// An upload of a blob being deleted, and a mount of it, racing the deletion: the upload ends
/// with the blob present, and the mount links it only if it is there.
async fn race_upload_and_mount_end_with_the_blob_present(s: Arc<dyn Storage>) {
    let store = Arc::new(Store::new(s.clone()));
    let (r, other) = (repo("suite/race3"), repo("suite/race3-other"));
    let (_, layer, bytes) = orphaned_layer(&store, &r).await;
    let (pause, run) = held_run(&s, Point::Checked);
    pause.reached().await;
    let since = race_start();
    let upload = {
        let (store, r, bytes) = (store.clone(), r.clone(), bytes.clone());
        tokio::spawn(async move { push_blob(&store, &r, &bytes).await })
    };
    touched_since(s.as_ref(), &layer, since).await;
    // The mount may fence before or after the deletion (its marker cannot be told from the
    // upload's): either way it must not leave a link to nothing.
    let mount = {
        let (store, layer, r, other) = (store.clone(), layer.clone(), r.clone(), other.clone());
        tokio::spawn(async move { store.mount_blob(&other, &layer, Some(&r)).await })
    };
    pause.release();
    run.await.unwrap();
    assert_eq!(upload.await.unwrap().unwrap(), layer);
    assert!(pulls(&store, &r, &layer).await, "the uploaded blob is present");
    // The mount went after the deletion: it found nothing, or the blob the upload stored
    // again; never a link to nothing.
    let mounted = mount.await.unwrap().unwrap();
    assert_eq!(linked(s.as_ref(), &other, &layer).await, mounted);
    if mounted {
        assert!(pulls(&store, &other, &layer).await);
    }
}

/// What a racing client pushes: an image of a config and two layers, one of them new and one
/// taken from the image it pushed before (so it refers again to a blob the collector may be
/// deleting, as a rebuild that shares a base layer does).
async fn push_racing_image(store: &Store, r: &RepoName, tag: &str, round: usize, shared: &[u8]) -> Digest {
    let config = format!("{{\"round\":{round},\"tag\":\"{tag}\"}}").into_bytes();
    let fresh = format!("fresh layer {tag} {round} ").repeat(50).into_bytes();
    for _attempt in 0..20 {
        // Like docker: blobs the registry already holds are not uploaded again.
        for blob in [&config, &fresh, &shared.to_vec()] {
            if !pulls(store, r, &Digest::sha256_of(blob)).await {
                push_blob(store, r, blob).await.unwrap();
            }
        }
        let layers = [(&Digest::sha256_of(shared), shared.len()), (&Digest::sha256_of(&fresh), fresh.len())];
        let body = image((&Digest::sha256_of(&config), config.len()), &layers, None);
        match push_manifest(store, r, &body, Some(tag)).await {
            Ok(d) => return d,
            // A blob went between its check and the manifest: push again, as a client would.
            Err(StoreError::ManifestBlobUnknown(_)) => continue,
            Err(e) => panic!("push of {r}:{tag} failed: {e}"),
        }
    }
    panic!("{r}:{tag} could not be pushed in 20 attempts");
}

/// Checks that every tag's manifest and the blobs it needs pull whole; returns their digests.
async fn needed_by_tags(store: &Store, tags: Vec<(RepoName, String)>) -> std::collections::BTreeSet<Digest> {
    let mut needed = std::collections::BTreeSet::new();
    for (r, tag) in tags {
        let m = store.get_manifest(&r, &Reference::Tag(tag.parse().unwrap())).await.unwrap();
        assert_eq!(Digest::sha256_of(&m.body), m.digest);
        let parsed = shared::manifest::Manifest::parse(&m.body, None).unwrap();
        for d in parsed.config.iter().chain(&parsed.layers) {
            assert!(pulls(store, &r, &d.digest).await, "{r}:{tag} needs {} and it does not pull", d.digest);
            needed.insert(d.digest.clone());
        }
        needed.insert(m.digest.clone());
    }
    needed
}

/// Several clients push and re-tag images continuously, on replicas of their own, while
/// another replica collects again and again (one-second grace, untagged manifests removed).
/// Afterwards every tag's manifest and every blob it needs pulls with the right digest, and a
/// last collection leaves exactly what the tags need. `replicas` are drivers on one storage
/// (at least two: the last one collects).
pub async fn pushes_race_collections(replicas: Vec<Arc<dyn Storage>>) {
    let (collector_storage, pushers) = replicas.split_last().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let collecting = {
        let (s, done) = (collector_storage.clone(), done.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) {
                Collector::new(s.clone(), options(1, true)).run().await.unwrap();
                runs += 1;
            }
            runs
        })
    };
    let clients: Vec<_> = pushers
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..2).map(move |j| (format!("race/client{i}"), format!("t{j}"), s.clone())))
        .map(|(r, tag, s)| {
            tokio::spawn(async move {
                let store = Store::new(s);
                let r = repo(&r);
                let mut shared = format!("base layer {r}:{tag} 0 ").repeat(40).into_bytes();
                for round in 0..12 {
                    push_racing_image(&store, &r, &tag, round, &shared).await;
                    if round % 4 == 3 {
                        // A new base: the old one is left to the collector.
                        shared = format!("base layer {r}:{tag} {round} ").repeat(40).into_bytes();
                    }
                }
                (r, tag)
            })
        })
        .collect();
    let mut tags = Vec::new();
    for c in clients {
        tags.push(c.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    assert!(collecting.await.unwrap() >= 1);
    let store = Store::new(collector_storage.clone());
    needed_by_tags(&store, tags.clone()).await;
    // Once the grace period is over, a collection leaves only what the tags need.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    Collector::new(collector_storage.clone(), options(1, true)).run().await.unwrap();
    let needed = needed_by_tags(&store, tags).await;
    let left: std::collections::BTreeSet<Digest> = everything(collector_storage.as_ref(), paths::BLOBS.into())
        .await
        .into_iter()
        .filter_map(|(path, _)| {
            let mut parts = path.split('/').skip(1);
            let (alg, _, hex) = (parts.next()?, parts.next()?, parts.next()?);
            format!("{alg}:{hex}").parse().ok()
        })
        .collect();
    assert_eq!(left, needed, "blobs left that no tag needs, or missing ones");
}

/// Retention rules: `ret/a` keeps its 2 latest tags and `v*`, `ret/b` what was pushed in the
/// last 3 seconds, `ret/c` (no rule) everything; the immutable `frozen` stays.
fn retention_rules() -> super::retention::Rules {
    let rule = |repo: &str, keep_last, keep_within: Option<&str>, keep_tags: &[&str]| crate::config::RetentionRule {
        repositories: vec![repo.to_string()],
        keep_last,
        keep_within: keep_within.map(str::to_string),
        keep_tags: keep_tags.iter().map(|t| t.to_string()).collect(),
    };
    super::retention::Rules {
        retention: vec![rule("ret/a", Some(2), None, &["v*"]), rule("ret/b", None, Some("3s"), &[])],
        immutable: vec![crate::config::ImmutableRule {
            repositories: vec!["ret/*".into()],
            tags: vec!["frozen".into()],
        }],
        evict: Vec::new(),
    }
}

/// Tags outside every keep setting go (a dry run only says so), with what only they needed;
/// the rest stays. Push times more than a second apart: S3 keeps them to the second.
async fn retention_keeps_what_its_rules_say(s: Arc<dyn Storage>) {
    let store = Store::new(s.clone());
    let (a, b, c) = (repo("ret/a"), repo("ret/b"), repo("ret/c"));
    let gap = Duration::from_millis(1100);
    let (old_a, _, old_layer, _) = push_image(&store, &a, "a-old", Some("old")).await;
    push_image(&store, &a, "a-frozen", Some("frozen")).await;
    let (old_b, ..) = push_image(&store, &b, "b-old", Some("old")).await;
    push_image(&store, &c, "c-old", Some("old")).await;
    tokio::time::sleep(gap).await;
    push_image(&store, &a, "a-v1", Some("v1")).await;
    tokio::time::sleep(gap).await;
    push_image(&store, &a, "a-mid", Some("mid")).await;
    tokio::time::sleep(gap).await;
    push_image(&store, &a, "a-new", Some("new")).await;
    push_image(&store, &b, "b-new", Some("new")).await;
    let retained = |dry_run| Options { retention: retention_rules(), dry_run, ..options(0, true) };
    let tags = |r: RepoName| {
        let store = &store;
        async move { store.tags(&r, None, None).await.unwrap().tags }
    };

    let dry = collect(&s, retained(true)).await;
    let untagged: Vec<(String, String, String)> = dry
        .removed
        .iter()
        .filter_map(|r| match r {
            Removed::Tag { repo, tag, rule, .. } => Some((repo.to_string(), tag.to_string(), rule.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(untagged.len(), 2, "{dry:?}");
    assert_eq!((untagged[0].0.as_str(), untagged[0].1.as_str()), ("ret/a", "old"));
    assert!(untagged[0].2.contains("rule 1") && untagged[0].2.contains("keep_last 2"), "{untagged:?}");
    assert_eq!((untagged[1].0.as_str(), untagged[1].1.as_str()), ("ret/b", "old"));
    assert!(untagged[1].2.contains("rule 2") && untagged[1].2.contains("keep_within 3s"), "{untagged:?}");
    assert!(dry.removed.contains(&Removed::Manifest { repo: a.clone(), digest: old_a.clone() }), "{dry:?}");
    assert_eq!(tags(a.clone()).await, ["frozen", "mid", "new", "old", "v1"], "a dry run removed a tag");

    let real = collect(&s, retained(false)).await;
    let (mut x, mut y) = (dry.removed.clone(), real.removed.clone());
    x.sort();
    y.sort();
    assert_eq!(x, y, "the dry run said something else");
    assert_eq!(tags(a.clone()).await, ["frozen", "mid", "new", "v1"]);
    assert_eq!(tags(b.clone()).await, ["new"]);
    assert_eq!(tags(c.clone()).await, ["old"]);
    for (r, d) in [(&a, &old_a), (&b, &old_b)] {
        assert!(matches!(store.get_manifest(r, &Reference::Digest(d.clone())).await, Err(StoreError::ManifestUnknown)));
    }
    assert!(!stored(s.as_ref(), &old_layer).await, "what only the removed tag needed goes");
    let again = collect(&s, retained(false)).await;
    assert!(again.removed.is_empty(), "{again:?}");
}

/// A tag pushed again after retention chose to remove it, before the removal, stays.
async fn retention_spares_a_tag_pushed_again(s: Arc<dyn Storage>) {
    let store = Arc::new(Store::new(s.clone()));
    let a = repo("ret/a");
    push_image(&store, &a, "first", Some("old")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    push_image(&store, &a, "second", Some("mid")).await;
    push_image(&store, &a, "third", Some("new")).await;
    let pause = Pause::at(Point::Retained);
    let options = Options { retention: retention_rules(), ..options(0, true) };
    let collector = Collector::new(s.clone(), options).with_hooks(Arc::new(pause.clone()));
    let run = tokio::spawn(async move { collector.run().await.unwrap() });
    pause.reached().await;
    // Pushed again a second later (S3 times are whole seconds): the tag's time moves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (again, ..) = push_image(&store, &a, "fourth", Some("old")).await;
    pause.release();
    let report = run.await.unwrap();
    assert!(!report.removed.iter().any(|r| matches!(r, Removed::Tag { .. })), "{report:?}");
    assert_eq!(store.resolve_tag(&a, &"old".parse().unwrap()).await.unwrap(), again);
    assert!(store.get_manifest(&a, &Reference::Tag("old".parse().unwrap())).await.is_ok());
}
