//! The OCI Distribution API over `http` types: parse the path into an [`Endpoint`], run
//! its handler against the storage seam ([`Content`]), and render errors in one place ([`error`]).
//!
//! Nothing here touches a socket or the filesystem: the front door hands in request parts
//! and a [`RequestBody`], and takes back an `http::Response<Body>`. That is what lets the
//! core be tested without a network and lets TLS, HTTP/2 and auth slot in around it.

mod blobs;
pub mod endpoint;
pub mod error;
mod listing;
pub mod manifest;
mod manifests;
mod referrers;
mod uploads;

use crate::auth::token::Claims;
use crate::auth::{Action, Auth, Refusal, Tokens};
pub use crate::body::{Body, BodyError, FullBody, RequestBody};
use crate::config::Config;
use crate::notify::{Action as NotifyAction, Event};
use crate::oci::{Digest, Reference, RepositoryName, Tag, UploadId};
use crate::store::{BlobSource, Content, UploadSink};
use bytes::{Bytes, BytesMut};
use endpoint::{query_pairs, Endpoint};
use error::{ApiError, OciCode};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use manifest::Parsed;
use regex::Regex;
use std::sync::Arc;
use tracing::Instrument;

/// The scheme and authority clients reach berth at (`https://registry.example.com`), put
/// in the request's extensions by the front door when it knows them; `Location` headers
/// are then absolute.
#[derive(Debug, Clone)]
pub struct ExternalBase(pub String);

/// How the request reached berth, put in its extensions by the front door: whether the
/// channel protects credentials (TLS, loopback, or a trusted https proxy) and the client.
#[derive(Debug, Clone)]
pub struct Transport {
    pub secure: bool,
    /// The request came over TLS to berth itself.
    pub tls: bool,
    pub client: String,
}

const PLAINTEXT_REFUSED: &str =
    "credentials over plain HTTP are refused: use https (or set auth.insecure_allow_plaintext)";

fn too_many(secs: u64) -> ApiError {
    ApiError::new(
        OciCode::TooManyRequests,
        "too many failed logins from this address; try again later",
    )
    .header("Retry-After", secs.to_string())
}

fn denied(user: &str, action: Action, repo: &str) -> ApiError {
    ApiError::new(
        OciCode::Denied,
        format!("{user} may not {} {repo}", action.name()),
    )
}

/// Where clients get tokens: the configured realm, else this registry's own `/token` at
/// the address the client used.
fn token_realm(tokens: &Tokens, req: &http::request::Parts, tls: bool) -> String {
    if let Some(r) = &tokens.realm {
        return r.clone();
    }
    if let Some(ExternalBase(base)) = req.extensions.get::<ExternalBase>() {
        return format!("{}/token", base.trim_end_matches('/'));
    }
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("{}://{host}/token", if tls { "https" } else { "http" })
}

/// What the front door logs and counts about an answered request, put in the response's
/// extensions.
#[derive(Debug, Clone)]
pub struct Served {
    /// The endpoint's short name ("manifest", "blob", ...; "unknown").
    pub endpoint: &'static str,
    /// The authenticated user, if any.
    pub user: Option<String>,
}

impl Transport {
    /// The request's transport; without one (the core used directly, as in unit tests),
    /// a secure channel from nowhere in particular.
    fn of(req: &http::request::Parts) -> Transport {
        req.extensions
            .get::<Transport>()
            .cloned()
            .unwrap_or(Transport {
                secure: true,
                tls: false,
                client: String::new(),
            })
    }
}

/// Who is asking, as far as the handlers care.
enum Caller<'a> {
    /// Access control is off.
    Open,
    /// Authenticated (`Some`) or anonymous (`None`) under `auth`.
    Checked(&'a Auth, Option<String>),
    /// Holding a verified Bearer token.
    Token(&'a Auth, Claims),
}

impl Caller<'_> {
    fn user(&self) -> Option<String> {
        match self {
            Caller::Open => None,
            Caller::Checked(_, u) => u.clone(),
            Caller::Token(_, c) => Some(c.sub.clone()).filter(|s| !s.is_empty()),
        }
    }

    fn can_pull(&self, repo: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Checked(a, u) => a.allowed(u.as_deref(), repo, Action::Pull),
            Caller::Token(_, c) => c.grants(repo, "pull"),
        }
    }

    /// Whether `_catalog` shows `repo`: what the caller may pull. A built-in token's
    /// user is checked against the rules; an external server's catalog grant shows all.
    fn lists(&self, repo: &str) -> bool {
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
    fn may_mount_anywhere(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Checked(a, u) => a.reads_everything(u.as_deref()),
            Caller::Token(..) => false,
        }
    }
}

/// The registry core.
pub struct Registry {
    store: Arc<dyn Content>,
    delete_enabled: bool,
    manifest_max: u64,
    blob_max: Option<u64>,
    page_max: usize,
    require_index_children: bool,
    urls_allow: Vec<Regex>,
    urls_deny: Vec<Regex>,
    auth: Option<Arc<Auth>>,
    notifier: Option<Arc<crate::notify::Notifier>>,
}

/// Webhook events a handler produced, put in its response's extensions; `handle` adds
/// who asked and how, and hands them to the notifier.
#[derive(Clone)]
struct PendingEvents(Vec<crate::notify::Event>);

/// Attaches `events` to a response (nothing when there are none).
fn with_events(mut resp: Response<Body>, events: Vec<crate::notify::Event>) -> Response<Body> {
    if !events.is_empty() {
        resp.extensions_mut().insert(PendingEvents(events));
    }
    resp
}

type Result<T> = std::result::Result<T, ApiError>;

const API_VERSION: &str = "registry/2.0";

impl Registry {
    /// Builds the core from a validated configuration and an open store.
    pub fn new(
        config: &Config,
        store: Arc<dyn Content>,
    ) -> std::result::Result<Self, regex::Error> {
        let compile = |v: &Vec<String>| {
            v.iter()
                .map(|r| Regex::new(r))
                .collect::<std::result::Result<Vec<_>, _>>()
        };
        store.set_read_only(config.storage.read_only);
        Ok(Self {
            store,
            delete_enabled: config.storage.delete_enabled,
            manifest_max: config.limits.manifest_max.0,
            blob_max: Some(config.limits.blob_max.0).filter(|&n| n > 0),
            page_max: config.limits.page_max as usize,
            require_index_children: config.manifests.require_index_children,
            urls_allow: compile(&config.manifests.foreign_urls_allow)?,
            urls_deny: compile(&config.manifests.foreign_urls_deny)?,
            auth: None,
            notifier: None,
        })
    }

    /// The store (the admin listener reports on it; SIGHUP toggles read-only).
    pub fn store(&self) -> &dyn Content {
        &*self.store
    }

    /// Turns webhook notifications on.
    pub fn with_notifier(mut self, n: Option<Arc<crate::notify::Notifier>>) -> Self {
        self.notifier = n;
        self
    }

    /// Whether handlers should build events of `action`: only when an endpoint takes
    /// them (a registry whose webhooks ignore pulls builds nothing per blob GET).
    fn notifying(&self, action: NotifyAction) -> bool {
        self.notifier.as_ref().is_some_and(|n| n.wants(action))
    }

    /// The notifier, for the admin listener's figures.
    pub fn notifier(&self) -> Option<&crate::notify::Notifier> {
        self.notifier.as_deref()
    }

    /// What this request's events carry.
    fn notify_context(
        &self,
        req: &http::request::Parts,
        caller: &Caller<'_>,
    ) -> crate::notify::Context {
        let t = Transport::of(req);
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default();
        let ua = req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let url_base = match req.extensions.get::<ExternalBase>() {
            Some(ExternalBase(b)) => Some(b.clone()),
            None if !host.is_empty() => {
                Some(format!("{}://{host}", if t.tls { "https" } else { "http" }))
            }
            None => None,
        };
        crate::notify::Context {
            request: crate::notify::RequestRecord::new(req.method.as_str(), host, ua, &t.client),
            actor: caller.user().unwrap_or_default(),
            url_base,
        }
    }

    /// Tells the webhooks. Writes wait until the event is on disk (a client told of
    /// success is sure to be notified); pulls do not wait.
    async fn notify(&self, ctx: &crate::notify::Context, events: Vec<crate::notify::Event>) {
        let Some(n) = &self.notifier else { return };
        for event in events {
            let event = event.context(ctx);
            if event.action == crate::notify::Action::Pull {
                n.emit(event);
            } else {
                n.emit_persisted(event).await;
            }
        }
    }

    /// Turns access control on.
    pub fn with_auth(mut self, auth: Option<Arc<Auth>>) -> Self {
        self.auth = auth;
        self
    }

    /// What an endpoint needs: (repository, action) pairs.
    fn needs(e: &Endpoint, m: &Method) -> Vec<(String, Action)> {
        match e {
            Endpoint::Root | Endpoint::Base | Endpoint::Catalog | Endpoint::Token => Vec::new(),
            other => {
                let repo = other
                    .repository()
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                let action = match (other, m.clone()) {
                    (_, Method::DELETE) => Action::Delete,
                    (Endpoint::Upload(..), _) => Action::Push,
                    (_, Method::GET | Method::HEAD) => Action::Pull,
                    _ => Action::Push,
                };
                vec![(repo, action)]
            }
        }
    }

    /// Authenticates the caller and checks the endpoint's permissions: 401 with the
    /// challenge for missing or wrong credentials, 403 `DENIED` for a known user without
    /// the permission, 429 after too many failures.
    async fn authorize<'a>(
        &self,
        auth: &'a Auth,
        e: &Endpoint,
        req: &http::request::Parts,
    ) -> Result<Caller<'a>> {
        let t = Transport::of(req);
        let header = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(tokens) = &auth.tokens {
            return self.authorize_token(auth, tokens, e, req, header, &t);
        }
        let challenge = |msg: &str| {
            ApiError::new(OciCode::Unauthorized, msg).header(
                "WWW-Authenticate",
                format!("Basic realm=\"{}\", charset=\"UTF-8\"", auth.realm),
            )
        };
        let user = match auth.authenticate(header, t.secure, &t.client).await {
            Ok(u) => u,
            Err(Refusal::BadCredentials) => return Err(challenge("authentication required")),
            Err(Refusal::Plaintext) => return Err(challenge(PLAINTEXT_REFUSED)),
            Err(Refusal::TooMany(secs)) => return Err(too_many(secs)),
        };
        match e {
            Endpoint::Base if user.is_none() => return Err(challenge("authentication required")),
            Endpoint::Catalog if user.is_none() && !auth.anonymous_pull() => {
                return Err(challenge("authentication required"))
            }
            _ => {}
        }
        for (repo, action) in Self::needs(e, &req.method) {
            if !auth.allowed(user.as_deref(), &repo, action) {
                return Err(match &user {
                    None => challenge("authentication required"),
                    Some(u) => denied(u, action, &repo),
                });
            }
        }
        Ok(Caller::Checked(auth, user))
    }

    /// Token auth: the request carries a Bearer token granting what the endpoint needs,
    /// or gets the Bearer challenge naming the scope to ask the token service for.
    fn authorize_token<'a>(
        &self,
        auth: &'a Auth,
        tokens: &'a Tokens,
        e: &Endpoint,
        req: &http::request::Parts,
        header: Option<&str>,
        t: &Transport,
    ) -> Result<Caller<'a>> {
        let needs = Self::needs(e, &req.method);
        let scope = match e {
            Endpoint::Catalog => Some("registry:catalog:*".to_owned()),
            _ => needs.first().map(|(repo, action)| {
                let actions = match action {
                    // What docker and podman ask for before a push.
                    Action::Push => "pull,push",
                    other => other.name(),
                };
                format!("repository:{repo}:{actions}")
            }),
        };
        let realm = token_realm(tokens, req, t.tls);
        let challenge = |error: Option<&str>, msg: String| {
            let mut v = format!("Bearer realm=\"{realm}\",service=\"{}\"", tokens.service);
            if let Some(s) = &scope {
                v.push_str(&format!(",scope=\"{s}\""));
            }
            if let Some(e) = error {
                v.push_str(&format!(",error=\"{e}\""));
            }
            ApiError::new(OciCode::Unauthorized, msg).header("WWW-Authenticate", v)
        };
        if matches!(e, Endpoint::Root) {
            return Ok(Caller::Open);
        }
        let claims = match header {
            None => return Err(challenge(None, "authentication required".into())),
            Some(h) if h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ") => {
                match auth.verify_bearer(h) {
                    Ok(c) => c,
                    Err(why) => {
                        tracing::info!(client = %t.client, error = %why, "token refused");
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
        if matches!(e, Endpoint::Catalog) && !claims.grants_catalog() {
            return Err(challenge(
                Some("insufficient_scope"),
                "the token does not grant registry:catalog:*".into(),
            ));
        }
        for (repo, action) in &needs {
            if claims.grants(repo, action.name()) {
                continue;
            }
            // A known user whom the rules refuse anyway gets 403, not another round trip.
            if tokens.builtin()
                && !claims.sub.is_empty()
                && !auth.allowed(Some(&claims.sub), repo, *action)
            {
                return Err(denied(&claims.sub, *action, repo));
            }
            return Err(challenge(
                Some("insufficient_scope"),
                format!("the token does not grant {} on {repo}", action.name()),
            ));
        }
        Ok(Caller::Token(auth, claims))
    }

    /// `GET /token`: the built-in token service (Docker registry token protocol).
    async fn token(&self, req: &http::request::Parts) -> Result<Response<Body>> {
        let Some(auth) = self
            .auth
            .as_deref()
            .filter(|a| a.tokens.as_ref().is_some_and(Tokens::builtin))
        else {
            return Err(ApiError::unsupported(
                StatusCode::NOT_FOUND,
                "no token service here (auth.mode is not \"token\" with the builtin issuer)",
            ));
        };
        if req.method != Method::GET {
            return Err(ApiError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "the token service takes GET with Basic credentials",
            ));
        }
        let t = Transport::of(req);
        let q = query_pairs(req.uri.query());
        let service = auth
            .tokens
            .as_ref()
            .map(|t| t.service.as_str())
            .unwrap_or_default();
        if let Some(s) = param(&q, "service").filter(|s| *s != service) {
            return Err(ApiError::unsupported(
                StatusCode::BAD_REQUEST,
                format!("unknown service {s:?}; this registry is {service:?}"),
            ));
        }
        let scopes: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect();
        let header = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let basic = |msg: &str| {
            ApiError::new(OciCode::Unauthorized, msg).header(
                "WWW-Authenticate",
                format!("Basic realm=\"{}\", charset=\"UTF-8\"", auth.realm),
            )
        };
        match auth.issue_token(header, t.secure, &t.client, &scopes).await {
            Ok(r) => {
                let body = serde_json::to_vec(&r).unwrap_or_default();
                let mut resp = json(StatusCode::OK, body.into());
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("no-store"),
                );
                Ok(resp)
            }
            Err(Refusal::BadCredentials) => Err(basic("wrong user name or password")),
            Err(Refusal::Plaintext) => Err(basic(PLAINTEXT_REFUSED)),
            Err(Refusal::TooMany(secs)) => Err(too_many(secs)),
        }
    }

    /// Handles one request. Every response under `/v2/` carries the API version header.
    pub async fn handle(
        &self,
        req: &http::request::Parts,
        body: &mut dyn RequestBody,
    ) -> Response<Body> {
        let endpoint = Endpoint::parse(req.uri.path());
        let name = endpoint.as_ref().map(|e| e.name()).unwrap_or("unknown");
        let span = tracing::debug_span!("request", endpoint = name);
        let is_v2 = !matches!(endpoint, Ok(Endpoint::Root)) && req.uri.path().starts_with("/v2");
        let writes = matches!(
            req.method,
            Method::PUT | Method::POST | Method::PATCH | Method::DELETE
        );
        let mut user = None;
        let mut resp = match endpoint {
            Ok(Endpoint::Token) => self
                .token(req)
                .instrument(span)
                .await
                .unwrap_or_else(ApiError::into_response),
            // `instrument`, not `span.enter()`: a guard held across `.await` would tag
            // other tasks' events on this worker with this request's span.
            Ok(e) => {
                let caller = match &self.auth {
                    Some(auth) => self.authorize(auth, &e, req).await,
                    None => Ok(Caller::Open),
                };
                match caller {
                    // Only an authorized caller learns that writes are paused.
                    Ok(caller) if writes && self.store.read_only() => {
                        user = caller.user();
                        ApiError::new(
                            OciCode::Unavailable,
                            "the registry is read-only for now (storage.read_only); pulls keep working",
                        )
                        .into_response()
                    }
                    Ok(caller) => {
                        user = caller.user();
                        let mut resp = self
                            .dispatch(e, req, body, &caller)
                            .instrument(span)
                            .await
                            .unwrap_or_else(ApiError::into_response);
                        if let Some(PendingEvents(events)) =
                            resp.extensions_mut().remove::<PendingEvents>()
                        {
                            self.notify(&self.notify_context(req, &caller), events)
                                .await;
                        }
                        resp
                    }
                    Err(refused) => refused.into_response(),
                }
            }
            Err(e) => e.into_response(),
        };
        resp.extensions_mut().insert(Served {
            endpoint: name,
            user,
        });
        if let Some(ExternalBase(base)) = req.extensions.get::<ExternalBase>() {
            absolutize_location(&mut resp, base);
        }
        stamp(&mut resp, is_v2);
        resp
    }

    /// The 413 the front door sends from `Content-Length` alone, before the body is read,
    /// with the same headers as every other response.
    pub fn body_too_large(&self, limit: u64) -> Response<Body> {
        let mut resp = ApiError::size_invalid(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the {limit}-byte limit for this endpoint"),
        )
        .into_response();
        stamp(&mut resp, true);
        resp
    }

    /// 431 for a request whose header is over the configured caps.
    pub fn header_too_large(&self, why: String) -> Response<Body> {
        let mut resp = ApiError::size_invalid(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, why)
            .into_response();
        stamp(&mut resp, true);
        resp
    }

    /// The largest body `endpoint` may carry: the front door answers 413 early from
    /// `Content-Length` above it.
    pub fn body_limit(&self, path: &str) -> Option<u64> {
        match Endpoint::parse(path) {
            Ok(Endpoint::Manifest(..)) => Some(self.manifest_max),
            Ok(Endpoint::UploadStart(_) | Endpoint::Upload(..)) => self.blob_max,
            _ => None,
        }
    }

    async fn dispatch(
        &self,
        e: Endpoint,
        req: &http::request::Parts,
        body: &mut dyn RequestBody,
        caller: &Caller<'_>,
    ) -> Result<Response<Body>> {
        let q = query_pairs(req.uri.query());
        let m = &req.method;
        let head = m == Method::HEAD;
        match (e, m.clone()) {
            (Endpoint::Root, Method::GET | Method::HEAD) => {
                Ok(text(StatusCode::OK, "berth: OCI registry\n"))
            }
            (Endpoint::Base, Method::GET | Method::HEAD) => {
                Ok(json(StatusCode::OK, Bytes::from_static(b"{}")))
            }
            (Endpoint::Catalog, Method::GET) => self.catalog(&q, caller).await,
            (Endpoint::Tags(n), Method::GET) => self.tags(&n, &q).await,
            (Endpoint::Manifest(n, r), Method::GET | Method::HEAD) => {
                self.manifest_get(&n, &r, &req.headers, head).await
            }
            (Endpoint::Manifest(n, r), Method::PUT) => {
                self.manifest_put(&n, &r, &q, &req.headers, body).await
            }
            (Endpoint::Manifest(n, r), Method::DELETE) => self.manifest_delete(&n, &r).await,
            (Endpoint::Blob(n, d), Method::GET | Method::HEAD) => {
                self.blob_get(&n, &d, &req.headers, head).await
            }
            (Endpoint::Blob(n, d), Method::DELETE) => self.blob_delete(&n, &d).await,
            (Endpoint::UploadStart(n), Method::POST) => {
                // A mount from a repository the caller may not read is not honoured:
                // the client uploads instead (the spec allows this).
                let mount_from = param(&q, "from").is_none_or(|f| caller.can_pull(f));
                self.upload_start(
                    &n,
                    &q,
                    &req.headers,
                    body,
                    caller.may_mount_anywhere(),
                    mount_from,
                )
                .await
            }
            (Endpoint::Upload(n, id), Method::GET) => self.upload_status(&n, &id).await,
            (Endpoint::Upload(n, id), Method::PATCH) => {
                self.upload_patch(&n, &id, &req.headers, body).await
            }
            (Endpoint::Upload(n, id), Method::PUT) => {
                self.upload_put(&n, &id, &q, &req.headers, body).await
            }
            (Endpoint::Upload(n, id), Method::DELETE) => self.upload_cancel(&n, &id).await,
            (Endpoint::Referrers(n, d), Method::GET) => self.referrers(&n, &d, &q).await,
            (Endpoint::Repository(n), Method::DELETE) => {
                self.check_delete_enabled()?;
                if !self.store.repository_delete(&n).await? {
                    return Err(ApiError::name_unknown(&n));
                }
                tracing::info!(repo = %n, "repository deleted");
                let body = serde_json::json!({ "deleted": n.as_str() });
                let events = if self.notifying(NotifyAction::Delete) {
                    vec![Event::new(NotifyAction::Delete, &n)]
                } else {
                    Vec::new()
                };
                Ok(with_events(
                    json(StatusCode::ACCEPTED, body.to_string().into()),
                    events,
                ))
            }
            (e, m) => Err(ApiError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not supported on the {} endpoint", e.name()),
            )),
        }
    }
}

/// The spec's `Range` value for an upload of `size` bytes (`0-0` when empty, as
/// distribution reports it).
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// Headers every response carries: the API version under `/v2/`, and `nosniff`.
fn stamp(resp: &mut Response<Body>, is_v2: bool) {
    let h = resp.headers_mut();
    if is_v2 {
        h.insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static(API_VERSION),
        );
    }
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
}

/// Turns a relative `Location` into one under `base`.
fn absolutize_location(resp: &mut Response<Body>, base: &str) {
    let rel = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.starts_with('/'))
        .map(str::to_owned);
    if let Some(rel) = rel {
        set(
            resp.headers_mut(),
            header::LOCATION,
            &format!("{}{rel}", base.trim_end_matches('/')),
        );
    }
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn set(h: &mut HeaderMap, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = status;
    set(r.headers_mut(), header::CONTENT_LENGTH, "0");
    r
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::Full(body));
    *r.status_mut() = status;
    set(r.headers_mut(), header::CONTENT_TYPE, "application/json");
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::Full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    set(
        r.headers_mut(),
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    r
}

fn with_link(mut r: Response<Body>, link: Option<String>) -> Response<Body> {
    if let Some(l) = link {
        set(r.headers_mut(), header::LINK, &l);
    }
    r
}

#[cfg(test)]
mod tests_inprocess;
