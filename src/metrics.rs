//! Process-wide figures for Prometheus (`GET /metrics` on the admin listener): requests by
//! endpoint, method and status with a latency histogram, bytes in and out, upload commits,
//! garbage collection, the integrity scrub, storage size and certificate expiry. Counting is a few atomic
//! operations and one short lock per request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Latency {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Requests {
    /// (endpoint, method, status) -> count
    counts: BTreeMap<(&'static str, &'static str, u16), u64>,
    latency: BTreeMap<&'static str, Latency>,
}

/// The S3 driver's requests, retries (of them, 503 answers) and requests given up.
pub(crate) static S3_REQUESTS: AtomicU64 = AtomicU64::new(0);
pub(crate) static S3_RETRIES: AtomicU64 = AtomicU64::new(0);
pub(crate) static S3_SLOWDOWNS: AtomicU64 = AtomicU64::new(0);
pub(crate) static S3_UNAVAILABLE: AtomicU64 = AtomicU64::new(0);
/// The pull-through cache: manifests and blobs fetched from upstreams (and the blobs'
/// bytes), requests that waited for a fetch under way instead of starting one, cached tags
/// served because the upstream could not confirm them, upstream failures, and upstream
/// answers refused (a wrong digest, a short body).
pub(crate) static PROXY_MANIFEST_FETCHES: AtomicU64 = AtomicU64::new(0);
pub(crate) static PROXY_BLOB_FETCHES: AtomicU64 = AtomicU64::new(0);
pub(crate) static PROXY_BLOB_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static PROXY_COALESCED: AtomicU64 = AtomicU64::new(0);
pub(crate) static PROXY_STALE: AtomicU64 = AtomicU64::new(0);
pub(crate) static PROXY_UPSTREAM_ERRORS: AtomicU64 = AtomicU64::new(0);
pub(crate) static PROXY_REFUSED: AtomicU64 = AtomicU64::new(0);
/// Whether a pull-through cache is configured (its figures are shown then).
pub(crate) static PROXY_ON: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
static REQUESTS: Mutex<Option<Requests>> = Mutex::new(None);
static BYTES_IN: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
static UPLOADS: AtomicU64 = AtomicU64::new(0);
static UPLOAD_BYTES: AtomicU64 = AtomicU64::new(0);
static SENDFILE_BYTES: AtomicU64 = AtomicU64::new(0);
static TLS_HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);
static GC_RUNS: AtomicU64 = AtomicU64::new(0);
static GC_BLOBS: AtomicU64 = AtomicU64::new(0);
static GC_MANIFESTS: AtomicU64 = AtomicU64::new(0);
static GC_UPLOADS: AtomicU64 = AtomicU64::new(0);
static GC_BYTES: AtomicU64 = AtomicU64::new(0);
static SCRUB_RUNS: AtomicU64 = AtomicU64::new(0);
/// The last scrub's findings; its end as Unix seconds (0: no scrub yet), and how long it
/// took.
static SCRUB_PROBLEMS: AtomicU64 = AtomicU64::new(0);
static SCRUB_BYTES: AtomicU64 = AtomicU64::new(0);
static SCRUB_FINISHED: AtomicU64 = AtomicU64::new(0);
static SCRUB_MILLIS: AtomicU64 = AtomicU64::new(0);
/// Set when the store's size changed (an upload, a collection), so the next scrape measures
/// it again instead of reusing the cached figure.
static STORAGE_CHANGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether the store's size may have changed since the last call.
pub(crate) fn storage_changed() -> bool {
    STORAGE_CHANGED.swap(false, Ordering::Relaxed)
}

/// Counts one answered request.
pub(crate) fn request(
    endpoint: &'static str,
    method: &str,
    status: u16,
    took: Duration,
    bytes_in: u64,
    bytes_out: u64,
) {
    BYTES_IN.fetch_add(bytes_in, Ordering::Relaxed);
    BYTES_OUT.fetch_add(bytes_out, Ordering::Relaxed);
    let secs = took.as_secs_f64();
    let mut guard = REQUESTS.lock().unwrap_or_else(|p| p.into_inner());
    let r = guard.get_or_insert_with(Requests::default);
    // Methods are few; anything odd is folded so a client cannot grow the map, and the
    // key needs no allocation.
    let method = match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "OTHER",
    };
    *r.counts.entry((endpoint, method, status)).or_insert(0) += 1;
    let l = r.latency.entry(endpoint).or_default();
    l.count += 1;
    l.sum += secs;
    for (i, le) in BUCKETS.iter().enumerate() {
        if secs <= *le {
            l.buckets[i] += 1;
        }
    }
}

/// Counts a committed blob upload.
/// A TLS handshake that failed (pingora's log line is dropped unless debugging).
pub(crate) fn tls_handshake_failed() {
    TLS_HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
}

/// Blob bytes sent zero-copy (sendfile) rather than through the response writer.
pub(crate) fn sendfile(bytes: u64) {
    SENDFILE_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

pub(crate) fn upload(bytes: u64) {
    STORAGE_CHANGED.store(true, Ordering::Relaxed);
    UPLOADS.fetch_add(1, Ordering::Relaxed);
    UPLOAD_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Counts a finished garbage collection.
pub(crate) fn gc(blobs: u64, manifests: u64, uploads: u64, bytes: u64) {
    STORAGE_CHANGED.store(true, Ordering::Relaxed);
    GC_RUNS.fetch_add(1, Ordering::Relaxed);
    GC_BLOBS.fetch_add(blobs, Ordering::Relaxed);
    GC_MANIFESTS.fetch_add(manifests, Ordering::Relaxed);
    GC_UPLOADS.fetch_add(uploads, Ordering::Relaxed);
    GC_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Records a finished integrity scrub: what it found, the blob bytes it hashed, how long it
/// took.
pub(crate) fn scrub(problems: u64, bytes: u64, took: Duration) {
    SCRUB_RUNS.fetch_add(1, Ordering::Relaxed);
    SCRUB_PROBLEMS.store(problems, Ordering::Relaxed);
    SCRUB_BYTES.store(bytes, Ordering::Relaxed);
    SCRUB_MILLIS.store(took.as_millis() as u64, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1));
    SCRUB_FINISHED.store(now, Ordering::Relaxed);
}

/// Figures measured at scrape time.
pub(crate) struct Gauges {
    /// Bytes of blob data in the store.
    pub storage_bytes: Option<u64>,
    /// Seconds until the served certificate expires (negative: expired).
    pub certificate_expiry_seconds: Option<i64>,
    pub read_only: bool,
    /// Webhook events waiting on disk, by endpoint; and events dropped since the start.
    pub notifications_queued: Vec<(String, u64)>,
    pub notifications_dropped: u64,
}

/// The Prometheus text exposition of everything counted so far.
pub(crate) fn render(g: &Gauges) -> String {
    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    {
        let guard = REQUESTS.lock().unwrap_or_else(|p| p.into_inner());
        let empty = Requests::default();
        let r = guard.as_ref().unwrap_or(&empty);
        out.push_str(
            "# HELP berth_http_requests_total Requests answered, by endpoint, method and status.\n",
        );
        out.push_str("# TYPE berth_http_requests_total counter\n");
        for ((endpoint, method, status), n) in &r.counts {
            let _ = writeln!(
                out,
                "berth_http_requests_total{{endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP berth_http_request_duration_seconds Time from the request header to the end of the response.\n");
        out.push_str("# TYPE berth_http_request_duration_seconds histogram\n");
        for (endpoint, l) in &r.latency {
            for (le, n) in BUCKETS.iter().zip(l.buckets) {
                let _ = writeln!(
                    out,
                    "berth_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}\nberth_http_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\nberth_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                l.count, l.sum, l.count
            );
        }
    }
    counter(
        &mut out,
        "berth_http_received_bytes_total",
        "Request body bytes read.",
        BYTES_IN.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_http_sent_bytes_total",
        "Response body bytes written.",
        BYTES_OUT.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_tls_handshake_failures_total",
        "TLS handshakes that failed or timed out (plain HTTP on the TLS port, old TLS versions, scanners).",
        TLS_HANDSHAKE_FAILURES.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_sendfile_bytes_total",
        "Blob bytes sent with sendfile (plain HTTP/1.1), part of berth_http_sent_bytes_total.",
        SENDFILE_BYTES.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_uploads_total",
        "Blob uploads committed.",
        UPLOADS.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_upload_bytes_total",
        "Bytes of committed blob uploads.",
        UPLOAD_BYTES.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_gc_runs_total",
        "Garbage collections finished by this process.",
        GC_RUNS.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_gc_blobs_removed_total",
        "Blobs removed by garbage collection.",
        GC_BLOBS.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_gc_manifests_removed_total",
        "Manifest revisions unlinked by garbage collection.",
        GC_MANIFESTS.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_gc_uploads_purged_total",
        "Abandoned upload sessions purged.",
        GC_UPLOADS.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_gc_freed_bytes_total",
        "Bytes freed by garbage collection.",
        GC_BYTES.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "berth_scrub_runs_total",
        "Integrity scrubs ([scrub]) finished by this process.",
        SCRUB_RUNS.load(Ordering::Relaxed),
    );
    let finished = SCRUB_FINISHED.load(Ordering::Relaxed);
    if finished > 0 {
        let _ = writeln!(
            out,
            "# HELP berth_scrub_problems Problems the last integrity scrub found (berth fsck lists them).\n# TYPE berth_scrub_problems gauge\nberth_scrub_problems {}",
            SCRUB_PROBLEMS.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP berth_scrub_checked_bytes Blob bytes the last integrity scrub hashed.\n# TYPE berth_scrub_checked_bytes gauge\nberth_scrub_checked_bytes {}",
            SCRUB_BYTES.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP berth_scrub_last_finished_timestamp_seconds When the last integrity scrub finished (Unix time).\n# TYPE berth_scrub_last_finished_timestamp_seconds gauge\nberth_scrub_last_finished_timestamp_seconds {finished}"
        );
        let _ = writeln!(
            out,
            "# HELP berth_scrub_last_duration_seconds How long the last integrity scrub took.\n# TYPE berth_scrub_last_duration_seconds gauge\nberth_scrub_last_duration_seconds {}",
            SCRUB_MILLIS.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
    if PROXY_ON.load(Ordering::Relaxed) {
        for (name, help, v) in [
            ("berth_proxy_manifest_fetches_total", "Manifests fetched from upstream registries.", &PROXY_MANIFEST_FETCHES),
            ("berth_proxy_blob_fetches_total", "Blobs fetched from upstream registries (each once, however many clients asked).", &PROXY_BLOB_FETCHES),
            ("berth_proxy_blob_bytes_total", "Bytes of blobs fetched from upstream registries.", &PROXY_BLOB_BYTES),
            ("berth_proxy_coalesced_total", "Requests that waited for a fetch under way instead of starting another.", &PROXY_COALESCED),
            ("berth_proxy_stale_served_total", "Cached tags served past their tag_ttl because the upstream could not confirm them.", &PROXY_STALE),
            ("berth_proxy_upstream_errors_total", "Upstream requests that failed (unreachable, 5xx, 429).", &PROXY_UPSTREAM_ERRORS),
            ("berth_proxy_refused_total", "Upstream answers refused and not kept (wrong digest, short or long body).", &PROXY_REFUSED),
        ] {
            counter(&mut out, name, help, v.load(Ordering::Relaxed));
        }
    }
    let s3 = S3_REQUESTS.load(Ordering::Relaxed);
    if s3 > 0 {
        counter(
            &mut out,
            "berth_s3_requests_total",
            "Requests sent to the S3 store (retries included).",
            s3,
        );
        let _ = writeln!(
            out,
            "# HELP berth_s3_retries_total S3 requests sent again, by why: slowdown (a 503: SlowDown, ServiceUnavailable) or other (another 5xx, a refused or broken connection, a timeout).\n# TYPE berth_s3_retries_total counter\nberth_s3_retries_total{{reason=\"slowdown\"}} {}\nberth_s3_retries_total{{reason=\"other\"}} {}",
            S3_SLOWDOWNS.load(Ordering::Relaxed),
            S3_RETRIES.load(Ordering::Relaxed).saturating_sub(S3_SLOWDOWNS.load(Ordering::Relaxed))
        );
        counter(
            &mut out,
            "berth_s3_unavailable_total",
            "S3 requests that still failed after every retry (answered 503 UNAVAILABLE).",
            S3_UNAVAILABLE.load(Ordering::Relaxed),
        );
    }
    if let Some(b) = g.storage_bytes {
        let _ = writeln!(out, "# HELP berth_storage_blob_bytes Bytes of blob data in the store.\n# TYPE berth_storage_blob_bytes gauge\nberth_storage_blob_bytes {b}");
    }
    if let Some(s) = g.certificate_expiry_seconds {
        let _ = writeln!(out, "# HELP berth_certificate_expiry_seconds Seconds until the served certificate expires.\n# TYPE berth_certificate_expiry_seconds gauge\nberth_certificate_expiry_seconds {s}");
        let _ = writeln!(out, "# HELP berth_certificate_days_left Whole days until the served certificate expires.\n# TYPE berth_certificate_days_left gauge\nberth_certificate_days_left {}", s.div_euclid(86_400));
    }
    if !g.notifications_queued.is_empty() {
        out.push_str("# HELP berth_notifications_queued Webhook events waiting on disk for delivery.\n# TYPE berth_notifications_queued gauge\n");
        for (name, n) in &g.notifications_queued {
            let _ = writeln!(out, "berth_notifications_queued{{endpoint=\"{name}\"}} {n}");
        }
        counter(
            &mut out,
            "berth_notifications_dropped_total",
            "Pull events dropped because the notification writer fell behind.",
            g.notifications_dropped,
        );
    }
    let _ = writeln!(
        out,
        "# HELP berth_read_only Whether writes are refused (storage.read_only).\n# TYPE berth_read_only gauge\nberth_read_only {}",
        u8::from(g.read_only)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_counts_and_histogram() {
        request("blob", "GET", 200, Duration::from_millis(3), 0, 1000);
        request("blob", "GET", 200, Duration::from_millis(300), 0, 24);
        request("blob", "BREW", 405, Duration::from_millis(1), 0, 0);
        assert!(
            !render(&Gauges {
                storage_bytes: None,
                certificate_expiry_seconds: None,
                read_only: false,
                notifications_queued: Vec::new(),
                notifications_dropped: 0,
            })
            .contains("berth_scrub_problems"),
            "no scrub result before the first scrub"
        );
        scrub(2, 4096, Duration::from_millis(1500));
        let text = render(&Gauges {
            storage_bytes: Some(42),
            certificate_expiry_seconds: Some(86_400 * 3 + 5),
            read_only: true,
            notifications_queued: vec![("ci".into(), 3)],
            notifications_dropped: 0,
        });
        assert!(
            text.contains(
                "berth_http_requests_total{endpoint=\"blob\",method=\"GET\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("method=\"OTHER\",status=\"405\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "berth_http_request_duration_seconds_bucket{endpoint=\"blob\",le=\"0.005\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "berth_http_request_duration_seconds_bucket{endpoint=\"blob\",le=\"0.25\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "berth_http_request_duration_seconds_bucket{endpoint=\"blob\",le=\"0.5\"} 3"
            ),
            "{text}"
        );
        assert!(text.contains("berth_storage_blob_bytes 42"));
        assert!(text.contains("berth_certificate_days_left 3"));
        assert!(text.contains("berth_read_only 1"));
        assert!(text.contains("berth_scrub_runs_total 1"), "{text}");
        assert!(text.contains("berth_scrub_problems 2"), "{text}");
        assert!(
            text.contains("berth_scrub_last_duration_seconds 1.5"),
            "{text}"
        );
        assert!(
            text.contains("berth_notifications_queued{endpoint=\"ci\"} 3"),
            "{text}"
        );
        // Every sample line is "name{labels} value" or "name value".
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').expect("value");
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
