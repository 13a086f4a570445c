//! Every endpoint of the OCI Distribution API, including the error paths, against the real
//! binary on loopback.

mod common;

use common::*;

fn spec_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        r.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.error_code(), code);
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));
}

#[test]
fn base_and_root() {
    let b = Berth::start(&[]);
    let r = call("GET", &b.url("/v2/"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(call("GET", &b.url("/"), &[], None).status, 200);
    spec_error(
        &call("GET", &b.url("/v2/a/nothing/here"), &[], None),
        404,
        "NOT_FOUND",
    );
    spec_error(&call("POST", &b.url("/v2/"), &[], None), 405, "UNSUPPORTED");
    spec_error(
        &call("PATCH", &b.url("/v2/a/tags/list"), &[], Some(b"x")),
        405,
        "UNSUPPORTED",
    );
}

#[test]
fn monolithic_upload_and_blob_reads() {
    let b = Berth::start(&[]);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha256(&data);
    let r = call(
        "POST",
        &b.url(&format!("/v2/r/blobs/uploads/?digest={d}")),
        &[],
        Some(&data),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/r/blobs/{d}").as_str())
    );
    assert_eq!(r.header("Docker-Content-Digest"), Some(d.as_str()));

    let head = call("HEAD", &b.url(&format!("/v2/r/blobs/{d}")), &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("100000"));
    assert_eq!(head.header("Docker-Content-Digest"), Some(d.as_str()));

    let get = call("GET", &b.url(&format!("/v2/r/blobs/{d}")), &[], None);
    assert_eq!(get.status, 200);
    assert_eq!(get.body, data);

    let part = call(
        "GET",
        &b.url(&format!("/v2/r/blobs/{d}")),
        &[("Range", "bytes=10-19")],
        None,
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[10..20]);
    assert_eq!(part.header("Content-Range"), Some("bytes 10-19/100000"));
    let tail = call(
        "GET",
        &b.url(&format!("/v2/r/blobs/{d}")),
        &[("Range", "bytes=-5")],
        None,
    );
    assert_eq!(tail.body, &data[data.len() - 5..]);
    let bad = call(
        "GET",
        &b.url(&format!("/v2/r/blobs/{d}")),
        &[("Range", "bytes=100000-")],
        None,
    );
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("Content-Range"), Some("bytes */100000"));

    // The blob is linked into r only.
    spec_error(
        &call("GET", &b.url(&format!("/v2/other/blobs/{d}")), &[], None),
        404,
        "BLOB_UNKNOWN",
    );
    let missing = sha256(b"missing");
    let r = call("HEAD", &b.url(&format!("/v2/r/blobs/{missing}")), &[], None);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
}

#[test]
fn post_then_put_and_digest_mismatch() {
    let b = Berth::start(&[]);
    let r = call("POST", &b.url("/v2/r/blobs/uploads/"), &[], None);
    assert_eq!(r.status, 202);
    assert_eq!(r.header("Range"), Some("0-0"));
    let loc = r.header("Location").expect("location").to_owned();
    assert!(r
        .header("Docker-Upload-UUID")
        .is_some_and(|u| loc.ends_with(u)));
    let d = sha256(b"payload");
    let r = call(
        "PUT",
        &b.url(&format!("{loc}?digest={d}")),
        &[],
        Some(b"payload"),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        call("GET", &b.url(&format!("/v2/r/blobs/{d}")), &[], None).body,
        b"payload"
    );

    // A wrong digest: 400 DIGEST_INVALID and nothing becomes visible.
    let loc = call("POST", &b.url("/v2/r/blobs/uploads/"), &[], None)
        .header("Location")
        .expect("loc")
        .to_owned();
    let wrong = sha256(b"something else");
    spec_error(
        &call(
            "PUT",
            &b.url(&format!("{loc}?digest={wrong}")),
            &[],
            Some(b"evil"),
        ),
        400,
        "DIGEST_INVALID",
    );
    spec_error(
        &call("GET", &b.url(&format!("/v2/r/blobs/{wrong}")), &[], None),
        404,
        "BLOB_UNKNOWN",
    );
    let evil = sha256(b"evil");
    assert_eq!(
        call("HEAD", &b.url(&format!("/v2/r/blobs/{evil}")), &[], None).status,
        404
    );
    assert!(!b
        .root()
        .join(format!("docker/registry/v2/blobs/sha256/{}", &evil[7..9]))
        .exists());
    // The failed session is gone.
    spec_error(
        &call("GET", &b.url(&loc), &[], None),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );

    // Missing or malformed digest on PUT.
    let loc = call("POST", &b.url("/v2/r/blobs/uploads/"), &[], None)
        .header("Location")
        .expect("loc")
        .to_owned();
    spec_error(
        &call("PUT", &b.url(&loc), &[], Some(b"x")),
        400,
        "DIGEST_INVALID",
    );
    spec_error(
        &call(
            "PUT",
            &b.url(&format!("{loc}?digest=sha256:12")),
            &[],
            Some(b"x"),
        ),
        400,
        "DIGEST_INVALID",
    );
    spec_error(
        &call(
            "POST",
            &b.url("/v2/r/blobs/uploads/?digest=md5:abc"),
            &[],
            Some(b"x"),
        ),
        400,
        "DIGEST_INVALID",
    );
}

#[test]
fn chunked_streamed_status_and_cancel() {
    let b = Berth::start(&[]);
    let loc = call("POST", &b.url("/v2/r/blobs/uploads/"), &[], None)
        .header("Location")
        .expect("loc")
        .to_owned();
    let r = call(
        "PATCH",
        &b.url(&loc),
        &[
            ("Content-Range", "0-4"),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(b"hello"),
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.header("Range"), Some("0-4"));
    // Out of order: 416 with the current range.
    let r = call(
        "PATCH",
        &b.url(&loc),
        &[("Content-Range", "7-9")],
        Some(b"abc"),
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Range"), Some("0-4"));
    // Announced length does not match the body: refused, nothing appended.
    let r = call(
        "PATCH",
        &b.url(&loc),
        &[("Content-Range", "5-20")],
        Some(b"abc"),
    );
    assert_eq!(r.status, 400);
    let s = call("GET", &b.url(&loc), &[], None);
    assert_eq!(s.status, 204);
    assert_eq!(s.header("Range"), Some("0-4"));
    // Streamed chunk, no Content-Range (as docker sends).
    let r = call("PATCH", &b.url(&loc), &[], Some(b" world"));
    assert_eq!(r.status, 202);
    assert_eq!(r.header("Range"), Some("0-10"));
    // Final chunk on the PUT.
    let d = sha256(b"hello world!");
    let r = call(
        "PUT",
        &b.url(&format!("{loc}?digest={d}")),
        &[("Content-Range", "11-11")],
        Some(b"!"),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        call("GET", &b.url(&format!("/v2/r/blobs/{d}")), &[], None).body,
        b"hello world!"
    );

    // Cancel.
    let loc = call("POST", &b.url("/v2/r/blobs/uploads/"), &[], None)
        .header("Location")
        .expect("loc")
        .to_owned();
    assert_eq!(call("DELETE", &b.url(&loc), &[], None).status, 204);
    spec_error(
        &call("GET", &b.url(&loc), &[], None),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    spec_error(
        &call("DELETE", &b.url(&loc), &[], None),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    spec_error(
        &call("PATCH", &b.url(&loc), &[], Some(b"x")),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    spec_error(
        &call(
            "GET",
            &b.url("/v2/r/blobs/uploads/not-an-upload-id"),
            &[],
            None,
        ),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
}

#[test]
fn cross_repository_mount() {
    let b = Berth::start(&[]);
    let d = push_blob(&b, "src", b"shared layer");
    let r = call(
        "POST",
        &b.url(&format!("/v2/dst/blobs/uploads/?mount={d}&from=src")),
        &[],
        None,
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(
        call("GET", &b.url(&format!("/v2/dst/blobs/{d}")), &[], None).body,
        b"shared layer"
    );
    // Without `from`.
    let r = call(
        "POST",
        &b.url(&format!("/v2/third/blobs/uploads/?mount={d}")),
        &[],
        None,
    );
    assert_eq!(r.status, 201);
    // Unknown blob, or a `from` that does not hold it: a new session instead.
    let missing = sha256(b"nope");
    let r = call(
        "POST",
        &b.url(&format!("/v2/dst/blobs/uploads/?mount={missing}&from=src")),
        &[],
        None,
    );
    assert_eq!(r.status, 202);
    assert!(r
        .header("Location")
        .is_some_and(|l| l.starts_with("/v2/dst/blobs/uploads/")));
    let r = call(
        "POST",
        &b.url(&format!(
            "/v2/fourth/blobs/uploads/?mount={d}&from=elsewhere"
        )),
        &[],
        None,
    );
    assert_eq!(r.status, 202);
}

#[test]
fn manifests_by_tag_and_digest() {
    let b = Berth::start(&[]);
    let (bytes, d) = push_image(&b, "app", "v1", b"layer one");
    for reference in ["v1", d.as_str()] {
        let r = call(
            "GET",
            &b.url(&format!("/v2/app/manifests/{reference}")),
            &[("Accept", OCI_MANIFEST)],
            None,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, bytes, "stored bytes come back unchanged");
        assert_eq!(r.header("Content-Type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("Docker-Content-Digest"), Some(d.as_str()));
        let h = call(
            "HEAD",
            &b.url(&format!("/v2/app/manifests/{reference}")),
            &[],
            None,
        );
        assert_eq!(h.status, 200);
        assert_eq!(
            h.header("Content-Length"),
            Some(bytes.len().to_string().as_str())
        );
        assert_eq!(h.header("Docker-Content-Digest"), Some(d.as_str()));
    }
    // A client that accepts only Docker schema2 is not handed an OCI manifest by tag.
    let r = call(
        "GET",
        &b.url("/v2/app/manifests/v1"),
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        None,
    );
    spec_error(&r, 404, "MANIFEST_UNKNOWN");
    spec_error(
        &call("GET", &b.url("/v2/app/manifests/v2"), &[], None),
        404,
        "MANIFEST_UNKNOWN",
    );
    spec_error(
        &call("GET", &b.url("/v2/nope/manifests/v1"), &[], None),
        404,
        "MANIFEST_UNKNOWN",
    );

    // Docker schema2 with its own media type.
    let cfg = push_blob(&b, "app", b"{}");
    let docker = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 2},
        "layers": [],
    })
    .to_string();
    let ct = "application/vnd.docker.distribution.manifest.v2+json";
    let r = call(
        "PUT",
        &b.url("/v2/app/manifests/docker"),
        &[("Content-Type", ct)],
        Some(docker.as_bytes()),
    );
    assert_eq!(r.status, 201);
    let r = call(
        "GET",
        &b.url("/v2/app/manifests/docker"),
        &[("Accept", ct)],
        None,
    );
    assert_eq!(r.header("Content-Type"), Some(ct));
    assert_eq!(r.body, docker.as_bytes());
}

#[test]
fn manifest_validation_errors() {
    let b = Berth::start(&[("BERTH__LIMITS__MANIFEST_MAX", "64KiB")]);
    let put = |body: &[u8], ct: &str| {
        call(
            "PUT",
            &b.url("/v2/app/manifests/t"),
            &[("Content-Type", ct)],
            Some(body),
        )
    };
    spec_error(&put(b"{not json", OCI_MANIFEST), 400, "MANIFEST_INVALID");
    let missing = sha256(b"absent");
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing, "size": 6},
        "layers": [],
    })
    .to_string();
    let r = put(m.as_bytes(), OCI_MANIFEST);
    spec_error(&r, 400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], missing);
    // Body and Content-Type disagree.
    spec_error(&put(m.as_bytes(), OCI_INDEX), 400, "MANIFEST_INVALID");
    // Schema 1 is refused.
    spec_error(
        &put(
            br#"{"schemaVersion":1,"name":"app","tag":"t"}"#,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        400,
        "MANIFEST_INVALID",
    );
    // Too large: 413, by Content-Length and while streaming.
    let big = vec![b' '; 65 * 1024];
    spec_error(&put(&big, OCI_MANIFEST), 413, "SIZE_INVALID");
    // A digest reference that does not match the body.
    let cfg = push_blob(&b, "app", b"{}");
    let ok = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [],
    })
    .to_string();
    let wrong = sha256(b"other");
    let r = call(
        "PUT",
        &b.url(&format!("/v2/app/manifests/{wrong}")),
        &[("Content-Type", OCI_MANIFEST)],
        Some(ok.as_bytes()),
    );
    spec_error(&r, 400, "DIGEST_INVALID");
    // Nothing of the refused pushes is visible.
    spec_error(
        &call("GET", &b.url("/v2/app/tags/list"), &[], None),
        404,
        "NAME_UNKNOWN",
    );
    // Bad tag in the path.
    let r = call(
        "PUT",
        &b.url("/v2/app/manifests/-bad"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(ok.as_bytes()),
    );
    spec_error(&r, 400, "TAG_INVALID");
}

/// The distribution-spec conformance suite's "nonexistent manifest" case: a reference
/// that is neither a tag nor a digest is 404 for GET and HEAD, 400 for a PUT.
#[test]
fn invalid_reference_is_unknown_to_reads_and_refused_to_writes() {
    let b = Berth::start(&[]);
    push_image(&b, "conf", "v1", b"a layer");
    for reference in [".INVALID_MANIFEST_NAME", "-bad", &"t".repeat(129)] {
        let url = b.url(&format!("/v2/conf/manifests/{reference}"));
        spec_error(&call("GET", &url, &[], None), 404, "MANIFEST_UNKNOWN");
        let head = call("HEAD", &url, &[], None);
        assert_eq!(head.status, 404, "HEAD {reference}");
        assert!(head.body.is_empty());
        let put = call("PUT", &url, &[("Content-Type", OCI_MANIFEST)], Some(b"{}"));
        spec_error(&put, 400, "TAG_INVALID");
    }
    let bad_digest = b.url("/v2/conf/manifests/sha256:abc");
    spec_error(
        &call("GET", &bad_digest, &[], None),
        404,
        "MANIFEST_UNKNOWN",
    );
    spec_error(
        &call(
            "PUT",
            &bad_digest,
            &[("Content-Type", OCI_MANIFEST)],
            Some(b"{}"),
        ),
        400,
        "DIGEST_INVALID",
    );
    // The repository's real tag is untouched.
    assert_eq!(get_manifest(&b, "conf", "v1").status, 200);
}

/// `manifests.require_index_children = false` accepts a sparse index (children absent)
/// and serves it and its tag; the default refuses it.
#[test]
fn sparse_index_when_children_are_not_required() {
    let absent = sha256(b"a child that was never pushed");
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": absent, "size": 321,
                       "platform": {"architecture": "arm64", "os": "linux"}}],
    })
    .to_string();
    let put = |b: &Berth| {
        call(
            "PUT",
            &b.url("/v2/sparse/manifests/multi"),
            &[("Content-Type", OCI_INDEX)],
            Some(index.as_bytes()),
        )
    };
    let strict = Berth::start(&[]);
    spec_error(&put(&strict), 400, "MANIFEST_UNKNOWN");
    let lax = Berth::start(&[("BERTH__MANIFESTS__REQUIRE_INDEX_CHILDREN", "false")]);
    let r = put(&lax);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let d = sha256(index.as_bytes());
    for reference in ["multi", d.as_str()] {
        let got = call(
            "GET",
            &lax.url(&format!("/v2/sparse/manifests/{reference}")),
            &[("Accept", OCI_INDEX)],
            None,
        );
        assert_eq!(got.status, 200, "{reference}");
        assert_eq!(got.body, index.as_bytes());
        assert_eq!(got.header("Docker-Content-Digest"), Some(d.as_str()));
    }
    let tags = call("GET", &lax.url("/v2/sparse/tags/list"), &[], None).json();
    assert_eq!(tags["tags"], serde_json::json!(["multi"]));
    // The absent child is still absent, not invented.
    spec_error(
        &call(
            "GET",
            &lax.url(&format!("/v2/sparse/manifests/{absent}")),
            &[],
            None,
        ),
        404,
        "MANIFEST_UNKNOWN",
    );
}

#[test]
fn index_children_and_foreign_layers() {
    let b = Berth::start(&[(
        "BERTH__MANIFESTS__FOREIGN_URLS_DENY",
        "[\"^https://evil\\\\.example/\"]",
    )]);
    let (m1, d1) = push_image(&b, "multi", "amd", b"amd64 layer");
    let absent = sha256(b"absent child");
    let index = |children: &[(&str, usize)]| {
        serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": children.iter().map(|(d, n)| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": n, "platform": {"architecture": "amd64", "os": "linux"}})).collect::<Vec<_>>(),
        })
        .to_string()
    };
    let r = call(
        "PUT",
        &b.url("/v2/multi/manifests/all"),
        &[("Content-Type", OCI_INDEX)],
        Some(index(&[(&d1, m1.len()), (&absent, 10)]).as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let good = index(&[(&d1, m1.len())]);
    let r = call(
        "PUT",
        &b.url("/v2/multi/manifests/all"),
        &[("Content-Type", OCI_INDEX)],
        Some(good.as_bytes()),
    );
    assert_eq!(r.status, 201);
    let r = call(
        "GET",
        &b.url("/v2/multi/manifests/all"),
        &[("Accept", OCI_INDEX)],
        None,
    );
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    assert_eq!(r.body, good.as_bytes());

    // A foreign layer is accepted without its bytes; a denied URL is refused.
    let cfg = push_blob(&b, "win", b"{}");
    let foreign = |url: &str| {
        serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 2},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": sha256(b"windows base"), "size": 12345, "urls": [url]}],
        })
        .to_string()
    };
    let ct = "application/vnd.docker.distribution.manifest.v2+json";
    let r = call(
        "PUT",
        &b.url("/v2/win/manifests/ltsc"),
        &[("Content-Type", ct)],
        Some(foreign("https://mcr.microsoft.com/l/x").as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = call(
        "PUT",
        &b.url("/v2/win/manifests/bad"),
        &[("Content-Type", ct)],
        Some(foreign("https://evil.example/l").as_bytes()),
    );
    spec_error(&r, 400, "MANIFEST_INVALID");
    let r = call(
        "PUT",
        &b.url("/v2/win/manifests/bad"),
        &[("Content-Type", ct)],
        Some(foreign("file:///etc/passwd").as_bytes()),
    );
    spec_error(&r, 400, "MANIFEST_INVALID");
}

#[test]
fn multi_tag_push_and_tag_pagination() {
    let b = Berth::start(&[("BERTH__LIMITS__PAGE_MAX", "3")]);
    let (bytes, d) = push_image(&b, "app", "a", b"layer");
    let r = call(
        "PUT",
        &b.url(&format!("/v2/app/manifests/{d}?tag=b&tag=c&tag=d&tag=e")),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&bytes),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header_all("OCI-Tag"), vec!["b", "c", "d", "e"]);
    let all = |q: &str| call("GET", &b.url(&format!("/v2/app/tags/list{q}")), &[], None);
    let r = all("?n=2");
    assert_eq!(r.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        r.header("Link"),
        Some("</v2/app/tags/list?last=b&n=2>; rel=\"next\"")
    );
    let r = all("?n=2&last=b");
    assert_eq!(r.json()["tags"], serde_json::json!(["c", "d"]));
    let r = all("?n=2&last=d");
    assert_eq!(r.json()["tags"], serde_json::json!(["e"]));
    assert_eq!(r.header("Link"), None);
    // n above the cap is capped, with a Link to the rest.
    let r = all("?n=100000");
    assert_eq!(r.json()["tags"], serde_json::json!(["a", "b", "c"]));
    assert!(r.header("Link").is_some());
    let r = all("");
    assert_eq!(r.json()["tags"].as_array().map(|a| a.len()), Some(3));
    assert_eq!(all("?n=0").json()["tags"], serde_json::json!([]));
    spec_error(&all("?n=-1"), 400, "PAGINATION_NUMBER_INVALID");
    spec_error(
        &call("GET", &b.url("/v2/unknown/tags/list"), &[], None),
        404,
        "NAME_UNKNOWN",
    );
}

#[test]
fn catalog_pagination() {
    let b = Berth::start(&[("BERTH__LIMITS__PAGE_MAX", "2")]);
    for repo in ["c/x", "a", "b/y/z"] {
        push_image(&b, repo, "t", repo.as_bytes());
    }
    // A repository with only an upload in progress is not listed; one with only a blob is,
    // as distribution lists it.
    call("POST", &b.url("/v2/pending/blobs/uploads/"), &[], None);
    push_blob(&b, "c-blob-only", b"orphan");
    let r = call("GET", &b.url("/v2/_catalog"), &[], None);
    assert_eq!(r.json()["repositories"], serde_json::json!(["a", "b/y/z"]));
    assert_eq!(
        r.header("Link"),
        Some("</v2/_catalog?last=b/y/z&n=2>; rel=\"next\"")
    );
    let r = call("GET", &b.url("/v2/_catalog?last=b/y/z&n=2"), &[], None);
    // Path components sort first: c/x before c-blob-only.
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["c/x", "c-blob-only"])
    );
    spec_error(
        &call("GET", &b.url("/v2/_catalog?n=x"), &[], None),
        400,
        "PAGINATION_NUMBER_INVALID",
    );
}

#[test]
fn deletes() {
    let b = Berth::start(&[]);
    let (bytes, d) = push_image(&b, "app", "v1", b"layer");
    let r = call(
        "PUT",
        &b.url(&format!("/v2/app/manifests/{d}?tag=v2")),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&bytes),
    );
    assert_eq!(r.status, 201);
    // Tag delete leaves the manifest and the other tag.
    assert_eq!(
        call("DELETE", &b.url("/v2/app/manifests/v1"), &[], None).status,
        202
    );
    spec_error(
        &call("GET", &b.url("/v2/app/manifests/v1"), &[], None),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_eq!(
        call("GET", &b.url(&format!("/v2/app/manifests/{d}")), &[], None).status,
        200
    );
    spec_error(
        &call("DELETE", &b.url("/v2/app/manifests/v1"), &[], None),
        404,
        "MANIFEST_UNKNOWN",
    );
    // Manifest delete by digest removes the tags that point at it.
    assert_eq!(
        call(
            "DELETE",
            &b.url(&format!("/v2/app/manifests/{d}")),
            &[],
            None
        )
        .status,
        202
    );
    spec_error(
        &call("GET", &b.url("/v2/app/manifests/v2"), &[], None),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_eq!(
        call("GET", &b.url("/v2/app/tags/list"), &[], None).json()["tags"],
        serde_json::json!([])
    );
    // Blob delete.
    let ld = sha256(b"layer");
    assert_eq!(
        call("DELETE", &b.url(&format!("/v2/app/blobs/{ld}")), &[], None).status,
        202
    );
    spec_error(
        &call("GET", &b.url(&format!("/v2/app/blobs/{ld}")), &[], None),
        404,
        "BLOB_UNKNOWN",
    );
    spec_error(
        &call("DELETE", &b.url(&format!("/v2/app/blobs/{ld}")), &[], None),
        404,
        "BLOB_UNKNOWN",
    );
}

#[test]
fn deletes_refused_when_disabled() {
    let b = Berth::start(&[("BERTH__STORAGE__DELETE_ENABLED", "false")]);
    let (_, d) = push_image(&b, "app", "v1", b"layer");
    let ld = sha256(b"layer");
    let loc = call("POST", &b.url("/v2/app/blobs/uploads/"), &[], None)
        .header("Location")
        .expect("loc")
        .to_owned();
    for path in [
        "/v2/app/manifests/v1".to_owned(),
        format!("/v2/app/manifests/{d}"),
        format!("/v2/app/blobs/{ld}"),
        loc.clone(),
    ] {
        spec_error(
            &call("DELETE", &b.url(&path), &[], None),
            405,
            "UNSUPPORTED",
        );
    }
    assert_eq!(
        call("GET", &b.url("/v2/app/manifests/v1"), &[], None).status,
        200
    );
    assert_eq!(
        call("GET", &b.url(&format!("/v2/app/blobs/{ld}")), &[], None).status,
        200
    );
    assert_eq!(call("GET", &b.url(&loc), &[], None).status, 204);
}

#[test]
fn referrers_and_subject() {
    let b = Berth::start(&[]);
    let (_, subject) = push_image(&b, "app", "v1", b"layer");
    let empty = push_blob(&b, "app", b"{}");
    let sbom = push_blob(&b, "app", b"sbom contents");
    let artifact = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": sbom, "size": 13}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"org.example": "yes"},
    })
    .to_string();
    let ad = sha256(artifact.as_bytes());
    let r = call(
        "PUT",
        &b.url(&format!("/v2/app/manifests/{ad}")),
        &[("Content-Type", OCI_MANIFEST)],
        Some(artifact.as_bytes()),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("OCI-Subject"), Some(subject.as_str()));

    let r = call(
        "GET",
        &b.url(&format!("/v2/app/referrers/{subject}")),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    let j = r.json();
    assert_eq!(j["manifests"][0]["digest"], ad);
    assert_eq!(
        j["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(j["manifests"][0]["size"], artifact.len());
    assert_eq!(j["manifests"][0]["annotations"]["org.example"], "yes");
    let r = call(
        "GET",
        &b.url(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom"
        )),
        &[],
        None,
    );
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"].as_array().map(|a| a.len()), Some(1));
    let r = call(
        "GET",
        &b.url(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/other"
        )),
        &[],
        None,
    );
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    // Unknown subject: an empty index, not an error.
    let r = call(
        "GET",
        &b.url(&format!("/v2/app/referrers/{}", sha256(b"x"))),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    spec_error(
        &call("GET", &b.url("/v2/app/referrers/sha256:bad"), &[], None),
        400,
        "DIGEST_INVALID",
    );
    // Deleting the referrer removes it from the list.
    assert_eq!(
        call(
            "DELETE",
            &b.url(&format!("/v2/app/manifests/{ad}")),
            &[],
            None
        )
        .status,
        202
    );
    let r = call(
        "GET",
        &b.url(&format!("/v2/app/referrers/{subject}")),
        &[],
        None,
    );
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
}

#[test]
fn hostile_names_never_escape_the_root() {
    let b = Berth::start(&[]);
    let before = files_under(b.dir.path()).len();
    let long = "a".repeat(256);
    let long_tag = "t".repeat(129);
    for (path, status, code) in [
        (
            "/v2/../../etc/passwd/manifests/latest".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/%2e%2e/%2e%2e/manifests/latest".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/a/%2e%2e/%2e%2e/%2e%2e/manifests/latest".to_owned(),
            400,
            "NAME_INVALID",
        ),
        ("/v2/Upper/manifests/latest".to_owned(), 400, "NAME_INVALID"),
        (format!("/v2/{long}/manifests/latest"), 400, "NAME_INVALID"),
        // A GET of a reference that cannot exist finds nothing (the conformance suite).
        (
            format!("/v2/ok/manifests/{long_tag}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/ok/blobs/sha256:..%2f..%2f..%2fetc".to_owned(),
            404,
            "NOT_FOUND",
        ),
        (
            format!("/v2/ok/blobs/sha256:{}", "A".repeat(64)),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/ok/blobs/uploads/..%2f..%2fx".to_owned(),
            404,
            "NOT_FOUND",
        ),
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            // On a raw socket: HTTP clients normalize `..` and `%2e%2e` before sending.
            let (got, body) = raw(&b, method, &path);
            assert!(got < 500, "{method} {path}: {got}");
            if method == "GET" {
                assert_eq!(got, status, "{path}: {body}");
                assert!(body.contains(code), "{path}: {body}");
            }
        }
    }
    assert_eq!(
        files_under(b.dir.path()).len(),
        before,
        "nothing was written"
    );
}

/// One request on its own connection, path sent exactly as given; returns status and body.
fn raw(b: &Berth, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn concurrent_identical_pushes_both_succeed() {
    let b = Berth::start(&[]);
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let d = sha256(&data);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let url = b.url(&format!("/v2/repo{i}/blobs/uploads/?digest={d}"));
            let data = data.clone();
            std::thread::spawn(move || call("POST", &url, &[], Some(&data)).status)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), 201);
    }
    for i in 0..4 {
        assert_eq!(
            call("GET", &b.url(&format!("/v2/repo{i}/blobs/{d}")), &[], None).body,
            data
        );
    }
}

#[test]
fn blob_size_limit() {
    let b = Berth::start(&[("BERTH__LIMITS__BLOB_MAX", "1KiB")]);
    let big = vec![1u8; 2048];
    let d = sha256(&big);
    spec_error(
        &call(
            "POST",
            &b.url(&format!("/v2/r/blobs/uploads/?digest={d}")),
            &[],
            Some(&big),
        ),
        413,
        "SIZE_INVALID",
    );
    let small = vec![1u8; 1000];
    assert_eq!(
        call(
            "POST",
            &b.url(&format!("/v2/r/blobs/uploads/?digest={}", sha256(&small))),
            &[],
            Some(&small)
        )
        .status,
        201
    );
}
