//! Hostile clients, bounded: connections held open up to the limit (and past it), oversized headers, slow
//! bodies, ten thousand tiny chunked PATCHes, an enormous declared `Content-Length`, and
//! unknown methods, all at once against one berth. Throughout, a normal client keeps
//! pushing on its own connections and every push succeeds; nothing is answered 5xx; the
//! server's peak memory stays under a generous ceiling.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS_MAX: usize = 64;
const RSS_CEILING_KIB: u64 = 256 * 1024;

fn connect(b: &Berth) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s
}

/// The status of one response on `r`, its body skipped (Content-Length); `None` when the
/// server closed the connection instead.
fn status(r: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let code = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(code)
}

/// Counts 5xx answers seen by the hostile clients.
#[derive(Default)]
struct Seen {
    server_errors: AtomicU64,
    answers: AtomicU64,
}

impl Seen {
    fn saw(&self, code: Option<u16>) {
        if let Some(c) = code {
            self.answers.fetch_add(1, Ordering::Relaxed);
            if c >= 500 {
                self.server_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("hostile client got {c}");
            }
        }
    }
}

#[test]
fn hostile_clients_do_not_starve_a_normal_push_or_the_memory() {
    let b = Berth::start(&[
        (
            "BERTH__LIMITS__CONNECTIONS_MAX",
            &CONNECTIONS_MAX.to_string(),
        ),
        ("BERTH__HTTP__HEADER_TIMEOUT", "3s"),
        ("BERTH__HTTP__IO_TIMEOUT", "5s"),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let base = b.url("");

    // The normal client: a fresh blob and a manifest, again and again, each request on its
    // own connection, until the hostile ones are done.
    let pusher = {
        let stop = stop.clone();
        let base = base.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let layer: Vec<u8> = (0..200_000u32).map(|n| (n ^ i) as u8).collect();
                let d = sha256(&layer);
                let url = format!("{base}/v2/normal/blobs/uploads/?digest={d}");
                let r = call("POST", &url, &[], Some(&layer));
                if r.status != 201 {
                    failed.push(format!("blob {i}: {}", r.status));
                    continue;
                }
                let manifest = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": d, "size": layer.len()},
                    "layers": [],
                })
                .to_string();
                let r = call(
                    "PUT",
                    &format!("{base}/v2/normal/manifests/t{i}"),
                    &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                    Some(manifest.as_bytes()),
                );
                if r.status == 201 {
                    ok += 1;
                } else {
                    failed.push(format!("manifest {i}: {}", r.status));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (ok, failed)
        })
    };

    let mut hostile = Vec::new();

    // Connections held open, leaving room for the normal client and the other attackers.
    let held: Vec<TcpStream> = (0..CONNECTIONS_MAX - 16).map(|_| connect(&b)).collect();

    // Oversized headers: 431, never more.
    {
        let (b_port, seen) = (b.port, seen.clone());
        hostile.push(std::thread::spawn(move || {
            for _ in 0..50 {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", b_port)) else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let big = "x".repeat(200 * 1024);
                let _ = write!(s, "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
                let mut r = BufReader::new(s);
                seen.saw(status(&mut r));
            }
        }));
    }

    // Slow bodies: a byte every 200 ms into a PATCH, for a few seconds each.
    for _ in 0..4 {
        let (base, b_port, seen) = (base.clone(), b.port, seen.clone());
        hostile.push(std::thread::spawn(move || {
            let r = call("POST", &format!("{base}/v2/slow/blobs/uploads/"), &[], None);
            let Some(loc) = r.header("Location").map(str::to_owned) else {
                return;
            };
            let path = loc.trim_start_matches(&base).to_owned();
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", b_port)) else {
                return;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
            let _ = write!(
                s,
                "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 20\r\n\r\n"
            );
            for _ in 0..20 {
                if s.write_all(b"s").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let mut r = BufReader::new(s);
            seen.saw(status(&mut r));
        }));
    }

    // Ten thousand tiny chunked PATCHes of one upload on one keep-alive connection, then
    // the PUT that completes it: the blob is exactly those bytes.
    let tiny = {
        let (base, b_port, seen) = (base.clone(), b.port, seen.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let r = call("POST", &format!("{base}/v2/tiny/blobs/uploads/"), &[], None);
            let mut path = r
                .header("Location")
                .ok_or("no Location")?
                .trim_start_matches(&base)
                .to_owned();
            let s = TcpStream::connect(("127.0.0.1", b_port)).map_err(|e| e.to_string())?;
            // One write per request, sent at once (no Nagle wait for the previous ACK).
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(15)))
                .map_err(|e| e.to_string())?;
            let mut w = s.try_clone().map_err(|e| e.to_string())?;
            let mut r = BufReader::new(s);
            let mut all = Vec::new();
            for i in 0..10_000u32 {
                let byte = b"0123456789abcdef"[(i % 16) as usize];
                all.push(byte);
                let request = format!(
                    "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n",
                    byte as char
                );
                w.write_all(request.as_bytes())
                    .map_err(|e| format!("PATCH {i}: {e}"))?;
                // The Location of each answer is where the next chunk goes.
                let mut line = String::new();
                r.read_line(&mut line).map_err(|e| e.to_string())?;
                let code: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| format!("PATCH {i}: {line:?}"))?;
                seen.saw(Some(code));
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).map_err(|e| e.to_string())?;
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("location") {
                            path = v.trim().trim_start_matches(&base).to_owned();
                        } else if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).map_err(|e| e.to_string())?;
                if code != 202 {
                    return Err(format!("PATCH {i}: {code}"));
                }
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            let d = sha256(&all);
            let put = call(
                "PUT",
                &format!("{base}{path}{sep}digest={d}"),
                &[],
                Some(b""),
            );
            if put.status != 201 {
                return Err(format!("final PUT: {}", put.status));
            }
            let got = call("GET", &format!("{base}/v2/tiny/blobs/{d}"), &[], None);
            if got.body != all {
                return Err("the blob is not the 10,000 bytes sent".into());
            }
            Ok(())
        })
    };

    // An enormous declared Content-Length, a few bytes, then silence and a close: berth
    // neither reserves the space nor keeps the bytes.
    {
        let (base, b_port, seen) = (base.clone(), b.port, seen.clone());
        hostile.push(std::thread::spawn(move || {
            for _ in 0..5 {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", b_port)) else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let digest = format!("sha256:{}", "0".repeat(64));
                let _ = write!(
                    s,
                    "POST /v2/huge/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999\r\n\r\nonly a few bytes"
                );
                std::thread::sleep(Duration::from_millis(300));
                drop(s);
            }
            let r = call("GET", &format!("{base}/v2/huge/blobs/sha256:{}", "0".repeat(64)), &[], None);
            seen.saw(Some(r.status));
        }));
    }

    // Unknown and unusual methods: a 4xx each.
    {
        let (b_port, seen) = (b.port, seen.clone());
        hostile.push(std::thread::spawn(move || {
            for m in [
                "BREW", "PROPFIND", "TRACE", "CONNECT", "OPTIONS", "M-SEARCH", "X",
            ] {
                for path in ["/v2/", "/v2/a/manifests/latest", "/", "*"] {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", b_port)) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = write!(
                        s,
                        "{m} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                    );
                    let mut r = BufReader::new(s);
                    seen.saw(status(&mut r));
                }
            }
        }));
    }

    for h in hostile {
        h.join().expect("hostile client");
    }
    let tiny = tiny.join().expect("tiny PATCHes");
    // The held connections sent nothing: the header timeout dropped them by now, or
    // drops them soon; let the normal client push a little longer meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(held);
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = pusher.join().expect("pusher");

    assert_eq!(tiny, Ok(()), "ten thousand tiny PATCHes");
    assert!(failed.is_empty(), "normal pushes failed: {failed:?}");
    assert!(ok >= 10, "only {ok} normal pushes in the whole run");
    assert!(
        seen.answers.load(Ordering::Relaxed) > 10_000,
        "the hostile clients got answers"
    );
    assert_eq!(seen.server_errors.load(Ordering::Relaxed), 0, "5xx answers");
    let rss = b.peak_rss_kib();
    assert!(rss > 0, "peak RSS is readable");
    assert!(
        rss < RSS_CEILING_KIB,
        "peak RSS {} MiB over the {} MiB ceiling",
        rss / 1024,
        RSS_CEILING_KIB / 1024
    );
    // At the limit itself: with the normal client stopped and the held connections gone,
    // fresh idle connections beyond `connections_max` are closed as they are accepted,
    // and once they go a normal push works again.
    std::thread::sleep(Duration::from_millis(500));
    let flood: Vec<TcpStream> = (0..CONNECTIONS_MAX + 8).map(|_| connect(&b)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed = flood
        .iter()
        .filter(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
            let mut byte = [0u8; 1];
            matches!((&**s).read(&mut byte), Ok(0))
        })
        .count();
    assert!(
        (8..=CONNECTIONS_MAX).contains(&closed),
        "{closed} of {} connections were closed at accept",
        CONNECTIONS_MAX + 8
    );
    drop(flood);
    std::thread::sleep(Duration::from_millis(500));
    let layer = b"after the flood".to_vec();
    let url = b.url(&format!(
        "/v2/normal/blobs/uploads/?digest={}",
        sha256(&layer)
    ));
    assert_eq!(call("POST", &url, &[], Some(&layer)).status, 201);
    assert!(b.logs().contains("connection limit reached"));

    // Nothing of the huge uploads became a blob, and the server still works.
    assert_eq!(
        call("GET", &b.url("/v2/"), &[], None).status,
        200,
        "berth still answers"
    );
    assert!(!b.logs().contains("panicked"), "a panic in the log");
}
