//! HTTP/1.1 behaviour seen on the raw socket: keep-alive, `Expect: 100-continue`, early
//! 413 without reading the body, and graceful shutdown on SIGTERM.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn connect(b: &Berth) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads one response: status line, headers, and a Content-Length body.
fn read_response(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; if status == 100 { 0 } else { len }];
    r.read_exact(&mut body).expect("body");
    (status, headers, body)
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let b = Berth::start(&[]);
    let s = connect(&b);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    for _ in 0..3 {
        w.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let (status, _, body) = read_response(&mut r);
        assert_eq!(status, 200);
        assert_eq!(body, b"{}");
    }
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let b = Berth::start(&[]);
    let data = b"a body sent only after 100 Continue";
    let d = sha256(data);
    let s = connect(&b);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    write!(
        w,
        "POST /v2/r/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        data.len()
    )
    .expect("write");
    let (status, _, _) = read_response(&mut r);
    assert_eq!(status, 100, "the server must ask for the body");
    w.write_all(data).expect("body");
    let (status, headers, _) = read_response(&mut r);
    assert_eq!(status, 201);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "docker-content-digest" && v == &d));
}

#[test]
fn oversized_manifest_is_refused_without_reading_the_body() {
    let b = Berth::start(&[]);
    let s = connect(&b);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    w.write_all(
        b"PUT /v2/r/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 104857600\r\nExpect: 100-continue\r\n\r\n",
    )
    .expect("write");
    let (status, headers, body) = read_response(&mut r);
    assert_eq!(status, 413);
    assert!(String::from_utf8_lossy(&body).contains("SIZE_INVALID"));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "docker-distribution-api-version" && v == "registry/2.0"));
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish() {
    let mut b = Berth::start(&[("BERTH__HTTP__SHUTDOWN_GRACE", "10s")]);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let d = sha256(&data);
    let s = connect(&b);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    write!(
        w,
        "POST /v2/r/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .expect("write");
    // Half the body, then SIGTERM, then the rest.
    w.write_all(&data[..data.len() / 2]).expect("first half");
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &b.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    w.write_all(&data[data.len() / 2..]).expect("second half");
    let (status, _, body) = read_response(&mut r);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    // New connections are no longer accepted, and the process exits by itself.
    assert!(
        b.wait_exit(Duration::from_secs(20)),
        "berth did not exit after SIGTERM"
    );
    let dir = b.stop();
    let b = Berth::start_in(dir, &[]);
    assert_eq!(
        call("GET", &b.url(&format!("/v2/r/blobs/{d}")), &[], None).body,
        data
    );
}

#[test]
fn slowloris_is_dropped_while_a_normal_push_completes() {
    let b = Berth::start(&[("BERTH__HTTP__HEADER_TIMEOUT", "2s")]);
    let mut slow = connect(&b);
    let started = std::time::Instant::now();
    let header = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // A normal push on another connection, while the slow client trickles.
    let data = vec![7u8; 2_000_000];
    let url = b.url(&format!("/v2/r/blobs/uploads/?digest={}", sha256(&data)));
    let pusher = std::thread::spawn(move || call("POST", &url, &[], Some(&data)).status);
    let mut dropped = false;
    for byte in header.iter().copied() {
        if slow.write_all(&[byte]).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    if !dropped {
        // The server closed its side: a read sees end of stream.
        let mut buf = [0u8; 64];
        dropped = matches!(slow.read(&mut buf), Ok(0) | Err(_));
    }
    assert!(dropped, "the slow client was not dropped");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "dropped only after {:?}",
        started.elapsed()
    );
    assert_eq!(pusher.join().expect("pusher"), 201);
}

#[test]
fn sigterm_with_nothing_in_flight_exits_before_the_grace_period() {
    // pingora alone would sleep the whole grace period; berth leaves once no request is
    // in flight, also with an idle keep-alive connection open.
    let mut b = Berth::start(&[("BERTH__HTTP__SHUTDOWN_GRACE", "60s")]);
    let s = connect(&b);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    write!(w, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let (status, _, _) = read_response(&mut r);
    assert_eq!(status, 200);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &b.pid().to_string()])
        .status();
    assert!(
        b.wait_exit(Duration::from_secs(15)),
        "berth waited for the 60 s grace period with nothing in flight"
    );
    assert!(b.logs().contains("no request in flight"), "{}", b.logs());
}
