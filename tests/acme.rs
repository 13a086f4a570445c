//! ACME end to end against Debian's pebble, with pebble-challtestsrv as the DNS server
//! that resolves the test names to 127.0.0.1: issuance with http-01 only and with
//! tls-alpn-01 only, verified by openssl against pebble's root and used by skopeo;
//! renewal while a connection stays open; backoff while the CA is down and recovery; the
//! CA's Retry-After on a rate limit and on orders (made by a proxy in front of pebble:
//! Debian's pebble 2.4 has neither rate limits nor Retry-After).

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAME: &str = "registry.berth.test";

struct Pebble {
    child: Child,
    dns: Child,
    dir: PathBuf,
    port: u16,
    mgmt: u16,
    dns_port: u16,
    http_port: u16,
    tls_port: u16,
}

impl Pebble {
    /// Starts pebble (with its own HTTPS certificate from a CA made here) validating
    /// challenges on `http_port` and `tls_port`.
    fn start(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        let dir = dir.join("pebble");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.distinguished_name
            .push(DnType::CommonName, "pebble test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf");
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
        std::fs::write(dir.join("cert.pem"), leaf.pem()).expect("write");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
        let (port, mgmt, dns_port) = (free_port(), free_port(), free_port());
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (apt-get install pebble)");
        let mut p = Pebble {
            child: dns, // replaced below
            dns: Command::new("true").spawn().expect("true"),
            dir,
            port,
            mgmt,
            dns_port,
            http_port,
            tls_port,
        };
        std::mem::swap(&mut p.child, &mut p.dns);
        // Another test may take a port between free_port() and pebble's bind: new ports.
        for _attempt in 0..3 {
            if let Some(c) = p.try_spawn_pebble() {
                p.child = c;
                return p;
            }
            p.port = free_port();
            p.mgmt = free_port();
        }
        panic!("pebble did not start: {}", p.log());
    }

    fn spawn_pebble(&self) -> Child {
        self.try_spawn_pebble()
            .unwrap_or_else(|| panic!("pebble did not start: {}", self.log()))
    }

    /// Starts pebble and waits for its directory; `None` (pebble stopped) when it does
    /// not answer within 20 s.
    fn try_spawn_pebble(&self) -> Option<Child> {
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", self.port),
            "managementListenAddress": format!("127.0.0.1:{}", self.mgmt),
            "certificate": self.dir.join("cert.pem"),
            "privateKey": self.dir.join("key.pem"),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let cfg = self.dir.join("pebble.json");
        std::fs::write(&cfg, config.to_string()).expect("write");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pebble.log"))
            .expect("log");
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(&cfg)
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble (apt-get install pebble)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if curl_ok(&self.directory(), &self.ca()) {
                return Some(child);
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    fn ca(&self) -> String {
        self.dir.join("ca.pem").to_string_lossy().into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// pebble's issuing root, from its management interface.
    fn root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", &self.ca()])
            .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt))
            .output()
            .expect("curl");
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
        let path = self.dir.join("root.pem");
        std::fs::write(&path, &pem).expect("write");
        path.to_string_lossy().into_owned()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        self.child = self.spawn_pebble();
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in [&mut self.child, &mut self.dns] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn curl_ok(url: &str, ca: &str) -> bool {
    Command::new("curl")
        .args([
            "-sSf",
            "-o",
            "/dev/null",
            "--max-time",
            "2",
            "--cacert",
            ca,
            url,
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start_berth(p: &Pebble, challenges: &str, redirect: bool, extra: &[(&str, &str)]) -> Berth {
    let tls_listen = format!("[\"127.0.0.1:{}\"]", p.tls_port);
    let redirect_listen = if redirect {
        format!("[\"127.0.0.1:{}\"]", p.http_port)
    } else {
        "[]".to_owned()
    };
    let dir = p.directory();
    let ca = p.ca();
    let mut env = vec![
        ("BERTH__TLS__MODE", "acme"),
        ("BERTH__TLS__LISTEN", tls_listen.as_str()),
        (
            "BERTH__TLS__HOSTNAMES",
            "[\"registry.berth.test\", \"localhost\"]",
        ),
        ("BERTH__TLS__ACME__DIRECTORY_URL", dir.as_str()),
        ("BERTH__TLS__ACME__CA_ROOTS", ca.as_str()),
        ("BERTH__TLS__ACME__EMAIL", "ops@berth.test"),
        ("BERTH__TLS__ACME__CHALLENGES", challenges),
        ("BERTH__HTTP__REDIRECT_LISTEN", redirect_listen.as_str()),
    ];
    env.extend_from_slice(extra);
    Berth::start(&env)
}

/// Waits (bounded) until the log has `needle` at least `n` times.
fn wait_count(b: &Berth, needle: &str, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if b.logs().matches(needle).count() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// openssl's view of the served chain for NAME: (verify line, subjects/issuers, serial).
fn inspect(port: u16, root: &str) -> (String, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {NAME} -CAfile {root} -showcerts </dev/null 2>&1"
        ))
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let serial = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {NAME} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .expect("openssl");
    (
        text,
        String::from_utf8_lossy(&serial.stdout).trim().to_owned(),
    )
}

/// Waits for the first certificate, checks the challenge was answered (the log line
/// `answered`) and that openssl verifies the served chain with pebble's root and sees its
/// intermediate. Returns the root's path and the served serial.
fn assert_issued(b: &Berth, p: &Pebble, tls_port: u16, answered: &str) -> (String, String) {
    assert!(
        wait_count(
            b,
            "ACME: new certificate swapped in",
            1,
            Duration::from_secs(60)
        ),
        "{}\n{}",
        b.logs(),
        p.log()
    );
    assert!(b.logs().contains(answered), "{}", b.logs());
    let root = p.root();
    let (text, serial) = inspect(tls_port, &root);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("Pebble Intermediate"), "{text}");
    (root, serial)
}

fn skopeo_push(dir: &Path, port: u16, root: &str) {
    let certs = dir.join("certs.d");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(root, certs.join("ca.crt")).expect("copy");
    let image = make_oci_layout(&dir.join("layout"));
    let st = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-cert-dir"])
        .arg(&certs)
        .arg(&image)
        .arg(format!("docker://localhost:{port}/acme/app:v1"))
        .output()
        .expect("skopeo");
    assert!(
        st.status.success(),
        "skopeo over the ACME certificate: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

#[test]
fn http01_issuance_renewal_backoff_and_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, tls_port) = (free_port(), free_port());
    let mut p = Pebble::start(dir.path(), http_port, tls_port);
    // renew_before far beyond pebble's lifetime: every certificate is due at once, so
    // renewal happens every retry_min.
    let b = start_berth(
        &p,
        "[\"http-01\"]",
        true,
        &[
            ("BERTH__TLS__ACME__RENEW_BEFORE", "\"36500d\""),
            ("BERTH__TLS__ACME__RETRY_MIN", "\"3s\""),
            ("BERTH__TLS__ACME__RETRY_MAX", "\"8s\""),
        ],
    );
    let (root, first) = assert_issued(&b, &p, tls_port, "answering the http-01 challenge");
    skopeo_push(dir.path(), tls_port, &root);

    // Renewal: a connection opened now survives the swap to a new serial.
    let open = HeldTls::open(tls_port, &["-servername", NAME, "-CAfile", &root]);
    assert!(
        wait_count(
            &b,
            "ACME: new certificate swapped in",
            2,
            Duration::from_secs(60)
        ),
        "{}",
        b.logs()
    );
    let (_, second) = inspect(tls_port, &root);
    assert_ne!(first, second, "a renewed certificate is served");
    let out = open.get_v2();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // The CA goes away: attempts back off (3 s doubling to 8 s, jittered), no storm, and
    // the current certificate keeps serving.
    p.stop();
    let failed = "ACME: obtaining a certificate failed";
    assert!(
        wait_count(&b, failed, 1, Duration::from_secs(30)),
        "{}",
        b.logs()
    );
    let at_first_failure = b.logs().matches(failed).count();
    let (_, before_outage) = inspect(tls_port, &root);
    std::thread::sleep(Duration::from_secs(12));
    let attempts = b.logs().matches(failed).count() - at_first_failure;
    assert!(
        (1..=4).contains(&attempts),
        "{attempts} attempts in 12 s: {}",
        b.logs()
    );
    let (_, during) = inspect(tls_port, &root);
    assert!(!during.is_empty());
    assert_eq!(
        during, before_outage,
        "the certificate in place keeps serving"
    );
    assert_eq!(call("GET", &b.url("/v2/"), &[], None).status, 200);

    // The CA is back (a fresh pebble: new root, and it knows no account): the next
    // attempt makes a new account and succeeds.
    let swapped = b.logs().matches("ACME: new certificate swapped in").count();
    p.restart();
    assert!(
        wait_count(
            &b,
            "ACME: new certificate swapped in",
            swapped + 1,
            Duration::from_secs(60)
        ),
        "{}\n{}",
        b.logs(),
        p.log()
    );
    let root2 = p.root();
    let (text, _) = inspect(tls_port, &root2);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");

    // Files: account and key 0600, certificate chain in place.
    use std::os::unix::fs::PermissionsExt;
    let state = b.dir.path().join("state/acme");
    for f in ["account.json", "key.pem"] {
        let mode = std::fs::metadata(state.join(f))
            .expect(f)
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // berth cert show reports the ACME source and the next renewal.
    let show = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cert", "show"])
        .env("BERTH__TLS__MODE", "acme")
        .env(
            "BERTH__TLS__HOSTNAMES",
            "[\"registry.berth.test\", \"localhost\"]",
        )
        .env("BERTH__STATE__DIR", b.dir.path().join("state"))
        .output()
        .expect("cert show");
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("source:   acme"), "{show}");
    assert!(show.contains("renewal:"), "{show}");
    // No secret in the log.
    assert!(!b.logs().contains("PRIVATE KEY"));
}

#[test]
fn tls_alpn01_issuance_on_the_tls_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, tls_port) = (free_port(), free_port());
    let p = Pebble::start(dir.path(), http_port, tls_port);
    // No :80 listener at all: only tls-alpn-01 can work.
    let b = start_berth(&p, "[\"tls-alpn-01\"]", false, &[]);
    let (root, _) = assert_issued(&b, &p, tls_port, "answered the tls-alpn-01 challenge");
    // Ordinary h2 traffic on the same port is untouched.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            &root,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(["--resolve", &format!("{NAME}:{tls_port}:127.0.0.1")])
        .arg(format!("https://{NAME}:{tls_port}/v2/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    // An acme-tls/1 handshake for a name with no pending challenge gets nothing.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{tls_port} -servername {NAME} -alpn acme-tls/1 </dev/null 2>&1"
        ))
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("BEGIN CERTIFICATE") && !text.contains("Server certificate"),
        "{text}"
    );
    skopeo_push(dir.path(), tls_port, &root);
}

/// What [`CaProxy`] does to the CA's answers.
#[derive(Default)]
struct Faults {
    /// The next newOrder requests are answered 429 rateLimited with these Retry-After
    /// seconds instead of reaching pebble.
    rate_limited_orders: Mutex<VecDeque<u64>>,
    /// For each new order, in the order they are first polled: how many polls answer
    /// "pending" (whatever pebble says), with what Retry-After seconds.
    order_plans: Mutex<VecDeque<(usize, u64)>>,
    orders: Mutex<HashMap<String, (usize, u64)>>,
    /// (when, request path, what the proxy did: "429", "pending" or "forwarded").
    events: Mutex<Vec<(Instant, String, &'static str)>>,
}

impl Faults {
    fn events(&self, path_prefix: &str) -> Vec<(Instant, &'static str)> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, p, _)| p.starts_with(path_prefix))
            .map(|(t, _, what)| (*t, *what))
            .collect()
    }
}

/// An HTTPS proxy in front of pebble (with pebble's own certificate) that answers what
/// pebble cannot: rate limits and Retry-After. Requests keep their Host header, so pebble
/// writes the proxy's address into every URL it hands out.
struct CaProxy {
    port: u16,
    faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
}

impl CaProxy {
    fn start(p: &Pebble) -> CaProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(p.dir.join("cert.pem"))
                .expect("cert.pem")
                .collect::<Result<_, _>>()
                .expect("cert.pem");
        let key = PrivateKeyDer::from_pem_file(p.dir.join("key.pem")).expect("key.pem");
        let server = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config"),
        );
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(p.dir.join("ca.pem")).expect("ca.pem"))
            .expect("root");
        let client = Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let faults = Arc::new(Faults::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s, upstream) = (faults.clone(), stop.clone(), p.port);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (server, client, f) = (server.clone(), client.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, server, client, upstream, &f);
                });
            }
        });
        CaProxy { port, faults, stop }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }
}

impl Drop for CaProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request (the proxy answers `Connection: close`, so hyper sends one per connection).
fn proxy_one(
    conn: TcpStream,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    upstream: u16,
    faults: &Faults,
) -> std::io::Result<()> {
    let io = |e: rustls::Error| std::io::Error::other(e);
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls =
        rustls::StreamOwned::new(rustls::ServerConnection::new(server).map_err(io)?, conn);
    let (head, body) = read_message(&mut tls, true)?;
    let mut words = head.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or_default().to_owned(),
        words.next().unwrap_or_default().to_owned(),
    );
    let record = |what| {
        faults
            .events
            .lock()
            .expect("lock")
            .push((Instant::now(), path.clone(), what))
    };
    if method == "POST" && path == "/order-plz" {
        let limited = faults.rate_limited_orders.lock().expect("lock").pop_front();
        if let Some(secs) = limited {
            record("429");
            let problem = br#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders recently","status":429}"#;
            let answer = format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/problem+json\r\nRetry-After: {secs}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                problem.len()
            );
            tls.write_all(answer.as_bytes())?;
            tls.write_all(problem)?;
            tls.conn.send_close_notify();
            return tls.flush();
        }
    }

    // To pebble, as HTTP/1.0: an answer delimited by the end of the connection.
    let tcp = TcpStream::connect(("127.0.0.1", upstream))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    let mut up = rustls::StreamOwned::new(
        rustls::ClientConnection::new(client, name).map_err(io)?,
        tcp,
    );
    let mut request = format!("{method} {path} HTTP/1.0\r\n");
    for line in head.lines().skip(1) {
        if !line.is_empty() && !line.to_ascii_lowercase().starts_with("connection:") {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    up.write_all(request.as_bytes())?;
    up.write_all(&body)?;
    up.flush()?;
    let (answer_head, mut answer_body) = read_message(&mut up, false)?;
    let mut lines = answer_head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("502")
        .to_owned();
    let mut headers: Vec<String> = lines
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.is_empty()
                && !l.starts_with("content-length:")
                && !l.starts_with("connection:")
                && !l.starts_with("transfer-encoding:")
        })
        .map(str::to_owned)
        .collect();
    let mut what = "forwarded";
    if method == "POST" && path.starts_with("/my-order/") {
        let mut orders = faults.orders.lock().expect("lock");
        if !orders.contains_key(&path) {
            let plan = faults.order_plans.lock().expect("lock").pop_front();
            orders.insert(path.clone(), plan.unwrap_or((0, 0)));
        }
        if let Some((left, secs)) = orders.get_mut(&path).filter(|(left, _)| *left > 0) {
            *left -= 1;
            let mut order: serde_json::Value =
                serde_json::from_slice(&answer_body).map_err(std::io::Error::other)?;
            order["status"] = "pending".into();
            answer_body = serde_json::to_vec(&order).map_err(std::io::Error::other)?;
            headers.push(format!("Retry-After: {secs}"));
            what = "pending";
        }
    }
    record(what);
    let mut answer = format!("HTTP/1.1 {status} Proxied\r\n");
    for h in headers {
        answer.push_str(&h);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer_body.len()
    ));
    tls.write_all(answer.as_bytes())?;
    tls.write_all(&answer_body)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// An HTTP message's head (up to the blank line) and body: `Content-Length` bytes of a
/// request, everything up to the end of the stream for an answer.
fn read_message(stream: &mut impl Read, request: bool) -> std::io::Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 || data.len() > 1 << 20 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut body = data[end + 4..].to_vec();
    if request {
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while body.len() < length {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            body.extend_from_slice(&buf[..n]);
        }
    } else {
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
                // Go closes without waiting: the data up to there is the answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok((head, body))
}

/// The `retry_in_s=` of the `n`th failure line (1-based) in the log.
fn retry_in_s(logs: &str, n: usize) -> Option<u64> {
    let line = logs
        .lines()
        .filter(|l| l.contains("ACME: obtaining a certificate failed"))
        .nth(n - 1)?;
    let rest = &line[line.find("retry_in_s=")? + "retry_in_s=".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_cas_retry_after_paces_rate_limits_and_orders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, tls_port) = (free_port(), free_port());
    let p = Pebble::start(dir.path(), http_port, tls_port);
    let proxy = CaProxy::start(&p);
    // The first new order is rate limited for 4 s; the next order's first two polls say
    // "pending, poll again in 2 s"; the renewal's order says "again in 300 s", beyond what
    // one attempt polls (90 s).
    proxy
        .faults
        .rate_limited_orders
        .lock()
        .expect("lock")
        .push_back(4);
    proxy
        .faults
        .order_plans
        .lock()
        .expect("lock")
        .extend([(2, 2), (1, 300)]);
    let directory = proxy.directory();
    // retry_min 1 s: the backoff alone would retry within about a second; retry_max 60 s:
    // a rate limit without Retry-After would wait a minute.
    let b = start_berth(
        &p,
        "[\"http-01\"]",
        true,
        &[
            ("BERTH__TLS__ACME__DIRECTORY_URL", directory.as_str()),
            ("BERTH__TLS__ACME__RENEW_BEFORE", "\"36500d\""),
            ("BERTH__TLS__ACME__RETRY_MIN", "\"1s\""),
            ("BERTH__TLS__ACME__RETRY_MAX", "\"60s\""),
        ],
    );
    let (root, _) = assert_issued(&b, &p, tls_port, "answering the http-01 challenge");

    // The rate limit: the next new order came after the CA's 4 s, not after the backoff
    // (about 1 s) nor the longest backoff (60 s).
    let new_orders = proxy.faults.events("/order-plz");
    assert!(new_orders.len() >= 2, "{new_orders:?}");
    assert_eq!(new_orders[0].1, "429");
    assert_eq!(new_orders[1].1, "forwarded");
    let waited = new_orders[1].0 - new_orders[0].0;
    assert!(
        waited >= Duration::from_millis(3_800) && waited < Duration::from_secs(20),
        "new order {waited:?} after the 429 with Retry-After: 4\n{}",
        b.logs()
    );
    let first = retry_in_s(&b.logs(), 1);
    assert!(matches!(first, Some(3..=4)), "{first:?}: {}", b.logs());
    assert!(b.logs().contains("ca_retry_after_s="), "{}", b.logs());

    // The order: polled again only when the CA said, twice 2 s apart (instant-acme's own
    // pace would be 0.25, 0.5, 1 s), then issued.
    let polls: Vec<Instant> = {
        let events = proxy.faults.events("/my-order/");
        let start = events
            .iter()
            .position(|(_, what)| *what == "pending")
            .expect("a faked poll");
        events[start..start + 3].iter().map(|(t, _)| *t).collect()
    };
    for pair in polls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1_900),
            "poll {gap:?} after Retry-After: 2"
        );
    }

    // The renewal's order wants to be polled in 300 s: the attempt ends and the next one
    // is planned for then, not after the backoff.
    assert!(
        wait_count(
            &b,
            "ACME: obtaining a certificate failed",
            2,
            Duration::from_secs(30)
        ),
        "{}",
        b.logs()
    );
    let second = retry_in_s(&b.logs(), 2);
    assert!(
        matches!(second, Some(290..=300)),
        "{second:?}: {}",
        b.logs()
    );
    let orders_then = proxy.faults.events("/order-plz").len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        proxy.faults.events("/order-plz").len(),
        orders_then,
        "no new order before the CA's time"
    );
    // The certificate in place keeps serving meanwhile.
    let (text, _) = inspect(tls_port, &root);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}
