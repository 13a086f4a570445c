//! Progress of an export or import on standard error: one line redrawn in place on a
//! terminal (items, bytes, rate, time left), a plain line per item otherwise (a log, a
//! pipe, systemd's journal).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    verb: &'static str,
    tty: bool,
    items: (u64, u64),
    bytes: (u64, u64),
    start: Instant,
    drawn: Option<Instant>,
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub(crate) fn size(n: u64) -> String {
    crate::config::Size(n).approx()
}

impl Progress {
    /// Progress of `total_items` items of `total_bytes` bytes in all.
    pub(crate) fn new(verb: &'static str, total_items: u64, total_bytes: u64) -> Self {
        Self {
            verb,
            tty: std::io::stderr().is_terminal(),
            items: (0, total_items),
            bytes: (0, total_bytes),
            start: Instant::now(),
            drawn: None,
        }
    }

    /// `n` more bytes of the current item.
    pub(crate) fn bytes(&mut self, n: u64) {
        self.bytes.0 += n;
        if self.tty
            && self
                .drawn
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(200))
        {
            self.draw();
        }
    }

    /// An item finished (its bytes already counted).
    pub(crate) fn item(&mut self, what: &str) {
        self.items.0 += 1;
        if self.tty {
            self.draw();
        } else {
            eprintln!(
                "{}: {what} ({}/{} items, {} of {})",
                self.verb,
                self.items.0,
                self.items.1,
                size(self.bytes.0),
                size(self.bytes.1)
            );
        }
    }

    fn draw(&mut self) {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = self.bytes.0 as f64 / secs;
        let left = self.bytes.1.saturating_sub(self.bytes.0) as f64;
        let eta = if rate > 0.0 {
            format!("{:.0}s", left / rate)
        } else {
            "?".into()
        };
        let pct = (self.bytes.0 * 100)
            .checked_div(self.bytes.1)
            .unwrap_or(100);
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[K{}: {}/{} items, {} of {} ({pct}%), {}/s, ETA {eta}",
            self.verb,
            self.items.0,
            self.items.1,
            size(self.bytes.0),
            size(self.bytes.1),
            size(rate as u64)
        );
        let _ = e.flush();
        self.drawn = Some(Instant::now());
    }

    /// Ends the in-place line.
    pub(crate) fn done(&mut self) {
        if self.tty && self.drawn.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::size(512), "512 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(3 << 30), "3.0 GiB");
    }
}
