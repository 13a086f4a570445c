//! Connection-level rules that apply before HTTP: the PROXY protocol header (v1 and v2) a
//! load balancer puts in front of the stream, a look at the TLS ClientHello (to refuse
//! clients below `tls.min_version` with the proper alert), and the cap on concurrent
//! connections.
//!
//! On TLS listeners the PROXY header and the ClientHello are read in pingora's pre-TLS hook
//! ([`Prelude`]); on plain listeners the PROXY header is read by [`Gate`], which wraps the
//! HTTP application and also holds the connection count.

use crate::config::Cidr;
use crate::tls::acme::{Challenges, ACME_TLS_ALPN};
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream, UniqueID};
use pingora_core::server::ShutdownWatch;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// TLS 1.3's version number in `supported_versions`.
const TLS13: u16 = 0x0304;
/// The largest ClientHello we look at; real ones are a few KiB.
pub(crate) const HELLO_MAX: usize = 64 << 10;
/// The PROXY v2 header's fixed signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1 headers are at most 107 bytes (the spec's worst case).
pub(crate) const V1_MAX: usize = 107;
/// v2 address blocks plus TLVs we accept.
pub(crate) const V2_MAX: usize = 4096;

/// What the connection layer enforces, from `[http]` and `[tls]`.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// Every connection starts with a PROXY header (from a trusted proxy).
    pub proxy_protocol: bool,
    /// Who may send PROXY headers (and forwarded HTTP headers).
    pub trusted: Vec<Cidr>,
    /// Refuse TLS clients that cannot speak TLS 1.3.
    pub tls13_only: bool,
    /// The PROXY header and the ClientHello must arrive within this.
    pub header_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Pending ACME challenges: tls-alpn-01 handshakes are answered here.
    pub acme: Option<Arc<Challenges>>,
}

/// The source address a PROXY header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proxied {
    /// The original client.
    Client(SocketAddr),
    /// A health check from the proxy itself (v2 LOCAL, v1 UNKNOWN): keep the peer address.
    Local,
}

/// Reads one PROXY protocol header (v1 text or v2 binary) and nothing after it.
pub(crate) async fn read_proxy_header<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> io::Result<Proxied> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("PROXY header: {m}"));
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    if &head == b"PROXY" {
        let mut line = head.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(bad("v1 line longer than 107 bytes"));
            }
            line.push(r.read_u8().await?);
        }
        return parse_v1(&line).ok_or_else(|| bad("malformed v1 line"));
    }
    if head != V2_SIGNATURE[..5] {
        return Err(bad("the connection does not start with one"));
    }
    let mut rest = [0u8; 11];
    r.read_exact(&mut rest).await?;
    if rest[..7] != V2_SIGNATURE[5..] {
        return Err(bad("bad v2 signature"));
    }
    let (ver_cmd, family) = (rest[7], rest[8]);
    let len = u16::from_be_bytes([rest[9], rest[10]]) as usize;
    if len > V2_MAX {
        return Err(bad("v2 header too long"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    if ver_cmd >> 4 != 2 {
        return Err(bad("unsupported v2 version"));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(Proxied::Local),
        1 => {}
        _ => return Err(bad("unknown v2 command")),
    }
    match family >> 4 {
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Proxied::Client(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 if body.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Proxied::Client(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a)),
                port,
            )))
        }
        // AF_UNSPEC or a unix socket: no client address to take over.
        0 | 3 => Ok(Proxied::Local),
        _ => Err(bad("address block too short for its family")),
    }
}

fn parse_v1(line: &[u8]) -> Option<Proxied> {
    let line = std::str::from_utf8(line).ok()?.strip_suffix("\r\n")?;
    let mut f = line.split(' ');
    if f.next()? != "PROXY" {
        return None;
    }
    match f.next()? {
        "UNKNOWN" => Some(Proxied::Local),
        proto @ ("TCP4" | "TCP6") => {
            let src: IpAddr = f.next()?.parse().ok()?;
            let _dst: IpAddr = f.next()?.parse().ok()?;
            let sport: u16 = f.next()?.parse().ok()?;
            let _dport: u16 = f.next()?.parse().ok()?;
            if f.next().is_some() || (proto == "TCP4") != src.is_ipv4() {
                return None;
            }
            Some(Proxied::Client(SocketAddr::new(src, sport)))
        }
        _ => None,
    }
}

/// What a ClientHello offers, as far as berth cares.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Protocol versions from `supported_versions`, or the legacy version without it.
    pub versions: Vec<u16>,
    /// ALPN protocol names, in the client's order.
    pub alpn: Vec<Vec<u8>>,
    /// The SNI host name.
    pub server_name: Option<String>,
}

/// Parses a ClientHello handshake message (type, 3-byte length, body).
pub(crate) fn parse_client_hello(msg: &[u8]) -> Option<Hello> {
    let mut r = Reader(msg);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    let mut r = Reader(r.take(len)?);
    let legacy = r.u16()?;
    r.take(32)?; // random
    let n = r.u8()? as usize;
    r.take(n)?; // session id
    let n = r.u16()? as usize;
    r.take(n)?; // cipher suites
    let n = r.u8()? as usize;
    r.take(n)?; // compression methods
    let mut hello = Hello::default();
    let mut versions = None;
    if !r.0.is_empty() {
        let n = r.u16()? as usize;
        let mut ext = Reader(r.take(n)?);
        while !ext.0.is_empty() {
            let kind = ext.u16()?;
            let n = ext.u16()? as usize;
            let mut data = Reader(ext.take(n)?);
            match kind {
                // server_name: list of (type, name); type 0 is a host name
                0x0000 => {
                    let n = data.u16()? as usize;
                    let mut list = Reader(data.take(n)?);
                    while !list.0.is_empty() {
                        let t = list.u8()?;
                        if t != 0 {
                            // RFC 6066: only host_name has a known encoding, so nothing
                            // after another type can be read (rustls stops here too).
                            break;
                        }
                        let n = list.u16()? as usize;
                        let name = list.take(n)?;
                        // RFC 6066 forbids a trailing dot, but clients send one and rustls
                        // drops it before choosing a certificate: read the name it reads.
                        let name = name.strip_suffix(b".").unwrap_or(name);
                        hello.server_name = std::str::from_utf8(name).ok().map(str::to_owned);
                    }
                }
                // application_layer_protocol_negotiation
                0x0010 => {
                    let n = data.u16()? as usize;
                    let mut list = Reader(data.take(n)?);
                    while !list.0.is_empty() {
                        let n = list.u8()? as usize;
                        hello.alpn.push(list.take(n)?.to_vec());
                    }
                }
                // supported_versions
                0x002b => {
                    let n = data.u8()? as usize;
                    let mut list = Reader(data.take(n)?);
                    let mut v = Vec::new();
                    while !list.0.is_empty() {
                        v.push(list.u16()?);
                    }
                    versions = Some(v);
                }
                _ => {}
            }
        }
    }
    hello.versions = versions.unwrap_or_else(|| vec![legacy]);
    Some(hello)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }
}

/// Reads TLS records until the whole ClientHello is in hand. Returns every byte read (to
/// be put back for the real handshake) and the hello, or `None` when the stream is not a
/// TLS handshake berth can read (the TLS library then refuses it on its own terms).
pub(crate) async fn read_client_hello<R: AsyncRead + Unpin>(
    r: &mut R,
) -> io::Result<(Vec<u8>, Option<Hello>)> {
    let mut raw = Vec::new();
    let mut msg = Vec::new();
    loop {
        let mut header = [0u8; 5];
        r.read_exact(&mut header).await?;
        raw.extend_from_slice(&header);
        if header[0] != 0x16 {
            return Ok((raw, None));
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if raw.len() + len > HELLO_MAX {
            return Ok((raw, None));
        }
        let start = raw.len();
        raw.resize(start + len, 0);
        r.read_exact(&mut raw[start..]).await?;
        msg.extend_from_slice(&raw[start..]);
        if msg.len() >= 4 {
            let want = 4 + ((msg[1] as usize) << 16 | (msg[2] as usize) << 8 | msg[3] as usize);
            if msg.len() >= want {
                return Ok((raw, parse_client_hello(&msg[..want])));
            }
        }
    }
}

/// Points the stream's socket digest at the client a PROXY header named, so every later
/// layer (forwarded-header trust, the access log) sees the real client.
fn set_peer<S: GetSocketDigest + UniqueID + ?Sized>(s: &mut S, client: SocketAddr) {
    let old = s.get_socket_digest();
    let digest = SocketDigest::from_raw_fd(s.id());
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(client)));
    let local = old.as_ref().and_then(|d| d.local_addr().cloned());
    let _ = digest.local_addr.set(local);
    s.set_socket_digest(digest);
}

fn peer_ip<S: GetSocketDigest + ?Sized>(s: &S) -> Option<IpAddr> {
    s.get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
}

impl Policy {
    /// Reads and applies the PROXY header when the policy asks for one.
    async fn take_proxy_header<S>(&self, s: &mut S) -> Result<(), String>
    where
        S: AsyncRead + GetSocketDigest + UniqueID + Unpin + ?Sized,
    {
        if !self.proxy_protocol {
            return Ok(());
        }
        let peer = peer_ip(s);
        if !peer.is_some_and(|ip| self.trusted.iter().any(|c| c.contains(ip))) {
            return Err(format!(
                "PROXY header expected from {}, which is not in http.trusted_proxies",
                peer.map(|p| p.to_string()).unwrap_or_default()
            ));
        }
        match tokio::time::timeout(self.header_timeout, read_proxy_header(s)).await {
            Ok(Ok(Proxied::Client(client))) => {
                set_peer(s, client);
                Ok(())
            }
            Ok(Ok(Proxied::Local)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("PROXY header not received in time".into()),
        }
    }
}

/// pingora's pre-TLS hook: the PROXY header, then a look at the ClientHello.
pub(crate) struct Prelude {
    pub policy: Arc<Policy>,
}

#[async_trait]
impl PreTlsProcess for Prelude {
    async fn process(&self, stream: &mut L4Stream) -> pingora_core::Result<()> {
        let refuse = |why: String| {
            tracing::info!(reason = %why, "connection refused before TLS");
            pingora_core::Error::explain(pingora_core::ErrorType::HandshakeError, why)
        };
        self.policy
            .take_proxy_header(stream)
            .await
            .map_err(refuse)?;
        if !self.policy.tls13_only && self.policy.acme.is_none() {
            return Ok(());
        }
        let read = tokio::time::timeout(self.policy.header_timeout, read_client_hello(stream));
        let (raw, hello) = match read.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(refuse(format!("reading the ClientHello: {e}"))),
            Err(_) => return Err(refuse("ClientHello not received in time".into())),
        };
        stream.rewind(&raw);
        let Some(hello) = hello else {
            return Ok(());
        };
        if let Some(acme) = &self.policy.acme {
            if hello.alpn.len() == 1 && hello.alpn[0] == ACME_TLS_ALPN {
                // RFC 8737: such a handshake gets the challenge certificate and nothing else.
                let host = hello.server_name.clone().unwrap_or_default();
                let answered = match acme.alpn01(&host) {
                    Some(cert) => answer_tls_alpn(stream, cert).await,
                    None => Err(format!("no pending tls-alpn-01 challenge for {host:?}")),
                };
                let why = match answered {
                    Ok(()) => format!("answered the tls-alpn-01 challenge for {host}"),
                    Err(e) => format!("tls-alpn-01 handshake for {host:?}: {e}"),
                };
                return Err(refuse(why));
            }
        }
        if self.policy.tls13_only && !hello.versions.contains(&TLS13) {
            // A fatal protocol_version alert, as a TLS library would send.
            let _ = stream
                .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])
                .await;
            let _ = stream.flush().await;
            let client = peer_ip(stream).map(|p| p.to_string()).unwrap_or_default();
            return Err(refuse(format!(
                "client {client} does not offer TLS 1.3 (tls.min_version = \"1.3\")"
            )));
        }
        Ok(())
    }
}

/// Completes a tls-alpn-01 handshake with the challenge certificate, then closes.
async fn answer_tls_alpn(
    stream: &mut L4Stream,
    cert: Arc<rustls::sign::CertifiedKey>,
) -> Result<(), String> {
    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);
    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(cert)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut tls = acceptor.accept(stream).await.map_err(|e| e.to_string())?;
    let _ = tls.shutdown().await;
    Ok(())
}

/// Wraps the HTTP application: counts connections against `limits.connections_max`, reads
/// the PROXY header on plain listeners, and runs the keep-alive loop itself so that one
/// call covers the connection's whole life.
pub(crate) struct Gate<A> {
    inner: Arc<A>,
    policy: Arc<Policy>,
    active: Arc<AtomicUsize>,
    last_warning: AtomicU64,
}

impl<A> Gate<A> {
    pub(crate) fn new(inner: A, policy: Arc<Policy>) -> Self {
        Self {
            inner: Arc::new(inner),
            policy,
            active: Arc::new(AtomicUsize::new(0)),
            last_warning: AtomicU64::new(0),
        }
    }

    /// Takes a connection slot, or `None` when all are in use.
    fn slot(&self) -> Option<Slot> {
        let n = self.active.fetch_add(1, Ordering::AcqRel);
        if n >= self.policy.max_connections {
            self.active.fetch_sub(1, Ordering::AcqRel);
            // One warning per 10 s at most: a flood must not flood the log too.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let last = self.last_warning.load(Ordering::Relaxed);
            if now >= last + 10
                && self
                    .last_warning
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    max = self.policy.max_connections,
                    "connection limit reached (limits.connections_max); new connections are closed until some finish"
                );
            }
            return None;
        }
        Some(Slot(self.active.clone()))
    }
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Gate<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _slot = self.slot()?;
        // TLS streams had their PROXY header read before the handshake.
        if stream.get_ssl_digest().is_none() {
            if let Err(why) = self.policy.take_proxy_header(&mut *stream).await {
                tracing::info!(reason = %why, "connection refused");
                return None;
            }
        }
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(s) = next {
            next = self.inner.process_new(s, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn proxy(bytes: &[u8]) -> io::Result<Proxied> {
        let mut r = bytes;
        read_proxy_header(&mut r).await
    }

    #[tokio::test]
    async fn proxy_v1_lines() {
        let a = proxy(b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET").await;
        assert_eq!(
            a.expect("test value"),
            Proxied::Client("192.0.2.7:56324".parse().expect("test value"))
        );
        let a = proxy(b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\n").await;
        assert_eq!(
            a.expect("test value"),
            Proxied::Client("[2001:db8::1]:4000".parse().expect("test value"))
        );
        assert_eq!(
            proxy(b"PROXY UNKNOWN\r\n").await.expect("test value"),
            Proxied::Local
        );
        for bad in [
            &b"PROXY TCP4 2001:db8::1 ::1 4000 443\r\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 443 extra\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"PROXY TCP4 1.1.1.1",
        ] {
            assert!(
                proxy(bad).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(proxy(long.as_bytes()).await.is_err());
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(cmd);
        v.push(fam);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn proxy_v2_headers() {
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1];
        body.extend_from_slice(&1234u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0, 1, 0]); // a TLV (NOOP) after the addresses
        let got = proxy(&v2(0x21, 0x11, &body)).await.expect("test value");
        assert_eq!(
            got,
            Proxied::Client("198.51.100.9:1234".parse().expect("test value"))
        );

        let mut body6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5)
            .octets()
            .to_vec();
        body6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body6.extend_from_slice(&7u16.to_be_bytes());
        body6.extend_from_slice(&443u16.to_be_bytes());
        let got = proxy(&v2(0x21, 0x21, &body6)).await.expect("test value");
        assert_eq!(
            got,
            Proxied::Client("[2001:db8::5]:7".parse().expect("test value"))
        );

        assert_eq!(
            proxy(&v2(0x20, 0x00, &[])).await.expect("test value"),
            Proxied::Local
        );
        assert!(proxy(&v2(0x21, 0x11, &body[..5])).await.is_err());
        assert!(proxy(&v2(0x31, 0x11, &body)).await.is_err());
        assert!(proxy(&v2(0x2f, 0x11, &body)).await.is_err());
        let mut bad_sig = v2(0x21, 0x11, &body);
        bad_sig[8] = b'X';
        assert!(proxy(&bad_sig).await.is_err());
    }

    /// A ClientHello as a TLS 1.2-only or a TLS 1.3 client sends it.
    fn hello(versions: Option<&[u16]>, alpn: &[&[u8]], sni: &str) -> Vec<u8> {
        let mut name = vec![0u8];
        name.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        name.extend_from_slice(sni.as_bytes());
        hello_with_names(versions, alpn, &name)
    }

    /// As [`hello`], with `name` as the SNI extension's server name list.
    fn hello_with_names(versions: Option<&[u16]>, alpn: &[&[u8]], name: &[u8]) -> Vec<u8> {
        let mut ext = Vec::new();
        let mut push = |kind: u16, data: Vec<u8>| {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(&data);
        };
        let mut d = (name.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(name);
        push(0x0000, d);
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&list);
        push(0x0010, d);
        if let Some(vs) = versions {
            let mut d = vec![(vs.len() * 2) as u8];
            for v in vs {
                d.extend_from_slice(&v.to_be_bytes());
            }
            push(0x002b, d);
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn client_hello_fields() {
        let h = parse_client_hello(&hello(
            Some(&[TLS13, 0x0303]),
            &[b"h2", b"http/1.1"],
            "r.example",
        ))
        .expect("test value");
        assert_eq!(h.versions, vec![TLS13, 0x0303]);
        assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(h.server_name.as_deref(), Some("r.example"));
        let h = parse_client_hello(&hello(None, &[b"acme-tls/1"], "a")).expect("test value");
        assert_eq!(h.versions, vec![0x0303]);
        let full = hello(None, &[], "a");
        assert!(parse_client_hello(&full[..full.len() - 1]).is_none());
        assert!(parse_client_hello(&[2, 0, 0, 0]).is_none());
        // Found by the client_hello fuzz target: after a name of another type the list
        // cannot be read (RFC 6066 gives only host_name an encoding), which is no reason
        // to give up on the whole hello; rustls reads it too.
        let names = [&[0u8, 0, 1, b'a'][..], &[0x2d, 0x70, 0x6c, 0x65]].concat();
        let h = parse_client_hello(&hello_with_names(Some(&[TLS13]), &[b"h2"], &names))
            .expect("test value");
        assert_eq!(h.server_name.as_deref(), Some("a"));
        assert_eq!(h.versions, vec![TLS13]);
        // Found by the client_hello fuzz target in CI: a fully qualified name with its
        // trailing dot is the name rustls (and the tls-alpn-01 lookup) sees without it.
        let h = parse_client_hello(&hello(Some(&[TLS13]), &[b"h2"], "old.example."))
            .expect("test value");
        assert_eq!(h.server_name.as_deref(), Some("old.example"));
    }

    #[tokio::test]
    async fn client_hello_across_records() {
        let msg = hello(Some(&[TLS13]), &[b"h2"], "split.example");
        let (a, b) = msg.split_at(20);
        let mut wire = Vec::new();
        for part in [a, b] {
            wire.extend_from_slice(&[0x16, 0x03, 0x01]);
            wire.extend_from_slice(&(part.len() as u16).to_be_bytes());
            wire.extend_from_slice(part);
        }
        wire.extend_from_slice(b"after");
        let mut r = &wire[..];
        let (raw, h) = read_client_hello(&mut r).await.expect("test value");
        assert_eq!(
            raw,
            wire[..wire.len() - 5],
            "exactly the records, nothing after"
        );
        assert_eq!(
            h.expect("test value").server_name.as_deref(),
            Some("split.example")
        );
        let mut plain = &b"GET / HTTP/1.1\r\n\r\n"[..];
        let (raw, h) = read_client_hello(&mut plain).await.expect("test value");
        assert_eq!((raw.len(), h), (5, None));
    }
}
