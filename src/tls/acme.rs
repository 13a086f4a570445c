//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 directory) with
//! instant-acme: the account and the certificate live under `<state.dir>/acme/` (keys 0600,
//! atomic writes); [`Manager::run`] obtains a certificate right away when there is none
//! (a temporary self-signed one serves meanwhile) and renews it at two thirds of its
//! lifetime, in the CA's ARI window when it offers one, or when `renew_before` is left.
//! Failures back off exponentially with jitter, and never retry before the CA's own
//! `Retry-After` (on an order it polls, on a rate limit, on any error answer). Every new
//! certificate goes through [`material::build`] before [`Tls::reload`] swaps it in.
//!
//! Challenges are answered from [`Challenges`]: http-01 by the plain :80 listener,
//! tls-alpn-01 by the pre-TLS hook on the TLS listener (`frontdoor::conn`).

use super::material::{self, Material, Summary, TlsError};
use super::selfsigned::{write_public, write_secret};
use super::Tls;
use crate::config::Config;
use crate::retry::Backoff;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse,
    CertificateIdentifier, ChallengeType, ExternalAccountKey, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The ALPN protocol of tls-alpn-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The longest wait a CA's `Retry-After` may impose: Let's Encrypt's longest rate-limit
/// window is a week. A later time (or a broken header) is not waited for in full.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(7 * 86_400);

/// Where the ACME state lives.
#[derive(Debug, Clone)]
pub struct Paths {
    dir: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("acme"),
        }
    }
    pub fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    /// The next renewal the running process planned (for `berth cert show`).
    pub fn schedule(&self) -> PathBuf {
        self.dir.join("next-renewal")
    }
}

/// Challenge answers, shared between the ACME task and the listeners. An entry exists only
/// while its order is being validated.
#[derive(Default)]
pub struct Challenges {
    http: RwLock<HashMap<String, String>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: the answers are nobody's business in a log.
        f.debug_struct("Challenges")
            .field("http01", &self.http.read().map(|m| m.len()).unwrap_or(0))
            .field(
                "tls_alpn01",
                &self.alpn.read().map(|m| m.len()).unwrap_or(0),
            )
            .finish()
    }
}

impl Challenges {
    /// The key authorization for an http-01 token.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    /// The tls-alpn-01 certificate for a host name.
    pub fn alpn01(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&host.to_ascii_lowercase())
            .cloned()
    }

    fn clear(&self) {
        self.http.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.alpn.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The RFC 8737 challenge certificate: self-signed for `host`, carrying the SHA-256 of the
/// key authorization in the critical acmeIdentifier extension.
pub fn challenge_cert(host: &str, key_auth_digest: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let err = |e: rcgen::Error| TlsError::Invalid(format!("challenge certificate: {e}"));
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(err)?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(key_auth_digest));
    let cert = params.self_signed(&key).map_err(err)?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| TlsError::Invalid(format!("challenge key: {e}")))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::Invalid(format!("challenge key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// Loads the ACME certificate from the state directory and validates it for `hostnames`.
pub fn load(paths: &Paths, hostnames: &[String]) -> Result<Material, TlsError> {
    material::load(&paths.cert(), &paths.key(), None, hostnames, &[])
}

/// When a certificate should be renewed (seconds since the epoch): `renew_before` ahead of
/// expiry when set, else at two thirds of its lifetime.
pub fn renewal_due(s: &Summary, renew_before: Option<Duration>) -> i64 {
    match renew_before {
        Some(d) => s.not_after - d.as_secs() as i64,
        None => s.not_before + (s.not_after - s.not_before) * 2 / 3,
    }
}

/// The wait between failed attempts: `min` doubling up to `max`, scaled by a jitter
/// factor in [0.8, 1.2).
fn backoff(min: Duration, max: Duration) -> Backoff {
    Backoff::new(min, max).jitter(0.8..1.2)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Why an attempt failed. The retry loop branches on the kind: a rate limit without a
/// `Retry-After` waits the longest backoff, an account the CA no longer knows is made
/// anew, and no attempt comes before a time the CA asked for.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// A problem document from the CA (RFC 8555 §6.7), with its type URN.
    #[error("the CA says: {detail} ({kind})")]
    Ca { kind: String, detail: String },
    /// The CA's `Retry-After` on an order being polled points past what one attempt waits.
    #[error("the CA asks to poll the order again at {}", crate::timestamp::seconds(*.at))]
    PollLater { at: SystemTime },
    /// Talking to the CA failed (network, TLS, unreadable answers).
    #[error("{0}")]
    Protocol(String),
    /// Local trouble: the account file, the key, writing the certificate.
    #[error("{0}")]
    Local(String),
    /// The certificate the CA issued fails berth's own checks.
    #[error(transparent)]
    Certificate(#[from] TlsError),
}

impl AcmeError {
    fn ca_problem(&self, suffix: &str) -> bool {
        matches!(self, AcmeError::Ca { kind, .. } if kind.ends_with(suffix))
    }

    fn rate_limited(&self) -> bool {
        self.ca_problem(":rateLimited")
    }

    fn account_unknown(&self) -> bool {
        self.ca_problem(":accountDoesNotExist")
    }
}

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> Self {
        match &e {
            instant_acme::Error::Api(p) => AcmeError::Ca {
                kind: p.r#type.clone().unwrap_or_else(|| "no type".into()),
                detail: p.detail.clone().unwrap_or_else(|| "no detail".into()),
            },
            // instant-acme waits out a Retry-After while polling, up to the policy's
            // timeout; a later one ends the poll with the time the CA named.
            instant_acme::Error::Timeout(Some(next)) => {
                let ahead = next
                    .saturating_duration_since(Instant::now())
                    .min(RETRY_AFTER_MAX);
                let now = SystemTime::now();
                AcmeError::PollLater {
                    at: now.checked_add(ahead).unwrap_or(now),
                }
            }
            other => AcmeError::Protocol(other.to_string()),
        }
    }
}

/// An EAB HMAC key as CAs hand it out: base64url (RFC 8555 §7.3.4), padding optional;
/// the standard alphabet is taken too, as a pasted key sometimes is.
fn eab_key(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    URL.decode(s).or_else(|_| STANDARD.decode(s)).ok()
}

/// The time the CA asked the next attempt to wait for after `e`: the one of the order
/// poll, or the `Retry-After` of an error answer during the attempt (`answered`).
fn ca_retry_time(e: &AcmeError, answered: Option<SystemTime>) -> Option<SystemTime> {
    match e {
        AcmeError::PollLater { at } => Some(*at),
        AcmeError::Ca { .. } | AcmeError::Protocol(_) => answered,
        AcmeError::Local(_) | AcmeError::Certificate(_) => None,
    }
}

/// The wait before the next attempt after `e`: `backoff`, or `longest` for a rate limit
/// that came without a time, but never less than the CA asked for (`ca_time`; at most
/// [`RETRY_AFTER_MAX`] ahead).
fn retry_delay(
    e: &AcmeError,
    ca_time: Option<SystemTime>,
    backoff: Duration,
    longest: Duration,
    now: SystemTime,
) -> Duration {
    let asked = ca_time.map(|t| t.duration_since(now).unwrap_or(Duration::ZERO));
    let base = if e.rate_limited() && asked.is_none() {
        longest
    } else {
        backoff
    };
    match asked {
        Some(asked) => base.max(asked.min(RETRY_AFTER_MAX)),
        None => base,
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): seconds from `now`, or an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(secs) => now.checked_add(Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(value).ok(),
    }
}

/// The time the CA's latest error answer asked to wait for, if it named one. Written by
/// [`CaHttp`], taken by the retry loop after a failed attempt.
#[derive(Debug, Default)]
struct RetryAfter(Mutex<Option<SystemTime>>);

impl RetryAfter {
    fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    fn take(&self) -> Option<SystemTime> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The HTTP client instant-acme talks to the CA with: the project's one outbound client
/// (TLS verified against the system's roots or `ca_roots`, redirects not followed), which
/// also notes the `Retry-After` of error answers: instant-acme turns those into a problem
/// document without their headers.
struct CaHttp {
    client: crate::upstream::Client,
    retry_after: Arc<RetryAfter>,
}

impl CaHttp {
    /// With the system's roots, or with the certificates in `ca_roots`.
    fn new(ca_roots: Option<&Path>, retry_after: Arc<RetryAfter>) -> Result<Self, AcmeError> {
        use crate::upstream::{Client, ClientOptions, Roots};
        let options = ClientOptions {
            timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            roots: match ca_roots {
                Some(path) => Roots::File(path.to_owned()),
                None => Roots::System,
            },
            // Directory, orders, a certificate chain: a few KiB each.
            body_max: 1 << 20,
            ..ClientOptions::default()
        };
        let client = Client::new(&options)
            .map_err(|e| AcmeError::Local(format!("the CA's TLS roots: {e}")))?;
        Ok(Self {
            client,
            retry_after,
        })
    }
}

impl HttpClient for CaHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<bytes::Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let other = |e: crate::upstream::ClientError| instant_acme::Error::Other(Box::new(e));
            if req.uri().scheme_str() != Some("https") {
                return Err(instant_acme::Error::Str(
                    "the CA must be reached over https://",
                ));
            }
            let (parts, body) = req.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?
                .to_bytes();
            let request = http::Request::from_parts(parts, http_body_util::Full::new(body));
            let rsp = client.send(request).await.map_err(other)?;
            let status = rsp.status();
            if status.is_client_error() || status.is_server_error() {
                let at = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                if let Some(at) = at {
                    retry_after.set(at);
                }
            }
            let mut head = http::Response::new(());
            *head.status_mut() = status;
            *head.version_mut() = rsp.version();
            *head.headers_mut() = rsp.headers().clone();
            let body = rsp.bytes().await.map_err(other)?;
            Ok(BytesResponse {
                parts: head.into_parts().0,
                body: Box::new(body),
            })
        })
    }
}

/// The stored account: the credentials and the directory they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Runs the certificate lifecycle for one configuration.
pub struct Manager {
    pub paths: Paths,
    pub directory: String,
    pub email: Option<String>,
    pub hostnames: Vec<String>,
    pub challenges: Vec<ChallengeType>,
    pub eab: Option<(String, PathBuf)>,
    pub ca_roots: Option<PathBuf>,
    pub renew_before: Option<Duration>,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub answers: Arc<Challenges>,
    pub tls: Arc<Tls>,
    retry_after: Arc<RetryAfter>,
}

impl Manager {
    pub fn new(cfg: &Config, answers: Arc<Challenges>, tls: Arc<Tls>) -> Self {
        let a = &cfg.tls.acme;
        Self {
            paths: Paths::new(&cfg.state.dir),
            directory: a.directory().to_owned(),
            email: a.email.clone(),
            hostnames: cfg.acme_hostnames(),
            challenges: a
                .challenges
                .iter()
                .map(|c| {
                    if c == "http-01" {
                        ChallengeType::Http01
                    } else {
                        ChallengeType::TlsAlpn01
                    }
                })
                .collect(),
            eab: a.eab_kid.clone().zip(a.eab_hmac_key_file.clone()),
            ca_roots: a.ca_roots.clone(),
            renew_before: a.renew_before.map(|d| d.0),
            retry_min: a.retry_min.0,
            retry_max: a.retry_max.0,
            answers,
            tls,
            retry_after: Arc::default(),
        }
    }

    /// Forever: wait until a certificate is due, obtain it, swap it in; back off on failure.
    pub async fn run(self) {
        let mut failures: u32 = 0;
        let mut account: Option<Account> = None;
        loop {
            let wait = match self.next_due(account.as_ref()).await {
                Some(due) => Duration::from_secs((due - now_secs()).max(0) as u64),
                None => Duration::ZERO,
            };
            if !wait.is_zero() {
                let due = UNIX_EPOCH + Duration::from_secs((now_secs() as u64) + wait.as_secs());
                let _ = write_public(
                    &self.paths.schedule(),
                    crate::timestamp::seconds(due).as_bytes(),
                );
                tracing::info!(next_renewal = %crate::timestamp::seconds(due), "ACME: certificate valid; renewal scheduled");
                // Wake at least hourly: the clock may jump, the files may be replaced.
                tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
                if self
                    .next_due(account.as_ref())
                    .await
                    .is_some_and(|d| d > now_secs())
                {
                    continue;
                }
            }
            // The order of challenge types rotates with each failure.
            let kind = self.challenges[failures as usize % self.challenges.len()].clone();
            // Only this attempt's answers count.
            self.retry_after.take();
            let result = async {
                if account.is_none() {
                    account = Some(self.account().await?);
                }
                let acct = account
                    .as_ref()
                    .ok_or_else(|| AcmeError::Local("no account".into()))?;
                self.obtain(acct, kind.clone()).await
            }
            .await;
            self.answers.clear();
            match result {
                Ok(summary) => {
                    failures = 0;
                    tracing::info!(
                        serial = %summary.serial,
                        days_left = super::days_left(&summary),
                        "ACME: new certificate swapped in"
                    );
                    // Even a renew_before longer than the lifetime never makes a tight loop.
                    tokio::time::sleep(self.retry_min).await;
                }
                Err(e) => {
                    failures += 1;
                    // Start from the directory again next time; an account the CA no
                    // longer knows (a reset staging CA, say) is made anew.
                    account = None;
                    if e.account_unknown() {
                        let _ = std::fs::remove_file(self.paths.account());
                    }
                    let now = SystemTime::now();
                    let ca_time = ca_retry_time(&e, self.retry_after.take());
                    let delay = retry_delay(
                        &e,
                        ca_time,
                        backoff(self.retry_min, self.retry_max).wait(failures),
                        self.retry_max,
                        now,
                    );
                    tracing::warn!(
                        challenge = ?kind,
                        attempt = failures,
                        retry_in_s = delay.as_secs(),
                        ca_retry_after_s = ca_time
                            .map(|t| t.duration_since(now).unwrap_or_default().as_secs()),
                        error = %e,
                        "ACME: obtaining a certificate failed; the current certificate keeps serving"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// When the current ACME certificate is due for renewal; `None` when there is none
    /// (a temporary certificate is serving) and one is needed now.
    async fn next_due(&self, account: Option<&Account>) -> Option<i64> {
        let m = load(&self.paths, &self.hostnames).ok()?;
        let mut due = renewal_due(&m.summary, self.renew_before);
        if self.renew_before.is_none() {
            if let (Some(acct), Some(leaf)) = (account, m.key.cert.first()) {
                if let Ok(id) = CertificateIdentifier::try_from(leaf) {
                    if let Ok((info, _)) = acct.renewal_info(&id).await {
                        let (start, end) = (
                            info.suggested_window.start.unix_timestamp(),
                            info.suggested_window.end.unix_timestamp(),
                        );
                        if end > start {
                            due = start + (rand::random::<u64>() % (end - start) as u64) as i64;
                        }
                    }
                }
            }
        }
        Some(due)
    }

    /// Loads the stored account for this directory, or creates one.
    async fn account(&self) -> Result<Account, AcmeError> {
        let builder = || -> Result<AccountBuilder, AcmeError> {
            let http = CaHttp::new(self.ca_roots.as_deref(), self.retry_after.clone())?;
            Ok(Account::builder_with_http(Box::new(http)))
        };
        if let Ok(text) = std::fs::read(self.paths.account()) {
            if let Ok(stored) = serde_json::from_slice::<StoredAccount>(&text) {
                if stored.directory == self.directory {
                    let acct = builder()?.from_credentials(stored.credentials).await?;
                    tracing::info!(directory = %self.directory, "ACME: account loaded");
                    return Ok(acct);
                }
            }
        }
        let contact = self.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let eab = match &self.eab {
            Some((kid, file)) => {
                let raw = std::fs::read_to_string(file)
                    .map_err(|e| AcmeError::Local(format!("{}: {e}", file.display())))?;
                let key = eab_key(raw.trim()).ok_or_else(|| {
                    AcmeError::Local(format!("{}: not a base64url HMAC key", file.display()))
                })?;
                Some(ExternalAccountKey::new(kid.clone(), &key))
            }
            None => None,
        };
        let (acct, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.clone(),
                eab.as_ref(),
            )
            .await?;
        let stored = StoredAccount {
            directory: self.directory.clone(),
            credentials,
        };
        let json =
            serde_json::to_vec(&stored).map_err(|e| AcmeError::Local(format!("account: {e}")))?;
        write_secret(&self.paths.account(), &json)?;
        tracing::info!(directory = %self.directory, id = %acct.id(), "ACME: account created");
        Ok(acct)
    }

    /// One order: challenges, finalization, validation, files, swap.
    async fn obtain(&self, acct: &Account, kind: ChallengeType) -> Result<Summary, AcmeError> {
        let ids: Vec<Identifier> = self
            .hostnames
            .iter()
            .map(|h| Identifier::Dns(h.clone()))
            .collect();
        let mut order = acct.new_order(&NewOrder::new(&ids)).await?;
        tracing::info!(names = ?self.hostnames, url = %order.url(), challenge = ?kind, "ACME: order created");
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Protocol(format!("authorization is {other:?}"))),
            }
            let mut ch = authz.challenge(kind.clone()).ok_or_else(|| {
                AcmeError::Protocol(format!("the CA offers no {kind:?} challenge"))
            })?;
            let host = match ch.identifier().identifier {
                Identifier::Dns(h) => h.clone(),
                other => {
                    return Err(AcmeError::Protocol(format!(
                        "unexpected identifier {other:?}"
                    )))
                }
            };
            let key_auth = ch.key_authorization();
            match kind {
                ChallengeType::Http01 => {
                    self.answers
                        .http
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(ch.token.clone(), key_auth.as_str().to_owned());
                }
                _ => {
                    let cert = challenge_cert(&host, key_auth.digest().as_ref())?;
                    self.answers
                        .alpn
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(host.to_ascii_lowercase(), cert);
                }
            }
            ch.set_ready().await?;
            tracing::info!(host = %host, challenge = ?kind, "ACME: challenge ready");
        }
        let poll = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(90));
        let status = order.poll_ready(&poll).await?;
        if status != OrderStatus::Ready {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|p| p.detail.clone().unwrap_or_default())
                .unwrap_or_default();
            return Err(AcmeError::Protocol(format!(
                "validation failed: order is {status:?} {detail}"
            )));
        }
        tracing::info!("ACME: challenges validated; finalizing");
        let key = KeyPair::generate().map_err(|e| AcmeError::Local(e.to_string()))?;
        let csr = CertificateParams::new(self.hostnames.clone())
            .and_then(|p| p.serialize_request(&key))
            .map_err(|e| AcmeError::Local(format!("CSR: {e}")))?;
        order.finalize_csr(csr.der()).await?;
        let chain_pem = order.poll_certificate(&poll).await?;
        // Same checks as certificate files: key match, names, validity, chain order.
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| AcmeError::Protocol(format!("the CA sent unreadable PEM: {e}")))?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| AcmeError::Local(e.to_string()))?;
        let m = material::build(certs, key_der, &self.hostnames, &[], SystemTime::now())?;
        tracing::info!(serial = %m.summary.serial, not_after = m.summary.not_after, "ACME: certificate issued");
        write_secret(&self.paths.key(), key.serialize_pem().as_bytes())?;
        write_public(&self.paths.cert(), chain_pem.as_bytes())?;
        Ok(self.tls.install(m, "ACME certificate installed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(not_before: i64, not_after: i64) -> Summary {
        Summary {
            subject: String::new(),
            sans: Vec::new(),
            issuers: Vec::new(),
            serial: String::new(),
            not_before,
            not_after,
        }
    }

    #[test]
    fn renewal_schedule() {
        // 90-day certificate: renewed after 60 days.
        let s = summary(0, 90 * 86_400);
        assert_eq!(renewal_due(&s, None), 60 * 86_400);
        assert_eq!(
            renewal_due(&s, Some(Duration::from_secs(30 * 86_400))),
            60 * 86_400
        );
        assert_eq!(
            renewal_due(&s, Some(Duration::from_secs(10 * 86_400))),
            80 * 86_400
        );
    }

    #[test]
    fn eab_keys_in_either_alphabet() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        use base64::Engine as _;
        for e in [
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes),
            base64::engine::general_purpose::URL_SAFE.encode(&bytes),
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        ] {
            assert_eq!(eab_key(&e).as_deref(), Some(&bytes[..]), "{e}");
        }
        assert_eq!(eab_key("not base64!"), None);
    }

    #[test]
    fn the_retry_loop_tells_ca_problems_apart() {
        let ca = |kind: &str| AcmeError::Ca {
            kind: kind.into(),
            detail: "x".into(),
        };
        let limited = ca("urn:ietf:params:acme:error:rateLimited");
        assert!(limited.rate_limited() && !limited.account_unknown());
        let gone = ca("urn:ietf:params:acme:error:accountDoesNotExist");
        assert!(gone.account_unknown() && !gone.rate_limited());
        // The words in a detail or a local message are not a problem type.
        let local = AcmeError::Local("rateLimited accountDoesNotExist".into());
        assert!(!local.rate_limited() && !local.account_unknown());
        assert_eq!(
            ca("urn:ietf:params:acme:error:badNonce").to_string(),
            "the CA says: x (urn:ietf:params:acme:error:badNonce)"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        for bad in ["", "soon", "-5", "1.5", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn the_next_attempt_never_comes_before_the_cas_retry_after() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        let (backoff, longest) = (s(60), s(6 * 3600));
        let limited = AcmeError::Ca {
            kind: "urn:ietf:params:acme:error:rateLimited".into(),
            detail: "too many new orders".into(),
        };
        let other = AcmeError::Ca {
            kind: "urn:ietf:params:acme:error:serverInternal".into(),
            detail: "busy".into(),
        };
        let at = |secs| Some(now + s(secs));
        let delay = |e: &AcmeError, answered| {
            retry_delay(e, ca_retry_time(e, answered), backoff, longest, now)
        };
        // A rate limit: the CA's time when it gives one (shorter or longer than the
        // longest backoff), else the longest backoff.
        assert_eq!(delay(&limited, at(600)), s(600));
        assert_eq!(delay(&limited, at(86_400)), s(86_400));
        assert_eq!(delay(&limited, None), longest);
        // Any other error answer: the backoff, or the CA's time when that is later.
        assert_eq!(delay(&other, None), backoff);
        assert_eq!(delay(&other, at(10)), backoff);
        assert_eq!(delay(&other, at(300)), s(300));
        // A time already past is no reason to wait longer than the backoff.
        assert_eq!(delay(&other, Some(now - s(5))), backoff);
        // An order poll the CA wants to continue later than the attempt waits.
        let later = AcmeError::PollLater { at: now + s(900) };
        assert_eq!(delay(&later, None), s(900));
        // The answers' time does not apply to a failure of berth's own.
        let local = AcmeError::Local("disk full".into());
        assert_eq!(delay(&local, at(900)), backoff);
        // Never longer than a week, whatever the header says.
        assert_eq!(delay(&limited, at(400 * 86_400)), RETRY_AFTER_MAX);
    }

    #[test]
    fn a_poll_timeout_with_the_cas_time_becomes_poll_later() {
        let next = Instant::now() + Duration::from_secs(300);
        let e = AcmeError::from(instant_acme::Error::Timeout(Some(next)));
        let AcmeError::PollLater { at } = e else {
            panic!("not PollLater: {e:?}");
        };
        let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
        assert!(ahead > Duration::from_secs(295) && ahead <= Duration::from_secs(300));
        // Without a time from the CA it is a plain protocol failure (backoff).
        assert!(matches!(
            AcmeError::from(instant_acme::Error::Timeout(None)),
            AcmeError::Protocol(_)
        ));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let b = backoff(Duration::from_secs(60), Duration::from_secs(6 * 3600));
        assert_eq!(b.wait_at(1, 0.5), Duration::from_secs(60));
        assert_eq!(b.wait_at(2, 0.5), Duration::from_secs(120));
        assert_eq!(b.wait_at(5, 0.5), Duration::from_secs(960));
        assert_eq!(b.wait_at(30, 0.5), Duration::from_secs(6 * 3600));
        assert_eq!(b.wait_at(1, 0.0), Duration::from_secs(48));
        assert!(b.wait_at(1, 0.999) < Duration::from_secs(72));
        // Never a tight loop, even at failure 0.
        assert!(b.wait_at(0, 0.0) >= Duration::from_secs(48));
    }

    #[test]
    fn challenge_certificate_carries_the_digest() {
        let digest = [7u8; 32];
        let ck = challenge_cert("registry.example.com", &digest).expect("cert");
        let der = ck.cert[0].as_ref();
        let (_, x) = x509_parser::parse_x509_certificate(der).expect("parse");
        let ext = x
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // DER OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let sans = x.subject_alternative_name().expect("san").expect("san");
        assert_eq!(
            format!("{:?}", sans.value.general_names),
            "[DNSName(\"registry.example.com\")]"
        );
    }
}
