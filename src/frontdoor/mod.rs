//! The front door: pingora's server, its listeners (plain and TLS), and the adapter that
//! connects sessions to the registry core. Knows nothing of registry semantics.

pub(crate) mod adapter;
pub(crate) mod conn;
pub mod handshake_log;
pub(crate) mod sendfile;

use crate::api::Registry;
use crate::config::{Config, TlsPlan, TlsVersion};
use crate::tls::acme::Challenges;
use crate::tls::Tls;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often certificate files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Starts the listeners and serves until SIGTERM (graceful: in-flight requests finish
/// within `http.shutdown_grace`), SIGQUIT (hand the listening sockets to a process started
/// with `upgrade`, then finish as on SIGTERM) or SIGINT (immediate). SIGHUP reloads
/// certificates and calls `on_hup` (which reloads the permission rules). Does not return.
pub fn serve(
    config: &Config,
    registry: Arc<Registry>,
    tls: Option<Arc<Tls>>,
    upgrade: bool,
    on_hup: Option<Box<dyn Fn() + Send>>,
) -> ! {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let grace = config.http.shutdown_grace.0.as_secs().max(1);
    // Both the old and the new process find the hand-over socket here.
    let _ = std::fs::create_dir_all(&config.state.dir);
    let state =
        std::fs::canonicalize(&config.state.dir).unwrap_or_else(|_| config.state.dir.clone());
    let conf = ServerConf {
        threads,
        upgrade_sock: state.join("upgrade.sock").to_string_lossy().into_owned(),
        pid_file: state.join("berth.pid").to_string_lossy().into_owned(),
        // pingora waits this long after SIGTERM before stopping its runtimes...
        grace_period_seconds: Some(grace),
        // ...and then this long for tasks still running.
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    spawn_reloader(tls.clone(), on_hup);
    spawn_drain_watch();
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    if upgrade {
        tracing::info!(socket = %conf.upgrade_sock, "waiting for the running berth's sockets (send it SIGQUIT)");
    }
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let limits = adapter::Limits {
        keepalive: config.http.keepalive_timeout.0,
        header: config.http.header_timeout.0,
        io: config.http.io_timeout.0,
        hsts: config.http.hsts,
        header_max: config.limits.header_max.0 as usize,
        header_count_max: config.limits.header_count_max as usize,
    };
    let forwarding = adapter::Forwarding {
        // Validated by Config::validate.
        trusted: config
            .http
            .trusted_proxies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
        external_url: config.http.external_url.clone(),
    };
    let acme = (config.tls_plan() == TlsPlan::Acme).then(|| Arc::new(Challenges::default()));
    let policy = Arc::new(conn::Policy {
        proxy_protocol: config.http.proxy_protocol,
        trusted: forwarding.trusted.clone(),
        tls13_only: config.tls.min_version == TlsVersion::V1_3,
        header_timeout: config.http.header_timeout.0,
        max_connections: config.limits.connections_max as usize,
        acme: acme.clone(),
    });
    let app = adapter::App::new(
        registry.clone(),
        adapter::Role::Registry,
        limits,
        forwarding.clone(),
    );
    let mut service = Service::new("berth".to_owned(), conn::Gate::new(app, policy.clone()));
    if policy.proxy_protocol || policy.tls13_only || policy.acme.is_some() {
        service
            .endpoints()
            .set_pre_tls_callback(Arc::new(conn::Prelude {
                policy: policy.clone(),
            }));
    }
    for (addr, is_tls) in config.listeners() {
        match (&tls, is_tls) {
            (Some(t), true) => {
                let mut settings = match TlsSettings::intermediate("", "") {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("berth: cannot set up TLS on {addr}: {e}");
                        std::process::exit(1);
                    }
                };
                settings.set_cert_resolver(t.resolver.clone());
                settings.enable_h2();
                service.add_tls_with_settings(&addr.to_string(), None, settings);
                tracing::info!(%addr, "listening (HTTPS, HTTP/2 and HTTP/1.1)");
            }
            _ => {
                service.add_tcp(&addr.to_string());
                tracing::info!(%addr, "listening (plain HTTP)");
            }
        }
    }
    server.add_service(service);
    // The admin listener (metrics, health): probed first, skipped when it cannot bind,
    // like the redirect listeners.
    let admin_app = adapter::App::new(
        registry.clone(),
        adapter::Role::Admin,
        limits,
        forwarding.clone(),
    )
    .with_tls(tls.clone());
    let mut admin = Service::new(
        "berth admin".to_owned(),
        conn::Gate::new(admin_app, policy.clone()),
    );
    if add_optional_listeners(
        &mut admin,
        &config.http.admin_listen,
        upgrade,
        "admin: /metrics, /healthz, /readyz",
    ) {
        server.add_service(admin);
    }
    if let Some(https_port) = config
        .listeners()
        .iter()
        .find(|(_, t)| *t)
        .map(|(a, _)| a.port())
    {
        let app = adapter::App::new(
            registry,
            adapter::Role::Redirect { https_port },
            limits,
            forwarding,
        )
        .with_acme(acme.clone());
        let mut redirect = Service::new("berth redirect".to_owned(), conn::Gate::new(app, policy));
        if add_optional_listeners(
            &mut redirect,
            &config.http.redirect_listen,
            upgrade,
            "plain HTTP, redirects to https",
        ) {
            server.add_service(redirect);
        } else if config.tls_plan() == TlsPlan::Acme
            && config.tls.acme.challenges.iter().all(|c| c == "http-01")
        {
            eprintln!("berth: tls.acme.challenges is [\"http-01\"] but no http.redirect_listen address could be bound (they answer the challenges); free port 80 or add \"tls-alpn-01\"");
            std::process::exit(2);
        }
    }
    if let (Some(answers), Some(t)) = (acme, &tls) {
        let manager = crate::tls::acme::Manager::new(config, answers, t.clone());
        spawn_acme(manager);
    }
    notify_when_listening(config.listeners().into_iter().map(|(a, _)| a).collect());
    server.run_forever()
}

/// Adds the plain listeners of a service that berth can do without (redirects, admin):
/// pingora exits when a listener cannot bind, so each is probed first and skipped with a
/// warning (not when upgrading: the old process still holds the port and hands it over).
/// Whether any was added.
fn add_optional_listeners<A>(
    service: &mut Service<A>,
    addrs: &[std::net::SocketAddr],
    upgrade: bool,
    what: &str,
) -> bool {
    let mut any = false;
    for addr in addrs {
        let probe = if upgrade {
            Ok(None)
        } else {
            std::net::TcpListener::bind(addr).map(Some)
        };
        match probe {
            Ok(probe) => {
                drop(probe);
                service.add_tcp(&addr.to_string());
                any = true;
                tracing::info!(%addr, "listening ({what})");
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot listen ({what}); serving without it")
            }
        }
    }
    any
}

/// Tells systemd (`Type=notify`) that berth is ready once every listener accepts
/// connections. pingora binds inside `run_forever` and has no hook after it, so this
/// watches the process's own sockets in /proc. Nothing happens outside systemd.
fn notify_when_listening(addrs: Vec<std::net::SocketAddr>) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("berth-notify".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !addrs.iter().all(|a| listening(a.port())) {
                if std::time::Instant::now() > deadline {
                    tracing::warn!(
                        "listeners not up after 60 s; readiness not reported to systemd"
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Err(e) = sd_notify(&path, "READY=1\nSTATUS=serving") {
                tracing::warn!(error = %e, "cannot notify systemd");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Whether a TCP socket (v4 or v6) listens on `port` in this network namespace.
fn listening(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    let mut cols = l.split_whitespace();
                    let local = cols.nth(1).unwrap_or_default();
                    let state = cols.nth(1).unwrap_or_default();
                    local.ends_with(&suffix) && state == "0A"
                })
            })
        })
}

fn sd_notify(path: &std::ffi::OsStr, msg: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(msg.as_bytes(), path)?;
        }
    }
    Ok(())
}

/// pingora sleeps the whole `http.shutdown_grace` after SIGTERM before it exits. berth
/// leaves as soon as no request is in flight (the listeners stop accepting at once), so
/// an idle registry restarts in a moment and a transfer in progress is never cut short
/// before the grace period ends. Idle keep-alive connections are closed, as nginx does.
fn spawn_drain_watch() {
    crate::spawn_background("berth-drain", "early exit after SIGTERM", || async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        term.recv().await;
        // Give pingora the moment it needs to stop its listeners.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut quiet = 0;
        loop {
            quiet = if adapter::in_flight() == 0 {
                quiet + 1
            } else {
                0
            };
            if quiet >= 3 {
                crate::notify::flush_all(Duration::from_secs(2));
                tracing::info!("SIGTERM: no request in flight; exiting");
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Runs the ACME lifecycle on its own thread, starting a moment after the listeners (the
/// CA's validation may come at once).
fn spawn_acme(manager: crate::tls::acme::Manager) {
    crate::spawn_background("berth-acme", "ACME", move || async move {
        // pingora starts its listeners right after this thread; a probe connection would
        // be logged as a failed handshake, so just wait.
        tokio::time::sleep(Duration::from_secs(1)).await;
        manager.run().await
    });
}

/// Reloads certificates on SIGHUP and when their files change; a bad new certificate is
/// logged and the current one keeps serving. SIGHUP also runs `on_hup`. Always running,
/// so that SIGHUP never ends the process.
fn spawn_reloader(tls: Option<Arc<Tls>>, on_hup: Option<Box<dyn Fn() + Send>>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    crate::spawn_background("berth-reload", "reloading on SIGHUP", move || async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP handler unavailable");
                None
            }
        };
        let _ = ready_tx.send(());
        let files = tls
            .as_ref()
            .map(|t| t.source.watched_files())
            .unwrap_or_default();
        let mut seen = stamps(&files);
        loop {
            let hup_fired = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            // Without TLS there is nothing to watch: only SIGHUP wakes this thread.
            let watch = async {
                match &tls {
                    Some(_) => tokio::time::sleep(WATCH_INTERVAL).await,
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                _ = hup_fired => "SIGHUP",
                _ = watch => {
                    let now = stamps(&files);
                    if now != seen {
                        seen = now;
                        "file change"
                    } else if tls.as_ref().is_some_and(|t| t.needs_renewal()) {
                        "renewal"
                    } else {
                        continue;
                    }
                }
            };
            if reason == "SIGHUP" {
                if let Some(f) = &on_hup {
                    f();
                }
            }
            let Some(tls) = &tls else { continue };
            match tls.reload() {
                Ok(s) => tracing::info!(reason, serial = %s.serial, "certificate swapped in"),
                Err(e) => {
                    tracing::warn!(reason, error = %e, "certificate reload failed; the current certificate keeps serving")
                }
            }
        }
    });
    // Wait until SIGHUP is caught, so an early SIGHUP cannot kill the process (returns at
    // once when the thread could not start).
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}
