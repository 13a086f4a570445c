//! Two berth processes on one store (a zero-downtime upgrade, or instances on shared
//! storage): concurrent identical pushes through both succeed, and an upload started on
//! one process is finished on the other.

mod common;

use common::*;

#[test]
fn two_processes_share_one_store() {
    let a = Berth::start(&[]);
    let root = a.root().to_string_lossy().into_owned();
    let b = Berth::start(&[("BERTH__STORAGE__ROOT", root.as_str())]);

    // The same image pushed through both at once, several times over.
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 249) as u8).collect();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 { a.url("") } else { b.url("") };
            let layer = layer.clone();
            std::thread::spawn(move || {
                let d = sha256(&layer);
                let r = call(
                    "POST",
                    &format!("{url}/v2/shared/app/blobs/uploads/?digest={d}"),
                    &[],
                    Some(&layer),
                );
                r.status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), 201);
    }
    let (m, md) = push_image(&a, "shared/app", "v1", &layer);
    let r = call(
        "PUT",
        &b.url("/v2/shared/app/manifests/v1"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&m),
    );
    assert_eq!(r.status, 201);
    for s in [&a, &b] {
        let r = call(
            "GET",
            &s.url("/v2/shared/app/manifests/v1"),
            &[("Accept", OCI_MANIFEST)],
            None,
        );
        assert_eq!(r.header("Docker-Content-Digest"), Some(md.as_str()));
        let l = call(
            "GET",
            &s.url(&format!("/v2/shared/app/blobs/{}", sha256(&layer))),
            &[],
            None,
        );
        assert_eq!(l.body, layer);
    }

    // An upload begun on A, continued and finished on B: its state is on disk.
    let loc = call("POST", &a.url("/v2/shared/up/blobs/uploads/"), &[], None)
        .header("Location")
        .expect("location")
        .to_owned();
    let r = call(
        "PATCH",
        &a.url(&loc),
        &[("Content-Range", "0-4")],
        Some(b"hello"),
    );
    assert_eq!(r.status, 202);
    let s = call("GET", &b.url(&loc), &[], None);
    assert_eq!(s.header("Range"), Some("0-4"));
    let r = call(
        "PATCH",
        &b.url(&loc),
        &[("Content-Range", "5-10")],
        Some(b" world"),
    );
    assert_eq!(r.status, 202);
    let d = sha256(b"hello world");
    assert_eq!(
        call("PUT", &b.url(&format!("{loc}?digest={d}")), &[], None).status,
        201
    );
    assert_eq!(
        call(
            "GET",
            &a.url(&format!("/v2/shared/up/blobs/{d}")),
            &[],
            None
        )
        .body,
        b"hello world"
    );
}
