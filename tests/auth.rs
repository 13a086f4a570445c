//! Access control with real clients: htpasswd written by `berth user` and by Apache's
//! `htpasswd -B`, Basic challenges, permission rules with anonymous pull, `_catalog`
//! filtering, one bcrypt per login across many requests, failed-login rate limiting, and
//! skopeo/podman with credentials over TLS.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn berth_cli(args: &[&str], htpasswd: &Path, stdin: &str) -> (i32, String, String) {
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env_remove("BERTH_CONFIG")
            .env("BERTH__AUTH__HTPASSWD__PATH", htpasswd),
        stdin,
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn basic(user: &str, pw: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{user}:{pw}' | base64 -w0"))
        .output()
        .expect("base64");
    format!("Basic {}", String::from_utf8_lossy(&out.stdout))
}

const RULES: &str = r#"[
  {repositories = ["public/*"], users = ["anonymous"], actions = ["pull"]},
  {repositories = ["alice/*"], users = ["alice"], actions = ["*"]},
  {repositories = ["bob/*", "public/*"], users = ["@builders"], actions = ["*"]},
]"#;

#[test]
fn user_cli_and_apache_htpasswd_interoperate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("htpasswd");
    let (code, out, err) = berth_cli(
        &["user", "add", "alice", "--password-stdin"],
        &file,
        "wonderland\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added alice"), "{out}");
    assert!(!out.contains("wonderland") && !err.contains("wonderland"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // Apache's htpasswd verifies what berth wrote...
    let st = Command::new("htpasswd")
        .arg("-vb")
        .arg(&file)
        .args(["alice", "wonderland"])
        .output()
        .expect("htpasswd (apache2-utils)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // ...and berth reads what htpasswd -B adds.
    let st = Command::new("htpasswd")
        .arg("-Bb")
        .arg(&file)
        .args(["carol", "c4rol"])
        .output()
        .expect("htpasswd");
    assert!(st.status.success());
    let (code, out, _) = berth_cli(&["user", "list"], &file, "");
    assert_eq!((code, out.as_str()), (0, "alice\ncarol\n"));
    let (code, _, err) = berth_cli(&["user", "add", "alice", "--password-stdin"], &file, "x\n");
    assert_eq!(code, 1, "adding twice must fail");
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) = berth_cli(
        &["user", "passwd", "alice", "--password-stdin"],
        &file,
        "looking-glass\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = berth_cli(&["user", "del", "carol"], &file, "");
    assert_eq!(code, 0);
    let (_, out, _) = berth_cli(&["user", "list"], &file, "");
    assert_eq!(out, "alice\n");
    let (code, _, err) = berth_cli(&["user", "add", "dave"], &file, "");
    assert_ne!(code, 0, "no terminal and no --password-stdin must fail");
    assert!(err.contains("password-stdin"), "{err}");

    // A non-bcrypt entry is refused at start, naming the file and line.
    std::fs::write(&file, "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .env_remove("BERTH_CONFIG")
        .env("BERTH__AUTH__MODE", "htpasswd")
        .env("BERTH__AUTH__HTPASSWD__PATH", &file)
        .env(
            "BERTH__HTTP__LISTEN",
            format!("[\"127.0.0.1:{}\"]", free_port()),
        )
        .env("BERTH__STORAGE__ROOT", dir.path().join("store"))
        .env("BERTH__STATE__DIR", dir.path().join("state"))
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("htpasswd line 1") && err.contains("bcrypt"),
        "{err}"
    );
    // A missing file is an error, never an empty user list.
    std::fs::remove_file(&file).expect("rm");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .env_remove("BERTH_CONFIG")
        .env("BERTH__AUTH__MODE", "htpasswd")
        .env("BERTH__AUTH__HTPASSWD__PATH", &file)
        .env("BERTH__STORAGE__ROOT", dir.path().join("store"))
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("berth user add"));
}

fn start_with_users(dir: &Path, extra: &[(&str, &str)]) -> Berth {
    let file = dir.join("htpasswd");
    for (u, p) in [("alice", "wonderland"), ("bob", "builder")] {
        let (code, _, err) = berth_cli(
            &["user", "add", u, "--password-stdin"],
            &file,
            &format!("{p}\n"),
        );
        assert_eq!(code, 0, "{err}");
    }
    let path = file.to_string_lossy().into_owned();
    let mut env = vec![
        ("BERTH__AUTH__MODE", "htpasswd"),
        ("BERTH__AUTH__HTPASSWD__PATH", path.as_str()),
        ("BERTH__AUTH__RULES", RULES),
        ("BERTH__AUTH__GROUPS", "{builders = [\"bob\"]}"),
    ];
    env.extend_from_slice(extra);
    // The readiness probe's GET /v2/ gets 401 under auth: probe GET / instead.
    Berth::start_probe(&env, "/")
}

#[test]
fn challenges_permissions_catalog_and_one_bcrypt_per_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_with_users(dir.path(), &[]);
    let alice = basic("alice", "wonderland");
    let bob = basic("bob", "builder");

    // The deployment guides' challenge semantics.
    let r = call("GET", &b.url("/v2/"), &[], None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"berth\", charset=\"UTF-8\"")
    );
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    assert_eq!(call("GET", &b.url("/"), &[], None).status, 200);
    let r = call(
        "GET",
        &b.url("/v2/"),
        &[("Authorization", &basic("alice", "nope"))],
        None,
    );
    assert_eq!(r.status, 401);
    assert!(b.wait_log("login failed"), "{}", b.logs());
    assert!(!b.logs().contains("nope"), "a password was logged");
    assert_eq!(
        call("GET", &b.url("/v2/"), &[("Authorization", &alice)], None).status,
        200
    );

    // alice pushes to alice/*, not to bob/*; bob (via @builders) to bob/* and public/*.
    let push = |repo: &str, auth: &str| {
        call(
            "POST",
            &b.url(&format!("/v2/{repo}/blobs/uploads/")),
            &[("Authorization", auth)],
            None,
        )
    };
    assert_eq!(push("alice/app", &alice).status, 202);
    let r = push("bob/app", &alice);
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "DENIED");
    assert_eq!(push("bob/app", &bob).status, 202);
    assert_eq!(push("public/base", &bob).status, 202);
    assert_eq!(push("public/base", "").status, 401, "anonymous push");

    // 20 layers pushed and pulled by alice: one bcrypt for all of those requests.
    let mut digests = Vec::new();
    for i in 0..20u8 {
        let data = vec![i; 1000 + i as usize];
        let d = sha256(&data);
        let r = call(
            "POST",
            &b.url(&format!("/v2/alice/app/blobs/uploads/?digest={d}")),
            &[("Authorization", &alice)],
            Some(&data),
        );
        assert_eq!(r.status, 201);
        digests.push(d);
    }
    for d in &digests {
        let r = call(
            "GET",
            &b.url(&format!("/v2/alice/app/blobs/{d}")),
            &[("Authorization", &alice)],
            None,
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        b.logs()
            .matches("login: password verified user=alice")
            .count(),
        1,
        "{}",
        b.logs()
    );

    // Anonymous pull where a rule allows it, 401 elsewhere; bob can read public/*.
    let layer = b"public layer";
    let d = sha256(layer);
    let r = call(
        "POST",
        &b.url(&format!("/v2/public/base/blobs/uploads/?digest={d}")),
        &[("Authorization", &bob)],
        Some(layer),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        call(
            "GET",
            &b.url(&format!("/v2/public/base/blobs/{d}")),
            &[],
            None
        )
        .status,
        200
    );
    assert_eq!(
        call(
            "GET",
            &b.url(&format!("/v2/alice/app/blobs/{}", digests[0])),
            &[],
            None
        )
        .status,
        401
    );
    // A mount without `from` cannot fish alice's blob into bob's repository.
    let r = call(
        "POST",
        &b.url(&format!("/v2/bob/app/blobs/uploads/?mount={}", digests[0])),
        &[("Authorization", &bob)],
        None,
    );
    assert_eq!(r.status, 202, "mount refused, upload offered instead");
    // ...nor with `from` naming a repository bob cannot read.
    let r = call(
        "POST",
        &b.url(&format!(
            "/v2/bob/app/blobs/uploads/?mount={}&from=alice/app",
            digests[0]
        )),
        &[("Authorization", &bob)],
        None,
    );
    assert_eq!(r.status, 403);

    // _catalog lists what the caller may pull.
    let names = |auth: &str| -> Vec<String> {
        let h: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("Authorization", auth)]
        };
        let r = call("GET", &b.url("/v2/_catalog"), &h, None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["repositories"]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(names(&alice), vec!["alice/app", "public/base"]);
    assert_eq!(names(&bob), vec!["public/base"]);
    assert_eq!(names(""), vec!["public/base"]);

    // Failed logins from one address: 429 with Retry-After once over the limit.
    let mut last = 0;
    for _ in 0..12 {
        let r = call(
            "GET",
            &b.url("/v2/"),
            &[("Authorization", &basic("mallory", "guess"))],
            None,
        );
        last = r.status;
        if r.status == 429 {
            assert!(r.header("Retry-After").is_some());
            assert_eq!(r.error_code(), "TOOMANYREQUESTS");
            break;
        }
    }
    assert_eq!(last, 429);
}

#[test]
fn skopeo_and_podman_with_credentials_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_port = free_port();
    let listen = format!("[\"127.0.0.1:{tls_port}\"]");
    let b = start_with_users(
        dir.path(),
        &[
            ("BERTH__TLS__MODE", "self-signed"),
            ("BERTH__TLS__LISTEN", listen.as_str()),
            ("BERTH__TLS__HOSTNAMES", "[\"127.0.0.1\"]"),
        ],
    );
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(b.dir.path().join("state/tls/ca.crt"), certs.join("ca.crt")).expect("ca");
    let certs_s = certs.to_string_lossy().into_owned();
    let image = make_oci_layout(&dir.path().join("layout"));
    let reg = format!("127.0.0.1:{tls_port}");
    let skopeo = |args: &[&str]| {
        Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .output()
            .expect("skopeo")
    };
    let out = skopeo(&[
        "copy",
        "--dest-cert-dir",
        &certs_s,
        "--dest-creds",
        "alice:wonderland",
        &image,
        &format!("docker://{reg}/alice/app:v1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skopeo(&[
        "copy",
        "--dest-cert-dir",
        &certs_s,
        "--dest-creds",
        "alice:wonderland",
        &image,
        &format!("docker://{reg}/bob/app:v1"),
    ]);
    assert!(!out.status.success(), "alice pushed to bob/*");
    let out = skopeo(&[
        "inspect",
        "--cert-dir",
        &certs_s,
        &format!("docker://{reg}/alice/app:v1"),
    ]);
    assert!(!out.status.success(), "anonymous read of alice/*");

    // podman login, push and pull.
    let p = dir.path().join("podman");
    let auth_file = dir.path().join("auth.json");
    let podman = |args: &[&str], stdin: &str| {
        run_with_stdin(
            podman(&p).args(args).env("REGISTRY_AUTH_FILE", &auth_file),
            stdin,
        )
    };
    let login = |password: &str| {
        podman(
            &[
                "login",
                "--cert-dir",
                &certs_s,
                "-u",
                "bob",
                "--password-stdin",
                &reg,
            ],
            &format!("{password}\n"),
        )
    };
    let out = login("builder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = login("wrong");
    assert!(!out.status.success(), "a wrong password logged in");
    let src = format!("{reg}/alice/app:v1");
    let out = podman(&["pull", "-q", "--cert-dir", &certs_s, &src], "");
    assert!(!out.status.success(), "bob pulled alice/*");
    let out = podman(
        &[
            "pull",
            "-q",
            "--cert-dir",
            &certs_s,
            "--creds",
            "alice:wonderland",
            &src,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dst = format!("{reg}/bob/app:v2");
    assert!(podman(&["tag", &src, &dst], "").status.success());
    let out = podman(&["push", "-q", "--cert-dir", &certs_s, &dst], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
