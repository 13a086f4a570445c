//! Webhook notifications against the real binary: registry:2's envelope for pushes, pulls,
//! mounts and deletes; nothing lost and nothing sent twice across an endpoint outage and a
//! restart of berth (killed, not stopped gracefully); filters; configuration checks.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Got {
    head: String,
    body: Vec<u8>,
    status: u16,
}

/// A loopback webhook receiver that keeps its port for the whole test. It answers every
/// request with the current status (200 unless told otherwise); status 0 hangs up without
/// reading or answering, as an endpoint that is down would.
struct Receiver {
    port: u16,
    answer: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let answer = Arc::new(AtomicU16::new(200));
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, g, s) = (answer.clone(), got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => handle(conn, &a, &g),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            port,
            answer,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn answer(&self, status: u16) {
        self.answer.store(status, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The events of every request answered 2xx, in the order they came.
    fn delivered(&self) -> Vec<Value> {
        self.got()
            .iter()
            .filter(|g| (200..300).contains(&g.status))
            .flat_map(|g| {
                let v: Value = serde_json::from_slice(&g.body).unwrap_or_else(|e| {
                    panic!("not JSON ({e}): {}", String::from_utf8_lossy(&g.body))
                });
                v["events"].as_array().cloned().expect("an events array")
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(mut conn: TcpStream, answer: &AtomicU16, got: &Mutex<Vec<Got>>) {
    let status = answer.load(Ordering::SeqCst);
    if status == 0 {
        return;
    }
    let Some((head, body)) = read_request(&mut conn) else {
        return;
    };
    got.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Got { head, body, status });
    let _ = conn.write_all(
        format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
}

fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if k.eq_ignore_ascii_case("content-length") {
                v.trim().parse().ok()
            } else {
                None
            }
        })
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// `BERTH__NOTIFICATIONS__ENDPOINTS`: one endpoint at the receiver, with short retries.
fn hook_env(port: u16, extra: &str) -> String {
    format!(
        r#"[{{name = "hook", url = "http://127.0.0.1:{port}/events", timeout = "2s", backoff = "100ms", backoff_max = "500ms", headers = {{Authorization = "Bearer s3cret"}}{extra}}}]"#
    )
}

/// Waits (bounded) until `f` finds what it looks for.
fn wait_until<T>(b: &Berth, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(t) = f() {
            return t;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; berth's log:\n{}", b.logs());
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// What an event is about, in one comparable line.
fn key(e: &Value) -> String {
    let t = &e["target"];
    k(
        s(&e["action"]),
        s(&t["repository"]),
        s(&t["digest"]),
        s(&t["tag"]),
        s(&t["fromRepository"]),
    )
}

fn k(action: &str, repo: &str, digest: &str, tag: &str, from: &str) -> String {
    format!("{action} {repo} {digest} tag={tag} from={from}")
}

/// The events waiting in the endpoint's queue directory.
fn queued(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("state/notifications/hook"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.ends_with(".json") && !n.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

fn config_digest(manifest: &[u8]) -> String {
    let m: Value = serde_json::from_slice(manifest).expect("manifest JSON");
    s(&m["config"]["digest"]).to_owned()
}

#[test]
fn events_survive_an_outage_and_a_restart_and_arrive_once_in_order() {
    let rx = Receiver::start();
    let hooks = hook_env(rx.port, "");
    let env = [("BERTH__NOTIFICATIONS__ENDPOINTS", hooks.as_str())];
    let b = Berth::start(&env);

    // A push: the blob pushes, then the manifest push with its tag.
    let layer1: &[u8] = b"notify: layer one";
    let (m1, d1) = push_image(&b, "team/app", "v1", layer1);
    let (c1, l1) = (config_digest(&m1), sha256(layer1));
    let got = wait_until(&b, "the manifest push event", || {
        let d = rx.delivered();
        d.iter()
            .any(|e| e["target"]["digest"] == d1.as_str())
            .then_some(d)
    });
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        [
            k("push", "team/app", &c1, "", ""),
            k("push", "team/app", &l1, "", ""),
            k("push", "team/app", &d1, "v1", ""),
        ]
    );
    let push = &got[2];
    let t = &push["target"];
    assert_eq!(t["mediaType"], OCI_MANIFEST, "{push}");
    assert_eq!(t["size"], m1.len());
    assert_eq!(t["length"], m1.len());
    assert!(
        s(&t["url"]).ends_with(&format!("/v2/team/app/manifests/{d1}")),
        "{push}"
    );
    assert_eq!(push["request"]["method"], "PUT");
    assert!(
        s(&push["request"]["useragent"]).starts_with("ureq"),
        "{push}"
    );
    assert!(!s(&push["request"]["id"]).is_empty(), "{push}");
    assert!(
        s(&push["request"]["addr"]).starts_with("127.0.0.1"),
        "{push}"
    );
    assert!(!s(&push["id"]).is_empty());
    assert!(s(&push["timestamp"]).ends_with('Z'), "{push}");
    let first_instance = s(&push["source"]["instanceID"]).to_owned();
    assert!(!first_instance.is_empty(), "{push}");
    assert!(
        s(&push["source"]["addr"]).ends_with(&format!(":{}", b.port)),
        "{push}"
    );
    let blob = &got[1]["target"];
    assert_eq!(blob["mediaType"], "application/octet-stream");
    assert_eq!(blob["size"], layer1.len());
    assert!(s(&blob["url"]).ends_with(&format!("/v2/team/app/blobs/{l1}")));
    let requests = rx.got();
    let head = &requests[0].head;
    assert!(head.starts_with("POST /events HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {EVENTS_MEDIA_TYPE}")),
        "{head}"
    );
    assert!(head.contains("Authorization: Bearer s3cret"), "{head}");

    // Pulls: GET of a manifest (by tag) and of a blob; a HEAD is no pull.
    let accept = [("Accept", OCI_MANIFEST)];
    let r = call("HEAD", &b.url("/v2/team/app/manifests/v1"), &accept, None);
    assert_eq!(r.status, 200);
    let r = call("GET", &b.url("/v2/team/app/manifests/v1"), &accept, None);
    assert_eq!(r.status, 200);
    let r = call(
        "GET",
        &b.url(&format!("/v2/team/app/blobs/{l1}")),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    wait_until(&b, "the blob pull event", || {
        (rx.delivered().len() >= 5).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let got = rx.delivered();
    assert_eq!(
        got[3..].iter().map(key).collect::<Vec<_>>(),
        [
            k("pull", "team/app", &d1, "v1", ""),
            k("pull", "team/app", &l1, "", ""),
        ],
        "{got:#?}"
    );
    assert_eq!(got[3]["request"]["method"], "GET");
    assert_eq!(got[3]["target"]["mediaType"], OCI_MANIFEST);
    let before = got.len();

    // The endpoint fails (500): nothing is delivered, the event is retried...
    rx.answer(500);
    let layer2: &[u8] = b"notify: layer two";
    let (m2, d2) = push_image(&b, "team/app", "v2", layer2);
    wait_until(&b, "a refused delivery", || {
        rx.got().iter().any(|g| g.status == 500).then_some(())
    });
    // ...then it is down (connections dropped unanswered) while more happens.
    rx.answer(0);
    let layer3: &[u8] = b"notify: layer three";
    let (m3, d3) = push_image(&b, "team/other", "v1", layer3);
    let l3 = sha256(layer3);
    let r = call(
        "POST",
        &b.url(&format!(
            "/v2/team/mounted/blobs/uploads/?mount={l3}&from=team/other"
        )),
        &[],
        None,
    );
    assert_eq!(r.status, 201, "mount");
    let r = call("DELETE", &b.url("/v2/team/app/manifests/v1"), &[], None);
    assert_eq!(r.status, 202, "tag delete");
    let r = call(
        "DELETE",
        &b.url(&format!("/v2/team/other/manifests/{d3}")),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "manifest delete");
    let r = call(
        "DELETE",
        &b.url(&format!("/v2/team/other/blobs/{l3}")),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "blob delete");
    let expected = [
        k("push", "team/app", &config_digest(&m2), "", ""),
        k("push", "team/app", &sha256(layer2), "", ""),
        k("push", "team/app", &d2, "v2", ""),
        k("push", "team/other", &config_digest(&m3), "", ""),
        k("push", "team/other", &l3, "", ""),
        k("push", "team/other", &d3, "v1", ""),
        k("mount", "team/mounted", &l3, "", "team/other"),
        k("delete", "team/app", "", "v1", ""),
        k("delete", "team/other", &d3, "", ""),
        k("delete", "team/other", &l3, "", ""),
    ];
    // Every write answered only once its event was on disk.
    assert_eq!(queued(b.dir.path()), expected.len(), "{}", b.logs());
    assert_eq!(rx.delivered().len(), before);

    // berth is killed and started again on the same state while the endpoint is down.
    let dir = b.stop();
    let b = Berth::start_in(dir, &env);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.delivered().len(), before);

    // The endpoint is back: everything arrives, once, in order.
    rx.answer(200);
    wait_until(&b, "the events of the outage", || {
        (rx.delivered().len() >= before + expected.len()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let got = rx.delivered();
    assert_eq!(
        got[before..].iter().map(key).collect::<Vec<_>>(),
        expected,
        "{got:#?}"
    );
    let mut ids = HashSet::new();
    for e in &got {
        assert!(ids.insert(s(&e["id"]).to_owned()), "sent twice: {e}");
    }
    // Queued by the first process, sent by the second: still the first's events.
    for e in &got[before..] {
        assert_eq!(s(&e["source"]["instanceID"]), first_instance, "{e}");
    }
    let mount = &got[before + 6]["target"];
    assert_eq!(mount["fromRepository"], "team/other");
    assert_eq!(mount["size"], layer3.len());
    wait_until(&b, "an empty queue", || {
        (queued(b.dir.path()) == 0).then_some(())
    });

    // The new process notifies too, as a new instance.
    let r = call("GET", &b.url("/v2/team/app/manifests/v2"), &accept, None);
    assert_eq!(r.status, 200);
    let got = wait_until(&b, "the pull after the restart", || {
        let d = rx.delivered();
        (d.len() > before + expected.len()).then_some(d)
    });
    let pull = &got[before + expected.len()];
    assert_eq!(key(pull), k("pull", "team/app", &d2, "v2", ""));
    assert_ne!(s(&pull["source"]["instanceID"]), first_instance);
}

#[test]
fn ignored_actions_and_media_types_are_not_sent() {
    let rx = Receiver::start();
    let hooks = hook_env(
        rx.port,
        r#", ignore_actions = ["pull"], ignored_media_types = ["application/octet-stream"]"#,
    );
    let b = Berth::start(&[("BERTH__NOTIFICATIONS__ENDPOINTS", hooks.as_str())]);
    let layer: &[u8] = b"notify: filtered layer";
    let (_, d1) = push_image(&b, "filtered", "v1", layer);
    let accept = [("Accept", OCI_MANIFEST)];
    let r = call("GET", &b.url("/v2/filtered/manifests/v1"), &accept, None);
    assert_eq!(r.status, 200);
    let r = call(
        "GET",
        &b.url(&format!("/v2/filtered/blobs/{}", sha256(layer))),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    let (_, d2) = push_image(&b, "filtered", "v2", b"notify: another layer");
    wait_until(&b, "the second manifest push", || {
        (rx.delivered().len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rx.delivered().iter().map(key).collect::<Vec<_>>(),
        [
            k("push", "filtered", &d1, "v1", ""),
            k("push", "filtered", &d2, "v2", ""),
        ]
    );
}

#[test]
fn endpoint_settings_are_checked_and_shown_without_secrets() {
    let var = "BERTH__NOTIFICATIONS__ENDPOINTS";
    for (value, key) in [
        (
            r#"[{name = "hook", url = "ftp://hooks.example.com/"}]"#,
            "notifications.endpoints[0].url",
        ),
        (
            r#"[{name = "a/b", url = "http://127.0.0.1:9/"}]"#,
            "notifications.endpoints[0].name",
        ),
        (
            r#"[{name = "hook", url = "http://127.0.0.1:9/", ignore_actions = ["pul"]}]"#,
            "notifications.endpoints[0].ignore_actions",
        ),
        (
            r#"[{name = "hook", url = "http://127.0.0.1:9/"}, {name = "hook", url = "http://127.0.0.1:8/"}]"#,
            "notifications.endpoints[1].name",
        ),
        (
            r#"[{name = "hook", url = "http://127.0.0.1:9/", backoff = "1m", backoff_max = "1s"}]"#,
            "notifications.endpoints[0].backoff_max",
        ),
        // A misspelt key names the variable.
        (
            r#"[{name = "hook", urll = "http://127.0.0.1:9/"}]"#,
            "BERTH__NOTIFICATIONS__ENDPOINTS",
        ),
    ] {
        let (code, _, err) = run_berth(&["config", "check"], &[(var, value)]);
        assert_eq!(code, 2, "{value} was accepted");
        assert!(err.contains(key), "{value}: {err}");
    }

    let good = r#"[{name = "hook", url = "https://hooks.example.com/registry", timeout = "3s", headers = {Authorization = "Bearer s3cret"}, ignore_actions = ["pull"]}]"#;
    let (code, _, err) = run_berth(&["config", "check"], &[(var, good)]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_berth(&["config", "show"], &[(var, good)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("https://hooks.example.com/registry"), "{out}");
    assert!(!out.contains("s3cret"), "a header value is shown: {out}");
    assert_shown_config_is_valid(&out);
}

#[test]
fn a_skopeo_push_is_queued_while_the_endpoint_is_down_and_counted_in_metrics() {
    // Nothing listens on the endpoint's port: every event waits on disk.
    let down = free_port();
    let admin = free_port();
    let hooks = hook_env(down, "");
    let admin_listen = format!("[\"127.0.0.1:{admin}\"]");
    let b = Berth::start(&[
        ("BERTH__NOTIFICATIONS__ENDPOINTS", hooks.as_str()),
        ("BERTH__HTTP__ADMIN_LISTEN", admin_listen.as_str()),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_oci_layout(&dir.path().join("layout"));
    let out = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(&image)
        .arg(format!("docker://127.0.0.1:{}/hooked/app:v1", b.port))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The push events (config, layer, manifest with its tag) are on disk, made by skopeo.
    let queue = b.dir.path().join("state/notifications/hook");
    let events: Vec<Value> = std::fs::read_dir(&queue)
        .expect("queue dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json"))
        .collect();
    let pushes = events
        .iter()
        .filter(|env| env["events"][0]["action"] == "push")
        .count();
    assert!(pushes >= 3, "{events:#?}");
    let tagged = events.iter().any(|env| {
        env["events"][0]["target"]["tag"] == "v1"
            && s(&env["events"][0]["request"]["useragent"]).starts_with("skopeo/")
    });
    assert!(tagged, "no manifest push from skopeo: {events:#?}");
    // /metrics (curl) shows the queue depth.
    let out = std::process::Command::new("curl")
        .args(["-sSf"])
        .arg(format!("http://127.0.0.1:{admin}/metrics"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let queued = text
        .lines()
        .find_map(|l| l.strip_prefix("berth_notifications_queued{endpoint=\"hook\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no queue gauge in {text}"));
    assert!(queued >= 3, "{text}");
}
