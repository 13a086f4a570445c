//! The command line: version, `config check` and `config show`, and
//! `config import-distribution` (a registry:2 deployment taken over by berth).

mod common;

use common::{assert_shown_config_is_valid, run_berth};

use std::process::Command;

#[test]
fn version() {
    let (code, out, _) = run_berth(&["--version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("berth {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_check_accepts_the_shipped_files() {
    // The documented defaults, and what the packages install as /etc/berth.
    for shipped in [
        concat!(env!("CARGO_MANIFEST_DIR"), "/appliance.toml"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/appliance.toml"),
    ] {
        let (code, out, err) = run_berth(&["config", "check", shipped], &[]);
        assert_eq!(code, 0, "{shipped}: {err}");
        assert!(out.contains("ok"));
    }
}

#[test]
fn config_check_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[http]\nlisten = [\"127.0.0.1:5000\"]\n\n[storage]\nrooot = \"/srv\"\n",
    )
    .expect("write");
    let (code, _, err) = run_berth(&["config", "check", f.to_str().expect("utf8")], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("rooot"), "{err}");

    std::fs::write(&f, "[limits]\nmanifest_max = \"4 parsecs\"\n").expect("write");
    let (code, _, err) = run_berth(&["config", "check", f.to_str().expect("utf8")], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("manifest_max") && err.contains("line 2"),
        "{err}"
    );

    let (code, _, err) = run_berth(
        &["config", "check"],
        &[("BERTH__HTTP__LISTEN", "[\"nonsense\"]")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("BERTH__HTTP__LISTEN"), "{err}");
}

#[test]
fn config_show_prints_the_effective_config() {
    let (code, out, err) = run_berth(
        &["config", "show"],
        &[
            ("REGISTRY_HTTP_ADDR", ":5999"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                "/var/lib/registry",
            ),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = [\"0.0.0.0:5999\"]"), "{out}");
    assert!(out.contains("root = \"/var/lib/registry\""), "{out}");
    assert!(out.contains("manifest_max = \"4MiB\""), "{out}");
    assert_shown_config_is_valid(&out);
}

#[test]
fn serve_refuses_bad_config_before_listening() {
    let (code, _, err) = run_berth(&["serve"], &[("BERTH__STORAGE__NOPE", "1")]);
    assert_eq!(code, 2);
    assert!(err.contains("BERTH__STORAGE__NOPE"), "{err}");
}

#[test]
fn connection_settings_are_checked() {
    for (env, key) in [
        (
            ("BERTH__HTTP__PROXY_PROTOCOL", "true"),
            "http.proxy_protocol",
        ),
        (
            ("BERTH__TLS__MIN_VERSION", "\"1.1\""),
            "BERTH__TLS__MIN_VERSION",
        ),
        (
            ("BERTH__LIMITS__HEADER_MAX", "\"2MiB\""),
            "limits.header_max",
        ),
        (
            ("BERTH__LIMITS__HEADER_COUNT_MAX", "1000"),
            "limits.header_count_max",
        ),
        (
            ("BERTH__LIMITS__CONNECTIONS_MAX", "0"),
            "limits.connections_max",
        ),
    ] {
        let (code, _, err) = run_berth(&["config", "check"], &[env]);
        assert_eq!(code, 2, "{env:?} was accepted");
        assert!(err.contains(key), "{env:?}: {err}");
    }
    let (code, _, err) = run_berth(
        &["config", "check"],
        &[
            ("BERTH__HTTP__PROXY_PROTOCOL", "true"),
            ("BERTH__HTTP__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
            ("BERTH__TLS__MIN_VERSION", "\"1.3\""),
        ],
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn letsencrypt_variables_and_nested_overrides() {
    let (code, out, err) = run_berth(
        &["config", "show"],
        &[
            ("REGISTRY_HTTP_TLS_LETSENCRYPT_EMAIL", "ops@example.com"),
            (
                "REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0",
                "registry.example.com",
            ),
            ("BERTH__TLS__ACME__DIRECTORY_URL", "staging"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mode = \"acme\""), "{out}");
    assert!(out.contains("email = \"ops@example.com\""), "{out}");
    assert!(
        out.contains("hostnames = [\"registry.example.com\"]"),
        "{out}"
    );
    assert!(out.contains("directory_url = \"staging\""), "{out}");
    let (code, _, err) = run_berth(&["config", "check"], &[("BERTH__TLS__ACME__NOPE", "1")]);
    assert_eq!(code, 2);
    assert!(err.contains("tls.acme.nope"), "{err}");
    // ACME without names, or with an address, is refused with the key named.
    let (code, _, err) = run_berth(&["config", "check"], &[("BERTH__TLS__MODE", "acme")]);
    assert_eq!(code, 2);
    assert!(err.contains("tls.acme.hostnames"), "{err}");
    let (code, _, err) = run_berth(
        &["config", "check"],
        &[
            ("BERTH__TLS__MODE", "acme"),
            ("BERTH__TLS__HOSTNAMES", "[\"10.0.0.1\"]"),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("tls.acme.hostnames"), "{err}");
}

#[test]
fn import_distribution_translates_debians_config() {
    let debian = "/etc/docker/registry/config.yml";
    assert!(
        std::path::Path::new(debian).exists(),
        "Debian's docker-registry package is installed by scripts/deps.sh"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("appliance.toml");
    let out_s = out.to_string_lossy().into_owned();
    let (code, _, err) = run_berth(
        &["config", "import-distribution", debian, "-o", &out_s],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // What it cannot translate is reported, the rest is a valid configuration.
    assert!(err.contains("review:"), "{err}");
    let text = std::fs::read_to_string(&out).expect("output");
    assert!(text.contains("/var/lib/docker-registry"), "{text}");
    let (code, _, err) = run_berth(&["config", "check", &out_s], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_berth(&["config", "show", "-c", &out_s], &[]);
    assert_eq!(code, 0, "{err}");
    // It never overwrites a file.
    let (code, _, _) = run_berth(
        &["config", "import-distribution", debian, "-o", &out_s],
        &[],
    );
    assert_eq!(code, 1);
    // A storage driver berth cannot serve is an error, not a silent change.
    let azure = dir.path().join("azure.yml");
    std::fs::write(
        &azure,
        "version: 0.1\nstorage:\n  azure:\n    container: b\nhttp:\n  addr: :5000\n",
    )
    .expect("yaml");
    let (code, _, err) = run_berth(
        &["config", "import-distribution", &azure.to_string_lossy()],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("azure"), "{err}");
}

#[test]
fn a_registry2_deployment_is_served_by_berth_from_its_imported_config() {
    use common::*;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("registry-store");
    let port = free_port();
    let yml = dir.path().join("config.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            store.display()
        ),
    )
    .expect("config.yml");
    // registry:2 (Debian's docker-registry) serves and takes a push.
    let mut reg = Command::new("docker-registry")
        .arg("serve")
        .arg(&yml)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry");
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        raw_http(
            port,
            b"",
            "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(up, "docker-registry did not start");
    let image = make_oci_layout(&dir.path().join("layout"));
    let skopeo = |args: &[&str]| {
        Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .output()
            .expect("skopeo")
    };
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &image,
        &format!("docker://127.0.0.1:{port}/moved/app:v1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = reg.kill();
    let _ = reg.wait();

    // The imported configuration, as is: same address, same store.
    let toml = dir.path().join("appliance.toml");
    let (code, _, err) = run_berth(
        &[
            "config",
            "import-distribution",
            &yml.to_string_lossy(),
            "-o",
            &toml.to_string_lossy(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let log = std::fs::File::create(dir.path().join("berth.log")).expect("log");
    let mut b = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "-c"])
        .arg(&toml)
        .env_remove("BERTH_CONFIG")
        .env("BERTH__STATE__DIR", dir.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("berth");
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        raw_http(
            port,
            b"",
            "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let logs = || std::fs::read_to_string(dir.path().join("berth.log")).unwrap_or_default();
    assert!(up, "berth did not start on the imported config: {}", logs());
    let pulled = dir.path().join("pulled");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://127.0.0.1:{port}/moved/app:v1"),
        &format!("oci:{}:app", pulled.display()),
    ]);
    let _ = b.kill();
    let _ = b.wait();
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
}
