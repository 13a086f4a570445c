//! TLS: our own certificate resolver, certificates from files, and the self-signed homelab
//! mode. Every certificate, whatever its source, is validated by [`material`] and becomes an
//! `Arc<CertifiedKey>` swapped atomically into the [`Resolver`]: new handshakes get the new
//! certificate, open connections keep the one they started with.

pub mod acme;
pub(crate) mod material;
pub mod selfsigned;

use crate::config::{Config, TlsPlan};
use material::{Material, Summary, TlsError};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Hands the current certificate to every handshake.
#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Resolver {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
        }
    }

    pub fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Where the served certificate comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Files {
        certificate: PathBuf,
        key: PathBuf,
        chain: Option<PathBuf>,
        ca: Option<PathBuf>,
        hostnames: Vec<String>,
    },
    SelfSigned {
        state_dir: PathBuf,
        names: Vec<String>,
    },
    /// Issued by an ACME CA; until the first one arrives, a self-signed certificate for
    /// `fallback_names` serves.
    Acme {
        state_dir: PathBuf,
        hostnames: Vec<String>,
        fallback_names: Vec<String>,
    },
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Files { .. } => "files",
            Source::SelfSigned { .. } => "self-signed",
            Source::Acme { .. } => "acme",
        }
    }

    /// Loads and validates the certificate this source names (issuing a self-signed one
    /// when needed).
    pub fn load(&self) -> Result<Material, TlsError> {
        match self {
            Source::Files {
                certificate,
                key,
                chain,
                ca,
                hostnames,
            } => {
                let roots = material::trusted_root_subjects(ca.as_deref())?;
                material::load(certificate, key, chain.as_deref(), hostnames, &roots)
            }
            Source::SelfSigned { state_dir, names } => {
                selfsigned::ensure(&selfsigned::Paths::new(state_dir), names).map(|(m, _)| m)
            }
            Source::Acme {
                state_dir,
                hostnames,
                fallback_names,
            } => match acme::load(&acme::Paths::new(state_dir), hostnames) {
                Ok(m) => Ok(m),
                Err(e) => {
                    if acme::Paths::new(state_dir).cert().exists() {
                        tracing::warn!(error = %e, "the stored ACME certificate cannot be used");
                    }
                    let mut m =
                        selfsigned::ensure(&selfsigned::Paths::new(state_dir), fallback_names)
                            .map(|(m, _)| m)?;
                    m.warnings.push(
                        "temporary self-signed certificate: the ACME certificate is not issued yet"
                            .into(),
                    );
                    Ok(m)
                }
            },
        }
    }

    /// Files whose change should trigger a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        match self {
            Source::Files {
                certificate,
                key,
                chain,
                ..
            } => [Some(certificate.clone()), Some(key.clone()), chain.clone()]
                .into_iter()
                .flatten()
                .collect(),
            Source::SelfSigned { .. } | Source::Acme { .. } => Vec::new(),
        }
    }
}

/// The TLS state of a running server: its source and the resolver handshakes use.
pub struct Tls {
    pub source: Source,
    pub resolver: Arc<Resolver>,
    summary: RwLock<Summary>,
}

impl Tls {
    /// Loads the certificate at start: a bad file is an error here, before anything listens.
    pub fn start(source: Source) -> Result<Tls, TlsError> {
        let m = source.load()?;
        log_loaded(&source, &m, "certificate loaded");
        Ok(Tls {
            source,
            resolver: Arc::new(Resolver::new(m.key)),
            summary: RwLock::new(m.summary),
        })
    }

    /// Loads again and swaps the new certificate in; on any problem the current one keeps
    /// serving and the error is returned (and logged by the caller).
    pub fn reload(&self) -> Result<Summary, TlsError> {
        let m = self.source.load()?;
        Ok(self.install(m, "certificate reloaded"))
    }

    /// Swaps validated material in: new handshakes get it, open connections keep theirs.
    pub fn install(&self, m: Material, what: &str) -> Summary {
        log_loaded(&self.source, &m, what);
        self.resolver.swap(m.key);
        *self.summary.write().unwrap_or_else(|p| p.into_inner()) = m.summary.clone();
        m.summary
    }

    /// Whether a self-issued certificate is close enough to expiry to be reissued now
    /// (certificates from files are the operator's to replace).
    pub fn needs_renewal(&self) -> bool {
        matches!(self.source, Source::SelfSigned { .. })
            && days_left(&self.summary()) < selfsigned::RENEW_BEFORE_DAYS
    }

    pub fn summary(&self) -> Summary {
        self.summary
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn log_loaded(source: &Source, m: &Material, what: &str) {
    tracing::info!(
        source = source.name(),
        subject = %m.summary.subject,
        names = ?m.summary.sans,
        serial = %m.summary.serial,
        not_after = m.summary.not_after,
        chain = m.key.cert.len(),
        "{what}"
    );
    for w in &m.warnings {
        tracing::warn!(source = source.name(), "{w}");
    }
}

/// The TLS source the configuration asks for, or `None` when TLS is off.
pub fn source_for(cfg: &Config) -> Option<Source> {
    match cfg.tls_plan() {
        TlsPlan::Off => None,
        TlsPlan::Files => Some(Source::Files {
            certificate: cfg.tls.certificate.clone().unwrap_or_default(),
            key: cfg.tls.key.clone().unwrap_or_default(),
            chain: cfg.tls.chain.clone(),
            ca: cfg.tls.ca.clone(),
            hostnames: cfg.tls.hostnames.clone(),
        }),
        TlsPlan::SelfSigned => Some(Source::SelfSigned {
            state_dir: cfg.state.dir.clone(),
            names: self_signed_names(cfg),
        }),
        TlsPlan::Acme => {
            let hostnames = cfg.acme_hostnames();
            let mut fallback_names = hostnames.clone();
            fallback_names.extend(self_signed_names(cfg));
            let mut seen = std::collections::HashSet::new();
            fallback_names.retain(|n| seen.insert(n.clone()));
            Some(Source::Acme {
                state_dir: cfg.state.dir.clone(),
                hostnames,
                fallback_names,
            })
        }
    }
}

/// The names a self-signed certificate covers: the configured hostnames, this machine's
/// name, loopback, and every specific address berth listens on.
fn self_signed_names(cfg: &Config) -> Vec<String> {
    let mut names: Vec<String> = cfg.tls.hostnames.clone();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() {
        names.push(host.to_owned());
    }
    names.push("localhost".into());
    names.push("127.0.0.1".into());
    names.push("::1".into());
    for (addr, _) in cfg.listeners() {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Days until the certificate expires (negative once expired).
pub fn days_left(s: &Summary) -> i64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (s.not_after - now).div_euclid(86_400)
}

/// The operator's instructions for trusting the self-signed CA.
pub fn trust_instructions(cfg: &Config) -> Option<String> {
    if !matches!(cfg.tls_plan(), TlsPlan::SelfSigned) {
        return None;
    }
    let ca = selfsigned::Paths::new(&cfg.state.dir).ca_cert();
    let ca = std::fs::canonicalize(&ca).unwrap_or(ca);
    let host = cfg
        .tls
        .hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "<host>".into());
    let port = cfg
        .listeners()
        .into_iter()
        .find(|(_, tls)| *tls)
        .map(|(a, _)| a.port())
        .unwrap_or(443);
    Some(format!(
        "clients trust this registry by trusting its CA {ca}:\n  docker: copy it to /etc/docker/certs.d/{host}:{port}/ca.crt\n  podman, skopeo, buildah: copy it to /etc/containers/certs.d/{host}:{port}/ca.crt\n  or print it with `berth cert ca`",
        ca = ca.display()
    ))
}
