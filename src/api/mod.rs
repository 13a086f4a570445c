//! The OCI Distribution API over `http` types: parse the path into an [`Endpoint`], run
//! its handler against the storage seam ([`Content`]), and render errors in one place ([`error`]).
//!
//! Nothing here touches a socket or the filesystem: the front door hands in request parts
//! and a [`RequestBody`], and takes back an `http::Response<Body>`. That is what lets the
//! core be tested without a network and lets TLS, HTTP/2 and auth slot in around it.

mod admin;
pub(crate) mod blobs;
pub(crate) mod endpoint;
pub(crate) mod error;
mod events;
mod listing;
pub(crate) mod manifest;
mod manifests;
mod referrers;
pub(crate) mod uploads;

use crate::auth::gate::{self, Caller, Denial, Presented};
use crate::auth::Auth;
pub use crate::body::{Body, BodyError, FullBody, RequestBody};
use crate::config::Config;
use crate::oci::{Digest, Reference, RepositoryName, Tag, UploadId};
use crate::store::{BlobSource, Content, UploadSink};
use bytes::{Bytes, BytesMut};
use endpoint::{query_pairs, Endpoint, Operation};
use error::{ApiError, OciCode};
use events::{Answer, Happened};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
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
    fn of(req: &http::request::Parts) -> &Transport {
        static NOWHERE: Transport = Transport {
            secure: true,
            tls: false,
            client: String::new(),
        };
        req.extensions.get::<Transport>().unwrap_or(&NOWHERE)
    }
}

/// What every part of a request's handling reads, taken from the request once.
pub(super) struct Ctx<'r> {
    pub req: &'r http::request::Parts,
    pub transport: &'r Transport,
    /// The query's pairs, decoded.
    pub query: Vec<(String, String)>,
}

impl<'r> Ctx<'r> {
    fn new(req: &'r http::request::Parts) -> Self {
        Ctx {
            req,
            transport: Transport::of(req),
            query: query_pairs(req.uri.query()),
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
    mirror: Option<Arc<crate::mirror::Mirror>>,
    ui: Option<crate::ui::Ui>,
    tls: Option<Arc<crate::tls::Tls>>,
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
            mirror: None,
            ui: config.ui.enabled.then(|| crate::ui::Ui::new(config)),
            tls: None,
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

    /// The notifier, for the admin listener's figures.
    pub fn notifier(&self) -> Option<&crate::notify::Notifier> {
        self.notifier.as_deref()
    }

    /// What this request's events carry.
    fn notify_context(&self, ctx: &Ctx<'_>, caller: &Caller<'_>) -> crate::notify::Context {
        let (req, t) = (ctx.req, ctx.transport);
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

    /// Serves the upstreams of `[proxy]` under their prefixes (the store given to
    /// [`Registry::new`] is then a [`crate::mirror::cache::PullThrough`]): their
    /// repositories are read-only, and `?ns=` and the default upstream are routed to them.
    pub fn with_mirror(mut self, m: Option<Arc<crate::mirror::Mirror>>) -> Self {
        self.mirror = m;
        self
    }

    /// The mirror's name for what a request names: containerd's `?ns=<registry host>`
    /// selects an upstream by its name (an unknown one is a 404: berth never dials a host
    /// a client names), and a read of an un-prefixed repository that is not stored here
    /// goes to the default upstream.
    async fn mirror_route(
        &self,
        e: Endpoint,
        ctx: &Ctx<'_>,
    ) -> std::result::Result<Endpoint, ApiError> {
        let Some(m) = &self.mirror else { return Ok(e) };
        let Some(n) = e.repository() else {
            return Ok(e);
        };
        if let Some((_, ns)) = ctx.query.iter().find(|(k, _)| k == "ns") {
            return match m.by_ns(ns, n) {
                Some(local) => Ok(e.renamed(local)),
                None => Err(ApiError::new(
                    OciCode::NameUnknown,
                    format!("no upstream registry named {ns:?} is mirrored here (proxy.upstreams[].name)"),
                )),
            };
        }
        // Reads only; and not a blob HEAD: that is how a push asks what it need not send,
        // and a push of a new un-prefixed repository stays local.
        let read = match e {
            Endpoint::Blob(..) => ctx.req.method == http::Method::GET,
            Endpoint::Repository(_) => false,
            _ => ctx.req.method == http::Method::GET || ctx.req.method == http::Method::HEAD,
        };
        if !read || m.is_mirrored(n) {
            return Ok(e);
        }
        match m.by_default(n) {
            Some(local) if self.store.tags(n).await.ok().flatten().is_none() => {
                Ok(e.renamed(local))
            }
            _ => Ok(e),
        }
    }

    /// The served certificate, whose expiry the UI shows to admins.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::Tls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Turns access control on.
    pub fn with_auth(mut self, auth: Option<Arc<Auth>>) -> Self {
        self.auth = auth;
        self
    }

    /// Handles one request. Every response under `/v2/` carries the API version header.
    pub async fn handle(
        &self,
        req: &http::request::Parts,
        body: &mut dyn RequestBody,
    ) -> Response<Body> {
        if let Some(ui) = self.ui.as_ref().filter(|_| crate::ui::wants(req)) {
            return self.ui_request(ui, req, body).await;
        }
        let ctx = Ctx::new(req);
        let endpoint = match Endpoint::parse(req.uri.path()) {
            Ok(e) => self.mirror_route(e, &ctx).await,
            Err(e) => Err(e),
        };
        let name = endpoint.as_ref().map(|e| e.name()).unwrap_or("unknown");
        let span = tracing::debug_span!("request", endpoint = name);
        let is_v2 = !matches!(endpoint, Ok(Endpoint::Root)) && req.uri.path().starts_with("/v2");
        let mut user = None;
        let mirrored = match (&endpoint, &self.mirror) {
            (Ok(e), Some(m)) => e.repository().filter(|n| m.is_mirrored(n)).cloned(),
            _ => None,
        };
        let mut resp = match endpoint.map(|e| Operation::of(e, &req.method)) {
            Ok(Operation::Token) => self
                .token(&ctx)
                .instrument(span)
                .await
                .unwrap_or_else(ApiError::into_response),
            // `instrument`, not `span.enter()`: a guard held across `.await` would tag
            // other tasks' events on this worker with this request's span.
            Ok(op) => {
                let caller = match &self.auth {
                    Some(auth) => gate::authorize(auth, op.need(), &presented(&ctx))
                        .await
                        .map_err(denial),
                    None => Ok(Caller::Open),
                };
                match caller {
                    Ok(caller) => {
                        user = caller.user();
                        self.run(&op, &ctx, body, &caller, mirrored.as_ref())
                            .instrument(span)
                            .await
                            .unwrap_or_else(ApiError::into_response)
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

    /// A request of the web UI. Its deletes run here, through the same handlers, rights,
    /// read-only and mirror checks and events as a client's DELETE.
    async fn ui_request(
        &self,
        ui: &crate::ui::Ui,
        req: &http::request::Parts,
        body: &mut dyn RequestBody,
    ) -> Response<Body> {
        use crate::ui::{Answer as UiAnswer, Deletion};
        let ctx = Ctx::new(req);
        let registry = match req.extensions.get::<ExternalBase>() {
            Some(ExternalBase(b)) => b
                .split_once("://")
                .map(|(_, h)| h)
                .unwrap_or(b)
                .trim_end_matches('/')
                .to_owned(),
            None => req
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost")
                .to_owned(),
        };
        let view = crate::ui::View {
            store: &*self.store,
            auth: self.auth.as_deref(),
            delete_enabled: self.delete_enabled,
            tls: ctx.transport.tls,
            registry,
            secure: ctx.transport.secure,
            client: &ctx.transport.client,
            cert_not_after: self.tls.as_ref().map(|t| t.summary().not_after),
        };
        let (mut resp, user) = match ui.handle(&view, req, body).await {
            UiAnswer::Page(r) => (r, None),
            UiAnswer::Delete {
                user,
                repo,
                what,
                back,
            } => {
                let endpoint = match what {
                    Deletion::Tag(t) => Endpoint::Manifest(repo.clone(), Reference::Tag(t)),
                    Deletion::Manifest(d) => Endpoint::Manifest(repo.clone(), Reference::Digest(d)),
                    Deletion::Repository => Endpoint::Repository(repo.clone()),
                };
                let op = Operation::of(endpoint, &http::Method::DELETE);
                let caller = match &self.auth {
                    None => Caller::Open,
                    Some(a) => Caller::Checked(a, user.clone()),
                };
                let allowed = match (&self.auth, op.need()) {
                    (None, _) => true,
                    (Some(a), gate::Need::Repository(r, action)) => {
                        a.allowed(user.as_deref(), r, action)
                    }
                    (Some(_), _) => false,
                };
                let mirrored = self
                    .mirror
                    .as_ref()
                    .is_some_and(|m| m.is_mirrored(&repo))
                    .then_some(&repo);
                let resp = if !allowed {
                    text(StatusCode::FORBIDDEN, "not allowed here\n")
                } else {
                    match self
                        .run(&op, &ctx, &mut FullBody(None), &caller, mirrored)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(repo = %repo, user = user.as_deref().unwrap_or("-"), "ui: deleted");
                            let mut r = empty(StatusCode::SEE_OTHER);
                            set(r.headers_mut(), header::LOCATION, &back);
                            r
                        }
                        Err(e) => e.into_response(),
                    }
                };
                (resp, user)
            }
        };
        resp.extensions_mut().insert(Served {
            endpoint: "ui",
            user,
        });
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
        Endpoint::parse(path)
            .ok()?
            .body_limit(self.manifest_max, self.blob_max)
    }

    /// Runs an operation for an authorized caller (a client's request, or a UI delete with
    /// the session's user): writes are refused under a mirrored prefix (`mirrored`) and
    /// while the store is read-only; what happened goes to the webhooks.
    async fn run(
        &self,
        op: &Operation,
        ctx: &Ctx<'_>,
        body: &mut dyn RequestBody,
        caller: &Caller<'_>,
        mirrored: Option<&RepositoryName>,
    ) -> Result<Response<Body>> {
        if op.writes() {
            if let Some(n) = mirrored {
                return Err(ApiError::new(
                    OciCode::Unsupported,
                    format!("{n} is a read-only mirror of an upstream registry (proxy.upstreams): push to a repository outside its prefix"),
                ));
            }
            if self.store.read_only() {
                return Err(ApiError::new(
                    OciCode::Unavailable,
                    "the registry is read-only for now (storage.read_only); pulls keep working",
                ));
            }
        }
        let Answer { resp, happened } = self.dispatch(op, ctx, body, caller).await?;
        let events = happened.map(|h| self.events_of(h));
        if let Some(events) = events.filter(|e| !e.is_empty()) {
            self.notify(&self.notify_context(ctx, caller), events).await;
        }
        Ok(resp)
    }

    async fn dispatch<'a>(
        &self,
        op: &'a Operation,
        ctx: &Ctx<'_>,
        body: &mut dyn RequestBody,
        caller: &Caller<'_>,
    ) -> Result<Answer<'a>> {
        let (q, h) = (&ctx.query, &ctx.req.headers);
        let plain = |r: Result<Response<Body>>| r.map(Answer::from);
        match op {
            Operation::Root => Ok(text(StatusCode::OK, "berth: OCI registry\n").into()),
            Operation::Base => Ok(json(StatusCode::OK, Bytes::from_static(b"{}")).into()),
            Operation::Catalog => plain(self.catalog(q, caller).await),
            Operation::TagList(n) => plain(self.tags(n, q).await),
            Operation::ManifestGet(n, r, head) => self.manifest_get(n, r, h, *head).await,
            Operation::ManifestPut(n, r) => self.manifest_put(n, r, q, h, body).await,
            Operation::ManifestDelete(n, r) => self.manifest_delete(n, r).await,
            Operation::ManifestAbsent(_, r) => Err(ApiError::manifest_unknown(r)),
            Operation::ReferenceInvalid(_, code, why, _) => Err(ApiError::new(*code, why.clone())),
            Operation::BlobGet(n, d, head) => self.blob_get(n, d, h, *head).await,
            Operation::BlobDelete(n, d) => self.blob_delete(n, d).await,
            Operation::UploadStart(n) => {
                // A mount from a repository the caller may not read is not honoured:
                // the client uploads instead (the spec allows this).
                let mount_from = param(q, "from").is_none_or(|f| caller.can_pull(f));
                let anywhere = caller.may_mount_anywhere();
                self.upload_start(n, q, h, body, anywhere, mount_from).await
            }
            Operation::UploadStatus(n, id) => plain(self.upload_status(n, id).await),
            Operation::UploadPatch(n, id) => plain(self.upload_patch(n, id, h, body).await),
            Operation::UploadPut(n, id) => self.upload_put(n, id, q, h, body).await,
            Operation::UploadCancel(n, id) => plain(self.upload_cancel(n, id).await),
            Operation::Referrers(n, d) => plain(self.referrers(n, d, q).await),
            Operation::RepositoryDelete(n) => self.repository_delete(n).await,
            Operation::Token => plain(self.token(ctx).await),
            Operation::Unsupported(e, m) => Err(ApiError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not supported on the {} endpoint", e.name()),
            )),
        }
    }
}

/// What the request presented to the gate.
fn presented<'a>(ctx: &'a Ctx<'_>) -> Presented<'a> {
    let (req, t) = (ctx.req, ctx.transport);
    Presented {
        authorization: req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        secure: t.secure,
        tls: t.tls,
        client: &t.client,
        external_base: req
            .extensions
            .get::<ExternalBase>()
            .map(|ExternalBase(b)| b.as_str()),
        host: req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str())),
    }
}

/// The spec's error for a request the gate turned away.
fn denial(d: Denial) -> ApiError {
    match d {
        Denial::Challenge { challenge, message } => {
            ApiError::new(OciCode::Unauthorized, message).header("WWW-Authenticate", challenge)
        }
        Denial::Denied { user, action, repo } => ApiError::new(
            OciCode::Denied,
            format!("{user} may not {} {repo}", action.name()),
        ),
        Denial::TooMany(secs) => ApiError::new(
            OciCode::TooManyRequests,
            "too many failed logins from this address; try again later",
        )
        .header("Retry-After", secs.to_string()),
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
