//! Zero-downtime upgrade: a new process started with `serve --upgrade` takes over the
//! listening sockets when the old one gets SIGQUIT. Under a steady, bounded loop of
//! requests no request fails, and a pull in progress during the hand-over completes.

mod common;

use common::*;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn spawn(dir: &std::path::Path, port: u16, upgrade: bool, log: &str) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("serve");
    if upgrade {
        cmd.arg("--upgrade");
    }
    cmd.env("BERTH__HTTP__LISTEN", format!("[\"127.0.0.1:{port}\"]"))
        .env("BERTH__STORAGE__ROOT", dir.join("store"))
        .env("BERTH__STATE__DIR", dir.join("state"))
        .env("BERTH__HTTP__SHUTDOWN_GRACE", "15s")
        .env("BERTH__HTTP__ADMIN_LISTEN", "[]")
        .env_remove("BERTH_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).expect("log"))
        .spawn()
        .expect("spawn berth")
}

fn get(url: &str) -> Result<Vec<u8>, String> {
    // A fresh connection per request: whichever process holds the socket answers it.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build();
    let resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    resp.into_reader()
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(body)
}

fn wait_up(port: u16) {
    for _ in 0..100 {
        if get(&format!("http://127.0.0.1:{port}/v2/")).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("berth did not come up on {port}");
}

fn exited_within(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sigquit_hands_over_without_a_failed_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut old = spawn(dir.path(), port, false, "old.log");
    wait_up(port);
    let base = format!("http://127.0.0.1:{port}");

    // A 64 MiB blob to pull slowly across the hand-over.
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let d = sha256(&data);
    let r = call(
        "POST",
        &format!("{base}/v2/up/blobs/uploads/?digest={d}"),
        &[],
        Some(&data),
    );
    assert_eq!(r.status, 201);

    // Steady load: bounded in time and count.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loaders: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failures, base) =
                (stop.clone(), ok.clone(), failures.clone(), base.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match get(&format!("{base}/v2/")) {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    // The slow pull: opened on the old process, read in small sips.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let resp = agent
        .get(&format!("{base}/v2/up/blobs/{d}"))
        .call()
        .expect("pull starts");
    let mut reader = resp.into_reader();
    let mut pulled = vec![0u8; 8 << 20];
    reader.read_exact(&mut pulled).expect("first part");

    std::thread::sleep(Duration::from_millis(500));
    let mut new = spawn(dir.path(), port, true, "new.log");
    std::thread::sleep(Duration::from_millis(700));
    let _ = Command::new("kill")
        .args(["-QUIT", &old.id().to_string()])
        .status();

    // Keep pulling slowly through the hand-over, then drain the rest.
    let mut rest = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..20 {
        let n = reader.read(&mut buf).expect("pull continues");
        rest.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(200));
    }
    reader.read_to_end(&mut rest).expect("pull finishes");
    pulled.extend_from_slice(&rest);
    assert_eq!(sha256(&pulled), d, "the pull in progress completed intact");

    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().expect("loader");
    }
    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) > 50, "the load loop ran");

    // The old process leaves by itself; the new one serves.
    assert!(
        exited_within(&mut old, Duration::from_secs(30)),
        "old process did not exit"
    );
    assert_eq!(
        get(&format!("{base}/v2/up/blobs/{d}")).map(|b| sha256(&b)),
        Ok(d.clone())
    );
    let new_log = std::fs::read_to_string(dir.path().join("new.log")).unwrap_or_default();
    assert!(new_log.contains("Bootstrap done"), "{new_log}");
    let _ = new.kill();
    let _ = new.wait();
}
