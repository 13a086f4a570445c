//! `appliance.toml` into a validated [`Config`]; the only place configuration is read.
//!
//! Every setting has a safe default, so no file at all gives a working local registry. The
//! file is strict (`deny_unknown_fields`: a typo is an error with its line). Environment
//! variables override it: first the distribution variables that `registry:2` deployments
//! already set (`REGISTRY_HTTP_ADDR`, ...), then `BERTH__SECTION__KEY`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
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
    pub uploads: Uploads,
    pub notifications: Notifications,
    pub log: Log,
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
    pub endpoints: Vec<NotifyEndpoint>,
}

/// One webhook (registry:2's `notifications.endpoints[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyEndpoint {
    /// Names the endpoint in logs and its queue directory: letters, digits, '.', '_', '-'.
    pub name: String,
    /// Where events are POSTed: an http:// or https:// URL.
    pub url: String,
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

impl Default for NotifyEndpoint {
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
    pub algorithms: Vec<String>,
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
            algorithms: [
                "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
            ]
            .map(String::from)
            .to_vec(),
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
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            root: PathBuf::from("berth-data"),
            delete_enabled: true,
            read_only: false,
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
        let overridden = apply_env(&mut table, env)?;
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

    /// Checks what types alone cannot.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.listeners().is_empty() {
            return Err(invalid(
                "http.listen",
                "at least one address is needed, e.g. [\"127.0.0.1:5000\"]".into(),
            ));
        }
        if self.tls_plan() == TlsPlan::Files
            && (self.tls.certificate.is_none() || self.tls.key.is_none())
        {
            return Err(invalid(
                "tls.certificate",
                "certificate files need both tls.certificate and tls.key (or use tls.mode = \"self-signed\")".into(),
            ));
        }
        for p in &self.http.trusted_proxies {
            p.parse::<Cidr>()
                .map_err(|e| invalid("http.trusted_proxies", format!("{p:?}: {e}")))?;
        }
        if let Some(u) = &self.http.external_url {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && !u.trim_end_matches('/').contains(['?', '#'])
                && u.split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return Err(invalid(
                    "http.external_url",
                    format!("{u:?} is not a URL like \"https://registry.example.com\""),
                ));
            }
        }
        if self.tls_plan() == TlsPlan::Acme {
            if self.acme_hostnames().is_empty() {
                return Err(invalid(
                    "tls.acme.hostnames",
                    "ACME needs the names to certify: set tls.hostnames (or tls.acme.hostnames), e.g. [\"registry.example.com\"]".into(),
                ));
            }
            for h in self.acme_hostnames() {
                if h.parse::<std::net::IpAddr>().is_ok() || h.contains('*') {
                    return Err(invalid(
                        "tls.acme.hostnames",
                        format!(
                            "{h:?}: ACME certifies public DNS names (no addresses or wildcards)"
                        ),
                    ));
                }
            }
            let a = &self.tls.acme;
            if a.challenges.is_empty()
                || a.challenges
                    .iter()
                    .any(|c| c != "http-01" && c != "tls-alpn-01")
            {
                return Err(invalid(
                    "tls.acme.challenges",
                    "a list of \"http-01\" and/or \"tls-alpn-01\"".into(),
                ));
            }
            if a.eab_kid.is_some() != a.eab_hmac_key_file.is_some() {
                return Err(invalid(
                    "tls.acme.eab_kid",
                    "external account binding needs both eab_kid and eab_hmac_key_file".into(),
                ));
            }
            if !a.directory().starts_with("https://") {
                return Err(invalid(
                    "tls.acme.directory_url",
                    format!(
                        "{:?}: an https:// URL, or \"production\" / \"staging\"",
                        a.directory_url
                    ),
                ));
            }
            if a.retry_min.0.is_zero() || a.retry_max.0 < a.retry_min.0 {
                return Err(invalid(
                    "tls.acme.retry_min",
                    "retry_min must be more than 0 and at most retry_max".into(),
                ));
            }
        }
        if self.auth.mode == AuthMode::Token {
            let t = &self.auth.token;
            if let Some(a) = t
                .algorithms
                .iter()
                .find(|a| crate::auth::token::Alg::parse(a).is_none())
            {
                return Err(invalid(
                    "auth.token.algorithms",
                    format!(
                        "{a:?} is not accepted; use some of ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA (\"none\" and HMAC never are)"
                    ),
                ));
            }
            if t.algorithms.is_empty() {
                return Err(invalid(
                    "auth.token.algorithms",
                    "list at least one algorithm, e.g. [\"ES256\", \"RS256\"]".into(),
                ));
            }
            if t.expiration.0.as_secs() < 10 {
                return Err(invalid(
                    "auth.token.expiration",
                    "must be at least \"10s\"".into(),
                ));
            }
            if t.issuer == TokenIssuer::External {
                if t.realm.is_none() {
                    return Err(invalid(
                        "auth.token.realm",
                        "an external token server needs its URL here, e.g. \"https://auth.example.com/token\"".into(),
                    ));
                }
                if t.rootcertbundle.is_none() && t.jwks.is_none() {
                    return Err(invalid(
                        "auth.token.rootcertbundle",
                        "an external token server needs its keys: set rootcertbundle (PEM certificates) or jwks (a JWKS file)".into(),
                    ));
                }
            }
        }
        for (i, r) in self.auth.rules.iter().enumerate() {
            let key = format!("auth.rules[{i}]");
            if r.repositories.is_empty() || r.users.is_empty() || r.actions.is_empty() {
                return Err(invalid(
                    &key,
                    "needs repositories, users and actions".into(),
                ));
            }
            if let Some(a) = r
                .actions
                .iter()
                .find(|a| !["pull", "push", "delete", "*"].contains(&a.as_str()))
            {
                return Err(invalid(
                    &key,
                    format!("action {a:?}: use \"pull\", \"push\", \"delete\" or \"*\""),
                ));
            }
            if let Some(g) = r
                .users
                .iter()
                .filter_map(|u| u.strip_prefix('@'))
                .find(|g| !self.auth.groups.contains_key(*g))
            {
                return Err(invalid(&key, format!("group @{g} is not in auth.groups")));
            }
        }
        if self.http.proxy_protocol && self.http.trusted_proxies.is_empty() {
            return Err(invalid(
                "http.proxy_protocol",
                "PROXY headers are only taken from http.trusted_proxies; list the load balancer there, e.g. [\"10.0.0.5\"]".into(),
            ));
        }
        if self.limits.connections_max == 0 {
            return Err(invalid(
                "limits.connections_max",
                "must be at least 1".into(),
            ));
        }
        // pingora reads at most 1 MiB of header and 256 fields; berth's caps sit below.
        if !(1024..1 << 20).contains(&self.limits.header_max.0) {
            return Err(invalid(
                "limits.header_max",
                "must be between \"1KiB\" and \"1023KiB\"".into(),
            ));
        }
        if !(16..=256).contains(&self.limits.header_count_max) {
            return Err(invalid(
                "limits.header_count_max",
                "must be between 16 and 256".into(),
            ));
        }
        if self.limits.page_max == 0 {
            return Err(invalid("limits.page_max", "must be at least 1".into()));
        }
        if self.limits.manifest_max.0 == 0 {
            return Err(invalid(
                "limits.manifest_max",
                "must be more than 0, e.g. \"4MiB\"".into(),
            ));
        }
        for (key, list) in [
            (
                "manifests.foreign_urls_allow",
                &self.manifests.foreign_urls_allow,
            ),
            (
                "manifests.foreign_urls_deny",
                &self.manifests.foreign_urls_deny,
            ),
        ] {
            for re in list {
                regex::Regex::new(re).map_err(|e| {
                    invalid(key, format!("{re:?} is not a regular expression: {e}"))
                })?;
            }
        }
        if let Err((key, message)) = crate::notify::check_config(&self.notifications) {
            return Err(invalid(&key, message));
        }
        // Each run walks the whole store: back to back, that is all the disk would do.
        if !self.gc.interval.0.is_zero() && self.gc.interval.0 < StdDuration::from_millis(100) {
            return Err(invalid(
                "gc.interval",
                "must be \"0s\" (no schedule) or at least \"100ms\", e.g. \"24h\"".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("{:?}: {e}", self.log.level)))?;
        Ok(())
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

/// Applies the distribution variables, then `BERTH__SECTION__KEY`; returns the names of
/// the variables used.
fn apply_env(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let mut used = Vec::new();
    // As in registry:2, REGISTRY_HTTP_ADDR serves TLS when a certificate is given with it.
    let dist_tls = env
        .iter()
        .any(|(k, _)| k == "REGISTRY_HTTP_TLS_CERTIFICATE");
    for (var, raw) in env {
        let (section, key, value) = match var.as_str() {
            "REGISTRY_HTTP_ADDR" if dist_tls => {
                set(table, "http", "listen", toml::Value::Array(Vec::new()));
                ("tls", "listen", distribution_addr(var, raw)?)
            }
            "REGISTRY_HTTP_ADDR" => ("http", "listen", distribution_addr(var, raw)?),
            "REGISTRY_HTTP_TLS_CERTIFICATE" => {
                ("tls", "certificate", toml::Value::String(raw.clone()))
            }
            "REGISTRY_HTTP_TLS_KEY" => ("tls", "key", toml::Value::String(raw.clone())),
            "REGISTRY_HTTP_TLS_LETSENCRYPT_EMAIL" => {
                set(table, "tls", "mode", toml::Value::String("acme".into()));
                set_path(
                    table,
                    &["tls".into(), "acme".into(), "email".into()],
                    toml::Value::String(raw.clone()),
                );
                used.push(var.clone());
                continue;
            }
            v if v.starts_with("REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_") => {
                let path = ["tls".to_owned(), "acme".to_owned(), "hostnames".to_owned()];
                let mut hosts = table
                    .get("tls")
                    .and_then(|t| t.get("acme"))
                    .and_then(|a| a.get("hostnames"))
                    .and_then(|h| h.as_array())
                    .cloned()
                    .unwrap_or_default();
                hosts.push(toml::Value::String(raw.clone()));
                set_path(table, &path, toml::Value::Array(hosts));
                used.push(var.clone());
                continue;
            }
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY" => {
                ("storage", "root", toml::Value::String(raw.clone()))
            }
            "REGISTRY_AUTH" => ("auth", "mode", toml::Value::String(raw.clone())),
            "REGISTRY_AUTH_HTPASSWD_REALM" | "REGISTRY_AUTH_HTPASSWD_PATH" => {
                let key = if var.ends_with("REALM") {
                    "realm"
                } else {
                    "path"
                };
                set_path(
                    table,
                    &["auth".into(), "htpasswd".into(), key.into()],
                    toml::Value::String(raw.clone()),
                );
                used.push(var.clone());
                continue;
            }
            v if v.starts_with("REGISTRY_AUTH_TOKEN_") => {
                let key = match &v["REGISTRY_AUTH_TOKEN_".len()..] {
                    "REALM" => "realm",
                    "SERVICE" => "service",
                    "ISSUER" => "issuer_name",
                    "ROOTCERTBUNDLE" => "rootcertbundle",
                    "JWKS" => "jwks",
                    _ => continue,
                };
                // The reference registry's token auth always means an external server.
                set_path(
                    table,
                    &["auth".into(), "token".into(), "issuer".into()],
                    toml::Value::String("external".into()),
                );
                set_path(
                    table,
                    &["auth".into(), "token".into(), key.into()],
                    toml::Value::String(raw.clone()),
                );
                used.push(var.clone());
                continue;
            }
            "REGISTRY_STORAGE_DELETE_ENABLED" => (
                "storage",
                "delete_enabled",
                toml::Value::Boolean(parse_bool(var, raw)?),
            ),
            _ => continue,
        };
        set(table, section, key, value);
        used.push(var.clone());
    }
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("BERTH__") else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: "expected BERTH__SECTION__KEY, e.g. BERTH__STORAGE__ROOT".into(),
            });
        }
        let dotted = parts.join(".");
        let defaults = toml::Value::Table(to_table(&Config::default()));
        let known = parts
            .iter()
            .try_fold(&defaults, |v, p| {
                v.as_table().and_then(|t| t.get(p.as_str()))
            })
            // A value, or a map with free keys (auth.groups); not a whole section.
            .is_some_and(|v| v.as_table().is_none_or(|t| t.is_empty()))
            || OPTIONAL_KEYS.contains(&dotted.as_str());
        if !known {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: format!("there is no setting {dotted}"),
            });
        }
        set_path(table, &parts, env_value(raw));
        used.push(var.clone());
    }
    Ok(used)
}

/// Settings with no default value, which the default table therefore lacks.
const OPTIONAL_KEYS: &[&str] = &[
    "http.external_url",
    "tls.certificate",
    "tls.key",
    "tls.chain",
    "tls.ca",
    "tls.acme.email",
    "tls.acme.eab_kid",
    "tls.acme.eab_hmac_key_file",
    "tls.acme.ca_roots",
    "tls.acme.renew_before",
    "auth.token.realm",
    "auth.token.signing_key",
    "auth.token.rootcertbundle",
    "auth.token.jwks",
];

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((key, sections)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for s in sections {
        let entry = t
            .entry(s.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        t = next;
    }
    t.insert(key.clone(), value);
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let entry = table
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = entry {
        t.insert(key.to_owned(), value);
    }
}

/// A TOML value when the text is one (`true`, `5`, `["a"]`), else the text as a string.
fn env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// `REGISTRY_HTTP_ADDR` as distribution reads it: `:5000` means every address.
fn distribution_addr(var: &str, raw: &str) -> Result<toml::Value, ConfigError> {
    let full = if raw.starts_with(':') {
        format!("0.0.0.0{raw}")
    } else {
        raw.to_owned()
    };
    let addr: SocketAddr = full.parse().map_err(|_| ConfigError::Env {
        var: var.to_owned(),
        message: format!("{raw:?} is not an address like 0.0.0.0:5000 or :5000"),
    })?;
    Ok(toml::Value::Array(vec![toml::Value::String(
        addr.to_string(),
    )]))
}

fn parse_bool(var: &str, raw: &str) -> Result<bool, ConfigError> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::Env {
            var: var.to_owned(),
            message: format!("{raw:?} is not true or false"),
        }),
    }
}

/// An address block such as `10.0.0.0/8`, `192.168.1.10` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| "not an IP address or CIDR block like 10.0.0.0/8".to_owned())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("prefix must be 0 to {max}"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

/// A byte size written as `4MiB`, `512KiB`, `1GiB`, `10MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size like \"4MiB\""))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            u => {
                return Err(format!(
                    "unknown size unit {u:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, m) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= m && self.0.is_multiple_of(m) {
                return write!(f, "{}{unit}", self.0 / m);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as `250ms`, `30s`, `5m`, `1h` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub const fn secs(n: u64) -> Self {
        Self(StdDuration::from_secs(n))
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"30s\""))?;
        let d = match unit {
            "ms" => StdDuration::from_millis(n),
            "s" => StdDuration::from_secs(n),
            "m" => StdDuration::from_secs(n.saturating_mul(60)),
            "h" => StdDuration::from_secs(n.saturating_mul(3600)),
            "d" => StdDuration::from_secs(n.saturating_mul(86_400)),
            u => {
                return Err(format!(
                    "unknown duration unit {u:?} in {s:?} (use ms, s, m, h, d)"
                ))
            }
        };
        Ok(Duration(d))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = self.0.as_secs();
        for (unit, m) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if s >= m && s.is_multiple_of(m) {
                return write!(f, "{}{unit}", s / m);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
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
    fn sizes_and_durations() {
        assert_eq!("4MiB".parse::<Size>(), Ok(Size(4 << 20)));
        assert_eq!("10MB".parse::<Size>(), Ok(Size(10_000_000)));
        assert_eq!("123".parse::<Size>(), Ok(Size(123)));
        assert!("4 parsecs".parse::<Size>().is_err());
        assert_eq!(Size(4 << 20).to_string(), "4MiB");
        assert_eq!("30s".parse::<Duration>(), Ok(Duration::secs(30)));
        assert_eq!(
            "250ms".parse::<Duration>().map(|d| d.0.as_millis()),
            Ok(250)
        );
        assert_eq!(Duration::secs(3600).to_string(), "1h");
        assert!("30".parse::<Duration>().is_err());
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
    fn cidr_blocks() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("11.0.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.0.0.1".parse().expect("ip")));
        let one: Cidr = "127.0.0.1".parse().expect("cidr");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let v6: Cidr = "fd00::/8".parse().expect("cidr");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        let mut cfg = Config::default();
        cfg.http.trusted_proxies = vec!["10.0.0.0/99".into()];
        assert!(cfg
            .validate("x")
            .expect_err("refused")
            .to_string()
            .contains("http.trusted_proxies"));
        cfg.http.trusted_proxies = Vec::new();
        cfg.http.external_url = Some("registry.example.com".into());
        assert!(cfg
            .validate("x")
            .expect_err("refused")
            .to_string()
            .contains("http.external_url"));
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
    fn bad_regex_is_refused_with_its_key() {
        let mut cfg = Config::default();
        cfg.manifests.foreign_urls_allow = vec!["(".into()];
        let e = cfg.validate("x.toml").expect_err("refused").to_string();
        assert!(e.contains("manifests.foreign_urls_allow"), "{e}");
    }
}
