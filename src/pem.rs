//! Certificates read from PEM files, checked to parse, with errors that name the file.
//!
//! A leaf: the TLS front door ([`crate::tls`]), the outbound client's private CAs
//! ([`crate::upstream`]) and the token issuer's certificate ([`crate::auth`]) all read
//! certificates here, so none of them has to import another for it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct PemError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> PemError {
    PemError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Every certificate in a PEM file, in file order; at least one, each of which parses.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            path,
            "no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    for c in &certs {
        X509Certificate::from_der(c.as_ref())
            .map_err(|e| err(path, format!("a certificate does not parse: {e}")))?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("test setup");
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "hello\n").expect("test setup");
        let e = read_certs(&p).expect_err("refused");
        assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let missing = dir.path().join("absent.pem");
        assert!(read_certs(&missing)
            .expect_err("refused")
            .to_string()
            .contains("cannot read"));
    }

    #[test]
    fn every_certificate_is_returned_in_order() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).expect("test setup");
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).expect("test setup");
        let dir = tempfile::tempdir().expect("test setup");
        let p = dir.path().join("chain.pem");
        std::fs::write(&p, format!("{}{}", a.cert.pem(), b.cert.pem())).expect("test setup");
        let got = read_certs(&p).expect("test setup");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref(), a.cert.der().as_ref());
        assert_eq!(got[1].as_ref(), b.cert.der().as_ref());
    }
}
