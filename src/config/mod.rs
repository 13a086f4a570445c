//! `appliance.toml` into a validated [`Config`]; the only place configuration is read.
//!
//! Every setting has a safe default, so no file at all gives a working local registry. The
//! file is strict (`deny_unknown_fields`: a typo is an error with its line), and values are
//! parsed into their types as it is read ([`values`]). Environment variables override it:
//! first the distribution variables that `registry:2` deployments already set
//! (`REGISTRY_HTTP_ADDR`, ..., see [`distribution`]), then `BERTH__SECTION__KEY` (`env.rs`).
//! What types cannot say, [`Config::validate`] checks (`validate.rs`).
//!
//! This module is a leaf: it uses no other module of berth, and every subsystem takes its
//! values from here.

pub mod distribution;
mod env;
mod validate;
pub mod values;

pub use values::{Cidr, Duration, HttpUrl, Size, TokenAlg};

use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: Http,
    pub tls: Tls,
    pub storage: Storage,
    pub state: State,
    pub limits: Limits,
    pub manifests: Manifests,
    pub auth: AuthConfig,
    pub gc: Gc,
    pub scrub: Scrub,
    pub uploads: Uploads,
    pub notifications: Notifications,
    pub proxy: Proxy,
    pub ui: Ui,
    pub log: Log,
}

/// `[ui]`: the web UI at `/ui/`, on the same listeners and behind the same access rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ui {
    /// Serve it (`false`: `/ui/` is a 404 and `GET /` stays the health check).
    pub enabled: bool,
    /// How long a login lasts.
    pub session_ttl: Duration,
}

impl Default for Ui {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl: Duration::secs(3600),
        }
    }
}

/// `[proxy]`: berth as a pull-through cache (a mirror) of other registries. Each upstream
/// is served read-only under its own repository prefix (`hub/library/nginx` is Docker
/// Hub's `library/nginx`); what is pulled is kept in the store like anything pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    /// `[[proxy.upstreams]]` tables.
    pub upstreams: Vec<ProxyUpstream>,
}

/// One upstream registry (`[[proxy.upstreams]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyUpstream {
    /// The registry host clients mean (`"docker.io"`): what containerd's `?ns=` names.
    pub name: String,
    /// Where its API is (`"https://registry-1.docker.io"`).
    pub url: HttpUrl,
    /// The repository prefix it is served under here (`"hub"`).
    pub prefix: String,
    /// Credentials for the upstream (none: anonymous pulls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file holding the password or token (mode 0600 or stricter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PEM roots for an upstream with a private CA (added to the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// How long a tag's digest is trusted before the upstream is asked again. A digest
    /// reference never expires.
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl: Duration,
    /// This upstream also serves un-prefixed names that are not stored here (what
    /// podman's `[[registry.mirror]]` and docker's `registry-mirrors` send). At most one.
    #[serde(default)]
    pub default: bool,
    /// Token realms, besides those on `url`'s own host, that may receive the credentials
    /// (Docker Hub's `https://auth.docker.io/token` is implied for `registry-1.docker.io`).
    /// A challenge naming any other realm gets an anonymous token request.
    #[serde(default)]
    pub realms: Vec<String>,
    /// One upstream request's head (connect, TLS, status) must come within this.
    #[serde(default = "default_upstream_timeout")]
    pub timeout: Duration,
}

fn default_tag_ttl() -> Duration {
    Duration::secs(300)
}

fn default_upstream_timeout() -> Duration {
    Duration::secs(30)
}

/// `[gc]`: garbage collection of blobs and manifests nothing references any more (also
/// `berth gc`, which runs the same collector once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gc {
    /// How often `berth serve` collects (the time of the last run, by any process on the
    /// store, is kept in the store); "0s" switches the schedule off.
    pub interval: Duration,
    /// Nothing uploaded, mounted, pushed or reported present within this long is removed,
    /// so a push in progress always finds what it was told is there.
    pub grace_period: Duration,
    /// Also unlink manifests that no tag reaches (directly, as an index's child, or as a
    /// referrer of a kept subject), and then their blobs.
    pub delete_untagged: bool,
}

impl Default for Gc {
    fn default() -> Self {
        Self {
            interval: Duration::secs(24 * 3600),
            grace_period: Duration::secs(3600),
            delete_untagged: false,
        }
    }
}

/// `[scrub]`: the integrity check of `berth fsck`, on a schedule in the server. It only
/// reports (a warning per problem in the log, the count in `/metrics`); repairing is
/// `berth fsck --repair`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scrub {
    /// How often `berth serve` checks the whole store (every blob is read and hashed),
    /// counted from the last check by any process on the store; "0s" (the default)
    /// switches it off.
    pub interval: Duration,
}

impl Default for Scrub {
    fn default() -> Self {
        Self {
            interval: Duration::secs(0),
        }
    }
}

/// `[uploads]`: upload sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Uploads {
    /// Sessions with no activity for this long are removed by the collector (on its
    /// schedule and by `berth gc`); "0s" keeps them forever.
    pub purge_after: Duration,
}

impl Default for Uploads {
    fn default() -> Self {
        Self {
            purge_after: Duration::secs(24 * 3600),
        }
    }
}

/// `[notifications]`: webhooks told of every push, pull, delete and mount, in registry:2's
/// envelope format (see `notify`). Undelivered events wait on disk under
/// `<state.dir>/notifications/<name>/` and are retried, also across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    /// `[[notifications.endpoints]]` tables, or inline:
    /// `endpoints = [{ name = "ci", url = "https://ci.example.com/hook" }]`.
    #[serde(deserialize_with = "endpoints")]
    pub endpoints: Vec<NotifyEndpoint>,
}

/// One webhook (registry:2's `notifications.endpoints[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifyEndpoint {
    /// Names the endpoint in logs and its queue directory: letters, digits, '.', '_', '-'.
    pub name: String,
    /// Where events are POSTed: an http:// or https:// URL.
    pub url: HttpUrl,
    /// Extra request headers, e.g. `{ Authorization = "Bearer ..." }`.
    pub headers: std::collections::BTreeMap<String, String>,
    /// One delivery attempt (connect, TLS, request, response header) must finish within this.
    pub timeout: Duration,
    /// Failures in a row that are each retried after `backoff`; after them the wait doubles.
    pub threshold: u32,
    /// Wait after a failed delivery...
    pub backoff: Duration,
    /// ...doubling up to this. Events are never dropped: they wait, in order.
    pub backoff_max: Duration,
    /// Events whose target has one of these media types are not sent here (registry:2's
    /// `ignoredmediatypes` and `ignore.mediatypes`), e.g. ["application/octet-stream"]
    /// for manifests only.
    pub ignored_media_types: Vec<String>,
    /// Actions not sent here: "push", "pull", "delete", "mount" (registry:2's
    /// `ignore.actions`).
    pub ignore_actions: Vec<String>,
    /// PEM roots for an https endpoint with a private CA (else the system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Keep the settings but send nothing (events are not queued either).
    pub disabled: bool,
}

impl NotifyEndpoint {
    /// An endpoint with the default settings.
    pub fn new(name: &str, url: HttpUrl) -> Self {
        WrittenEndpoint {
            name: name.to_owned(),
            ..WrittenEndpoint::default()
        }
        .with_url(url)
    }
}

/// A [`NotifyEndpoint`] as written, its URL still text: [`endpoints`] parses it, so that a
/// bad URL is reported with the endpoint's index. The defaults of an endpoint live here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WrittenEndpoint {
    name: String,
    url: String,
    headers: std::collections::BTreeMap<String, String>,
    timeout: Duration,
    threshold: u32,
    backoff: Duration,
    backoff_max: Duration,
    ignored_media_types: Vec<String>,
    ignore_actions: Vec<String>,
    ca: Option<PathBuf>,
    disabled: bool,
}

impl Default for WrittenEndpoint {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            headers: std::collections::BTreeMap::new(),
            timeout: Duration::secs(5),
            threshold: 1,
            backoff: Duration::secs(1),
            backoff_max: Duration::secs(300),
            ignored_media_types: Vec::new(),
            ignore_actions: Vec::new(),
            ca: None,
            disabled: false,
        }
    }
}

impl WrittenEndpoint {
    fn with_url(self, url: HttpUrl) -> NotifyEndpoint {
        NotifyEndpoint {
            name: self.name,
            url,
            headers: self.headers,
            timeout: self.timeout,
            threshold: self.threshold,
            backoff: self.backoff,
            backoff_max: self.backoff_max,
            ignored_media_types: self.ignored_media_types,
            ignore_actions: self.ignore_actions,
            ca: self.ca,
            disabled: self.disabled,
        }
    }
}

/// `notifications.endpoints`, each URL parsed; an error names the endpoint's key.
fn endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NotifyEndpoint>, D::Error> {
    Vec::<WrittenEndpoint>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, e)| match e.url.parse() {
            Ok(url) => Ok(e.with_url(url)),
            Err(m) => Err(serde::de::Error::custom(format!(
                "notifications.endpoints[{i}].url: {m}"
            ))),
        })
        .collect()
}

/// `[auth]`: who may do what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// "none" (anyone may do anything), "htpasswd" (Basic auth against the file) or
    /// "token" (Bearer tokens from the built-in token service or an external one).
    pub mode: AuthMode,
    /// Accept credentials over plain HTTP from non-loopback clients (they travel in clear).
    pub insecure_allow_plaintext: bool,
    pub htpasswd: HtpasswdConfig,
    pub token: TokenConfig,
    /// Users allowed everything everywhere.
    pub admins: Vec<String>,
    /// Named groups of users, referred to as "@name" in rules.
    pub groups: std::collections::HashMap<String, Vec<String>>,
    /// Permission rules; none means every authenticated user may do everything and
    /// anonymous callers nothing (registry:2's behaviour).
    pub rules: Vec<Rule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            insecure_allow_plaintext: false,
            htpasswd: HtpasswdConfig::default(),
            token: TokenConfig::default(),
            admins: Vec::new(),
            groups: std::collections::HashMap::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    None,
    Htpasswd,
    Token,
}

/// `[auth.token]`: Bearer tokens (the Docker registry token protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// "builtin": berth serves `/token` itself, checking htpasswd users and the rules;
    /// "external": tokens come from another server and are only verified here.
    pub issuer: TokenIssuer,
    /// The `iss` claim tokens carry (and berth's own tokens are given).
    pub issuer_name: String,
    /// The `aud` claim: the name of this registry as the token server knows it.
    pub service: String,
    /// Where clients get tokens, sent in the challenge. Builtin: default
    /// `<external_url or the request's own scheme and host>/token`; external: required.
    pub realm: Option<String>,
    /// Lifetime of built-in tokens.
    pub expiration: Duration,
    /// The built-in signing key (EC P-256, made at first start); default
    /// `<state.dir>/token/signing-key.pem`.
    pub signing_key: Option<PathBuf>,
    /// External: PEM certificates whose keys sign tokens, or roots their `x5c` chains
    /// lead to.
    pub rootcertbundle: Option<PathBuf>,
    /// External: a JWKS file of the token server's keys.
    pub jwks: Option<PathBuf>,
    /// Algorithms a token may be signed with.
    pub algorithms: Vec<TokenAlg>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: TokenIssuer::Builtin,
            issuer_name: "berth".into(),
            service: "berth".into(),
            realm: None,
            expiration: Duration(StdDuration::from_secs(300)),
            signing_key: None,
            rootcertbundle: None,
            jwks: None,
            algorithms: TokenAlg::ALL.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenIssuer {
    Builtin,
    External,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HtpasswdConfig {
    /// bcrypt htpasswd file (`berth user add` writes it, `htpasswd -B` too).
    pub path: PathBuf,
    /// The realm of the Basic challenge.
    pub realm: String,
}

impl Default for HtpasswdConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("berth-htpasswd"),
            realm: "berth".into(),
        }
    }
}

/// One permission rule: these users may do these actions on these repositories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Globs: "team-a/*", "*".
    pub repositories: Vec<String>,
    /// User names, "@group", "*" (any authenticated user) or "anonymous" (everyone).
    pub users: Vec<String>,
    /// "pull", "push", "delete" or "*".
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// How long in-flight requests get to finish after SIGTERM before the process exits.
    pub shutdown_grace: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keepalive_timeout: Duration,
    /// A request's header must arrive completely within this (slowloris clients are cut).
    pub header_timeout: Duration,
    /// Each read of a request body and each write of a response must make progress
    /// within this; slow but steady transfers go on.
    pub io_timeout: Duration,
    /// When TLS is on, plain listeners that redirect to https (308) and will answer ACME
    /// http-01 challenges; `[]` switches them off. A port that cannot be bound is logged
    /// and skipped.
    pub redirect_listen: Vec<SocketAddr>,
    /// The admin listener (plain HTTP): `/metrics` (Prometheus), `/healthz`, `/readyz`.
    /// Keep it on loopback or a private network; `[]` switches it off. A port that cannot
    /// be bound is logged and skipped.
    pub admin_listen: Vec<SocketAddr>,
    /// Send `Strict-Transport-Security` on TLS responses.
    pub hsts: bool,
    /// Peers (addresses or CIDR blocks) whose `X-Forwarded-*` and `Forwarded` headers are
    /// believed; from anyone else those headers are ignored and stripped.
    pub trusted_proxies: Vec<String>,
    /// The URL clients reach berth at, e.g. `https://registry.example.com`; `Location`
    /// headers are built from it. Unset: from trusted forwarded headers, else relative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy and
    /// cloud load balancers send it) from one of `trusted_proxies`; the client address in
    /// it becomes the peer address. Connections without one are closed.
    pub proxy_protocol: bool,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5000))],
            shutdown_grace: Duration::secs(10),
            keepalive_timeout: Duration::secs(60),
            header_timeout: Duration::secs(10),
            io_timeout: Duration::secs(60),
            redirect_listen: vec![SocketAddr::from(([0, 0, 0, 0], 80))],
            admin_listen: vec![SocketAddr::from(([127, 0, 0, 1], 5001))],
            hsts: false,
            trusted_proxies: Vec::new(),
            external_url: None,
            proxy_protocol: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// `auto`: certificate files when `certificate` is set, else self-signed when any
    /// `http.listen` address is not loopback (those listeners then serve TLS), else off.
    pub mode: TlsMode,
    /// TLS listeners, used whenever TLS is on.
    pub listen: Vec<SocketAddr>,
    /// Names (and addresses) the certificate must cover; self-signed certificates are
    /// issued for them.
    pub hostnames: Vec<String>,
    /// PEM certificate, optionally followed by its intermediates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM intermediates, when they are not in the certificate file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<PathBuf>,
    /// PEM private CA the chain may lead to (else the system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Oldest TLS version accepted: "1.2" or "1.3".
    pub min_version: TlsVersion,
    /// Certificates from an ACME CA (Let's Encrypt) when `mode = "acme"`.
    pub acme: Acme,
}

/// `[tls.acme]`: certificates issued and renewed by an ACME CA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Acme {
    /// The CA's directory: a URL, or "production" / "staging" for Let's Encrypt.
    pub directory_url: String,
    /// Contact address for the account (expiry notices from the CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Names to certify; empty means `tls.hostnames`.
    pub hostnames: Vec<String>,
    /// Challenge types, tried in this order: "http-01" (on the :80 listener) and
    /// "tls-alpn-01" (on the TLS listener).
    pub challenges: Vec<String>,
    /// External account binding, for CAs that require it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eab_kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eab_hmac_key_file: Option<PathBuf>,
    /// PEM roots for a private ACME CA's own HTTPS (else the system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_roots: Option<PathBuf>,
    /// Renew when this little validity is left; unset: at two thirds of the lifetime (or
    /// in the CA's ARI window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Duration>,
    /// Failed attempts are retried after this, doubling (with jitter) up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

impl Default for Acme {
    fn default() -> Self {
        Self {
            directory_url: "production".into(),
            email: None,
            hostnames: Vec::new(),
            challenges: vec!["http-01".into(), "tls-alpn-01".into()],
            eab_kid: None,
            eab_hmac_key_file: None,
            ca_roots: None,
            renew_before: None,
            retry_min: Duration::secs(60),
            retry_max: Duration::secs(6 * 3600),
        }
    }
}

impl Acme {
    /// The directory URL with the Let's Encrypt shorthands resolved.
    pub fn directory(&self) -> &str {
        match self.directory_url.as_str() {
            "production" | "letsencrypt" => LETS_ENCRYPT,
            "staging" => LETS_ENCRYPT_STAGING,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            mode: TlsMode::Auto,
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 443))],
            hostnames: Vec::new(),
            certificate: None,
            key: None,
            chain: None,
            ca: None,
            min_version: TlsVersion::V1_2,
            acme: Acme::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Auto,
    Off,
    Files,
    SelfSigned,
    Acme,
}

/// What TLS the configuration amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPlan {
    Off,
    Files,
    SelfSigned,
    Acme,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// Where berth keeps its own state: the local CA, certificates, keys (mode 0600).
    pub dir: PathBuf,
}

impl Default for State {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("berth-state"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Root of the distribution-layout store.
    pub root: PathBuf,
    /// Whether manifests, tags, blobs and uploads may be deleted through the API.
    pub delete_enabled: bool,
    /// Refuse every write (503 UNAVAILABLE) while pulls go on, e.g. during maintenance
    /// or a migration; SIGHUP applies a change. Garbage collection pauses too.
    pub read_only: bool,
    /// Where blobs, manifests and tags live: `"filesystem"` (under `root`) or `"s3"`
    /// (the bucket of `[storage.s3]`; `root` is then unused).
    pub driver: StorageDriver,
    pub s3: S3Storage,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            root: PathBuf::from("berth-data"),
            delete_enabled: true,
            read_only: false,
            driver: StorageDriver::Filesystem,
            s3: S3Storage::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDriver {
    Filesystem,
    S3,
}

/// An S3-compatible bucket (AWS S3, Garage, MinIO, Ceph RGW), laid out as registry:2's
/// s3 driver lays it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Storage {
    /// The S3 API's URL, e.g. `http://127.0.0.1:3900` (Garage); unset: AWS for `region`.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// The directory inside the bucket (registry:2's `rootdirectory`); empty: its top.
    pub prefix: String,
    /// The access key's id; unset: the `AWS_ACCESS_KEY_ID` variable.
    pub access_key_id: Option<String>,
    /// A file holding the secret key (mode 0600 or 0640, not world-readable); unset: the
    /// `AWS_SECRET_ACCESS_KEY` (or `REGISTRY_STORAGE_S3_SECRETKEY`) variable.
    pub secret_access_key_file: Option<PathBuf>,
    /// Bucket in the path (`endpoint/bucket/key`) rather than in the host name; Garage and
    /// most self-hosted stores need it.
    pub path_style: bool,
    /// Blob downloads answer 307 to a presigned URL of the store, so the bytes do not
    /// pass through berth; clients must be able to reach `endpoint`.
    pub redirect: bool,
    /// How long a redirect's presigned URL is valid.
    pub redirect_expiry: Duration,
    /// Bytes per part of an upload (at least 5 MiB, S3's minimum).
    pub part_size: Size,
    /// A PEM file of CA certificates to trust for an `https://` endpoint, besides the
    /// system's.
    pub ca: Option<PathBuf>,
}

impl Default for S3Storage {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key_file: None,
            path_style: false,
            redirect: false,
            redirect_expiry: Duration::secs(20 * 60),
            part_size: Size(8 << 20),
            ca: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest manifest accepted (413 above it).
    pub manifest_max: Size,
    /// Largest blob accepted; 0 means no limit.
    pub blob_max: Size,
    /// Most entries in one `_catalog`, tag-list or referrers page.
    pub page_max: u32,
    /// Connections served at once; further ones are closed when accepted.
    pub connections_max: u32,
    /// Largest request header (request line and all fields); 431 above it.
    pub header_max: Size,
    /// Most header fields in one request; 431 above it.
    pub header_count_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            manifest_max: Size(4 << 20),
            blob_max: Size(0),
            page_max: 1000,
            connections_max: 4096,
            header_max: Size(64 << 10),
            header_count_max: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifests {
    /// Refuse an index whose child manifests are not in the repository.
    pub require_index_children: bool,
    /// Regular expressions: a foreign layer URL must match one (empty: any http(s) URL).
    pub foreign_urls_allow: Vec<String>,
    /// Regular expressions: a foreign layer URL matching one is refused.
    pub foreign_urls_deny: Vec<String>,
}

impl Default for Manifests {
    fn default() -> Self {
        Self {
            require_index_children: true,
            foreign_urls_allow: Vec::new(),
            foreign_urls_deny: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter: `info`, `debug`, `berth=debug,pingora_core=warn`, ...
    pub level: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Why configuration was refused; the message names the file or variable, the key and the
/// fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// Loads `path` (or the built-in defaults when `None`) and applies `env` overrides.
    pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let (table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                // Parse to the typed struct first: its errors carry the line and the key.
                let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_owned(),
                    message: e.to_string(),
                })?;
                (to_table(&cfg), p.display().to_string())
            }
            None => (to_table(&Config::default()), "built-in defaults".to_owned()),
        };
        let mut table = table;
        let mut overridden = distribution::apply(&mut table, env)?;
        overridden.extend(env::apply(&mut table, env)?);
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Env {
                var: overridden.join(", "),
                message: e.message().to_owned(),
            })?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// The names ACME certifies.
    pub fn acme_hostnames(&self) -> Vec<String> {
        if self.tls.acme.hostnames.is_empty() {
            self.tls.hostnames.clone()
        } else {
            self.tls.acme.hostnames.clone()
        }
    }

    /// What TLS this configuration turns on.
    pub fn tls_plan(&self) -> TlsPlan {
        match self.tls.mode {
            TlsMode::Off => TlsPlan::Off,
            TlsMode::Files => TlsPlan::Files,
            TlsMode::SelfSigned => TlsPlan::SelfSigned,
            TlsMode::Acme => TlsPlan::Acme,
            TlsMode::Auto if self.tls.certificate.is_some() => TlsPlan::Files,
            TlsMode::Auto if self.http.listen.iter().any(|a| !a.ip().is_loopback()) => {
                TlsPlan::SelfSigned
            }
            TlsMode::Auto => TlsPlan::Off,
        }
    }

    /// Every listener and whether it serves TLS. In `auto` mode without certificate files,
    /// plain listeners on non-loopback addresses serve TLS (self-signed) instead, so nothing
    /// reachable from other machines is plain text unless `tls.mode = "off"` says so.
    pub fn listeners(&self) -> Vec<(SocketAddr, bool)> {
        let plan = self.tls_plan();
        let promote = self.tls.mode == TlsMode::Auto && plan == TlsPlan::SelfSigned;
        let mut out: Vec<(SocketAddr, bool)> = self
            .http
            .listen
            .iter()
            .map(|a| (*a, promote && !a.ip().is_loopback()))
            .collect();
        if plan != TlsPlan::Off && !promote {
            for a in &self.tls.listen {
                if !out.iter().any(|(b, _)| b == a) {
                    out.push((*a, true));
                }
            }
        }
        out
    }

    /// The configuration as TOML, secrets (webhook header values) redacted.
    pub fn to_toml(&self) -> String {
        // Webhook headers carry tokens.
        let mut shown = self.clone();
        for e in &mut shown.notifications.endpoints {
            for v in e.headers.values_mut() {
                *v = "<redacted>".into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn to_table(cfg: &Config) -> toml::Table {
    match toml::Value::try_from(cfg) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shipped_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("appliance.toml");
        let cfg = Config::load(Some(&path), &[]).expect("appliance.toml parses");
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "[storage]\nroot = \"/x\"\ndelete_enabeld = true\n").expect("write");
        let e = Config::load(Some(&p), &[])
            .expect_err("typo refused")
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("delete_enabeld"), "{e}");
        assert!(e.contains("a.toml"), "{e}");
    }

    #[test]
    fn environment_overrides() {
        let cfg = Config::load(
            None,
            &env(&[
                ("REGISTRY_HTTP_ADDR", ":5001"),
                (
                    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                    "/var/lib/registry",
                ),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
                ("BERTH__LIMITS__MANIFEST_MAX", "8MiB"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("loads");
        assert_eq!(
            cfg.http.listen,
            vec!["0.0.0.0:5001".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(cfg.storage.root, PathBuf::from("/var/lib/registry"));
        assert!(!cfg.storage.delete_enabled);
        assert_eq!(cfg.limits.manifest_max, Size(8 << 20));
        // BERTH__ wins over the distribution variable.
        let cfg = Config::load(
            None,
            &env(&[
                ("BERTH__STORAGE__ROOT", "/a"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/b"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.storage.root, PathBuf::from("/a"));
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let e = Config::load(None, &env(&[("BERTH__STORAGE__ROOOT", "/a")])).expect_err("refused");
        assert!(e.to_string().contains("BERTH__STORAGE__ROOOT"), "{e}");
        let e =
            Config::load(None, &env(&[("REGISTRY_HTTP_ADDR", "nonsense")])).expect_err("refused");
        assert!(e.to_string().contains("REGISTRY_HTTP_ADDR"), "{e}");
        let e = Config::load(None, &env(&[("BERTH__LIMITS__MANIFEST_MAX", "4 parsecs")]))
            .expect_err("refused");
        assert!(e.to_string().contains("BERTH__LIMITS__MANIFEST_MAX"), "{e}");
    }

    #[test]
    fn tls_plans_and_listeners() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let cfg = Config::default();
        assert_eq!(cfg.tls_plan(), TlsPlan::Off);
        assert_eq!(cfg.listeners(), vec![(addr("127.0.0.1:5000"), false)]);
        // A non-loopback plain listener becomes a self-signed TLS listener.
        let cfg = Config::load(None, &env(&[("REGISTRY_HTTP_ADDR", ":5000")])).expect("loads");
        assert_eq!(cfg.tls_plan(), TlsPlan::SelfSigned);
        assert_eq!(cfg.listeners(), vec![(addr("0.0.0.0:5000"), true)]);
        // ...unless TLS is switched off.
        let cfg = Config::load(
            None,
            &env(&[("REGISTRY_HTTP_ADDR", ":5000"), ("BERTH__TLS__MODE", "off")]),
        )
        .expect("loads");
        assert_eq!(cfg.listeners(), vec![(addr("0.0.0.0:5000"), false)]);
        // registry:2's TLS variables: the address serves TLS from the files.
        let cfg = Config::load(
            None,
            &env(&[
                ("REGISTRY_HTTP_ADDR", "0.0.0.0:5443"),
                ("REGISTRY_HTTP_TLS_CERTIFICATE", "/certs/domain.crt"),
                ("REGISTRY_HTTP_TLS_KEY", "/certs/domain.key"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.tls_plan(), TlsPlan::Files);
        assert_eq!(cfg.listeners(), vec![(addr("0.0.0.0:5443"), true)]);
        assert_eq!(cfg.tls.key, Some(PathBuf::from("/certs/domain.key")));
        // Files mode needs both halves.
        let e = Config::load(None, &env(&[("BERTH__TLS__CERTIFICATE", "/c.pem")]))
            .expect_err("refused");
        assert!(e.to_string().contains("tls.key"), "{e}");
    }

    #[test]
    fn gc_settings() {
        let cfg = Config::load(
            None,
            &env(&[
                ("BERTH__GC__GRACE_PERIOD", "0s"),
                ("BERTH__GC__INTERVAL", "300ms"),
                ("BERTH__GC__DELETE_UNTAGGED", "true"),
                ("BERTH__UPLOADS__PURGE_AFTER", "2d"),
            ]),
        )
        .expect("loads");
        assert!(cfg.gc.grace_period.0.is_zero());
        assert_eq!(cfg.gc.interval.0.as_millis(), 300);
        assert!(cfg.gc.delete_untagged);
        assert_eq!(cfg.uploads.purge_after, Duration::secs(2 * 86_400));
        let e = Config::load(None, &env(&[("BERTH__GC__INTERVAL", "5ms")])).expect_err("refused");
        assert!(e.to_string().contains("gc.interval"), "{e}");
    }

    #[test]
    fn scrub_settings() {
        assert!(
            Config::default().scrub.interval.0.is_zero(),
            "off by default"
        );
        let cfg = Config::load(None, &env(&[("BERTH__SCRUB__INTERVAL", "7d")])).expect("loads");
        assert_eq!(cfg.scrub.interval, Duration::secs(7 * 86_400));
        let e =
            Config::load(None, &env(&[("BERTH__SCRUB__INTERVAL", "500ms")])).expect_err("refused");
        assert!(e.to_string().contains("scrub.interval"), "{e}");
    }

    #[test]
    fn registry_variables_with_their_implied_settings() {
        let cfg = Config::load(
            None,
            &env(&[
                ("REGISTRY_HTTP_TLS_LETSENCRYPT_EMAIL", "ops@example.com"),
                ("REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0", "a.example.com"),
                ("REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_1", "b.example.com"),
                // Not settings berth has: ignored.
                ("REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE", "/le.json"),
                ("REGISTRY_HTTP_SECRET", "s3cr3t"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.tls.mode, TlsMode::Acme);
        assert_eq!(cfg.tls.acme.email.as_deref(), Some("ops@example.com"));
        assert_eq!(cfg.acme_hostnames(), ["a.example.com", "b.example.com"]);
        let cfg = Config::load(
            None,
            &env(&[
                ("REGISTRY_AUTH", "token"),
                (
                    "REGISTRY_AUTH_TOKEN_REALM",
                    "https://auth.example.com/token",
                ),
                ("REGISTRY_AUTH_TOKEN_ISSUER", "auth.example.com"),
                ("REGISTRY_AUTH_TOKEN_JWKS", "/etc/berth/jwks.json"),
                ("REGISTRY_AUTH_TOKEN_AUTOREDIRECT", "true"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.auth.mode, AuthMode::Token);
        assert_eq!(cfg.auth.token.issuer, TokenIssuer::External);
        assert_eq!(cfg.auth.token.issuer_name, "auth.example.com");
        assert_eq!(
            cfg.auth.token.jwks,
            Some(PathBuf::from("/etc/berth/jwks.json"))
        );
        let e = Config::load(None, &env(&[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")]))
            .expect_err("refused");
        assert!(
            e.to_string().contains("REGISTRY_STORAGE_DELETE_ENABLED"),
            "{e}"
        );
    }

    #[test]
    fn webhook_urls_are_parsed_when_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            "[[notifications.endpoints]]\nname = \"ci\"\nurl = \"https://ci.example.com:8443/hook?k=1\"\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&p), &[]).expect("loads");
        let url = &cfg.notifications.endpoints[0].url;
        assert_eq!(
            (url.host.as_str(), url.port, url.tls),
            ("ci.example.com", 8443, true)
        );
        // Shown as written, and the endpoint keeps its defaults.
        assert!(cfg
            .to_toml()
            .contains("url = \"https://ci.example.com:8443/hook?k=1\""));
        assert_eq!(cfg.notifications.endpoints[0].timeout, Duration::secs(5));
        // A bad one names the endpoint's key, in a file and in a variable.
        std::fs::write(
            &p,
            "[[notifications.endpoints]]\nname = \"ci\"\nurl = \"http://127.0.0.1:9/\"\n\n[[notifications.endpoints]]\nname = \"b\"\nurl = \"ftp://x/\"\n",
        )
        .expect("write");
        let e = Config::load(Some(&p), &[])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("notifications.endpoints[1].url"), "{e}");
        assert!(e.contains("line "), "{e}");
        let e = Config::load(
            None,
            &env(&[(
                "BERTH__NOTIFICATIONS__ENDPOINTS",
                r#"[{name = "a", url = "http://127.0.0.1:9/"}, {name = "b", url = "ftp://x/"}]"#,
            )]),
        )
        .expect_err("refused")
        .to_string();
        assert!(e.contains("BERTH__NOTIFICATIONS__ENDPOINTS"), "{e}");
        assert!(e.contains("notifications.endpoints[1].url"), "{e}");
    }

    #[test]
    fn token_algorithms_are_parsed_when_read() {
        let cfg = Config::load(
            None,
            &env(&[("BERTH__AUTH__TOKEN__ALGORITHMS", r#"["ES256", "EdDSA"]"#)]),
        )
        .expect("loads");
        assert_eq!(
            cfg.auth.token.algorithms,
            [TokenAlg::Es256, TokenAlg::EdDsa]
        );
        // Shown by name, and read back the same.
        let shown: Config = toml::from_str(&cfg.to_toml()).expect("shown config parses");
        assert_eq!(shown.auth.token.algorithms, cfg.auth.token.algorithms);
        assert!(cfg.to_toml().contains("\"EdDSA\""));
        for bad in [r#"["HS256"]"#, r#"["none"]"#, r#"["es256"]"#] {
            let e = Config::load(None, &env(&[("BERTH__AUTH__TOKEN__ALGORITHMS", bad)]))
                .expect_err("refused")
                .to_string();
            assert!(e.contains("is not accepted"), "{e}");
        }
    }
}
