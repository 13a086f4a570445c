//! Access control: who the caller is (htpasswd Basic credentials, a Bearer token, or
//! nobody), and what the permission rules let them do. The registry core asks
//! [`Auth::authenticate`] (Basic) or [`Auth::verify_bearer`] (tokens) once per request and
//! [`Auth::allowed`] per repository and action; `/token` is [`Auth::issue_token`].
//!
//! Verified passwords are cached by a hash of the credentials for a short time, so a pull
//! of many layers costs one bcrypt, not one per request; bcrypt runs on the blocking pool.
//! Failed logins are counted per client address and answered with 429 past a limit.

pub(crate) mod gate;
pub mod htpasswd;
pub mod token;

use crate::config::{AuthConfig, AuthMode, Config, Rule, TokenAlg, TokenIssuer};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use token::{Access, Audience, Claims, KeySet, Signer, TokenError};

/// How long a verified password is remembered.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Failed logins allowed per client address in one window before 429.
const FAILURES_MAX: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How often the htpasswd file is checked for changes (on requests).
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// What a request may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Credentials were given and are wrong (401).
    BadCredentials,
    /// Credentials over plain HTTP from a non-loopback client (401).
    Plaintext,
    /// Too many failures from this address (429), retry after this many seconds.
    TooMany(u64),
}

struct Users {
    path: PathBuf,
    entries: HashMap<String, String>,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

/// Who may do what: the part of `[auth]` that `SIGHUP` reloads.
struct Policy {
    admins: Vec<String>,
    groups: HashMap<String, Vec<String>>,
    rules: Vec<Rule>,
}

impl Policy {
    fn from(cfg: &AuthConfig) -> Policy {
        Policy {
            admins: cfg.admins.clone(),
            groups: cfg.groups.clone(),
            rules: cfg.rules.clone(),
        }
    }
}

/// Bearer-token settings and keys.
pub struct Tokens {
    /// The built-in token service's key (`None`: tokens come from an external server).
    signer: Option<Signer>,
    keys: KeySet,
    pub issuer: String,
    pub service: String,
    /// The configured realm; `None`: the registry's own `/token`.
    pub realm: Option<String>,
    expiration: Duration,
    algorithms: Vec<TokenAlg>,
}

impl Tokens {
    /// Whether berth serves `/token` itself.
    pub fn builtin(&self) -> bool {
        self.signer.is_some()
    }
}

/// What `/token` answers.
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
}

/// The authentication and authorization state of a running registry.
pub struct Auth {
    pub realm: String,
    insecure_allow_plaintext: bool,
    policy: RwLock<Policy>,
    users: Mutex<Users>,
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Bearer tokens whose signature and claims were verified: SHA-256 of the token ->
    /// its claims and when they were checked.
    verified: Mutex<HashMap<[u8; 32], (Claims, Instant)>>,
    /// Set in token mode.
    pub tokens: Option<Tokens>,
}

/// How long a verified token is trusted without checking its signature again (its `exp`
/// and `nbf` are checked on every use), and how many are kept.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
const VERIFIED_MAX: usize = 4096;

impl Auth {
    /// Loads the htpasswd file and, in token mode, the keys; `None` when auth is off. A
    /// missing or malformed file is an error naming the file (and line). The built-in
    /// token service's signing key is made at first start.
    pub fn load(cfg: &Config) -> Result<Option<Auth>, String> {
        let a = &cfg.auth;
        if a.mode == AuthMode::None {
            return Ok(None);
        }
        let external = a.mode == AuthMode::Token && a.token.issuer == TokenIssuer::External;
        let path = a.htpasswd.path.clone();
        // An external token server checks passwords itself: no htpasswd file needed.
        let entries = if external {
            HashMap::new()
        } else {
            htpasswd::read(&path).map_err(|e| format!("auth.htpasswd.path: {e}"))?
        };
        let tokens = if a.mode == AuthMode::Token {
            Some(Self::load_tokens(cfg)?)
        } else {
            None
        };
        Ok(Some(Auth {
            realm: a.htpasswd.realm.clone(),
            insecure_allow_plaintext: a.insecure_allow_plaintext,
            policy: RwLock::new(Policy::from(a)),
            users: Mutex::new(Users {
                stamp: htpasswd::stamp(&path),
                path,
                entries,
                checked: Instant::now(),
            }),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            tokens,
        }))
    }

    fn load_tokens(cfg: &Config) -> Result<Tokens, String> {
        let t = &cfg.auth.token;
        let (signer, keys) = match t.issuer {
            TokenIssuer::Builtin => {
                let path = t
                    .signing_key
                    .clone()
                    .unwrap_or_else(|| cfg.state.dir.join("token").join("signing-key.pem"));
                let (signer, created) = Signer::load_or_create(&path)
                    .map_err(|e| format!("auth.token.signing_key: {e}"))?;
                if created {
                    tracing::info!(path = %path.display(), kid = %signer.kid, "token signing key created");
                }
                let keys = signer.key_set();
                (Some(signer), keys)
            }
            TokenIssuer::External => {
                let mut keys = KeySet::default();
                if let Some(p) = &t.rootcertbundle {
                    keys.add_cert_bundle(p)
                        .map_err(|e| format!("auth.token.rootcertbundle: {e}"))?;
                }
                if let Some(p) = &t.jwks {
                    keys.add_jwks(p)
                        .map_err(|e| format!("auth.token.jwks: {e}"))?;
                }
                if keys.is_empty() {
                    return Err(
                        "auth.token: no verification keys (set rootcertbundle or jwks)".into(),
                    );
                }
                (None, keys)
            }
        };
        Ok(Tokens {
            signer,
            keys,
            issuer: t.issuer_name.clone(),
            service: t.service.clone(),
            realm: t.realm.clone(),
            expiration: t.expiration.0,
            algorithms: t.algorithms.clone(),
        })
    }

    /// How many users the htpasswd file holds.
    pub fn user_count(&self) -> usize {
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Takes new admins, groups and rules (on SIGHUP); users and keys stay.
    pub fn reload_policy(&self, cfg: &AuthConfig) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Policy::from(cfg);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Verifies a `Bearer` Authorization value. A client sends the same token with every
    /// request of a pull or push, so a verified token's signature is not checked again for
    /// [`VERIFIED_FOR`] (tens of microseconds of ECDSA or RSA per request otherwise).
    pub fn verify_bearer(&self, value: &str) -> Result<Claims, TokenError> {
        self.verify_bearer_at(value, unix_now())
    }

    fn verify_bearer_at(&self, value: &str, now: i64) -> Result<Claims, TokenError> {
        let t = self.tokens.as_ref().ok_or(TokenError::Malformed)?;
        let token = bearer_token(value).ok_or(TokenError::Malformed)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(_, at)| at.elapsed() < VERIFIED_FOR)
            .map(|(claims, _)| claims.clone());
        if let Some(claims) = cached {
            token::check_times(&claims, now)?;
            return Ok(claims);
        }
        let claims = token::verify(
            token,
            &t.keys,
            &token::Expect {
                issuer: &t.issuer,
                service: &t.service,
                algorithms: &t.algorithms,
                now,
            },
        )?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.retain(|_, (_, at)| at.elapsed() < VERIFIED_FOR);
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
        }
        verified.insert(key, (claims.clone(), Instant::now()));
        Ok(claims)
    }

    /// The built-in token service: authenticates Basic credentials (or none: anonymous)
    /// and signs a token granting the requested scopes as far as the rules allow.
    pub async fn issue_token(
        &self,
        authorization: Option<&str>,
        secure: bool,
        client: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, Refusal> {
        let user = self.authenticate(authorization, secure, client).await?;
        let Some(t) = self.tokens.as_ref() else {
            return Err(Refusal::BadCredentials);
        };
        let Some(signer) = &t.signer else {
            return Err(Refusal::BadCredentials);
        };
        let mut access: Vec<Access> = Vec::new();
        for s in scopes.iter().flat_map(|s| s.split(' ')) {
            let Some(want) = Access::parse_scope(s) else {
                continue;
            };
            let actions: Vec<String> = match want.kind.as_str() {
                "repository" => Action::ALL
                    .into_iter()
                    .filter(|a| want.actions.iter().any(|w| w == a.name() || w == "*"))
                    .filter(|a| self.allowed(user.as_deref(), &want.name, *a))
                    .map(|a| a.name().to_owned())
                    .collect(),
                "registry"
                    if want.name == "catalog"
                        && want.actions.iter().any(|w| w == "*")
                        && (user.is_some() || self.anonymous_pull()) =>
                {
                    vec!["*".to_owned()]
                }
                _ => Vec::new(),
            };
            if actions.is_empty() {
                continue;
            }
            match access
                .iter_mut()
                .find(|a| a.kind == want.kind && a.name == want.name)
            {
                Some(a) => {
                    for x in actions {
                        if !a.actions.contains(&x) {
                            a.actions.push(x);
                        }
                    }
                }
                None => access.push(Access {
                    kind: want.kind,
                    name: want.name,
                    actions,
                }),
            }
        }
        let now = unix_now();
        let claims = Claims {
            iss: t.issuer.clone(),
            sub: user.clone().unwrap_or_default(),
            aud: Audience::One(t.service.clone()),
            exp: now + t.expiration.as_secs() as i64,
            nbf: Some(now),
            iat: Some(now),
            jti: Some(hex::encode(rand::random::<[u8; 16]>())),
            access,
        };
        let token = signer.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            Refusal::BadCredentials
        })?;
        tracing::info!(
            user = user.as_deref().unwrap_or("anonymous"),
            client,
            granted = %claims.access.iter().map(Access::scope).collect::<Vec<_>>().join(" "),
            "token issued"
        );
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: t.expiration.as_secs(),
            issued_at: crate::timestamp::seconds(
                SystemTime::UNIX_EPOCH + Duration::from_secs(now as u64),
            ),
        })
    }

    /// The caller's user name (`None`: anonymous). `authorization` is the header value,
    /// `secure` whether the request came over TLS or loopback, `client` its address.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        secure: bool,
        client: &str,
    ) -> Result<Option<String>, Refusal> {
        let Some(value) = authorization else {
            return Ok(None);
        };
        if !secure && !self.insecure_allow_plaintext {
            return Err(Refusal::Plaintext);
        }
        if let Some(wait) = self.blocked(client) {
            return Err(Refusal::TooMany(wait));
        }
        let Some((user, password)) = parse_basic(value) else {
            self.failed(client, "");
            return Err(Refusal::BadCredentials);
        };
        self.maybe_reload();
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            h.finalize().into()
        };
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((u, at)) = cache.get(&key) {
                if at.elapsed() < CACHE_TTL {
                    return Ok(Some(u.clone()));
                }
                cache.remove(&key);
            }
        }
        let hash = self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .get(&user)
            .cloned();
        let known = hash.is_some();
        // Unknown users cost a bcrypt too, so timing does not tell which names exist.
        let hash = hash.unwrap_or_else(|| htpasswd::dummy_hash().to_owned());
        let ok = tokio::task::spawn_blocking(move || htpasswd::verify(&password, &hash))
            .await
            .unwrap_or(false);
        if ok && known {
            tracing::info!(user = %user, client, "login: password verified");
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, (user.clone(), Instant::now()));
            Ok(Some(user))
        } else {
            self.failed(client, &user);
            Err(Refusal::BadCredentials)
        }
    }

    fn failed(&self, client: &str, user: &str) {
        tracing::warn!(user, client, "login failed");
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let e = f.entry(client.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() > FAILURE_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        if f.len() > 10_000 {
            f.retain(|_, (_, at)| at.elapsed() <= FAILURE_WINDOW);
        }
    }

    /// Seconds to wait when `client` has failed too often.
    fn blocked(&self, client: &str) -> Option<u64> {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (n, at) = f.get(client)?;
        let elapsed = at.elapsed();
        (*n >= FAILURES_MAX && elapsed <= FAILURE_WINDOW)
            .then(|| (FAILURE_WINDOW - elapsed).as_secs().max(1))
    }

    /// Re-reads the htpasswd file when it changed; a broken new file keeps the old users.
    fn maybe_reload(&self) {
        let mut u = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if u.checked.elapsed() < RELOAD_CHECK {
            return;
        }
        u.checked = Instant::now();
        let now = htpasswd::stamp(&u.path);
        if now == u.stamp {
            return;
        }
        match htpasswd::read(&u.path) {
            Ok(entries) => {
                tracing::info!(path = %u.path.display(), users = entries.len(), "htpasswd reloaded");
                u.entries = entries;
                u.stamp = now;
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
            Err(e) => {
                u.stamp = now;
                tracing::warn!(error = %e, "htpasswd reload failed; the previous users stay");
            }
        }
    }

    /// Whether `user` (`None`: anonymous) may do `action` on `repo`.
    pub fn allowed(&self, user: Option<&str>, repo: &str, action: Action) -> bool {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .allowed(user, repo, action)
    }

    /// Whether `user` may pull every repository (admins; anyone authenticated when there
    /// are no rules; anyone under a rule for "*").
    pub fn reads_everything(&self, user: Option<&str>) -> bool {
        let p = self.policy.read().unwrap_or_else(|p| p.into_inner());
        p.allowed(user, "\u{0}any", Action::Pull)
            && (p.rules.is_empty()
                || user.is_some_and(|u| p.admins.iter().any(|a| a == u))
                || p.rules.iter().any(|r| {
                    r.repositories.iter().any(|g| g == "*")
                        && r.actions.iter().any(|a| a == "*" || a == "pull")
                        && r.users.iter().any(|who| p.matches(who, user))
                }))
    }

    /// Whether anonymous callers may pull anything at all (then `_catalog` and `/v2/` are
    /// open to them, filtered).
    pub fn anonymous_pull(&self) -> bool {
        let p = self.policy.read().unwrap_or_else(|p| p.into_inner());
        p.rules.iter().any(|r| {
            r.users.iter().any(|u| u == "anonymous")
                && r.actions.iter().any(|a| a == "*" || a == "pull")
        })
    }
}

impl Policy {
    fn allowed(&self, user: Option<&str>, repo: &str, action: Action) -> bool {
        if let Some(u) = user {
            if self.admins.iter().any(|a| a == u) {
                return true;
            }
        }
        if self.rules.is_empty() {
            // registry:2's behaviour: any authenticated user may do anything.
            return user.is_some();
        }
        self.rules.iter().any(|r| {
            r.repositories.iter().any(|g| glob(g, repo))
                && r.actions.iter().any(|a| a == "*" || a == action.name())
                && r.users.iter().any(|who| self.matches(who, user))
        })
    }

    fn matches(&self, who: &str, user: Option<&str>) -> bool {
        match (who, user) {
            ("anonymous", _) => true,
            ("*", Some(_)) => true,
            (g, Some(u)) if g.starts_with('@') => self
                .groups
                .get(&g[1..])
                .is_some_and(|members| members.iter().any(|m| m == u)),
            (name, Some(u)) => name == u,
            (_, None) => false,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The token of a `Bearer` Authorization value.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `user:password` from a `Basic` Authorization value.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64_decode(rest.trim())?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Decodes base64 in either alphabet (standard for Basic credentials, URL-safe for ACME
/// keys and JWT segments), padding optional.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    // The hand-written decoder this replaced also ignored bits left over after the last
    // byte; clients that relied on that keep working.
    const EITHER: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let standard: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    EITHER.decode(standard).ok()
}

/// `*` matches any run of characters (slashes included); everything else literally.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "a/b/c"));
        assert!(glob("team-a/*", "team-a/app"));
        assert!(glob("team-a/*", "team-a/x/y"));
        assert!(!glob("team-a/*", "team-b/app"));
        assert!(!glob("team-a/*", "team-a"));
        assert!(glob("*/base", "lib/base"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
    }

    #[test]
    fn basic_header() {
        // alice:s3cret:with:colons
        let v = "Basic YWxpY2U6czNjcmV0OndpdGg6Y29sb25z";
        assert_eq!(
            parse_basic(v),
            Some(("alice".into(), "s3cret:with:colons".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64_decode("aGVsbG8").expect("decode"), b"hello");
        assert_eq!(base64_decode("_-8").expect("decode"), vec![0xff, 0xef]);
        assert_eq!(base64_decode("/+8=").expect("decode"), vec![0xff, 0xef]);
        assert_eq!(base64_decode("/-8").expect("decode"), vec![0xff, 0xef]);
        assert_eq!(base64_decode("aGVsbG8=").expect("decode"), b"hello");
        assert_eq!(base64_decode("").expect("decode"), b"");
        assert!(base64_decode("a b").is_none());
        assert!(base64_decode("aGVs*G8").is_none());
    }

    /// A verified token's signature is not checked again, but its expiry is; a token
    /// that fails is never remembered.
    #[test]
    fn verified_tokens_are_remembered_but_still_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (signer, _) = Signer::load_or_create(&dir.path().join("k.pem")).expect("signer");
        let mut a = auth(vec![]);
        a.tokens = Some(Tokens {
            keys: signer.key_set(),
            signer: None,
            issuer: "berth".into(),
            service: "registry".into(),
            realm: None,
            expiration: Duration::from_secs(300),
            algorithms: TokenAlg::ALL.to_vec(),
        });
        let now = unix_now();
        let claims = Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: token::Audience::One("registry".into()),
            exp: now + 300,
            nbf: None,
            iat: Some(now),
            jti: None,
            access: vec![],
        };
        let t = format!("Bearer {}", signer.sign(&claims).expect("sign"));
        let remembered = |a: &Auth| a.verified.lock().expect("lock").len();
        assert_eq!(a.verify_bearer_at(&t, now).expect("valid").sub, "alice");
        assert_eq!(remembered(&a), 1);
        assert_eq!(
            a.verify_bearer_at(&t, now + 10).expect("valid").sub,
            "alice"
        );
        assert_eq!(remembered(&a), 1);
        assert_eq!(
            a.verify_bearer_at(&t, now + 400),
            Err(TokenError::Expired),
            "a remembered token still expires"
        );
        // A flipped character in the middle of the signature: refused, not remembered.
        let mut bad = t.clone().into_bytes();
        let i = bad.len() - 20;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).expect("utf8");
        assert_eq!(a.verify_bearer_at(&bad, now), Err(TokenError::Signature));
        assert_eq!(remembered(&a), 1);
    }

    fn auth(rules: Vec<Rule>) -> Auth {
        Auth {
            realm: "r".into(),
            insecure_allow_plaintext: false,
            policy: RwLock::new(Policy {
                admins: vec!["root".into()],
                groups: HashMap::from([("devs".to_owned(), vec!["carol".to_owned()])]),
                rules,
            }),
            tokens: None,
            users: Mutex::new(Users {
                path: PathBuf::new(),
                entries: HashMap::new(),
                stamp: None,
                checked: Instant::now(),
            }),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn rule(repos: &[&str], users: &[&str], actions: &[&str]) -> Rule {
        Rule {
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn permissions() {
        let open = auth(Vec::new());
        assert!(open.allowed(Some("x"), "any/repo", Action::Delete));
        assert!(!open.allowed(None, "any/repo", Action::Pull));
        let a = auth(vec![
            rule(&["*"], &["anonymous"], &["pull"]),
            rule(&["alice/*"], &["alice"], &["push", "delete"]),
            rule(&["shared/*"], &["@devs"], &["*"]),
        ]);
        assert!(a.allowed(None, "bob/app", Action::Pull));
        assert!(!a.allowed(None, "bob/app", Action::Push));
        assert!(a.allowed(Some("alice"), "alice/app", Action::Push));
        assert!(!a.allowed(Some("alice"), "bob/app", Action::Push));
        assert!(a.allowed(Some("carol"), "shared/x", Action::Delete));
        assert!(!a.allowed(Some("carol"), "alice/x", Action::Delete));
        assert!(a.allowed(Some("root"), "alice/x", Action::Delete));
        assert!(a.anonymous_pull());
        assert!(!auth(vec![rule(&["*"], &["*"], &["pull"])]).anonymous_pull());
    }

    #[test]
    fn failures_are_rate_limited() {
        let a = auth(Vec::new());
        for _ in 0..FAILURES_MAX {
            assert_eq!(a.blocked("192.0.2.1"), None);
            a.failed("192.0.2.1", "mallory");
        }
        assert!(a
            .blocked("192.0.2.1")
            .is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(a.blocked("192.0.2.2"), None);
    }
}
