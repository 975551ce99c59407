//! Registry authentication: credentials from a caller-supplied [`CredentialProvider`], the
//! `WWW-Authenticate` challenges registries answer with, and bearer tokens.
//!
//! Registries challenge a request with `401` and either `Basic realm=…` or
//! `Bearer realm=…,service=…,scope=…` (the distribution "token authentication"
//! specification, docs/spec/auth/token.md). For `Basic`, the client repeats the request
//! with the registry's credentials. For `Bearer`, it asks the realm for a token for the
//! scopes it needs (`repository:library/busybox:pull`), anonymously or with the
//! credentials as HTTP basic authentication, and caches the token per registry and scope
//! until shortly before it expires. Once a registry is known to want tokens, requests for
//! a new scope fetch one before the first try.
//!
//! Credentials never appear in `Debug` output or errors.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

/// A user name and password (or access token used as a password) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Why credentials could not be looked up (a later credential helper may fail to run).
#[derive(Debug, thiserror::Error)]
#[error("cannot get credentials for {registry}")]
pub struct CredentialError {
    /// The registry whose credentials were wanted.
    pub registry: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where the client gets credentials from. It is asked only when a registry challenges a
/// request, with the registry as written in image references (`docker.io`, `ghcr.io`,
/// `127.0.0.1:5000`); `None` means anonymous access. Docker's `config.json` and credential
/// helpers will implement this.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// The credentials for `registry`, if any.
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, CredentialError>;
}

/// No credentials for any registry: anonymous access only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialProvider for Anonymous {
    fn credentials(&self, _registry: &str) -> Result<Option<Credentials>, CredentialError> {
        Ok(None)
    }
}

/// Fixed credentials per registry, such as ones given on the command line.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials(pub HashMap<String, Credentials>);

impl StaticCredentials {
    /// Credentials for one registry.
    pub fn single(registry: &str, credentials: Credentials) -> StaticCredentials {
        StaticCredentials(HashMap::from([(registry.to_string(), credentials)]))
    }
}

impl CredentialProvider for StaticCredentials {
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, CredentialError> {
        Ok(self.0.get(registry).cloned())
    }
}

/// The scopes a request needs, such as `repository:library/busybox:pull`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Scope(BTreeSet<String>);

impl Scope {
    /// Pull access to `repository`.
    pub(crate) fn pull(repository: &str) -> Scope {
        Scope(BTreeSet::from([format!("repository:{repository}:pull")]))
    }

    /// Pull and push access to `repository`.
    pub(crate) fn push(repository: &str) -> Scope {
        Scope(BTreeSet::from([format!("repository:{repository}:pull,push")]))
    }

    /// This scope plus pull access to `repository` (to mount a blob from it).
    pub(crate) fn and_pull(mut self, repository: &str) -> Scope {
        self.0.insert(format!("repository:{repository}:pull"));
        self
    }

    /// True when every scope asks for pull access only (a read, which a mirror may answer).
    pub(crate) fn pull_only(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|s| s.ends_with(":pull"))
    }

    /// Adds the space-separated scopes a challenge asked for.
    fn merged(&self, extra: Option<&str>) -> Scope {
        let mut all = self.0.clone();
        all.extend(extra.unwrap_or("").split(' ').filter(|s| !s.is_empty()).map(str::to_string));
        Scope(all)
    }

    fn key(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join(" ")
    }

    pub(crate) fn items(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// An authentication challenge from `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// Token authentication.
    Bearer {
        /// Where tokens come from.
        realm: String,
        /// The `service` parameter to send back.
        service: Option<String>,
        /// The scope the registry said it wants, if it said.
        scope: Option<String>,
    },
}

/// The challenge to answer among `WWW-Authenticate` header values: `Bearer` if offered,
/// else `Basic`; `None` when neither is there (or a `Bearer` without a realm).
pub(crate) fn pick_challenge<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for value in headers {
        for (scheme, params) in parse_www_authenticate(value) {
            let param = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = param("realm") {
                    return Some(Challenge::Bearer { realm, service: param("service"), scope: param("scope") });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Splits one `WWW-Authenticate` value into challenges: scheme and `name=value` parameters,
/// values either tokens or quoted strings (RFC 9110 section 11.6.1). A comma separates
/// both parameters and challenges; a new challenge starts with a token not followed by `=`.
pub(crate) fn parse_www_authenticate(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let bytes = value.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b);
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t' || bytes[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && is_token(bytes[*i]) {
            *i += 1;
        }
        String::from_utf8_lossy(&bytes[start..*i]).into_owned()
    };
    loop {
        skip_ws(&mut i);
        if i >= bytes.len() {
            break;
        }
        let word = token(&mut i);
        if word.is_empty() {
            // A stray character: skip it rather than loop forever.
            i += 1;
            continue;
        }
        // `word` followed by '=' is a parameter of the current challenge.
        let mut j = i;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let val = if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                    }
                    v.push(bytes[i]);
                    i += 1;
                }
                i += 1; // closing quote
                String::from_utf8_lossy(&v).into_owned()
            } else {
                token(&mut i)
            };
            if let Some(last) = out.last_mut() {
                last.1.push((word, val));
            }
        } else {
            out.push((word, Vec::new()));
        }
    }
    out
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    expires: Instant,
}

impl Token {
    /// A token valid for `expires_in` seconds (60 when the server said nothing, as the
    /// specification says); it is dropped 10 seconds early to allow for slow requests.
    pub(crate) fn new(value: String, expires_in: Option<u64>) -> Token {
        let secs = expires_in.unwrap_or(60).max(10);
        Token { value, expires: Instant::now() + Duration::from_secs(secs - 5) }
    }

    fn fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

/// What the client knows about one registry's authentication.
#[derive(Default)]
pub(crate) struct HostAuth {
    /// The last challenge seen, once the registry has challenged.
    pub(crate) challenge: Option<Challenge>,
    /// The registry's credentials, once asked for.
    pub(crate) credentials: Option<Option<Credentials>>,
    tokens: HashMap<String, Token>,
}

impl HostAuth {
    /// A cached, unexpired token for `scope`.
    pub(crate) fn token(&self, scope: &Scope) -> Option<&Token> {
        self.tokens.get(&scope.key()).filter(|t| t.fresh())
    }

    pub(crate) fn store_token(&mut self, scope: &Scope, token: Token) {
        self.tokens.retain(|_, t| t.fresh());
        self.tokens.insert(scope.key(), token);
    }

    pub(crate) fn forget_token(&mut self, scope: &Scope) {
        self.tokens.remove(&scope.key());
    }

    /// The scopes to ask the token service for: ours plus what the challenge named.
    pub(crate) fn token_scope(&self, scope: &Scope) -> Scope {
        match &self.challenge {
            Some(Challenge::Bearer { scope: extra, .. }) => scope.merged(extra.as_deref()),
            _ => scope.clone(),
        }
    }
}

/// What the token service answers (token.md, "Token Response Fields").
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) token: Option<String>,
    pub(crate) access_token: Option<String>,
    pub(crate) expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#;
        assert_eq!(
            pick_challenge([h]),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
    }

    #[test]
    fn parses_several_challenges_and_odd_spacing() {
        let h = r#"Basic realm="Registry Realm", Bearer realm = "http://127.0.0.1:1/token" , service=reg, error="insufficient_scope""#;
        let parsed = parse_www_authenticate(h);
        assert_eq!(parsed.len(), 2, "{parsed:?}");
        assert_eq!(parsed[0].0, "Basic");
        assert_eq!(parsed[1].1[1], ("service".to_string(), "reg".to_string()));
        assert!(
            matches!(pick_challenge([h]), Some(Challenge::Bearer { ref realm, .. }) if realm == "http://127.0.0.1:1/token")
        );
        assert_eq!(pick_challenge([r#"Basic realm="x""#]), Some(Challenge::Basic));
        assert_eq!(pick_challenge(["basic"]), Some(Challenge::Basic));
        assert_eq!(pick_challenge(["Negotiate", "Bearer service=x"]), None);
        assert_eq!(
            pick_challenge([r#"Bearer realm="a\"b""#]),
            Some(Challenge::Bearer { realm: "a\"b".into(), service: None, scope: None })
        );
        // Garbage does not panic.
        for junk in ["", "=", ",,,", "\"", "Bearer realm=\"unterminated", "Bearer =x", "é=ü"] {
            let _ = pick_challenge([junk]);
        }
    }

    #[test]
    fn scopes_merge_and_key_stably() {
        let s = Scope::push("team/app").and_pull("team/base");
        assert_eq!(s.key(), "repository:team/app:pull,push repository:team/base:pull");
        let merged = Scope::pull("a").merged(Some("repository:a:pull registry:catalog:*"));
        assert_eq!(merged.items().count(), 2);
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials { username: "me".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
        let p = StaticCredentials::single("ghcr.io", c.clone());
        assert_eq!(p.credentials("ghcr.io").unwrap(), Some(c));
        assert_eq!(p.credentials("docker.io").unwrap(), None);
        assert_eq!(Anonymous.credentials("x").unwrap(), None);
    }

    #[test]
    fn tokens_expire() {
        let mut auth = HostAuth::default();
        let scope = Scope::pull("a");
        auth.store_token(&scope, Token::new("t".into(), Some(300)));
        assert_eq!(auth.token(&scope).map(|t| t.value.as_str()), Some("t"));
        assert!(auth.token(&Scope::pull("b")).is_none());
        auth.store_token(&scope, Token { value: "old".into(), expires: Instant::now() });
        assert!(auth.token(&scope).is_none());
    }
}
