//! Connection-level rules: PROXY protocol v1/v2 on plain and TLS listeners, the TLS
//! minimum version, the connection cap and the request-header caps. curl, openssl and raw
//! sockets do the talking; a small relay plays the load balancer that adds PROXY headers.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const GET_V2: &str =
    "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.66\r\nConnection: close\r\n\r\n";

fn v2_header(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A one-connection-at-a-time TCP relay that prefixes each upstream connection with
/// `header`, as a load balancer with PROXY protocol does. Serves `conns` connections.
fn relay(upstream: u16, header: Vec<u8>, conns: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for c in l.incoming().take(conns) {
            let Ok(mut down) = c else { continue };
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            if up.write_all(&header).is_err() {
                continue;
            }
            let (mut d2, mut u2) = (
                down.try_clone().expect("clone"),
                up.try_clone().expect("clone"),
            );
            let t = std::thread::spawn(move || {
                let _ = std::io::copy(&mut d2, &mut u2);
                let _ = u2.shutdown(std::net::Shutdown::Write);
            });
            let _ = std::io::copy(&mut up, &mut down);
            let _ = down.shutdown(std::net::Shutdown::Write);
            let _ = t.join();
        }
    });
    port
}

#[test]
fn proxy_protocol_on_plain_listener() {
    let b = Berth::start(&[
        ("BERTH__HTTP__PROXY_PROTOCOL", "true"),
        ("BERTH__HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
    ]);
    // curl's own v1 header (the real addresses).
    let (ok, out) = curl(&["--haproxy-protocol", &b.url("/v2/")]);
    assert!(ok && out.contains("{}"), "{out}");

    // v1 naming another client: that address is the client, and the X-Forwarded-For the
    // (untrusted) client sent is ignored.
    let r = raw_http(
        b.port,
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 5000\r\n",
        GET_V2,
    )
    .expect("v1");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(b.wait_log("client=198.51.100.7"), "{}", b.logs());

    let r = raw_http(b.port, &v2_header([203, 0, 113, 5], 41000), GET_V2).expect("v2");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(b.wait_log("client=203.0.113.5"), "{}", b.logs());
    assert!(!b.logs().contains("client=192.0.2.66"), "{}", b.logs());

    // No header, or a malformed one: the connection is closed without an answer.
    let (ok, out) = curl(&[&b.url("/v2/")]);
    assert!(!ok, "{out}");
    let r = raw_http(b.port, b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n", GET_V2).expect("bad");
    assert!(r.is_empty(), "{r}");
    assert!(b.wait_log("connection refused"), "{}", b.logs());

    // A peer outside trusted_proxies may not send one at all.
    let (ok, out) = curl(&[
        "--interface",
        "127.0.0.2",
        "--haproxy-protocol",
        &b.url("/v2/"),
    ]);
    assert!(!ok, "{out}");
    assert!(b.wait_log("not in http.trusted_proxies"), "{}", b.logs());
    // Keep-alive still works after the header: two requests on one connection.
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"PROXY TCP4 198.51.100.8 127.0.0.1 1 2\r\n")
        .expect("write");
    for _ in 0..2 {
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("read");
        let r = String::from_utf8_lossy(&buf[..n]);
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("{}"), "{r}");
    }
}

fn start_self_signed(extra: &[(&str, &str)]) -> (Berth, u16) {
    let tls_port = free_port();
    let listen = format!("[\"127.0.0.1:{tls_port}\"]");
    let mut env = vec![
        ("BERTH__TLS__MODE", "self-signed"),
        ("BERTH__TLS__LISTEN", listen.as_str()),
        ("BERTH__TLS__HOSTNAMES", "[\"127.0.0.1\"]"),
    ];
    env.extend_from_slice(extra);
    (Berth::start(&env), tls_port)
}

#[test]
fn proxy_protocol_before_tls() {
    let (b, tls_port) = start_self_signed(&[
        ("BERTH__HTTP__PROXY_PROTOCOL", "true"),
        ("BERTH__HTTP__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
    ]);
    // A load balancer in front (the relay) announces 198.51.100.20 with a v2 header; curl
    // speaks TLS (and h2) through it to berth.
    let front = relay(tls_port, v2_header([198, 51, 100, 20], 50000), 2);
    let (ok, out) = curl(&["-k", &format!("https://127.0.0.1:{front}/v2/")]);
    assert!(ok && out.contains("{}"), "{out}");
    assert!(b.wait_log("client=198.51.100.20"), "{}", b.logs());
    assert!(b.logs().contains("tls=true"), "{}", b.logs());
    // TLS straight to berth without the header is refused before the handshake.
    let (ok, out) = curl(&["-k", &format!("https://127.0.0.1:{tls_port}/v2/")]);
    assert!(!ok, "{out}");
    assert!(b.wait_log("connection refused before TLS"), "{}", b.logs());
    // curl's own v1 header works over TLS too.
    let (ok, out) = curl(&[
        "-k",
        "--haproxy-protocol",
        &format!("https://127.0.0.1:{tls_port}/v2/"),
    ]);
    assert!(ok && out.contains("{}"), "{out}");
}

fn s_client(port: u16, version_flag: &str) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version_flag,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn tls_min_version() {
    // Default: TLS 1.2 and 1.3 both accepted.
    let (b, port) = start_self_signed(&[]);
    let url = format!("https://127.0.0.1:{port}/v2/");
    let (ok, out) = curl(&["-k", "--tls-max", "1.2", &url]);
    assert!(ok, "TLS 1.2 refused by default: {out}");
    drop(b);

    let (b, port) = start_self_signed(&[("BERTH__TLS__MIN_VERSION", "\"1.3\"")]);
    let url = format!("https://127.0.0.1:{port}/v2/");
    let (ok, out) = curl(&["-k", "--tls-max", "1.2", &url]);
    assert!(!ok, "TLS 1.2 accepted with min_version 1.3: {out}");
    let (ok, out) = curl(&["-k", "--tlsv1.3", &url]);
    assert!(ok && out.contains("{}"), "{out}");
    // The refusal is the protocol_version alert, as from a TLS library.
    let out = s_client(port, "-tls1_2");
    assert!(out.contains("alert protocol version"), "{out}");
    assert!(b.wait_log("does not offer TLS 1.3"), "{}", b.logs());
    let out = s_client(port, "-tls1_3");
    assert!(out.contains("TLSv1.3"), "{out}");
}

#[test]
fn connection_cap() {
    let b = Berth::start(&[("BERTH__LIMITS__CONNECTIONS_MAX", "2")]);
    // Wait until the readiness probe's connection is gone, then hold both slots.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held: Vec<TcpStream> = Vec::new();
    while held.len() < 2 && Instant::now() < deadline {
        held.clear();
        for _ in 0..2 {
            held.push(TcpStream::connect(("127.0.0.1", b.port)).expect("connect"));
        }
        std::thread::sleep(Duration::from_millis(200));
        // Both held connections must be alive: a request on the first one is answered.
        let s = &mut held[0];
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        if !String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") {
            held.clear();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(held.len(), 2, "could not hold two connections");
    // A third is closed without an answer, and the log says why.
    let r = raw_http(b.port, b"", "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").expect("connect");
    assert!(r.is_empty(), "third connection was served: {r}");
    assert!(b.wait_log("connection limit reached"), "{}", b.logs());
    // Slots come back when connections close.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut served = false;
    while !served && Instant::now() < deadline {
        served = raw_http(
            b.port,
            b"",
            "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served, "no slot came back");
}

#[test]
fn request_header_caps() {
    let b = Berth::start(&[
        ("BERTH__LIMITS__HEADER_MAX", "\"2KiB\""),
        ("BERTH__LIMITS__HEADER_COUNT_MAX", "20"),
    ]);
    let r = call("GET", &b.url("/v2/"), &[("X-Small", "1")], None);
    assert_eq!(r.status, 200);
    let big = "a".repeat(3000);
    let r = call("GET", &b.url("/v2/"), &[("X-Big", big.as_str())], None);
    assert_eq!(r.status, 431);
    assert_eq!(r.error_code(), "SIZE_INVALID");
    let many: Vec<String> = (0..30).map(|i| format!("X-H{i}: v")).collect();
    let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    for h in &many {
        args.extend(["-H", h.as_str()]);
    }
    let url = b.url("/v2/");
    args.push(&url);
    let (_, out) = curl(&args);
    assert_eq!(out.trim(), "431", "{out}");
}
