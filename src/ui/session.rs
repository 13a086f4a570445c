//! UI logins: a cookie `berth_ui=<user>.<expiry>.<mac>` signed with HMAC-SHA256 under a
//! key kept in `state.dir/ui-session.key` (made on first use, mode 0600), and the CSRF
//! token of each form: a MAC of the session's cookie, so a page of another origin can
//! neither read nor forge it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const COOKIE: &str = "berth_ui";

pub(crate) struct Keys {
    key: hmac::Key,
    ttl: Duration,
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub user: String,
    /// The cookie's value, which CSRF tokens are bound to.
    pub cookie: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Keys {
    /// The key in `dir` (made when missing).
    pub(crate) fn load(dir: &Path, ttl: Duration) -> Result<Self, String> {
        let path = dir.join("ui-session.key");
        let secret = match std::fs::read(&path) {
            Ok(b) if b.len() >= 32 => b,
            _ => {
                let b: [u8; 32] = rand::random();
                crate::store::fs::write_atomic_mode(&path, &b, 0o600)
                    .map_err(|e| format!("cannot write the UI session key: {e}"))?;
                b.to_vec()
            }
        };
        Ok(Self::from_secret(&secret, ttl))
    }

    pub(crate) fn from_secret(secret: &[u8], ttl: Duration) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl,
        }
    }

    fn mac(&self, what: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, what.as_bytes()).as_ref())
    }

    /// A new session cookie's value for `user`.
    pub(crate) fn issue(&self, user: &str) -> String {
        self.issue_at(user, now())
    }

    fn issue_at(&self, user: &str, at: u64) -> String {
        let payload = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(user.as_bytes()),
            at + self.ttl.as_secs()
        );
        format!("{payload}.{}", self.mac(&payload))
    }

    /// The session a cookie value proves, if it is ours and not expired.
    pub(crate) fn verify(&self, cookie: &str) -> Option<Session> {
        self.verify_at(cookie, now())
    }

    fn verify_at(&self, cookie: &str, at: u64) -> Option<Session> {
        let (payload, mac) = cookie.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(mac).ok()?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).ok()?;
        let (user, expiry) = payload.split_once('.')?;
        if expiry.parse::<u64>().ok()? <= at {
            return None;
        }
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(user).ok()?).ok()?;
        Some(Session {
            user,
            cookie: cookie.to_owned(),
        })
    }

    /// The CSRF token of a session's forms.
    pub(crate) fn csrf(&self, s: &Session) -> String {
        self.mac(&format!("csrf|{}", s.cookie))
    }

    /// Whether `token` is the session's CSRF token.
    pub(crate) fn csrf_ok(&self, s: &Session, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        hmac::verify(&self.key, format!("csrf|{}", s.cookie).as_bytes(), &tag).is_ok()
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_proves_its_user_until_it_expires() {
        let k = Keys::from_secret(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let c = k.issue_at("alice", 1000);
        assert_eq!(k.verify_at(&c, 1059).map(|s| s.user), Some("alice".into()));
        assert_eq!(k.verify_at(&c, 1060), None, "expired");
        let other = Keys::from_secret(b"another key, another registry!!!", Duration::from_secs(60));
        assert_eq!(other.verify_at(&c, 1001), None, "another key's cookie");
        // A changed user or expiry breaks the MAC.
        let (payload, mac) = c.rsplit_once('.').expect("mac");
        let (_, exp) = payload.split_once('.').expect("expiry");
        let forged = format!("{}.{exp}.{mac}", URL_SAFE_NO_PAD.encode("admin"));
        assert_eq!(k.verify_at(&forged, 1001), None);
        let longer = format!("{}.99999.{mac}", payload.split_once('.').expect("user").0);
        assert_eq!(k.verify_at(&longer, 1001), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let k = Keys::from_secret(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let a = k.verify(&k.issue("alice")).expect("session");
        let b = k.verify(&k.issue("bob")).expect("session");
        assert!(k.csrf_ok(&a, &k.csrf(&a)));
        assert!(!k.csrf_ok(&a, &k.csrf(&b)));
        assert!(!k.csrf_ok(&a, ""));
        assert!(!k.csrf_ok(&a, "not base64 !"));
    }
}
