//! Runs every conformance check of the `conformance` library, each in its own repository,
//! against an in-process berth registry started per test on a free port over a temporary
//! folder.
//!
//! With `BERTH_CONFORMANCE_URL` set (say `http://127.0.0.1:5000`), the checks run against that
//! registry instead; `BERTH_CONFORMANCE_REPO` names the namespace the test repositories are
//! created under (default `conformance`). Repository names end in a random suffix, so runs
//! never collide and can be repeated against a long-lived registry. Credentials go in the URL
//! (`http://user:password@127.0.0.1:5000`): the checks then answer Basic and Bearer challenges.
//!
//! Every check runs three times in-process: on filesystem storage, on S3 storage (module
//! `s3`), and with access control on (module `auth`: an htpasswd user allowed everything,
//! Docker's token flow).

use conformance::{discovery, fixtures, management, pull, push, CheckError};
use tokio::sync::oneshot;

/// The registry one test runs against, and the repository it may use.
struct Target {
    base: String,
    repo: String,
    /// The in-process server, stopped when the target is dropped; `None` for an external URL.
    _server: Option<Server>,
    /// The S3 server behind the in-process registry, for the S3 variants.
    _s3: Option<e2e::s3::S3Server>,
    /// The htpasswd file of the auth variants.
    _auth: Option<tempfile::TempDir>,
}

/// An in-process registry: its storage folder and the handle that stops it.
struct Server {
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Target {
    /// True when the tests run against `BERTH_CONFORMANCE_URL` rather than in-process.
    fn external() -> bool {
        std::env::var_os("BERTH_CONFORMANCE_URL").is_some()
    }

    /// A target for the test `name`, with the default in-process configuration.
    async fn start(name: &str) -> Target {
        Target::start_with(name, |_| {}).await
    }

    /// A target for the test `name`; `configure` adjusts the in-process server's settings.
    async fn start_with(name: &str, configure: impl FnOnce(&mut registry::Config)) -> Target {
        let suffix = fixtures::random_hex(8);
        let test = name.replace('_', "-");
        if let Ok(base) = std::env::var("BERTH_CONFORMANCE_URL") {
            let namespace = std::env::var("BERTH_CONFORMANCE_REPO").unwrap_or_else(|_| "conformance".into());
            return Target {
                base,
                repo: format!("{namespace}/{test}-{suffix}"),
                _server: None,
                _s3: None,
                _auth: None,
            };
        }
        e2e::init_logging();
        let dir = tempfile::tempdir().expect("create a storage folder");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let addr = listener.local_addr().expect("read the bound address");
        let mut config = registry::Config::default();
        config.storage.filesystem.root = dir.path().to_path_buf();
        config.storage.filesystem.fsync = false;
        config.limits.chunk_min_length = 0;
        config.uploads.purge_interval_secs = 0;
        configure(&mut config);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = registry::serve_on(listener, config, shutdown).await {
                eprintln!("the in-process registry stopped: {e}");
            }
        });
        Target {
            base: format!("http://{addr}"),
            repo: format!("conformance/{test}-{suffix}"),
            _server: Some(Server { _dir: dir, stop: Some(stop) }),
            _s3: None,
            _auth: None,
        }
    }

    /// A target for the test `name` whose in-process registry has access control on: one
    /// htpasswd user allowed everything, whose credentials go in the base URL, so every
    /// request passes through the Bearer challenge and the token endpoint.
    async fn start_auth(name: &str) -> Target {
        if Target::external() {
            return Target::start(name).await;
        }
        use registry::config::{Action, AuthConfig, Rule, Subject};
        let dir = tempfile::tempdir().expect("create a folder for the htpasswd file");
        let password = fixtures::random_hex(16);
        let hash = registry::auth::accounts::hash_password(&password, 4).expect("hash the password");
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("conformance:{hash}\n")).expect("write the htpasswd file");
        let auth = AuthConfig {
            htpasswd: Some(htpasswd),
            rules: vec![Rule {
                repositories: vec!["*".into()],
                actions: vec![Action::All],
                who: vec![Subject::User("conformance".into())],
            }],
            ..AuthConfig::default()
        };
        let mut target = Target::start_with(name, |c| c.auth = Some(auth)).await;
        target.base = target.base.replacen("http://", &format!("http://conformance:{password}@"), 1);
        target._auth = Some(dir);
        target
    }

    /// A target for the test `name` whose in-process registry stores into a bucket of a real
    /// S3 server (s3s-fs) started for the test.
    async fn start_s3(name: &str) -> Target {
        if Target::external() {
            return Target::start(name).await;
        }
        let s3 = e2e::s3::S3Server::start().expect("start the S3 server (s3s-fs)");
        // Short bucket and repository names: s3s-fs keeps each object's metadata in a file
        // named after the bucket and key, so keys must stay under about 160 bytes there
        // (real S3 takes 1024).
        let bucket = format!("c{}", fixtures::random_hex(8));
        let s3_config = s3.registry_config(&bucket).await.expect("create the bucket");
        let mut target = Target::start_with(name, |c| c.storage.s3 = s3_config.storage.s3.clone()).await;
        target.repo = format!("s3/{}", fixtures::random_hex(8));
        target._s3 = Some(s3);
        target
    }
}

/// Fails the test with the check's full report.
fn report(result: Result<(), CheckError>) {
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// One test per check that takes a base URL and a repository, on filesystem storage, and
/// the same checks again in the module `s3` on S3 storage and in the module `auth` with
/// access control on.
macro_rules! checks {
    ($($test:ident => $check:path;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let target = Target::start(stringify!($test)).await;
                report($check(&target.base, &target.repo).await);
            }
        )*

        /// Every check again, with the registry on S3 storage (a real S3 server, s3s-fs).
        mod s3 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let target = Target::start_s3(stringify!($test)).await;
                    report($check(&target.base, &target.repo).await);
                }
            )*
        }

        /// Every check again, with access control on and the test user's credentials.
        mod auth {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    let target = Target::start_auth(stringify!($test)).await;
                    report($check(&target.base, &target.repo).await);
                }
            )*
        }
    };
}

checks! {
    pull_manifest_by_tag_and_digest => pull::manifest_by_tag_and_digest;
    pull_blob_get_and_head => pull::blob_get_and_head;
    pull_blob_range => pull::blob_range;
    pull_missing_content_is_404 => pull::missing_content_is_404;
    pull_content_scoped_to_repository => pull::content_scoped_to_repository;

    push_blob_post_then_put => push::blob_post_then_put;
    push_blob_single_post => push::blob_single_post;
    push_blob_chunked => push::blob_chunked;
    push_blob_chunked_final_chunk_in_put => push::blob_chunked_final_chunk_in_put;
    push_blob_streamed => push::blob_streamed;
    push_upload_status => push::upload_status;
    push_chunk_out_of_order => push::chunk_out_of_order;
    push_upload_cancel => push::upload_cancel;
    push_upload_unknown => push::upload_unknown;
    push_mount_from_other_repo => push::mount_from_other_repo;
    push_mount_fallback => push::mount_fallback;
    push_blob_digest_mismatch => push::blob_digest_mismatch;
    push_blob_empty_and_repush => push::blob_empty_and_repush;
    push_manifest_media_types => push::manifest_media_types;
    push_tag_update => push::tag_update;
    push_manifest_content_type_parameters => push::manifest_content_type_parameters;
    push_endpoint_words_in_names_and_tags => push::endpoint_words_in_names_and_tags;
    push_manifest_put_by_digest => push::manifest_put_by_digest;
    push_manifest_digest_mismatch => push::manifest_digest_mismatch;
    push_manifest_blob_unknown => push::manifest_blob_unknown;
    push_index_child_unknown => push::index_child_unknown;
    push_manifest_invalid => push::manifest_invalid;
    push_manifest_size_limit => push::manifest_size_limit;
    push_manifest_with_subject => push::manifest_with_subject;
    push_tag_invalid => push::tag_invalid;
    push_name_invalid => push::name_invalid;

    discovery_tags_list => discovery::tags_list;
    discovery_tags_pagination => discovery::tags_pagination;
    discovery_tags_invalid_n => discovery::tags_invalid_n;
    discovery_tags_unknown_repository => discovery::tags_unknown_repository;
    discovery_catalog => discovery::catalog;
    discovery_referrers_list => discovery::referrers_list;
    discovery_referrers_filter => discovery::referrers_filter;
    discovery_referrers_empty_and_invalid => discovery::referrers_empty_and_invalid;

    management_delete_tag => management::delete_tag;
    management_delete_manifest => management::delete_manifest;
    management_delete_blob => management::delete_blob;
    management_delete_referrer => management::delete_referrer;
}

/// sha512 content, on filesystem storage only: with sha512 digests (128 hex characters) the
/// storage keys grow past what s3s-fs, the S3 server the tests use, can store (it keeps each
/// object's metadata in one file named after the key, so about 160 bytes), while real S3
/// takes keys of 1024 bytes. Digests are handled above the storage driver, so nothing about
/// sha512 differs between drivers; the S3 driver itself passes the driver suite.
#[tokio::test]
async fn push_blob_sha512() {
    let target = Target::start("push_blob_sha512").await;
    report(push::blob_sha512(&target.base, &target.repo).await);
}

/// See [`push_blob_sha512`] for why this runs on filesystem storage only.
#[tokio::test]
async fn push_manifest_put_by_sha512_digest() {
    let target = Target::start("push_manifest_put_by_sha512_digest").await;
    report(push::manifest_put_by_sha512_digest(&target.base, &target.repo).await);
}

#[tokio::test]
async fn pull_api_version() {
    let target = Target::start("pull_api_version").await;
    report(pull::api_version(&target.base).await);
}

/// A registry configured with a minimum chunk size advertises it on `POST` and takes chunks
/// of that size. Against an external registry the configured minimum is unknown, so this
/// test only runs in-process.
#[tokio::test]
async fn push_chunk_min_length() {
    if Target::external() {
        eprintln!("skipped: the minimum chunk size of an external registry is not known");
        return;
    }
    const MIN: u64 = 4096;
    let target = Target::start_with("push_chunk_min_length", |c| c.limits.chunk_min_length = MIN).await;
    report(push::chunk_min_length(&target.base, &target.repo, MIN).await);
}

/// The check library catches a registry that misbehaves: a server that answers every
/// request with 200 and an empty body fails a representative check of each workflow.
#[tokio::test]
async fn checks_fail_against_a_wrong_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let base = format!("http://{}", listener.local_addr().expect("read the bound address"));
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    let repo = "conformance/wrong";
    assert!(pull::api_version(&base).await.is_err(), "api_version passed without the version header");
    assert!(pull::blob_get_and_head(&base, repo).await.is_err());
    assert!(push::blob_post_then_put(&base, repo).await.is_err());
    assert!(discovery::tags_list(&base, repo).await.is_err());
    assert!(management::delete_blob(&base, repo).await.is_err());
}
