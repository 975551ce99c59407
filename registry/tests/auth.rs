//! Access control, driven through the router in-process: the Bearer challenge and token flow
//! (GET with basic auth, and the OAuth2 POST form with refresh tokens), basic auth on the API,
//! rules for users, robots, groups and anonymous callers, the filtered catalog, the failed-login
//! limit, external token servers, and every denial the issue lists, each with its status and
//! error code and nothing stored. One test captures the whole log and looks for secrets in it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use registry::auth::accounts::{create_robot, hash_password, revoke_robot};
use registry::auth::jwt::{Audience, Claims, ResourceActions, SigningKey};
use registry::storage::fs::FsStorage;
use serde_json::{json, Value};
use shared::Digest;
use tower::ServiceExt;

const RULES: &str = r#"
[auth.groups]
builders = ["robot:ci", "user:carol"]

[[auth.rules]]
repositories = ["library/*"]
actions = ["pull"]
who = ["anonymous"]

[[auth.rules]]
repositories = ["team-a/*"]
actions = ["pull", "push", "delete"]
who = ["user:alice", "group:builders"]

[[auth.rules]]
repositories = ["team-a/*"]
actions = ["pull"]
who = ["user:bob"]

[[auth.rules]]
repositories = ["*"]
actions = ["*"]
who = ["user:admin"]
"#;

/// Users and passwords of the htpasswd file.
const USERS: &[(&str, &str)] =
    &[("alice", "alice-secret-1"), ("bob", "bob-secret-2"), ("carol", "carol-secret-3"), ("admin", "admin-secret-4")];

struct Reg {
    dir: tempfile::TempDir,
    htpasswd: PathBuf,
    app: Router,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[track_caller]
    fn expect(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.code(), code, "body: {}", String::from_utf8_lossy(&self.body));
        self
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let lines: Vec<String> = users.iter().map(|(u, p)| format!("{u}:{}", hash_password(p, 4).unwrap())).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

impl Reg {
    /// A registry with the users above and `RULES`, plus `extra` lines in `[auth]`.
    async fn new(extra: &str) -> Reg {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        write_htpasswd(&htpasswd, USERS);
        let data = dir.path().join("data");
        let text = format!(
            "[storage.filesystem]\nroot = {:?}\nfsync = false\n[auth]\nhtpasswd = {:?}\nrobot_cache_secs = 0\n{extra}\n{RULES}",
            data.display().to_string(),
            htpasswd.display().to_string()
        );
        let config: registry::Config = toml::from_str(&text).unwrap();
        let app = registry::router(config).await.unwrap();
        let app = app.layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
        Reg { dir, htpasswd, app }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn storage(&self) -> FsStorage {
        FsStorage::new(self.data(), false).unwrap()
    }

    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri).header("host", "registry.test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self.app.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, body }
    }

    async fn get(&self, uri: &str, auth: Option<&str>) -> Reply {
        match auth {
            Some(a) => self.send("GET", uri, &[("authorization", a)], Body::empty()).await,
            None => self.send("GET", uri, &[], Body::empty()).await,
        }
    }

    /// A token from `GET /token` for `scopes`, with basic credentials when given.
    async fn token(&self, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let mut uri = "/token?service=berth".to_string();
        for s in scopes {
            uri.push_str(&format!("&scope={s}"));
        }
        let auth = creds.map(|(u, p)| basic(u, p));
        let r = self.get(&uri, auth.as_deref()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["token"], v["access_token"]);
        assert_eq!(v["expires_in"], 300);
        v["token"].as_str().unwrap().to_string()
    }

    /// Pushes a fresh config blob and a manifest naming it to `repo:tag`; returns both
    /// statuses with their error codes, and the blob's digest.
    async fn push(&self, repo: &str, tag: &str, auth: Option<&str>) -> (Reply, Reply, Digest) {
        let config = format!("{{\"nonce\":\"{}\"}}", rand_hex());
        let digest = Digest::sha256_of(config.as_bytes());
        let mut headers = vec![];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let blob =
            self.send("POST", &format!("/v2/{repo}/blobs/uploads/?digest={digest}"), &headers, config.clone()).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.to_string(), "size": config.len() },
            "layers": [],
        })
        .to_string();
        headers.push(("content-type", "application/vnd.oci.image.manifest.v1+json"));
        let put = self.send("PUT", &format!("/v2/{repo}/manifests/{tag}"), &headers, manifest).await;
        (blob, put, digest)
    }

    /// Nothing of `repo` nor the blob `digest` is stored.
    #[track_caller]
    fn assert_not_stored(&self, repo: &str, digest: &Digest) {
        let repo_dir = self.data().join("repositories").join(repo);
        assert!(!repo_dir.exists(), "{} exists", repo_dir.display());
        let blob = self.data().join(format!("blobs/sha256/{}/{}", &digest.hex()[..2], digest.hex()));
        assert!(!blob.exists(), "{} exists", blob.display());
    }

    fn signing_key(&self) -> SigningKey {
        SigningKey::from_pem(&std::fs::read(self.data().join("_auth/token-key.pem")).unwrap()).unwrap()
    }
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    for x in &mut b {
        *x = rand::random();
    }
    hex::encode(b)
}

/// The claims of a token (unverified: for looking).
fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn claims(sub: &str, access: &[(&str, &[&str])], exp: i64) -> Claims {
    Claims {
        iss: "berth".into(),
        sub: sub.into(),
        aud: Audience::One("berth".into()),
        exp,
        nbf: None,
        iat: None,
        jti: None,
        access: access
            .iter()
            .map(|(name, actions)| ResourceActions {
                kind: "repository".into(),
                name: name.to_string(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
        credential: None,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn unauthenticated_requests_get_the_bearer_challenge() {
    let reg = Reg::new("").await;
    let r = reg.get("/v2/", None).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(r.header("www-authenticate"), r#"Bearer realm="http://registry.test/token",service="berth""#);

    let r = reg.get("/v2/team-a/app/manifests/v1", None).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        r#"Bearer realm="http://registry.test/token",service="berth",scope="repository:team-a/app:pull""#
    );
    assert_eq!(
        r.json()["errors"][0]["detail"][0],
        json!({"Type": "repository", "Name": "team-a/app", "Action": "pull"})
    );

    let (blob, _, digest) = reg.push("team-a/app", "v1", None).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(blob.header("www-authenticate").ends_with(r#"scope="repository:team-a/app:pull,push""#));
    reg.assert_not_stored("team-a/app", &digest);

    let r = reg.send("DELETE", "/v2/team-a/app/manifests/v1", &[], Body::empty()).await;
    assert!(r.header("www-authenticate").ends_with(r#"scope="repository:team-a/app:delete""#));
    let r = reg.get("/v2/_catalog", None).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(r.header("www-authenticate").ends_with(r#"scope="registry:catalog:*""#));

    // Paths the handlers refuse by themselves are answered as without auth; the rest of the
    // server is open.
    reg.get("/v2/Bad/manifests/v1", None).await.expect(StatusCode::BAD_REQUEST, "NAME_INVALID");
    assert_eq!(reg.get("/healthz", None).await.status, StatusCode::OK);
    // A realm in the configuration replaces the derived one.
    let reg = Reg::new("realm = \"https://auth.example.com/token\"\nservice = \"reg.example.com\"").await;
    let r = reg.get("/v2/", None).await;
    assert_eq!(
        r.header("www-authenticate"),
        r#"Bearer realm="https://auth.example.com/token",service="reg.example.com""#
    );
}

#[tokio::test]
async fn tokens_grant_what_the_rules_allow_and_are_checked_per_request() {
    let reg = Reg::new("").await;
    // alice may push to team-a; the token says exactly what was granted.
    let alice = reg.token(Some(("alice", "alice-secret-1")), &["repository:team-a/app:pull,push"]).await;
    let c = claims_of(&alice);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "berth");
    assert_eq!(c["access"], json!([{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]));
    let (blob, put, _) = reg.push("team-a/app", "v1", Some(&bearer(&alice))).await;
    assert_eq!((blob.status, put.status), (StatusCode::CREATED, StatusCode::CREATED));
    let r = reg.get("/v2/team-a/app/manifests/v1", Some(&bearer(&alice))).await;
    assert_eq!(r.status, StatusCode::OK);
    reg.get("/v2/", Some(&bearer(&alice))).await;
    assert_eq!(reg.get("/v2/", Some(&bearer(&alice))).await.status, StatusCode::OK);

    // bob asks for push and gets pull only; his pull works, his push is refused.
    let bob = reg.token(Some(("bob", "bob-secret-2")), &["repository:team-a/app:pull,push"]).await;
    assert_eq!(claims_of(&bob)["access"][0]["actions"], json!(["pull"]));
    assert_eq!(reg.get("/v2/team-a/app/manifests/v1", Some(&bearer(&bob))).await.status, StatusCode::OK);

    // Several scopes, some not granted at all; `*` asks for everything allowed.
    let t = reg
        .token(
            Some(("alice", "alice-secret-1")),
            &[
                "repository:team-a/x:*",
                "repository:team-b/y:pull",
                "repository:library/z:pull,push",
                "registry:catalog:*",
            ],
        )
        .await;
    let access = &claims_of(&t)["access"];
    assert_eq!(
        *access,
        json!([
            {"type": "repository", "name": "team-a/x", "actions": ["pull", "push", "delete"]},
            {"type": "repository", "name": "library/z", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );

    // Anonymous tokens carry what anonymous callers may do.
    let anon = reg.token(None, &["repository:library/busybox:pull,push", "repository:team-a/app:pull"]).await;
    assert_eq!(
        claims_of(&anon)["access"],
        json!([{"type": "repository", "name": "library/busybox", "actions": ["pull"]}])
    );
    assert_eq!(claims_of(&anon)["sub"], "");

    // Plain basic authentication on the API works too.
    let (blob, put, _) = reg.push("team-a/basic", "v1", Some(&basic("carol", "carol-secret-3"))).await;
    assert_eq!((blob.status, put.status), (StatusCode::CREATED, StatusCode::CREATED));
    let r = reg.get("/v2/team-a/basic/tags/list", Some(&basic("alice", "alice-secret-1"))).await;
    assert_eq!(r.json()["tags"], json!(["v1"]));
}

#[tokio::test]
async fn denials_answer_with_their_codes_and_store_nothing() {
    let reg = Reg::new("").await;
    let key = reg.signing_key();

    // Anonymous push.
    let (blob, put, d) = reg.push("team-a/app", "v1", None).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.assert_not_stored("team-a/app", &d);

    // Wrong password, by basic auth and at the token endpoint.
    let (blob, put, d) = reg.push("team-a/app", "v1", Some(&basic("alice", "wrong"))).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.assert_not_stored("team-a/app", &d);
    let r = reg.get("/token?service=berth&scope=repository:team-a/app:push", Some(&basic("alice", "wrong"))).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = reg.get("/token?service=berth", Some(&basic("nobody", "x"))).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // A pull-only account pushing: basic credentials are denied (403); its token lacks the
    // scope, answered as distribution does (401, insufficient_scope, the scope to ask for).
    let (blob, put, d) = reg.push("team-a/app", "v1", Some(&basic("bob", "bob-secret-2"))).await;
    blob.expect(StatusCode::FORBIDDEN, "DENIED");
    put.expect(StatusCode::FORBIDDEN, "DENIED");
    reg.assert_not_stored("team-a/app", &d);
    let bob = reg.token(Some(("bob", "bob-secret-2")), &["repository:team-a/app:pull,push"]).await;
    let (blob, put, d) = reg.push("team-a/app", "v1", Some(&bearer(&bob))).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(
        blob.header("www-authenticate"),
        r#"Bearer realm="http://registry.test/token",service="berth",scope="repository:team-a/app:pull,push",error="insufficient_scope""#
    );
    reg.assert_not_stored("team-a/app", &d);
    let r = reg.send("DELETE", "/v2/team-a/app/manifests/v1", &[("authorization", &bearer(&bob))], Body::empty()).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // A token for one repository used on another.
    let alice = reg.token(Some(("alice", "alice-secret-1")), &["repository:team-a/one:pull,push"]).await;
    let (blob, put, d) = reg.push("team-a/two", "v1", Some(&bearer(&alice))).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(blob
        .header("www-authenticate")
        .contains(r#"scope="repository:team-a/two:pull,push",error="insufficient_scope""#));
    reg.assert_not_stored("team-a/two", &d);
    reg.get("/v2/team-a/two/tags/list", Some(&bearer(&alice))).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // An expired token, signed with the registry's own key.
    let expired = key.sign(&claims("alice", &[("team-a/app", &["pull", "push"])], now() - 3600)).unwrap();
    let (blob, put, d) = reg.push("team-a/app", "v1", Some(&bearer(&expired))).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(blob.header("www-authenticate").ends_with(r#"error="invalid_token""#));
    reg.assert_not_stored("team-a/app", &d);
    // Within the leeway, a just-expired token still works; other claims are checked too.
    let fresh = key.sign(&claims("alice", &[("team-a/app", &["pull"])], now() - 10)).unwrap();
    reg.get("/v2/team-a/app/tags/list", Some(&bearer(&fresh))).await.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    let mut other_aud = claims("alice", &[("team-a/app", &["pull"])], now() + 300);
    other_aud.aud = Audience::Many(vec!["elsewhere".into()]);
    let t = key.sign(&other_aud).unwrap();
    reg.get("/v2/team-a/app/tags/list", Some(&bearer(&t))).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let mut other_iss = claims("alice", &[("team-a/app", &["pull"])], now() + 300);
    other_iss.iss = "someone".into();
    let t = key.sign(&other_iss).unwrap();
    reg.get("/v2/team-a/app/tags/list", Some(&bearer(&t))).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let mut later = claims("alice", &[("team-a/app", &["pull"])], now() + 3000);
    later.nbf = Some(now() + 1000);
    let t = key.sign(&later).unwrap();
    reg.get("/v2/team-a/app/tags/list", Some(&bearer(&t))).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // A tampered token: a pull grant rewritten to push, the signature kept.
    let pull_only = reg.token(Some(("bob", "bob-secret-2")), &["repository:team-a/app:pull"]).await;
    let parts: Vec<&str> = pull_only.split('.').collect();
    let mut c = claims_of(&pull_only);
    c["access"][0]["actions"] = json!(["pull", "push"]);
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(c.to_string()), parts[2]);
    let (blob, put, d) = reg.push("team-a/app", "v1", Some(&bearer(&tampered))).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.assert_not_stored("team-a/app", &d);

    // `alg: none`, with and without a signature part.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("admin", &[("team-a/app", &["*"])], now() + 300)).unwrap());
    for unsigned in [format!("{none_header}.{body}."), format!("{none_header}.{body}.{}", parts[2])] {
        let (blob, put, d) = reg.push("team-a/app", "v1", Some(&bearer(&unsigned))).await;
        blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        reg.assert_not_stored("team-a/app", &d);
    }
    // HS256 with the public key as the secret is refused by its algorithm.
    let hs = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let forged = format!("{hs}.{body}.{}", parts[2]);
    reg.get("/v2/team-a/app/tags/list", Some(&bearer(&forged))).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // A refresh token is no access token.
    let r = reg
        .send(
            "POST",
            "/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            "grant_type=password&username=admin&password=admin-secret-4&service=berth&client_id=t&access_type=offline",
        )
        .await;
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    reg.get("/v2/", Some(&bearer(&refresh))).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // Garbage in the header.
    reg.get("/v2/", Some("Bearer")).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.get("/v2/", Some("Basic !!!")).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.get("/v2/", Some("Digest x=y")).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // Nothing at all of team-a was stored by any of this.
    assert!(!reg.data().join("repositories").exists());
}

#[tokio::test]
async fn robots_push_until_revoked() {
    let reg = Reg::new("").await;
    let storage = reg.storage();
    let (robot, secret) = create_robot(&storage, "ci", None).await.unwrap();
    let login = robot.login();
    let (blob, put, _) = reg.push("team-a/built", "v1", Some(&basic(&login, &secret))).await;
    assert_eq!((blob.status, put.status), (StatusCode::CREATED, StatusCode::CREATED));
    let token = reg.token(Some((&login, &secret)), &["repository:team-a/built:pull,push"]).await;
    assert_eq!(claims_of(&token)["sub"], "robot$ci");
    assert_eq!(reg.get("/v2/team-a/built/manifests/v1", Some(&bearer(&token))).await.status, StatusCode::OK);
    // Outside its rules, nothing.
    reg.push("library/x", "v1", Some(&basic(&login, &secret))).await.0.expect(StatusCode::FORBIDDEN, "DENIED");
    // A wrong secret.
    reg.push("team-a/built", "v2", Some(&basic(&login, "guess")))
        .await
        .0
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    revoke_robot(&storage, "ci").await.unwrap();
    let (blob, put, d) = reg.push("team-a/built", "v2", Some(&basic(&login, &secret))).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    put.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.assert_not_stored("team-a/built-none", &d);
    assert!(!reg.data().join(format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex())).exists());
    // Its tokens stop working too, and it gets no new ones.
    let (blob, _, _) = reg.push("team-a/built", "v2", Some(&bearer(&token))).await;
    blob.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.get("/v2/team-a/built/manifests/v1", Some(&bearer(&token)))
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = reg.get("/token?service=berth&scope=repository:team-a/built:pull", Some(&basic(&login, &secret))).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // A robot of the same name made again has a new secret; the old one stays dead.
    let (_, again) = create_robot(&storage, "ci", None).await.unwrap();
    assert_ne!(again, secret);
    reg.get("/v2/", Some(&basic(&login, &secret))).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(reg.get("/v2/", Some(&basic(&login, &again))).await.status, StatusCode::OK);

    // An expired robot is refused.
    create_robot(&storage, "brief", Some(Duration::ZERO)).await.unwrap();
    let brief = registry::auth::accounts::get_robot(&storage, "brief").await.unwrap().unwrap();
    assert!(brief.expires.is_some());
    let r = reg.get("/v2/", Some(&basic("robot$brief", "anything"))).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn docker_login_post_form_and_refresh_tokens() {
    let reg = Reg::new("").await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    // docker login: grant_type=password with access_type=offline gives a refresh token.
    let r = reg
        .send("POST", "/token", &form, "grant_type=password&username=alice&password=alice-secret-1&service=berth&client_id=docker&access_type=offline")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), "no-store");
    let v = r.json();
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    assert!(v["access_token"].is_string());
    assert_eq!(v["scope"], "");
    // docker push: grant_type=refresh_token with the scope.
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service=berth&client_id=docker&scope=repository%3Ateam-a%2Fapp%3Apull%2Cpush"
    );
    let r = reg.send("POST", "/token", &form, body.clone()).await;
    let v = r.json();
    assert_eq!(v["scope"], "repository:team-a/app:pull,push");
    assert_eq!(v["refresh_token"], refresh.as_str());
    let token = v["access_token"].as_str().unwrap();
    let (blob, put, _) = reg.push("team-a/app", "v1", Some(&bearer(token))).await;
    assert_eq!((blob.status, put.status), (StatusCode::CREATED, StatusCode::CREATED));

    // GET with offline_token=true gives one too.
    let r =
        reg.get("/token?service=berth&offline_token=true&client_id=x", Some(&basic("alice", "alice-secret-1"))).await;
    assert!(r.json()["refresh_token"].is_string());
    let r = reg.get("/token?service=berth", Some(&basic("alice", "alice-secret-1"))).await;
    assert!(r.json().get("refresh_token").is_none());

    // Wrong password, unknown grant, forged refresh token.
    let r = reg.send("POST", "/token", &form, "grant_type=password&username=alice&password=nope&service=berth").await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = reg.send("POST", "/token", &form, "grant_type=client_credentials").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let access_as_refresh = format!("grant_type=refresh_token&refresh_token={token}&service=berth");
    reg.send("POST", "/token", &form, access_as_refresh).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // A new password voids the refresh tokens issued with the old one.
    write_htpasswd(&reg.htpasswd, &[("alice", "new-password-5")]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    reg.send("POST", "/token", &form, body).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = reg.get("/token?service=berth", Some(&basic("alice", "new-password-5"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        reg.send("GET", "/token", &[("authorization", "Bearer x")], Body::empty()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_catalog_lists_only_what_the_caller_may_pull() {
    let reg = Reg::new("").await;
    let admin = basic("admin", "admin-secret-4");
    for repo in ["library/busybox", "team-a/app", "team-b/secret"] {
        let (blob, put, _) = reg.push(repo, "v1", Some(&admin)).await;
        assert_eq!((blob.status, put.status), (StatusCode::CREATED, StatusCode::CREATED), "{repo}");
    }
    let list = |r: Reply| r.json()["repositories"].clone();
    assert_eq!(
        list(reg.get("/v2/_catalog", Some(&admin)).await),
        json!(["library/busybox", "team-a/app", "team-b/secret"])
    );
    assert_eq!(
        list(reg.get("/v2/_catalog", Some(&basic("bob", "bob-secret-2"))).await),
        json!(["library/busybox", "team-a/app"])
    );
    let t = reg.token(Some(("carol", "carol-secret-3")), &["registry:catalog:*"]).await;
    assert_eq!(list(reg.get("/v2/_catalog", Some(&bearer(&t))).await), json!(["library/busybox", "team-a/app"]));
    let anon = reg.token(None, &["registry:catalog:*"]).await;
    assert_eq!(list(reg.get("/v2/_catalog?n=10", Some(&bearer(&anon))).await), json!(["library/busybox"]));
    // A token without the catalog scope is asked to get it.
    let t = reg.token(Some(("carol", "carol-secret-3")), &["repository:team-a/app:pull"]).await;
    let r = reg.get("/v2/_catalog", Some(&bearer(&t))).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(r.header("www-authenticate").ends_with(r#"scope="registry:catalog:*",error="insufficient_scope""#));

    // Anonymous pulls of public repositories need no token; other repositories do.
    assert_eq!(reg.get("/v2/library/busybox/manifests/v1", None).await.status, StatusCode::OK);
    reg.get("/v2/team-a/app/manifests/v1", None).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // Mounting needs pull on the source: without it the POST starts a plain upload.
    let (_, _, digest) = reg.push("team-b/secret", "v2", Some(&admin)).await;
    let alice = basic("alice", "alice-secret-1");
    let mount = format!("/v2/team-a/app/blobs/uploads/?mount={digest}&from=team-b/secret");
    let r = reg.send("POST", &mount, &[("authorization", &alice)], Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "a mount from a repository alice cannot read must not happen");
    let r = reg
        .send(
            "POST",
            &format!("/v2/team-a/app/blobs/uploads/?mount={digest}"),
            &[("authorization", &alice)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "no mount from anywhere with auth on");
    let r = reg.send("POST", &mount, &[("authorization", &admin)], Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A token of a caller who may read the source, without that scope: asked to get it.
    let (_, _, lib_digest) = reg.push("library/busybox", "v3", Some(&admin)).await;
    let t = reg.token(Some(("alice", "alice-secret-1")), &["repository:team-a/app:pull,push"]).await;
    let mount = format!("/v2/team-a/app/blobs/uploads/?mount={lib_digest}&from=library/busybox");
    let r = reg.send("POST", &mount, &[("authorization", &bearer(&t))], Body::empty()).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(r
        .header("www-authenticate")
        .contains(r#"scope="repository:team-a/app:pull,push repository:library/busybox:pull""#));
    let t = reg
        .token(
            Some(("alice", "alice-secret-1")),
            &["repository:team-a/app:pull,push", "repository:library/busybox:pull"],
        )
        .await;
    let r = reg.send("POST", &mount, &[("authorization", &bearer(&t))], Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn failed_logins_are_limited_per_client_address_and_user() {
    let reg = Reg::new(
        "max_failed_logins = 3\nmax_failed_logins_per_address = 6\nfailed_login_window_secs = 60\ntrust_forwarded_for = true",
    )
    .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let wrong = basic("alice", "wrong");
    for _ in 0..3 {
        let r = reg.send("GET", "/v2/", &[from("198.51.100.1")[0], ("authorization", &wrong)], Body::empty()).await;
        r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    // Now even the right password waits, at the API and at the token endpoint.
    let right = basic("alice", "alice-secret-1");
    let r = reg.send("GET", "/v2/", &[from("198.51.100.1")[0], ("authorization", &right)], Body::empty()).await;
    r.expect(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s > 0 && s <= 60));
    let r = reg
        .send(
            "GET",
            "/token?service=berth",
            &[from("10.9.8.7, 198.51.100.1")[0], ("authorization", &right)],
            Body::empty(),
        )
        .await;
    r.expect(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    let form = "grant_type=password&username=alice&password=alice-secret-1";
    let r = reg
        .send("POST", "/token", &[from("198.51.100.1")[0], ("content-type", "application/x-www-form-urlencoded")], form)
        .await;
    r.expect(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    // Another address is not affected, nor another user at the same address (behind a proxy
    // that is everyone), and anonymous requests are not limited.
    let r = reg.send("GET", "/v2/", &[from("198.51.100.2")[0], ("authorization", &right)], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    let bob = basic("bob", "bob-secret-2");
    let r = reg.send("GET", "/v2/", &[from("198.51.100.1")[0], ("authorization", &bob)], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = reg.send("GET", "/v2/library/x/tags/list", &from("198.51.100.1"), Body::empty()).await;
    r.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    // Guessing at other names from that address meets the address's own, higher limit (the
    // refused alice logins counted towards it): then everyone there waits.
    for user in ["carol", "mallory", "admin"] {
        let wrong = basic(user, "wrong");
        let r = reg.send("GET", "/v2/", &[from("198.51.100.1")[0], ("authorization", &wrong)], Body::empty()).await;
        r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let r = reg.send("GET", "/v2/", &[from("198.51.100.1")[0], ("authorization", &bob)], Body::empty()).await;
    r.expect(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    let r = reg.send("GET", "/v2/", &[from("198.51.100.2")[0], ("authorization", &bob)], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_of_an_external_token_server_are_trusted_for_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let (external, _) = SigningKey::generate().unwrap();
    let pem = dir.path().join("token-server.pem");
    std::fs::write(&pem, external.public_pem()).unwrap();
    let reg = Reg::new(&format!(
        "realm = \"https://auth.example.com/token\"\n[auth.external]\nissuer = \"auth.example.com\"\nkeys = [{:?}]\n",
        pem.display().to_string()
    ))
    .await;
    let mut c = claims("someone", &[("team-b/app", &["pull", "push"])], now() + 300);
    c.iss = "auth.example.com".into();
    let token = external.sign(&c).unwrap();
    // Rules grant nothing on team-b to anyone but admin; the external token does.
    let (blob, put, _) = reg.push("team-b/app", "v1", Some(&bearer(&token))).await;
    assert_eq!((blob.status, put.status), (StatusCode::CREATED, StatusCode::CREATED));
    let r = reg.get("/v2/team-b/other/tags/list", Some(&bearer(&token))).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(r.header("www-authenticate").starts_with(r#"Bearer realm="https://auth.example.com/token""#));
    // The external key cannot speak for berth's own issuer, nor berth's for the external one.
    c.iss = "berth".into();
    let as_berth = external.sign(&c).unwrap();
    reg.get("/v2/team-b/app/tags/list", Some(&bearer(&as_berth)))
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    c.iss = "auth.example.com".into();
    let by_berth = reg.signing_key().sign(&c).unwrap();
    reg.get("/v2/team-b/app/tags/list", Some(&bearer(&by_berth)))
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // berth's own tokens keep working beside them.
    let t = reg.token(Some(("alice", "alice-secret-1")), &["repository:team-a/app:pull"]).await;
    reg.get("/v2/team-a/app/tags/list", Some(&bearer(&t))).await.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
}

#[tokio::test]
async fn a_configured_signing_key_signs_and_replicas_share_the_stored_one() {
    // Two registries on one storage sign with the same generated key.
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[storage.filesystem]\nroot = {:?}\nfsync = false\n[auth]\n", dir.path().display().to_string());
    let config: registry::Config = toml::from_str(&text).unwrap();
    let a = registry::state(config.clone()).await.unwrap();
    let b = registry::state(config).await.unwrap();
    let (ka, kb) = (a.auth.as_ref().unwrap().signing_key().kid(), b.auth.as_ref().unwrap().signing_key().kid());
    assert_eq!(ka, kb);
    // A key file is used instead when given.
    let (key, pem) = SigningKey::generate().unwrap();
    let file = dir.path().join("key.pem");
    std::fs::write(&file, pem).unwrap();
    let text = format!(
        "[storage.filesystem]\nroot = {:?}\n[auth]\nsigning_key = {:?}\n",
        dir.path().display().to_string(),
        file.display().to_string()
    );
    let c = registry::state(toml::from_str(&text).unwrap()).await.unwrap();
    assert_eq!(c.auth.as_ref().unwrap().signing_key().kid(), key.kid());
    // A bad key file stops the start with its name.
    std::fs::write(&file, "not a key").unwrap();
    let Err(err) = registry::state(toml::from_str(&text).unwrap()).await else { panic!("a bad key file was accepted") };
    let err = shared::error_chain(&err);
    assert!(err.contains("key.pem"), "{err}");
}

/// Collects everything logged on this thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_the_log_and_the_audit_log_says_who_did_what() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let reg = Reg::new("").await;
    let storage = reg.storage();
    let (robot, robot_secret) = create_robot(&storage, "ci", None).await.unwrap();
    let mut secrets: Vec<String> = USERS.iter().map(|(_, p)| p.to_string()).collect();
    secrets.push(robot_secret.clone());
    secrets.push(basic("alice", "alice-secret-1"));

    // Logins, right and wrong, every way there is.
    let alice = reg.token(Some(("alice", "alice-secret-1")), &["repository:team-a/app:pull,push,delete"]).await;
    secrets.push(alice.clone());
    reg.get("/v2/", Some(&basic("alice", "typo-secret-9"))).await;
    secrets.push("typo-secret-9".into());
    reg.get("/token?service=berth", Some(&basic("bob", "bob-wrong-secret"))).await;
    secrets.push("bob-wrong-secret".into());
    let r = reg
        .send(
            "POST",
            "/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            "grant_type=password&username=carol&password=carol-secret-3&access_type=offline&service=berth",
        )
        .await;
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    secrets.push(refresh.clone());
    reg.send(
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("grant_type=refresh_token&refresh_token={refresh}x&service=berth"),
    )
    .await;
    let robot_token = reg.token(Some((&robot.login(), &robot_secret)), &["repository:team-a/ci:push,pull"]).await;
    secrets.push(robot_token.clone());

    // Pushes and deletes, by token, basic and robot; and a refused tampered token.
    let (_, put, digest) = reg.push("team-a/app", "v1", Some(&bearer(&alice))).await;
    assert_eq!(put.status, StatusCode::CREATED);
    reg.push("team-a/ci", "build-1", Some(&basic(&robot.login(), &robot_secret))).await;
    reg.push("team-a/ci", "build-2", Some(&bearer(&robot_token))).await;
    let r =
        reg.send("DELETE", "/v2/team-a/app/manifests/v1", &[("authorization", &bearer(&alice))], Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = reg
        .send("DELETE", &format!("/v2/team-a/app/blobs/{digest}"), &[("authorization", &bearer(&alice))], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let tampered = format!("{}x", alice);
    reg.get("/v2/team-a/app/tags/list", Some(&bearer(&tampered))).await;
    reg.push("team-a/app", "v2", Some(&basic("bob", "bob-secret-2"))).await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log: {secret}\n{log}");
        // Not even a good part of it.
        let part = &secret[..secret.len().min(16)];
        if secret.len() >= 16 {
            assert!(!log.contains(part), "part of a secret is in the log: {part}");
        }
    }
    // The audit log has who, what and from where.
    let audit: Vec<&str> = log.lines().filter(|l| l.contains(" audit:")).collect();
    let has = |needles: &[&str]| audit.iter().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(has(&["event=\"login_failed\"", "user=\"alice\"", "client=192.0.2.7"]), "{audit:#?}");
    assert!(has(&["event=\"login_failed\"", "user=\"bob\""]), "{audit:#?}");
    assert!(has(&["event=\"login_failed\"", "refresh token refused"]), "{audit:#?}");
    assert!(
        has(&["event=\"push\"", "who=user:alice", "repo=\"team-a/app\"", "reference=\"v1\"", "sha256:"]),
        "{audit:#?}"
    );
    assert!(has(&["event=\"push\"", "who=user:alice", &format!("digest=\"{digest}\""), "blob pushed"]), "{audit:#?}");
    assert!(has(&["event=\"push\"", "who=robot:ci", "reference=\"build-1\""]), "{audit:#?}");
    assert!(has(&["event=\"push\"", "who=robot:ci", "reference=\"build-2\""]), "{audit:#?}");
    assert!(has(&["event=\"delete\"", "who=user:alice", "reference=\"v1\"", "client=192.0.2.7"]), "{audit:#?}");
    assert!(has(&["event=\"delete\"", "who=user:alice", &format!("digest=\"{digest}\"")]), "{audit:#?}");
    assert!(has(&["event=\"token_refused\""]), "{audit:#?}");
    assert!(has(&["event=\"denied\"", "who=user:bob"]), "{audit:#?}");
    assert!(has(&["event=\"robot_created\"", "robot=\"ci\""]), "{audit:#?}");
}

#[tokio::test]
async fn without_auth_nothing_changes_but_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().to_path_buf();
    let app = registry::router(config).await.unwrap();
    let send = |method: &str, uri: &str, body: &'static str| {
        let req = Request::builder().method(method).uri(uri).body(Body::from(body)).unwrap();
        app.clone().oneshot(req)
    };
    let r = send("GET", "/v2/", "").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("www-authenticate").is_none());
    assert_eq!(send("GET", "/token?service=berth", "").await.unwrap().status(), StatusCode::NOT_FOUND);
    let d = Digest::sha256_of(b"x");
    let r = send("POST", &format!("/v2/any/repo/blobs/uploads/?digest={d}"), "x").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Credentials are ignored, as before.
    let req = Request::builder()
        .uri("/v2/any/repo/blobs/".to_string() + &d.to_string())
        .header("authorization", "Bearer junk")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
}
