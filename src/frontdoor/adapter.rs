//! The only code that touches pingora's `ServerSession` (with [`super::sendfile`], which
//! borrows its socket for zero-copy blob responses): it turns a session into `http`
//! request parts plus a streaming [`RequestBody`], hands them to the registry core, and
//! streams the core's response back. No body is ever buffered whole here.

use crate::api::{ExternalBase, Registry, Transport};
use crate::body::{Body, BodyError, RequestBody};
use crate::config::Cidr;
use crate::tls::acme::Challenges;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, StatusCode};
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// HTTP/2 flow-control windows: large enough that a multi-GB push over one stream is not
/// window-bound on a fast link (the 64 KiB default allows ~50 MB/s at 1 ms RTT), small
/// enough to bound what one connection can make berth buffer.
const H2_STREAM_WINDOW: u32 = 8 << 20;
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// Unread request bodies up to this size are drained after the response.
const DRAIN_MAX: u64 = 1 << 20;

/// What a listener set does with its requests.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    /// Serve the registry.
    Registry,
    /// Redirect to https on `https_port` (the plain :80 listener when TLS is on).
    Redirect { https_port: u16 },
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    Admin,
}

/// Whose forwarded headers to believe, and the configured external URL.
#[derive(Clone, Debug, Default)]
pub(crate) struct Forwarding {
    pub trusted: Vec<Cidr>,
    pub external_url: Option<String>,
}

/// What the front door concluded about where a request really came from.
struct Origin {
    client: String,
    base: Option<String>,
}

impl Forwarding {
    /// Reads (from trusted peers) or strips (from anyone else) the forwarded headers.
    fn resolve(
        &self,
        peer: Option<std::net::IpAddr>,
        headers: &mut http::HeaderMap,
        is_tls: bool,
    ) -> Origin {
        let trusted = peer.is_some_and(|ip| self.trusted.iter().any(|c| c.contains(ip)));
        let peer_s = peer.map(|p| p.to_string()).unwrap_or_default();
        let (mut client, mut proto, mut host) = (peer_s, None, None);
        if trusted {
            if let Some(f) = header_str(headers, "forwarded") {
                // The first element is what the client-facing proxy saw.
                let first = f.split(',').next().unwrap_or("");
                for pair in first.split(';') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let v = v.trim().trim_matches('"').to_owned();
                    match k.trim().to_ascii_lowercase().as_str() {
                        "for" => {
                            client = v
                                .trim_start_matches('[')
                                .split(']')
                                .next()
                                .unwrap_or("")
                                .to_owned()
                        }
                        "proto" => proto = Some(v),
                        "host" => host = Some(v),
                        _ => {}
                    }
                }
            }
            if let Some(xff) = header_str(headers, "x-forwarded-for") {
                // The right-most address no trusted proxy added is the client.
                let hops: Vec<&str> = xff
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .collect();
                let untrusted = hops.iter().rev().find(|h| {
                    h.parse::<std::net::IpAddr>()
                        .map(|ip| !self.trusted.iter().any(|c| c.contains(ip)))
                        .unwrap_or(true)
                });
                if let Some(c) = untrusted.or(hops.first()) {
                    client = (*c).to_owned();
                }
            }
            if let Some(p) = header_str(headers, "x-forwarded-proto") {
                proto = p.split(',').next().map(|p| p.trim().to_owned());
            }
            if let Some(h) = header_str(headers, "x-forwarded-host") {
                host = h.split(',').next().map(|h| h.trim().to_owned());
            }
        } else {
            for name in [
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
            ] {
                headers.remove(name);
            }
        }
        let proto = proto.filter(|p| p == "http" || p == "https");
        let host = host.filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        });
        let base = match (&self.external_url, proto, host) {
            (Some(u), _, _) => Some(u.trim_end_matches('/').to_owned()),
            (None, p, Some(h)) => Some(format!(
                "{}://{h}",
                p.unwrap_or_else(|| if is_tls {
                    "https".into()
                } else {
                    "http".into()
                })
            )),
            (None, Some(p), None) => header_str(headers, "host").map(|h| format!("{p}://{h}")),
            (None, None, None) => None,
        };
        Origin { client, base }
    }
}

fn header_str(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub keepalive: Duration,
    pub header: Duration,
    pub io: Duration,
    pub hsts: bool,
    /// Request header caps (bytes of request line and fields, number of fields).
    pub header_max: usize,
    pub header_count_max: usize,
}

/// The pingora application: one per listener set, sharing the registry core.
pub(crate) struct App {
    registry: Arc<Registry>,
    role: Role,
    limits: Limits,
    forwarding: Forwarding,
    acme: Option<Arc<Challenges>>,
    tls: Option<Arc<crate::tls::Tls>>,
}

/// Marks a connection that has already served a request (its next header read may first
/// wait out the keep-alive idle time).
struct Reused;

/// Requests between their header and the end of their response, process-wide: after
/// SIGTERM berth exits as soon as this is zero instead of waiting out the grace period.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

impl App {
    pub(crate) fn new(
        registry: Arc<Registry>,
        role: Role,
        limits: Limits,
        forwarding: Forwarding,
    ) -> Self {
        Self {
            registry,
            role,
            limits,
            forwarding,
            acme: None,
            tls: None,
        }
    }

    /// The certificate the admin listener reports on.
    pub(crate) fn with_tls(mut self, tls: Option<Arc<crate::tls::Tls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Answers ACME http-01 challenges (on the plain :80 listener).
    pub(crate) fn with_acme(mut self, acme: Option<Arc<Challenges>>) -> Self {
        self.acme = acme;
        self
    }
}

#[async_trait]
impl HttpServerApp for App {
    fn h2_options(&self) -> Option<H2Options> {
        let mut o = default_h2_options();
        o.initial_window_size(H2_STREAM_WINDOW);
        o.initial_connection_window_size(H2_CONNECTION_WINDOW);
        Some(o)
    }

    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let reused = session
            .take_connection_user_context()
            .is_some_and(|c| c.is::<Reused>());
        let header_budget = if reused {
            self.limits.keepalive + self.limits.header
        } else {
            self.limits.header
        };
        match tokio::time::timeout(header_budget, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading request header failed");
                return None;
            }
            Err(_) => {
                tracing::info!(
                    client = %session.client_addr().map(|a| a.to_string()).unwrap_or_default(),
                    "request header not received in time; connection dropped"
                );
                return None;
            }
        }
        let _busy = InFlight::enter();
        let started = Instant::now();
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(self.limits.keepalive.as_secs().max(1)));
        }
        session.set_read_timeout(Some(self.limits.io));
        session.set_write_timeout(Some(self.limits.io));
        let mut parts = session.req_header().as_owned_parts();
        let is_tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let header_size = parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
            + parts
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        let oversized = (header_size > self.limits.header_max
            || parts.headers.len() > self.limits.header_count_max)
            .then(|| {
                format!(
                    "request header too large: {header_size} bytes in {} fields (limits.header_max is {}, limits.header_count_max is {})",
                    parts.headers.len(),
                    self.limits.header_max,
                    self.limits.header_count_max
                )
            });
        let origin = self.forwarding.resolve(peer, &mut parts.headers, is_tls);
        let client = origin.client;
        // Credentials are safe on TLS, on loopback, and behind a trusted https proxy.
        let secure = is_tls
            || peer.is_some_and(|p| p.is_loopback())
            || origin
                .base
                .as_deref()
                .is_some_and(|b| b.starts_with("https://"));
        parts.extensions.insert(Transport {
            secure,
            tls: is_tls,
            client: client.clone(),
        });
        if let Some(base) = origin.base {
            parts.extensions.insert(ExternalBase(base));
        }

        let (mut resp, body_done) = match (self.role, oversized) {
            (_, Some(why)) => {
                session.set_keepalive(None);
                (self.registry.header_too_large(why), false)
            }
            (Role::Redirect { https_port }, None) => {
                let token = parts
                    .uri
                    .path()
                    .strip_prefix("/.well-known/acme-challenge/");
                match (token, &self.acme) {
                    (Some(token), Some(acme)) => (http01(acme, token), false),
                    _ => (redirect(&parts, https_port), false),
                }
            }
            (Role::Admin, None) => (self.admin(&parts).await, false),
            (Role::Registry, None) => self.registry_response(&mut session, &parts).await,
        };
        if is_tls && self.limits.hsts {
            resp.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                http::HeaderValue::from_static("max-age=31536000"),
            );
        }
        let status = resp.status();
        let served = resp.extensions_mut().remove::<crate::api::Served>();
        let sent = write_response(&mut session, resp, !is_tls, self.limits.io).await;
        let (bytes_in, bytes_out) = (
            session.body_bytes_read() as u64,
            session.body_bytes_sent() as u64 + sent.as_ref().map_or(0, |n| *n),
        );
        let took = started.elapsed();
        let (endpoint, user) = match (&self.role, served) {
            (Role::Registry, Some(s)) => (s.endpoint, s.user),
            (Role::Registry, None) => ("frontdoor", None),
            (Role::Redirect { .. }, _) => ("redirect", None),
            (Role::Admin, _) => ("admin", None),
        };
        crate::metrics::request(
            endpoint,
            parts.method.as_str(),
            status.as_u16(),
            took,
            bytes_in,
            bytes_out,
        );
        tracing::info!(
            target: "berth::access",
            method = %parts.method,
            path = %parts.uri.path(),
            status = status.as_u16(),
            bytes_in,
            bytes_out,
            ms = took.as_millis() as u64,
            client = %client,
            user = user.as_deref().unwrap_or("-"),
            tls = is_tls,
            "request"
        );
        if let Err(e) = sent {
            tracing::debug!(error = %e, "writing response failed");
            return None;
        }
        // A body the handler did not read: a small one is drained, so the client reads our
        // answer (an early 413, say) instead of a reset, and the connection stays usable; a
        // large or unknown one closes the connection rather than read data nobody wants.
        if !body_done && !session.is_body_done() {
            let small = content_length(&parts.headers).is_some_and(|n| n <= DRAIN_MAX);
            let drained = small
                && matches!(
                    tokio::time::timeout(self.limits.io, session.drain_request_body()).await,
                    Ok(Ok(()))
                );
            if !drained {
                session.set_keepalive(None);
            }
        }
        let mut settings = HttpPersistentSettings::for_session(&session);
        settings.set_user_context(Box::new(Reused));
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "finishing the session failed");
                None
            }
        }
    }
}

impl App {
    /// Runs the registry core on the request; returns the response and whether the
    /// request body was read to its end.
    async fn registry_response(
        &self,
        session: &mut ServerSession,
        parts: &http::request::Parts,
    ) -> (http::Response<Body>, bool) {
        // Only requests that announce a body pay for parsing the path a second time.
        let too_large = content_length(&parts.headers).and_then(|len| {
            self.registry
                .body_limit(parts.uri.path())
                .filter(|limit| len > *limit)
        });
        if let Some(limit) = too_large {
            return (self.registry.body_too_large(limit), false);
        }
        let mut body = SessionBody::new(session, &parts.headers);
        let resp = self.registry.handle(parts, &mut body).await;
        let done = body.done;
        (resp, done)
    }
}

/// How long a measured storage size is reused when nothing was uploaded or collected
/// meanwhile (walking the blob tree is not free; another process may change it).
const STORAGE_BYTES_TTL: Duration = Duration::from_secs(30);
static STORAGE_BYTES: std::sync::Mutex<Option<(Instant, u64)>> = std::sync::Mutex::new(None);

impl App {
    /// The admin listener: Prometheus metrics, liveness and readiness.
    async fn admin(&self, parts: &http::request::Parts) -> http::Response<Body> {
        let text = |status: StatusCode, body: String| {
            let mut r = http::Response::new(Body::Full(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        };
        let store = self.registry.store();
        let cert_left = self.tls.as_ref().map(|t| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            t.summary().not_after - now
        });
        match parts.uri.path() {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let mut problems = Vec::new();
                if let Err(e) = store.writable().await {
                    problems.push(format!("store not writable: {e}"));
                }
                if cert_left.is_some_and(|s| s <= 0) {
                    problems.push("the served certificate has expired".to_owned());
                }
                if problems.is_empty() {
                    text(StatusCode::OK, "ready\n".into())
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
                }
            }
            "/metrics" => {
                let cached = *STORAGE_BYTES.lock().unwrap_or_else(|p| p.into_inner());
                let changed = crate::metrics::storage_changed();
                let storage_bytes = match cached {
                    Some((at, b)) if !changed && at.elapsed() < STORAGE_BYTES_TTL => Some(b),
                    _ => match store.blob_bytes().await {
                        Ok(b) => {
                            *STORAGE_BYTES.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some((Instant::now(), b));
                            Some(b)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot measure the store for /metrics");
                            None
                        }
                    },
                };
                text(
                    StatusCode::OK,
                    crate::metrics::render(&crate::metrics::Gauges {
                        storage_bytes,
                        certificate_expiry_seconds: cert_left,
                        read_only: store.read_only(),
                        notifications_queued: self
                            .registry
                            .notifier()
                            .map(|n| n.queued())
                            .unwrap_or_default(),
                        notifications_dropped: self.registry.notifier().map_or(0, |n| n.dropped()),
                    }),
                )
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /healthz, /readyz\n".into(),
            ),
        }
    }
}

/// The key authorization for a pending http-01 token, else 404.
fn http01(acme: &Challenges, token: &str) -> http::Response<Body> {
    let mut r = http::Response::new(Body::Empty);
    match acme.http01(token) {
        Some(key_auth) => {
            tracing::info!(token, "ACME: answering the http-01 challenge");
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
            *r.body_mut() = Body::Full(Bytes::from(key_auth));
        }
        None => *r.status_mut() = StatusCode::NOT_FOUND,
    }
    r
}

/// 308 to the same host, path and query over https.
fn redirect(parts: &http::request::Parts, https_port: u16) -> http::Response<Body> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.host())
        .unwrap_or("localhost");
    // Drop a port from the Host header (an IPv6 literal keeps its brackets).
    let host = match host.rsplit_once(':') {
        Some((h, p))
            if p.chars().all(|c| c.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => host,
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{host}{port}{path}");
    let mut r = http::Response::new(Body::Empty);
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("0"));
    r
}

/// Streams the request body from the session. `Expect: 100-continue` is answered the first
/// time the handler asks for the body, so a request refused early never uploads its body.
struct SessionBody<'a> {
    session: &'a mut ServerSession,
    expect_continue: bool,
    done: bool,
}

impl<'a> SessionBody<'a> {
    fn new(session: &'a mut ServerSession, headers: &http::HeaderMap) -> Self {
        let expect_continue = headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        Self {
            session,
            expect_continue,
            done: false,
        }
    }
}

#[async_trait]
impl RequestBody for SessionBody<'_> {
    async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.done {
            return Ok(None);
        }
        if self.expect_continue {
            self.expect_continue = false;
            self.session
                .write_continue_response()
                .await
                .map_err(|e| BodyError(e.to_string()))?;
        }
        match self.session.read_request_body().await {
            Ok(Some(b)) => Ok(Some(b)),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => Err(BodyError(e.to_string())),
        }
    }
}

/// Writes the response. A blob over plain HTTP/1.1 (`plain`) goes out zero-copy when the
/// connection allows it ([`super::sendfile`]); everything else through pingora. Returns
/// the body bytes sent by sendfile, which pingora does not count.
async fn write_response(
    session: &mut ServerSession,
    resp: http::Response<Body>,
    plain: bool,
    io_timeout: Duration,
) -> pingora_core::Result<u64> {
    let (parts, body) = resp.into_parts();
    let body = match body {
        Body::File(blob) if plain => match super::sendfile::socket_of(session) {
            Some(socket) => {
                let keepalive = session.as_http1().is_some_and(|s| s.will_keepalive());
                let head = super::sendfile::head(&parts, keepalive);
                let len = blob.len;
                return match super::sendfile::send(socket, &head, blob, io_timeout).await {
                    Ok(n) => {
                        crate::metrics::sendfile(n);
                        Ok(n)
                    }
                    Err(e) => {
                        if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            tracing::error!(error = %e, "reading a blob failed mid-response");
                        }
                        Err(pingora_core::Error::because(
                            pingora_core::ErrorType::WriteError,
                            format!("sending a {len}-byte blob"),
                            e,
                        ))
                    }
                };
            }
            None => Body::File(blob),
        },
        other => other,
    };
    let mut header = ResponseHeader::build(parts.status, Some(parts.headers.len()))?;
    for (name, value) in parts.headers.iter() {
        header.append_header(name.clone(), value.clone())?;
    }
    if matches!(body, Body::Full(_)) && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        if let Body::Full(b) = &body {
            header.insert_header(header::CONTENT_LENGTH, b.len().to_string())?;
        }
    }
    session.write_response_header(Box::new(header)).await?;
    match body {
        Body::Empty => session.write_response_body(Bytes::new(), true).await?,
        Body::Full(b) => session.write_response_body(b, true).await?,
        Body::File(blob) => write_stream(session, blob.into_stream()).await?,
        Body::Stream(s) => write_stream(session, s).await?,
    }
    Ok(0)
}

/// Writes a streamed body chunk by chunk. A failing source ends the response with an
/// error, so the connection is dropped and the client never takes a short body for a whole
/// one.
async fn write_stream(
    session: &mut ServerSession,
    mut body: crate::body::BodyStream,
) -> pingora_core::Result<()> {
    while let Some(chunk) = crate::body::next_chunk(&mut body).await {
        match chunk {
            Ok(b) => session.write_response_body(b, false).await?,
            Err(e) => {
                tracing::error!(error = %e, "reading a response body failed mid-response");
                return Err(pingora_core::Error::because(
                    pingora_core::ErrorType::ReadError,
                    "response body read failed",
                    e,
                ));
            }
        }
    }
    session.write_response_body(Bytes::new(), true).await
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
