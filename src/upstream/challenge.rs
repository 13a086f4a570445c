//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, which replaced RFC 7235): what an
//! upstream registry answers a 401 with, so that a client of it knows how to log in.
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Challenges and their parameters are separated by the same comma, so a list element that
//! is `token = value` is a parameter of the challenge before it and anything else starts a
//! new challenge. Registries send `Bearer realm="https://auth.example/token",
//! service="registry.example",scope="repository:library/nginx:pull"` ([`Bearer`]) or
//! `Basic realm="Registry"`. Parsing is pure and linear: no allocation beyond the result,
//! no backtracking past one list element.

use std::fmt;

/// One challenge: a scheme and either a token68 or parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// As written; schemes compare case-insensitively ([`Challenge::is`]).
    scheme: String,
    /// `Negotiate YIIB...==`: the one opaque credential some schemes carry instead of
    /// parameters.
    token68: Option<String>,
    /// Parameter names in lowercase (they compare case-insensitively), values unquoted and
    /// unescaped, in the order given.
    params: Vec<(String, String)>,
}

/// Why a `WWW-Authenticate` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChallengeError {
    #[error("WWW-Authenticate has no challenge")]
    Empty,
    #[error("WWW-Authenticate at byte {at}: {what}")]
    Syntax { at: usize, what: &'static str },
    #[error("WWW-Authenticate: parameter {name:?} given twice in one challenge")]
    Duplicate { name: String },
}

/// What a `Bearer` challenge asks for (the Docker registry token protocol): where to get a
/// token, for which service, with which scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bearer {
    pub realm: String,
    pub service: Option<String>,
    /// `scope` split at spaces: `repository:library/nginx:pull`, ...
    pub scopes: Vec<String>,
    /// RFC 6750's `error` (`invalid_token`, `insufficient_scope`).
    pub error: Option<String>,
}

/// Parses one `WWW-Authenticate` field value. Several fields are several calls; their
/// challenges are meant to be taken together.
pub(crate) fn parse(value: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut p = Cursor {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        // `#rule` lists may have empty elements: ", ,Basic realm=x".
        while matches!(p.peek(), Some(b',' | b' ' | b'\t')) {
            p.i += 1;
        }
        if p.done() {
            break;
        }
        let name = p.token().ok_or(p.error("expected an auth scheme"))?;
        let after_name = p.i;
        p.ows();
        if p.peek() == Some(b'=') {
            // `name = value` on its own: another parameter of the challenge before it.
            let last = match out.last_mut() {
                Some(c) if c.token68.is_none() => c,
                Some(_) => return Err(p.error("a token68 challenge takes no parameters")),
                None => return Err(p.error("a parameter before any auth scheme")),
            };
            let value = p.param_value()?;
            last.push(name, value)?;
        } else {
            p.i = after_name;
            let mut c = Challenge {
                scheme: name.to_owned(),
                token68: None,
                params: Vec::new(),
            };
            let spaced = p.ows() > 0;
            if !p.done() && p.peek() != Some(b',') {
                if !spaced {
                    return Err(p.error("expected a space after the auth scheme"));
                }
                if let Some(t) = p.token68() {
                    c.token68 = Some(t.to_owned());
                } else {
                    let name = p
                        .token()
                        .ok_or(p.error("expected a parameter or token68"))?;
                    p.ows();
                    let value = p.param_value()?;
                    c.push(name, value)?;
                }
            }
            out.push(c);
        }
        p.ows();
        if !p.done() && p.peek() != Some(b',') {
            return Err(p.error("expected ',' between parameters and challenges"));
        }
    }
    if out.is_empty() {
        return Err(ChallengeError::Empty);
    }
    Ok(out)
}

impl Challenge {
    pub(crate) fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether this is a challenge of `scheme` (case-insensitive, as schemes are).
    pub(crate) fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    pub(crate) fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }

    /// The value of parameter `name` (case-insensitive).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The parameters, names in lowercase, in the order given.
    pub(crate) fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// `realm`: what Basic shows the user, where Bearer gets its token.
    pub(crate) fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// The token request a `Bearer` challenge asks for; `None` for another scheme or
    /// without a realm (a Bearer challenge cannot be answered without one).
    pub(crate) fn bearer(&self) -> Option<Bearer> {
        if !self.is("bearer") {
            return None;
        }
        Some(Bearer {
            realm: self.realm()?.to_owned(),
            service: self.param("service").map(str::to_owned),
            scopes: self
                .param("scope")
                .unwrap_or("")
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            error: self.param("error").map(str::to_owned),
        })
    }

    fn push(&mut self, name: &str, value: String) -> Result<(), ChallengeError> {
        if self.param(name).is_some() {
            // RFC 9110: each parameter name MUST only occur once per challenge.
            return Err(ChallengeError::Duplicate {
                name: name.to_ascii_lowercase(),
            });
        }
        self.params.push((name.to_ascii_lowercase(), value));
        Ok(())
    }
}

/// The challenge in canonical form: every parameter value quoted, `"` and `\` escaped. It
/// parses back to the same challenge.
impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        if let Some(t) = &self.token68 {
            return write!(f, " {t}");
        }
        for (i, (name, value)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{name}=\"")?;
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn error(&self, what: &'static str) -> ChallengeError {
        ChallengeError::Syntax { at: self.i, what }
    }

    /// Skips optional whitespace (SP, HTAB); returns how much.
    fn ows(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    /// `1*tchar`.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        self.text(start)
    }

    /// `token68` when it is the whole rest of the list element (else nothing is consumed:
    /// `realm=x` starts like a token68 but is a parameter).
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.peek().is_some_and(is_token68_char) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        let end = self.i;
        self.ows();
        if self.done() || self.peek() == Some(b',') {
            self.i = end;
            return self.text(start);
        }
        self.i = start;
        None
    }

    /// `"=" BWS ( token / quoted-string )`, the cursor on the `=`.
    fn param_value(&mut self) -> Result<String, ChallengeError> {
        if self.peek() != Some(b'=') {
            return Err(self.error("expected '=' after a parameter name"));
        }
        self.i += 1;
        self.ows();
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        self.token()
            .map(str::to_owned)
            .ok_or(self.error("expected a token or a quoted string as the value"))
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, unescaped.
    fn quoted(&mut self) -> Result<String, ChallengeError> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated quoted string"));
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => match self.peek() {
                    Some(e) if !is_ctl(e) || e == b'\t' => {
                        out.push(e);
                        self.i += 1;
                    }
                    _ => return Err(self.error("bad escape in a quoted string")),
                },
                c if is_ctl(c) && c != b'\t' => {
                    return Err(self.error("control character in a quoted string"))
                }
                c => out.push(c),
            }
        }
        // Only ASCII bytes (quotes and backslashes) were left out of valid UTF-8.
        String::from_utf8(out).map_err(|_| self.error("quoted string is not UTF-8"))
    }

    fn text(&self, start: usize) -> Option<&'a str> {
        let t = self.s.get(start..self.i).filter(|t| !t.is_empty())?;
        std::str::from_utf8(t).ok()
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token68_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

fn is_ctl(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Challenge {
        let mut all = parse(v).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(all.len(), 1, "{v}");
        all.remove(0)
    }

    #[test]
    fn registries_bearer_challenges() {
        // Docker Hub, as it answers an anonymous manifest GET.
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c.bearer().expect("bearer"),
            Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scopes: vec!["repository:library/nginx:pull".into()],
                error: None,
            }
        );
        // Several scopes, an error, spaces around '=' and after commas, scheme in capitals.
        let c = one(
            r#"BEARER realm = "https://ghcr.io/token", service="ghcr.io",  scope="repository:a/b:pull repository:c:pull,push",error="insufficient_scope""#,
        );
        let b = c.bearer().expect("bearer");
        assert_eq!(b.realm, "https://ghcr.io/token");
        assert_eq!(b.scopes, ["repository:a/b:pull", "repository:c:pull,push"]);
        assert_eq!(b.error.as_deref(), Some("insufficient_scope"));
        // No realm: nothing to ask; not Bearer: not a token request.
        assert_eq!(one(r#"Bearer service="x""#).bearer(), None);
        assert_eq!(one(r#"Basic realm="x""#).bearer(), None);
    }

    #[test]
    fn basic_and_rfc_examples() {
        let c = one(r#"Basic realm="Registry Realm""#);
        assert!(c.is("basic") && c.is("BASIC"));
        assert_eq!(c.realm(), Some("Registry Realm"));
        // RFC 9110 §11.6.1's example: two challenges, one with an escaped quote.
        let all = parse(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        )
        .expect("parses");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].scheme(), "Newauth");
        assert_eq!(
            all[0].params().collect::<Vec<_>>(),
            [
                ("realm", "apps"),
                ("type", "1"),
                ("title", "Login to \"apps\"")
            ]
        );
        assert_eq!(all[1].realm(), Some("simple"));
        // A token68, and schemes without anything.
        let all = parse("Negotiate YIIBJQYGKwYB==, Basic, Bearer").expect("parses");
        assert_eq!(all[0].token68(), Some("YIIBJQYGKwYB=="));
        assert_eq!(all[1].scheme(), "Basic");
        assert_eq!(all[2].params().count(), 0);
        // `name=` has no value, so it can only be a token68.
        assert_eq!(one("Basic realm=").token68(), Some("realm="));
        // Empty list elements and a parameter name in capitals.
        let all = parse(r#" , Basic Realm="a" ,, Bearer realm=b ,"#).expect("parses");
        assert_eq!(all[0].param("REALM"), Some("a"));
        assert_eq!(all[1].realm(), Some("b"));
        // Escapes and UTF-8 in quoted strings.
        assert_eq!(
            one(r#"Basic realm="a\\b\"c\d é""#).realm(),
            Some(r#"a\b"cd é"#)
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            " , ",
            r#"realm="x""#,
            r#"Basic realm="unterminated"#,
            r#"Basic realm="a" Bearer realm="b""#,
            r#"Basic realm="a", realm="b""#,
            r#"Basic a="x"y"#,
            "Basic realm=\"a\u{1}b\"",
            "Basic realm=\"a\\\u{1}\"",
            "Basic=x",
            "Negotiate abc==, x=y",
            "Basic realm=a b",
            "(Basic)",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            parse(r#"Basic realm="a", REALM="b""#),
            Err(ChallengeError::Duplicate {
                name: "realm".into()
            })
        );
    }

    #[test]
    fn canonical_form_parses_back() {
        for v in [
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
            "Negotiate YIIBJQYGKwYB==, Basic",
            r#"X a="\\\"""#,
        ] {
            let all = parse(v).expect("parses");
            let shown = all
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!(
                parse(&shown).expect("canonical form parses"),
                all,
                "{shown}"
            );
        }
        assert_eq!(
            one(r#"Basic realm=simple"#).to_string(),
            r#"Basic realm="simple""#
        );
    }
}
