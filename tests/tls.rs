//! TLS with real clients: certificates from files (chain order, bundling, warnings), the
//! self-signed homelab mode, HTTP/2, and reload on SIGHUP without dropping connections.
//! `openssl s_client`, `curl` and `skopeo` do the talking.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Pki {
    root: String,
    inter: String,
    inter_issuer: Issuer<'static, KeyPair>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

fn pki() -> Pki {
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca_params("berth test root");
    let root = root_params.self_signed(&root_key).expect("root");
    let root_issuer = Issuer::new(root_params, root_key);
    let inter_key = KeyPair::generate().expect("key");
    let inter_params = ca_params("berth test intermediate");
    let inter = inter_params
        .signed_by(&inter_key, &root_issuer)
        .expect("inter");
    Pki {
        root: root.pem(),
        inter: inter.pem(),
        inter_issuer: Issuer::new(inter_params, inter_key),
    }
}

/// A leaf for 127.0.0.1 and localhost: (certificate PEM, key PEM).
fn leaf(pki: &Pki, cn: &str) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.signed_by(&key, &pki.inter_issuer).expect("leaf");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p.to_string_lossy().into_owned()
}

fn start_tls(
    files: &tempfile::TempDir,
    cert: &str,
    key: &str,
    extra: &[(&str, &str)],
) -> (Berth, u16) {
    let port = free_port();
    let listen = format!("[\"127.0.0.1:{port}\"]");
    let mut env = vec![
        ("BERTH__TLS__MODE", "files"),
        ("BERTH__TLS__LISTEN", listen.as_str()),
        ("BERTH__TLS__CERTIFICATE", cert),
        ("BERTH__TLS__KEY", key),
        ("BERTH__TLS__HOSTNAMES", "[\"127.0.0.1\"]"),
    ];
    env.extend_from_slice(extra);
    let _ = files;
    (Berth::start(&env), port)
}

/// The subjects of the certificates the server sends, in order, and openssl's verdict.
fn served_chain(port: u16, ca: &str) -> (Vec<String>, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-showcerts",
            "-CAfile",
            ca,
            "-verify_return_error",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let subjects = text
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix(|c: char| c.is_ascii_digit())
                .and_then(|r| r.strip_prefix(" s:"))
        })
        .map(|s| s.trim().replace(" = ", "="))
        .collect();
    let verdict = text
        .lines()
        .find(|l| l.contains("Verify return code"))
        .unwrap_or("")
        .trim()
        .to_owned();
    (subjects, verdict)
}

fn served_serial(port: u16) -> String {
    let s = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -serial"))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&s.stdout).trim().to_owned()
}

fn file_serial(pem_path: &str) -> String {
    let s = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in", pem_path])
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&s.stdout).trim().to_owned()
}

#[test]
fn bundled_chain_is_served_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let (cert, key) = leaf(&pki, "registry leaf");
    let bundle = write(dir.path(), "bundle.crt", &format!("{cert}{}", pki.inter));
    let key = write(dir.path(), "domain.key", &key);
    let root = write(dir.path(), "root.pem", &pki.root);
    let (b, port) = start_tls(&dir, &bundle, &key, &[("BERTH__TLS__CA", root.as_str())]);
    let (subjects, verdict) = served_chain(port, &root);
    assert_eq!(
        subjects,
        vec!["CN=registry leaf", "CN=berth test intermediate"],
        "{verdict}"
    );
    assert!(verdict.contains("0 (ok)"), "{verdict}");
    assert!(!b.logs().contains("incomplete"), "{}", b.logs());
}

#[test]
fn shuffled_chain_with_root_is_reordered_and_root_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let (cert, key) = leaf(&pki, "registry leaf");
    let bundle = write(
        dir.path(),
        "bundle.crt",
        &format!("{}{}{cert}{}", pki.root, pki.inter, pki.inter),
    );
    let key = write(dir.path(), "domain.key", &key);
    let root = write(dir.path(), "root.pem", &pki.root);
    let (_b, port) = start_tls(&dir, &bundle, &key, &[]);
    let (subjects, verdict) = served_chain(port, &root);
    assert_eq!(
        subjects,
        vec!["CN=registry leaf", "CN=berth test intermediate"],
        "{verdict}"
    );
    assert!(verdict.contains("0 (ok)"), "{verdict}");
}

#[test]
fn separate_chain_file_and_leaf_only_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let (cert, key) = leaf(&pki, "registry leaf");
    let cert = write(dir.path(), "domain.crt", &cert);
    let key = write(dir.path(), "domain.key", &key);
    let chain = write(dir.path(), "intermediate.pem", &pki.inter);
    let root = write(dir.path(), "root.pem", &pki.root);
    let (_b, port) = start_tls(&dir, &cert, &key, &[("BERTH__TLS__CHAIN", chain.as_str())]);
    let (subjects, _) = served_chain(port, &root);
    assert_eq!(
        subjects,
        vec!["CN=registry leaf", "CN=berth test intermediate"]
    );

    // Leaf only: served, with a loud warning, and clients cannot verify it.
    let (b, port) = start_tls(&dir, &cert, &key, &[]);
    let (subjects, verdict) = served_chain(port, &root);
    assert_eq!(subjects, vec!["CN=registry leaf"]);
    assert!(!verdict.contains("0 (ok)"), "{verdict}");
    let logs = b.logs();
    assert!(
        logs.contains("WARN") && logs.contains("chain is incomplete"),
        "{logs}"
    );
}

#[test]
fn bad_files_at_start_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let (cert, _) = leaf(&pki, "leaf");
    let (_, other_key) = leaf(&pki, "other");
    let cert = write(dir.path(), "domain.crt", &cert);
    let wrong_key = write(dir.path(), "wrong.key", &other_key);
    let garbage = write(dir.path(), "garbage.crt", "not a certificate\n");
    for (c, k, expect) in [
        (cert.as_str(), wrong_key.as_str(), "does not match"),
        (garbage.as_str(), wrong_key.as_str(), "garbage.crt"),
        (
            cert.as_str(),
            "/nonexistent/key.pem",
            "/nonexistent/key.pem",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .env("BERTH__TLS__MODE", "files")
            .env(
                "BERTH__TLS__LISTEN",
                format!("[\"127.0.0.1:{}\"]", free_port()),
            )
            .env(
                "BERTH__HTTP__LISTEN",
                format!("[\"127.0.0.1:{}\"]", free_port()),
            )
            .env("BERTH__TLS__CERTIFICATE", c)
            .env("BERTH__TLS__KEY", k)
            .env("BERTH__STORAGE__ROOT", dir.path().join("store"))
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{expect}: {err}");
    }
}

#[test]
fn sighup_swaps_the_certificate_and_keeps_open_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let (cert1, key1) = leaf(&pki, "first");
    let cert = write(dir.path(), "bundle.crt", &format!("{cert1}{}", pki.inter));
    let key = write(dir.path(), "domain.key", &key1);
    let root = write(dir.path(), "root.pem", &pki.root);
    let (b, port) = start_tls(&dir, &cert, &key, &[]);
    let first = served_serial(port);
    assert_eq!(first, file_serial(&cert));

    // A connection opened before the swap.
    let open = HeldTls::open(port, &["-CAfile", &root]);

    let (cert2, key2) = leaf(&pki, "second");
    std::fs::write(&cert, format!("{cert2}{}", pki.inter)).expect("write");
    std::fs::write(&key, key2).expect("write");
    let _ = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status();
    let mut second = String::new();
    for _ in 0..50 {
        second = served_serial(port);
        if second != first {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(second, file_serial(&cert), "the new certificate is served");

    // The old connection still works.
    let out = open.get_v2();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // A broken pair: the current certificate stays, the reason is logged.
    std::fs::write(&key, leaf(&pki, "unrelated").1).expect("write");
    let _ = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(served_serial(port), second);
    assert!(
        b.logs().contains("certificate reload failed"),
        "{}",
        b.logs()
    );
    assert_eq!(
        call("GET", &b.url("/v2/"), &[], None).status,
        200,
        "still serving"
    );
}

#[test]
fn self_signed_mode_with_skopeo_podman_curl_h2_and_cert_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = free_port();
    let listen = format!("[\"127.0.0.1:{port}\"]");
    let state_s = state.to_string_lossy().into_owned();
    let b = Berth::start(&[
        ("BERTH__TLS__MODE", "self-signed"),
        ("BERTH__TLS__LISTEN", listen.as_str()),
        ("BERTH__TLS__HOSTNAMES", "[\"registry.lan\"]"),
        ("BERTH__STATE__DIR", state_s.as_str()),
    ]);
    let ca = state.join("tls/ca.crt");
    assert!(
        b.logs().contains("/etc/containers/certs.d/"),
        "{}",
        b.logs()
    );

    // berth cert ca prints the CA; berth cert show describes the served certificate.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cert", "ca"])
        .env("BERTH__TLS__MODE", "self-signed")
        .env("BERTH__STATE__DIR", &state)
        .output()
        .expect("cert ca");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&ca).expect("ca")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["cert", "show"])
        .env("BERTH__TLS__MODE", "self-signed")
        .env("BERTH__TLS__HOSTNAMES", "[\"registry.lan\"]")
        .env("BERTH__TLS__LISTEN", &listen)
        .env("BERTH__STATE__DIR", &state)
        .output()
        .expect("cert show");
    let show = String::from_utf8_lossy(&out.stdout);
    assert!(show.contains("source:   self-signed"), "{show}");
    assert!(
        show.contains("registry.lan") && show.contains("127.0.0.1"),
        "{show}"
    );
    assert!(show.contains("days left"), "{show}");
    let serial = served_serial(port)
        .replace("serial=", "")
        .to_ascii_lowercase();
    let serial: Vec<String> = serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(show.contains(&serial.join(":")), "{show}");

    // curl negotiates h2 and trusts the CA.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            &ca.to_string_lossy(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("https://127.0.0.1:{port}/v2/"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A 1 GiB blob pushed (one streamed PUT) and pulled over h2 matches its digest.
    let blob = dir.path().join("blob");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 1G /dev/urandom > {}", blob.display()))
        .status()
        .expect("head");
    assert!(st.success());
    let d = format!("sha256:{}", sha256sum_file(&blob));
    let cacert = ca.to_string_lossy().into_owned();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            &cacert,
            "-X",
            "POST",
            "-D",
            "-",
            "-o",
            "/dev/null",
        ])
        .arg(format!("https://127.0.0.1:{port}/v2/h2/blobs/uploads/"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("location")
        .trim()
        .to_owned();
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--cacert", &cacert, "-X", "PUT", "-T"])
        .arg(&blob)
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{location}?digest={d}"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 201",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&blob).expect("rm");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --http2 --cacert {cacert} https://127.0.0.1:{port}/v2/h2/blobs/{d} | sha256sum"
        ))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        d.strip_prefix("sha256:")
    );

    // skopeo trusts the CA through --dest-cert-dir / --src-cert-dir, no --tls-verify=false.
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(&ca, certs.join("ca.crt")).expect("copy");
    let layout = dir.path().join("layout");
    let image = make_oci_layout(&layout);
    let dest = format!("docker://127.0.0.1:{port}/tls/app:v1");
    let st = Command::new("skopeo")
        .args([
            "copy",
            "--dest-cert-dir",
            &certs.to_string_lossy(),
            &image,
            &dest,
        ])
        .output()
        .expect("skopeo");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let back = format!("oci:{}:app", dir.path().join("back").display());
    let st = Command::new("skopeo")
        .args([
            "copy",
            "--src-cert-dir",
            &certs.to_string_lossy(),
            &dest,
            &back,
        ])
        .output()
        .expect("skopeo");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // podman pulls and pushes with the CA from --cert-dir, no --tls-verify=false.
    let p = dir.path().join("podman");
    let podman = |args: &[&str]| {
        let out = podman(&p).args(args).output().expect("podman");
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let certs_s = certs.to_string_lossy().into_owned();
    let src = format!("127.0.0.1:{port}/tls/app:v1");
    let dst = format!("127.0.0.1:{port}/tls/podman:v2");
    podman(&["pull", "-q", "--cert-dir", &certs_s, &src]);
    podman(&["tag", &src, &dst]);
    podman(&["push", "-q", "--cert-dir", &certs_s, &dst]);
    let r = Command::new("curl")
        .args(["-sS", "--cacert", &cacert])
        .arg(format!("https://127.0.0.1:{port}/v2/tls/podman/tags/list"))
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("\"v2\""),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    // Without the CA, skopeo refuses the certificate.
    let st = Command::new("skopeo")
        .args([
            "inspect",
            "--cert-dir",
            &dir.path().to_string_lossy(),
            &dest,
        ])
        .output()
        .expect("skopeo");
    assert!(!st.status.success());
}

#[test]
fn plain_listener_redirects_to_https_and_hsts_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state").to_string_lossy().into_owned();
    let (port, rport) = (free_port(), free_port());
    let listen = format!("[\"127.0.0.1:{port}\"]");
    let redirect = format!("[\"127.0.0.1:{rport}\"]");
    let b = Berth::start(&[
        ("BERTH__TLS__MODE", "self-signed"),
        ("BERTH__TLS__LISTEN", listen.as_str()),
        ("BERTH__HTTP__REDIRECT_LISTEN", redirect.as_str()),
        ("BERTH__HTTP__HSTS", "true"),
        ("BERTH__STATE__DIR", state.as_str()),
    ]);
    let r = call(
        "GET",
        &format!("http://127.0.0.1:{rport}/v2/app/tags/list?n=5"),
        &[("Host", "registry.lan")],
        None,
    );
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("Location"),
        Some(format!("https://registry.lan:{port}/v2/app/tags/list?n=5").as_str())
    );
    // HSTS on TLS responses only.
    let ca = dir.path().join("state/tls/ca.crt");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            &ca.to_string_lossy(),
        ])
        .arg(format!("https://127.0.0.1:{port}/v2/"))
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        headers.contains("strict-transport-security: max-age=31536000"),
        "{headers}"
    );
    assert_eq!(
        call("GET", &b.url("/v2/"), &[], None).header("Strict-Transport-Security"),
        None
    );
    // A redirect port that cannot be bound is skipped with a warning, not fatal.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = format!("[\"{}\"]", blocker.local_addr().expect("addr"));
    let listen2 = format!("[\"127.0.0.1:{}\"]", free_port());
    let b2 = Berth::start(&[
        ("BERTH__TLS__MODE", "self-signed"),
        ("BERTH__TLS__LISTEN", listen2.as_str()),
        ("BERTH__HTTP__REDIRECT_LISTEN", taken.as_str()),
        ("BERTH__STATE__DIR", state.as_str()),
    ]);
    assert!(
        b2.logs()
            .contains("cannot listen (plain HTTP, redirects to https)"),
        "{}",
        b2.logs()
    );
}

#[test]
fn replaced_files_are_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let (cert1, key1) = leaf(&pki, "before");
    let cert = write(dir.path(), "bundle.crt", &format!("{cert1}{}", pki.inter));
    let key = write(dir.path(), "domain.key", &key1);
    let (_b, port) = start_tls(&dir, &cert, &key, &[]);
    let first = served_serial(port);
    // Replace both files atomically, as certbot-style tools do.
    let (cert2, key2) = leaf(&pki, "after");
    write(dir.path(), "bundle.new", &format!("{cert2}{}", pki.inter));
    write(dir.path(), "key.new", &key2);
    std::fs::rename(dir.path().join("key.new"), &key).expect("rename");
    std::fs::rename(dir.path().join("bundle.new"), &cert).expect("rename");
    let mut now = first.clone();
    for _ in 0..60 {
        now = served_serial(port);
        if now != first {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        now,
        file_serial(&cert),
        "the replaced certificate is served"
    );
}

fn sha256sum_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}
