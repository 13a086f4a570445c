//! Garbage collection against the real binary: `berth gc` (a dry run lists exactly what a
//! real run then removes, and the bytes add up), the grace period, purging abandoned
//! uploads, one collector at a time, and a stress run in which pushes, tag deletions and
//! collections (scheduled in the server and `berth gc` beside it) interleave without a
//! tagged image ever losing a blob.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);

/// Everything pushed before this is older than a zero grace period (the collector adds a
/// second of slack for filesystems with whole-second timestamps).
const PAST_SLACK: Duration = Duration::from_millis(1500);

/// Runs `berth gc ARGS` on the store at `root`; returns (exit code, stdout, stderr).
fn gc(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("gc")
        .args(args)
        .env_remove("BERTH_CONFIG")
        .env("BERTH__STORAGE__ROOT", root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run berth gc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The removed items `berth gc` printed.
fn items(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            ["manifest ", "blob ", "upload ", "repository "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

/// The bytes the summary line says were (or would be) freed.
fn freed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("would free ")
                .or_else(|| l.strip_prefix("freed "))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {out:?}"))
}

/// Apparent size of every file in the store, as `du --apparent-size -b` sums it.
/// Bytes of the store's files, but for the collector's own mark (which holds the last
/// run's summary line).
fn du(root: &Path) -> u64 {
    let mark = v2(root).join(".berth-gc.last");
    files_under(root)
        .iter()
        .filter(|f| **f != mark)
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

fn blob_data(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    v2(root).join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
}

/// Makes `path` look last used `ago` ago.
fn backdate(path: &Path, ago: Duration) {
    std::fs::File::open(path)
        .expect("open")
        .set_modified(SystemTime::now() - ago)
        .expect("set mtime");
}

/// Pulls `repo:reference` (an OCI image manifest) and every blob it names, checking each
/// digest; returns the manifest's digest followed by its blobs'.
fn pull_intact(base: &str, repo: &str, reference: &str) -> Result<Vec<String>, String> {
    let m = call(
        "GET",
        &format!("{base}/v2/{repo}/manifests/{reference}"),
        &[("Accept", OCI_MANIFEST)],
        None,
    );
    if m.status != 200 {
        return Err(format!(
            "{repo}:{reference}: manifest answered {}",
            m.status
        ));
    }
    let digest = sha256(&m.body);
    if m.header("Docker-Content-Digest") != Some(digest.as_str()) {
        return Err(format!(
            "{repo}:{reference}: manifest bytes do not hash to their digest"
        ));
    }
    let v = m.json();
    let mut out = vec![digest];
    let named = v["config"]["digest"].as_str().into_iter().chain(
        v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str()),
    );
    for d in named {
        let r = call("GET", &format!("{base}/v2/{repo}/blobs/{d}"), &[], None);
        if r.status != 200 {
            return Err(format!(
                "{repo}:{reference}: blob {d} answered {}",
                r.status
            ));
        }
        if sha256(&r.body) != d {
            return Err(format!("{repo}:{reference}: blob {d} came back corrupt"));
        }
        out.push(d.to_owned());
    }
    Ok(out)
}

fn tags(base: &str, repo: &str) -> Vec<String> {
    let r = call("GET", &format!("{base}/v2/{repo}/tags/list"), &[], None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

fn catalog(base: &str) -> Vec<String> {
    call("GET", &format!("{base}/v2/_catalog"), &[], None).json()["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

/// An OCI image manifest for `config` and `layers`.
fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": layers
            .iter()
            .map(|l| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(l),
                "size": l.len(),
            }))
            .collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).expect("json")
}

#[test]
fn a_dry_run_lists_what_gc_removes_and_the_bytes_add_up() {
    let b = Berth::start(&[]);
    let (_, v1_old) = push_image(&b, "app", "v1", b"layer one");
    push_image(&b, "app", "v1", b"layer two");
    let (_, doomed) = push_image(&b, "doomed", "x", b"doomed layer");
    let r = call(
        "DELETE",
        &b.url(&format!("/v2/doomed/manifests/{doomed}")),
        &[],
        None,
    );
    assert_eq!(r.status, 202);
    let orphan = push_blob(&b, "app", b"orphan blob");
    push_blob(&b, "lonely", b"lonely blob");
    let dir = b.stop();
    let root = dir.path().join("store");
    std::thread::sleep(PAST_SLACK);

    let now = [("BERTH__GC__GRACE_PERIOD", "0s")];
    let before = du(&root);
    let (code, dry, err) = gc(&root, &["--dry-run", "--delete-untagged"], &now);
    assert_eq!(code, 0, "{err}");
    assert_eq!(du(&root), before, "a dry run changes nothing");
    let (code, real, err) = gc(&root, &["--delete-untagged"], &now);
    assert_eq!(code, 0, "{err}");
    assert_eq!(items(&dry), items(&real), "{dry}\n---\n{real}");
    assert_eq!(freed(&dry), freed(&real));
    assert_eq!(before - du(&root), freed(&real), "{real}");
    let removed = items(&real);
    for want in [
        format!("manifest app@{v1_old}"),
        format!("blob {orphan} 11"),
        format!("blob {v1_old} "),
        "repository lonely".to_owned(),
    ] {
        assert!(
            removed.iter().any(|l| l.starts_with(&want)),
            "{want:?} not in {removed:#?}"
        );
    }
    assert!(real.lines().last().is_some_and(|l| l.starts_with("freed ")));
    // Nothing left to do.
    let (code, again, err) = gc(&root, &["--delete-untagged"], &now);
    assert_eq!(code, 0, "{err}");
    assert!(items(&again).is_empty(), "{again}");

    let b = Berth::start_in(dir, &[]);
    let base = b.url("");
    pull_intact(&base, "app", "v1").expect("v1 intact");
    let r = call(
        "HEAD",
        &b.url(&format!("/v2/app/blobs/{orphan}")),
        &[],
        None,
    );
    assert_eq!(r.status, 404);
    let repos = catalog(&base);
    assert!(repos.contains(&"app".to_owned()), "{repos:?}");
    assert!(!repos.contains(&"lonely".to_owned()), "{repos:?}");
}

#[test]
fn the_grace_period_keeps_fresh_and_recently_used_blobs() {
    let b = Berth::start(&[]);
    let root = b.root();
    let fresh = push_blob(&b, "g", b"fresh orphan");
    let used = push_blob(&b, "g", b"used orphan");
    let old = push_blob(&b, "g", b"old orphan");
    for d in [&used, &old] {
        backdate(&blob_data(&root, d), 2 * HOUR);
    }
    // A HEAD (what docker sends before deciding not to upload) marks the blob as used.
    let head = |d: &str| call("HEAD", &b.url(&format!("/v2/g/blobs/{d}")), &[], None).status;
    assert_eq!(head(used.as_str()), 200);

    // The default grace period (1h), with the server running.
    let (code, out, err) = gc(&root, &[], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(items(&out), vec![format!("blob {old} 10")]);
    assert_eq!(head(old.as_str()), 404);
    assert_eq!(head(fresh.as_str()), 200);
    assert_eq!(head(used.as_str()), 200);

    std::thread::sleep(PAST_SLACK);
    let (code, out, err) = gc(&root, &[], &[("BERTH__GC__GRACE_PERIOD", "0s")]);
    assert_eq!(code, 0, "{err}");
    let removed = items(&out);
    for d in [&fresh, &used] {
        assert!(
            removed.iter().any(|l| l.starts_with(&format!("blob {d} "))),
            "{out}"
        );
        assert_eq!(head(d.as_str()), 404);
    }
}

#[test]
fn abandoned_uploads_are_purged_and_fresh_ones_kept() {
    let b = Berth::start(&[]);
    let root = b.root();
    let start = || {
        let r = call("POST", &b.url("/v2/up/blobs/uploads/"), &[], None);
        assert_eq!(r.status, 202);
        r.header("Docker-Upload-UUID").expect("uuid").to_owned()
    };
    let abandoned = start();
    let r = call(
        "PATCH",
        &b.url(&format!("/v2/up/blobs/uploads/{abandoned}")),
        &[],
        Some(b"partial"),
    );
    assert_eq!(r.status, 202);
    let fresh = start();
    let uploads = v2(&root).join("repositories/up/_uploads");
    std::fs::write(
        uploads.join(&abandoned).join("startedat"),
        "2020-01-01T00:00:00Z",
    )
    .expect("startedat");
    backdate(&uploads.join(&abandoned).join("data"), 48 * HOUR);
    // As another registry may leave one: no startedat, an old directory.
    let foreign = "0f0e0d0c-0b0a-4908-8706-050403020100";
    std::fs::create_dir_all(uploads.join(foreign)).expect("mkdir");
    std::fs::write(uploads.join(foreign).join("data"), b"bytes").expect("data");
    backdate(&uploads.join(foreign).join("data"), 48 * HOUR);
    backdate(&uploads.join(foreign), 48 * HOUR);

    let (code, out, err) = gc(&root, &[], &[]);
    assert_eq!(code, 0, "{err}");
    let purged = items(&out);
    assert_eq!(purged.len(), 2, "{out}");
    for id in [abandoned.as_str(), foreign] {
        assert!(
            purged
                .iter()
                .any(|l| l.starts_with(&format!("upload up {id} "))),
            "{out}"
        );
    }
    let status = |id: &str| {
        call(
            "GET",
            &b.url(&format!("/v2/up/blobs/uploads/{id}")),
            &[],
            None,
        )
        .status
    };
    assert_eq!(status(abandoned.as_str()), 404);
    assert_eq!(status(fresh.as_str()), 204);
    // uploads.purge_after = "0s" keeps every session.
    backdate(&uploads.join(&fresh).join("data"), 48 * HOUR);
    std::fs::write(
        uploads.join(&fresh).join("startedat"),
        "2020-01-01T00:00:00Z",
    )
    .expect("startedat");
    let (code, out, err) = gc(&root, &[], &[("BERTH__UPLOADS__PURGE_AFTER", "0s")]);
    assert_eq!(code, 0, "{err}");
    assert!(items(&out).is_empty(), "{out}");
    assert_eq!(status(fresh.as_str()), 204);
}

#[test]
fn a_second_collector_is_turned_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    std::fs::create_dir_all(v2(&root)).expect("mkdir");
    let lock = std::fs::File::create(v2(&root).join(".berth-gc.lock")).expect("lock file");
    lock.lock().expect("lock");
    let (code, _, err) = gc(&root, &[], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("another collector is running"), "{err}");
    drop(lock);
    let (code, out, err) = gc(&root, &["--dry-run"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would free 0 bytes"), "{out}");
}

/// Four clients push images that share layers (asking with HEAD first, as docker does, and
/// uploading only what is missing), move and delete tags; one of them is slower than the
/// grace period between its blob checks and its manifest push. Meanwhile the server
/// collects every 300 ms and `berth gc` runs beside it. A manifest push must either fail
/// with MANIFEST_BLOB_UNKNOWN or succeed with every blob there, and every tag left at the
/// end pulls intact.
#[test]
fn pushes_and_collections_interleave_without_losing_a_tagged_blob() {
    let b = Berth::start(&[
        ("BERTH__GC__INTERVAL", "300ms"),
        ("BERTH__GC__GRACE_PERIOD", "1s"),
        ("BERTH__GC__DELETE_UNTAGGED", "true"),
    ]);
    let base = b.url("");
    let root = b.root();
    let shared: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            (0..(1024usize << i))
                .map(|j| ((j % 251) as u8) ^ i)
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let pushed = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let cli_runs = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::<String>::new());
    let problem = |p: String| problems.lock().unwrap_or_else(|e| e.into_inner()).push(p);

    std::thread::scope(|s| {
        for t in 0..4usize {
            let (base, shared, pushed, refused, problem) =
                (&base, &shared, &pushed, &refused, &problem);
            s.spawn(move || {
                let repo = format!("stress/t{t}");
                let mut i = 0usize;
                while Instant::now() < deadline {
                    i += 1;
                    let unique = format!("layer of client {t}, push {i}").into_bytes();
                    let config = format!("{{\"client\":{t},\"push\":{i}}}").into_bytes();
                    let layers: Vec<&[u8]> = vec![
                        shared[(i + t) % shared.len()].as_slice(),
                        shared[(i * 5 + t + 1) % shared.len()].as_slice(),
                        unique.as_slice(),
                    ];
                    for blob in layers.iter().copied().chain([config.as_slice()]) {
                        let d = sha256(blob);
                        let head = call("HEAD", &format!("{base}/v2/{repo}/blobs/{d}"), &[], None);
                        if head.status == 200 {
                            continue;
                        }
                        let r = call(
                            "POST",
                            &format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"),
                            &[],
                            Some(blob),
                        );
                        if r.status != 201 {
                            problem(format!("{repo}: blob push answered {}", r.status));
                        }
                    }
                    if t == 0 {
                        // Slower than the grace period (and its second of slack).
                        std::thread::sleep(Duration::from_millis(2500));
                    }
                    let tag = format!("v{}", i % 3);
                    let m = image_manifest(&config, &layers);
                    let r = call(
                        "PUT",
                        &format!("{base}/v2/{repo}/manifests/{tag}"),
                        &[("Content-Type", OCI_MANIFEST)],
                        Some(&m),
                    );
                    match r.status {
                        201 => {
                            pushed.fetch_add(1, Ordering::Relaxed);
                            // Only this client touches this repository's tags: whatever
                            // the push named must be there now.
                            if let Err(e) = pull_intact(base, &repo, &sha256(&m)) {
                                problem(format!("after a 201: {e}"));
                            }
                        }
                        400 if r.error_code() == "MANIFEST_BLOB_UNKNOWN" => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => problem(format!(
                            "{repo}:{tag}: manifest push answered {other}: {}",
                            String::from_utf8_lossy(&r.body)
                        )),
                    }
                    if i.is_multiple_of(4) {
                        let gone = format!("v{}", (i + 1) % 3);
                        let r = call(
                            "DELETE",
                            &format!("{base}/v2/{repo}/manifests/{gone}"),
                            &[],
                            None,
                        );
                        if r.status != 202 && r.status != 404 {
                            problem(format!("{repo}:{gone}: delete answered {}", r.status));
                        }
                    }
                }
            });
        }
        // A second collector, in another process, beside the server's own.
        let (root, cli_runs, problem) = (&root, &cli_runs, &problem);
        s.spawn(move || {
            while Instant::now() < deadline {
                let (code, _, err) = gc(
                    root,
                    &["--delete-untagged"],
                    &[("BERTH__GC__GRACE_PERIOD", "1s")],
                );
                match code {
                    0 => {
                        cli_runs.fetch_add(1, Ordering::Relaxed);
                    }
                    1 if err.contains("another collector is running") => {}
                    _ => problem(format!("berth gc exited {code}: {err}")),
                }
                // Less often than the server's schedule, which counts from the last run
                // by anyone: the server must get to collect too.
                std::thread::sleep(Duration::from_millis(1000));
            }
        });
    });

    let problems = problems.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(problems.is_empty(), "{problems:#?}");
    let pushed = pushed.into_inner();
    assert!(pushed >= 20, "only {pushed} pushes succeeded");
    assert!(cli_runs.into_inner() > 0, "berth gc never got to run");
    let logs = b.logs();
    let runs: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("garbage collection finished"))
        .collect();
    assert!(runs.len() >= 5, "{logs}");
    assert!(
        runs.iter().any(|l| !l.contains(" blobs=0")),
        "the scheduled collections never removed a blob: {runs:#?}"
    );
    eprintln!(
        "{pushed} pushes, {} refused cleanly, {} scheduled collections",
        refused.into_inner(),
        runs.len()
    );

    // Every tag left pulls intact.
    let repos: Vec<String> = (0..4).map(|t| format!("stress/t{t}")).collect();
    for repo in &repos {
        for tag in tags(&base, repo) {
            pull_intact(&base, repo, &tag).expect("a tag left after the stress pulls intact");
        }
    }
    // Finally, with no grace period, nothing unreferenced is left.
    std::thread::sleep(PAST_SLACK);
    let mut done = false;
    for _ in 0..100 {
        let (code, _, err) = gc(
            &root,
            &["--delete-untagged"],
            &[("BERTH__GC__GRACE_PERIOD", "0s")],
        );
        if code == 0 {
            done = true;
            break;
        }
        assert!(err.contains("another collector is running"), "{err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(done, "berth gc never got the store to itself");
    let mut referenced = BTreeSet::new();
    for repo in &repos {
        for tag in tags(&base, repo) {
            referenced.extend(pull_intact(&base, repo, &tag).expect("intact after gc"));
        }
    }
    let on_disk: BTreeSet<String> = files_under(&v2(&root).join("blobs/sha256"))
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "data"))
        .filter_map(|p| {
            let hex = p.parent()?.file_name()?.to_str()?;
            Some(format!("sha256:{hex}"))
        })
        .collect();
    let unreferenced: Vec<&String> = on_disk.difference(&referenced).collect();
    assert!(unreferenced.is_empty(), "left behind: {unreferenced:#?}");
}
