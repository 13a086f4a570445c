//! The homelab mode: a local CA made on first start, and a server certificate it signs for
//! the configured hostnames and addresses, kept under the state directory (keys 0600) and
//! renewed before it expires or when the names change.

use super::material::{self, Material, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Server certificates live this long (the browsers' ceiling)...
const SERVER_LIFETIME_DAYS: i64 = 397;
/// ...and are replaced when less than this is left.
pub const RENEW_BEFORE_DAYS: i64 = 30;
const CA_LIFETIME_DAYS: i64 = 3650;

/// Where the CA and server certificate are kept.
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("tls"),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

/// Loads the server certificate, making the CA and/or a new server certificate when they
/// are missing, expiring or do not cover `names`. Returns the material and whether anything
/// was (re)issued.
pub fn ensure(paths: &Paths, names: &[String]) -> Result<(Material, bool), TlsError> {
    let ca_subject = ensure_ca(paths)?;
    let current = material::load(
        &paths.server_cert(),
        &paths.server_key(),
        Some(&paths.ca_cert()),
        names,
        std::slice::from_ref(&ca_subject),
    );
    if let Ok(m) = current {
        let left = m.summary.not_after - now_secs();
        if left > RENEW_BEFORE_DAYS * 86_400 {
            return Ok((m, false));
        }
    }
    issue_server(paths, names)?;
    let m = material::load(
        &paths.server_cert(),
        &paths.server_key(),
        Some(&paths.ca_cert()),
        names,
        &[ca_subject],
    )?;
    Ok((m, true))
}

fn ensure_ca(paths: &Paths) -> Result<Vec<u8>, TlsError> {
    let (cert, key) = (paths.ca_cert(), paths.ca_key());
    if !cert.exists() || !key.exists() {
        let key_pair = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("berth local CA {}", host.trim()).trim().to_owned(),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "berth");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_LIFETIME_DAYS);
        let ca = params.self_signed(&key_pair).map_err(gen_err)?;
        write_secret(&key, key_pair.serialize_pem().as_bytes())?;
        write_public(&cert, ca.pem().as_bytes())?;
        tracing::info!(path = %cert.display(), "made a local certificate authority");
    }
    let der = material::read_certs(&cert)?;
    let first = der
        .first()
        .ok_or_else(|| TlsError::Invalid("empty CA file".into()))?;
    let (_, parsed) = <x509_parser::prelude::X509Certificate as x509_parser::prelude::FromDer<
        '_,
        _,
    >>::from_der(first.as_ref())
    .map_err(|e| TlsError::File {
        path: cert.clone(),
        message: e.to_string(),
    })?;
    Ok(parsed.subject().as_raw().to_vec())
}

fn issue_server(paths: &Paths, names: &[String]) -> Result<(), TlsError> {
    let ca_pem = std::fs::read_to_string(paths.ca_cert()).map_err(|e| TlsError::File {
        path: paths.ca_cert(),
        message: e.to_string(),
    })?;
    let ca_key_pem = std::fs::read_to_string(paths.ca_key()).map_err(|e| TlsError::File {
        path: paths.ca_key(),
        message: e.to_string(),
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(gen_err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(gen_err)?;
    let key_pair = KeyPair::generate().map_err(gen_err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "berth".into()),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, SERVER_LIFETIME_DAYS);
    let cert = params.signed_by(&key_pair, &issuer).map_err(gen_err)?;
    write_secret(&paths.server_key(), key_pair.serialize_pem().as_bytes())?;
    write_public(&paths.server_cert(), cert.pem().as_bytes())?;
    tracing::info!(names = ?names, path = %paths.server_cert().display(), "issued a server certificate from the local CA");
    Ok(())
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Invalid(format!("generating a certificate failed: {e}"))
}

/// Writes a private key: mode 0600 from the start, atomically.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_with_mode(path, bytes, 0o600)
}

pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_with_mode(path, bytes, 0o644)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    crate::store::fs::write_atomic_mode(path, bytes, mode).map_err(|e| TlsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_makes_a_ca_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths::new(dir.path());
        let names = vec!["nas.lan".to_owned(), "127.0.0.1".to_owned()];
        let (m, issued) = ensure(&paths, &names).expect("ensure");
        assert!(issued);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        assert!(m.summary.sans.contains(&"nas.lan".to_owned()));
        for key in [paths.ca_key(), paths.server_key()] {
            let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let (again, issued) = ensure(&paths, &names).expect("ensure");
        assert!(!issued, "a valid certificate is reused");
        assert_eq!(again.summary.serial, m.summary.serial);
        // New names: a new server certificate from the same CA.
        let ca_before = std::fs::read(paths.ca_cert()).expect("ca");
        let (third, issued) = ensure(&paths, &["other.lan".to_owned()]).expect("ensure");
        assert!(issued);
        assert_ne!(third.summary.serial, m.summary.serial);
        assert_eq!(std::fs::read(paths.ca_cert()).expect("ca"), ca_before);
        use rustls::pki_types::pem::PemObject;
        assert!(rustls::pki_types::PrivateKeyDer::from_pem_file(paths.server_key()).is_ok());
    }
}
