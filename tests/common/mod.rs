//! Starts the real `berth` binary on a free loopback port with a temporary store, and a
//! small HTTP client over `ureq` that returns every status instead of erroring on 4xx.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Berth {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Berth {
    /// Starts berth with defaults plus `env` overrides (BERTH__...).
    pub fn start(env: &[(&str, &str)]) -> Berth {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, env)
    }

    /// Starts berth and waits until `GET probe` answers 200 (for setups where `/v2/`
    /// needs credentials).
    pub fn start_probe(env: &[(&str, &str)], probe: &str) -> Berth {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_full(dir, env, probe)
    }

    /// Starts berth on an existing directory (its store is `<dir>/store`).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Berth {
        Self::start_full(dir, env, "/v2/")
    }

    fn start_full(dir: tempfile::TempDir, env: &[(&str, &str)], probe: &str) -> Berth {
        for _attempt in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("berth-{port}.log"));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
            cmd.arg("serve")
                .env("BERTH__HTTP__LISTEN", format!("[\"127.0.0.1:{port}\"]"))
                .env("BERTH__STORAGE__ROOT", dir.path().join("store"))
                .env("BERTH__HTTP__SHUTDOWN_GRACE", "2s")
                .env("BERTH__HTTP__REDIRECT_LISTEN", "[]")
                .env("BERTH__HTTP__ADMIN_LISTEN", "[]")
                .env("BERTH__STATE__DIR", dir.path().join("state"))
                .env_remove("BERTH_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"));
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("spawn berth");
            let proxied = env
                .iter()
                .any(|(k, v)| *k == "BERTH__HTTP__PROXY_PROTOCOL" && *v == "true");
            if wait_ready(&mut child, port, proxied, probe) {
                return Berth {
                    child,
                    port,
                    dir,
                    log,
                };
            }
            // Another process took the port between the probe and berth's bind: retry.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("berth did not start in {}", dir.path().display());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`: the access-log line of a request
    /// is written just after its response.
    pub fn wait_log(&self, needle: &str) -> bool {
        for _ in 0..50 {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Peak resident set size of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (bounded) for the process to exit by itself; returns whether it did.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the process and hands back its directory (for a restart on the same store).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `GET /v2/` answers 200 (sent after a PROXY header when `proxied`).
fn wait_ready(child: &mut Child, port: u16, proxied: bool, probe: &str) -> bool {
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let prefix: &[u8] = if proxied {
            b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n"
        } else {
            b""
        };
        let request = format!("GET {probe} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if raw_http(port, prefix, &request).is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends `prefix` then `request` on a fresh connection and returns everything the server
/// sends until it closes (bounded by a 5 s read timeout).
pub fn raw_http(port: u16, prefix: &[u8], request: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(prefix).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Some(String::from_utf8_lossy(&out).into_owned())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A response with everything a test looks at.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(|s| s.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The first error code of a spec error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

pub fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    // Redirects are part of what tests check: never follow them.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut req = agent.request(method, url).timeout(Duration::from_secs(120));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for name in resp.headers_names() {
        let values = resp.all(&name).iter().map(|s| s.to_string()).collect();
        map.insert(name.to_ascii_lowercase(), values);
    }
    let mut body = Vec::new();
    if method != "HEAD" {
        resp.into_reader()
            .take(u64::MAX)
            .read_to_end(&mut body)
            .expect("read body");
    }
    Resp {
        status,
        headers: map,
        body,
    }
}

pub fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// Pushes a blob monolithically (POST ?digest=) and returns its digest.
pub fn push_blob(b: &Berth, repo: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let r = call(
        "POST",
        &b.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")),
        &[],
        Some(bytes),
    );
    assert_eq!(
        r.status,
        201,
        "push blob: {}",
        String::from_utf8_lossy(&r.body)
    );
    d
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// GET of a manifest by tag or digest, accepting an OCI image manifest.
pub fn get_manifest(b: &Berth, repo: &str, reference: &str) -> Resp {
    call(
        "GET",
        &b.url(&format!("/v2/{repo}/manifests/{reference}")),
        &[("Accept", OCI_MANIFEST)],
        None,
    )
}
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Pushes a config and one layer and returns (manifest bytes, manifest digest) of an OCI
/// image manifest tagged `tag`.
pub fn push_image(b: &Berth, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = push_blob(b, repo, config);
    let ld = push_blob(b, repo, layer);
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    });
    let bytes = serde_json::to_vec_pretty(&m).expect("json");
    let r = call(
        "PUT",
        &b.url(&format!("/v2/{repo}/manifests/{tag}")),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&bytes),
    );
    assert_eq!(
        r.status,
        201,
        "push manifest: {}",
        String::from_utf8_lossy(&r.body)
    );
    let d = sha256(&bytes);
    assert_eq!(r.header("Docker-Content-Digest"), Some(d.as_str()));
    (bytes, d)
}

/// Every regular file under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// What `berth config show` printed (`out`) is itself a configuration `config check`
/// accepts.
pub fn assert_shown_config_is_valid(out: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("shown.toml");
    std::fs::write(&f, out).expect("write");
    let (code, _, err) = run_berth(&["config", "check", f.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{err}");
}

/// Runs `cmd` with `stdin` written to it; returns its output.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// podman with private vfs storage under `dir`: no daemon, no system state.
pub fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
        ]);
    c
}

/// An OCI layout at `layout` with one small image made by umoci; returns the skopeo
/// reference (`oci:<layout>:app`).
pub fn make_oci_layout(layout: &Path) -> String {
    make_oci_layout_with(layout, "hello from berth\n")
}

/// As [`make_oci_layout`], the image's one file holding `text` (so that images made with
/// different texts share no layer).
pub fn make_oci_layout_with(layout: &Path, text: &str) -> String {
    let l = layout.to_string_lossy();
    let run = |args: &[&str]| {
        let st = Command::new("umoci").args(args).output().expect("umoci");
        assert!(
            st.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    run(&["init", "--layout", &l]);
    run(&["new", "--image", &format!("{l}:app")]);
    let bundle = layout.with_extension("bundle");
    run(&[
        "unpack",
        "--rootless",
        "--image",
        &format!("{l}:app"),
        &bundle.to_string_lossy(),
    ]);
    std::fs::write(bundle.join("rootfs/hello.txt"), text).expect("write");
    run(&[
        "repack",
        "--image",
        &format!("{l}:app"),
        &bundle.to_string_lossy(),
    ]);
    format!("oci:{l}:app")
}

/// A TLS connection held open by `openssl s_client` (opened before a certificate swap).
pub struct HeldTls(Child);

impl HeldTls {
    /// Connects to 127.0.0.1:`port`; `extra` are s_client arguments (-CAfile, -servername).
    pub fn open(port: u16, extra: &[&str]) -> HeldTls {
        let child = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl");
        std::thread::sleep(Duration::from_millis(400));
        HeldTls(child)
    }

    /// Sends `GET /v2/` on the held connection and returns the whole answer.
    pub fn get_v2(mut self) -> String {
        use std::io::Write;
        let mut stdin = self.0.stdin.take().expect("stdin");
        stdin
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        self.0
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read");
        let _ = self.0.wait();
        out
    }
}

impl Drop for HeldTls {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the berth binary (no BERTH_CONFIG from the environment) with `env` overrides;
/// returns its exit code, stdout and stderr.
pub fn run_berth(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args).env_remove("BERTH_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run berth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
