//! Certificate material from PEM files, validated before it is ever served: the key matches
//! the leaf, the leaf covers the configured hostnames and is inside its validity period, and
//! the chain is put in order (leaf, then each issuer), with roots and duplicates dropped.
//!
//! pingora's own loader panics on bad files; this module turns every problem into an error
//! that names the file and what is wrong.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why certificate material was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::pem::PemError> for TlsError {
    fn from(e: crate::pem::PemError) -> Self {
        TlsError::File {
            path: e.path,
            message: e.message,
        }
    }
}

pub(crate) use crate::pem::read_certs;

fn file_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A validated certificate, ready to serve.
pub struct Material {
    pub key: Arc<CertifiedKey>,
    pub summary: Summary,
    /// Problems that do not stop serving but that the operator must hear about.
    pub warnings: Vec<String>,
}

/// What `berth cert show` and the logs report about a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub subject: String,
    pub sans: Vec<String>,
    /// Issuers of the served chain, leaf's issuer first.
    pub issuers: Vec<String>,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// Reads the leaf (and perhaps its chain) from `cert`, intermediates from `chain` if given,
/// and the private key from `key`; validates them against `hostnames` and `trusted_roots`
/// (DER subjects of roots the chain may end at).
pub(crate) fn load(
    cert: &Path,
    key: &Path,
    chain: Option<&Path>,
    hostnames: &[String],
    trusted_roots: &[Vec<u8>],
) -> Result<Material, TlsError> {
    let mut certs = read_certs(cert)?;
    if let Some(c) = chain {
        certs.extend(read_certs(c)?);
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_err(key, format!("no usable private key: {e}")))?;
    build(certs, key_der, hostnames, trusted_roots, SystemTime::now()).map_err(|e| match e {
        TlsError::Invalid(m) => file_err(cert, m),
        other => other,
    })
}

/// Validates in-memory material (self-signed and ACME certificates go through here too).
pub(crate) fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    hostnames: &[String],
    trusted_roots: &[Vec<u8>],
    now: SystemTime,
) -> Result<Material, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Invalid(format!("the private key cannot be used: {e}")))?;

    // Deduplicate, then find the leaf: the certificate the key belongs to.
    let mut unique: Vec<CertificateDer<'static>> = Vec::new();
    for c in certs {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    if unique.is_empty() {
        return Err(TlsError::Invalid("no certificate found".into()));
    }
    let leaf_index = unique
        .iter()
        .position(|c| {
            CertifiedKey::new(vec![c.clone()], signing_key.clone())
                .keys_match()
                .is_ok()
        })
        .ok_or_else(|| {
            TlsError::Invalid("the private key does not match any certificate in the file".into())
        })?;
    let leaf = unique.remove(leaf_index);
    let parsed_leaf = parse(&leaf)?;

    // Validity period.
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (nb, na) = (
        parsed_leaf.validity().not_before.timestamp(),
        parsed_leaf.validity().not_after.timestamp(),
    );
    if now_s > na {
        return Err(TlsError::Invalid(format!(
            "the certificate expired on {}",
            parsed_leaf.validity().not_after
        )));
    }
    if now_s < nb {
        return Err(TlsError::Invalid(format!(
            "the certificate is not valid until {}",
            parsed_leaf.validity().not_before
        )));
    }

    // Names.
    let sans = subject_alt_names(&parsed_leaf);
    for h in hostnames {
        if !covers(&sans, h) {
            return Err(TlsError::Invalid(format!(
                "the certificate does not cover the configured hostname {h:?} (its names: {})",
                sans.join(", ")
            )));
        }
    }

    // Chain order: follow issuer → subject from the leaf; drop roots (self-issued).
    let mut served = vec![leaf.clone()];
    let mut issuers = Vec::new();
    let mut current_issuer = parsed_leaf.issuer().as_raw().to_vec();
    let mut current_is_root = parsed_leaf.issuer().as_raw() == parsed_leaf.subject().as_raw();
    let mut pool = unique;
    let mut warnings = Vec::new();
    issuers.push(parsed_leaf.issuer().to_string());
    while !current_is_root {
        let next = pool.iter().position(|c| {
            parse(c)
                .map(|p| p.subject().as_raw() == current_issuer.as_slice())
                .unwrap_or(false)
        });
        let Some(i) = next else { break };
        let c = pool.remove(i);
        let p = parse(&c)?;
        current_is_root = p.issuer().as_raw() == p.subject().as_raw();
        current_issuer = p.issuer().as_raw().to_vec();
        if current_is_root {
            // A root in the file is not sent: clients must already trust it.
            break;
        }
        issuers.push(p.issuer().to_string());
        served.push(c);
    }
    for c in &pool {
        if let Ok(p) = parse(c) {
            warnings.push(format!(
                "certificate {:?} is not part of the leaf's chain and is not served",
                p.subject().to_string()
            ));
        }
    }
    let ends_at_trusted = current_is_root
        || trusted_roots
            .iter()
            .any(|r| r.as_slice() == current_issuer.as_slice());
    if !ends_at_trusted {
        warnings.push(format!(
            "the chain is incomplete: nothing in it or in the trusted roots issued {:?}; clients will fail to verify it (append the intermediate certificates to the certificate file, or set tls.chain)",
            issuers.last().cloned().unwrap_or_default()
        ));
    }

    let summary = Summary {
        subject: parsed_leaf.subject().to_string(),
        sans,
        issuers,
        serial: parsed_leaf.raw_serial_as_string(),
        not_before: nb,
        not_after: na,
    };
    Ok(Material {
        key: Arc::new(CertifiedKey::new(served, signing_key)),
        summary,
        warnings,
    })
}

/// DER subjects of the system's trusted roots plus those in `extra` (a private CA file).
pub(crate) fn trusted_root_subjects(extra: Option<&Path>) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut out = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    let mut ders: Vec<CertificateDer<'static>> = native.certs;
    if let Some(p) = extra {
        ders.extend(read_certs(p)?);
    }
    for c in &ders {
        if let Ok((_, p)) = X509Certificate::from_der(c.as_ref()) {
            out.push(p.subject().as_raw().to_vec());
        }
    }
    Ok(out)
}

fn parse<'a>(c: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, TlsError> {
    X509Certificate::from_der(c.as_ref())
        .map(|(_, p)| p)
        .map_err(|e| TlsError::Invalid(format!("a certificate does not parse: {e}")))
}

fn subject_alt_names(c: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(ext)) = c.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => out.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        out.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether the names cover `host` (one-label wildcards as browsers match them).
pub(crate) fn covers(sans: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return sans.iter().any(|s| s.parse::<IpAddr>().ok() == Some(ip));
    }
    sans.iter().any(|s| {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => s == host,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    struct Pki {
        root: rcgen::Certificate,
        inter: rcgen::Certificate,
        leaf: rcgen::Certificate,
        leaf_key: KeyPair,
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p
    }

    fn pki() -> Pki {
        let root_key = KeyPair::generate().expect("key");
        let root_params = ca_params("test root");
        let root = root_params.self_signed(&root_key).expect("root");
        let root_issuer = Issuer::new(root_params, root_key);
        let inter_key = KeyPair::generate().expect("key");
        let inter_params = ca_params("test intermediate");
        let inter = inter_params
            .signed_by(&inter_key, &root_issuer)
            .expect("inter");
        let inter_issuer = Issuer::new(inter_params, inter_key);
        let leaf_key = KeyPair::generate().expect("key");
        let mut leaf_params =
            CertificateParams::new(vec!["registry.test".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        let now = time::OffsetDateTime::now_utc();
        leaf_params.not_before = now - time::Duration::days(1);
        leaf_params.not_after = now + time::Duration::days(30);
        let leaf = leaf_params
            .signed_by(&leaf_key, &inter_issuer)
            .expect("leaf");
        Pki {
            root,
            inter,
            leaf,
            leaf_key,
        }
    }

    fn key(p: &Pki) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(p.leaf_key.serialize_der()).expect("key der")
    }

    fn subjects(m: &Material) -> Vec<String> {
        m.key
            .cert
            .iter()
            .map(|c| parse(c).expect("parse").subject().to_string())
            .collect()
    }

    #[test]
    fn shuffled_chain_with_root_and_duplicates_is_ordered() {
        let p = pki();
        let certs = vec![
            p.inter.der().clone(),
            p.root.der().clone(),
            p.leaf.der().clone(),
            p.inter.der().clone(),
        ];
        let m = build(
            certs,
            key(&p),
            &["registry.test".into()],
            &[],
            SystemTime::now(),
        )
        .expect("valid");
        assert_eq!(
            subjects(&m),
            vec!["CN=rcgen self signed cert", "CN=test intermediate"]
        );
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        assert_eq!(
            m.summary.issuers,
            vec!["CN=test intermediate", "CN=test root"]
        );
    }

    #[test]
    fn leaf_alone_warns_about_the_chain() {
        let p = pki();
        let m = build(
            vec![p.leaf.der().clone()],
            key(&p),
            &[],
            &[],
            SystemTime::now(),
        )
        .expect("valid");
        assert_eq!(m.key.cert.len(), 1);
        assert!(
            m.warnings.iter().any(|w| w.contains("incomplete")),
            "{:?}",
            m.warnings
        );
        // Trusting the intermediate's issuer... is not enough: the intermediate itself is
        // missing. Trusting the intermediate's subject is.
        let inter_subject = parse(p.inter.der())
            .expect("parse")
            .subject()
            .as_raw()
            .to_vec();
        let m = build(
            vec![p.leaf.der().clone()],
            key(&p),
            &[],
            &[inter_subject],
            SystemTime::now(),
        )
        .expect("valid");
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }

    #[test]
    fn refusals() {
        let p = pki();
        let other = KeyPair::generate().expect("key");
        let wrong_key = PrivateKeyDer::try_from(other.serialize_der()).expect("der");
        let e = build(
            vec![p.leaf.der().clone()],
            wrong_key,
            &[],
            &[],
            SystemTime::now(),
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = build(
            vec![p.leaf.der().clone()],
            key(&p),
            &["other.test".into()],
            &[],
            SystemTime::now(),
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("other.test"), "{e}");
        let later = SystemTime::now() + std::time::Duration::from_secs(60 * 86_400);
        let e = build(vec![p.leaf.der().clone()], key(&p), &[], &[], later)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("expired"), "{e}");
        let earlier = SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        let e = build(vec![p.leaf.der().clone()], key(&p), &[], &[], earlier)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("not valid until"), "{e}");
    }

    #[test]
    fn name_matching() {
        let sans = vec![
            "*.example.com".to_owned(),
            "example.com".to_owned(),
            "10.0.0.1".to_owned(),
        ];
        assert!(covers(&sans, "registry.example.com"));
        assert!(covers(&sans, "EXAMPLE.com."));
        assert!(!covers(&sans, "a.b.example.com"));
        assert!(covers(&sans, "10.0.0.1"));
        assert!(!covers(&sans, "10.0.0.2"));
    }
}
