//! The OCI Distribution API over `http` types: parse the path into an [`Endpoint`], run
//! its handler against the storage seam ([`Content`]), and render errors in one place ([`error`]).
//!
//! Nothing here touches a socket or the filesystem: the front door hands in request parts
//! and a [`RequestBody`], and takes back an `http::Response<Body>`. That is what lets the
//! core be tested without a network and lets TLS, HTTP/2 and auth slot in around it.

pub mod endpoint;
pub mod error;
pub mod manifest;

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

    // ---- catalog and tags ----

    async fn catalog(&self, q: &[(String, String)], caller: &Caller<'_>) -> Result<Response<Body>> {
        let names: Vec<String> = self
            .store
            .repositories()
            .await?
            .into_iter()
            .map(|n| n.to_string())
            .filter(|n| caller.lists(n))
            .collect();
        let (page, next) = self.paginate(names, q, crate::store::catalog_order)?;
        let link =
            next.map(|last| format!("</v2/_catalog?last={last}&n={}>; rel=\"next\"", page.len()));
        let body = serde_json::json!({ "repositories": page });
        Ok(with_link(
            json(StatusCode::OK, body.to_string().into()),
            link,
        ))
    }

    async fn tags(&self, n: &RepositoryName, q: &[(String, String)]) -> Result<Response<Body>> {
        let Some(tags) = self.store.tags(n).await? else {
            return Err(ApiError::name_unknown(n));
        };
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let (page, next) = self.paginate(tags, q, |a, b| a.cmp(b))?;
        let link = next.map(|last| {
            format!(
                "</v2/{n}/tags/list?last={last}&n={}>; rel=\"next\"",
                page.len()
            )
        });
        let body = serde_json::json!({ "name": n.as_str(), "tags": page });
        Ok(with_link(
            json(StatusCode::OK, body.to_string().into()),
            link,
        ))
    }

    /// One page of a list sorted by `order` after `last`, at most `n` (capped at the
    /// configured page size), and the `last` of the next page when there is one.
    fn paginate(
        &self,
        all: Vec<String>,
        q: &[(String, String)],
        order: fn(&str, &str) -> std::cmp::Ordering,
    ) -> Result<(Vec<String>, Option<String>)> {
        let n = match param(q, "n") {
            None => self.page_max,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| {
                    ApiError::pagination_invalid(format!("n={v:?} is not a non-negative number"))
                })?
                .min(self.page_max),
        };
        let last = param(q, "last");
        let mut rest: Vec<String> = all
            .into_iter()
            .filter(|x| last.is_none_or(|l| order(x, l) == std::cmp::Ordering::Greater))
            .collect();
        let more = rest.len() > n;
        rest.truncate(n);
        let next = if more { rest.last().cloned() } else { None };
        Ok((rest, next))
    }

    // ---- manifests ----

    async fn manifest_get(
        &self,
        n: &RepositoryName,
        r: &Reference,
        headers: &HeaderMap,
        head: bool,
    ) -> Result<Response<Body>> {
        let Some((d, bytes)) = self.store.manifest_fetch(n, r).await? else {
            return Err(ApiError::manifest_unknown(r));
        };
        let parsed = Parsed::from_stored(&bytes);
        let media_type = parsed
            .as_ref()
            .map(|p| {
                p.body
                    .media_type
                    .clone()
                    .unwrap_or_else(|| p.kind.media_type().to_owned())
            })
            .unwrap_or_else(|| "application/json".to_owned());
        let accept: Vec<&str> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if matches!(r, Reference::Tag(_)) && !manifest::accepts(&accept, &media_type) {
            return Err(ApiError::manifest_unknown(r).detail(serde_json::json!({
                "reference": r.to_string(),
                "reason": format!("the manifest is {media_type}, which the Accept header does not include"),
            })));
        }
        let mut resp = Response::new(if head {
            Body::Empty
        } else {
            Body::Full(bytes.clone())
        });
        let h = resp.headers_mut();
        set(h, header::CONTENT_TYPE, &media_type);
        set(h, header::CONTENT_LENGTH, &bytes.len().to_string());
        set(h, "Docker-Content-Digest", &d.to_string());
        set(h, header::ETAG, &format!("\"{d}\""));
        if head || !self.notifying(NotifyAction::Pull) {
            return Ok(resp);
        }
        let mut e = Event::new(NotifyAction::Pull, n).manifest(&d, &media_type, bytes.len() as u64);
        if let Reference::Tag(t) = r {
            e = e.tag(t);
        }
        Ok(with_events(resp, vec![e]))
    }

    async fn manifest_put(
        &self,
        n: &RepositoryName,
        r: &Reference,
        q: &[(String, String)],
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
    ) -> Result<Response<Body>> {
        let extra_tags = q
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| {
                v.parse::<Tag>()
                    .map_err(|e| ApiError::new(OciCode::TagInvalid, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = read_limited(body, self.manifest_max).await?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let parsed = Parsed::from_push(&bytes, content_type)
            .map_err(|e| ApiError::manifest_invalid(e.to_string()))?;
        let d = Digest::of(
            match r {
                Reference::Digest(want) => want.algorithm(),
                Reference::Tag(_) => crate::oci::Algorithm::Sha256,
            },
            &bytes,
        );
        if let Reference::Digest(want) = r {
            if want != &d {
                return Err(ApiError::digest_invalid(
                    "manifest digest does not match the reference",
                )
                .detail(
                    serde_json::json!({ "expected": want.to_string(), "actual": d.to_string() }),
                ));
            }
        }
        // From the checks to the last link, the collector waits: what the checks found
        // (and marked as used) is what gets linked (see store::gc).
        let _linking = self.store.link_barrier().await?;
        self.check_references(n, &parsed).await?;

        let size = bytes.len() as u64;
        self.store.blob_put_small(&d, bytes).await?;
        self.store.manifest_link(n, &d).await?;
        let subject = parsed.subject();
        if let Some(s) = &subject {
            self.store.referrer_add(n, s, &d).await?;
        }
        let mut tags: Vec<Tag> = Vec::new();
        if let Reference::Tag(t) = r {
            tags.push(t.clone());
        }
        tags.extend(extra_tags);
        for t in &tags {
            self.store.tag_set(n, t, &d).await?;
        }
        tracing::info!(repo = %n, digest = %d, tags = tags.len(), "manifest stored");

        let mut resp = empty(StatusCode::CREATED);
        let h = resp.headers_mut();
        set(h, header::LOCATION, &format!("/v2/{n}/manifests/{d}"));
        set(h, "Docker-Content-Digest", &d.to_string());
        if let Some(s) = subject {
            set(h, "OCI-Subject", &s.to_string());
        }
        for t in &tags {
            if let Ok(v) = HeaderValue::from_str(t.as_str()) {
                h.append("OCI-Tag", v);
            }
        }
        if !self.notifying(NotifyAction::Push) {
            return Ok(resp);
        }
        let media_type = parsed
            .body
            .media_type
            .clone()
            .unwrap_or_else(|| parsed.kind.media_type().to_owned());
        // One event per tag, each with its own id.
        let pushed = || Event::new(NotifyAction::Push, n).manifest(&d, &media_type, size);
        let events = if tags.is_empty() {
            vec![pushed()]
        } else {
            tags.iter().map(|t| pushed().tag(t)).collect()
        };
        Ok(with_events(resp, events))
    }

    /// Every blob and child manifest the manifest names must be in the repository, except
    /// foreign layers, whose URLs must pass the configured policy instead.
    async fn check_references(&self, n: &RepositoryName, p: &Parsed) -> Result<()> {
        for desc in p.descriptors() {
            let d: Digest = desc.digest.parse().map_err(|_| {
                ApiError::manifest_invalid(format!("invalid digest {:?}", desc.digest))
            })?;
            if desc.is_foreign() {
                self.check_foreign_urls(&desc.urls)?;
                continue;
            }
            let present = if p.kind.is_index() {
                // Marked as used even when not required, so the collector keeps it.
                self.store.manifest_use(n, &d).await? || !self.require_index_children
            } else {
                self.store.blob_size(n, &d).await?.is_some()
            };
            if !present {
                return Err(if p.kind.is_index() {
                    ApiError::manifest_unknown(&d).detail(serde_json::json!({ "digest": d.to_string(), "reason": "index child manifest not in repository" })).with_status(StatusCode::BAD_REQUEST)
                } else {
                    ApiError::manifest_blob_unknown(&d)
                });
            }
        }
        Ok(())
    }

    fn check_foreign_urls(&self, urls: &[String]) -> Result<()> {
        for u in urls {
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            let allowed =
                self.urls_allow.is_empty() || self.urls_allow.iter().any(|r| r.is_match(u));
            let denied = self.urls_deny.iter().any(|r| r.is_match(u));
            if !scheme_ok || u.contains('#') || !allowed || denied {
                return Err(ApiError::manifest_invalid(format!(
                    "foreign layer URL {u:?} is not allowed by this registry's policy"
                )));
            }
        }
        Ok(())
    }

    async fn manifest_delete(&self, n: &RepositoryName, r: &Reference) -> Result<Response<Body>> {
        self.check_delete_enabled()?;
        let found = match r {
            Reference::Tag(t) => self.store.tag_delete(n, t).await?,
            Reference::Digest(d) => {
                let subject = match self.store.blob_read_small(d).await? {
                    Some(b) => Parsed::from_stored(&b).and_then(|p| p.subject()),
                    None => None,
                };
                let found = self.store.manifest_delete(n, d).await?;
                if let (true, Some(s)) = (found, subject) {
                    self.store.referrer_remove(n, &s, d).await?;
                }
                found
            }
        };
        if !found {
            return Err(ApiError::manifest_unknown(r));
        }
        let events = match (self.notifying(NotifyAction::Delete), r) {
            (false, _) => Vec::new(),
            (true, Reference::Tag(t)) => vec![Event::new(NotifyAction::Delete, n).tag(t)],
            (true, Reference::Digest(d)) => vec![Event::new(NotifyAction::Delete, n).digest(d)],
        };
        Ok(with_events(empty(StatusCode::ACCEPTED), events))
    }

    // ---- blobs ----

    async fn blob_get(
        &self,
        n: &RepositoryName,
        d: &Digest,
        headers: &HeaderMap,
        head: bool,
    ) -> Result<Response<Body>> {
        // A GET opens the blob in the same blocking call that checks it (one hand-off).
        let (size, mut opened) = if head {
            match self.store.blob_size(n, d).await? {
                Some(size) => (size, None),
                None => return Err(ApiError::blob_unknown(d)),
            }
        } else {
            match self.store.blob_open(n, d).await? {
                Some((size, BlobSource::Redirect(url))) => {
                    return Ok(self.redirected(n, d, size, &url))
                }
                Some((size, source)) => (size, Some(source)),
                None => return Err(ApiError::blob_unknown(d)),
            }
        };
        let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            Some(r) => match parse_range(r, size) {
                RangeSpec::Whole => None,
                RangeSpec::Part(a, b) => Some((a, b)),
                RangeSpec::Unsatisfiable => {
                    return Err(ApiError::new(
                        OciCode::BlobUnknown,
                        "requested range not satisfiable",
                    )
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("Content-Range", format!("bytes */{size}")))
                }
            },
            None => None,
        };
        let (status, offset, len) = match range {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
            None => (StatusCode::OK, 0, size),
        };
        let body = match opened.take() {
            Some(BlobSource::File(blob)) if len > 0 => Body::File(blob.slice(offset, len)),
            Some(BlobSource::Stream(open)) if len > 0 => Body::Stream(open(offset, len)),
            _ => Body::Empty,
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        set(h, header::CONTENT_TYPE, "application/octet-stream");
        set(h, header::CONTENT_LENGTH, &len.to_string());
        set(h, "Docker-Content-Digest", &d.to_string());
        set(h, header::ETAG, &format!("\"{d}\""));
        set(h, header::ACCEPT_RANGES, "bytes");
        set(h, header::CACHE_CONTROL, "max-age=31536000");
        if let Some((a, b)) = range {
            set(h, header::CONTENT_RANGE, &format!("bytes {a}-{b}/{size}"));
        }
        if head || !self.notifying(NotifyAction::Pull) {
            return Ok(resp);
        }
        Ok(with_events(
            resp,
            vec![Event::new(NotifyAction::Pull, n).blob(d, size)],
        ))
    }

    /// 307 to where the store serves the blob itself (an object store's presigned URL);
    /// the client sends its `Range` there.
    fn redirected(&self, n: &RepositoryName, d: &Digest, size: u64, url: &str) -> Response<Body> {
        let mut resp = empty(StatusCode::TEMPORARY_REDIRECT);
        let h = resp.headers_mut();
        set(h, header::LOCATION, url);
        set(h, "Docker-Content-Digest", &d.to_string());
        if !self.notifying(NotifyAction::Pull) {
            return resp;
        }
        with_events(resp, vec![Event::new(NotifyAction::Pull, n).blob(d, size)])
    }

    async fn blob_delete(&self, n: &RepositoryName, d: &Digest) -> Result<Response<Body>> {
        self.check_delete_enabled()?;
        if !self.store.blob_unlink(n, d).await? {
            return Err(ApiError::blob_unknown(d));
        }
        let events = if self.notifying(NotifyAction::Delete) {
            vec![Event::new(NotifyAction::Delete, n).digest(d)]
        } else {
            Vec::new()
        };
        Ok(with_events(empty(StatusCode::ACCEPTED), events))
    }

    // ---- uploads ----

    /// 201 for a stored blob, with its push event.
    fn pushed_blob(&self, n: &RepositoryName, d: &Digest, size: u64) -> Response<Body> {
        let events = if self.notifying(NotifyAction::Push) {
            vec![Event::new(NotifyAction::Push, n).blob(d, size)]
        } else {
            Vec::new()
        };
        with_events(blob_created(n, d), events)
    }

    async fn upload_start(
        &self,
        n: &RepositoryName,
        q: &[(String, String)],
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
        mount_anywhere: bool,
        mount_from: bool,
    ) -> Result<Response<Body>> {
        if let Some(m) = param(q, "mount").filter(|_| mount_from) {
            let d: Digest = m
                .parse()
                .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
            let from = param(q, "from").and_then(|f| f.parse::<RepositoryName>().ok());
            let present = match &from {
                Some(f) => self.store.blob_size(f, &d).await?,
                None if mount_anywhere => self.store.blob_size_global(&d).await?,
                // Not honoured: the client uploads instead (the spec allows this).
                None => None,
            };
            if let Some(size) = present {
                self.store.blob_link(n, &d).await?;
                let mut events = Vec::new();
                if self.notifying(NotifyAction::Mount) {
                    let mut e = Event::new(NotifyAction::Mount, n).blob(&d, size);
                    if let Some(f) = &from {
                        e = e.mounted_from(f);
                    }
                    events.push(e);
                }
                return Ok(with_events(blob_created(n, &d), events));
            }
        }
        let id = self.store.upload_start(n).await?;
        if let Some(digest) = param(q, "digest") {
            let d: Digest = digest
                .parse()
                .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
            self.check_content_length(headers)?;
            let result = self.append(n, &id, 0, body, None).await;
            if let Err(e) = result {
                let _ = self.store.upload_cancel(n, &id).await;
                return Err(e);
            }
            let size = self.store.upload_commit(n, &id, &d).await?;
            crate::metrics::upload(size);
            return Ok(self.pushed_blob(n, &d, size));
        }
        Ok(upload_accepted(n, &id, 0, StatusCode::ACCEPTED))
    }

    async fn upload_status(&self, n: &RepositoryName, id: &UploadId) -> Result<Response<Body>> {
        let size = self.store.upload_size(n, id).await?;
        Ok(upload_accepted(n, id, size, StatusCode::NO_CONTENT))
    }

    async fn upload_patch(
        &self,
        n: &RepositoryName,
        id: &UploadId,
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
    ) -> Result<Response<Body>> {
        let size = self.store.upload_size(n, id).await?;
        self.check_content_length(headers)?;
        let expected_len = self.check_content_range(headers, size)?;
        let new_size = self.append(n, id, size, body, expected_len).await?;
        Ok(upload_accepted(n, id, new_size, StatusCode::ACCEPTED))
    }

    async fn upload_put(
        &self,
        n: &RepositoryName,
        id: &UploadId,
        q: &[(String, String)],
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
    ) -> Result<Response<Body>> {
        let d: Digest = param(q, "digest")
            .ok_or_else(|| ApiError::digest_invalid("the digest query parameter is required"))?
            .parse()
            .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
        let size = self.store.upload_size(n, id).await?;
        self.check_content_length(headers)?;
        let expected_len = self.check_content_range(headers, size)?;
        self.append(n, id, size, body, expected_len).await?;
        let size = self.store.upload_commit(n, id, &d).await?;
        crate::metrics::upload(size);
        tracing::info!(repo = %n, digest = %d, "blob stored");
        Ok(self.pushed_blob(n, &d, size))
    }

    async fn upload_cancel(&self, n: &RepositoryName, id: &UploadId) -> Result<Response<Body>> {
        self.check_delete_enabled()?;
        if !self.store.upload_cancel(n, id).await? {
            return Err(ApiError::upload_unknown());
        }
        Ok(empty(StatusCode::NO_CONTENT))
    }

    /// Streams the request body onto the upload; on any failure the upload is left as it
    /// was before this request.
    /// `expected` is the length a `Content-Range` announced.
    async fn append(
        &self,
        n: &RepositoryName,
        id: &UploadId,
        offset: u64,
        body: &mut dyn RequestBody,
        expected: Option<u64>,
    ) -> Result<u64> {
        let first = body
            .chunk()
            .await
            .map_err(|e| ApiError::upload_invalid(e.to_string()))?;
        let Some(first) = first else {
            return match expected {
                Some(want) if want != 0 => Err(short_chunk(want, 0)),
                _ => Ok(offset),
            };
        };
        let mut w = self.store.upload_writer(n, id, offset).await?;
        let pumped = self
            .pump(&mut w, first, offset, body)
            .await
            .and_then(|got| match expected {
                Some(want) if want != got => Err(short_chunk(want, got)),
                _ => Ok(()),
            });
        match pumped {
            Ok(()) => Ok(w.finish().await?),
            Err(e) => {
                // A write failure on the worker is the real cause; else the body's error.
                w.abort().await?;
                Err(e)
            }
        }
    }

    /// Returns the number of bytes this request carried.
    async fn pump(
        &self,
        w: &mut Box<dyn UploadSink>,
        first: Bytes,
        offset: u64,
        body: &mut dyn RequestBody,
    ) -> Result<u64> {
        let mut total = offset;
        let mut next = Some(first);
        while let Some(chunk) = next {
            total += chunk.len() as u64;
            if self.blob_max.is_some_and(|max| total > max) {
                return Err(ApiError::size_invalid(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "blob exceeds the configured limit",
                ));
            }
            w.write(chunk).await?;
            next = body
                .chunk()
                .await
                .map_err(|e| ApiError::upload_invalid(e.to_string()))?;
        }
        Ok(total - offset)
    }

    /// Checks a chunk's `Content-Range` against the upload's size; returns the announced
    /// length.
    fn check_content_range(&self, headers: &HeaderMap, size: u64) -> Result<Option<u64>> {
        let Some(v) = headers.get(header::CONTENT_RANGE) else {
            return Ok(None);
        };
        let v = v.to_str().map_err(|_| ApiError::range_invalid(size))?;
        let spec = v.trim_start_matches("bytes").trim_start_matches(['=', ' ']);
        let spec = spec.split('/').next().unwrap_or("");
        let (a, b) = spec
            .split_once('-')
            .ok_or_else(|| ApiError::range_invalid(size))?;
        let (a, b): (u64, u64) = match (a.trim().parse(), b.trim().parse()) {
            (Ok(a), Ok(b)) if b >= a => (a, b),
            _ => return Err(ApiError::range_invalid(size)),
        };
        if a != size {
            return Err(ApiError::range_invalid(size));
        }
        Ok(Some(b - a + 1))
    }

    fn check_content_length(&self, headers: &HeaderMap) -> Result<()> {
        let len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(len), Some(max)) = (len, self.blob_max) {
            if len > max {
                return Err(ApiError::size_invalid(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "blob exceeds the configured limit",
                ));
            }
        }
        Ok(())
    }

    fn check_delete_enabled(&self) -> Result<()> {
        if self.delete_enabled {
            Ok(())
        } else {
            Err(ApiError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "deletion is disabled on this registry (storage.delete_enabled = false)",
            ))
        }
    }

    // ---- referrers ----

    async fn referrers(
        &self,
        n: &RepositoryName,
        subject: &Digest,
        q: &[(String, String)],
    ) -> Result<Response<Body>> {
        let filter = param(q, "artifactType");
        let mut manifests = Vec::new();
        for d in self.store.referrers(n, subject).await? {
            let Some(bytes) = self.store.blob_read_small(&d).await? else {
                continue;
            };
            let Some(p) = Parsed::from_stored(&bytes) else {
                continue;
            };
            let artifact_type = p.artifact_type();
            if filter.is_some_and(|f| artifact_type.as_deref() != Some(f)) {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": p.body.media_type.clone().unwrap_or_else(|| p.kind.media_type().to_owned()),
                "digest": d.to_string(),
                "size": bytes.len(),
            });
            if let Some(obj) = desc.as_object_mut() {
                if let Some(a) = artifact_type {
                    obj.insert("artifactType".into(), a.into());
                }
                if let Some(ann) = &p.body.annotations {
                    obj.insert("annotations".into(), serde_json::json!(ann));
                }
            }
            manifests.push(desc);
            if manifests.len() >= self.page_max {
                break;
            }
        }
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media_type::OCI_INDEX,
            "manifests": manifests,
        });
        let mut resp = Response::new(Body::Full(body.to_string().into()));
        set(
            resp.headers_mut(),
            header::CONTENT_TYPE,
            crate::oci::media_type::OCI_INDEX,
        );
        if filter.is_some() {
            set(resp.headers_mut(), "OCI-Filters-Applied", "artifactType");
        }
        Ok(resp)
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

fn short_chunk(want: u64, got: u64) -> ApiError {
    ApiError::upload_invalid(format!(
        "Content-Range announced {want} bytes but the body had {got}"
    ))
}

/// Reads a whole body up to `max` bytes (413 above it).
async fn read_limited(body: &mut dyn RequestBody, max: u64) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(c) = body
        .chunk()
        .await
        .map_err(|e| ApiError::manifest_invalid(e.to_string()))?
    {
        if (buf.len() + c.len()) as u64 > max {
            return Err(ApiError::size_invalid(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("manifest exceeds the {max}-byte limit (limits.manifest_max)"),
            ));
        }
        buf.extend_from_slice(&c);
    }
    Ok(buf.freeze())
}

enum RangeSpec {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range against a blob of `size` bytes. Several ranges are served as the
/// whole blob, which RFC 9110 allows.
fn parse_range(v: &str, size: u64) -> RangeSpec {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeSpec::Unsatisfiable;
    };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0 && size > 0)
            .map(|n| (size.saturating_sub(n), size - 1)),
        (false, true) => a
            .parse::<u64>()
            .ok()
            .filter(|&a| a < size)
            .map(|a| (a, size - 1)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b && a < size => Some((a, b.min(size - 1))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        Some((a, b)) => RangeSpec::Part(a, b),
        None => RangeSpec::Unsatisfiable,
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

fn blob_created(n: &RepositoryName, d: &Digest) -> Response<Body> {
    let mut r = empty(StatusCode::CREATED);
    set(
        r.headers_mut(),
        header::LOCATION,
        &format!("/v2/{n}/blobs/{d}"),
    );
    set(r.headers_mut(), "Docker-Content-Digest", &d.to_string());
    r
}

fn upload_accepted(
    n: &RepositoryName,
    id: &UploadId,
    size: u64,
    status: StatusCode,
) -> Response<Body> {
    let mut r = empty(status);
    let h = r.headers_mut();
    set(h, header::LOCATION, &format!("/v2/{n}/blobs/uploads/{id}"));
    set(h, header::RANGE, &upload_range(size));
    set(h, "Docker-Upload-UUID", id.as_str());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |v: &str, size| match parse_range(v, size) {
            RangeSpec::Whole => "whole".to_owned(),
            RangeSpec::Part(a, b) => format!("{a}-{b}"),
            RangeSpec::Unsatisfiable => "416".to_owned(),
        };
        assert_eq!(p("bytes=0-9", 100), "0-9");
        assert_eq!(p("bytes=90-", 100), "90-99");
        assert_eq!(p("bytes=-10", 100), "90-99");
        assert_eq!(p("bytes=50-500", 100), "50-99");
        assert_eq!(p("bytes=100-", 100), "416");
        assert_eq!(p("bytes=9-1", 100), "416");
        assert_eq!(p("bytes=abc", 100), "416");
        assert_eq!(p("items=0-1", 100), "416");
        assert_eq!(p("bytes=0-1,5-6", 100), "whole");
    }
}

#[cfg(test)]
mod tests_inprocess;
