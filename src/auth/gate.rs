//! The gate every request passes before its handler: who the caller is and whether the
//! operation's [`Need`] is granted. It knows neither endpoints nor responses: the API says
//! what an operation needs and what the request presented, and renders a [`Denial`] as
//! the spec's error.

use super::token::Claims;
use super::{Action, Auth, Refusal, Tokens};

/// What an operation needs of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    /// Nothing (`GET /`, health checks); Basic credentials given are still checked.
    Nothing,
    /// A signed-in caller (`/v2/`, which clients use to discover the challenge).
    Login,
    /// The catalog: a signed-in caller, or anyone when anonymous pulls are allowed; the
    /// listing is then filtered by [`Caller::lists`].
    Catalog,
    /// `action` on a repository.
    Repository(&'a str, Action),
}

/// What the request presented, as the front door saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented<'a> {
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
    /// Whether the channel protects credentials (TLS, loopback, a trusted https proxy).
    pub secure: bool,
    /// The request came over TLS to berth itself.
    pub tls: bool,
    /// The client's address, for failure counting and logs.
    pub client: &'a str,
    /// The base URL clients reach berth at, when known.
    pub external_base: Option<&'a str>,
    /// The `Host` the request named.
    pub host: Option<&'a str>,
}

/// Why a request does not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// 401 with `WWW-Authenticate: <challenge>`.
    Challenge { challenge: String, message: String },
    /// 403: a known user without the permission.
    Denied {
        user: String,
        action: Action,
        repo: String,
    },
    /// 429, retry after this many seconds.
    TooMany(u64),
}

pub(crate) const PLAINTEXT_REFUSED: &str =
    "credentials over plain HTTP are refused: use https (or set auth.insecure_allow_plaintext)";

/// Who is asking, as far as the handlers care.
pub(crate) enum Caller<'a> {
    /// Access control is off.
    Open,
    /// Authenticated (`Some`) or anonymous (`None`) under `auth`.
    Checked(&'a Auth, Option<String>),
    /// Holding a verified Bearer token.
    Token(&'a Auth, Claims),
}

impl Caller<'_> {
    pub(crate) fn user(&self) -> Option<String> {
        match self {
            Caller::Open => None,
            Caller::Checked(_, u) => u.clone(),
            Caller::Token(_, c) => Some(c.sub.clone()).filter(|s| !s.is_empty()),
        }
    }

    pub(crate) fn can_pull(&self, repo: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Checked(a, u) => a.allowed(u.as_deref(), repo, Action::Pull),
            Caller::Token(_, c) => c.grants(repo, "pull"),
        }
    }

    /// Whether `_catalog` shows `repo`: what the caller may pull. A built-in token's
    /// user is checked against the rules; an external server's catalog grant shows all.
    pub(crate) fn lists(&self, repo: &str) -> bool {
        match self {
            Caller::Token(a, c) if a.tokens.as_ref().is_some_and(Tokens::builtin) => {
                let user = Some(c.sub.as_str()).filter(|s| !s.is_empty());
                a.allowed(user, repo, Action::Pull)
            }
            Caller::Token(..) => true,
            other => other.can_pull(repo),
        }
    }

    /// A mount without `from` takes the blob from any repository: only for callers who
    /// may read every repository (otherwise it would leak blobs by digest).
    pub(crate) fn may_mount_anywhere(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Checked(a, u) => a.reads_everything(u.as_deref()),
            Caller::Token(..) => false,
        }
    }
}

/// The Basic challenge of `auth`.
pub(crate) fn basic(auth: &Auth, message: &str) -> Denial {
    Denial::Challenge {
        challenge: format!("Basic realm=\"{}\", charset=\"UTF-8\"", auth.realm),
        message: message.into(),
    }
}

/// What a failed Basic authentication answers.
pub(crate) fn refused(auth: &Auth, r: Refusal, bad_credentials: &str) -> Denial {
    match r {
        Refusal::BadCredentials => basic(auth, bad_credentials),
        Refusal::Plaintext => basic(auth, PLAINTEXT_REFUSED),
        Refusal::TooMany(secs) => Denial::TooMany(secs),
    }
}

/// Authenticates the caller and checks `need`: a challenge for missing or wrong
/// credentials, `Denied` for a known user without the permission, `TooMany` after too
/// many failures.
pub(crate) async fn authorize<'a>(
    auth: &'a Auth,
    need: Need<'_>,
    p: &Presented<'_>,
) -> Result<Caller<'a>, Denial> {
    if let Some(tokens) = &auth.tokens {
        return authorize_token(auth, tokens, need, p);
    }
    let required = || basic(auth, "authentication required");
    let user = auth
        .authenticate(p.authorization, p.secure, p.client)
        .await
        .map_err(|r| refused(auth, r, "authentication required"))?;
    match need {
        Need::Nothing => {}
        Need::Login if user.is_none() => return Err(required()),
        Need::Login => {}
        Need::Catalog if user.is_none() && !auth.anonymous_pull() => return Err(required()),
        Need::Catalog => {}
        Need::Repository(repo, action) => {
            if !auth.allowed(user.as_deref(), repo, action) {
                return Err(match &user {
                    None => required(),
                    Some(u) => Denial::Denied {
                        user: u.clone(),
                        action,
                        repo: repo.into(),
                    },
                });
            }
        }
    }
    Ok(Caller::Checked(auth, user))
}

/// Where clients get tokens: the configured realm, else this registry's own `/token` at
/// the address the client used.
fn token_realm(tokens: &Tokens, p: &Presented<'_>) -> String {
    if let Some(r) = &tokens.realm {
        return r.clone();
    }
    if let Some(base) = p.external_base {
        return format!("{}/token", base.trim_end_matches('/'));
    }
    let host = p.host.unwrap_or("localhost");
    format!("{}://{host}/token", if p.tls { "https" } else { "http" })
}

/// Token auth: the request carries a Bearer token granting what `need` asks, or gets the
/// Bearer challenge naming the scope to ask the token service for.
fn authorize_token<'a>(
    auth: &'a Auth,
    tokens: &'a Tokens,
    need: Need<'_>,
    p: &Presented<'_>,
) -> Result<Caller<'a>, Denial> {
    let scope = match need {
        Need::Catalog => Some("registry:catalog:*".to_owned()),
        Need::Repository(repo, action) => {
            let actions = match action {
                // What docker and podman ask for before a push.
                Action::Push => "pull,push",
                other => other.name(),
            };
            Some(format!("repository:{repo}:{actions}"))
        }
        Need::Nothing | Need::Login => None,
    };
    let realm = token_realm(tokens, p);
    let challenge = |error: Option<&str>, message: String| {
        let mut v = format!("Bearer realm=\"{realm}\",service=\"{}\"", tokens.service);
        if let Some(s) = &scope {
            v.push_str(&format!(",scope=\"{s}\""));
        }
        if let Some(e) = error {
            v.push_str(&format!(",error=\"{e}\""));
        }
        Denial::Challenge {
            challenge: v,
            message,
        }
    };
    if need == Need::Nothing {
        return Ok(Caller::Open);
    }
    let claims = match p.authorization {
        None => return Err(challenge(None, "authentication required".into())),
        Some(h) if h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ") => {
            match auth.verify_bearer(h) {
                Ok(c) => c,
                Err(why) => {
                    tracing::info!(client = %p.client, error = %why, "token refused");
                    return Err(challenge(
                        Some("invalid_token"),
                        format!("token refused: {why}"),
                    ));
                }
            }
        }
        Some(_) => {
            return Err(challenge(
                None,
                format!("this registry takes Bearer tokens from {realm}"),
            ))
        }
    };
    match need {
        Need::Catalog if !claims.grants_catalog() => {
            return Err(challenge(
                Some("insufficient_scope"),
                "the token does not grant registry:catalog:*".into(),
            ));
        }
        Need::Repository(repo, action) if !claims.grants(repo, action.name()) => {
            // A known user whom the rules refuse anyway gets 403, not another round trip.
            if tokens.builtin()
                && !claims.sub.is_empty()
                && !auth.allowed(Some(&claims.sub), repo, action)
            {
                return Err(Denial::Denied {
                    user: claims.sub.clone(),
                    action,
                    repo: repo.into(),
                });
            }
            return Err(challenge(
                Some("insufficient_scope"),
                format!("the token does not grant {} on {repo}", action.name()),
            ));
        }
        Need::Nothing | Need::Login | Need::Catalog | Need::Repository(..) => {}
    }
    Ok(Caller::Token(auth, claims))
}
