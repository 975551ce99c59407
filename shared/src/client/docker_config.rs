//! Credentials from Docker's configuration file, `config.json` in `$DOCKER_CONFIG` or
//! `~/.docker` (the caller finds the folder: this library does not read the environment, see
//! [`config_dir`]).
//!
//! [`DockerConfig`] is a [`CredentialProvider`]: for a registry it asks, in Docker's order,
//! the credential helper named for that registry in `credHelpers`, else the `credsStore`
//! helper, else the `auths` entry (`auth` is base64 of `user:password`; `identitytoken` is an
//! OAuth2 refresh token, handed on as the user `<token>` the way credential helpers do). A
//! helper is the program `docker-credential-NAME`, run as `get` with the server URL on
//! standard input, answering `{"ServerURL","Username","Secret"}`. `berth login` and
//! `berth logout` write the same file (or the helper, with `store` and `erase`), keeping every
//! setting they do not touch; the file is replaced atomically and is readable by its owner
//! only.
//!
//! Docker Hub's entries are kept under `https://index.docker.io/v1/`, as Docker keeps them;
//! other registries under `host[:port]`. Entries written with a scheme or path
//! (`https://host/v2/`) are found too.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::auth::{CredentialError, CredentialProvider, Credentials};

/// The user name under which an identity (refresh) token travels, as credential helpers
/// return it.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// The key Docker keeps Docker Hub's credentials under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Why the configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// The file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON object Docker writes.
    #[error("{path} is not a valid Docker configuration: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} {action} failed: {reason}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// What it said, or why it could not run.
        reason: String,
    },
}

/// The folder of Docker's configuration: `$DOCKER_CONFIG` when set, else `~/.docker`.
pub fn config_dir(docker_config: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    docker_config.filter(|d| !d.as_os_str().is_empty()).or_else(|| home.map(|h| h.join(".docker")))
}

/// Docker's `config.json` in a folder.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    file: PathBuf,
}

/// `host[:port]` of a configuration key (`https://host/v1/` → `host`).
fn key_host(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// True when a configuration key is for `registry` (as written in references).
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    if registry == "docker.io" {
        matches!(host, "index.docker.io" | "docker.io" | "registry-1.docker.io")
    } else {
        host == registry
    }
}

/// The key and server URL Docker uses for `registry`.
pub fn server_key(registry: &str) -> String {
    if registry == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

impl DockerConfig {
    /// The `config.json` in `dir`.
    pub fn in_dir(dir: &Path) -> DockerConfig {
        DockerConfig { file: dir.join("config.json") }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The parsed file; an empty object when there is none.
    fn read(&self) -> Result<Map<String, Value>, DockerConfigError> {
        let text = match std::fs::read(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(source) => return Err(DockerConfigError::Io { path: self.file.clone(), source }),
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(self.invalid("not a JSON object")),
            Err(e) => Err(self.invalid(&e.to_string())),
        }
    }

    fn invalid(&self, reason: &str) -> DockerConfigError {
        DockerConfigError::Invalid { path: self.file.clone(), reason: reason.to_string() }
    }

    /// Replaces the file with `map`: a temporary file, owner-only, renamed into place.
    fn write(&self, map: &Map<String, Value>) -> Result<(), DockerConfigError> {
        let io = |source| DockerConfigError::Io { path: self.file.clone(), source };
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = serde_json::to_vec_pretty(&Value::Object(map.clone())).map_err(|e| self.invalid(&e.to_string()))?;
        let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let result = options.open(&tmp).and_then(|mut f| {
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
        if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, &self.file)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    /// The helper that keeps `registry`'s credentials, if one is configured.
    fn helper(map: &Map<String, Value>, registry: &str) -> Option<String> {
        let per_registry = map
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|helpers| helpers.iter().find(|(k, _)| key_matches(k, registry)).and_then(|(_, v)| v.as_str()));
        per_registry
            .or_else(|| map.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// The mirrors to try before each registry (`registry-mirrors`, berth's own key): a
    /// list of URLs, as in Docker's `daemon.json`, is for `docker.io`; an object maps a
    /// registry (`docker.io`, `ghcr.io`) to its list.
    pub fn registry_mirrors(&self) -> Result<super::Mirrors, DockerConfigError> {
        let map = self.read()?;
        let urls = |v: &Value| -> Result<Vec<String>, DockerConfigError> {
            let list = v.as_array().ok_or_else(|| self.invalid("registry-mirrors entries must be lists of URLs"))?;
            list.iter()
                .map(|u| {
                    u.as_str().map(str::to_string).ok_or_else(|| self.invalid("a registry mirror is not a string"))
                })
                .collect()
        };
        let mut mirrors = super::Mirrors::new();
        match map.get("registry-mirrors") {
            None | Some(Value::Null) => {}
            Some(list @ Value::Array(_)) => {
                mirrors.insert(crate::image_ref::DOCKER_HUB.to_string(), urls(list)?);
            }
            Some(Value::Object(per_registry)) => {
                for (registry, list) in per_registry {
                    mirrors.insert(registry.clone(), urls(list)?);
                }
            }
            Some(_) => return Err(self.invalid("registry-mirrors must be a list of URLs or an object of lists")),
        }
        for url in mirrors.values().flatten() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(self.invalid(&format!("registry mirror {url:?} is not an http:// or https:// URL")));
            }
        }
        Ok(mirrors)
    }

    /// The credentials for `registry` (as written in references: `docker.io`,
    /// `127.0.0.1:5000`).
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, DockerConfigError> {
        let map = self.read()?;
        if let Some(helper) = Self::helper(&map, registry) {
            return helper_get(&helper, &server_key(registry));
        }
        let Some(auths) = map.get("auths").and_then(Value::as_object) else { return Ok(None) };
        // An exact key first, then any key naming the same host.
        let entry = auths
            .get(&server_key(registry))
            .or_else(|| auths.iter().find(|(k, _)| key_matches(k, registry)).map(|(_, v)| v));
        let Some(entry) = entry.and_then(Value::as_object) else { return Ok(None) };
        let field = |name: &str| entry.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        if let Some(token) = field("identitytoken") {
            return Ok(Some(Credentials { username: IDENTITY_TOKEN_USER.into(), password: token.to_string() }));
        }
        if let Some(auth) = field("auth") {
            let decoded = STANDARD.decode(auth.trim()).map_err(|_| self.invalid("an auth entry is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| self.invalid("an auth entry is not UTF-8"))?;
            let (user, password) = text.split_once(':').ok_or_else(|| self.invalid("an auth entry has no ':'"))?;
            return Ok(Some(Credentials { username: user.to_string(), password: password.to_string() }));
        }
        match (field("username"), field("password")) {
            (Some(u), Some(p)) => Ok(Some(Credentials { username: u.to_string(), password: p.to_string() })),
            _ => Ok(None),
        }
    }

    /// Saves `credentials` for `registry`: in its credential helper when one is configured
    /// (the file then only lists the registry, as Docker does), else in `auths`.
    pub fn store(&self, registry: &str, credentials: &Credentials) -> Result<(), DockerConfigError> {
        let mut map = self.read()?;
        let key = server_key(registry);
        let entry = match Self::helper(&map, registry) {
            Some(helper) => {
                let input =
                    json!({ "ServerURL": key, "Username": credentials.username, "Secret": credentials.password });
                run_helper(&helper, "store", input.to_string().as_bytes())?;
                json!({})
            }
            None => {
                let raw = format!("{}:{}", credentials.username, credentials.password);
                json!({ "auth": STANDARD.encode(raw) })
            }
        };
        let auths = map.entry("auths").or_insert_with(|| json!({}));
        let Some(auths) = auths.as_object_mut() else { return Err(self.invalid("auths is not an object")) };
        auths.retain(|k, _| !key_matches(k, registry) || *k == key);
        auths.insert(key, entry);
        self.write(&map)
    }

    /// Forgets `registry`'s credentials; returns whether there were any.
    pub fn erase(&self, registry: &str) -> Result<bool, DockerConfigError> {
        let mut map = self.read()?;
        let mut found = false;
        if let Some(helper) = Self::helper(&map, registry) {
            match run_helper(&helper, "erase", server_key(registry).as_bytes()) {
                Ok(_) => found = true,
                Err(DockerConfigError::Helper { reason, .. }) if not_found(&reason) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(auths) = map.get_mut("auths").and_then(Value::as_object_mut) {
            let before = auths.len();
            auths.retain(|k, _| !key_matches(k, registry));
            found |= auths.len() != before;
        }
        if found {
            self.write(&map)?;
        }
        Ok(found)
    }
}

/// True when a helper's error says it has nothing for that server.
fn not_found(message: &str) -> bool {
    message.contains("credentials not found")
}

fn run_helper(helper: &str, action: &'static str, input: &[u8]) -> Result<Vec<u8>, DockerConfigError> {
    let err = |reason: String| DockerConfigError::Helper { helper: helper.to_string(), action, reason };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        // Helpers print their error on standard output; neither stream holds the secret.
        let said = String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout });
        return Err(err(said.trim().chars().take(200).collect()));
    }
    Ok(out.stdout)
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>, DockerConfigError> {
    let out = match run_helper(helper, "get", server.as_bytes()) {
        Ok(out) => out,
        Err(DockerConfigError::Helper { reason, .. }) if not_found(&reason) => return Ok(None),
        Err(e) => return Err(e),
    };
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out).map_err(|e| DockerConfigError::Helper {
        helper: helper.to_string(),
        action: "get",
        reason: format!("unreadable answer: {e}"),
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username: answer.username, password: answer.secret }))
}

impl CredentialProvider for DockerConfig {
    /// As Docker does, a credential helper that cannot run or answer is a warning, and the
    /// registry is tried anonymously; a configuration file that is not JSON is an error.
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, CredentialError> {
        match self.lookup(registry) {
            Ok(found) => Ok(found),
            Err(e @ DockerConfigError::Helper { .. }) => {
                tracing::warn!(registry, error = %crate::error_chain(&e), "no credentials from the credential helper; trying anonymously");
                Ok(None)
            }
            Err(e) => Err(CredentialError { registry: registry.to_string(), source: Box::new(e) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials { username: u.into(), password: p.into() }
    }

    #[test]
    fn reads_registry_mirrors_as_a_list_or_per_registry() {
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig::in_dir(dir.path());
        assert!(config.registry_mirrors().unwrap().is_empty());
        std::fs::write(config.path(), r#"{"registry-mirrors": ["http://m.lan:5000"]}"#).unwrap();
        let m = config.registry_mirrors().unwrap();
        assert_eq!(m.get("docker.io").unwrap(), &vec!["http://m.lan:5000".to_string()]);
        std::fs::write(config.path(), r#"{"registry-mirrors": {"ghcr.io": ["https://a", "http://b"]}}"#).unwrap();
        let m = config.registry_mirrors().unwrap();
        assert_eq!((m.len(), m["ghcr.io"].len()), (1, 2));
        std::fs::write(config.path(), r#"{"registry-mirrors": ["m.lan"]}"#).unwrap();
        assert!(config.registry_mirrors().unwrap_err().to_string().contains("http://"));
    }

    #[test]
    fn reads_auths_in_every_form_docker_writes() {
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig::in_dir(dir.path());
        assert_eq!(config.lookup("ghcr.io").unwrap(), None, "no file, no credentials");
        let file = json!({
            "auths": {
                "https://index.docker.io/v1/": { "auth": STANDARD.encode("hubuser:hubpass") },
                "https://registry.lan:5000/v2/": { "auth": STANDARD.encode("lan:pa:ss") },
                "127.0.0.1:5000": { "auth": STANDARD.encode("alice:"), "identitytoken": "refresh-me" },
                "plain.example": { "username": "u", "password": "p" },
                "empty.example": {}
            },
            "psFormat": "table {{.ID}}"
        });
        std::fs::write(config.path(), file.to_string()).unwrap();
        assert_eq!(config.lookup("docker.io").unwrap(), Some(creds("hubuser", "hubpass")));
        assert_eq!(config.lookup("registry.lan:5000").unwrap(), Some(creds("lan", "pa:ss")));
        assert_eq!(config.lookup("127.0.0.1:5000").unwrap(), Some(creds(IDENTITY_TOKEN_USER, "refresh-me")));
        assert_eq!(config.lookup("plain.example").unwrap(), Some(creds("u", "p")));
        assert_eq!(config.lookup("empty.example").unwrap(), None);
        assert_eq!(config.lookup("registry.lan").unwrap(), None, "the port is part of the name");

        std::fs::write(config.path(), "[1]").unwrap();
        assert!(config.lookup("docker.io").is_err());
        std::fs::write(config.path(), "").unwrap();
        assert_eq!(config.lookup("docker.io").unwrap(), None);
        assert_eq!(config_dir(None, Some("/home/me".into())), Some(PathBuf::from("/home/me/.docker")));
        assert_eq!(config_dir(Some("/etc/d".into()), Some("/home/me".into())), Some(PathBuf::from("/etc/d")));
    }

    #[test]
    fn store_and_erase_keep_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig::in_dir(&dir.path().join("new"));
        config.store("127.0.0.1:5000", &creds("alice", "s3cret")).unwrap();
        let mode = std::fs::metadata(config.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(config.lookup("127.0.0.1:5000").unwrap(), Some(creds("alice", "s3cret")));

        let mut map = config.read().unwrap();
        map.insert("detachKeys".into(), json!("ctrl-x"));
        map["auths"]["https://127.0.0.1:5000/v1/"] = json!({ "auth": STANDARD.encode("old:old") });
        config.write(&map).unwrap();
        config.store("127.0.0.1:5000", &creds("alice", "n3w")).unwrap();
        config.store("docker.io", &creds("hub", "h")).unwrap();
        let map = config.read().unwrap();
        assert_eq!(map["detachKeys"], "ctrl-x");
        let keys: Vec<&String> = map["auths"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["127.0.0.1:5000", "https://index.docker.io/v1/"]);
        assert_eq!(config.lookup("127.0.0.1:5000").unwrap(), Some(creds("alice", "n3w")));

        assert!(config.erase("127.0.0.1:5000").unwrap());
        assert!(!config.erase("127.0.0.1:5000").unwrap());
        assert_eq!(config.lookup("127.0.0.1:5000").unwrap(), None);
        assert_eq!(config.lookup("docker.io").unwrap(), Some(creds("hub", "h")));
        assert_eq!(config.read().unwrap()["detachKeys"], "ctrl-x");
    }

    /// A credential helper written as a shell script, keeping its store in a folder.
    fn fake_helper(bin: &Path, name: &str, store: &Path) {
        let script = format!(
            r#"#!/bin/sh
store={store}
read -r line || true
case "$1" in
  get) f="$store/$(printf %s "$line" | tr -c 'a-zA-Z0-9' _)"
       if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) url=$(printf %s "$line" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
         printf %s "$line" > "$store/$(printf %s "$url" | tr -c 'a-zA-Z0-9' _)" ;;
  erase) f="$store/$(printf %s "$line" | tr -c 'a-zA-Z0-9' _)"
         if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
"#,
            store = store.display()
        );
        let path = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn credential_helpers_get_store_and_erase() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, store) = (dir.path().join("bin"), dir.path().join("store"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        let unique = format!("berthtest{}", std::process::id());
        fake_helper(&bin, &unique, &store);
        // Helpers are found on PATH, as Docker finds them: put the fake one there. Only
        // adding a folder, so other tests running commands are not affected.
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        std::env::set_var("PATH", path);

        let config = DockerConfig::in_dir(dir.path());
        std::fs::write(config.path(), json!({ "credHelpers": { "reg.example": unique } }).to_string()).unwrap();
        assert_eq!(config.lookup("reg.example").unwrap(), None);
        config.store("reg.example", &creds("ci", "t0ken")).unwrap();
        assert_eq!(config.lookup("reg.example").unwrap(), Some(creds("ci", "t0ken")));
        let text = std::fs::read_to_string(config.path()).unwrap();
        assert!(!text.contains("t0ken"), "the secret went to the helper, not the file: {text}");
        assert!(config.erase("reg.example").unwrap());
        assert_eq!(config.lookup("reg.example").unwrap(), None);
        // A registry without a helper entry still uses auths.
        config.store("other.example", &creds("o", "p")).unwrap();
        assert_eq!(config.lookup("other.example").unwrap(), Some(creds("o", "p")));
        // A helper that does not exist is an error that names it.
        std::fs::write(config.path(), json!({ "credsStore": "nonexistent-helper-xyz" }).to_string()).unwrap();
        let err = config.lookup("x.example").unwrap_err().to_string();
        assert!(err.contains("docker-credential-nonexistent-helper-xyz"), "{err}");
        assert_eq!(config.credentials("x.example").unwrap(), None, "a missing helper means anonymous");
        std::fs::write(config.path(), "{").unwrap();
        assert!(config.credentials("x.example").is_err());
    }
}
