//! One upstream registry, as a client of it: requests to its `/v2/` API with the login it
//! asks for (Basic, or the Bearer token protocol), tokens kept until they expire, its
//! `429 Retry-After` honoured, and redirects of blob downloads followed.
//!
//! **Credentials go only where the operator meant them**: to `url`'s own scheme, host and
//! port, and to a token realm on it or listed in `realms`. A challenge that names any
//! other realm gets a token request without them (an anonymous token, which is what a
//! public image needs); a redirect to another origin is followed without `Authorization`.
//! Neither a credential nor a token is ever logged or put into an error.

use crate::config::{HttpUrl, ProxyUpstream};
use crate::oci::{Digest, RepositoryName};
use crate::upstream::challenge;
use crate::upstream::{Client, ClientError, ClientOptions, Response, Roots};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The manifest media types berth asks an upstream for, most wanted first.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Redirects of one blob download followed at most.
const MAX_REDIRECTS: usize = 5;

/// Why an upstream gave no usable answer. The text names the upstream and never a
/// credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UpstreamError(pub String);

/// The origin (scheme, host, port) of a URL: where credentials may go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(u: &HttpUrl) -> Self {
        Origin {
            tls: u.tls,
            host: u.host.to_ascii_lowercase(),
            port: u.port,
        }
    }
}

/// An upstream registry: its settings, a connection pool, its tokens.
pub(crate) struct Remote {
    /// `name` of the configuration: the registry host clients mean.
    pub name: String,
    /// The local repository prefix.
    pub prefix: RepositoryName,
    pub tag_ttl: Duration,
    pub is_default: bool,
    /// `scheme://authority`, no trailing slash.
    base: String,
    origin: Origin,
    /// Realm origins (besides `origin`) that may receive the credentials.
    realms: Vec<Origin>,
    /// Docker Hub's one-component names get `library/`.
    docker_hub: bool,
    username: Option<String>,
    password: Option<String>,
    client: Client,
    /// Bearer tokens by scope, with when each stops being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Whether the upstream asked for Basic: then it is sent with every request.
    basic: std::sync::atomic::AtomicBool,
    /// After a 429, nothing is sent until then (its `Retry-After`).
    quiet_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// The upstream `u` describes; reads its password file (which must not be readable by
    /// others) and its CA.
    pub(crate) fn new(u: &ProxyUpstream) -> Result<Self, String> {
        let password = match &u.password_file {
            None => None,
            Some(p) => Some(read_secret(p)?),
        };
        let roots = match &u.ca {
            Some(ca) => Roots::SystemAnd(ca.clone()),
            None => Roots::System,
        };
        let options = ClientOptions {
            timeout: u.timeout.0,
            read_timeout: u.timeout.0,
            roots,
            // Manifests and token answers; blobs stream.
            body_max: 8 << 20,
            ..ClientOptions::default()
        };
        let client = Client::new(&options).map_err(|e| {
            format!(
                "proxy.upstreams {:?}: {e}{}",
                u.name,
                if u.ca.is_some() {
                    " (see its ca setting)"
                } else {
                    ""
                }
            )
        })?;
        let origin = Origin::of(&u.url);
        let mut realms: Vec<Origin> = u
            .realms
            .iter()
            .filter_map(|r| r.parse::<HttpUrl>().ok())
            .map(|r| Origin::of(&r))
            .collect();
        let docker_hub = origin.host == "registry-1.docker.io" || u.name == "docker.io";
        if origin.host == "registry-1.docker.io" {
            realms.push(Origin {
                tls: true,
                host: "auth.docker.io".into(),
                port: 443,
            });
        }
        let base = format!(
            "{}://{}",
            if u.url.tls { "https" } else { "http" },
            u.url.authority
        );
        Ok(Remote {
            name: u.name.clone(),
            prefix: u
                .prefix
                .parse()
                .map_err(|e| format!("proxy.upstreams {:?}: prefix: {e}", u.name))?,
            tag_ttl: u.tag_ttl.0,
            is_default: u.default,
            base,
            origin,
            realms,
            docker_hub,
            username: u.username.clone(),
            password,
            client,
            tokens: Mutex::new(HashMap::new()),
            basic: std::sync::atomic::AtomicBool::new(false),
            quiet_until: Mutex::new(None),
        })
    }

    /// The upstream's name for a repository that is `rest` under the prefix here.
    pub(crate) fn remote_name(&self, rest: &str) -> String {
        if self.docker_hub && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_owned()
        }
    }

    /// How the upstream is named in messages.
    pub(crate) fn describe(&self) -> String {
        format!("upstream {:?} ({})", self.name, self.base)
    }

    fn fail(&self, what: impl std::fmt::Display) -> UpstreamError {
        UpstreamError(format!("{}: {what}", self.describe()))
    }

    /// `GET` (or `HEAD`) of `/v2/<name>/manifests/<reference>`: `Ok(None)` when the
    /// upstream has no such manifest.
    pub(crate) async fn manifest(
        &self,
        name: &str,
        reference: &str,
        head: bool,
    ) -> Result<Option<Response>, UpstreamError> {
        let method = if head { Method::HEAD } else { Method::GET };
        let path = format!("/v2/{name}/manifests/{reference}");
        self.fetch(method, &path, name, Some(MANIFEST_ACCEPT), false)
            .await
    }

    /// `GET` (or `HEAD`) of a blob, redirects followed.
    pub(crate) async fn blob(
        &self,
        name: &str,
        d: &Digest,
        head: bool,
    ) -> Result<Option<Response>, UpstreamError> {
        let method = if head { Method::HEAD } else { Method::GET };
        let path = format!("/v2/{name}/blobs/{d}");
        self.fetch(method, &path, name, None, true).await
    }

    /// The upstream's tags of `name` (one page of up to 10,000).
    pub(crate) async fn tags(&self, name: &str) -> Result<Option<Vec<String>>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct List {
            tags: Option<Vec<String>>,
        }
        let path = format!("/v2/{name}/tags/list?n=10000");
        let Some(resp) = self.fetch(Method::GET, &path, name, None, false).await? else {
            return Ok(None);
        };
        let body = resp.bytes().await.map_err(|e| self.fail(e))?;
        let list: List = serde_json::from_slice(&body)
            .map_err(|e| self.fail(format!("its tag list is not JSON: {e}")))?;
        Ok(Some(list.tags.unwrap_or_default()))
    }

    /// The upstream's referrers index of `subject` in `name`; `Ok(None)` when it has no
    /// referrers API or none for it.
    pub(crate) async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
    ) -> Result<Option<Bytes>, UpstreamError> {
        let path = format!("/v2/{name}/referrers/{subject}");
        let accept = Some("application/vnd.oci.image.index.v1+json");
        match self.fetch(Method::GET, &path, name, accept, false).await? {
            Some(resp) => Ok(Some(resp.bytes().await.map_err(|e| self.fail(e))?)),
            None => Ok(None),
        }
    }

    /// One request with the login the upstream asks for: `Ok(None)` for a 404, an error
    /// for anything else that is not a 2xx.
    async fn fetch(
        &self,
        method: Method,
        path: &str,
        name: &str,
        accept: Option<&str>,
        follow: bool,
    ) -> Result<Option<Response>, UpstreamError> {
        if let Some(until) = *self.quiet_until.lock().unwrap_or_else(|p| p.into_inner()) {
            if Instant::now() < until {
                let left = until.saturating_duration_since(Instant::now()).as_secs() + 1;
                return Err(self.fail(format!(
                    "it asked for no requests for a while (429 Too Many Requests; {left} s left)"
                )));
            }
        }
        let scope = format!("repository:{name}:pull");
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .send(&method, &url, accept, self.auth_for(&scope))
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let auth = self.login(&resp, &scope).await?;
            resp = self.send(&method, &url, accept, auth).await?;
        }
        let mut hops = 0;
        let mut same_origin = true;
        while follow && resp.status().is_redirection() && hops < MAX_REDIRECTS {
            let Some(next) = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| resolve(&url, l))
            else {
                break;
            };
            hops += 1;
            let parsed: HttpUrl = next
                .parse()
                .map_err(|_| self.fail("it redirected to something that is not an http(s) URL"))?;
            same_origin &= Origin::of(&parsed) == self.origin;
            let auth = if same_origin {
                self.auth_for(&scope)
            } else {
                None
            };
            resp = self.send(&method, &next, None, auth).await?;
        }
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(60)
                    .min(3600);
                *self.quiet_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + Duration::from_secs(wait));
                crate::metrics::PROXY_UPSTREAM_ERRORS
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(self.fail(format!(
                    "429 Too Many Requests (Retry-After {wait} s: berth waits that long before asking again)"
                )))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.fail(format!(
                "{} for {name}: {}",
                resp.status(),
                if self.username.is_some() {
                    "check username and password_file"
                } else {
                    "it needs a login: set username and password_file"
                }
            ))),
            s => {
                crate::metrics::PROXY_UPSTREAM_ERRORS
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(self.fail(format!("answered {s}")))
            }
        }
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        auth: Option<String>,
    ) -> Result<Response, UpstreamError> {
        let mut b = Request::builder().method(method.clone()).uri(url);
        if let Some(a) = accept {
            b = b.header(ACCEPT, a);
        }
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        let req = b
            .body(Default::default())
            .map_err(|_| self.fail("a request to it cannot be made (its URL)"))?;
        self.client.send(req).await.map_err(|e| {
            crate::metrics::PROXY_UPSTREAM_ERRORS
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.fail(unreachable(&e))
        })
    }

    /// The `Authorization` for a request in `scope`, from what is known: a live token, or
    /// Basic when the upstream asked for it.
    fn auth_for(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, until)) = tokens.get(scope) {
            if Instant::now() < *until {
                return Some(format!("Bearer {t}"));
            }
        }
        drop(tokens);
        if self.basic.load(std::sync::atomic::Ordering::Relaxed) {
            return self.basic_header();
        }
        None
    }

    fn basic_header(&self) -> Option<String> {
        let (u, p) = (
            self.username.as_ref()?,
            self.password.as_deref().unwrap_or(""),
        );
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
    }

    /// Answers a 401: the `Authorization` to send again with.
    async fn login(&self, resp: &Response, scope: &str) -> Result<Option<String>, UpstreamError> {
        let challenges: Vec<challenge::Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| challenge::parse(v).ok())
            .flatten()
            .collect();
        if let Some(bearer) = challenges.iter().find_map(|c| c.bearer()) {
            let token = self.token(&bearer, scope).await?;
            return Ok(Some(format!("Bearer {token}")));
        }
        if challenges.iter().any(|c| c.is("basic")) {
            if self.username.is_none() {
                return Err(
                    self.fail("it asks for a login (Basic): set username and password_file for it")
                );
            }
            self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(self.basic_header());
        }
        Err(self.fail("401 without a challenge berth can answer (Basic or Bearer)"))
    }

    /// A token for `scope` from the challenge's realm: with the credentials when the
    /// realm is one they may go to, anonymously otherwise.
    async fn token(&self, b: &challenge::Bearer, scope: &str) -> Result<String, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let realm: HttpUrl = b
            .realm
            .parse()
            .map_err(|_| self.fail("its token realm is not an http(s) URL"))?;
        let ro = Origin::of(&realm);
        let trusted = ro == self.origin || self.realms.contains(&ro);
        if !trusted && self.username.is_some() {
            tracing::warn!(
                upstream = %self.name,
                realm = %format!("{}://{}", if ro.tls { "https" } else { "http" }, realm.authority),
                "the upstream's token realm is on another host and not in its realms setting: asking it for an anonymous token, without the credentials"
            );
        }
        // The scope asked for is ours: a pull of this repository only.
        let mut query = Vec::new();
        if let Some(s) = &b.service {
            query.push(format!("service={}", encode(s)));
        }
        query.push(format!("scope={}", encode(scope)));
        let sep = if realm.as_str().contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}{}", realm.as_str(), query.join("&"));
        let auth = if trusted { self.basic_header() } else { None };
        let resp = self.send(&Method::GET, &url, None, auth).await?;
        if !resp.status().is_success() {
            return Err(self.fail(format!(
                "its token service answered {}{}",
                resp.status(),
                if trusted && self.username.is_some() {
                    ": check username and password_file"
                } else {
                    ""
                }
            )));
        }
        let body = resp.bytes().await.map_err(|e| self.fail(e))?;
        let a: Answer = serde_json::from_slice(&body)
            .map_err(|_| self.fail("its token service did not answer with a token"))?;
        let token = a
            .token
            .or(a.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.fail("its token service did not answer with a token"))?;
        // A token is used until a little before it expires (60 s when unsaid).
        let life = Duration::from_secs(a.expires_in.unwrap_or(60).max(10) - 5);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope.to_owned(), (token.clone(), Instant::now() + life));
        Ok(token)
    }
}

/// A client error as a reason an upstream cannot be used (no URL path or header in it).
fn unreachable(e: &ClientError) -> String {
    format!("cannot be reached: {e}")
}

/// `Location` against the URL it answered.
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    // scheme://authority of the base
    let after = base.find("://").map_or(0, |i| i + 3);
    let end = base[after..].find('/').map_or(base.len(), |i| after + i);
    if location.starts_with('/') {
        format!("{}{location}", &base[..end])
    } else {
        let dir = base.rfind('/').filter(|&i| i >= end).unwrap_or(end);
        format!("{}/{location}", &base[..dir])
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A password file: the first line, which must not be readable by group or others.
fn read_secret(p: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{}: readable by others (mode {:o}); chmod 600 it (proxy.upstreams password_file)",
            p.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(format!(
            "{}: empty (proxy.upstreams password_file)",
            p.display()
        ));
    }
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_request() {
        assert_eq!(
            resolve("https://r.example/v2/a/blobs/x", "/cdn/y?sig=1"),
            "https://r.example/cdn/y?sig=1"
        );
        assert_eq!(
            resolve("https://r.example/v2/a/blobs/x", "https://cdn.example/z"),
            "https://cdn.example/z"
        );
        assert_eq!(
            resolve("http://r.example:5000/v2/a/blobs/x", "y"),
            "http://r.example:5000/v2/a/blobs/y"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode("repository:library/nginx:pull"),
            "repository%3Alibrary%2Fnginx%3Apull"
        );
    }
}
