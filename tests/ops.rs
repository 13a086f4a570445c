//! Operations: the admin listener (Prometheus `/metrics`, `/healthz`, `/readyz`), the
//! access log's user, and read-only mode toggled by SIGHUP.

mod common;

use common::*;
use std::collections::HashMap;
use std::process::Command;

/// Scrapes `/metrics` with curl, as a Prometheus server would, and parses the text
/// format into "name{labels}" -> value.
fn scrape(port: u16) -> HashMap<String, f64> {
    let out = Command::new("curl")
        .args(["-sSf", "-D", "/dev/stderr"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("sample line");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(name.to_owned(), v);
    }
    out
}

/// berth with its admin listener and self-signed TLS on free ports: (berth, admin port,
/// TLS port).
fn start_with_admin_and_tls() -> (Berth, u16, u16) {
    let admin = free_port();
    let tls_port = free_port();
    let admin_listen = format!("[\"127.0.0.1:{admin}\"]");
    let tls_listen = format!("[\"127.0.0.1:{tls_port}\"]");
    let b = Berth::start(&[
        ("BERTH__HTTP__ADMIN_LISTEN", admin_listen.as_str()),
        ("BERTH__TLS__MODE", "self-signed"),
        ("BERTH__TLS__LISTEN", tls_listen.as_str()),
        ("BERTH__TLS__HOSTNAMES", "[\"127.0.0.1\"]"),
    ]);
    (b, admin, tls_port)
}

#[test]
fn metrics_and_health_on_the_admin_listener() {
    let (b, admin, _) = start_with_admin_and_tls();
    let get = |path: &str| call("GET", &format!("http://127.0.0.1:{admin}{path}"), &[], None);
    assert_eq!(get("/healthz").status, 200);
    let r = get("/readyz");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        get("/v2/").status,
        404,
        "the registry is not on the admin listener"
    );
    assert_eq!(
        call("GET", &b.url("/metrics"), &[], None).status,
        404,
        "nor metrics on the public one"
    );

    let before = scrape(admin);
    let days = before["berth_certificate_days_left"];
    assert!(
        (300.0..=800.0).contains(&days),
        "self-signed certificate: {days} days"
    );
    assert_eq!(before["berth_read_only"], 0.0);
    let put = "berth_http_requests_total{endpoint=\"manifest\",method=\"PUT\",status=\"201\"}";
    let layer = vec![9u8; 300_000];
    push_image(&b, "ops/app", "v1", &layer);
    let r = get_manifest(&b, "ops/app", "v1");
    assert_eq!(r.status, 200);
    assert_eq!(
        call("GET", &b.url("/v2/ops/nothing/manifests/v1"), &[], None).status,
        404
    );
    let after = scrape(admin);
    let n = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    assert_eq!(n(&after, put) - n(&before, put), 1.0);
    assert_eq!(
        n(&after, "berth_uploads_total") - n(&before, "berth_uploads_total"),
        2.0
    );
    assert!(
        n(&after, "berth_upload_bytes_total") - n(&before, "berth_upload_bytes_total") >= 300_000.0
    );
    let get200 = "berth_http_requests_total{endpoint=\"manifest\",method=\"GET\",status=\"200\"}";
    assert_eq!(n(&after, get200) - n(&before, get200), 1.0);
    let get404 = "berth_http_requests_total{endpoint=\"manifest\",method=\"GET\",status=\"404\"}";
    assert_eq!(n(&after, get404) - n(&before, get404), 1.0);
    assert!(
        n(&after, "berth_http_received_bytes_total")
            - n(&before, "berth_http_received_bytes_total")
            >= 300_000.0
    );
    assert!(
        n(&after, "berth_storage_blob_bytes") - n(&before, "berth_storage_blob_bytes") >= 300_000.0
    );
    let count = "berth_http_request_duration_seconds_count{endpoint=\"manifest\"}";
    assert!(n(&after, count) >= 3.0);
    let inf = "berth_http_request_duration_seconds_bucket{endpoint=\"manifest\",le=\"+Inf\"}";
    assert_eq!(n(&after, inf), n(&after, count));

    // The store stops taking writes (the probe file's name is taken by a directory,
    // which works as root too): /readyz says so, and recovers.
    let blocker = b.root().join(".berth-ready");
    std::fs::create_dir_all(blocker.join("x")).expect("mkdir");
    let r = get("/readyz");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("store not writable"));
    std::fs::remove_dir_all(&blocker).expect("rmdir");
    assert_eq!(get("/readyz").status, 200);
}

#[test]
fn read_only_mode_refuses_writes_and_sighup_toggles_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("appliance.toml");
    let write =
        |on: bool| std::fs::write(&conf, format!("[storage]\nread_only = {on}\n")).expect("config");
    write(false);
    let conf_s = conf.to_string_lossy().into_owned();
    let b = Berth::start(&[("BERTH_CONFIG", conf_s.as_str())]);
    push_image(&b, "ro/app", "v1", b"layer one");
    write(true);
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &b.pid().to_string()])
            .status()
            .expect("kill")
            .success())
    };
    hup();
    assert!(b.wait_log("storage.read_only changed"), "{}", b.logs());
    // curl sees the refusal and its reason.
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-w", "\n%{http_code}"])
        .arg(b.url("/v2/ro/app/blobs/uploads/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n503"), "{text}");
    assert!(
        text.contains("\"UNAVAILABLE\"") && text.contains("read-only"),
        "{text}"
    );
    let r = call("DELETE", &b.url("/v2/ro/app/manifests/v1"), &[], None);
    assert_eq!(r.status, 503);
    // Pulls go on.
    let r = get_manifest(&b, "ro/app", "v1");
    assert_eq!(r.status, 200);
    // The collector leaves a read-only store alone.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["gc", "-c", &conf_s])
        .env("BERTH__STORAGE__ROOT", b.root())
        .output()
        .expect("berth gc");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read_only"));
    write(false);
    hup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = call("POST", &b.url("/v2/ro/app/blobs/uploads/"), &[], None).status;
        if s == 202 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not come back: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The access log names the endpoint's user ("-" without auth).
    assert!(
        b.logs().contains("user=\"-\"") || b.logs().contains("user=-"),
        "{}",
        b.logs()
    );
}

#[test]
fn a_whole_repository_is_deleted_and_its_space_comes_back_at_gc() {
    let b = Berth::start(&[]);
    let (_, d_outer) = push_image(&b, "team/app", "v1", b"outer layer, only here");
    push_image(&b, "team/app/sub", "v1", b"nested layer");
    let catalog = |b: &Berth| -> Vec<String> {
        call("GET", &b.url("/v2/_catalog"), &[], None).json()["repositories"]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(catalog(&b), vec!["team/app", "team/app/sub"]);
    let r = call(
        "DELETE",
        &b.url("/berth/v1/repositories/team/app"),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        catalog(&b),
        vec!["team/app/sub"],
        "the nested repository stays"
    );
    let r = call(
        "GET",
        &b.url(&format!("/v2/team/app/manifests/{d_outer}")),
        &[],
        None,
    );
    assert_eq!(r.status, 404);
    let r = get_manifest(&b, "team/app/sub", "v1");
    assert_eq!(r.status, 200);
    let r = call(
        "DELETE",
        &b.url("/berth/v1/repositories/team/app"),
        &[],
        None,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
    let outer_blob = sha256(b"outer layer, only here");
    let blob_file = b.root().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &outer_blob[7..9],
        &outer_blob[7..]
    ));
    assert!(
        blob_file.exists(),
        "the blob stays until the collector runs"
    );
    let dir = b.stop();
    let root = dir.path().join("store");
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env_remove("BERTH_CONFIG")
            .env("BERTH__STORAGE__ROOT", &root)
            .env("BERTH__GC__GRACE_PERIOD", "0s")
            .output()
            .expect("berth")
    };
    // The collector adds a second of slack to the grace period (whole-second mtimes).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = berth(&["gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !blob_file.exists(),
        "gc freed the deleted repository's blob"
    );
    let out = berth(&["repo", "rm", "team/app/sub"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted team/app/sub"));
    let out = berth(&["repo", "rm", "team/app/sub"]);
    assert_eq!(out.status.code(), Some(1));
    let b = Berth::start_in(dir, &[]);
    assert!(catalog(&b).is_empty());
}

/// Blobs over plain HTTP/1.1 go out with sendfile: whole, as ranges, and on a connection
/// that curl then reuses; over TLS they are streamed. Checked with curl byte for byte and
/// with `berth_sendfile_bytes_total`, which only the zero-copy path counts.
#[test]
fn plain_blob_pulls_are_sent_zero_copy_and_tls_ones_streamed() {
    let (b, admin, tls_port) = start_with_admin_and_tls();
    // Bigger than any socket buffer, and not a multiple of a page.
    let blob: Vec<u8> = (0..9_000_017u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = push_blob(&b, "zc/app", &blob);
    let path = format!("/v2/zc/app/blobs/{digest}");
    let out = b.dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let sent =
        |m: &HashMap<String, f64>| m.get("berth_sendfile_bytes_total").copied().unwrap_or(0.0);

    let before = sent(&scrape(admin));
    // Two whole GETs and a range in one curl run: one connection, reused.
    let run = Command::new("curl")
        .args(["-sSfv", "--http1.1"])
        .arg(b.url(&path))
        .arg("-o")
        .arg(out.join("a"))
        .arg(b.url(&path))
        .arg("-o")
        .arg(out.join("b"))
        .args(["--next", "-sSfv", "--http1.1", "-r", "1000-4999999"])
        .arg(b.url(&path))
        .arg("-o")
        .arg(out.join("c"))
        .output()
        .expect("curl");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert_eq!(std::fs::read(out.join("a")).expect("a"), blob);
    assert_eq!(std::fs::read(out.join("b")).expect("b"), blob);
    assert_eq!(
        std::fs::read(out.join("c")).expect("c"),
        &blob[1000..5_000_000]
    );
    assert!(
        log.matches("Re-using existing connection").count() >= 2
            || log.matches("Reusing existing").count() >= 2,
        "curl did not reuse the connection after a sendfile response:\n{log}"
    );
    assert!(log.contains("< HTTP/1.1 206"), "{log}");
    assert!(
        log.to_ascii_lowercase()
            .contains("< docker-content-digest: sha256:"),
        "{log}"
    );
    let after = sent(&scrape(admin));
    assert_eq!(
        after - before,
        (2 * blob.len() + 4_999_000) as f64,
        "every plain blob byte went by sendfile"
    );

    // A HEAD has no body to send; a missing blob is the spec's JSON error.
    let r = call("HEAD", &b.url(&path), &[], None);
    assert_eq!(r.status, 200);
    let missing = format!("/v2/zc/app/blobs/sha256:{}", "0".repeat(64));
    let r = call("GET", &b.url(&missing), &[], None);
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("BLOB_UNKNOWN"));

    // TLS (HTTP/1.1 and HTTP/2): streamed, same bytes, the counter does not move.
    let ca = b.dir.path().join("state/tls/ca.crt");
    for proto in ["--http1.1", "--http2"] {
        let run = Command::new("curl")
            .args(["-sSf", proto, "--cacert"])
            .arg(&ca)
            .arg(format!("https://127.0.0.1:{tls_port}{path}"))
            .arg("-o")
            .arg(out.join("t"))
            .output()
            .expect("curl");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(std::fs::read(out.join("t")).expect("t"), blob, "{proto}");
    }
    assert_eq!(
        sent(&scrape(admin)),
        after,
        "TLS responses are not sent by sendfile"
    );
}

/// Unmounts (lazily) when dropped, so a failing test leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk: the write that does not fit gets 507 with the spec's error JSON (curl sees
/// it), is rolled back, and loses nothing stored before; once space is freed, pushes work
/// again. The store is a 8 MiB tmpfs (the tests run as root in CI).
#[test]
fn a_full_disk_refuses_the_write_and_keeps_what_was_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&store)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIP: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _mount = Mount(store.clone());
    let b = Berth::start_in(dir, &[]);

    let kept: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 253) as u8).collect();
    let (_, kept_manifest) = push_image(&b, "full/app", "v1", &kept);
    let kept_digest = sha256(&kept);

    // A chunked upload (1 MiB PATCHes, so a refused chunk's rest is drained and the
    // answer arrives cleanly) runs into the end of the disk.
    let r = call("POST", &b.url("/v2/full/big/blobs/uploads/"), &[], None);
    assert_eq!(r.status, 202);
    let mut location = r.header("Location").expect("location").to_owned();
    let chunk = vec![1u8; 1 << 20];
    let chunk_file = b.dir.path().join("chunk");
    std::fs::write(&chunk_file, &chunk).expect("chunk");
    let mut offset = 0usize;
    let refused = loop {
        assert!(offset < (16 << 20), "8 MiB of tmpfs took 16 MiB of chunks");
        let url = if location.starts_with("http") {
            location.clone()
        } else {
            b.url(&location)
        };
        let range = format!("Content-Range: {}-{}", offset, offset + chunk.len() - 1);
        let out = Command::new("curl")
            .args(["-sS", "-X", "PATCH", "-D", "-", "--data-binary"])
            .arg(format!("@{}", chunk_file.display()))
            .args(["-H", "Content-Type: application/octet-stream", "-H", &range])
            .arg(&url)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text.starts_with("HTTP/1.1 202") {
            offset += chunk.len();
            location = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("location: ")
                        .or_else(|| l.strip_prefix("Location: "))
                })
                .expect("location")
                .trim()
                .to_owned();
            continue;
        }
        break text;
    };
    assert!(refused.starts_with("HTTP/1.1 507"), "{refused}");
    assert!(refused.contains("\"code\":\"UNAVAILABLE\""), "{refused}");
    assert!(refused.contains("storage is full"), "{refused}");
    assert!(b.wait_log("storage full"), "{}", b.logs());

    // What was stored before is intact and served.
    let r = call(
        "GET",
        &b.url(&format!("/v2/full/app/blobs/{kept_digest}")),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), kept_digest);
    let r = get_manifest(&b, "full/app", "v1");
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), kept_manifest);
    // The refused chunk was rolled back: the upload is still at the last accepted offset.
    let url = if location.starts_with("http") {
        location.clone()
    } else {
        b.url(&location)
    };
    let r = call("GET", &url, &[], None);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("Range"),
        Some(format!("0-{}", offset - 1).as_str())
    );

    // A manifest that does not fit: 507, and the tag is not created.
    let filler = store.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": kept_digest, "size": kept.len()},
        "layers": [],
        "annotations": {"x": "y"},
    });
    let body = serde_json::to_vec(&m).expect("json");
    let r = call(
        "PUT",
        &b.url("/v2/full/app/manifests/v2"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&body),
    );
    assert_eq!(r.status, 507, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "UNAVAILABLE");
    let r = get_manifest(&b, "full/app", "v2");
    assert_eq!(r.status, 404);

    // Space back (the filler, and the client cancels its upload): pushes work again.
    std::fs::remove_file(&filler).expect("rm filler");
    assert_eq!(call("DELETE", &url, &[], None).status, 204);
    let r = call(
        "PUT",
        &b.url("/v2/full/app/manifests/v2"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&body),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    push_blob(&b, "full/app", &vec![5u8; 2 << 20]);
    let dir = b.stop();
    drop(_mount);
    drop(dir);
}

/// Failed TLS handshakes (plain HTTP on the TLS port, bytes that are not TLS) are counted
/// in /metrics instead of logged as errors, and TLS clients keep working.
#[test]
fn failed_tls_handshakes_are_counted_not_logged_as_errors() {
    let (b, admin, tls_port) = start_with_admin_and_tls();
    let failures = |m: &HashMap<String, f64>| m["berth_tls_handshake_failures_total"];
    let before = failures(&scrape(admin));
    let plain = Command::new("curl")
        .args(["-sS", "-m", "5", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{tls_port}/v2/"))
        .output()
        .expect("curl");
    assert!(
        !plain.status.success(),
        "plain HTTP on the TLS port answered"
    );
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tls_port)).expect("connect");
        let _ = s.write_all(b"\x16\x03\x01\x00\x05hello, not TLS at all\r\n\r\n");
    }
    let ca = b.dir.path().join("state/tls/ca.crt");
    let ok = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg(format!("https://127.0.0.1:{tls_port}/v2/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    let mut counted = 0.0;
    for _ in 0..50 {
        counted = failures(&scrape(admin)) - before;
        if counted >= 2.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(counted, 2.0, "both failed handshakes counted");
    let logs = b.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
    assert!(!logs.contains("handshake error"), "{logs}");
}
