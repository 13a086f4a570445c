//! Bearer tokens of the Docker registry token protocol: JWTs naming the repositories and
//! actions they grant. berth signs them itself (the built-in token service, ES256 with a
//! key made at first start) or verifies those of an external token server.
//!
//! Only keys configured here are trusted: the built-in key, the certificates of
//! `auth.token.rootcertbundle` (a token's own `x5c` chain is followed only up to one of
//! them) and the keys of `auth.token.jwks`. A key a token carries is never trusted by
//! itself, `alg: none` and HMAC algorithms are never accepted, and the algorithm must be
//! in the configured allow-list and fit the key.

use super::base64_decode;
use crate::config::TokenAlg;
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, KeyPair as _, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY: i64 = 30;

/// One grant of a token: `repository:team/app:pull,push` as a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Access {
    /// Parses a scope (`repository:team/app:pull,push`, `registry:catalog:*`); the type
    /// may carry a class in parentheses, which is dropped.
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// `aud` is a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, service: &str) -> bool {
        match self {
            Audience::One(a) => a == service,
            Audience::Many(v) => v.iter().any(|a| a == service),
        }
    }
}

/// The claims berth reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default)]
    pub access: Vec<Access>,
}

impl Claims {
    /// Whether the token grants `action` ("pull", "push", "delete") on repository `name`.
    pub fn grants(&self, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == "repository"
                && a.name == name
                && a.actions.iter().any(|x| x == action || x == "*")
        })
    }

    /// Whether the token grants `registry:catalog:*`.
    pub fn grants_catalog(&self) -> bool {
        self.access.iter().any(|a| {
            a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*")
        })
    }
}

/// A public key tokens may be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    /// Uncompressed P-256 point.
    P256(Vec<u8>),
    /// Uncompressed P-384 point.
    P384(Vec<u8>),
    /// DER `RSAPublicKey` (from a certificate).
    RsaDer(Vec<u8>),
    /// Modulus and exponent, big-endian without leading zeros (from a JWK).
    RsaParts {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

impl PublicKey {
    fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Option<PublicKey> {
        let bits = spki.subject_public_key.as_ref().to_vec();
        match spki.algorithm.algorithm.to_id_string().as_str() {
            // id-ecPublicKey: the curve follows from the point's length.
            "1.2.840.10045.2.1" => match bits.len() {
                65 => Some(PublicKey::P256(bits)),
                97 => Some(PublicKey::P384(bits)),
                _ => None,
            },
            "1.2.840.113549.1.1.1" => Some(PublicKey::RsaDer(bits)),
            "1.3.101.112" => Some(PublicKey::Ed25519(bits)),
            _ => None,
        }
    }

    fn verify(&self, alg: TokenAlg, msg: &[u8], sig: &[u8]) -> bool {
        use signature as s;
        let rsa: Option<&'static s::RsaParameters> = match alg {
            TokenAlg::Rs256 => Some(&s::RSA_PKCS1_2048_8192_SHA256),
            TokenAlg::Rs384 => Some(&s::RSA_PKCS1_2048_8192_SHA384),
            TokenAlg::Rs512 => Some(&s::RSA_PKCS1_2048_8192_SHA512),
            TokenAlg::Ps256 => Some(&s::RSA_PSS_2048_8192_SHA256),
            TokenAlg::Ps384 => Some(&s::RSA_PSS_2048_8192_SHA384),
            TokenAlg::Ps512 => Some(&s::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        match (self, alg, rsa) {
            (PublicKey::P256(p), TokenAlg::Es256, _) => {
                UnparsedPublicKey::new(&s::ECDSA_P256_SHA256_FIXED, p)
                    .verify(msg, sig)
                    .is_ok()
            }
            (PublicKey::P384(p), TokenAlg::Es384, _) => {
                UnparsedPublicKey::new(&s::ECDSA_P384_SHA384_FIXED, p)
                    .verify(msg, sig)
                    .is_ok()
            }
            (PublicKey::Ed25519(p), TokenAlg::EdDsa, _) => UnparsedPublicKey::new(&s::ED25519, p)
                .verify(msg, sig)
                .is_ok(),
            (PublicKey::RsaDer(der), _, Some(params)) => {
                UnparsedPublicKey::new(params, der).verify(msg, sig).is_ok()
            }
            (PublicKey::RsaParts { n, e }, _, Some(params)) => RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok(),
            _ => false,
        }
    }
}

/// A key berth trusts, with the ids a token's `kid` may name it by.
#[derive(Debug, Clone)]
struct TrustedKey {
    kids: Vec<String>,
    /// The DER SubjectPublicKeyInfo, when the key came from a certificate.
    spki: Option<Vec<u8>>,
    key: PublicKey,
}

/// The keys tokens are verified against.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<TrustedKey>,
    /// DER certificates of the root bundle, for `x5c` chains.
    roots: Vec<Vec<u8>>,
}

impl KeySet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the certificates of a PEM bundle (the reference registry's
    /// `rootcertbundle`). Their keys sign tokens directly (matched by `kid` as the
    /// reference registry computes it, or by `x5c`), or they are the roots an `x5c`
    /// chain must lead to.
    pub fn add_cert_bundle(&mut self, path: &Path) -> Result<(), String> {
        let certs = crate::pem::read_certs(path).map_err(|e| e.to_string())?;
        for der in certs {
            let (_, cert) = X509Certificate::from_der(der.as_ref())
                .map_err(|e| format!("{}: a certificate does not parse: {e}", path.display()))?;
            let spki = cert.public_key();
            let key = PublicKey::from_spki(spki).ok_or_else(|| {
                format!(
                    "{}: a certificate's key type is not supported (use EC P-256/P-384, RSA or Ed25519)",
                    path.display()
                )
            })?;
            self.keys.push(TrustedKey {
                kids: vec![libtrust_kid(spki.raw)],
                spki: Some(spki.raw.to_vec()),
                key,
            });
            self.roots.push(der.as_ref().to_vec());
        }
        Ok(())
    }

    /// Adds the keys of a JWKS file (`{"keys": [...]}`): EC P-256/P-384, RSA, Ed25519.
    pub fn add_jwks(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let doc: Jwks = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a JWKS document: {e}", path.display()))?;
        if doc.keys.is_empty() {
            return Err(format!("{}: the JWKS has no keys", path.display()));
        }
        for (i, k) in doc.keys.iter().enumerate() {
            let bad = |what: &str| format!("{}: key {i}: {what}", path.display());
            let b64 = |v: &Option<String>, field: &str| {
                v.as_deref()
                    .and_then(base64_decode)
                    .ok_or_else(|| bad(&format!("missing or invalid \"{field}\"")))
            };
            let key = match (k.kty.as_str(), k.crv.as_deref()) {
                ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                    let (x, y) = (b64(&k.x, "x")?, b64(&k.y, "y")?);
                    let len = if crv == "P-256" { 32 } else { 48 };
                    if x.len() != len || y.len() != len {
                        return Err(bad("x and y do not fit the curve"));
                    }
                    let mut p = vec![4u8];
                    p.extend(x);
                    p.extend(y);
                    if crv == "P-256" {
                        PublicKey::P256(p)
                    } else {
                        PublicKey::P384(p)
                    }
                }
                ("RSA", _) => PublicKey::RsaParts {
                    n: strip_zeros(b64(&k.n, "n")?),
                    e: strip_zeros(b64(&k.e, "e")?),
                },
                ("OKP", Some("Ed25519")) => PublicKey::Ed25519(b64(&k.x, "x")?),
                (kty, crv) => {
                    return Err(bad(&format!(
                        "unsupported key type {kty:?} (curve {crv:?}); use EC P-256/P-384, RSA or OKP Ed25519"
                    )))
                }
            };
            self.keys.push(TrustedKey {
                kids: k.kid.iter().cloned().collect(),
                spki: None,
                key,
            });
        }
        Ok(())
    }

    /// Trusts one key given as a DER SubjectPublicKeyInfo (the built-in signer's).
    fn add_spki(&mut self, spki_der: &[u8], kid: String) -> Result<(), String> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| format!("public key does not parse: {e}"))?;
        let key = PublicKey::from_spki(&spki).ok_or("unsupported public key type")?;
        self.keys.push(TrustedKey {
            kids: vec![kid],
            spki: Some(spki_der.to_vec()),
            key,
        });
        Ok(())
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    x5c: Option<Vec<String>>,
}

/// Why a token was refused (logged; the client only sees 401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT")]
    Malformed,
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(String),
    #[error("signed by a key berth does not trust")]
    UntrustedKey,
    #[error("bad signature")]
    Signature,
    #[error("issuer {0:?} is not the configured one")]
    Issuer(String),
    #[error("audience does not include {0:?}")]
    Audience(String),
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
}

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub service: &'a str,
    pub algorithms: &'a [TokenAlg],
    pub now: i64,
}

/// Verifies a compact JWS and returns its claims.
pub fn verify(token: &str, keys: &KeySet, want: &Expect<'_>) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = base64_decode(h64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    let alg = header
        .alg
        .parse::<TokenAlg>()
        .ok()
        .filter(|a| want.algorithms.contains(a))
        .ok_or_else(|| TokenError::Algorithm(header.alg.clone()))?;
    let sig = base64_decode(s64).ok_or(TokenError::Malformed)?;
    let signed = &token.as_bytes()[..h64.len() + 1 + c64.len()];
    let candidates = candidate_keys(&header, keys, want.now)?;
    if candidates.is_empty() {
        return Err(TokenError::UntrustedKey);
    }
    if !candidates.iter().any(|k| k.verify(alg, signed, &sig)) {
        return Err(TokenError::Signature);
    }
    let claims: Claims = base64_decode(c64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if claims.iss != want.issuer {
        return Err(TokenError::Issuer(claims.iss));
    }
    if !claims.aud.contains(want.service) {
        return Err(TokenError::Audience(want.service.to_owned()));
    }
    check_times(&claims, want.now)?;
    Ok(claims)
}

/// The time-bound part of [`verify`]: `exp` and `nbf` against `now`, with leeway. Run again
/// for a token whose signature was checked earlier.
pub fn check_times(claims: &Claims, now: i64) -> Result<(), TokenError> {
    // Saturating: `exp` and `nbf` are whatever i64 the issuer wrote.
    if claims.exp.saturating_add(LEEWAY) < now {
        return Err(TokenError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf.saturating_sub(LEEWAY) > now)
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// The trusted keys a token may have been signed with: the leaf of an `x5c` chain that
/// leads to the root bundle, else the key its `kid` names, else every trusted key.
fn candidate_keys(header: &Header, keys: &KeySet, now: i64) -> Result<Vec<PublicKey>, TokenError> {
    if let Some(chain) = &header.x5c {
        let ders = chain
            .iter()
            .map(|c| base64_decode(c).ok_or(TokenError::Malformed))
            .collect::<Result<Vec<_>, _>>()?;
        return x5c_leaf(&ders, keys, now)
            .map(|k| vec![k])
            .ok_or(TokenError::UntrustedKey);
    }
    if let Some(kid) = &header.kid {
        return Ok(keys
            .keys
            .iter()
            .filter(|k| k.kids.iter().any(|x| x == kid))
            .map(|k| k.key.clone())
            .collect());
    }
    Ok(keys.keys.iter().map(|k| k.key.clone()).collect())
}

/// The leaf key of an `x5c` chain, if the chain is valid now and ends at a certificate
/// of the root bundle (by equality, or by a bundle CA's signature).
fn x5c_leaf(ders: &[Vec<u8>], keys: &KeySet, now: i64) -> Option<PublicKey> {
    let certs = ders
        .iter()
        .map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect::<Option<Vec<_>>>()?;
    let leaf = certs.first()?;
    let time = x509_parser::time::ASN1Time::from_timestamp(now).ok()?;
    let trusted_spki = |spki: &[u8]| keys.keys.iter().any(|k| k.spki.as_deref() == Some(spki));
    for (i, cert) in certs.iter().enumerate() {
        if !cert.validity().is_valid_at(time) {
            return None;
        }
        if trusted_spki(cert.public_key().raw) {
            break;
        }
        match certs.get(i + 1) {
            Some(issuer) => {
                if !issuer.is_ca() || cert.verify_signature(Some(issuer.public_key())).is_err() {
                    return None;
                }
            }
            None => {
                let signed_by_root = keys.roots.iter().any(|r| {
                    X509Certificate::from_der(r).is_ok_and(|(_, root)| {
                        root.is_ca()
                            && root.validity().is_valid_at(time)
                            && cert.verify_signature(Some(root.public_key())).is_ok()
                    })
                });
                if !signed_by_root {
                    return None;
                }
            }
        }
    }
    PublicKey::from_spki(leaf.public_key())
}

/// The key id the reference registry and docker_auth use (libtrust): the SHA-256 of the
/// DER public key, truncated to 240 bits, base32 in twelve groups of four.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki_der);
    let bits = &hash[..30];
    let mut out = String::with_capacity(59);
    let (mut buf, mut n) = (0u32, 0u32);
    let mut chars = 0;
    for b in bits {
        buf = buf << 8 | u32::from(*b);
        n += 8;
        while n >= 5 {
            n -= 5;
            if chars > 0 && chars % 4 == 0 {
                out.push(':');
            }
            out.push(ALPHABET[((buf >> n) & 31) as usize] as char);
            chars += 1;
        }
    }
    out
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead.min(v.len().saturating_sub(1)));
    v
}

/// Base64url without padding (JWT segments).
pub fn base64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The built-in token service's signing key (ES256), made at first start and kept in the
/// state directory (mode 0600).
pub struct Signer {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    pub kid: String,
    spki: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl Signer {
    /// Loads the key at `path`, or makes one there when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<(Signer, bool), String> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let (pkcs8, created) = match std::fs::read(path) {
            Ok(pem) => {
                use rustls::pki_types::pem::PemObject as _;
                let der =
                    rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| {
                        format!(
                            "{}: not a PKCS#8 PEM private key ({e}); delete it to make a new one",
                            path.display()
                        )
                    })?;
                (der.secret_pkcs8_der().to_vec(), false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // rcgen makes the key and its PKCS#8 PEM, as for the local CA.
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| format!("generating the token signing key failed: {e}"))?;
                let pem = key.serialize_pem();
                crate::tls::selfsigned::write_secret(path, pem.as_bytes())
                    .map_err(|e| e.to_string())?;
                (key.serialize_der(), true)
            }
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let pair = EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng).map_err(|e| {
            format!(
                "{}: not an EC P-256 key ({e}); delete it to make a new one",
                path.display()
            )
        })?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        Ok((
            Signer {
                kid: libtrust_kid(&spki),
                pair,
                rng,
                spki,
            },
            created,
        ))
    }

    /// The key set that verifies this signer's tokens.
    pub fn key_set(&self) -> KeySet {
        let mut k = KeySet::default();
        // The SPKI is built from the key itself and always parses.
        let _ = k.add_spki(&self.spki, self.kid.clone());
        k
    }

    /// Signs `claims` as a compact JWS.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": self.kid});
        let mut out = base64url(header.to_string().as_bytes());
        out.push('.');
        out.push_str(&base64url(
            &serde_json::to_vec(claims).map_err(|e| e.to_string())?,
        ));
        let sig = self
            .pair
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| "signing a token failed".to_owned())?;
        out.push('.');
        out.push_str(&base64url(sig.as_ref()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: Audience::One("registry".into()),
            exp: now + 300,
            nbf: Some(now),
            iat: Some(now),
            jti: Some("j".into()),
            access: vec![Access::parse_scope("repository:alice/app:pull,push").expect("scope")],
        }
    }

    fn expect(now: i64) -> Expect<'static> {
        Expect {
            issuer: "berth",
            service: "registry",
            algorithms: &TokenAlg::ALL,
            now,
        }
    }

    #[test]
    fn scopes() {
        let a = Access::parse_scope("repository:team/app:pull,push").expect("scope");
        assert_eq!(
            (a.kind.as_str(), a.name.as_str()),
            ("repository", "team/app")
        );
        assert_eq!(a.actions, vec!["pull", "push"]);
        let a = Access::parse_scope("repository(plugin):x:pull").expect("scope");
        assert_eq!(a.kind, "repository");
        assert_eq!(
            Access::parse_scope("registry:catalog:*")
                .expect("scope")
                .scope(),
            "registry:catalog:*"
        );
        assert!(Access::parse_scope("nonsense").is_none());
        assert!(Access::parse_scope("repository::pull").is_none());
    }

    #[test]
    fn sign_and_verify_round_trip_and_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        let (s, created) = Signer::load_or_create(&path).expect("signer");
        assert!(created);
        let (again, created) = Signer::load_or_create(&path).expect("signer");
        assert!(!created);
        assert_eq!(s.kid, again.kid, "the key is kept across starts");
        let keys = s.key_set();
        let now = 1_800_000_000;
        let t = s.sign(&claims(now)).expect("sign");
        let c = verify(&t, &keys, &expect(now)).expect("verifies");
        assert!(c.grants("alice/app", "push"));
        assert!(!c.grants("alice/app", "delete"));
        assert!(!c.grants("bob/app", "pull"));

        // Expired, not yet valid, wrong audience, wrong issuer.
        assert_eq!(
            verify(&t, &keys, &expect(now + 400)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&t, &keys, &expect(now - 100)),
            Err(TokenError::NotYetValid)
        );
        let mut e = expect(now);
        e.service = "other";
        assert!(matches!(
            verify(&t, &keys, &e),
            Err(TokenError::Audience(_))
        ));
        e = expect(now);
        e.issuer = "someone";
        assert!(matches!(verify(&t, &keys, &e), Err(TokenError::Issuer(_))));

        // A tampered payload fails the signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut forged = claims(now);
        forged.access[0].name = "bob/app".into();
        let forged64 = base64url(&serde_json::to_vec(&forged).expect("json"));
        parts[1] = &forged64;
        assert_eq!(
            verify(&parts.join("."), &keys, &expect(now)),
            Err(TokenError::Signature)
        );

        // alg none, and an algorithm outside the allow-list.
        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            base64url(&serde_json::to_vec(&claims(now)).expect("json"))
        );
        assert!(matches!(
            verify(&none, &keys, &expect(now)),
            Err(TokenError::Algorithm(_))
        ));
        let mut e = expect(now);
        e.algorithms = &[TokenAlg::Rs256];
        assert!(matches!(
            verify(&t, &keys, &e),
            Err(TokenError::Algorithm(_))
        ));

        // Another key, even with the right kid, is not trusted.
        let (other, _) = Signer::load_or_create(&dir.path().join("other.pem")).expect("signer");
        let t2 = other.sign(&claims(now)).expect("sign");
        assert!(verify(&t2, &keys, &expect(now)).is_err());
    }

    /// Found in review of the jwt fuzz target: `exp` near i64::MAX (or `nbf` near
    /// i64::MIN) in a validly signed token overflowed (a panic in debug builds).
    #[test]
    fn extreme_times_do_not_overflow() {
        let mut c = claims(0);
        (c.exp, c.nbf) = (i64::MAX, Some(i64::MIN));
        assert_eq!(check_times(&c, 1_800_000_000), Ok(()));
        (c.exp, c.nbf) = (i64::MIN, Some(i64::MAX));
        assert_eq!(check_times(&c, 0), Err(TokenError::Expired));
        c.exp = i64::MAX;
        assert_eq!(check_times(&c, 0), Err(TokenError::NotYetValid));
    }

    #[test]
    fn libtrust_kid_shape() {
        let kid = libtrust_kid(b"anything");
        assert_eq!(kid.len(), 59);
        assert_eq!(kid.split(':').count(), 12);
        assert!(kid.split(':').all(|g| g.len() == 4));
    }

    #[test]
    fn base64url_round_trip() {
        for n in 0..10 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 5) as u8).collect();
            assert_eq!(base64_decode(&base64url(&data)).expect("decode"), data);
        }
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }
}
