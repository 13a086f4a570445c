//! The front door: pingora's server, its listeners, and the adapter that connects sessions
//! to the registry core. Knows nothing of registry semantics.
//!
//! TLS listeners slot in here beside the plain ones (`Service::add_tls_with_settings`),
//! sharing the same [`adapter::App`].

pub mod adapter;

use crate::api::Registry;
use crate::config::Config;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use std::sync::Arc;

/// Starts the listeners and serves until SIGTERM (graceful: in-flight requests finish
/// within `http.shutdown_grace`) or SIGINT (immediate). Does not return.
pub fn serve(config: &Config, registry: Arc<Registry>) -> ! {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let grace = config.http.shutdown_grace.0.as_secs().max(1);
    let conf = ServerConf {
        threads,
        // pingora waits this long after SIGTERM before stopping its runtimes...
        grace_period_seconds: Some(grace),
        // ...and then this long for tasks still running.
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let app = adapter::App::new(registry, config.http.keepalive_timeout.0.as_secs().max(1));
    let mut service = Service::new("berth http".to_owned(), app);
    for addr in &config.http.listen {
        service.add_tcp(&addr.to_string());
        tracing::info!(%addr, "listening (plain HTTP)");
    }
    server.add_service(service);
    server.run_forever()
}
