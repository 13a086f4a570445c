//! `berth fsck` on a store a real client (skopeo) pushed to, while berth serves it: a
//! corrupt layer is reported (exit 1), `--repair` quarantines it (the bytes kept), the
//! image then fails to pull cleanly while another still pulls, and pushing it again leaves
//! the store clean (exit 0). Also the server's schedule (`[scrub]`): problems in the log and
//! in `/metrics`, nothing repaired.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo")
}

fn push(image: &str, port: u16, to: &str) {
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        image,
        &format!("docker://127.0.0.1:{port}/{to}"),
    ]);
    assert!(
        out.status.success(),
        "push {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pull(port: u16, from: &str, layout: &Path) -> Output {
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://127.0.0.1:{port}/{from}"),
        &format!("oci:{}:app", layout.display()),
    ])
}

/// `berth fsck -c CONFIG ARGS`: (exit code, stdout, stderr).
fn fsck(config: &Path, args: &[&str]) -> (i32, String, String) {
    let config = config.to_string_lossy();
    let mut all = vec!["fsck", "-c", &config];
    all.extend_from_slice(args);
    run_berth(&all, &[])
}

fn blob_data(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

/// The first layer's digest of `repo:tag` (an OCI image manifest).
fn layer_of(b: &Berth, repo: &str, tag: &str) -> String {
    let m = get_manifest(b, repo, tag);
    assert_eq!(m.status, 200);
    m.json()["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_owned()
}

/// Flips one bit in the middle of a file (its size stays), returning the new bytes.
fn corrupt(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("read blob");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).expect("corrupt blob");
    bytes
}

/// The problem lines of fsck's output (everything but the summary).
fn problems(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.starts_with("checked ")).collect()
}

#[test]
fn fsck_finds_and_repair_quarantines_a_corrupt_layer_while_berth_serves() {
    let b = Berth::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = make_oci_layout_with(&dir.path().join("broken"), "this layer will rot\n");
    let intact = make_oci_layout_with(&dir.path().join("intact"), "this one stays whole\n");
    push(&broken, b.port, "rot/app:v1");
    push(&intact, b.port, "whole/app:v1");
    let config = dir.path().join("appliance.toml");
    std::fs::write(
        &config,
        format!("[storage]\nroot = {:?}\n", b.root().display().to_string()),
    )
    .expect("config");

    let (code, out, err) = fsck(&config, &[]);
    assert_eq!(code, 0, "a store skopeo pushed to is clean: {out}{err}");
    assert!(problems(&out).is_empty(), "{out}");
    let summary = out.lines().last().unwrap_or_default();
    assert!(summary.starts_with("checked 6 blobs"), "{summary}");
    assert!(summary.ends_with(": 0 problems"), "{summary}");

    let layer = layer_of(&b, "rot/app", "v1");
    let data = blob_data(&b.root(), &layer);
    let rotten = corrupt(&data);
    let (code, out, err) = fsck(&config, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        problems(&out),
        [format!(
            "corrupt-blob - {layer} {}: the bytes hash to sha256:{}",
            data.display(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&rotten))
        )],
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap_or_default()
            .ends_with(": 1 problem"),
        "{out}"
    );
    assert_eq!(std::fs::read(&data).expect("untouched"), rotten);

    let (code, out, err) = fsck(&config, &["--repair"]);
    assert_eq!(code, 1, "the manifest still misses its layer: {out}{err}");
    let lines = problems(&out);
    assert_eq!(lines.len(), 3, "{out}");
    let quarantined = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix(&format!("corrupt-blob - {layer} {}: ", data.display()))
                .and_then(|rest| rest.split(" (quarantined to ").nth(1))
                .and_then(|p| p.strip_suffix(')'))
        })
        .unwrap_or_else(|| panic!("no quarantine line in {out}"));
    let quarantined = Path::new(quarantined);
    assert!(
        quarantined.starts_with(b.root().join("docker/registry/v2/.berth-quarantine")),
        "{out}"
    );
    assert_eq!(std::fs::read(quarantined).expect("kept"), rotten);
    assert!(!data.exists());
    assert!(
        lines.iter().any(
            |l| l.starts_with(&format!("dangling-layer-link rot/app {layer} "))
                && l.ends_with("(removed)")
        ),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("missing-blob rot/app {layer} "))),
        "{out}"
    );
    assert!(out.trim_end().ends_with("3 problems, 2 repaired"), "{out}");

    // The broken image fails to pull, cleanly; the other one pulls.
    let out = pull(b.port, "rot/app:v1", &dir.path().join("pulled-rot"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a pull of the broken image succeeded"
    );
    assert!(err.contains(&layer) && err.contains("404"), "{err}");
    let out = pull(b.port, "whole/app:v1", &dir.path().join("pulled-whole"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !b.logs().contains("status=5"),
        "a 5xx was answered: {}",
        b.logs()
    );

    // Pushing the image again mends it.
    push(&broken, b.port, "rot/app:v1");
    let (code, out, err) = fsck(&config, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(problems(&out).is_empty(), "{out}");
    let out = pull(b.port, "rot/app:v1", &dir.path().join("pulled-again"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fsck_repairs_a_tag_whose_manifest_is_gone_and_a_truncated_link() {
    let b = Berth::start(&[]);
    let (_, gone) = push_image(&b, "app", "v1", b"first layer");
    let (_, kept) = push_image(&b, "app", "v2", b"second layer");
    let root = b.root();
    std::fs::remove_file(blob_data(&root, &gone)).expect("rm manifest bytes");
    let repo = root.join("docker/registry/v2/repositories/app");
    // push_image's config, shared by both images.
    let config = sha256(CONFIG);
    let config_link = repo.join(format!(
        "_layers/sha256/{}/link",
        config.trim_start_matches("sha256:")
    ));
    std::fs::write(&config_link, b"sha256:").expect("truncate link");
    let env = [("BERTH__STORAGE__ROOT", root.to_str().expect("utf-8"))];

    let (code, out, err) = run_berth(&["scrub"], &env);
    assert_eq!(code, 1, "{out}{err}");
    let lines = problems(&out);
    for kind in [
        "dangling-revision-link",
        "dangling-tag",
        "dangling-tag-index-link",
        "corrupt-link",
        "unlinked-blob",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{kind} app "))),
            "no {kind} in {out}"
        );
    }
    let (code, out, err) = run_berth(&["fsck", "--repair"], &env);
    assert_eq!(code, 1, "the config stays unlinked: {out}{err}");
    assert!(out.contains("repaired"), "{out}");
    assert_eq!(get_manifest(&b, "app", "v1").status, 404);
    let tags = call("GET", &b.url("/v2/app/tags/list"), &[], None).json();
    assert_eq!(tags["tags"], serde_json::json!(["v2"]));
    assert!(!config_link.exists());
    assert_eq!(get_manifest(&b, "app", &kept).status, 200);
    // Pushing the config again links it again: nothing is wrong any more.
    push_blob(&b, "app", CONFIG);
    let (code, out, err) = run_berth(&["fsck"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(problems(&out).is_empty(), "{out}");
}

#[test]
fn the_server_scrubs_on_its_schedule_and_reports_in_metrics() {
    let admin = free_port();
    let admin_listen = format!("[\"127.0.0.1:{admin}\"]");
    let b = Berth::start(&[
        ("BERTH__SCRUB__INTERVAL", "1s"),
        ("BERTH__HTTP__ADMIN_LISTEN", admin_listen.as_str()),
    ]);
    push_image(&b, "app", "v1", b"a layer to rot");
    let layer = layer_of(&b, "app", "v1");
    let data = blob_data(&b.root(), &layer);
    corrupt(&data);
    let metrics = || {
        let r = call(
            "GET",
            &format!("http://127.0.0.1:{admin}/metrics"),
            &[],
            None,
        );
        String::from_utf8_lossy(&r.body).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let reported = loop {
        let m = metrics();
        if m.lines().any(|l| l == "berth_scrub_problems 1") {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no scrub result: {m}\n{}",
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        reported
            .lines()
            .any(|l| l.starts_with("berth_scrub_last_finished_timestamp_seconds ")),
        "{reported}"
    );
    assert!(
        b.wait_log(&format!("corrupt-blob - {layer}")),
        "{}",
        b.logs()
    );
    // Only a check: the corrupt bytes are where they were.
    assert!(data.exists());
    assert!(b
        .root()
        .join("docker/registry/v2/.berth-scrub.last")
        .exists());
}

#[test]
fn a_check_beside_pushes_deletes_and_collections_reports_nothing() {
    // The collector runs every 100 ms and takes what is untagged after a second: blobs go
    // (just before their links) and revisions are unlinked while fsck reads them.
    let b = Berth::start(&[
        ("BERTH__GC__INTERVAL", "100ms"),
        ("BERTH__GC__GRACE_PERIOD", "1s"),
        ("BERTH__GC__DELETE_UNTAGGED", "true"),
    ]);
    let root = b.root();
    let env = [("BERTH__STORAGE__ROOT", root.to_str().expect("utf-8"))];
    let stop = std::sync::atomic::AtomicBool::new(false);
    let runs = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = format!("t{i}");
                push_image(&b, "churn", &t, format!("layer {i}").as_bytes());
                push_blob(&b, "churn", format!("orphan {i}").as_bytes());
                if i.is_multiple_of(2) {
                    let r = call(
                        "DELETE",
                        &b.url(&format!("/v2/churn/manifests/{t}")),
                        &[],
                        None,
                    );
                    assert_eq!(r.status, 202);
                }
                i += 1;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut runs = 0;
        while Instant::now() < deadline {
            let (code, out, err) = run_berth(&["fsck"], &env);
            runs += 1;
            if code != 0 {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("fsck beside the churn (run {runs}): {out}{err}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        runs
    });
    assert!(runs >= 3, "only {runs} runs");
    assert!(
        b.logs().contains("garbage collection finished"),
        "{}",
        b.logs()
    );
    let (code, out, err) = run_berth(&["fsck"], &env);
    assert_eq!(code, 0, "{out}{err}");
}
