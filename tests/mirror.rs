//! The pull-through cache (`[[proxy.upstreams]]`) against upstreams on loopback: a second
//! berth (a real registry) and a hand-written registry that counts what it is asked, can
//! lie about its bytes, and can send its clients to a token realm on another host.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (method, path, Authorization) of each request a fake upstream answered.
type RequestLog = Mutex<Vec<(String, String, Option<String>)>>;

/// How the hand-written upstream misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Lie {
    None,
    /// One byte of the blob is changed.
    Corrupt,
    /// Half the blob, then the connection closes.
    Truncate,
}

/// A registry on loopback with one repository `library/app`, tag `v1`: one manifest, one
/// config, one layer. It logs every request (method, path, Authorization).
struct Fake {
    port: u16,
    log: Arc<RequestLog>,
    manifest_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

struct FakeSetup {
    lie: Lie,
    /// `Some(realm)`: a request without `Authorization: Bearer good-token` gets a 401 Bearer
    /// challenge naming this realm.
    realm: Option<String>,
    /// Pause between 64 KiB pieces of a blob (so that concurrent pulls overlap).
    pace: Duration,
}

impl Fake {
    /// `SELF` in the realm is the fake's own address.
    fn start(mut setup: FakeSetup) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        setup.realm = setup
            .realm
            .map(|r| r.replace("SELF", &format!("127.0.0.1:{port}")));
        let layer: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let (ld, cd) = (sha256(&layer), sha256(&config));
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
        }))
        .expect("json");
        let md = sha256(&manifest);
        let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
        blobs.insert(ld.clone(), layer.clone());
        blobs.insert(cd, config);
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new((manifest, md.clone(), blobs, setup));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(10_000) {
                let Ok(conn) = conn else { continue };
                let (shared, log) = (shared.clone(), log2.clone());
                std::thread::spawn(move || serve_fake(conn, &shared, &log));
            }
        });
        Fake {
            port,
            log,
            manifest_digest: md,
            layer,
            layer_digest: ld,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn count(&self, method: &str, path_part: &str) -> usize {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|(m, p, _)| m == method && p.contains(path_part))
            .count()
    }
}

type Shared = (Vec<u8>, String, HashMap<String, Vec<u8>>, FakeSetup);

fn serve_fake(conn: TcpStream, s: &Shared, log: &RequestLog) {
    let (manifest, md, blobs, setup) = s;
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut out = conn;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_owned());
            }
        }
    }
    log.lock()
        .expect("log")
        .push((method.clone(), path.clone(), auth.clone()));
    let send = |out: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = out.write_all(body);
        }
    };
    if let Some(realm) = &setup.realm {
        if path.starts_with("/v2/") && auth.as_deref() != Some("Bearer good-token") {
            let challenge = format!(
                "Bearer realm=\"{realm}\",service=\"fake\",scope=\"repository:library/app:pull\""
            );
            send(
                &mut out,
                "401 Unauthorized",
                &[("WWW-Authenticate", challenge)],
                b"{}",
            );
            return;
        }
    }
    if path.starts_with("/token") {
        send(
            &mut out,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            br#"{"token":"good-token","expires_in":300}"#,
        );
        return;
    }
    if path == "/v2/" {
        send(&mut out, "200 OK", &[], b"{}");
    } else if path.starts_with("/v2/library/app/manifests/") {
        let reference = path.rsplit('/').next().unwrap_or("");
        if reference == "v1" || reference == md {
            send(
                &mut out,
                "200 OK",
                &[
                    ("Content-Type", OCI_MANIFEST.into()),
                    ("Docker-Content-Digest", md.clone()),
                ],
                manifest,
            );
        } else {
            send(&mut out, "404 Not Found", &[], b"{}");
        }
    } else if let Some(d) = path.strip_prefix("/v2/library/app/blobs/") {
        let Some(bytes) = blobs.get(d) else {
            send(&mut out, "404 Not Found", &[], b"{}");
            return;
        };
        let mut body = bytes.clone();
        let head = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\nDocker-Content-Digest: {d}\r\n\r\n",
            body.len()
        );
        let _ = out.write_all(head.as_bytes());
        if method == "HEAD" {
            return;
        }
        let big = body.len() > 100_000;
        if big && setup.lie == Lie::Corrupt {
            body[1000] ^= 0xff;
        }
        let end = if big && setup.lie == Lie::Truncate {
            body.len() / 2
        } else {
            body.len()
        };
        for piece in body[..end].chunks(64 << 10) {
            if out.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(setup.pace);
        }
    } else {
        send(&mut out, "404 Not Found", &[], b"{}");
    }
}

fn mirror_env(url: &str, extra: &str) -> String {
    format!("[{{ name = \"docker.io\", url = \"{url}\", prefix = \"hub\"{extra} }}]")
}

fn blob_files(b: &Berth) -> usize {
    files_under(&b.root().join("docker/registry/v2/blobs"))
        .iter()
        .filter(|p| p.ends_with("data"))
        .count()
}

/// GET of a blob; `None` when the body broke off (the client saw no whole response).
fn get_blob(url: &str) -> (u16, Option<Vec<u8>>) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    match agent.get(url).timeout(Duration::from_secs(60)).call() {
        Ok(r) => {
            let status = r.status();
            let mut body = Vec::new();
            let ok = r.into_reader().read_to_end(&mut body).is_ok();
            (status, ok.then_some(body))
        }
        Err(ureq::Error::Status(s, _)) => (s, None),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn pulls_through_a_real_registry_and_keeps_serving_it_offline() {
    let up = Berth::start(&[]);
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (_, d1) = push_image(&up, "library/app", "v1", &layer);
    let up_url = format!("http://127.0.0.1:{}", up.port);
    let m = Berth::start(&[(
        "BERTH__PROXY__UPSTREAMS",
        &mirror_env(&up_url, ", tag_ttl = \"1s\""),
    )]);

    // Docker Hub's implicit library/ for a one-component name.
    for repo in ["hub/app", "hub/library/app"] {
        let r = get_manifest(&m, repo, "v1");
        assert_eq!(
            r.status,
            200,
            "{repo}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("Docker-Content-Digest"), Some(d1.as_str()));
    }
    let ld = sha256(&layer);
    let (status, body) = get_blob(&m.url(&format!("/v2/hub/app/blobs/{ld}")));
    assert_eq!(status, 200);
    assert_eq!(
        body.as_deref(),
        Some(&layer[..]),
        "the layer through the mirror"
    );
    // Cached now: the same bytes from the local store, and a Range of them.
    let r = call(
        "GET",
        &m.url(&format!("/v2/hub/app/blobs/{ld}")),
        &[("Range", "bytes=10-19")],
        None,
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &layer[10..20]);
    let r = call("GET", &m.url("/v2/hub/app/tags/list"), &[], None);
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));
    let r = call("GET", &m.url("/v2/_catalog"), &[], None);
    assert!(
        r.json()["repositories"]
            .as_array()
            .is_some_and(|a| a.contains(&serde_json::json!("hub/app"))),
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    // containerd's ?ns= names the upstream; an unknown one is not dialled.
    let r = call(
        "GET",
        &m.url("/v2/library/app/manifests/v1?ns=docker.io"),
        &[("Accept", OCI_MANIFEST)],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Docker-Content-Digest"), Some(d1.as_str()));
    let r = call(
        "GET",
        &m.url("/v2/library/app/manifests/v1?ns=evil.example"),
        &[("Accept", OCI_MANIFEST)],
        None,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");

    // Read-only for clients.
    let r = call("POST", &m.url("/v2/hub/app/blobs/uploads/"), &[], None);
    assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "UNSUPPORTED");
    let r = call(
        "DELETE",
        &m.url(&format!("/v2/hub/app/manifests/{d1}")),
        &[],
        None,
    );
    assert_eq!(r.status, 405);
    // A repository outside the prefix still takes pushes.
    push_image(&m, "local/app", "v1", b"local layer");

    // The tag moves upstream: the mirror follows once tag_ttl has passed.
    let layer2: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let (_, d2) = push_image(&up, "library/app", "v1", &layer2);
    std::thread::sleep(Duration::from_millis(1200));
    let r = get_manifest(&m, "hub/app", "v1");
    assert_eq!(r.header("Docker-Content-Digest"), Some(d2.as_str()));

    // Upstream gone: what is cached is served (a tag past its TTL too), and what is not
    // gets a 503 naming the upstream.
    let _ = up.stop();
    std::thread::sleep(Duration::from_millis(1200));
    let r = get_manifest(&m, "hub/app", "v1");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Docker-Content-Digest"), Some(d2.as_str()));
    let r = get_manifest(&m, "hub/app", &d1);
    assert_eq!(r.status, 200);
    let (status, body) = get_blob(&m.url(&format!("/v2/hub/app/blobs/{ld}")));
    assert_eq!((status, body.as_deref()), (200, Some(&layer[..])));
    let r = get_manifest(&m, "hub/app", "v2");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "UNAVAILABLE");
    let msg = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        msg.contains("docker.io") && msg.contains("hub/app:v2"),
        "{msg}"
    );
    let logs = m.logs();
    assert!(logs.contains("serving the cached tag"), "{logs}");
}

#[test]
fn a_hundred_cold_pulls_make_one_upstream_fetch() {
    let up = Fake::start(FakeSetup {
        lie: Lie::None,
        realm: None,
        pace: Duration::from_millis(20),
    });
    let admin = free_port();
    let admin_listen = format!("[\"127.0.0.1:{admin}\"]");
    let m = Berth::start(&[
        ("BERTH__PROXY__UPSTREAMS", &mirror_env(&up.url(), "")),
        ("BERTH__HTTP__ADMIN_LISTEN", &admin_listen),
    ]);
    let murl = format!("http://127.0.0.1:{}", m.port);
    let (md, ld) = (up.manifest_digest.clone(), up.layer_digest.clone());
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (murl, md, ld) = (murl.clone(), md.clone(), ld.clone());
            std::thread::spawn(move || {
                let r = call(
                    "GET",
                    &format!("{murl}/v2/hub/app/manifests/v1"),
                    &[("Accept", OCI_MANIFEST)],
                    None,
                );
                assert_eq!(r.status, 200);
                assert_eq!(r.header("Docker-Content-Digest"), Some(md.as_str()));
                get_blob(&format!("{murl}/v2/hub/app/blobs/{ld}"))
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().expect("puller");
        assert_eq!(status, 200);
        assert_eq!(body.as_deref(), Some(&up.layer[..]));
    }
    assert_eq!(
        up.count("GET", &format!("/blobs/{ld}")),
        1,
        "one blob fetch"
    );
    assert_eq!(up.count("GET", "/manifests/v1"), 1, "one manifest fetch");
    let metrics = call(
        "GET",
        &format!("http://127.0.0.1:{admin}/metrics"),
        &[],
        None,
    );
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("berth_proxy_blob_fetches_total 1"), "{text}");
    assert!(
        text.contains("berth_proxy_manifest_fetches_total 1"),
        "{text}"
    );
    let coalesced: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("berth_proxy_coalesced_total "))
        .and_then(|v| v.parse().ok())
        .expect("coalesced figure");
    assert!(coalesced > 0, "{text}");
}

#[test]
fn an_upstream_that_lies_never_gets_into_the_store() {
    for lie in [Lie::Corrupt, Lie::Truncate] {
        let up = Fake::start(FakeSetup {
            lie,
            realm: None,
            pace: Duration::ZERO,
        });
        let m = Berth::start(&[("BERTH__PROXY__UPSTREAMS", &mirror_env(&up.url(), ""))]);
        let url = m.url(&format!("/v2/hub/app/blobs/{}", up.layer_digest));
        for attempt in 1..=2 {
            let (status, body) = get_blob(&url);
            // Either refused up front or cut off: never a whole body with these bytes.
            assert!(
                status != 200 || body.is_none(),
                "attempt {attempt}: a whole {} body",
                body.map_or(0, |b| b.len())
            );
            assert_eq!(
                up.count("GET", &format!("/blobs/{}", up.layer_digest)),
                attempt,
                "nothing was kept, so each pull asks again"
            );
        }
        assert_eq!(blob_files(&m), 0, "no blob in the store");
        assert!(m.logs().contains("a blob from upstream was refused"));
    }
}

#[test]
fn credentials_go_to_the_upstream_and_its_own_realm_only() {
    // A token realm on another host (127.0.0.2): the upstream's challenge names it, and it
    // is not in the upstream's realms setting.
    let foreign = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let fport = foreign.local_addr().expect("addr").port();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in foreign.incoming().take(100) {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut auth = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = Some(v.trim().to_owned());
                    }
                }
            }
            seen2.lock().expect("seen").push(auth);
            let body = br#"{"token":"good-token","expires_in":300}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret-upstream-password\n").expect("pw");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let creds = format!(
        ", username = \"mirror\", password_file = \"{}\"",
        pw.display()
    );

    // 1. Foreign realm: the token request carries no credentials, and still works.
    let up = Fake::start(FakeSetup {
        lie: Lie::None,
        realm: Some(format!("http://127.0.0.2:{fport}/token")),
        pace: Duration::ZERO,
    });
    let m = Berth::start(&[("BERTH__PROXY__UPSTREAMS", &mirror_env(&up.url(), &creds))]);
    let r = get_manifest(&m, "hub/app", "v1");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let asked = seen.lock().expect("seen").clone();
    assert!(!asked.is_empty(), "the foreign realm was asked for a token");
    assert!(
        asked.iter().all(Option::is_none),
        "credentials went to a foreign realm: {asked:?}"
    );
    assert!(
        up.log
            .lock()
            .expect("log")
            .iter()
            .all(|(_, _, a)| a.as_deref().is_none_or(|a| a == "Bearer good-token")),
        "only the token goes to the upstream"
    );
    assert!(!m.logs().contains("s3cret-upstream-password"));

    // 2. The realm on the upstream's own host gets them (Basic), as operators mean.
    let own = Fake::start(FakeSetup {
        lie: Lie::None,
        realm: Some("http://SELF/token".into()),
        pace: Duration::ZERO,
    });
    let m2 = Berth::start(&[("BERTH__PROXY__UPSTREAMS", &mirror_env(&own.url(), &creds))]);
    let r = get_manifest(&m2, "hub/app", "v1");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let token_auth: Vec<Option<String>> = own
        .log
        .lock()
        .expect("log")
        .iter()
        .filter(|(_, p, _)| p.starts_with("/token"))
        .map(|(_, _, a)| a.clone())
        .collect();
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("mirror:s3cret-upstream-password")
    );
    assert_eq!(token_auth, vec![Some(basic)]);
}
