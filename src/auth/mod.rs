//! Access control: who the caller is (htpasswd Basic credentials, or nobody), and what the
//! permission rules let them do. The registry core asks [`Auth::authenticate`] once per
//! request and [`Auth::allowed`] per repository and action.
//!
//! Verified passwords are cached by a hash of the credentials for a short time, so a pull
//! of many layers costs one bcrypt, not one per request; bcrypt runs on the blocking pool.
//! Failed logins are counted per client address and answered with 429 past a limit.

pub mod htpasswd;

use crate::config::{AuthConfig, AuthMode, Rule};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

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
    fn name(self) -> &'static str {
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

/// The authentication and authorization state of a running registry.
pub struct Auth {
    pub realm: String,
    insecure_allow_plaintext: bool,
    admins: Vec<String>,
    groups: HashMap<String, Vec<String>>,
    rules: Vec<Rule>,
    users: Mutex<Users>,
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Auth {
    /// Loads the htpasswd file; `None` when auth is off. A missing or malformed file is an
    /// error naming the file (and line).
    pub fn load(cfg: &AuthConfig) -> Result<Option<Auth>, String> {
        if cfg.mode == AuthMode::None {
            return Ok(None);
        }
        let path = cfg.htpasswd.path.clone();
        let entries = htpasswd::read(&path)?;
        Ok(Some(Auth {
            realm: cfg.htpasswd.realm.clone(),
            insecure_allow_plaintext: cfg.insecure_allow_plaintext,
            admins: cfg.admins.clone(),
            groups: cfg.groups.clone(),
            rules: cfg.rules.clone(),
            users: Mutex::new(Users {
                stamp: htpasswd::stamp(&path),
                path,
                entries,
                checked: Instant::now(),
            }),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }))
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

    /// Whether `user` may pull every repository (admins; anyone authenticated when there
    /// are no rules; anyone under a rule for "*").
    pub fn reads_everything(&self, user: Option<&str>) -> bool {
        self.allowed(user, "\u{0}any", Action::Pull)
            && (self.rules.is_empty()
                || user.is_some_and(|u| self.admins.iter().any(|a| a == u))
                || self.rules.iter().any(|r| {
                    r.repositories.iter().any(|g| g == "*")
                        && r.actions.iter().any(|a| a == "*" || a == "pull")
                        && r.users.iter().any(|who| self.matches(who, user))
                }))
    }

    /// Whether anonymous callers may pull anything at all (then `_catalog` and `/v2/` are
    /// open to them, filtered).
    pub fn anonymous_pull(&self) -> bool {
        self.rules.iter().any(|r| {
            r.users.iter().any(|u| u == "anonymous")
                && r.actions.iter().any(|a| a == "*" || a == "pull")
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

/// `user:password` from a `Basic` Authorization value.
fn parse_basic(value: &str) -> Option<(String, String)> {
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
/// keys), padding optional.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        } as u32;
        buf = buf << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
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
        assert!(base64_decode("a b").is_none());
    }

    fn auth(rules: Vec<Rule>) -> Auth {
        Auth {
            realm: "r".into(),
            insecure_allow_plaintext: false,
            admins: vec!["root".into()],
            groups: HashMap::from([("devs".to_owned(), vec!["carol".to_owned()])]),
            rules,
            users: Mutex::new(Users {
                path: PathBuf::new(),
                entries: HashMap::new(),
                stamp: None,
                checked: Instant::now(),
            }),
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
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
