//! pingora logs every failed TLS handshake at ERROR ("Downstream handshake error from ...").
//! On a registry reachable from the internet those are scanners, plain-HTTP probes and
//! clients with old TLS versions: noise that buries real errors. This layer drops those
//! events (counting them in `berth_tls_handshake_failures_total`) unless the log filter
//! asks for debug output, where they help to find why a client cannot connect.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The tracing layer; `show` lets the events through (a debug or trace log filter).
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLog {
    pub show: bool,
}

impl<S: Subscriber> Layer<S> for HandshakeLog {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        if *event.metadata().level() != Level::ERROR {
            return true;
        }
        let mut seen = Seen::default();
        event.record(&mut seen);
        // pingora logs through the `log` crate: its target arrives as a field.
        let target = seen
            .log_target
            .as_deref()
            .unwrap_or(event.metadata().target());
        let handshake = target.starts_with("pingora_core::services::listening")
            && seen.message.starts_with("Downstream handshake");
        if handshake {
            crate::metrics::tls_handshake_failed();
        }
        !handshake || self.show
    }
}

#[derive(Default)]
struct Seen {
    message: String,
    log_target: Option<String>,
}

impl Visit for Seen {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.log_target = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}
