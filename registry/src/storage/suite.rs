//! The one test suite every storage driver must pass; each driver's tests call [`run`].
//!
//! It is public (not `cfg(test)`) so drivers tested from other crates or test binaries (the
//! S3 driver against a real S3 server) run exactly the same checks. It panics on the first
//! failed check, as a test does; nothing in the server calls it.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{ByteStream, Storage, StorageError};

async fn collect(s: ByteStream) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    let mut s = s;
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn stream_of(parts: Vec<Result<Bytes, StorageError>>) -> ByteStream {
    futures_util::stream::iter(parts).boxed()
}

/// Runs every check against `driver`, which must start empty.
pub async fn run(driver: &dyn Storage) {
    put_get_stat(driver).await;
    ranges(driver).await;
    listing(driver).await;
    deleting(driver).await;
    create_only(driver).await;
    multipart(driver).await;
    sized_writes(driver).await;
    invalid_paths(driver).await;
}

async fn put_get_stat(d: &dyn Storage) {
    assert!(d.read("suite/missing").await.unwrap_err().is_not_found());
    assert!(d.stat("suite/missing").await.unwrap_err().is_not_found());
    assert!(d.get("suite/missing", None).await.err().unwrap().is_not_found());

    d.put("suite/a/obj", Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(d.read("suite/a/obj").await.unwrap(), &b"hello"[..]);
    assert_eq!(d.stat("suite/a/obj").await.unwrap().size, 5);
    d.put("suite/a/obj", Bytes::from_static(b"replaced")).await.unwrap();
    assert_eq!(collect(d.get("suite/a/obj", None).await.unwrap()).await.unwrap(), b"replaced");
    d.put("suite/empty", Bytes::new()).await.unwrap();
    assert_eq!(d.stat("suite/empty").await.unwrap().size, 0);

    let paths = ["suite/a/obj", "suite/missing", "suite/empty", "../x"].map(String::from);
    let stats = d.stat_many(&paths).await;
    assert_eq!(stats.len(), 4);
    assert_eq!(stats[0].as_ref().unwrap().size, 8);
    assert!(stats[1].as_ref().unwrap_err().is_not_found());
    assert_eq!(stats[2].as_ref().unwrap().size, 0);
    assert!(matches!(stats[3], Err(StorageError::InvalidPath(_))));
}

async fn ranges(d: &dyn Storage) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    d.put("suite/big", Bytes::from(data.clone())).await.unwrap();
    assert_eq!(collect(d.get("suite/big", None).await.unwrap()).await.unwrap(), data);
    for (a, b) in [(0u64, 1u64), (10, 20), (1_000_000, 2_500_000), (2_999_999, 3_000_000)] {
        let got = collect(d.get("suite/big", Some(a..b)).await.unwrap()).await.unwrap();
        assert_eq!(got, &data[a as usize..b as usize], "range {a}..{b}");
    }
}

async fn listing(d: &dyn Storage) {
    assert!(d.list("suite/nothing-here").await.unwrap().is_empty());
    let mut want = Vec::new();
    for i in 0..1100 {
        let name = format!("k{i:05}");
        d.put(&format!("suite/many/{name}"), Bytes::from_static(b"v")).await.unwrap();
        want.push(name);
    }
    d.put("suite/many/sub/deeper", Bytes::from_static(b"v")).await.unwrap();
    want.push("sub".to_string());
    want.sort();
    assert_eq!(d.list("suite/many").await.unwrap(), want);
    assert_eq!(d.list("suite/many/").await.unwrap(), want);
    assert_eq!(d.list("suite/many/sub").await.unwrap(), vec!["deeper".to_string()]);
}

async fn deleting(d: &dyn Storage) {
    d.put("suite/del/x", Bytes::from_static(b"1")).await.unwrap();
    assert!(d.delete("suite/del/x").await.unwrap());
    assert!(!d.delete("suite/del/x").await.unwrap());
    assert!(d.read("suite/del/x").await.unwrap_err().is_not_found());
    d.put("suite/tree/a/b", Bytes::from_static(b"1")).await.unwrap();
    d.put("suite/tree/c", Bytes::from_static(b"1")).await.unwrap();
    d.delete_all("suite/tree").await.unwrap();
    assert!(d.list("suite/tree").await.unwrap().is_empty());
    assert!(d.read("suite/tree/a/b").await.unwrap_err().is_not_found());
    d.delete_all("suite/never-existed").await.unwrap();
}

async fn create_only(d: &dyn Storage) {
    assert!(d.put_if_absent("suite/once", Bytes::from_static(b"first")).await.unwrap());
    assert!(!d.put_if_absent("suite/once", Bytes::from_static(b"second")).await.unwrap());
    assert_eq!(d.read("suite/once").await.unwrap(), &b"first"[..]);
}

/// Many writers race to create the same object: exactly one wins and its bytes are kept whole.
pub async fn concurrent_create_only(d: Arc<dyn Storage>) {
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(vec![i; 100_000]);
            d.put_if_absent("suite/race", body).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let got = d.read("suite/race").await.unwrap();
    assert_eq!(got.len(), 100_000);
    assert!(got.iter().all(|&b| b == got[0]));
}

async fn multipart(d: &dyn Storage) {
    let up = "suite/uploads/u1/data";
    let part1 = vec![1u8; 700_000];
    let part2 = vec![2u8; 300_000];
    let w = d.write_part(up, "", 0, stream_of(vec![Ok(Bytes::from(part1.clone()))])).await.unwrap();
    assert_eq!(w.len, 700_000);
    // Nothing is readable at the destination before completion.
    assert!(d.read("suite/blobs/b1").await.unwrap_err().is_not_found());
    // A part whose body fails counts for nothing: the next part starts at the same offset.
    let failed = d
        .write_part(
            up,
            &w.resume,
            700_000,
            stream_of(vec![Ok(Bytes::from(vec![9u8; 1000])), Err(StorageError::Body("cut".into()))]),
        )
        .await;
    assert!(failed.is_err());
    let chunks = part2.chunks(70_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let w = d.write_part(up, &w.resume, 700_000, stream_of(chunks)).await.unwrap();
    assert_eq!(w.len, 300_000);
    d.complete(up, &w.resume, "suite/blobs/b1").await.unwrap();
    let got = d.read("suite/blobs/b1").await.unwrap();
    assert_eq!(got.len(), 1_000_000);
    assert_eq!(&got[..700_000], &part1[..]);
    assert_eq!(&got[700_000..], &part2[..]);

    // An aborted upload leaves nothing behind.
    let up2 = "suite/uploads/u2/data";
    let w = d.write_part(up2, "", 0, stream_of(vec![Ok(Bytes::from_static(b"junk"))])).await.unwrap();
    d.abort(up2, &w.resume).await.unwrap();
    assert!(d.write_part(up2, &w.resume, 4, stream_of(vec![])).await.is_err());

    // An empty upload completes to an empty object.
    let up3 = "suite/uploads/u3/data";
    let w = d.write_part(up3, "", 0, stream_of(vec![])).await.unwrap();
    d.complete(up3, &w.resume, "suite/blobs/empty").await.unwrap();
    assert_eq!(d.stat("suite/blobs/empty").await.unwrap().size, 0);
}

async fn sized_writes(d: &dyn Storage) {
    let up = "suite/uploads/sized/data";
    let chunks = |data: &[u8]| stream_of(data.chunks(30_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect());
    let (a, b) = (vec![3u8; 400_000], vec![4u8; 250_000]);
    let w = d.write_part_sized(up, "", 0, Some(400_000), chunks(&a)).await.unwrap();
    assert_eq!(w.len, 400_000);
    // A body shorter or longer than announced fails, and counts for nothing.
    for wrong in [249_999, 250_001] {
        let err = d.write_part_sized(up, &w.resume, 400_000, Some(wrong), chunks(&b)).await.unwrap_err();
        assert!(matches!(err, StorageError::Body(_)), "{wrong}: {err}");
    }
    let w = d.write_part_sized(up, &w.resume, 400_000, Some(250_000), chunks(&b)).await.unwrap();
    assert_eq!(w.len, 250_000);
    let w = d.write_part_sized(up, &w.resume, 650_000, None, chunks(&b)).await.unwrap();
    assert_eq!(w.len, 250_000);
    d.complete(up, &w.resume, "suite/blobs/sized").await.unwrap();
    let got = d.read("suite/blobs/sized").await.unwrap();
    assert_eq!(got.len(), 900_000);
    assert!(got[..400_000] == a[..] && got[400_000..650_000] == b[..] && got[650_000..] == b[..]);
}

async fn invalid_paths(d: &dyn Storage) {
    for bad in ["", "../x", "a/../b", "a//b", "/abs", "a/./b"] {
        assert!(matches!(d.put(bad, Bytes::new()).await, Err(StorageError::InvalidPath(_))), "{bad:?} accepted");
    }
}
