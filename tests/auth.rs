//! Access control with real clients: htpasswd written by `berth user` and by Apache's
//! `htpasswd -B`, Basic challenges, permission rules with anonymous pull, `_catalog`
//! filtering, one bcrypt per login across many requests, failed-login rate limiting, and
//! skopeo/podman with credentials over TLS; the built-in token service with podman and
//! skopeo, and external token servers' keys (only configured keys are trusted).

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

/// berth with the test users in `mode`, serving self-signed TLS on loopback; returns it,
/// a certs directory holding its CA (for --cert-dir) and the registry's address.
fn start_tls_with_users(dir: &Path, mode: &str) -> (Berth, String, String) {
    let tls_port = free_port();
    let listen = format!("[\"127.0.0.1:{tls_port}\"]");
    let b = start_with_users(
        dir,
        &[
            ("BERTH__AUTH__MODE", mode),
            ("BERTH__TLS__MODE", "self-signed"),
            ("BERTH__TLS__LISTEN", listen.as_str()),
            ("BERTH__TLS__HOSTNAMES", "[\"127.0.0.1\"]"),
        ],
    );
    let certs = dir.join("certs.d");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(b.dir.path().join("state/tls/ca.crt"), certs.join("ca.crt")).expect("ca");
    (
        b,
        certs.to_string_lossy().into_owned(),
        format!("127.0.0.1:{tls_port}"),
    )
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
    assert_eq!(
        r.status, 202,
        "mount from an unreadable repository: upload instead"
    );

    // Deleting a whole repository needs delete on it.
    let r = call(
        "DELETE",
        &b.url("/berth/v1/repositories/bob/app"),
        &[("Authorization", &alice)],
        None,
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        call(
            "DELETE",
            &b.url("/berth/v1/repositories/bob/app"),
            &[],
            None
        )
        .status,
        401
    );

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
    let (_b, certs_s, reg) = start_tls_with_users(dir.path(), "htpasswd");
    let image = make_oci_layout(&dir.path().join("layout"));
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

// ---- token auth ----

fn b64url(data: &[u8]) -> String {
    berth::auth::token::base64url(data)
}

/// The claims of a token (no verification: the test only looks).
fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("jwt");
    let raw = berth::auth::base64_decode(payload).expect("base64url");
    serde_json::from_slice(&raw).expect("claims json")
}

fn get_token(b: &Berth, auth: Option<&str>, scopes: &[&str]) -> Resp {
    let mut q = String::from("/token?service=berth");
    for s in scopes {
        q.push_str("&scope=");
        q.push_str(s);
    }
    let h: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
    call("GET", &b.url(&q), &h, None)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo")
}

#[test]
fn builtin_token_service_grants_what_the_rules_allow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_with_users(dir.path(), &[("BERTH__AUTH__MODE", "token")]);
    let alice = basic("alice", "wonderland");
    let bob = basic("bob", "builder");

    // The challenge names the token service, at the address the client used.
    let r = call("GET", &b.url("/v2/"), &[], None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(
            format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"berth\"",
                b.port
            )
            .as_str()
        )
    );
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert_eq!(call("GET", &b.url("/"), &[], None).status, 200);
    let r = call("GET", &b.url("/v2/bob/app/tags/list"), &[], None);
    assert!(
        r.header("WWW-Authenticate")
            .is_some_and(|h| h.ends_with(",scope=\"repository:bob/app:pull\"")),
        "{:?}",
        r.header("WWW-Authenticate")
    );
    // Basic credentials are for /token, not for the API, in token mode.
    assert_eq!(
        call("GET", &b.url("/v2/"), &[("Authorization", &alice)], None).status,
        401
    );

    // alice asks for more than she may have: she gets the intersection.
    let r = get_token(
        &b,
        Some(&alice),
        &[
            "repository:alice/app:pull,push",
            "repository:bob/app:pull,push",
            "registry:catalog:*",
        ],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let body = r.json();
    let tok = body["token"].as_str().expect("token").to_owned();
    assert_eq!(body["access_token"].as_str(), Some(tok.as_str()));
    assert_eq!(body["expires_in"].as_u64(), Some(300));
    assert!(body["issued_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    let c = claims_of(&tok);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["iss"], "berth");
    assert_eq!(c["aud"], "berth");
    assert_eq!(
        c["access"],
        serde_json::json!([
            {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
    let header: serde_json::Value = serde_json::from_slice(
        &berth::auth::base64_decode(tok.split('.').next().expect("header")).expect("b64"),
    )
    .expect("json");
    assert_eq!(header["alg"], "ES256");
    let key = b.dir.path().join("state/token/signing-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key)
            .expect("signing key")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The token opens what it grants; elsewhere alice (known to the rules) gets 403, a
    // token without the scope the challenge with error="insufficient_scope".
    let at = bearer(&tok);
    let r = call(
        "GET",
        &b.url("/v2/alice/app/tags/list"),
        &[("Authorization", &at)],
        None,
    );
    assert_eq!(r.status, 404, "authorized, nothing pushed yet");
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
    assert_eq!(
        call("GET", &b.url("/v2/"), &[("Authorization", &at)], None).status,
        200
    );
    let r = call(
        "POST",
        &b.url("/v2/bob/app/blobs/uploads/"),
        &[("Authorization", &at)],
        None,
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "DENIED");
    let pull_only = get_token(&b, Some(&alice), &["repository:alice/app:pull"]).json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = call(
        "POST",
        &b.url("/v2/alice/app/blobs/uploads/"),
        &[("Authorization", &bearer(&pull_only))],
        None,
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("WWW-Authenticate")
        .is_some_and(|h| h.contains("scope=\"repository:alice/app:pull,push\"")
            && h.contains("error=\"insufficient_scope\"")));

    // A forged or mangled token is refused. (A character in the middle of the signature:
    // the last one also carries padding bits a decoder ignores.)
    let at = tok.len() - 10;
    let flipped = if &tok[at..at + 1] == "A" { "B" } else { "A" };
    let bad = format!("{}{flipped}{}", &tok[..at], &tok[at + 1..]);
    let r = call(
        "GET",
        &b.url("/v2/"),
        &[("Authorization", &bearer(&bad))],
        None,
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("WWW-Authenticate")
        .is_some_and(|h| h.contains("invalid_token")));

    // Wrong password: 401 from /token; anonymous: only what anonymous may do.
    assert_eq!(
        get_token(&b, Some(&basic("alice", "nope")), &[]).status,
        401
    );
    let anon = get_token(
        &b,
        None,
        &[
            "repository:public/base:pull,push",
            "repository:alice/app:pull",
        ],
    );
    assert_eq!(anon.status, 200);
    let c = claims_of(anon.json()["token"].as_str().expect("token"));
    assert_eq!(c["sub"], "");
    assert_eq!(
        c["access"],
        serde_json::json!([{"type": "repository", "name": "public/base", "actions": ["pull"]}])
    );
    // A token for another service is not handed out.
    let r = call(
        "GET",
        &b.url("/token?service=other"),
        &[("Authorization", &alice)],
        None,
    );
    assert_eq!(r.status, 400);

    // skopeo does the token dance itself (plain HTTP on loopback).
    let image = make_oci_layout(&dir.path().join("layout"));
    let reg = format!("127.0.0.1:{}", b.port);
    for (creds, repo) in [
        ("alice:wonderland", "alice/app"),
        ("bob:builder", "public/base"),
    ] {
        let out = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &image,
            &format!("docker://{reg}/{repo}:v1"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:wonderland",
        &image,
        &format!("docker://{reg}/bob/app:v1"),
    ]);
    assert!(!out.status.success(), "alice pushed to bob/*");
    // Anonymous pull of public/*, but not of alice/*, and no anonymous push.
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reg}/public/base:v1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reg}/alice/app:v1"),
    ]);
    assert!(!out.status.success(), "anonymous pulled alice/*");
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &image,
        &format!("docker://{reg}/public/base:v2"),
    ]);
    assert!(!out.status.success(), "anonymous pushed");

    // _catalog with a catalog token: what the token's user may pull.
    let names = |who: &str| -> Vec<String> {
        let t = get_token(&b, Some(who), &["registry:catalog:*"]).json()["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let r = call(
            "GET",
            &b.url("/v2/_catalog"),
            &[("Authorization", &bearer(&t))],
            None,
        );
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

    // Many token requests with the same password: one bcrypt.
    let verified = b.logs().matches("password verified").count();
    for _ in 0..10 {
        assert_eq!(
            get_token(&b, Some(&alice), &["repository:alice/app:pull"]).status,
            200
        );
    }
    assert_eq!(b.logs().matches("password verified").count(), verified);
    // Neither passwords nor tokens reach the log.
    let logs = b.logs();
    assert!(!logs.contains("wonderland") && !logs.contains(&tok[tok.len() - 20..]));
}

#[test]
fn podman_and_skopeo_with_builtin_tokens_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, certs_s, reg) = start_tls_with_users(dir.path(), "token");
    let image = make_oci_layout(&dir.path().join("layout"));
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

    let p = dir.path().join("podman");
    let auth_file = dir.path().join("auth.json");
    let podman = |args: &[&str], stdin: &str| {
        run_with_stdin(
            podman(&p).args(args).env("REGISTRY_AUTH_FILE", &auth_file),
            stdin,
        )
    };
    let login = |user: &str, password: &str| {
        podman(
            &[
                "login",
                "--cert-dir",
                &certs_s,
                "-u",
                user,
                "--password-stdin",
                &reg,
            ],
            &format!("{password}\n"),
        )
    };
    assert!(
        !login("bob", "wrong").status.success(),
        "a wrong password logged in"
    );
    let out = login("alice", "wonderland");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let src = format!("{reg}/alice/app:v1");
    let out = podman(&["pull", "-q", "--cert-dir", &certs_s, &src], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mine = format!("{reg}/alice/other:v2");
    assert!(podman(&["tag", &src, &mine], "").status.success());
    let out = podman(&["push", "-q", "--cert-dir", &certs_s, &mine], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = format!("{reg}/bob/app:v2");
    assert!(podman(&["tag", &src, &theirs], "").status.success());
    let out = podman(&["push", "-q", "--cert-dir", &certs_s, &theirs], "");
    assert!(!out.status.success(), "alice pushed to bob/*");
    // The realm the clients followed was the TLS address.
    assert!(b.logs().contains("token issued"));
}

/// A key pair a test token server signs with, and its certificate.
struct TestKey {
    pair: ring::signature::EcdsaKeyPair,
    cert_pem: String,
    cert_der: Vec<u8>,
    spki: Vec<u8>,
}

fn test_key(ca: Option<&rcgen::Issuer<'_, rcgen::KeyPair>>, is_ca: bool) -> TestKey {
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
    let kp = rcgen::KeyPair::try_from(&der).expect("rcgen key");
    let mut params = rcgen::CertificateParams::new(vec!["token.test".to_owned()]).expect("params");
    if is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let cert = match ca {
        Some(issuer) => params.signed_by(&kp, issuer),
        None => params.self_signed(&kp),
    }
    .expect("cert");
    TestKey {
        spki: rcgen::PublicKeyData::subject_public_key_info(&kp),
        pair,
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
    }
}

fn sign_es256(key: &TestKey, header: serde_json::Value, claims: &serde_json::Value) -> String {
    let mut t = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key
        .pair
        .sign(&ring::rand::SystemRandom::new(), t.as_bytes())
        .expect("sign");
    t.push('.');
    t.push_str(&b64url(sig.as_ref()));
    t
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn ext_claims(access: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "iss": "auth.test", "sub": "ci", "aud": "registry.test",
        "exp": now() + 300, "nbf": now() - 5, "iat": now() - 5, "jti": "x",
        "access": access,
    })
}

#[test]
fn external_token_server_only_configured_keys_are_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The token server's own certificate (direct key), and a CA whose leaves sign with x5c.
    let direct = test_key(None, false);
    let ca_key = {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .expect("key");
        rcgen::KeyPair::try_from(&rustls::pki_types::PrivatePkcs8KeyDer::from(
            pkcs8.as_ref().to_vec(),
        ))
        .expect("ca key")
    };
    let mut ca_params = rcgen::CertificateParams::new(vec![]).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = test_key(Some(&issuer), false);
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", direct.cert_pem, ca.pem())).expect("bundle");
    // A JWKS with an RSA key (made by openssl) for RS256.
    let rsa_pem = dir.path().join("rsa.pem");
    let st = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&rsa_pem)
        .output()
        .expect("openssl");
    assert!(st.status.success());
    use rustls::pki_types::pem::PemObject as _;
    let rsa_der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(&rsa_pem).expect("pkcs8");
    let rsa = ring::signature::RsaKeyPair::from_pkcs8(rsa_der.secret_pkcs8_der()).expect("rsa");
    let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let (n, e) = (parts.n, parts.e);
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::json!({"keys": [{"kty": "RSA", "kid": "rsa-1", "n": b64url(&n), "e": b64url(&e)}]})
            .to_string(),
    )
    .expect("jwks");
    let bundle_s = bundle.to_string_lossy().into_owned();
    let jwks_s = jwks.to_string_lossy().into_owned();
    // The reference registry's variables select the external issuer.
    let b = Berth::start_probe(
        &[
            ("REGISTRY_AUTH", "token"),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://auth.test/token"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "registry.test"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "auth.test"),
            ("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", bundle_s.as_str()),
            ("BERTH__AUTH__TOKEN__JWKS", jwks_s.as_str()),
            ("BERTH__AUTH__TOKEN__ALGORITHMS", "[\"ES256\", \"RS256\"]"),
        ],
        "/",
    );
    let r = call("GET", &b.url("/v2/"), &[], None);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"https://auth.test/token\",service=\"registry.test\"")
    );
    assert_eq!(
        call("GET", &b.url("/token"), &[], None).status,
        404,
        "no built-in service"
    );

    let all =
        serde_json::json!([{"type": "repository", "name": "ext/app", "actions": ["pull", "push"]}]);
    let status = |token: &str| {
        call(
            "GET",
            &b.url("/v2/ext/app/tags/list"),
            &[("Authorization", &bearer(token))],
            None,
        )
        .status
    };
    let kid = berth::auth::token::libtrust_kid(&direct.spki);
    let es = |k: &TestKey, h: serde_json::Value, c: &serde_json::Value| sign_es256(k, h, c);
    // Accepted: the bundle key by libtrust kid, and with no kid; a CA-issued leaf by x5c.
    let good = es(
        &direct,
        serde_json::json!({"alg": "ES256", "kid": kid}),
        &ext_claims(all.clone()),
    );
    assert_eq!(status(&good), 404, "authorized (nothing pushed)");
    assert_eq!(
        status(&es(
            &direct,
            serde_json::json!({"alg": "ES256"}),
            &ext_claims(all.clone())
        )),
        404
    );
    let x5c = serde_json::json!([base64_std(&leaf.cert_der)]);
    assert_eq!(
        status(&es(
            &leaf,
            serde_json::json!({"alg": "ES256", "x5c": x5c}),
            &ext_claims(all.clone())
        )),
        404
    );
    // RS256 with the JWKS key.
    let rs = {
        let mut t = format!(
            "{}.{}",
            b64url(br#"{"alg":"RS256","kid":"rsa-1"}"#),
            b64url(ext_claims(all.clone()).to_string().as_bytes())
        );
        let mut sig = vec![0; rsa.public().modulus_len()];
        rsa.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            t.as_bytes(),
            &mut sig,
        )
        .expect("rsa sign");
        t.push('.');
        t.push_str(&b64url(&sig));
        t
    };
    assert_eq!(status(&rs), 404);

    // Refused: an untrusted key (even claiming the trusted kid, or carrying its own
    // certificate in x5c: CVE-2025-24976), expired, wrong audience, wrong issuer,
    // alg none, HS256 keyed with the public key, an algorithm outside the allow-list.
    let stranger = test_key(None, false);
    let mut refused = vec![
        (
            "untrusted key",
            es(
                &stranger,
                serde_json::json!({"alg": "ES256", "kid": kid}),
                &ext_claims(all.clone()),
            ),
        ),
        (
            "self-signed x5c",
            es(
                &stranger,
                serde_json::json!({"alg": "ES256", "x5c": [base64_std(&stranger.cert_der)]}),
                &ext_claims(all.clone()),
            ),
        ),
    ];
    let mut c = ext_claims(all.clone());
    c["exp"] = serde_json::json!(now() - 120);
    refused.push((
        "expired",
        es(&direct, serde_json::json!({"alg": "ES256"}), &c),
    ));
    let mut c = ext_claims(all.clone());
    c["aud"] = serde_json::json!("someone-else");
    refused.push((
        "wrong audience",
        es(&direct, serde_json::json!({"alg": "ES256"}), &c),
    ));
    let mut c = ext_claims(all.clone());
    c["iss"] = serde_json::json!("evil");
    refused.push((
        "wrong issuer",
        es(&direct, serde_json::json!({"alg": "ES256"}), &c),
    ));
    let c = ext_claims(all.clone());
    refused.push((
        "alg none",
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none"}"#),
            b64url(c.to_string().as_bytes())
        ),
    ));
    let body = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256"}"#),
        b64url(c.to_string().as_bytes())
    );
    let hmac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, direct.cert_pem.as_bytes()),
        body.as_bytes(),
    );
    refused.push(("HS256", format!("{body}.{}", b64url(hmac.as_ref()))));
    let ps = {
        let mut t = format!(
            "{}.{}",
            b64url(br#"{"alg":"PS256","kid":"rsa-1"}"#),
            b64url(c.to_string().as_bytes())
        );
        let mut sig = vec![0; rsa.public().modulus_len()];
        rsa.sign(
            &ring::signature::RSA_PSS_SHA256,
            &ring::rand::SystemRandom::new(),
            t.as_bytes(),
            &mut sig,
        )
        .expect("pss sign");
        t.push('.');
        t.push_str(&b64url(&sig));
        t
    };
    refused.push(("PS256 not in the allow-list", ps));
    for (what, token) in &refused {
        let r = call(
            "GET",
            &b.url("/v2/ext/app/tags/list"),
            &[("Authorization", &bearer(token))],
            None,
        );
        assert_eq!(r.status, 401, "{what} was accepted");
        assert!(
            r.header("WWW-Authenticate")
                .is_some_and(|h| h.contains("invalid_token")),
            "{what}"
        );
    }

    // A real client with the external server's tokens: skopeo pushes with a push token
    // and reads with a pull-only one, which cannot push.
    let image = make_oci_layout(&dir.path().join("layout"));
    let reg = format!("127.0.0.1:{}", b.port);
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-registry-token",
        &good,
        &image,
        &format!("docker://{reg}/ext/app:v1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pull = es(
        &direct,
        serde_json::json!({"alg": "ES256"}),
        &ext_claims(
            serde_json::json!([{"type": "repository", "name": "ext/app", "actions": ["pull"]}]),
        ),
    );
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--registry-token",
        &pull,
        &format!("docker://{reg}/ext/app:v1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-registry-token",
        &pull,
        &image,
        &format!("docker://{reg}/ext/app:v2"),
    ]);
    assert!(!out.status.success(), "a pull token pushed");
    assert!(
        !b.logs().contains(&good[good.len() - 20..]),
        "a token reached the log"
    );
}

fn base64_std(data: &[u8]) -> String {
    b64url(data).replace('-', "+").replace('_', "/")
}

#[test]
fn credentials_from_a_remote_client_over_plain_http_are_refused() {
    // A trusted proxy announces a non-loopback client over plain HTTP (PROXY protocol):
    // Basic credentials would have crossed the network in clear.
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_with_users(
        dir.path(),
        &[
            ("BERTH__HTTP__PROXY_PROTOCOL", "true"),
            ("BERTH__HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    );
    let req = |who: &str| {
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: r\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic("alice", "wonderland")
        )
        .replace("r\r\nAuth", &format!("{who}\r\nAuth"))
    };
    let remote = raw_http(
        b.port,
        b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 80\r\n",
        &req("r"),
    )
    .expect("answer");
    assert!(remote.starts_with("HTTP/1.1 401"), "{remote}");
    assert!(remote.contains("plain HTTP"), "{remote}");
    let local = raw_http(
        b.port,
        b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\n",
        &req("r"),
    )
    .expect("answer");
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");
}

#[test]
fn sighup_reloads_the_permission_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("appliance.toml");
    let write_rules = |repos: &str| {
        std::fs::write(
            &conf,
            format!(
                "[auth]\nmode = \"htpasswd\"\n[[auth.rules]]\nrepositories = {repos}\nusers = [\"alice\"]\nactions = [\"*\"]\n"
            ),
        )
        .expect("config");
    };
    write_rules("[\"alice/*\"]");
    let file = dir.path().join("htpasswd");
    let (code, _, err) = berth_cli(
        &["user", "add", "alice", "--password-stdin"],
        &file,
        "wonderland\n",
    );
    assert_eq!(code, 0, "{err}");
    let (conf_s, file_s) = (
        conf.to_string_lossy().into_owned(),
        file.to_string_lossy().into_owned(),
    );
    let b = Berth::start_probe(
        &[
            ("BERTH_CONFIG", conf_s.as_str()),
            ("BERTH__AUTH__HTPASSWD__PATH", file_s.as_str()),
        ],
        "/",
    );
    let alice = basic("alice", "wonderland");
    let start = |repo: &str| {
        call(
            "POST",
            &b.url(&format!("/v2/{repo}/blobs/uploads/")),
            &[("Authorization", &alice)],
            None,
        )
        .status
    };
    assert_eq!(start("team/app"), 403);
    write_rules("[\"alice/*\", \"team/*\"]");
    let hup = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    assert!(b.wait_log("permission rules reloaded"), "{}", b.logs());
    assert_eq!(start("team/app"), 202);
    // A broken file keeps the rules in force, and the process.
    std::fs::write(&conf, "[auth\n").expect("config");
    assert!(Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .expect("kill")
        .success());
    assert!(b.wait_log("configuration reload failed"), "{}", b.logs());
    assert_eq!(start("team/app"), 202);
    assert_eq!(start("other/app"), 403);
}
