//! Accounts: users from an htpasswd file with bcrypt passwords, and robot accounts kept in
//! storage.
//!
//! The htpasswd file is read at start-up and again when its size or modification time
//! changes (looked at most every two seconds). Only bcrypt entries (`$2y$`, `$2b$`, `$2a$`, as
//! `htpasswd -B` writes) are accepted; others are skipped with a warning. bcrypt is slow on
//! purpose, so a verified password is remembered for a while (`auth.password_cache_secs`)
//! under a salted hash of the user, the password and the stored hash: a changed password
//! misses the cache at once.
//!
//! Robots log in as `robot$NAME` with a 256-bit random secret that is shown once, at
//! creation. Storage keeps only a salted SHA-256 of it (a fast hash is enough for a secret
//! that cannot be guessed), under `_auth/robots/<name>` (see [`crate::paths`]), so every
//! replica sees the same robots; `berth robot create|list|revoke` calls [`create_robot`],
//! [`list_robots`] and [`revoke_robot`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::paths;
use crate::storage::{Storage, StorageError};

/// The user name prefix of robot accounts.
pub const ROBOT_PREFIX: &str = "robot$";

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The htpasswd file could not be read.
    #[error("cannot read the htpasswd file {path}")]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A robot name is not valid.
    #[error("invalid robot name {0:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")]
    RobotName(String),
    /// A robot of that name exists already.
    #[error("robot {0} exists already (revoke it first to replace it)")]
    RobotExists(String),
    /// No robot of that name.
    #[error("no robot named {0}")]
    RobotUnknown(String),
    /// A stored robot record is not valid JSON.
    #[error("the record of robot {name} is damaged: {reason}")]
    RobotRecord {
        /// The robot.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The random generator failed.
    #[error("cannot generate a secret")]
    Random,
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `n` random bytes from the system's secure generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], AccountError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| AccountError::Random)?;
    Ok(out)
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Compares two byte strings in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The users of an htpasswd file.
pub struct Htpasswd {
    path: Option<PathBuf>,
    state: RwLock<HtState>,
    cache_ttl: Duration,
    cache_salt: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// bcrypt verifications run, known users and unknown alike.
    bcrypt_runs: AtomicU64,
}

#[derive(Default)]
struct HtState {
    users: HashMap<String, String>,
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
    /// A hash no password matches, at the users' cost: a name that is no user's is checked
    /// against it, so that it costs what a user's does and its answer does not come sooner
    /// (which would tell who the users are). `None` without users.
    dummy: Option<String>,
}

impl HtState {
    fn new(users: HashMap<String, String>, stamp: Option<(SystemTime, u64)>) -> HtState {
        let dummy = dummy_hash(&users);
        HtState { users, stamp, checked: Some(Instant::now()), dummy }
    }
}

/// The cost of a bcrypt hash (`$2b$10$…` is 10).
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.get(4..6)?.parse().ok()
}

/// A well-formed bcrypt hash at the cost most users' hashes have (the higher on a tie),
/// matching no password one can send: its salt and digest are those of a random secret.
fn dummy_hash(users: &HashMap<String, String>) -> Option<String> {
    let mut costs: HashMap<u32, usize> = HashMap::new();
    for hash in users.values() {
        if let Some(cost) = bcrypt_cost(hash) {
            *costs.entry(cost).or_default() += 1;
        }
    }
    let (cost, _) = costs.into_iter().max_by_key(|&(cost, n)| (n, cost))?;
    let secret = hex::encode(random_bytes::<16>().ok()?);
    // Made at the lowest cost (quick), then given the users' cost: verifying against it
    // runs the users' number of rounds and never matches.
    let quick = bcrypt::hash(secret, 4).ok()?;
    Some(format!("$2b${cost:02}{}", quick.get(6..)?))
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd").field("path", &self.path).finish()
    }
}

/// How often the htpasswd file is looked at for changes.
const HTPASSWD_CHECK: Duration = Duration::from_secs(2);

impl Htpasswd {
    /// Reads `path` (or, without one, no users); fails when the file cannot be read.
    pub fn open(path: Option<&Path>, cache_ttl: Duration) -> Result<Htpasswd, AccountError> {
        let ht = Htpasswd {
            path: path.map(Path::to_path_buf),
            state: RwLock::new(HtState::default()),
            cache_ttl,
            cache_salt: random_bytes()?,
            verified: Mutex::new(HashMap::new()),
            bcrypt_runs: AtomicU64::new(0),
        };
        if let Some(path) = path {
            let (users, stamp) = read_htpasswd(path)?;
            *ht.state.write().unwrap_or_else(PoisonError::into_inner) = HtState::new(users, Some(stamp));
        }
        Ok(ht)
    }

    /// Re-reads the file when it changed; a file that became unreadable keeps the old users.
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if state.checked.is_some_and(|c| c.elapsed() < HTPASSWD_CHECK) {
                return;
            }
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.checked = Some(Instant::now());
        let stamp = std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == state.stamp {
            return;
        }
        match read_htpasswd(path) {
            Ok((users, stamp)) => {
                tracing::info!(path = %path.display(), users = users.len(), "htpasswd file reloaded");
                *state = HtState::new(users, Some(stamp));
            }
            Err(e) => tracing::warn!(error = %shared::error_chain(&e), "keeping the users read before"),
        }
    }

    /// The stored bcrypt hash of `user`.
    fn hash_of(&self, user: &str) -> Option<String> {
        self.refresh();
        self.state.read().unwrap_or_else(PoisonError::into_inner).users.get(user).cloned()
    }

    /// The hash of `user`, and whether it is theirs: for a name that is no user's, the dummy
    /// hash at the users' cost (see [`HtState`]).
    fn hash_or_dummy(&self, user: &str) -> Option<(String, bool)> {
        self.refresh();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match state.users.get(user) {
            Some(hash) => Some((hash.clone(), true)),
            None => state.dummy.clone().map(|dummy| (dummy, false)),
        }
    }

    /// True when `user` exists and `password` is theirs. Returns a fingerprint of the stored
    /// hash (for refresh tokens) on success. A user name that is not a user's costs the same
    /// bcrypt work as a wrong password of a user.
    pub async fn verify(&self, user: &str, password: &str) -> Option<String> {
        let (hash, known) = self.hash_or_dummy(user)?;
        let fingerprint = hex::encode(&sha256(&[hash.as_bytes()])[..8]);
        let key = sha256(&[&self.cache_salt, user.as_bytes(), password.as_bytes(), hash.as_bytes()]);
        {
            let cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if known && cache.get(&key).is_some_and(|until| Instant::now() < *until) {
                return Some(fingerprint);
            }
        }
        let password = password.to_string();
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if !ok || !known {
            return None;
        }
        if !self.cache_ttl.is_zero() {
            let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() > 10_000 {
                let now = Instant::now();
                cache.retain(|_, until| now < *until);
            }
            cache.insert(key, Instant::now() + self.cache_ttl);
        }
        Some(fingerprint)
    }

    /// The fingerprint of `user`'s current password hash, if the user exists.
    pub fn fingerprint(&self, user: &str) -> Option<String> {
        self.hash_of(user).map(|h| hex::encode(&sha256(&[h.as_bytes()])[..8]))
    }
}

/// Users and their hashes, and the file's modification time and size.
type HtFile = (HashMap<String, String>, (SystemTime, u64));

fn read_htpasswd(path: &Path) -> Result<HtFile, AccountError> {
    let err = |source| AccountError::Htpasswd { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(err)?;
    let text = std::fs::read_to_string(path).map_err(err)?;
    let stamp = (meta.modified().map_err(err)?, meta.len());
    Ok((parse_htpasswd(&text, path), stamp))
}

/// The bcrypt entries of an htpasswd file; others are skipped with a warning naming the
/// line (never its content).
fn parse_htpasswd(text: &str, path: &Path) -> HashMap<String, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            tracing::warn!(path = %path.display(), line = i + 1, "htpasswd line without ':' skipped");
            continue;
        };
        if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
            tracing::warn!(
                path = %path.display(),
                line = i + 1,
                user,
                "not a bcrypt hash (use htpasswd -B); user skipped",
            );
            continue;
        }
        if user.starts_with(ROBOT_PREFIX) || user.is_empty() {
            tracing::warn!(
                path = %path.display(),
                line = i + 1,
                "user names may not be empty or start with robot$; skipped",
            );
            continue;
        }
        users.insert(user.to_string(), hash.to_string());
    }
    users
}

/// A bcrypt hash of `password` at `cost` (4 to 31; `htpasswd -B` uses 5, 10 is common), as
/// an htpasswd file holds it.
pub fn hash_password(password: &str, cost: u32) -> Result<String, AccountError> {
    bcrypt::hash(password, cost).map_err(|_| AccountError::Random)
}

/// A robot account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Robot {
    /// Its name (it logs in as `robot$NAME`).
    pub name: String,
    /// When it was created, seconds since the epoch.
    pub created: i64,
    /// When it stops working, seconds since the epoch; `None` never.
    pub expires: Option<i64>,
    /// Hex salt of the secret's hash.
    salt: String,
    /// Hex SHA-256 of the salt and the secret.
    secret_sha256: String,
}

impl Robot {
    /// The name it logs in with.
    pub fn login(&self) -> String {
        format!("{ROBOT_PREFIX}{}", self.name)
    }

    /// True once its expiry has passed.
    pub fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// True when `secret` is its secret.
    pub fn check(&self, secret: &str) -> bool {
        let (Ok(salt), Ok(want)) = (hex::decode(&self.salt), hex::decode(&self.secret_sha256)) else { return false };
        constant_time_eq(&sha256(&[&salt, secret.as_bytes()]), &want)
    }

    /// A fingerprint of this robot's credential, for refresh tokens: a recreated robot of
    /// the same name gets another.
    pub fn fingerprint(&self) -> String {
        hex::encode(&sha256(&[self.secret_sha256.as_bytes()])[..8])
    }
}

/// True for names `berth robot create` accepts.
pub fn valid_robot_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

/// Creates robot `name`, expiring after `expires_in` if given; returns it and its secret,
/// which is not kept anywhere and cannot be shown again.
pub async fn create_robot(
    storage: &dyn Storage,
    name: &str,
    expires_in: Option<Duration>,
) -> Result<(Robot, String), AccountError> {
    if !valid_robot_name(name) {
        return Err(AccountError::RobotName(name.to_string()));
    }
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let salt = random_bytes::<16>()?;
    let created = now_secs();
    let robot = Robot {
        name: name.to_string(),
        created,
        expires: expires_in.map(|d| created.saturating_add(d.as_secs() as i64)),
        salt: hex::encode(salt),
        secret_sha256: hex::encode(sha256(&[&salt, secret.as_bytes()])),
    };
    let json = serde_json::to_vec_pretty(&robot)
        .map_err(|e| AccountError::RobotRecord { name: name.to_string(), reason: e.to_string() })?;
    if !storage.put_if_absent(&paths::robot(name), Bytes::from(json)).await? {
        return Err(AccountError::RobotExists(name.to_string()));
    }
    tracing::info!(
        target: "audit",
        event = "robot_created",
        robot = name,
        expires = ?robot.expires,
        "robot account created",
    );
    Ok((robot, secret))
}

/// The robot `name`, if there is one.
pub async fn get_robot(storage: &dyn Storage, name: &str) -> Result<Option<Robot>, AccountError> {
    if !valid_robot_name(name) {
        return Ok(None);
    }
    match storage.read(&paths::robot(name)).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AccountError::RobotRecord { name: name.to_string(), reason: e.to_string() }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every robot, by name.
pub async fn list_robots(storage: &dyn Storage) -> Result<Vec<Robot>, AccountError> {
    let mut out = Vec::new();
    for name in storage.list(paths::ROBOTS).await? {
        if let Some(robot) = get_robot(storage, &name).await? {
            out.push(robot);
        }
    }
    Ok(out)
}

/// Deletes robot `name`: its secret stops working on every replica within
/// `auth.robot_cache_secs`.
pub async fn revoke_robot(storage: &dyn Storage, name: &str) -> Result<(), AccountError> {
    if !valid_robot_name(name) || !storage.delete(&paths::robot(name)).await? {
        return Err(AccountError::RobotUnknown(name.to_string()));
    }
    tracing::info!(target: "audit", event = "robot_revoked", robot = name, "robot account revoked");
    Ok(())
}

/// When a robot was read, and what was found.
type CachedRobot = (Instant, Option<Arc<Robot>>);

/// Robots read from storage, each trusted for a while.
pub(crate) struct RobotCache {
    storage: Arc<dyn Storage>,
    ttl: Duration,
    entries: RwLock<HashMap<String, CachedRobot>>,
}

impl RobotCache {
    pub(crate) fn new(storage: Arc<dyn Storage>, ttl: Duration) -> RobotCache {
        RobotCache { storage, ttl, entries: RwLock::new(HashMap::new()) }
    }

    /// The robot `name` if it exists and has not expired.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Arc<Robot>>, AccountError> {
        if !self.ttl.is_zero() {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, robot)) = entries.get(name) {
                if at.elapsed() < self.ttl {
                    return Ok(robot.clone().filter(|r| !r.expired(now_secs())));
                }
            }
        }
        let robot = get_robot(self.storage.as_ref(), name).await?.map(Arc::new);
        if !self.ttl.is_zero() {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            if entries.len() > 10_000 {
                entries.clear();
            }
            entries.insert(name.to_string(), (Instant::now(), robot.clone()));
        }
        Ok(robot.filter(|r| !r.expired(now_secs())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn htpasswd_users_verify_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let alice = hash_password("wonderland", 4).unwrap();
        std::fs::write(&file, format!("# users\nalice:{alice}\nbob:{{SHA}}abc\nrobot$x:{alice}\nbroken\n")).unwrap();
        let ht = Htpasswd::open(Some(&file), Duration::from_secs(60)).unwrap();
        let fp = ht.verify("alice", "wonderland").await.unwrap();
        assert_eq!(ht.verify("alice", "wonderland").await.unwrap(), fp, "cached");
        assert!(ht.verify("alice", "Wonderland").await.is_none());
        assert!(ht.verify("bob", "x").await.is_none(), "SHA entries are skipped");
        assert!(ht.verify("robot$x", "wonderland").await.is_none());
        assert!(ht.verify("carol", "").await.is_none());

        // A new password takes effect once the file is read again; the cache does not keep
        // the old one alive.
        let new = hash_password("looking-glass", 4).unwrap();
        std::fs::write(&file, format!("alice:{new}\n")).unwrap();
        ht.state.write().unwrap().checked = None;
        assert!(ht.verify("alice", "wonderland").await.is_none());
        let fp2 = ht.verify("alice", "looking-glass").await.unwrap();
        assert_ne!(fp, fp2);
        assert_eq!(ht.fingerprint("alice"), Some(fp2));

        assert!(Htpasswd::open(Some(&dir.path().join("missing")), Duration::ZERO).is_err());
        let none = Htpasswd::open(None, Duration::ZERO).unwrap();
        assert!(none.verify("alice", "wonderland").await.is_none());
    }

    #[tokio::test]
    async fn unknown_users_cost_the_same_bcrypt_work() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        // Most users at cost 5, one at 4: the dummy takes the users' usual cost.
        let (a, b, c) =
            (hash_password("a", 5).unwrap(), hash_password("b", 5).unwrap(), hash_password("c", 4).unwrap());
        std::fs::write(&file, format!("alice:{a}\nbob:{b}\ncarol:{c}\n")).unwrap();
        let ht = Htpasswd::open(Some(&file), Duration::ZERO).unwrap();
        let dummy = ht.state.read().unwrap().dummy.clone().unwrap();
        assert_eq!(bcrypt_cost(&dummy), Some(5));
        assert_eq!(dummy.len(), a.len());
        let runs = || ht.bcrypt_runs.load(Ordering::Relaxed);
        assert!(ht.verify("alice", "wrong").await.is_none());
        assert_eq!(runs(), 1, "a wrong password runs bcrypt");
        for (user, password) in [("mallory", "wrong"), ("mallory", ""), ("", "a")] {
            assert!(ht.verify(user, password).await.is_none());
        }
        assert_eq!(runs(), 4, "an unknown user runs bcrypt just the same");
        // The dummy matches no password: not even the secret it was made from, which is
        // hashed at another cost.
        assert!(!bcrypt::verify("", &dummy).unwrap());
        // A reload to other costs follows them; no users, no dummy (nothing to find out).
        std::fs::write(&file, format!("alice:{c}\n")).unwrap();
        ht.state.write().unwrap().checked = None;
        assert!(ht.verify("nobody", "x").await.is_none());
        assert_eq!(bcrypt_cost(&ht.state.read().unwrap().dummy.clone().unwrap()), Some(4));
        std::fs::write(&file, "").unwrap();
        ht.state.write().unwrap().checked = None;
        assert!(ht.verify("nobody", "x").await.is_none());
        assert!(ht.state.read().unwrap().dummy.is_none());
    }

    #[tokio::test]
    async fn robots_are_created_checked_listed_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(crate::storage::fs::FsStorage::new(dir.path(), false).unwrap());
        let (robot, secret) = create_robot(storage.as_ref(), "ci", None).await.unwrap();
        assert_eq!(robot.login(), "robot$ci");
        assert!(secret.len() >= 43);
        assert!(robot.check(&secret));
        assert!(!robot.check("nope"));
        // Only the hash is stored.
        let stored = std::fs::read_to_string(dir.path().join("_auth/robots/ci")).unwrap();
        assert!(!stored.contains(&secret));
        assert!(matches!(create_robot(storage.as_ref(), "ci", None).await, Err(AccountError::RobotExists(_))));
        assert!(matches!(create_robot(storage.as_ref(), "Bad Name", None).await, Err(AccountError::RobotName(_))));
        let (short, _) = create_robot(storage.as_ref(), "short", Some(Duration::from_secs(0))).await.unwrap();
        assert!(short.expired(now_secs()));
        let names: Vec<String> = list_robots(storage.as_ref()).await.unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["ci", "short"]);

        let cache = RobotCache::new(storage.clone(), Duration::ZERO);
        assert!(cache.get("ci").await.unwrap().is_some());
        assert!(cache.get("short").await.unwrap().is_none(), "expired");
        revoke_robot(storage.as_ref(), "ci").await.unwrap();
        assert!(cache.get("ci").await.unwrap().is_none());
        assert!(matches!(revoke_robot(storage.as_ref(), "ci").await, Err(AccountError::RobotUnknown(_))));
    }
}
