//! The hub, driven through the router in-process: the admin API under `/api/v1/` (what each
//! caller sees and may do, every error's status and code), and the web UI (sign-in, session
//! cookie attributes, CSRF on every form, what each user sees, deleting a tag, the image page,
//! escaping of what pushers wrote, hostile query strings, page weight).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use registry::auth::accounts::hash_password;
use serde_json::{json, Value};
use shared::Digest;
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

const RULES: &str = r#"
[[auth.rules]]
repositories = ["library/*"]
actions = ["pull"]
who = ["anonymous"]

[[auth.rules]]
repositories = ["team-a/*"]
actions = ["*"]
who = ["user:alice"]

[[auth.rules]]
repositories = ["team-b/*"]
actions = ["*"]
who = ["user:bob"]

[[auth.rules]]
repositories = ["*"]
actions = ["*"]
who = ["user:admin"]
"#;

const USERS: &[(&str, &str)] = &[("alice", "alice-pw-1"), ("bob", "bob-pw-2"), ("admin", "admin-pw-3")];

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }

    fn message(&self) -> String {
        self.json()["errors"][0]["message"].as_str().unwrap_or_default().to_string()
    }

    fn cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
    }

    #[track_caller]
    fn expect(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.code(), code, "body: {}", self.text());
        assert!(!self.message().is_empty());
        self
    }
}

fn basic(user: &str) -> String {
    let pw = USERS.iter().find(|(u, _)| *u == user).map_or("wrong", |(_, p)| p);
    format!("Basic {}", STANDARD.encode(format!("{user}:{pw}")))
}

struct Reg {
    _dir: tempfile::TempDir,
    app: Router,
}

impl Reg {
    async fn new(extra: &str) -> Reg {
        Reg::with(extra, "").await
    }

    /// A registry with `extra` top-level settings and `auth` lines in `[auth]`.
    async fn with(extra: &str, auth: &str) -> Reg {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let lines: Vec<String> = USERS.iter().map(|(u, p)| format!("{u}:{}", hash_password(p, 4).unwrap())).collect();
        std::fs::write(&htpasswd, lines.join("\n") + "\n").unwrap();
        let text = format!(
            "{extra}\n[storage.filesystem]\nroot = {:?}\nfsync = false\n[auth]\nhtpasswd = {:?}\n{auth}\n{RULES}",
            dir.path().join("data").display().to_string(),
            htpasswd.display().to_string()
        );
        let config: registry::Config = toml::from_str(&text).unwrap();
        let app = registry::router(config).await.unwrap();
        let app = app.layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 9], 40000))));
        Reg { _dir: dir, app }
    }

    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self.app.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        Reply { status, headers, body: resp.into_body().collect().await.unwrap().to_bytes() }
    }

    async fn get(&self, uri: &str, who: Option<&str>) -> Reply {
        let auth = who.map(basic);
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.call("GET", uri, &headers, Body::empty()).await
    }

    async fn blob(&self, repo: &str, data: &[u8]) -> (Digest, usize) {
        let d = Digest::sha256_of(data);
        let a = basic("admin");
        let r = self
            .call("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[("authorization", &a)], data.to_vec())
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        (d, data.len())
    }

    async fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &str) -> Digest {
        let a = basic("admin");
        let h = [("authorization", a.as_str()), ("content-type", media_type)];
        let r = self.call("PUT", &format!("/v2/{repo}/manifests/{reference}"), &h, body.to_string()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        Digest::sha256_of(body.as_bytes())
    }

    /// Pushes an image with `config` and one layer; returns its digest and its compressed
    /// size (config plus layer).
    async fn image(&self, repo: &str, tag: &str, config: &Value, layer: &[u8]) -> (Digest, u64) {
        let (cd, cs) = self.blob(repo, config.to_string().as_bytes()).await;
        let (ld, ls) = self.blob(repo, layer).await;
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": cd.to_string(), "size": cs },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld.to_string(), "size": ls }],
        });
        (self.manifest(repo, tag, OCI_MANIFEST, &m.to_string()).await, (cs + ls) as u64)
    }
}

fn plain_config(arch: &str) -> Value {
    json!({ "architecture": arch, "os": "linux", "rootfs": { "type": "layers", "diff_ids": [] } })
}

async fn names(reg: &Reg, who: Option<&str>, query: &str) -> Vec<String> {
    let r = reg.get(&format!("/api/v1/repositories{query}"), who).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["repositories"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn repositories_are_listed_as_the_caller_may_pull_them() {
    let reg = Reg::new("").await;
    let (_, size) = reg.image("team-a/app", "v1", &plain_config("amd64"), b"layer-a").await;
    reg.image("team-a/app", "v2", &plain_config("amd64"), b"layer-a").await;
    reg.image("team-b/tool", "v1", &plain_config("amd64"), b"layer-b").await;
    reg.image("library/base", "latest", &plain_config("amd64"), b"layer-c").await;

    assert_eq!(names(&reg, None, "").await, ["library/base"]);
    assert_eq!(names(&reg, Some("alice"), "").await, ["library/base", "team-a/app"]);
    assert_eq!(names(&reg, Some("bob"), "").await, ["library/base", "team-b/tool"]);
    assert_eq!(names(&reg, Some("admin"), "").await, ["library/base", "team-a/app", "team-b/tool"]);
    assert_eq!(names(&reg, Some("admin"), "?q=TEAM").await, ["team-a/app", "team-b/tool"]);

    let all = reg.get("/api/v1/repositories?q=app", Some("alice")).await.json();
    let app = &all["repositories"][0];
    assert_eq!(app["tags"], 2);
    // Two manifests (their bytes differ by nothing but are the same: one revision) plus the
    // config and the layer, each counted once.
    let manifest_bytes = reg.get("/v2/team-a/app/manifests/v1", Some("alice")).await.body.len() as u64;
    assert_eq!(app["size"], size + manifest_bytes);
    assert!(app["last_push"].as_str().unwrap().ends_with('Z'));

    // Paging.
    let first = reg.get("/api/v1/repositories?n=2", Some("admin")).await;
    assert_eq!(first.json()["repositories"].as_array().unwrap().len(), 2);
    assert_eq!(first.json()["next"], "team-a/app");
    assert!(first.headers["link"].to_str().unwrap().contains("last=team-a%2Fapp"));
    assert_eq!(names(&reg, Some("admin"), "?n=2&last=team-a/app").await, ["team-b/tool"]);

    for bad in ["n=abc", "n=0", "n=-1"] {
        reg.get(&format!("/api/v1/repositories?{bad}"), Some("admin"))
            .await
            .expect(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID");
    }
    let wrong = format!("Basic {}", STANDARD.encode("alice:nope"));
    let r = reg.call("GET", "/api/v1/repositories", &[("authorization", &wrong)], Body::empty()).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(r.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn tags_give_digest_platforms_size_and_push_time() {
    let reg = Reg::new("").await;
    let (amd, amd_size) = reg.image("team-a/multi", "amd", &plain_config("amd64"), b"amd64 layer").await;
    let (arm, arm_size) = reg.image("team-a/multi", "arm", &plain_config("arm64"), b"arm64 layer, longer").await;
    let mut children = Vec::new();
    for (d, arch, variant) in [(&amd, "amd64", None), (&arm, "arm64", Some("v8"))] {
        let mut p = json!({ "os": "linux", "architecture": arch });
        if let Some(v) = variant {
            p["variant"] = json!(v);
        }
        let size = reg.get(&format!("/v2/team-a/multi/manifests/{d}"), Some("admin")).await.body.len();
        children.push(json!({ "mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": size, "platform": p }));
    }
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children });
    let index_digest = reg.manifest("team-a/multi", "latest", OCI_INDEX, &index.to_string()).await;

    let r = reg.get("/api/v1/repositories/team-a/multi/tags", Some("alice")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["total"], 3);
    let latest = v["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "latest").unwrap().clone();
    assert_eq!(latest["digest"], index_digest.to_string());
    assert_eq!(latest["media_type"], OCI_INDEX);
    assert_eq!(latest["platforms"], json!(["linux/amd64", "linux/arm64/v8"]));
    assert_eq!(latest["size"], amd_size + arm_size);
    assert!(latest["pushed"].as_str().unwrap().ends_with('Z'));
    let amd_row = v["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "amd").unwrap().clone();
    assert_eq!(
        (amd_row["digest"].as_str().unwrap(), amd_row["size"].as_u64().unwrap()),
        (amd.to_string().as_str(), amd_size)
    );
    assert_eq!(amd_row["platforms"], json!(["linux/amd64"]), "a single image's platform is its config's");

    let page = reg.get("/api/v1/repositories/team-a/multi/tags?n=1&sort=pushed", Some("alice")).await.json();
    assert_eq!(page["tags"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], "1");
    let one = reg.get("/api/v1/repositories/team-a/multi", Some("alice")).await.json();
    assert_eq!(one["tags"], 3);

    reg.get("/api/v1/repositories/team-a/multi/tags?sort=size", Some("alice"))
        .await
        .expect(StatusCode::BAD_REQUEST, "UNSUPPORTED");
    reg.get("/api/v1/repositories/team-a/multi/tags", None).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    reg.get("/api/v1/repositories/team-a/multi/tags", Some("bob")).await.expect(StatusCode::FORBIDDEN, "DENIED");
    reg.get("/api/v1/repositories/team-a/none/tags", Some("alice")).await.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    reg.get("/api/v1/repositories/Bad!/tags", Some("alice")).await.expect(StatusCode::BAD_REQUEST, "NAME_INVALID");
    reg.get("/api/v1/nothing", Some("alice")).await.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    let r = reg.call("PUT", "/api/v1/repositories", &[("authorization", &basic("alice"))], Body::empty()).await;
    r.expect(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
}

#[tokio::test]
async fn deleting_a_repository_needs_delete_rights_and_keeps_the_others() {
    let reg = Reg::new("[[immutable]]\nrepositories = [\"team-a/locked\"]\ntags = [\"v*\"]\n").await;
    reg.image("team-a/app", "v1", &plain_config("amd64"), b"shared layer").await;
    reg.image("team-a/keep", "v1", &plain_config("amd64"), b"shared layer").await;
    reg.image("team-a/locked", "v1", &plain_config("amd64"), b"locked layer").await;
    let del = |who: &'static str, repo: &'static str| {
        let a = basic(who);
        let reg = &reg;
        async move {
            reg.call("DELETE", &format!("/api/v1/repositories/{repo}"), &[("authorization", &a)], Body::empty()).await
        }
    };
    del("bob", "team-a/app").await.expect(StatusCode::FORBIDDEN, "DENIED");
    let r = reg.call("DELETE", "/api/v1/repositories/team-a/app", &[], Body::empty()).await;
    r.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    del("alice", "team-a/absent").await.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    let r = del("alice", "team-a/locked").await;
    r.expect(StatusCode::FORBIDDEN, "DENIED");
    assert!(r.message().contains("immutable"), "{}", r.message());
    assert_eq!(reg.get("/v2/team-a/locked/manifests/v1", Some("alice")).await.status, StatusCode::OK);

    let r = del("alice", "team-a/app").await;
    assert_eq!((r.status, r.json()["tags"].clone()), (StatusCode::OK, json!(1)), "{}", r.text());
    reg.get("/v2/team-a/app/tags/list", Some("alice")).await.expect(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    reg.get("/v2/team-a/app/manifests/v1", Some("alice")).await.expect(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(names(&reg, Some("alice"), "?q=team-a").await, ["team-a/keep", "team-a/locked"]);
    // The other repository's image, which shares the layer, is whole.
    let m = reg.get("/v2/team-a/keep/manifests/v1", Some("alice")).await.json();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = reg.get(&format!("/v2/team-a/keep/blobs/{layer}"), Some("alice")).await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"shared layer"[..]));
}

#[tokio::test]
async fn collecting_needs_delete_on_everything() {
    let reg = Reg::new("").await;
    let post = |who: &'static str| {
        let (a, reg) = (basic(who), &reg);
        async move { reg.call("POST", "/api/v1/gc", &[("authorization", &a)], Body::empty()).await }
    };
    post("alice").await.expect(StatusCode::FORBIDDEN, "DENIED");
    reg.call("POST", "/api/v1/gc", &[], Body::empty()).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = reg.get("/api/v1/gc/runs", Some("admin")).await;
    assert_eq!((r.status, r.json()["runs"].clone()), (StatusCode::OK, json!([])), "{}", r.text());
    let r = post("admin").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    reg.get("/api/v1/gc/runs", Some("alice")).await.expect(StatusCode::FORBIDDEN, "DENIED");
    reg.get("/api/v1/gc/runs?n=x", Some("admin")).await.expect(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID");
    // The run started is recorded once it ends (an empty registry takes milliseconds).
    let mut runs = json!([]);
    for _ in 0..600 {
        let v = reg.get("/api/v1/gc/runs", Some("admin")).await.json();
        if v["running_here"] == false && !v["runs"].as_array().unwrap().is_empty() {
            runs = v["runs"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "no run recorded");
    assert!(runs[0]["error"].is_null() && runs[0]["started_ms"].as_u64().unwrap() > 0, "{runs}");
    let mut admin = Browser::new(&reg);
    admin.sign_in("admin").await;
    assert!(admin.get("/system").await.text().contains("Last runs"));
}

/// A browser: its cookies, and the CSRF token of the last page.
struct Browser<'a> {
    reg: &'a Reg,
    cookies: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    fn new(reg: &'a Reg) -> Self {
        Browser { reg, cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, r: &Reply) {
        for c in r.cookies() {
            let (kv, _) = c.split_once(';').unwrap_or((&c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !c.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
    }

    async fn get(&mut self, uri: &str) -> Reply {
        let c = self.cookie_header();
        let r = self.reg.call("GET", uri, &[("cookie", &c), ("host", "reg.test:5000")], Body::empty()).await;
        self.keep(&r);
        r
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", shared::query::escape(v))).collect();
        let c = self.cookie_header();
        let h = [("cookie", c.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        let r = self.reg.call("POST", uri, &h, body.join("&")).await;
        self.keep(&r);
        r
    }

    /// The CSRF token of a page's forms.
    fn csrf(page: &Reply) -> String {
        let text = page.text();
        let at = text.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        text[at..].split('"').next().unwrap().to_string()
    }

    async fn sign_in(&mut self, user: &str) -> Reply {
        let page = self.get("/login").await;
        let token = Self::csrf(&page);
        let pw = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
        self.post("/login", &[("csrf", &token), ("user", user), ("password", pw), ("next", "/")]).await
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_and_every_form_checks_its_token() {
    let reg = Reg::new("").await;
    reg.image("team-a/app", "v1", &plain_config("amd64"), b"a").await;
    reg.image("team-b/tool", "v1", &plain_config("amd64"), b"b").await;
    let mut alice = Browser::new(&reg);
    let page = alice.get("/login").await;
    let csrf_cookie = page.cookies().into_iter().find(|c| c.starts_with("berth_csrf=")).unwrap();
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"), "{csrf_cookie}");

    // Without the token, or with another visitor's, sign-in is refused.
    let r = alice.post("/login", &[("user", "alice"), ("password", "alice-pw-1")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.cookies().iter().any(|c| c.starts_with("berth_session=")));
    let other = Browser::csrf(&Browser::new(&reg).get("/login").await);
    let r = alice.post("/login", &[("csrf", &other), ("user", "alice"), ("password", "alice-pw-1")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let token = Browser::csrf(&page);
    let r = alice.post("/login", &[("csrf", &token), ("user", "alice"), ("password", "wrong")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text().contains("Wrong user name or password"));

    let r = alice.sign_in("alice").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let session = r.cookies().into_iter().find(|c| c.starts_with("berth_session=")).unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "no TLS here: {session}");

    let home = alice.get("/").await;
    assert!(home.text().contains("team-a/app") && !home.text().contains("team-b/tool"), "{}", home.text());
    assert!(home.text().contains(">alice<"));

    // The API takes the cookie, and a change through it needs the token in a header.
    let c = alice.cookie_header();
    let r = reg.call("GET", "/api/v1/repositories", &[("cookie", &c)], Body::empty()).await;
    assert_eq!(r.json()["repositories"].as_array().unwrap().len(), 1);
    let r = reg.call("DELETE", "/api/v1/repositories/team-a/app", &[("cookie", &c)], Body::empty()).await;
    r.expect(StatusCode::FORBIDDEN, "DENIED");
    let token = Browser::csrf(&home);
    let h = [("cookie", c.as_str()), ("x-csrf-token", token.as_str())];
    assert_eq!(reg.call("DELETE", "/api/v1/repositories/team-a/app", &h, Body::empty()).await.status, StatusCode::OK);

    // Signing out needs the token too, then the cookie is gone.
    assert_eq!(alice.post("/logout", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(alice.post("/logout", &[("csrf", &token)]).await.status, StatusCode::SEE_OTHER);
    assert!(!alice.cookies.iter().any(|(k, _)| k == "berth_session"));
    assert!(!alice.get("/").await.text().contains(">alice<"));
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_tls() {
    // A proxy that terminates TLS says so, and is trusted.
    for (trusted, secure) in [(false, false), (true, true)] {
        let reg = Reg::with("", &format!("trust_forwarded_for = {trusted}")).await;
        let mut b = Browser::new(&reg);
        let token = Browser::csrf(&b.get("/login").await);
        let c = b.cookie_header();
        let h = [
            ("cookie", c.as_str()),
            ("x-forwarded-proto", "https"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let r = reg.call("POST", "/login", &h, format!("csrf={token}&user=alice&password=alice-pw-1")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let session = r.cookies().into_iter().find(|c| c.starts_with("berth_session=")).unwrap();
        assert_eq!(session.contains("; Secure"), secure, "{session}");
    }
}

#[tokio::test]
async fn users_see_only_their_repositories_and_only_allowed_buttons() {
    let reg = Reg::new("").await;
    reg.image("team-a/app", "v1", &plain_config("amd64"), b"a").await;
    reg.image("library/base", "v1", &plain_config("amd64"), b"c").await;
    let mut bob = Browser::new(&reg);
    bob.sign_in("bob").await;
    let home = bob.get("/").await;
    assert!(!home.text().contains("team-a"), "{}", home.text());
    let r = bob.get("/r/team-a/app").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.text().contains("Delete"));
    let r = bob.get("/r/library/base").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("docker pull reg.test:5000/library/base:v1"), "{}", r.text());
    assert!(!r.text().contains("/delete-tag"), "bob may not delete in library/base");
    assert_eq!(bob.get("/system").await.status, StatusCode::FORBIDDEN);

    let mut anonymous = Browser::new(&reg);
    let home = anonymous.get("/").await;
    assert!(home.text().contains("library/base") && !home.text().contains("team-a"));
    assert_eq!(anonymous.get("/r/team-a/app").await.status, StatusCode::UNAUTHORIZED);

    let mut admin = Browser::new(&reg);
    admin.sign_in("admin").await;
    let system = admin.get("/system").await;
    assert_eq!(system.status, StatusCode::OK);
    assert!(system.text().contains("team-a/app") && system.text().contains("library/base"));
}

#[tokio::test]
async fn a_tag_is_deleted_through_the_ui_after_confirmation_and_only_with_the_token() {
    let reg = Reg::new("").await;
    reg.image("team-a/app", "v1", &plain_config("amd64"), b"a").await;
    reg.image("team-a/app", "v2", &plain_config("amd64"), b"b").await;
    let mut alice = Browser::new(&reg);
    alice.sign_in("alice").await;
    let page = alice.get("/r/team-a/app").await;
    assert!(page.text().contains("action=\"/delete-tag\""), "{}", page.text());
    let token = Browser::csrf(&page);
    let form = |csrf: &'static str| vec![("csrf", csrf), ("repo", "team-a/app"), ("tag", "v1")];
    let r = alice.post("/delete-tag", &[("repo", "team-a/app"), ("tag", "v1"), ("confirmed", "1")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let token: &'static str = Box::leak(token.into_boxed_str());
    // Without confirmation: a page asking for it, and the tag is still there.
    let r = alice.post("/delete-tag", &form(token)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("name=\"confirmed\" value=\"1\""));
    assert_eq!(reg.get("/v2/team-a/app/manifests/v1", Some("alice")).await.status, StatusCode::OK);
    let mut confirmed = form(token);
    confirmed.push(("confirmed", "1"));
    let r = alice.post("/delete-tag", &confirmed).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    reg.get("/v2/team-a/app/manifests/v1", Some("alice")).await.expect(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(reg.get("/v2/team-a/app/manifests/v2", Some("alice")).await.status, StatusCode::OK);

    // Bob cannot, even with a valid token of his own.
    let mut bob = Browser::new(&reg);
    bob.sign_in("bob").await;
    let bob_token = Browser::csrf(&bob.get("/").await);
    let r = bob
        .post("/delete-tag", &[("csrf", &bob_token), ("repo", "team-a/app"), ("tag", "v2"), ("confirmed", "1")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(reg.get("/v2/team-a/app/manifests/v2", Some("alice")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_image_page_shows_config_history_layers_referrers_and_escapes_them() {
    let reg = Reg::new("").await;
    let hostile = "<script>alert(1)</script>";
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": {
            "Entrypoint": ["/bin/server"], "Cmd": ["--port", "8080"], "Env": ["PATH=/bin", format!("X={hostile}")],
            "User": "app", "WorkingDir": "/srv", "ExposedPorts": { "8080/tcp": {} },
            "Labels": { "org.opencontainers.image.title": hostile, "q\"uote": "'" }
        },
        "history": [
            { "created_by": "/bin/sh -c #(nop) ADD file:abc in / ", "empty_layer": false },
            { "created_by": format!("RUN echo \"><img src=x onerror=alert(2)>"), "empty_layer": true }
        ],
        "rootfs": { "type": "layers", "diff_ids": [] }
    });
    let (digest, _) = reg.image("library/web", "v1", &config, &[7u8; 1234]).await;
    // A signature pointing at it.
    let (empty, _) = reg.blob("library/web", b"{}").await;
    let sig = json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2 }],
        "subject": { "mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": 1 } });
    let sig_digest = Digest::sha256_of(sig.to_string().as_bytes());
    reg.manifest("library/web", &sig_digest.to_string(), OCI_MANIFEST, &sig.to_string()).await;

    let mut b = Browser::new(&reg);
    let r = b.get("/r/library/web/@v1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = r.text();
    for shown in
        ["/bin/server", "--port 8080", "PATH=/bin", "app", "/srv", "8080/tcp", "linux/amd64", "1.2 kB", "Signatures"]
    {
        assert!(text.contains(shown), "{shown} missing from the page");
    }
    assert!(text.contains(&sig_digest.to_string()));
    assert!(!text.contains("<script>alert") && !text.contains("<img src=x"), "unescaped pusher text");
    assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(r.headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let by_digest = b.get(&format!("/r/library/web/@{digest}")).await;
    assert_eq!(by_digest.status, StatusCode::OK);
}

#[tokio::test]
async fn no_page_answers_500_to_hostile_queries() {
    let reg = Reg::new("").await;
    reg.image("library/base", "v1", &plain_config("amd64"), b"c").await;
    let mut b = Browser::new(&reg);
    b.sign_in("admin").await;
    let hostile = [
        "/?q=%3Cscript%3E&last=%FF%FE",
        "/?q=%00%01&last=zzzz&n=-1",
        "/?q=a&q=b&last=",
        "/?%=%%&&==",
        "/r/",
        "/r/%2e%2e/%2e%2e/etc/passwd",
        "/r/library/base/@",
        "/r/library/base/@sha256:zz",
        "/r/library/base/@sha512:00",
        "/r/library/base/@..%2f..",
        "/r/library/base/@v1/@v1",
        "/r/library/base?sort=%3Cb%3E&last=%FF",
        "/r/library/base?sort=pushed&last=-5",
        "/r/library/base?sort=pushed&last=99999999999999999999999",
        "/r/LIBRARY/base",
        "/r/library/base/tags",
        "/system?last=%00",
        "/login?next=%2F%2Fevil.example",
        "/assets/..%2fsecret",
        "/api/v1/repositories?q=%FF&n=99999999999999999999&last=%00",
        "/api/v1/repositories/library/base/tags?sort=pushed&last=abc",
        "/api/v1/repositories/%2e%2e/tags",
        "/api/v1/repositories/",
        "/api/v1/gc/runs/x",
    ];
    for path in hostile {
        let r = b.get(path).await;
        assert!(!r.status.is_server_error(), "{path}: {} {}", r.status, r.text());
        assert!(!r.text().contains("<script>") || path.starts_with("/assets"), "{path} echoes markup");
    }
    // Open redirects are not followed: `next` stays on this site.
    let page = b.get("/login?next=%2F%2Fevil.example").await;
    assert!(!page.text().contains("evil.example"));
    for form in ["/delete-tag", "/login", "/logout", "/system/gc"] {
        let c = b.cookie_header();
        let h = [("cookie", c.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        for body in ["", "%%%", "csrf=%FF&repo=..&tag=%00", &"a=b&".repeat(10_000)] {
            let r = reg.call("POST", form, &h, body.to_string()).await;
            assert!(!r.status.is_server_error(), "{form} {body:.20}: {}", r.status);
            assert!(r.status.is_client_error(), "{form} accepted a form without its token: {}", r.status);
        }
    }
}

#[tokio::test]
async fn the_first_page_weighs_less_than_100_kb_and_works_without_scripts() {
    let reg = Reg::new("").await;
    for i in 0..30 {
        reg.image(&format!("library/r{i:02}"), "v1", &plain_config("amd64"), format!("layer {i}").as_bytes()).await;
    }
    let mut b = Browser::new(&reg);
    let home = b.get("/").await;
    let css = b.get("/assets/style.css").await;
    let js = b.get("/assets/app.js").await;
    assert_eq!((css.status, js.status), (StatusCode::OK, StatusCode::OK));
    let weight = home.body.len() + css.body.len() + js.body.len();
    assert!(weight < 100_000, "first page weighs {weight} bytes");
    // The search is a plain form, and copy buttons stay hidden until the script shows them.
    assert!(home.text().contains("<form class=\"search\" method=\"get\" action=\"/\">"));
    let q = b.get("/?q=r07").await.text();
    assert!(q.contains("library/r07") && !q.contains("library/r08"));
}

#[tokio::test]
async fn the_ui_can_be_turned_off_and_the_api_stays() {
    let reg = Reg::new("[ui]\nenabled = false\n").await;
    assert_eq!(reg.get("/", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(reg.get("/login", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(reg.get("/api/v1/repositories", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_repository_list_follows_pushes_and_deletions_at_once() {
    let reg = Reg::new("").await;
    reg.image("team-a/one", "v1", &plain_config("amd64"), b"1").await;
    assert_eq!(names(&reg, Some("admin"), "").await, ["team-a/one"]);
    // The list of names is kept a while; what this replica changes shows at once.
    reg.image("team-a/two", "v1", &plain_config("amd64"), b"2").await;
    assert_eq!(names(&reg, Some("admin"), "").await, ["team-a/one", "team-a/two"]);
    let r = reg
        .call("DELETE", "/api/v1/repositories/team-a/one", &[("authorization", &basic("admin"))], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(names(&reg, Some("admin"), "").await, ["team-a/two"]);
}

/// The filesystem driver, counting the listings of the top of the repository tree and holding
/// them until the test opens the gate.
struct GatedWalks {
    inner: std::sync::Arc<dyn registry::storage::Storage>,
    walks: std::sync::atomic::AtomicU64,
    entered: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl registry::storage::Storage for GatedWalks {
    async fn get(
        &self,
        path: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<registry::storage::ByteStream, registry::storage::StorageError> {
        self.inner.get(path, range).await
    }
    async fn read(&self, path: &str) -> Result<Bytes, registry::storage::StorageError> {
        self.inner.read(path).await
    }
    async fn stat(&self, path: &str) -> Result<registry::storage::Meta, registry::storage::StorageError> {
        self.inner.stat(path).await
    }
    async fn put(&self, path: &str, data: Bytes) -> Result<(), registry::storage::StorageError> {
        self.inner.put(path, data).await
    }
    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, registry::storage::StorageError> {
        self.inner.put_if_absent(path, data).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, registry::storage::StorageError> {
        if prefix == registry::paths::REPOSITORIES {
            self.walks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.entered.notify_one();
            drop(self.gate.acquire().await.unwrap());
        }
        self.inner.list(prefix).await
    }
    async fn delete(&self, path: &str) -> Result<bool, registry::storage::StorageError> {
        self.inner.delete(path).await
    }
    async fn delete_all(&self, prefix: &str) -> Result<(), registry::storage::StorageError> {
        self.inner.delete_all(prefix).await
    }
    async fn write_part(
        &self,
        upload: &str,
        resume: &str,
        offset: u64,
        body: registry::storage::ByteStream,
    ) -> Result<registry::storage::Written, registry::storage::StorageError> {
        self.inner.write_part(upload, resume, offset, body).await
    }
    async fn complete(&self, upload: &str, resume: &str, dest: &str) -> Result<(), registry::storage::StorageError> {
        self.inner.complete(upload, resume, dest).await
    }
    async fn abort(&self, upload: &str, resume: &str) -> Result<(), registry::storage::StorageError> {
        self.inner.abort(upload, resume).await
    }
}

#[tokio::test]
async fn concurrent_first_listings_share_one_walk_of_the_repository_tree() {
    use std::sync::Arc;
    let reg = Reg::new("").await;
    let mut pushed = Vec::new();
    for i in 0..40 {
        let name = format!("team-{}/r{i:02}", ["a", "b"][i % 2]);
        reg.image(&name, "v1", &plain_config("amd64"), format!("{i}").as_bytes()).await;
        pushed.push(name);
    }
    pushed.sort();
    // A fresh server (nothing cached) on the same storage, its tree walks counted and held.
    let text = format!(
        "[storage.filesystem]\nroot = {:?}\nfsync = false\n",
        reg._dir.path().join("data").display().to_string()
    );
    let mut state = registry::state(toml::from_str(&text).unwrap()).await.unwrap();
    let gated = Arc::new(GatedWalks {
        inner: state.store.storage().clone(),
        walks: Default::default(),
        entered: tokio::sync::Notify::new(),
        gate: tokio::sync::Semaphore::new(0),
    });
    state.store = Arc::new(registry::store::Store::new(gated.clone()));
    let app = registry::api::router(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 9], 40000))));
    let list = |app: Router| async move {
        let req = Request::builder().uri("/api/v1/repositories?q=/r&n=1000").body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        body["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    // A search needs every name, so it waits for the walk of the whole tree.
    let first = tokio::spawn(list(app.clone()));
    gated.entered.notified().await;
    // The second request runs as far as it can while the first one's walk is held (this
    // runtime has one thread: each yield lets it go on until it waits for something).
    let second = tokio::spawn(list(app.clone()));
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    gated.gate.add_permits(1 << 20);
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first, pushed);
    assert_eq!(second, pushed);
    assert_eq!(gated.walks.load(std::sync::atomic::Ordering::SeqCst), 1, "one walk for both listings");
}

#[tokio::test]
async fn the_push_time_order_follows_a_tag_moved_by_a_push() {
    let reg = Reg::new("").await;
    reg.image("team-a/app", "v1", &plain_config("amd64"), b"one").await;
    reg.image("team-a/app", "v2", &plain_config("amd64"), b"two").await;
    // Push times are the tag links' times: set them apart, v2 the newer.
    let tags = reg._dir.path().join("data/repositories/team-a/app/_manifests/tags");
    let now = std::time::SystemTime::now();
    for (tag, ago) in [("v1", 200), ("v2", 100)] {
        let f = std::fs::File::options().write(true).open(tags.join(tag)).unwrap();
        f.set_modified(now - std::time::Duration::from_secs(ago)).unwrap();
    }
    let order = |r: Reply| -> Vec<String> {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["tags"].as_array().unwrap().iter().map(|t| t["tag"].as_str().unwrap().to_string()).collect()
    };
    // Pages of one tag: the order of the page is the order of the push times read.
    let uri = "/api/v1/repositories/team-a/app/tags?sort=pushed&n=1";
    assert_eq!(order(reg.get(uri, Some("admin")).await), ["v2"]);
    // Moving v1 makes it the newest at once, though the push times are kept a while.
    reg.image("team-a/app", "v1", &plain_config("arm64"), b"three").await;
    assert_eq!(order(reg.get(uri, Some("admin")).await), ["v1"]);
    assert_eq!(order(reg.get(&format!("{uri}&last=1"), Some("admin")).await), ["v2"]);
    let page = reg.get("/r/team-a/app?sort=pushed", Some("admin")).await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn the_first_listing_pages_through_storage_before_the_names_are_read() {
    let reg = Reg::new("").await;
    for name in ["team-a/x", "library/b", "team-b/y", "library/a", "library/c"] {
        reg.image(name, "v1", &plain_config("amd64"), name.as_bytes()).await;
    }
    // Nothing searched yet: each page walks storage as far as it needs, and still holds
    // only what the caller may pull, in order, page after page.
    let r = reg.get("/api/v1/repositories?n=2", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["next"], "library/b");
    assert_eq!(names(&reg, None, "?n=2").await, ["library/a", "library/b"]);
    assert_eq!(names(&reg, None, "?n=2&last=library/b").await, ["library/c"]);
    assert_eq!(names(&reg, Some("alice"), "").await, ["library/a", "library/b", "library/c", "team-a/x"]);
    let page = reg.get("/", Some("admin")).await;
    assert!(page.text().contains("5 repositories on this page"), "{}", page.text());
    // A search reads every name; from then on the list is the kept one, with its total.
    assert_eq!(names(&reg, Some("admin"), "?q=team").await, ["team-a/x", "team-b/y"]);
    assert!(reg.get("/", Some("admin")).await.text().contains("5 repositories<"));
}

/// A registry whose pages spend at most 3 storage reads on figures, holding a repository of
/// 4 tags (too dear) and one of 1 tag (cheap).
async fn budgeted() -> Reg {
    let reg = Reg::new("[ui]\nsummary_budget = 3\n").await;
    for (i, tag) in ["a", "b", "c", "d"].iter().enumerate() {
        reg.image("team-a/big", tag, &plain_config("amd64"), format!("big {i}").as_bytes()).await;
    }
    reg.image("library/small", "v1", &plain_config("amd64"), b"small").await;
    reg
}

#[tokio::test]
async fn a_repository_too_dear_for_the_page_is_listed_at_once_and_summed_up_in_the_background() {
    let reg = budgeted().await;
    // The first listing does not wait for the dear summary: it gives the tag count, and the
    // figures once a background task has them.
    let first = reg.get("/api/v1/repositories", Some("admin")).await.json();
    let [small, big] = [&first["repositories"][0], &first["repositories"][1]];
    assert_eq!((small["name"].as_str(), small["pending"].as_bool()), (Some("library/small"), Some(false)), "{first}");
    assert!(small["size"].as_u64().unwrap() > 0);
    assert_eq!(big["name"], "team-a/big");
    assert_eq!((big["pending"].as_bool(), big["tags"].as_u64()), (Some(true), Some(4)), "{first}");
    assert!(big["size"].is_null() && big["last_push"].is_null());
    // One repository alone is summed up whatever it costs.
    let whole = reg.get("/api/v1/repositories/team-a/big", Some("admin")).await.json();
    assert!(whole["size"].as_u64().unwrap() > 0, "{whole}");
    let mut listed = Value::Null;
    for _ in 0..600 {
        listed = reg.get("/api/v1/repositories?q=big", Some("admin")).await.json()["repositories"][0].clone();
        if listed["pending"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        (&listed["size"], &listed["tags"], listed["pending"].as_bool()),
        (&whole["size"], &json!(4), Some(false))
    );

    // The pages say the figures are being computed, and read without scripts.
    let reg = budgeted().await;
    let home = reg.get("/", Some("admin")).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.text().contains("being computed"), "{}", home.text());
    let reg = budgeted().await;
    let page = reg.get("/r/team-a/big", Some("admin")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("4 tags · size and last push being computed"), "{}", page.text());
}

#[tokio::test]
async fn the_system_page_and_the_api_list_recent_webhook_deliveries_to_admins() {
    // Nothing listens on port 9: the delivery fails, and says why.
    let hook = "[[webhooks]]\nurl = \"http://127.0.0.1:9/secret-path?token=s3cr3t\"\nmax_attempts = 1\n";
    let reg = Reg::new(hook).await;
    reg.image("team-a/app", "v1", &plain_config("amd64"), b"hooked").await;
    let mut deliveries = Value::Null;
    for _ in 0..600 {
        deliveries = reg.get("/api/v1/webhooks/deliveries", Some("admin")).await.json()["deliveries"].clone();
        if deliveries[0]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let d = &deliveries[0];
    assert_eq!(
        (d["action"].as_str(), d["repository"].as_str(), d["reference"].as_str()),
        (Some("push"), Some("team-a/app"), Some("v1")),
        "{deliveries}"
    );
    assert_eq!((d["status"].as_str(), d["attempts"].as_u64()), (Some("failed"), Some(1)), "{deliveries}");
    assert_eq!(d["url"], "http://127.0.0.1:9");
    assert!(
        !d["last_error"].as_str().unwrap().is_empty() && !deliveries.to_string().contains("s3cr3t"),
        "{deliveries}"
    );
    reg.get("/api/v1/webhooks/deliveries", Some("alice")).await.expect(StatusCode::FORBIDDEN, "DENIED");
    reg.get("/api/v1/webhooks/deliveries", None).await.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    let mut admin = Browser::new(&reg);
    admin.sign_in("admin").await;
    let system = admin.get("/system").await.text();
    assert!(system.contains("Webhook deliveries"), "{system}");
    assert!(system.contains("push team-a/app:v1") && system.contains(">failed<"), "{system}");
    assert!(system.contains("#0 http://127.0.0.1:9<") && !system.contains("s3cr3t"), "{system}");
}
