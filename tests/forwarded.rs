//! Forwarded context: `X-Forwarded-*` and `Forwarded` from trusted proxies shape `Location`
//! and the logged client address; from anyone else they change nothing.

mod common;

use common::*;

fn upload_location(b: &Berth, headers: &[(&str, &str)]) -> String {
    let r = call("POST", &b.url("/v2/app/blobs/uploads/"), headers, None);
    assert_eq!(r.status, 202);
    r.header("Location").expect("location").to_owned()
}

const FORGED: &[(&str, &str)] = &[
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-For", "203.0.113.9"),
];

#[test]
fn untrusted_peers_cannot_steer_location() {
    let b = Berth::start(&[]);
    let loc = upload_location(&b, FORGED);
    assert!(loc.starts_with("/v2/app/blobs/uploads/"), "{loc}");
    let r = call(
        "POST",
        &b.url("/v2/app/blobs/uploads/"),
        &[("Forwarded", "for=203.0.113.9;proto=https;host=evil.example")],
        None,
    );
    assert!(r.header("Location").is_some_and(|l| l.starts_with("/v2/")));
    // Both POSTs are in the access log, with the real peer address.
    for _ in 0..50 {
        if b.logs().matches("status=202").count() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(b.logs().matches("status=202").count(), 2);
    assert!(
        !b.logs().contains("203.0.113.9"),
        "a forged client address was logged"
    );
}

#[test]
fn trusted_proxies_set_scheme_host_and_client() {
    let b = Berth::start(&[("BERTH__HTTP__TRUSTED_PROXIES", "[\"127.0.0.0/8\"]")]);
    let loc = upload_location(&b, FORGED);
    assert!(
        loc.starts_with("https://evil.example/v2/app/blobs/uploads/"),
        "{loc}"
    );
    assert!(b.wait_log("client=203.0.113.9"), "{}", b.logs());
    // RFC 7239 Forwarded works too.
    let r = call(
        "POST",
        &b.url("/v2/app/blobs/uploads/"),
        &[(
            "Forwarded",
            "for=\"[2001:db8::7]\";proto=https;host=registry.example.com",
        )],
        None,
    );
    assert!(
        r.header("Location")
            .is_some_and(|l| l.starts_with("https://registry.example.com/v2/")),
        "{:?}",
        r.header("Location")
    );
    assert!(b.wait_log("client=2001:db8::7"), "{}", b.logs());
    // Manifest and blob Locations follow as well.
    let d = sha256(b"x");
    let r = call(
        "POST",
        &b.url(&format!("/v2/app/blobs/uploads/?digest={d}")),
        FORGED,
        Some(b"x"),
    );
    assert_eq!(
        r.header("Location"),
        Some(format!("https://evil.example/v2/app/blobs/{d}").as_str())
    );
}

#[test]
fn external_url_wins() {
    let b = Berth::start(&[
        ("BERTH__HTTP__EXTERNAL_URL", "https://registry.example.com/"),
        ("BERTH__HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
    ]);
    let loc = upload_location(&b, FORGED);
    assert!(
        loc.starts_with("https://registry.example.com/v2/app/blobs/uploads/"),
        "{loc}"
    );
    let loc = upload_location(&b, &[]);
    assert!(loc.starts_with("https://registry.example.com/v2/"), "{loc}");
}
