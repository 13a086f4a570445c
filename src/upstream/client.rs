//! berth's outbound HTTP client: hyper's pooled client over rustls (ring), HTTP/1.1, and
//! HTTP/2 where a TLS server offers it (ALPN). Connections are kept and reused between
//! requests to the same host.
//!
//! The policy is the same for every caller:
//! - **TLS is always verified**, against the system's roots, a private CA file, or both
//!   ([`Roots`]). There is no switch to turn verification off.
//! - **Redirects are never followed.** A 3xx is an answer like any other; the caller
//!   decides what it means (webhook delivery counts it as a failure).
//! - **Every wait is bounded.** [`Client::send`] has the response head (connect, TLS,
//!   request, status and headers) within [`ClientOptions::timeout`]; each piece of a body
//!   must come within [`ClientOptions::read_timeout`]; [`Response::bytes`] reads at most
//!   [`ClientOptions::body_max`] bytes; a response head is at most
//!   [`ClientOptions::head_max`].
//! - **Errors say what happened** ([`ClientError`]) and never carry a header, the URL's
//!   path or its query: only the host and port.
//!
//! The client is async, and its connections are tasks on the runtime of the first request
//! that used them. That runtime should keep running between requests (a multi-thread
//! runtime; a caller on a plain thread, as the webhook senders are, `block_on`s each
//! request through its `Handle`): on a current-thread runtime that runs only inside
//! `block_on`, a connection the server closed while idle is noticed only once the next
//! request is written to it, and that request fails with [`ClientError::Closed`].

use crate::pem::PemError;
use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::{HeaderMap, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A request's body: whole, in memory (a webhook's envelope; a registry GET or HEAD has
/// none, `Full::default()`).
pub type RequestBody = Full<Bytes>;

/// The `User-Agent` of requests that do not set their own.
pub const DEFAULT_USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));

/// hyper refuses an HTTP/1.1 read buffer smaller than this.
const MIN_HTTP1_BUFFER: usize = 8192;

/// How a [`Client`] behaves; see the module documentation. Start from
/// `ClientOptions::default()` and change what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// From the call to [`Client::send`] to the response's status and headers: waiting
    /// for a pooled connection or making one (TCP, TLS), sending the request, and the
    /// answer's head.
    pub timeout: Duration,
    /// The TCP connect alone, shared between a name's addresses; `None` leaves it to
    /// `timeout`.
    pub connect_timeout: Option<Duration>,
    /// The longest wait for the next piece of a response body.
    pub read_timeout: Duration,
    /// Whom to trust for `https://`.
    pub roots: Roots,
    /// The most of a body that [`Response::bytes`] reads; more is
    /// [`ClientError::BodyTooLarge`].
    pub body_max: u64,
    /// The most a response head (status line and header fields) may take; more is
    /// [`ClientError::HeadTooLarge`]. Over HTTP/1.1 it is the limit of hyper's read
    /// buffer (at least 8 KiB), which can fill up to about twice this before the head is
    /// refused; over HTTP/2 it is the header list size.
    pub head_max: usize,
    /// How long an unused connection is kept for the next request.
    pub idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: None,
            read_timeout: Duration::from_secs(30),
            roots: Roots::System,
            body_max: 1 << 20,
            head_max: 64 << 10,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The certificates an `https://` server's chain must end at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's trust store (ca-certificates).
    System,
    /// Only the certificates of this PEM file: a private CA, or the server's own
    /// self-signed certificate.
    File(PathBuf),
    /// The system's trust store and the certificates of this PEM file.
    SystemAnd(PathBuf),
    /// Nothing: every `https://` server is refused. For a client that only speaks plain
    /// `http://` and must not depend on the system's trust store.
    Empty,
}

/// Why a request got no usable answer, or why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no trusted root certificates on this system (install ca-certificates, or set ca to the endpoint's CA file)"
    )]
    NoRoots,
    /// The CA file cannot be read, is not PEM, or holds no certificate.
    #[error(transparent)]
    CaFile(#[from] PemError),
    #[error("{path}: not a CA certificate: {source}")]
    NotACa {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The request cannot be sent as it is (its URI); `why` says what is wrong.
    #[error("the request's URL {why}")]
    BadRequest { why: &'static str },
    /// No answer (or no next piece of the body) in time.
    #[error("no answer within the timeout ({0:?})")]
    Timeout(Duration),
    /// The name did not resolve, or no address took the connection.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The TLS handshake failed: the certificate is not trusted or not for this name, or
    /// the server refused ours.
    #[error("TLS with {target}: {source}")]
    Tls {
        target: String,
        source: rustls::Error,
    },
    /// The server hung up before its answer's head was complete.
    #[error("the connection was closed without an answer")]
    Closed,
    /// The server hung up before the end of the body.
    #[error("the connection was closed before the end of the response body")]
    Truncated,
    #[error("the response header is too large")]
    HeadTooLarge,
    #[error("the response body is larger than {max} bytes")]
    BodyTooLarge { max: u64 },
    /// The server does not speak HTTP.
    #[error("not an HTTP response: {0}")]
    Protocol(String),
    /// The connection failed while the request or its answer was under way.
    #[error("{0}")]
    Io(String),
    /// What none of the above covers, with hyper's causes.
    #[error("HTTP: {0}")]
    Http(String),
}

/// A pool of connections and how to use them. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, RequestBody>,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    read_timeout: Duration,
    body_max: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("body_max", &self.body_max)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `options`. Fails when the roots cannot be had: no system trust store,
    /// or a CA file that is unreadable or holds no usable certificate. Needs no runtime.
    pub fn new(options: &ClientOptions) -> Result<Self, ClientError> {
        let tls = tls_config(&options.roots)?;
        let mut http = HttpConnector::new();
        // The scheme is the TLS connector's business: it hands https:// on to us too.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(options.connect_timeout);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.idle_timeout)
            // On the HTTP/1.1 wire, "Content-Type" rather than "content-type": what berth
            // always sent, and what receivers that compare names byte for byte expect.
            .http1_title_case_headers(true)
            .http1_max_buf_size(options.head_max.max(MIN_HTTP1_BUFFER))
            .http2_max_header_list_size(u32::try_from(options.head_max).unwrap_or(u32::MAX))
            .build(https);
        Ok(Self {
            inner,
            timeout: options.timeout,
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            body_max: options.body_max,
        })
    }

    /// Sends `request` (its URI absolute: `http://` or `https://`, a host, no
    /// credentials) and returns the answer once its status and headers are in, whatever
    /// the status: a 3xx is not followed. A request without a `User-Agent` gets
    /// [`DEFAULT_USER_AGENT`]. Must run inside a tokio runtime with time and I/O enabled.
    pub async fn send(&self, mut request: Request<RequestBody>) -> Result<Response, ClientError> {
        let target = target(request.uri())?;
        request
            .headers_mut()
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(DEFAULT_USER_AGENT));
        let answer = tokio::time::timeout(self.timeout, self.inner.request(request))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
            .map_err(|e| self.send_error(&e, target))?;
        let (head, body) = answer.into_parts();
        Ok(Response {
            head,
            body,
            read_timeout: self.read_timeout,
            body_max: self.body_max,
        })
    }

    fn send_error(&self, e: &hyper_util::client::legacy::Error, target: String) -> ClientError {
        let causes = causes(e);
        if let Some(tls) = causes
            .iter()
            .find_map(|c| c.downcast_ref::<rustls::Error>())
        {
            return ClientError::Tls {
                target,
                source: tls.clone(),
            };
        }
        let timed_out = causes.iter().any(|c| {
            c.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        });
        if timed_out {
            return ClientError::Timeout(self.connect_timeout.unwrap_or(self.timeout));
        }
        if e.is_connect() {
            return ClientError::Connect {
                target,
                reason: e.source().map_or_else(|| e.to_string(), render),
            };
        }
        if let Some(h) = causes.iter().find_map(|c| c.downcast_ref::<hyper::Error>()) {
            if let Some(mapped) = hyper_error(h) {
                return mapped;
            }
            if h.is_incomplete_message() {
                return ClientError::Closed;
            }
        }
        if causes.iter().any(|c| c.is::<io::Error>()) {
            return ClientError::Io(render(e));
        }
        ClientError::Http(render(e))
    }
}

/// An answer whose head is in; its body is read with [`Response::bytes`] or, for a
/// stream, piece by piece with [`Response::chunk`]. Dropping it before the end of the
/// body closes the connection (it cannot carry another request).
#[derive(Debug)]
pub struct Response {
    head: http::response::Parts,
    body: Incoming,
    read_timeout: Duration,
    body_max: u64,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// HTTP/1.1 or HTTP/2, as negotiated.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The body's next piece, `None` at its end; each within the read timeout. Not
    /// bounded by `body_max`: a caller streaming a blob counts against what it expects.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            let frame = tokio::time::timeout(self.read_timeout, self.body.frame())
                .await
                .map_err(|_| ClientError::Timeout(self.read_timeout))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(body_error(&e)),
                // Trailers are not data.
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) if !data.is_empty() => return Ok(Some(data)),
                    _ => continue,
                },
            }
        }
    }

    /// The whole body, at most `body_max` bytes: one that announces more is refused before
    /// it is read, and one that turns out longer when it is past the bound.
    pub async fn bytes(mut self) -> Result<Bytes, ClientError> {
        let max = self.body_max;
        let too_large = ClientError::BodyTooLarge { max };
        if self.body.size_hint().lower() > max {
            return Err(too_large);
        }
        let mut whole: Vec<u8> = Vec::new();
        while let Some(piece) = self.chunk().await? {
            if (whole.len() as u64).saturating_add(piece.len() as u64) > max {
                return Err(too_large);
            }
            whole.extend_from_slice(&piece);
        }
        Ok(Bytes::from(whole))
    }
}

/// `host:port` of an absolute http(s) URI, for errors (never the path or the query, which
/// may carry a token).
fn target(uri: &Uri) -> Result<String, ClientError> {
    let bad = |why| Err(ClientError::BadRequest { why });
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return bad("is not an http:// or https:// URL"),
    };
    let Some(authority) = uri.authority() else {
        return bad("has no host");
    };
    if authority.as_str().contains('@') {
        return bad("has credentials in it (send them in a header)");
    }
    if authority.host().is_empty() {
        return bad("has no host");
    }
    let port = authority.port_u16().unwrap_or(default_port);
    Ok(format!("{}:{port}", authority.host()))
}

/// What a hyper error during the exchange or the body means, where it has a variant of
/// its own.
fn hyper_error(h: &hyper::Error) -> Option<ClientError> {
    // hyper has `is_parse_too_large` only with its server feature; the message is the
    // same without it (a test pins it).
    if h.is_parse() && h.to_string() == "message head is too large" {
        Some(ClientError::HeadTooLarge)
    } else if h.is_parse() || h.is_parse_status() || h.is_parse_version_h2() {
        Some(ClientError::Protocol(h.to_string()))
    } else {
        None
    }
}

fn body_error(e: &hyper::Error) -> ClientError {
    if let Some(mapped) = hyper_error(e) {
        return mapped;
    }
    let causes = causes(e);
    let eof = causes.iter().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::UnexpectedEof)
    });
    if e.is_incomplete_message() || eof {
        return ClientError::Truncated;
    }
    if causes.iter().any(|c| c.is::<io::Error>()) {
        return ClientError::Io(render(e));
    }
    ClientError::Http(render(e))
}

/// `e` and everything under it. An `io::Error`'s `source()` skips the error it wraps (it
/// gives that error's source), so the wrapped one is taken in too: that is where rustls's
/// errors are.
fn causes<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(err) = stack.pop() {
        out.push(err);
        if let Some(inner) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            let inner: &(dyn StdError + 'static) = inner;
            stack.push(inner);
        } else if let Some(next) = err.source() {
            stack.push(next);
        }
    }
    out
}

/// `e` and its causes, one after the other, each said once.
fn render(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let said = err.to_string();
        if !parts.iter().any(|p| p.contains(&said)) {
            parts.push(said);
        }
        next = err.source();
    }
    parts.join(": ")
}

fn tls_config(roots: &Roots) -> Result<rustls::ClientConfig, ClientError> {
    let mut store = rustls::RootCertStore::empty();
    let (system, file) = match roots {
        Roots::System => (true, None),
        Roots::File(path) => (false, Some(path)),
        Roots::SystemAnd(path) => (true, Some(path)),
        Roots::Empty => (false, None),
    };
    if system {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(native.certs);
        if added == 0 && file.is_none() {
            return Err(ClientError::NoRoots);
        }
    }
    if let Some(path) = file {
        for c in crate::pem::read_certs(path)? {
            store.add(c).map_err(|source| ClientError::NotACa {
                path: path.clone(),
                source,
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // Only fails for a provider without the default versions' suites, not ring.
        .map_err(|e| ClientError::Http(format!("TLS setup: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// How the test server answers each request.
    #[derive(Clone)]
    enum Answer {
        /// These bytes, then the next request on the same connection.
        KeepAlive(Vec<u8>),
        /// These bytes, then the connection is closed (even without `Connection: close`).
        Close(Vec<u8>),
        /// Nothing: the request is read and the connection held until the client leaves.
        Silent,
    }

    /// A loopback server on 127.0.0.1:0, plain or TLS, on threads of its own (so that it
    /// answers while the client's runtime is not running, as a webhook sender's is between
    /// deliveries). Its threads end with the test process.
    struct Server {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    impl Server {
        fn start(answer: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let connections = Arc::new(AtomicUsize::new(0));
            let heads = Arc::new(Mutex::new(Vec::new()));
            let (n, h) = (connections.clone(), heads.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    n.fetch_add(1, Ordering::SeqCst);
                    let (answer, tls, h) = (answer.clone(), tls.clone(), h.clone());
                    std::thread::spawn(move || match tls {
                        None => converse(conn, &answer, &h),
                        Some(cfg) => {
                            let Ok(server) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            converse(rustls::StreamOwned::new(server, conn), &answer, &h);
                        }
                    });
                }
            });
            Server {
                addr,
                connections,
                heads,
            }
        }

        fn url(&self, scheme: &str, path: &str) -> String {
            format!("{scheme}://{}{path}", self.addr)
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }

        fn heads(&self) -> Vec<String> {
            self.heads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        }
    }

    fn converse(mut conn: impl Read + Write, answer: &Answer, heads: &Mutex<Vec<String>>) {
        while let Some(head) = read_request(&mut conn) {
            heads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(head);
            match answer {
                Answer::KeepAlive(bytes) => {
                    if conn.write_all(bytes).and_then(|()| conn.flush()).is_err() {
                        return;
                    }
                }
                Answer::Close(bytes) => {
                    let _ = conn.write_all(bytes).and_then(|()| conn.flush());
                    return;
                }
                Answer::Silent => {
                    let _ = io::copy(&mut conn, &mut io::sink());
                    return;
                }
            }
        }
    }

    /// A request's head (its body is read and dropped); `None` at the end of the
    /// connection.
    fn read_request(conn: &mut impl Read) -> Option<String> {
        crate::upstream::testing::read_request(conn).map(|(head, _)| head)
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Runs `f` on this thread, the connections' tasks on `rt`'s worker: as a webhook
    /// sender does.
    fn block_on<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
        rt.handle().block_on(f)
    }

    /// One worker that keeps the connections going between requests.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn options() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            // Plain http:// needs no roots; the TLS test sets its own.
            roots: Roots::Empty,
            ..ClientOptions::default()
        }
    }

    fn client(o: &ClientOptions) -> Client {
        Client::new(o).unwrap_or_else(|e| panic!("client: {e}"))
    }

    fn get(url: &str) -> Request<RequestBody> {
        Request::get(url)
            .body(RequestBody::default())
            .expect("request")
    }

    /// A self-signed certificate for 127.0.0.1, served as it is (no CA above it): the
    /// server's TLS config and the certificate's PEM file.
    fn self_signed(dir: &std::path::Path) -> (Arc<rustls::ServerConfig>, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .expect("server config");
        let path = dir.join(format!("ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, ck.cert.pem()).expect("write the CA file");
        (Arc::new(cfg), path)
    }

    #[test]
    fn a_redirect_is_returned_not_followed() {
        let elsewhere = Server::start(Answer::KeepAlive(ok("elsewhere")), None);
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
            elsewhere.url("http", "/moved")
        );
        let server = Server::start(Answer::KeepAlive(redirect.into_bytes()), None);
        let rt = runtime();
        let c = client(&options());
        let r = block_on(&rt, c.send(get(&server.url("http", "/blob")))).expect("answer");
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            r.headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok()),
            Some(elsewhere.url("http", "/moved").as_str())
        );
        assert_eq!(block_on(&rt, r.bytes()).expect("body"), Bytes::new());
        assert_eq!(server.heads().len(), 1);
        assert_eq!(elsewhere.connections(), 0, "the redirect was followed");
    }

    #[test]
    fn no_answer_in_time_is_a_timeout() {
        let server = Server::start(Answer::Silent, None);
        let rt = runtime();
        let c = client(&ClientOptions {
            timeout: Duration::from_millis(200),
            ..options()
        });
        let started = std::time::Instant::now();
        let e = block_on(&rt, c.send(get(&server.url("http", "/")))).expect_err("an answer");
        assert!(
            matches!(e, ClientError::Timeout(d) if d == Duration::from_millis(200)),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "no answer within the timeout (200ms)");
        assert!(started.elapsed() < Duration::from_secs(3));

        // A body that stops coming: the read timeout.
        let stalls = Server::start(
            Answer::KeepAlive(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec()),
            None,
        );
        let c = client(&ClientOptions {
            read_timeout: Duration::from_millis(200),
            ..options()
        });
        let r = block_on(&rt, c.send(get(&stalls.url("http", "/")))).expect("head");
        let e = block_on(&rt, r.bytes()).expect_err("a whole body");
        assert!(matches!(e, ClientError::Timeout(_)), "{e:?}");
    }

    #[test]
    fn tls_is_verified_against_the_roots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server_tls, ca) = self_signed(dir.path());
        let (_, unrelated) = self_signed(dir.path());
        let server = Server::start(Answer::KeepAlive(ok("over tls")), Some(server_tls));
        let url = server.url("https", "/v2/");
        let rt = runtime();

        // The system's roots do not know the certificate (or there are none).
        match Client::new(&ClientOptions {
            roots: Roots::System,
            ..options()
        }) {
            Err(ClientError::NoRoots) => {}
            Err(e) => panic!("{e}"),
            Ok(c) => {
                let e = block_on(&rt, c.send(get(&url))).expect_err("trusted");
                assert!(
                    matches!(
                        &e,
                        ClientError::Tls {
                            source: rustls::Error::InvalidCertificate(_),
                            ..
                        }
                    ),
                    "{e:?}"
                );
            }
        }
        // No roots at all (a plain-http:// client): refused.
        let c = client(&ClientOptions {
            roots: Roots::Empty,
            ..options()
        });
        let e = block_on(&rt, c.send(get(&url))).expect_err("trusted");
        assert!(matches!(e, ClientError::Tls { .. }), "{e:?}");

        // Another CA alone: refused, and the error names the server, not the path.
        let c = client(&ClientOptions {
            roots: Roots::File(unrelated),
            ..options()
        });
        let e = block_on(&rt, c.send(get(&url))).expect_err("trusted");
        match &e {
            ClientError::Tls { target, source } => {
                assert_eq!(target, &server.addr.to_string());
                assert!(
                    matches!(source, rustls::Error::InvalidCertificate(_)),
                    "{source:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with("TLS with 127.0.0.1:"), "{e}");

        // With the CA file, alone or next to the system's roots: trusted.
        for roots in [Roots::File(ca.clone()), Roots::SystemAnd(ca)] {
            let c = client(&ClientOptions { roots, ..options() });
            let r = block_on(&rt, c.send(get(&url))).expect("answer");
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.version(), Version::HTTP_11);
            assert_eq!(block_on(&rt, r.bytes()).expect("body"), "over tls");
        }

        // A CA file that is not one.
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not PEM").expect("write");
        let e = Client::new(&ClientOptions {
            roots: Roots::File(junk),
            ..options()
        })
        .expect_err("accepted");
        assert!(matches!(e, ClientError::CaFile(_)), "{e:?}");
    }

    #[test]
    fn a_body_over_the_bound_is_refused() {
        let rt = runtime();
        let c = client(&ClientOptions {
            body_max: 1000,
            ..options()
        });
        let announced = Server::start(Answer::KeepAlive(ok(&"x".repeat(1001))), None);
        let r = block_on(&rt, c.send(get(&announced.url("http", "/")))).expect("head");
        let e = block_on(&rt, r.bytes()).expect_err("read");
        assert!(
            matches!(e, ClientError::BodyTooLarge { max: 1000 }),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "the response body is larger than 1000 bytes");

        // Chunked: no length up front, refused once past the bound.
        let chunk = "y".repeat(600);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        );
        let server = Server::start(Answer::KeepAlive(chunked.into_bytes()), None);
        let r = block_on(&rt, c.send(get(&server.url("http", "/")))).expect("head");
        let e = block_on(&rt, r.bytes()).expect_err("read");
        assert!(matches!(e, ClientError::BodyTooLarge { .. }), "{e:?}");

        // At the bound: read whole.
        let exact = Server::start(Answer::KeepAlive(ok(&"z".repeat(1000))), None);
        let r = block_on(&rt, c.send(get(&exact.url("http", "/")))).expect("head");
        assert_eq!(block_on(&rt, r.bytes()).expect("body").len(), 1000);
    }

    #[test]
    fn interim_answers_are_skipped_and_non_http_is_refused() {
        let rt = runtime();
        let c = client(&options());
        let send = |answer: &[u8]| {
            let server = Server::start(Answer::Close(answer.to_vec()), None);
            block_on(&rt, c.send(get(&server.url("http", "/"))))
        };
        let r = send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX: y\r\n\r\n")
            .expect("answer");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            r.headers().get("x").map(HeaderValue::as_bytes),
            Some(&b"y"[..])
        );

        let e = send(b"HTTP/1.1 200 OK\r\nContent-Le").expect_err("half a head");
        assert!(matches!(e, ClientError::Closed), "{e:?}");
        assert_eq!(e.to_string(), "the connection was closed without an answer");

        let e = send(b"SSH-2.0-OpenSSH\r\n\r\n").expect_err("not HTTP");
        assert!(matches!(e, ClientError::Protocol(_)), "{e:?}");

        // Over twice head_max (64 KiB): see ClientOptions::head_max.
        let huge = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(130 << 10)
        );
        let e = send(huge.as_bytes()).expect_err("a huge head");
        assert!(matches!(e, ClientError::HeadTooLarge), "{e:?}");

        let e = send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .expect("head")
            .bytes();
        let e = block_on(&rt, e).expect_err("a whole body");
        assert!(matches!(e, ClientError::Truncated), "{e:?}");
    }

    #[test]
    fn refused_connections_and_bad_urls_name_only_the_host() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let rt = runtime();
        let c = client(&options());
        let e = block_on(
            &rt,
            c.send(get(&format!("http://127.0.0.1:{port}/hook?token=s3cret"))),
        )
        .expect_err("connected");
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        let said = e.to_string();
        assert!(
            said.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{said}"
        );
        assert!(
            !said.contains("s3cret") && !said.contains("/hook"),
            "{said}"
        );

        for (url, why) in [
            ("/relative", "is not an http:// or https:// URL"),
            ("ftp://x/", "is not an http:// or https:// URL"),
            ("http://user:pw@127.0.0.1/", "has credentials in it"),
        ] {
            let e = block_on(&rt, c.send(get(url))).expect_err(url);
            assert!(matches!(e, ClientError::BadRequest { .. }), "{url}: {e:?}");
            assert!(e.to_string().contains(why), "{url}: {e}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
    }

    #[test]
    fn connections_are_reused_and_a_closed_idle_one_is_not_an_error() {
        let rt = runtime();
        let c = client(&options());
        let server = Server::start(Answer::KeepAlive(ok("again")), None);
        for _ in 0..3 {
            let r = block_on(&rt, c.send(get(&server.url("http", "/")))).expect("answer");
            assert_eq!(block_on(&rt, r.bytes()).expect("body"), "again");
            // The worker puts the connection back in the pool once the body is read; a
            // request sent before that opens another one (and uses whichever is ready
            // first).
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(server.connections(), 1);
        let heads = server.heads();
        assert!(heads[0].starts_with("GET / HTTP/1.1\r\n"), "{heads:?}");
        assert!(
            heads[0].contains(&format!("User-Agent: {DEFAULT_USER_AGENT}\r\n")),
            "{heads:?}"
        );
        assert!(
            heads[0].contains(&format!("Host: {}\r\n", server.addr)),
            "{heads:?}"
        );

        // The server closes each connection after its answer (without saying so) while no
        // request is under way: the next request goes on a new connection.
        let closing = Server::start(Answer::Close(ok("once")), None);
        for _ in 0..3 {
            let r = block_on(&rt, c.send(get(&closing.url("http", "/")))).expect("answer");
            assert_eq!(block_on(&rt, r.bytes()).expect("body"), "once");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(closing.connections(), 3);
    }
}
