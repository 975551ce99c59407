//! Sign-in sessions and CSRF tokens of the web UI, both signed with one HMAC-SHA256 key.
//!
//! The key is generated once and stored create-only at [`paths::UI_KEY`], as the token
//! signing key is, so every replica on the storage accepts the cookies of the others and no
//! session state is kept anywhere.
//!
//! - **Session** (`berth_session`): `user.expiry.fingerprint.mac`, where the fingerprint is
//!   that of the user's password hash: changing the password or removing the user ends every
//!   session at once. `HttpOnly`, `SameSite=Strict`, `Secure` when served over TLS.
//! - **CSRF** (`berth_csrf`): a random nonce given to every visitor; each form carries
//!   `mac("csrf", nonce)`, and a form whose token does not match the cookie's nonce is refused.
//!   A site that cannot read our pages cannot learn the token, and cannot set our cookie.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;

use crate::auth::accounts::{constant_time_eq, now_secs, random_bytes};
use crate::auth::AuthSetupError;
use crate::paths;
use crate::storage::Storage;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "berth_session";
/// The CSRF nonce cookie's name.
pub const CSRF_COOKIE: &str = "berth_csrf";

/// The UI's signing key.
pub struct Keys {
    key: hmac::Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

/// A verified session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user signed in.
    pub user: String,
    /// The fingerprint of the password hash the user signed in with.
    pub fingerprint: String,
    /// Expiry, seconds since the epoch.
    pub expires: i64,
}

impl Keys {
    /// Reads the key from storage, generating and storing it (create-only) the first time.
    pub async fn load(storage: &dyn Storage) -> Result<Keys, AuthSetupError> {
        let err = |reason: String| AuthSetupError::SigningKey { path: paths::UI_KEY.into(), reason };
        let raw = match storage.read(paths::UI_KEY).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => {
                let fresh = hex::encode(random_bytes::<32>().map_err(|e| err(e.to_string()))?);
                storage.put_if_absent(paths::UI_KEY, Bytes::from(fresh)).await?;
                // Another replica may have written first: use what is stored.
                storage.read(paths::UI_KEY).await?
            }
            Err(e) => return Err(e.into()),
        };
        let key = hex::decode(raw.trim_ascii()).map_err(|e| err(e.to_string()))?;
        if key.len() < 32 {
            return Err(err("the key is shorter than 32 bytes".into()));
        }
        Ok(Keys { key: hmac::Key::new(hmac::HMAC_SHA256, &key) })
    }

    /// A key for tests.
    #[cfg(test)]
    pub fn fixed(bytes: &[u8]) -> Keys {
        Keys { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    fn mac(&self, purpose: &str, parts: &[&str]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in std::iter::once(&purpose).chain(parts) {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p.as_bytes());
        }
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// The cookie value of a session for `user` (whose password hash has `fingerprint`),
    /// valid `ttl_secs`.
    pub fn session_cookie(&self, user: &str, fingerprint: &str, ttl_secs: u64) -> String {
        let user = URL_SAFE_NO_PAD.encode(user);
        let expires = now_secs().saturating_add(ttl_secs as i64).to_string();
        let mac = self.mac("session", &[&user, &expires, fingerprint]);
        format!("{user}.{expires}.{fingerprint}.{mac}")
    }

    /// The session a cookie value holds, if it is ours, intact and not expired.
    pub fn session(&self, value: &str) -> Option<Session> {
        let mut parts = value.split('.');
        let (user, expires, fingerprint, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || !constant_time_eq(self.mac("session", &[user, expires, fingerprint]).as_bytes(), mac.as_bytes())
        {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if now_secs() > expires {
            return None;
        }
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(user).ok()?).ok()?;
        Some(Session { user, fingerprint: fingerprint.to_string(), expires })
    }

    /// A fresh CSRF nonce for a visitor's cookie.
    pub fn new_nonce() -> String {
        random_bytes::<16>().map(hex::encode).unwrap_or_else(|_| hex::encode(now_secs().to_be_bytes()))
    }

    /// The token forms carry for the visitor whose CSRF cookie holds `nonce`.
    pub fn csrf_token(&self, nonce: &str) -> String {
        self.mac("csrf", &[nonce])
    }

    /// True when `token` is the form token of `nonce` (and the nonce is not empty).
    pub fn csrf_ok(&self, nonce: Option<&str>, token: Option<&str>) -> bool {
        match (nonce, token) {
            (Some(n), Some(t)) if !n.is_empty() => constant_time_eq(self.csrf_token(n).as_bytes(), t.as_bytes()),
            _ => false,
        }
    }
}

/// A cookie of a request, by name.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, for the whole site, `Secure` when
/// `secure`; `max_age` 0 removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_and_refuse_tampering() {
        let keys = Keys::fixed(&[7; 32]);
        let cookie = keys.session_cookie("alice", "fp01", 60);
        let s = keys.session(&cookie).unwrap();
        assert_eq!((s.user.as_str(), s.fingerprint.as_str()), ("alice", "fp01"));
        let bob = URL_SAFE_NO_PAD.encode("bob");
        let forged = cookie.replacen(&URL_SAFE_NO_PAD.encode("alice"), &bob, 1);
        assert_eq!(keys.session(&forged), None);
        assert_eq!(Keys::fixed(&[8; 32]).session(&cookie), None, "another key");
        for junk in ["", ".", "a.b.c.d", "a.b.c.d.e", "\u{0}"] {
            assert_eq!(keys.session(junk), None);
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_nonce() {
        let keys = Keys::fixed(&[7; 32]);
        let t = keys.csrf_token("n1");
        assert!(keys.csrf_ok(Some("n1"), Some(&t)));
        assert!(!keys.csrf_ok(Some("n2"), Some(&t)));
        assert!(!keys.csrf_ok(None, Some(&t)));
        assert!(!keys.csrf_ok(Some("n1"), None));
        assert!(!keys.csrf_ok(Some(""), Some(&keys.csrf_token(""))));
    }

    #[test]
    fn cookies_parse() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(axum::http::header::COOKIE, "a=1; berth_csrf=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "berth_csrf"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(set_cookie("s", "v", 5, true), "s=v; Path=/; Max-Age=5; HttpOnly; SameSite=Strict; Secure");
    }
}
