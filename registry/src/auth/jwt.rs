//! JSON Web Tokens as the distribution token specification uses them (docs/spec/auth/jwt.md):
//! compact JWS with a claim set of `iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti` and
//! `access`, signed with ES256, ES384, RS256/384/512 or EdDSA. Signatures go through aws-lc-rs.
//!
//! [`SigningKey`] signs the tokens berth issues; [`decode_verified`] checks a token against a
//! set of [`VerifyKey`]s (berth's own and any external token server's). The header's `alg`
//! picks the algorithm, and each algorithm is only ever tried with keys of its own kind:
//! `none` and the HMAC algorithms are refused outright, so a public key can never be used as an
//! HMAC secret (algorithm confusion) and an unsigned token never passes. Claims other than the
//! signature (issuer, audience, times, scope) are checked by the caller, in [`super`].

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};

/// Why a token or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The `alg` is not one berth accepts (`none`, HMAC, unknown).
    #[error("signing algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// No trusted key verifies the signature.
    #[error("the signature does not verify with any trusted key")]
    Signature,
    /// A key could not be read.
    #[error("{0}")]
    Key(String),
}

/// The signing algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::EdDsa => "EdDSA",
        }
    }

    fn kind(self) -> KeyKind {
        match self {
            Alg::Es256 => KeyKind::P256,
            Alg::Es384 => KeyKind::P384,
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 => KeyKind::Rsa,
            Alg::EdDsa => KeyKind::Ed25519,
        }
    }
}

/// The kind of a public key; an algorithm is only tried with keys of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, for RS256/384/512.
    Rsa,
    /// EC P-256, for ES256.
    P256,
    /// EC P-384, for ES384.
    P384,
    /// Ed25519, for EdDSA.
    Ed25519,
}

/// The JOSE header fields berth reads or writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// A token's audience: one string or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    /// True when `service` is (one of) the audience.
    pub fn contains(&self, service: &str) -> bool {
        match self {
            Audience::One(a) => a == service,
            Audience::Many(all) => all.iter().any(|a| a == service),
        }
    }
}

/// One entry of the `access` claim: actions granted on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// A claim set (jwt.md, "Claim Set").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who issued the token.
    pub iss: String,
    /// Whom it was issued to: a user name, `robot$NAME`, or empty for anonymous.
    #[serde(default)]
    pub sub: String,
    /// The service it is for.
    pub aud: Audience,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// A unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// What the token grants.
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// On refresh tokens only: a fingerprint of the credential the token was issued for, so
    /// a changed password or a recreated robot voids the refresh tokens issued before.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "berth_credential")]
    pub credential: Option<String>,
}

/// How a public key is held.
#[derive(Clone)]
enum Material {
    /// X.509 `SubjectPublicKeyInfo` DER.
    Spki(Vec<u8>),
    /// RSA modulus and exponent (big-endian), from a JWK.
    RsaComponents { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed EC point or a raw Ed25519 key, from a JWK.
    Raw(Vec<u8>),
}

/// A public key tokens may be signed with.
#[derive(Clone)]
pub struct VerifyKey {
    kind: KeyKind,
    material: Material,
    /// The `kid`s that name this key: its JWKS `kid`, or its libtrust key ID.
    ids: Vec<String>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kind", &self.kind).field("ids", &self.ids).finish()
    }
}

impl VerifyKey {
    /// A key from its `SubjectPublicKeyInfo` DER.
    pub fn from_spki(spki: &[u8]) -> Result<VerifyKey, JwtError> {
        let kind = spki_kind(spki).ok_or_else(|| JwtError::Key("unsupported public key type".into()))?;
        Ok(VerifyKey { kind, material: Material::Spki(spki.to_vec()), ids: vec![libtrust_key_id(spki)] })
    }

    /// Every key in a PEM file: `PUBLIC KEY` sections and the keys of `CERTIFICATE` sections
    /// (distribution's root certificate bundle).
    pub fn from_pem(pem: &[u8]) -> Result<Vec<VerifyKey>, JwtError> {
        let mut keys = Vec::new();
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|e| JwtError::Key(format!("not PEM: {e}")))?;
            match kind {
                SectionKind::PublicKey => keys.push(VerifyKey::from_spki(&der)?),
                SectionKind::Certificate => {
                    let spki = certificate_spki(&der)
                        .ok_or_else(|| JwtError::Key("cannot read the public key of a certificate".into()))?;
                    keys.push(VerifyKey::from_spki(spki)?);
                }
                _ => {}
            }
        }
        if keys.is_empty() {
            return Err(JwtError::Key("no PUBLIC KEY or CERTIFICATE in the PEM file".into()));
        }
        Ok(keys)
    }

    /// The keys of a JWKS document (`{"keys":[...]}`): RSA, EC P-256/P-384 and Ed25519 keys
    /// meant for signatures; others are skipped.
    pub fn from_jwks(json: &[u8]) -> Result<Vec<VerifyKey>, JwtError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<Jwk>,
        }
        #[derive(Deserialize)]
        struct Jwk {
            kty: String,
            #[serde(default, rename = "use")]
            use_: Option<String>,
            kid: Option<String>,
            crv: Option<String>,
            n: Option<String>,
            e: Option<String>,
            x: Option<String>,
            y: Option<String>,
        }
        let set: Jwks = serde_json::from_slice(json).map_err(|e| JwtError::Key(format!("not a JWKS document: {e}")))?;
        let b64 = |v: &Option<String>, what: &str| {
            v.as_deref()
                .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
                .ok_or_else(|| JwtError::Key(format!("JWK without a valid {what}")))
        };
        let mut keys = Vec::new();
        for jwk in set.keys {
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let (kind, material) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => (KeyKind::Rsa, Material::RsaComponents { n: b64(&jwk.n, "n")?, e: b64(&jwk.e, "e")? }),
                ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                    let mut point = vec![4];
                    point.extend(b64(&jwk.x, "x")?);
                    point.extend(b64(&jwk.y, "y")?);
                    (if crv == "P-256" { KeyKind::P256 } else { KeyKind::P384 }, Material::Raw(point))
                }
                ("OKP", Some("Ed25519")) => (KeyKind::Ed25519, Material::Raw(b64(&jwk.x, "x")?)),
                _ => continue,
            };
            keys.push(VerifyKey { kind, material, ids: jwk.kid.into_iter().collect() });
        }
        if keys.is_empty() {
            return Err(JwtError::Key("the JWKS holds no usable signing key".into()));
        }
        Ok(keys)
    }

    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        if alg.kind() != self.kind {
            return false;
        }
        let (rsa, other): (Option<&signature::RsaParameters>, Option<&'static dyn signature::VerificationAlgorithm>) =
            match alg {
                Alg::Rs256 => (Some(&signature::RSA_PKCS1_2048_8192_SHA256), None),
                Alg::Rs384 => (Some(&signature::RSA_PKCS1_2048_8192_SHA384), None),
                Alg::Rs512 => (Some(&signature::RSA_PKCS1_2048_8192_SHA512), None),
                Alg::Es256 => (None, Some(&signature::ECDSA_P256_SHA256_FIXED)),
                Alg::Es384 => (None, Some(&signature::ECDSA_P384_SHA384_FIXED)),
                Alg::EdDsa => (None, Some(&signature::ED25519)),
            };
        match (&self.material, rsa, other) {
            (Material::RsaComponents { n, e }, Some(params), _) => {
                signature::RsaPublicKeyComponents { n, e }.verify(params, message, sig).is_ok()
            }
            (Material::Spki(bytes) | Material::Raw(bytes), Some(params), _) => {
                UnparsedPublicKey::new(params, bytes).verify(message, sig).is_ok()
            }
            (Material::Spki(bytes) | Material::Raw(bytes), None, Some(alg)) => {
                UnparsedPublicKey::new(alg, bytes).verify(message, sig).is_ok()
            }
            _ => false,
        }
    }
}

/// The private key berth signs its tokens with.
pub struct SigningKey {
    alg: Alg,
    kid: String,
    pair: Pair,
    spki: Vec<u8>,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg).field("kid", &self.kid).finish()
    }
}

fn key_err(what: &str) -> impl Fn(aws_lc_rs::error::KeyRejected) -> JwtError + '_ {
    move |e| JwtError::Key(format!("{what}: {e}"))
}

impl SigningKey {
    /// A new EC P-256 key, and its PKCS#8 PEM for keeping.
    pub fn generate() -> Result<(SigningKey, String), JwtError> {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| JwtError::Key("cannot generate a key".into()))?;
        let der = pair.to_pkcs8v1().map_err(|_| JwtError::Key("cannot serialise the key".into()))?;
        let pem = pem_encode("PRIVATE KEY", der.as_ref());
        Ok((SigningKey::from_parts(Alg::Es256, Pair::Ec(pair))?, pem))
    }

    /// The first private key of a PEM file: PKCS#8 (`PRIVATE KEY`: EC P-256/P-384, RSA or
    /// Ed25519), SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, JwtError> {
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|e| JwtError::Key(format!("not PEM: {e}")))?;
            let ec = |alg: &'static signature::EcdsaSigningAlgorithm| EcdsaKeyPair::from_private_key_der(alg, &der);
            return match kind {
                SectionKind::EcPrivateKey => match ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING) {
                    Ok(p) => SigningKey::from_parts(Alg::Es256, Pair::Ec(p)),
                    Err(_) => ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                        .map_err(key_err("EC key (P-256 or P-384 expected)"))
                        .and_then(|p| SigningKey::from_parts(Alg::Es384, Pair::Ec(p))),
                },
                SectionKind::RsaPrivateKey => RsaKeyPair::from_der(&der)
                    .map_err(key_err("RSA key"))
                    .and_then(|p| SigningKey::from_parts(Alg::Rs256, Pair::Rsa(p))),
                SectionKind::PrivateKey => {
                    if let Ok(p) = ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING) {
                        SigningKey::from_parts(Alg::Es256, Pair::Ec(p))
                    } else if let Ok(p) = ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING) {
                        SigningKey::from_parts(Alg::Es384, Pair::Ec(p))
                    } else if let Ok(p) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
                        SigningKey::from_parts(Alg::EdDsa, Pair::Ed(p))
                    } else {
                        RsaKeyPair::from_pkcs8(&der)
                            .map_err(key_err("PKCS#8 key (EC P-256/P-384, RSA or Ed25519 expected)"))
                            .and_then(|p| SigningKey::from_parts(Alg::Rs256, Pair::Rsa(p)))
                    }
                }
                _ => continue,
            };
        }
        Err(JwtError::Key("no private key in the PEM file".into()))
    }

    fn from_parts(alg: Alg, pair: Pair) -> Result<SigningKey, JwtError> {
        let der: Result<PublicKeyX509Der<'static>, _> = match &pair {
            Pair::Ec(p) => p.public_key().as_der(),
            Pair::Rsa(p) => p.public_key().as_der(),
            Pair::Ed(p) => p.public_key().as_der(),
        };
        let spki = der.map_err(|_| JwtError::Key("cannot encode the public key".into()))?.as_ref().to_vec();
        Ok(SigningKey { alg, kid: libtrust_key_id(&spki), pair, spki })
    }

    /// The key's ID, as sent in the `kid` header (libtrust format, as distribution expects).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, for verifying.
    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey { kind: self.alg.kind(), material: Material::Spki(self.spki.clone()), ids: vec![self.kid.clone()] }
    }

    /// The public key as PEM.
    pub fn public_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki)
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        let header = Header { typ: Some("JWT".into()), alg: self.alg.name().into(), kid: Some(self.kid.clone()) };
        let encode = |v: &dyn erased::Json| v.json().map(|j| URL_SAFE_NO_PAD.encode(j));
        let mut out = format!("{}.{}", encode(&header)?, encode(claims)?);
        let sig = match &self.pair {
            Pair::Ec(p) => p
                .sign(&aws_lc_rs::rand::SystemRandom::new(), out.as_bytes())
                .map_err(|_| JwtError::Key("signing failed".into()))?
                .as_ref()
                .to_vec(),
            Pair::Ed(p) => p.sign(out.as_bytes()).as_ref().to_vec(),
            Pair::Rsa(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(&signature::RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), out.as_bytes(), &mut sig)
                    .map_err(|_| JwtError::Key("signing failed".into()))?;
                sig
            }
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(out)
    }
}

/// Serialising the header and the claims through one closure.
mod erased {
    pub trait Json {
        fn json(&self) -> Result<Vec<u8>, super::JwtError>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Result<Vec<u8>, super::JwtError> {
            serde_json::to_vec(self).map_err(|_| super::JwtError::Malformed("cannot serialise"))
        }
    }
}

/// Checks the signature of `token` against `keys` and returns its claims. The caller checks
/// issuer, audience, times and scope.
pub fn decode_verified(token: &str, keys: &[VerifyKey]) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed("the header is not base64url JSON"))?;
    let alg = Alg::parse(&header.alg).ok_or_else(|| JwtError::Algorithm(header.alg.clone()))?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed("the signature is not base64url"))?;
    if sig.is_empty() {
        return Err(JwtError::Signature);
    }
    let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
    let named: Vec<&VerifyKey> =
        keys.iter().filter(|k| header.kid.as_ref().is_some_and(|kid| k.ids.contains(kid))).collect();
    let candidates: Vec<&VerifyKey> = if named.is_empty() { keys.iter().collect() } else { named };
    if !candidates.iter().any(|k| k.verify(alg, signed, &sig)) {
        return Err(JwtError::Signature);
    }
    let claims = URL_SAFE_NO_PAD.decode(c).map_err(|_| JwtError::Malformed("the claims are not base64url"))?;
    serde_json::from_slice(&claims).map_err(|_| JwtError::Malformed("the claims are not a valid claim set"))
}

/// A DER element: its tag, the whole element, its content, and what follows it.
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn der_element(input: &[u8]) -> Option<Element<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((tag, whole, &whole[header..], &input[end..]))
}

/// The `SubjectPublicKeyInfo` of an X.509 certificate.
fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    let (_, _, cert, _) = der_element(cert)?;
    let (_, _, tbs, _) = der_element(cert)?;
    let mut rest = tbs;
    let (tag, _, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after; // the explicit version
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        rest = der_element(rest)?.3;
    }
    Some(der_element(rest)?.1)
}

/// The key type named by a `SubjectPublicKeyInfo`'s algorithm identifier.
fn spki_kind(spki: &[u8]) -> Option<KeyKind> {
    const RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    let (_, _, body, _) = der_element(spki)?;
    let (_, _, alg_id, _) = der_element(body)?;
    let (_, oid, _, params) = der_element(alg_id)?;
    match oid {
        RSA => Some(KeyKind::Rsa),
        ED25519 => Some(KeyKind::Ed25519),
        EC if params.starts_with(P256) => Some(KeyKind::P256),
        EC if params.starts_with(P384) => Some(KeyKind::P384),
        _ => None,
    }
}

/// The libtrust key ID distribution uses for `kid`: the SHA-256 of the key's DER, cut to 240
/// bits, base32, in twelve groups of four joined by `:`.
pub fn libtrust_key_id(spki: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    let bytes = &hash.as_ref()[..30];
    let mut out = String::with_capacity(59);
    let (mut acc, mut bits) = (0u32, 0);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            if !out.is_empty() && out.len() % 5 == 4 {
                out.push(':');
            }
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    out
}

/// A PEM section.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: Audience::One("berth".into()),
            exp: 2_000_000_000,
            nbf: None,
            iat: None,
            jti: Some("x".into()),
            access: vec![ResourceActions {
                kind: "repository".into(),
                name: "a/b".into(),
                actions: vec!["pull".into()],
            }],
            credential: None,
        }
    }

    #[test]
    fn signs_and_verifies_with_a_generated_key_and_its_pem() {
        let (key, pem) = SigningKey::generate().unwrap();
        let token = key.sign(&claims()).unwrap();
        assert_eq!(decode_verified(&token, &[key.verify_key()]).unwrap(), claims());
        let again = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(decode_verified(&token, &[again.verify_key()]).unwrap(), claims());
        // The public PEM verifies too, with the same libtrust key ID.
        let public = VerifyKey::from_pem(key.public_pem().as_bytes()).unwrap();
        assert_eq!(public[0].ids, vec![key.kid().to_string()]);
        decode_verified(&token, &public).unwrap();
        // Another key does not.
        let (other, _) = SigningKey::generate().unwrap();
        assert_eq!(decode_verified(&token, &[other.verify_key()]), Err(JwtError::Signature));
        assert_eq!(key.kid().len(), 59);
        assert_eq!(key.kid().split(':').count(), 12);
    }

    #[test]
    fn refuses_none_hmac_tampering_and_garbage() {
        let (key, _) = SigningKey::generate().unwrap();
        let keys = [key.verify_key()];
        let token = key.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(decode_verified(&format!("{none}.{}.", parts[1]), &keys), Err(JwtError::Algorithm("none".into())));
        assert!(decode_verified(&format!("{none}.{}.{}", parts[1], parts[2]), &keys).is_err());
        // HS256 "signed" with the public key as secret: refused by algorithm, not tried.
        let hs = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        assert_eq!(
            decode_verified(&format!("{hs}.{}.{}", parts[1], parts[2]), &keys),
            Err(JwtError::Algorithm("HS256".into()))
        );
        // An RSA algorithm named over an EC key: the key is never used with it.
        let rs = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        assert_eq!(decode_verified(&format!("{rs}.{}.{}", parts[1], parts[2]), &keys), Err(JwtError::Signature));

        let mut c = claims();
        c.access[0].actions.push("push".into());
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(decode_verified(&format!("{}.{forged}.{}", parts[0], parts[2]), &keys), Err(JwtError::Signature));
        for junk in ["", "a", "a.b", "a.b.c.d", "....", "e30.e30.", "e30.e30.AAAA"] {
            assert!(decode_verified(junk, &keys).is_err(), "{junk}");
        }
    }

    #[test]
    fn rsa_and_ed25519_keys_from_pem_and_jwks() {
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = rsa.as_der().unwrap();
        let pem = pem_encode("PRIVATE KEY", der.as_ref());
        let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
        let token = key.sign(&claims()).unwrap();
        assert!(token.starts_with(&URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256""#)[..20]));
        decode_verified(&token, &VerifyKey::from_pem(key.public_pem().as_bytes()).unwrap()).unwrap();
        // The same key as a JWK, by its components.
        let spki = &key.spki;
        let components = signature::RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        let jwks = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "k1", "use": "sig", "n": URL_SAFE_NO_PAD.encode(&components.n), "e": URL_SAFE_NO_PAD.encode(&components.e)},
        ]});
        let keys = VerifyKey::from_jwks(jwks.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        decode_verified(&token, &keys).unwrap();
        assert_eq!(spki_kind(spki), Some(KeyKind::Rsa));

        let ed = Ed25519KeyPair::generate().unwrap();
        let pem = pem_encode("PRIVATE KEY", ed.to_pkcs8v1().unwrap().as_ref());
        let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
        let token = key.sign(&claims()).unwrap();
        decode_verified(&token, &[key.verify_key()]).unwrap();
        let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())}]});
        decode_verified(&token, &VerifyKey::from_jwks(jwks.to_string().as_bytes()).unwrap()).unwrap();

        // An EC key as a JWK.
        let (ec, _) = SigningKey::generate().unwrap();
        let token = ec.sign(&claims()).unwrap();
        let Pair::Ec(pair) = &ec.pair else { panic!() };
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
        decode_verified(&token, &VerifyKey::from_jwks(jwks.to_string().as_bytes()).unwrap()).unwrap();
        assert!(VerifyKey::from_jwks(b"{\"keys\":[]}").is_err());
        assert!(VerifyKey::from_pem(b"nothing").is_err());
    }
}
