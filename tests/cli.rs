//! The command line: version, `config check` and `config show`.

use std::process::Command;

fn berth(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
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

#[test]
fn version() {
    let (code, out, _) = berth(&["--version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("berth {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_check_accepts_the_shipped_file() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/appliance.toml");
    let (code, out, err) = berth(&["config", "check", shipped], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"));
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
    let (code, _, err) = berth(&["config", "check", f.to_str().expect("utf8")], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("rooot"), "{err}");

    std::fs::write(&f, "[limits]\nmanifest_max = \"4 parsecs\"\n").expect("write");
    let (code, _, err) = berth(&["config", "check", f.to_str().expect("utf8")], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("manifest_max") && err.contains("line 2"),
        "{err}"
    );

    let (code, _, err) = berth(
        &["config", "check"],
        &[("BERTH__HTTP__LISTEN", "[\"nonsense\"]")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("BERTH__HTTP__LISTEN"), "{err}");
}

#[test]
fn config_show_prints_the_effective_config() {
    let (code, out, err) = berth(
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
    // What show prints is itself a valid configuration.
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("shown.toml");
    std::fs::write(&f, &out).expect("write");
    let (code, _, err) = berth(&["config", "check", f.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn serve_refuses_bad_config_before_listening() {
    let (code, _, err) = berth(&["serve"], &[("BERTH__STORAGE__NOPE", "1")]);
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
        let (code, _, err) = berth(&["config", "check"], &[env]);
        assert_eq!(code, 2, "{env:?} was accepted");
        assert!(err.contains(key), "{env:?}: {err}");
    }
    let (code, _, err) = berth(
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
    let (code, out, err) = berth(
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
    let (code, _, err) = berth(&["config", "check"], &[("BERTH__TLS__ACME__NOPE", "1")]);
    assert_eq!(code, 2);
    assert!(err.contains("tls.acme.nope"), "{err}");
    // ACME without names, or with an address, is refused with the key named.
    let (code, _, err) = berth(&["config", "check"], &[("BERTH__TLS__MODE", "acme")]);
    assert_eq!(code, 2);
    assert!(err.contains("tls.acme.hostnames"), "{err}");
    let (code, _, err) = berth(
        &["config", "check"],
        &[
            ("BERTH__TLS__MODE", "acme"),
            ("BERTH__TLS__HOSTNAMES", "[\"10.0.0.1\"]"),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("tls.acme.hostnames"), "{err}");
}
