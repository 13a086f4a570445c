//! Webhook notifications: pushes, pulls, deletes and mounts become events in the envelope
//! format of the reference registry (`application/vnd.docker.distribution.events.v1+json`,
//! what `registry:2` sends), POSTed to every endpoint of `[notifications]`.
//!
//! **Queue.** Each endpoint has a directory, `<state.dir>/notifications/<name>/`, with one
//! file per event not delivered yet. The file is the request body itself (an envelope
//! holding that one event), named by a sequence number and the writing instance
//! (`00000000000000000042-1f2e3d4c.json`) and written with the store's durable recipe
//! ([`crate::store::fs::write_atomic_mode`]). The request path hands events to one writer
//! thread over a bounded channel: [`Notifier::emit`] returns at once, and
//! [`Notifier::emit_persisted`] returns once the event is on disk. The writer files each
//! event for every endpoint whose filters let it through, then wakes that endpoint's
//! sender; nothing is sent before it is on disk.
//!
//! **Delivery.** One sender thread per endpoint POSTs the files in sequence order, one at a
//! time, with [`crate::upstream::Client`] on a runtime the senders share (one thread): the
//! connection is kept for the next event (HTTP/1.1, or HTTP/2 when an https:// endpoint
//! offers it). A file is removed only after a 2xx answer. Anything else (a refused connection,
//! a timeout, a redirect, a 4xx, a 5xx) is retried after a wait that stays at `backoff` for
//! the first `threshold` failures and then doubles up to `backoff_max`. Nothing is dropped,
//! and an event that keeps failing holds back the ones behind it, so order is kept (remove
//! its file to give up on it). On start, the files already there are sent first.
//!
//! **Exactly once, at least once.** Normally every event arrives once. A crash between the
//! endpoint's 2xx and the removal of the file, or an answer that comes after the timeout,
//! sends that event again: its `id` is in the file, so the copy has the same `id` and a
//! receiver that remembers ids can drop it. An event handed to `emit` but not yet written
//! when the process dies is lost; `emit_persisted` has no such window, and a graceful exit
//! can wait for the writer with [`flush_all`].
//!
//! **Processes.** A sender holds an advisory lock (`.lock`) on its directory, so when two
//! berth processes share `state.dir` (the hand-over of `serve --upgrade`), one delivers and
//! the other waits for it. Writers never collide: file names carry the instance.

// Endpoint URLs are parsed once, by config; `Url` is that parsed form.
use crate::config::{Config, HttpUrl as Url, NotifyEndpoint};
use crate::retry::Backoff;
use crate::upstream::{Client, ClientError, ClientOptions, RequestBody, Roots};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt::Display;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

/// The `Content-Type` of every notification request: registry:2's envelope.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The media type blob events carry, as in registry:2.
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// Events waiting for the writer. When it is full, [`Notifier::emit`] drops the event (the
/// disk has not kept up with thousands of events) and [`Notifier::emit_persisted`] waits.
const CHANNEL_CAPACITY: usize = 4096;

/// Queue files are readable by berth alone: they name users and client addresses.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Attempts at writing an event to a queue before it is given up (and logged whole).
const WRITE_ATTEMPTS: u64 = 4;

/// A response header larger than this is not an HTTP server answering a webhook.
const RESPONSE_HEAD_MAX: usize = 64 << 10;

/// The most of an answer's body that is read, so that its connection can carry the next
/// event; a longer body closes the connection instead (the delivery stands either way).
const RESPONSE_BODY_MAX: u64 = 64 << 10;

/// A connection unused this long is closed rather than kept for the next event: shorter
/// than the 5 s after which Node.js and Apache close an idle one, so that berth does not
/// write an event to a connection the endpoint is closing at that moment.
const IDLE_CONNECTION: Duration = Duration::from_secs(4);

const LOCK_FILE: &str = ".lock";

/// How often a sender waiting for another process's lock tries again.
const LOCK_POLL: Duration = Duration::from_secs(1);

/// An idle sender looks at its directory this often even when not woken (files another
/// process wrote there).
const RESCAN: Duration = Duration::from_secs(10);

/// Temporary files of a write that a crash interrupted are removed after this long.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Pull,
    Delete,
    Mount,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Push, Action::Pull, Action::Delete, Action::Mount];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
            Action::Mount => "mount",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What an event is about (registry:2's `target`). Empty fields are left out, as
/// registry:2 leaves them out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The same as `size`, kept by registry:2 for older receivers.
    #[serde(skip_serializing_if = "is_zero")]
    pub length: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// For a mount: where the blob came from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from_repository: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

/// The request that caused an event. `id`, `method` and `useragent` are always present
/// (registry:2 never omits them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub id: String,
    /// The client's address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// The `Host` the client asked for.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub method: String,
    #[serde(rename = "useragent")]
    pub user_agent: String,
}

impl RequestRecord {
    /// A record with a new random id; build one per request and give a clone to each of
    /// its events, so they share the id.
    pub fn new(method: &str, host: &str, user_agent: &str, addr: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            addr: addr.to_owned(),
            host: host.to_owned(),
            method: method.to_owned(),
            user_agent: user_agent.to_owned(),
        }
    }
}

/// Who caused an event: the authenticated user, none for anonymous callers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActorRecord {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The registry instance that produced an event: `host:port` and an id that changes at
/// every start. Filled in by [`Notifier::emit`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceRecord {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(rename = "instanceID", skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

/// What the request path knows about a request, for every event it causes.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub request: RequestRecord,
    /// The user name; empty for anonymous callers.
    pub actor: String,
    /// Scheme and authority clients reach berth at (`https://registry.example.com`), for
    /// the events' `url`; none leaves `url` out.
    pub url_base: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Blob,
}

/// One event, as registry:2 writes it. Built with [`Event::new`] and the methods after it;
/// the `id` and `timestamp` are set at creation and never change, also across retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: String,
    /// RFC 3339, UTC, with the fraction of a second (as Go writes `time.Time`).
    pub timestamp: String,
    pub action: Action,
    pub target: Target,
    pub request: RequestRecord,
    pub actor: ActorRecord,
    pub source: SourceRecord,
    #[serde(skip)]
    kind: Option<Kind>,
    #[serde(skip)]
    url_base: Option<String>,
}

impl Event {
    /// A new event about `repository`, with a fresh id and the current time.
    pub fn new(action: Action, repository: impl Display) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: crate::timestamp::nanos(time::OffsetDateTime::now_utc()),
            action,
            target: Target {
                repository: repository.to_string(),
                ..Target::default()
            },
            request: RequestRecord::default(),
            actor: ActorRecord::default(),
            source: SourceRecord::default(),
            kind: None,
            url_base: None,
        }
    }

    /// The event is about a manifest: its digest, media type and size in bytes.
    pub fn manifest(mut self, digest: impl Display, media_type: &str, size: u64) -> Self {
        self.target.digest = digest.to_string();
        self.target.media_type = media_type.to_owned();
        self.target.size = size;
        self.target.length = size;
        self.kind = Some(Kind::Manifest);
        self
    }

    /// The event is about a blob: its digest and whole size in bytes.
    pub fn blob(mut self, digest: impl Display, size: u64) -> Self {
        self.target.digest = digest.to_string();
        self.target.media_type = BLOB_MEDIA_TYPE.to_owned();
        self.target.size = size;
        self.target.length = size;
        self.kind = Some(Kind::Blob);
        self
    }

    /// Only a digest, as registry:2's delete events carry it.
    pub fn digest(mut self, digest: impl Display) -> Self {
        self.target.digest = digest.to_string();
        self
    }

    pub fn tag(mut self, tag: impl Display) -> Self {
        self.target.tag = tag.to_string();
        self
    }

    /// For a mount: the repository the blob was mounted from (`target.fromRepository`).
    pub fn mounted_from(mut self, repository: impl Display) -> Self {
        self.target.from_repository = repository.to_string();
        self
    }

    pub fn request(mut self, request: RequestRecord) -> Self {
        self.request = request;
        self
    }

    pub fn actor(mut self, name: Option<&str>) -> Self {
        self.actor.name = name.unwrap_or_default().to_owned();
        self
    }

    /// Where clients reach berth (`https://registry.example.com`): the event's `url` is
    /// the manifest's or blob's URL under it.
    pub fn url_base(mut self, base: Option<&str>) -> Self {
        self.url_base = base.map(str::to_owned);
        self
    }

    /// The request, actor and URL base of `ctx`.
    pub fn context(self, ctx: &Context) -> Self {
        let actor = Some(ctx.actor.as_str()).filter(|a| !a.is_empty());
        self.request(ctx.request.clone())
            .actor(actor)
            .url_base(ctx.url_base.as_deref())
    }

    /// Fills in what the notifier knows: the source, and the URL from the base.
    fn finish(mut self, source: &SourceRecord) -> Self {
        if self.target.url.is_empty() && !self.target.digest.is_empty() {
            if let (Some(base), Some(kind)) = (&self.url_base, self.kind) {
                let what = match kind {
                    Kind::Manifest => "manifests",
                    Kind::Blob => "blobs",
                };
                self.target.url = format!(
                    "{}/v2/{}/{what}/{}",
                    base.trim_end_matches('/'),
                    self.target.repository,
                    self.target.digest
                );
            }
        }
        self.source = source.clone();
        self
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Envelope<'a> {
    events: &'a [Event],
}

/// The request body for `events`: `{"events": [...]}`.
pub fn envelope(events: &[Event]) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&Envelope { events }).map_err(|e| e.to_string())
}

/// How long to wait after failed attempts in a row: `initial` for the first `threshold`
/// failures (at least one), then doubling, never more than `max`; each wait shortened by up
/// to a quarter at random, so that registries that lost the same receiver do not all come
/// back at once.
fn backoff(initial: Duration, max: Duration, threshold: u32) -> Backoff {
    Backoff::new(initial, max)
        .threshold(threshold)
        .jitter(0.75..1.0)
}

/// A configured header as the client sends it (config refused the ones berth sets
/// itself). The value is never quoted in the message (it is often a secret), and it is
/// marked sensitive: kept out of HTTP/2's header compression tables and of `Debug`.
fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| format!("the value of {name} has characters a header cannot carry"))?;
    value.set_sensitive(true);
    Ok((parsed, value))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct WakeState {
    /// The writer added a file since the sender last looked.
    pending: bool,
    stop: bool,
}

/// Wakes a sender: new files, or time to stop.
#[derive(Default)]
struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

impl Wake {
    fn notify(&self) {
        lock(&self.state).pending = true;
        self.cv.notify_all();
    }

    fn stop(&self) {
        lock(&self.state).stop = true;
        self.cv.notify_all();
    }

    fn stopped(&self) -> bool {
        lock(&self.state).stop
    }

    /// Clears the pending mark before the directory is read; false once stopped.
    fn begin_scan(&self) -> bool {
        let mut s = lock(&self.state);
        s.pending = false;
        !s.stop
    }

    /// Waits until there is new work or `within` has passed; false once stopped.
    fn wait_work(&self, within: Duration) -> bool {
        self.wait(within, true)
    }

    /// Sleeps `d` unless stopped first; false once stopped.
    fn sleep(&self, d: Duration) -> bool {
        self.wait(d, false)
    }

    fn wait(&self, d: Duration, until_pending: bool) -> bool {
        let deadline = Instant::now().checked_add(d);
        let mut s = lock(&self.state);
        loop {
            if s.stop {
                return false;
            }
            if until_pending && s.pending {
                return true;
            }
            let left = match deadline {
                Some(t) => t.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return true;
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// One configured endpoint, ready to deliver.
struct Endpoint {
    name: String,
    url: Url,
    /// Where the POSTs go: `url` again, as the client takes it.
    uri: http::Uri,
    /// Every request's headers: the content type and the configured ones.
    headers: HeaderMap,
    timeout: Duration,
    threshold: u32,
    backoff: Duration,
    backoff_max: Duration,
    ignored_media_types: Vec<String>,
    ignore_actions: Vec<Action>,
    dir: PathBuf,
    wake: Wake,
    /// Files in the queue, as far as this process knows.
    queued: AtomicU64,
}

impl Endpoint {
    fn from_config(c: &NotifyEndpoint, root: &Path) -> Result<Self, String> {
        let fail = |m: String| format!("notification endpoint {:?}: {m}", c.name);
        let url = c.url.clone();
        let scheme = if url.tls { "https" } else { "http" };
        let uri = format!("{scheme}://{}{}", url.authority, url.target)
            .parse()
            .map_err(|e| fail(format!("{e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(EVENTS_MEDIA_TYPE));
        for (name, value) in &c.headers {
            let (name, value) = parse_header(name, value).map_err(fail)?;
            headers.append(name, value);
        }
        Ok(Self {
            name: c.name.clone(),
            uri,
            headers,
            timeout: c.timeout.0,
            threshold: c.threshold,
            backoff: c.backoff.0,
            backoff_max: c.backoff_max.0,
            ignored_media_types: c.ignored_media_types.clone(),
            ignore_actions: c
                .ignore_actions
                .iter()
                .filter_map(|a| Action::parse(a))
                .collect(),
            dir: root.join(&c.name),
            url,
            wake: Wake::default(),
            queued: AtomicU64::new(0),
        })
    }

    /// Whether the endpoint's filters let `e` through.
    fn accepts(&self, e: &Event) -> bool {
        let ignored_type = !e.target.media_type.is_empty()
            && self.ignored_media_types.contains(&e.target.media_type);
        !ignored_type && !self.ignore_actions.contains(&e.action)
    }

    fn dequeued(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

enum Msg {
    /// An event, and who waits for it to be on disk.
    Event(Box<Event>, Option<oneshot::Sender<bool>>),
    /// Answered once everything sent before it is on disk.
    Flush(std::sync::mpsc::Sender<()>),
}

/// Delivers events to the configured endpoints; see the module documentation. Dropping it
/// writes what is still in the channel, then stops the senders (what is queued stays on
/// disk for the next start).
pub struct Notifier {
    tx: Option<mpsc::Sender<Msg>>,
    endpoints: Vec<Arc<Endpoint>>,
    source: SourceRecord,
    writer: Mutex<Option<JoinHandle<()>>>,
    senders: Mutex<Vec<JoinHandle<()>>>,
    dropped: AtomicU64,
    /// Dropped after the senders have stopped (fields drop after `Drop::drop`).
    _io: Io,
}

/// Every notifier of the process, for [`flush_all`].
static LIVE: Mutex<Vec<Weak<Notifier>>> = Mutex::new(Vec::new());

/// Waits (at most `within`) until every event emitted so far is on disk, in every notifier
/// of the process: for a graceful exit. Returns whether all were.
pub fn flush_all(within: Duration) -> bool {
    let live: Vec<Arc<Notifier>> = lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    let deadline = Instant::now() + within;
    live.iter()
        .all(|n| n.flush(deadline.saturating_duration_since(Instant::now())))
}

impl Notifier {
    /// Starts the writer and a sender per enabled endpoint; `None` when no endpoint is
    /// configured (or all are disabled). Queue files left by an earlier run are sent
    /// first. `cfg` has been validated (`Config::load`). Errors name the endpoint: unusable
    /// TLS roots, a queue directory that cannot be made.
    pub fn start(cfg: &Config) -> Result<Option<Arc<Notifier>>, String> {
        let root = cfg.state.dir.join("notifications");
        let active: Vec<&NotifyEndpoint> = cfg
            .notifications
            .endpoints
            .iter()
            .filter(|e| !e.disabled)
            .collect();
        warn_about_orphans(&root, &active);
        if active.is_empty() {
            return Ok(None);
        }
        let instance = uuid::Uuid::new_v4().to_string();
        let file_tag: String = instance
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(8)
            .collect();
        let source = SourceRecord {
            addr: source_addr(cfg),
            instance_id: instance,
        };
        let io = Io::start()?;
        let mut endpoints = Vec::new();
        let mut transports = Vec::new();
        let mut next = Vec::new();
        for c in active {
            let ep = Endpoint::from_config(c, &root)?;
            transports.push(
                Transport::new(c, ep.url.tls, io.handle())
                    .map_err(|m| format!("notification endpoint {:?}: {m}", c.name))?,
            );
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&ep.dir)
                .map_err(|e| {
                    format!("{}: cannot make the queue directory: {e}", ep.dir.display())
                })?;
            let files = list_queue(&ep.dir).map_err(|e| format!("{}: {e}", ep.dir.display()))?;
            let last = files
                .last()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .and_then(parse_seq);
            next.push(last.map_or(1, |s| s.saturating_add(1)));
            ep.queued.store(files.len() as u64, Ordering::Relaxed);
            if !files.is_empty() {
                tracing::info!(
                    endpoint = %ep.name,
                    queued = files.len(),
                    "notifications not delivered before the restart are sent first"
                );
            }
            endpoints.push(Arc::new(ep));
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let writer = {
            let endpoints = endpoints.clone();
            spawn("berth-notify".into(), move || {
                write_loop(rx, &endpoints, next, &file_tag)
            })?
        };
        let mut notifier = Notifier {
            tx: Some(tx),
            endpoints,
            source,
            writer: Mutex::new(Some(writer)),
            senders: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            _io: io,
        };
        for (ep, transport) in notifier.endpoints.clone().into_iter().zip(transports) {
            let name = format!("notify-{}", ep.name);
            // On an error the notifier is dropped, which stops what started.
            let handle = spawn(name, move || send_loop(&ep, &transport))?;
            notifier
                .senders
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        for ep in &notifier.endpoints {
            tracing::info!(endpoint = %ep.name, url = %redacted_url(&ep.url), "notifications on");
        }
        let notifier = Arc::new(notifier);
        let mut live = lock(&LIVE);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&notifier));
        Ok(Some(notifier))
    }

    /// Whether any endpoint takes events of `action` (when none does, the request path
    /// need not build them).
    pub fn wants(&self, action: Action) -> bool {
        self.endpoints
            .iter()
            .any(|e| !e.ignore_actions.contains(&action))
    }

    /// Hands `event` to the writer and returns at once. When the channel is full (the disk
    /// has not kept up with thousands of events) the event is dropped and counted, with an
    /// error in the log.
    pub fn emit(&self, event: Event) {
        let Some(tx) = &self.tx else {
            return;
        };
        if !self.wants(event.action) {
            return;
        }
        let msg = Msg::Event(Box::new(event.finish(&self.source)), None);
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(1000) {
                    tracing::error!(
                        dropped = n + 1,
                        "notification channel full: events are being dropped (the queue directory's disk is not keeping up)"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Hands `event` to the writer and returns once it is on disk in every endpoint's queue
    /// that takes it (waiting for room when the channel is full): a client told that its
    /// push succeeded is then sure to be notified of it. False when it could not be
    /// written (the error is logged with the event).
    pub async fn emit_persisted(&self, event: Event) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        if !self.wants(event.action) {
            return true;
        }
        let (ack, done) = oneshot::channel();
        let msg = Msg::Event(Box::new(event.finish(&self.source)), Some(ack));
        if tx.send(msg).await.is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }

    /// Waits (at most `within`, blocking the calling thread) until every event emitted
    /// before the call is on disk. Returns whether it was.
    pub fn flush(&self, within: Duration) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let deadline = Instant::now() + within;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut msg = Msg::Flush(done_tx);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Closed(_)) => return true,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Events waiting in each endpoint's queue, by endpoint name (for metrics).
    pub fn queued(&self) -> Vec<(String, u64)> {
        self.endpoints
            .iter()
            .map(|e| (e.name.clone(), e.queued.load(Ordering::Relaxed)))
            .collect()
    }

    /// Events dropped because the channel was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// This instance's `source.instanceID`.
    pub fn instance_id(&self) -> &str {
        &self.source.instance_id
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is in it, then end.
        self.tx = None;
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            let _ = w.join();
        }
        for ep in &self.endpoints {
            ep.wake.stop();
        }
        let senders = std::mem::take(
            self.senders
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for s in senders {
            let _ = s.join();
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| format!("cannot start a notification thread: {e}"))
}

/// `host:port` of this instance, as registry:2 reports its source: the machine's name and
/// the first listener's port.
fn source_addr(cfg: &Config) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    match cfg.listeners().first() {
        Some((addr, _)) => format!("{host}:{}", addr.port()),
        None => host,
    }
}

/// The URL without its query (which may carry a token), for the log.
fn redacted_url(u: &Url) -> String {
    let path = u.target.split('?').next().unwrap_or("/");
    let scheme = if u.tls { "https" } else { "http" };
    format!("{scheme}://{}{path}", u.authority)
}

/// Queues left by endpoints that are gone or disabled are reported, not deleted.
fn warn_about_orphans(root: &Path, active: &[&NotifyEndpoint]) {
    let Ok(dirs) = fs::read_dir(root) else {
        return;
    };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if active.iter().any(|e| e.name == name) {
            continue;
        }
        let n = list_queue(&d.path()).map(|f| f.len()).unwrap_or(0);
        if n > 0 {
            tracing::warn!(
                endpoint = %name,
                queued = n,
                dir = %d.path().display(),
                "undelivered notifications for an endpoint that is not configured (or is disabled); they stay until it is again, or until the directory is removed"
            );
        }
    }
}

fn file_name(seq: u64, tag: &str) -> String {
    format!("{seq:020}-{tag}.json")
}

/// The sequence number of a queue file's name; `None` for anything else in the directory.
fn parse_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    let (seq, tag) = stem.split_once('-')?;
    let ok = seq.len() == 20
        && seq.bytes().all(|b| b.is_ascii_digit())
        && !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        seq.parse().ok()
    } else {
        None
    }
}

/// The queue files of `dir`, oldest first (empty when it does not exist).
fn list_queue(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            if parse_seq(name).is_some() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// The writer thread: files every event for the endpoints that take it, in the order the
/// events came, and answers the waiting request (`emit_persisted`) and flushes.
fn write_loop(
    mut rx: mpsc::Receiver<Msg>,
    endpoints: &[Arc<Endpoint>],
    mut next: Vec<u64>,
    file_tag: &str,
) {
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Flush(done) => {
                let _ = done.send(());
            }
            Msg::Event(event, ack) => {
                let ok = persist(&event, endpoints, &mut next, file_tag);
                if let Some(ack) = ack {
                    let _ = ack.send(ok);
                }
            }
        }
    }
}

fn persist(event: &Event, endpoints: &[Arc<Endpoint>], next: &mut [u64], file_tag: &str) -> bool {
    let body = match envelope(std::slice::from_ref(event)) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(id = %event.id, error = %e, "notification lost: cannot encode it");
            return false;
        }
    };
    let mut all = true;
    for (ep, seq) in endpoints.iter().zip(next.iter_mut()) {
        if !ep.accepts(event) {
            continue;
        }
        let path = ep.dir.join(file_name(*seq, file_tag));
        *seq = seq.saturating_add(1);
        match write_durably(&path, &body) {
            Ok(()) => {
                ep.queued.fetch_add(1, Ordering::Relaxed);
                ep.wake.notify();
            }
            Err(e) => {
                all = false;
                tracing::error!(
                    endpoint = %ep.name,
                    error = %e,
                    event = %String::from_utf8_lossy(&body),
                    "notification lost: it cannot be written to the queue"
                );
            }
        }
    }
    all
}

/// The store's durable write, tried a few times (a full disk may get room).
fn write_durably(path: &Path, body: &[u8]) -> Result<(), crate::store::Error> {
    let mut attempt = 1;
    loop {
        match crate::store::fs::write_atomic_mode(path, body, FILE_MODE) {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= WRITE_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot write a notification; trying again");
                std::thread::sleep(Duration::from_millis(100 * attempt));
                attempt += 1;
            }
        }
    }
}

/// A sender thread: takes the directory's lock, then delivers its files in order for as
/// long as the notifier lives.
fn send_loop(ep: &Endpoint, transport: &Transport) {
    let Some(_lock) = take_lock(ep) else {
        return;
    };
    remove_stale_temporaries(&ep.dir);
    // Delivered, but their removal failed: skipped, and removed again at every scan.
    let mut undeletable: HashSet<PathBuf> = HashSet::new();
    loop {
        if !ep.wake.begin_scan() {
            return;
        }
        undeletable
            .retain(|p| fs::remove_file(p).is_err_and(|e| e.kind() != io::ErrorKind::NotFound));
        let files: Vec<PathBuf> = match list_queue(&ep.dir) {
            Ok(f) => f.into_iter().filter(|p| !undeletable.contains(p)).collect(),
            Err(e) => {
                tracing::warn!(endpoint = %ep.name, dir = %ep.dir.display(), error = %e, "cannot read the notification queue; trying again");
                if !ep.wake.sleep(ep.backoff_max.min(RESCAN)) {
                    return;
                }
                continue;
            }
        };
        if files.is_empty() {
            if !ep.wake.wait_work(RESCAN) {
                return;
            }
            continue;
        }
        for path in files {
            if !deliver_file(ep, transport, &path, &mut undeletable) {
                return;
            }
        }
    }
}

/// The directory's advisory lock, waiting while another process holds it; `None` once
/// stopped.
fn take_lock(ep: &Endpoint) -> Option<File> {
    let path = ep.dir.join(LOCK_FILE);
    let mut told = false;
    loop {
        let attempt = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| match f.try_lock() {
                Ok(()) => Ok(Some(f)),
                Err(fs::TryLockError::WouldBlock) => Ok(None),
                Err(fs::TryLockError::Error(e)) => Err(e.to_string()),
            });
        match attempt {
            Ok(Some(f)) => {
                if told {
                    tracing::info!(endpoint = %ep.name, "notification queue taken over from the other berth process");
                }
                return Some(f);
            }
            Ok(None) if !told => {
                told = true;
                tracing::info!(endpoint = %ep.name, dir = %ep.dir.display(), "another berth process is delivering this queue; waiting for it to finish");
            }
            Ok(None) => {}
            Err(e) if !told => {
                told = true;
                tracing::warn!(endpoint = %ep.name, file = %path.display(), error = %e, "cannot lock the notification queue; trying again");
            }
            Err(_) => {}
        }
        if !ep.wake.sleep(LOCK_POLL) {
            return None;
        }
    }
}

/// Removes what writes interrupted by a crash left behind (`.<name>.tmp.<pid>.<random>`),
/// once it is old enough not to be a write in progress in another process.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.contains(".tmp.")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TEMP);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Delivers one file, retrying until a 2xx; false once stopped.
fn deliver_file(
    ep: &Endpoint,
    transport: &Transport,
    path: &Path,
    undeletable: &mut HashSet<PathBuf>,
) -> bool {
    let mut failures: u32 = 0;
    loop {
        if ep.wake.stopped() {
            return false;
        }
        let outcome = match fs::read(path) {
            Ok(body) => transport.post(ep, body).map_err(|e| e.to_string()),
            // Removed by hand (an event given up on): on to the next.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ep.dequeued();
                return true;
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
        let why = match outcome {
            Ok(status) if (200..300).contains(&status) => {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::error!(
                            endpoint = %ep.name,
                            file = %path.display(),
                            error = %e,
                            "notification delivered but its file cannot be removed: after a restart it is sent again"
                        );
                        undeletable.insert(path.to_owned());
                    }
                }
                ep.dequeued();
                if failures > 0 {
                    tracing::info!(endpoint = %ep.name, failures, "notification delivered after failed attempts");
                }
                return true;
            }
            Ok(status) => format!("answered {status}"),
            Err(e) => e,
        };
        failures = failures.saturating_add(1);
        let wait = backoff(ep.backoff, ep.backoff_max, ep.threshold).wait(failures);
        tracing::warn!(
            endpoint = %ep.name,
            file = %path.display(),
            attempt = failures,
            retry_in = ?wait,
            error = %why,
            "notification not delivered; trying again"
        );
        if !ep.wake.sleep(wait) {
            return false;
        }
    }
}

/// The runtime the endpoints' connections live on: one worker thread, shared by the
/// senders. It keeps running between deliveries, so that a connection the endpoint closes
/// while idle is noticed then (and not when the next event is already being written to
/// it), and idle connections are closed on time.
struct Io {
    /// `None` only once dropped.
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl Io {
    fn start() -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("berth-notify-io")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a notification thread: {e}"))?;
        Ok(Self {
            handle: rt.handle().clone(),
            rt: Some(rt),
        })
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // Without waiting for the worker: a Notifier may be dropped on an async thread,
        // where a blocking runtime shutdown panics.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// How one endpoint's sender reaches it: the connections' runtime, and a client whose
/// connections are kept from one delivery to the next.
struct Transport {
    rt: tokio::runtime::Handle,
    client: Client,
}

impl Transport {
    /// Trusts the endpoint's `ca` file alone when it is set, else the system's roots; a
    /// plain http:// endpoint does without either.
    fn new(c: &NotifyEndpoint, tls: bool, rt: tokio::runtime::Handle) -> Result<Self, String> {
        let roots = match &c.ca {
            Some(path) => Roots::File(path.clone()),
            None if tls => Roots::System,
            None => Roots::Empty,
        };
        let client = Client::new(&ClientOptions {
            timeout: c.timeout.0,
            read_timeout: c.timeout.0,
            roots,
            body_max: RESPONSE_BODY_MAX,
            head_max: RESPONSE_HEAD_MAX,
            idle_timeout: IDLE_CONNECTION,
            // Connecting is part of the exchange that `timeout` bounds.
            connect_timeout: None,
        })
        .map_err(|e| e.to_string())?;
        Ok(Self { rt, client })
    }

    /// POSTs `body` and returns the answer's status; the exchange (connect, TLS, request,
    /// response head) within the endpoint's timeout. Redirects are not followed.
    fn post(&self, ep: &Endpoint, body: Vec<u8>) -> Result<u16, ClientError> {
        let mut request = http::Request::new(RequestBody::from(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = ep.uri.clone();
        *request.headers_mut() = ep.headers.clone();
        self.rt.block_on(async {
            let deadline = tokio::time::Instant::now() + ep.timeout;
            let answer = self.client.send(request).await?;
            let status = answer.status().as_u16();
            // The rest of the answer is read, in what is left of the timeout, so that the
            // connection can carry the next event. The status alone is the outcome.
            let _ = tokio::time::timeout_at(deadline, answer.bytes()).await;
            Ok(status)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration as CfgDuration;
    use crate::upstream::testing::read_request;
    use std::collections::VecDeque;
    use std::io::Write;
    use std::net::TcpListener;
    use std::sync::atomic::AtomicBool;

    /// One request the test receiver got.
    #[derive(Debug, Clone)]
    struct Got {
        head: String,
        body: Vec<u8>,
        status: u16,
    }

    /// A loopback HTTP receiver: records every request and answers the scripted statuses,
    /// then 200.
    struct Receiver {
        got: Arc<Mutex<Vec<Got>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Receiver {
        fn start(port: u16, script: &[u16]) -> Receiver {
            let listener = (0..50)
                .find_map(|_| {
                    TcpListener::bind(("127.0.0.1", port)).ok().or_else(|| {
                        std::thread::sleep(Duration::from_millis(50));
                        None
                    })
                })
                .expect("bind the receiver");
            listener.set_nonblocking(true).expect("nonblocking");
            let got = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let mut script: VecDeque<u16> = script.iter().copied().collect();
            let (g, s) = (got.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let Ok((mut conn, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let status = script.pop_front().unwrap_or(200);
                    let ready = conn
                        .set_nonblocking(false)
                        .and_then(|()| conn.set_read_timeout(Some(Duration::from_secs(5))));
                    if ready.is_err() {
                        continue;
                    }
                    if let Some((head, body)) = read_request(&mut conn) {
                        lock(&g).push(Got { head, body, status });
                        let _ = conn.write_all(
                            format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .as_bytes(),
                        );
                    }
                }
            });
            Receiver {
                got,
                stop,
                thread: Some(thread),
            }
        }

        fn got(&self) -> Vec<Got> {
            lock(&self.got).clone()
        }

        /// The events of the requests answered 2xx, in order.
        fn delivered(&self) -> Vec<serde_json::Value> {
            self.got()
                .iter()
                .filter(|g| (200..300).contains(&g.status))
                .flat_map(|g| {
                    let v: serde_json::Value = serde_json::from_slice(&g.body).expect("JSON");
                    v["events"].as_array().cloned().expect("events")
                })
                .collect()
        }

        fn wait_delivered(&self, n: usize) -> Vec<serde_json::Value> {
            for _ in 0..400 {
                if self.delivered().len() >= n {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            self.delivered()
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    fn endpoint(name: &str, url: &str) -> NotifyEndpoint {
        NotifyEndpoint {
            timeout: CfgDuration(Duration::from_secs(2)),
            backoff: CfgDuration(Duration::from_millis(20)),
            backoff_max: CfgDuration(Duration::from_millis(100)),
            ..NotifyEndpoint::new(name, url.parse().expect("url"))
        }
    }

    fn config(state: &Path, endpoints: Vec<NotifyEndpoint>) -> Config {
        let mut cfg = Config::default();
        cfg.state.dir = state.to_owned();
        cfg.notifications.endpoints = endpoints;
        cfg
    }

    fn queue_files(state: &Path, name: &str) -> Vec<PathBuf> {
        list_queue(&state.join("notifications").join(name)).expect("list")
    }

    fn blob_push(i: usize) -> Event {
        Event::new(Action::Push, "team/app")
            .blob(format!("sha256:{i:064x}"), 100 + i as u64)
            .request(RequestRecord::new(
                "PUT",
                "registry.test",
                "test/1",
                "10.0.0.9",
            ))
            .actor(Some("alice"))
            .url_base(Some("https://registry.test"))
    }

    #[test]
    fn envelope_has_registry2s_shape() {
        let source = SourceRecord {
            addr: "box:5000".into(),
            instance_id: "i-1".into(),
        };
        let d = format!("sha256:{}", "ab".repeat(32));
        let e = Event::new(Action::Push, "team/app")
            .manifest(&d, "application/vnd.oci.image.manifest.v1+json", 527)
            .tag("v1")
            .context(&Context {
                request: RequestRecord::new("PUT", "registry.test:5000", "docker/27", "10.0.0.9"),
                actor: "alice".into(),
                url_base: Some("https://registry.test:5000/".into()),
            })
            .finish(&source);
        let v: serde_json::Value =
            serde_json::from_slice(&envelope(std::slice::from_ref(&e)).expect("encode"))
                .expect("JSON");
        let events = v["events"].as_array().expect("events");
        assert_eq!(events.len(), 1);
        let ev = &events[0];
        assert_eq!(ev["id"].as_str().map(str::len), Some(36), "{ev}");
        assert_eq!(ev["action"], "push");
        let t = &ev["target"];
        assert_eq!(t["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(t["size"], 527);
        assert_eq!(t["length"], 527);
        assert_eq!(t["digest"], d.as_str());
        assert_eq!(t["repository"], "team/app");
        assert_eq!(t["tag"], "v1");
        assert_eq!(
            t["url"],
            format!("https://registry.test:5000/v2/team/app/manifests/{d}").as_str()
        );
        assert!(t.get("fromRepository").is_none(), "{t}");
        let r = &ev["request"];
        assert_eq!(r["id"].as_str().map(str::len), Some(36));
        assert_eq!(r["addr"], "10.0.0.9");
        assert_eq!(r["host"], "registry.test:5000");
        assert_eq!(r["method"], "PUT");
        assert_eq!(r["useragent"], "docker/27");
        assert_eq!(ev["actor"]["name"], "alice");
        assert_eq!(ev["source"]["addr"], "box:5000");
        assert_eq!(ev["source"]["instanceID"], "i-1");
        let ts = ev["timestamp"].as_str().expect("timestamp");
        assert!(ts.ends_with('Z') && ts.len() >= 20, "{ts}");
        assert_eq!(&ts[4..5], "-");
        assert_eq!(&ts[10..11], "T");

        // A tag delete by an anonymous caller: only what registry:2 sends.
        let e = Event::new(Action::Delete, "team/app")
            .tag("old")
            .finish(&SourceRecord::default());
        let v = serde_json::to_value(&e).expect("JSON");
        assert_eq!(
            v["target"],
            serde_json::json!({"repository": "team/app", "tag": "old"})
        );
        assert_eq!(v["actor"], serde_json::json!({}));
        assert_eq!(
            v["request"],
            serde_json::json!({"id": "", "method": "", "useragent": ""})
        );
        // A mount names its source repository; a blob event is application/octet-stream.
        let e = Event::new(Action::Mount, "b")
            .blob(&d, 9)
            .mounted_from("a")
            .url_base(Some("http://r"))
            .finish(&SourceRecord::default());
        let v = serde_json::to_value(&e).expect("JSON");
        assert_eq!(v["action"], "mount");
        assert_eq!(v["target"]["fromRepository"], "a");
        assert_eq!(v["target"]["mediaType"], BLOB_MEDIA_TYPE);
        assert_eq!(
            v["target"]["url"],
            format!("http://r/v2/b/blobs/{d}").as_str()
        );
    }

    #[test]
    fn backoff_doubles_after_the_threshold_up_to_the_cap() {
        let s = Duration::from_secs;
        let d = |threshold, n| backoff(s(1), s(300), threshold).delay(n);
        assert_eq!(
            (1..=6).map(|n| d(1, n)).collect::<Vec<_>>(),
            [s(1), s(2), s(4), s(8), s(16), s(32)]
        );
        assert_eq!(d(1, 9), s(256));
        assert_eq!(d(1, 10), s(300));
        assert_eq!(d(1, u32::MAX), s(300));
        // threshold 0 counts as 1.
        assert_eq!(d(0, 1), s(1));
        assert_eq!(
            (1..=5).map(|n| d(3, n)).collect::<Vec<_>>(),
            [s(1), s(1), s(1), s(2), s(4)]
        );
        let b = backoff(s(4), s(300), 1);
        assert_eq!(b.wait_at(1, 0.0), s(3));
        for _ in 0..100 {
            let j = b.wait(1);
            assert!(j >= s(3) && j <= s(4), "{j:?}");
        }
    }

    #[test]
    fn urls_are_logged_without_their_query() {
        let u: Url = "https://hooks.example.com/x/y?token=1"
            .parse()
            .expect("url");
        assert_eq!(redacted_url(&u), "https://hooks.example.com/x/y");
    }

    #[test]
    fn queue_file_names_sort_by_sequence() {
        assert_eq!(
            file_name(42, "1f2e3d4c"),
            "00000000000000000042-1f2e3d4c.json"
        );
        assert_eq!(parse_seq("00000000000000000042-1f2e3d4c.json"), Some(42));
        assert_eq!(parse_seq(&file_name(u64::MAX, "a")), Some(u64::MAX));
        for other in [
            ".lock",
            "42-a.json",
            "00000000000000000042-zz.json",
            ".x.tmp.1.2",
        ] {
            assert_eq!(parse_seq(other), None, "{other}");
        }
        assert!(file_name(9, "ff") < file_name(10, "00"));
    }

    #[test]
    fn no_endpoints_no_notifier() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Notifier::start(&config(dir.path(), Vec::new()))
            .expect("start")
            .is_none());
        let mut e = endpoint("hook", "http://127.0.0.1:9/");
        e.disabled = true;
        assert!(Notifier::start(&config(dir.path(), vec![e]))
            .expect("start")
            .is_none());
    }

    #[test]
    fn queue_survives_a_restart_and_is_delivered_once_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/events?k=1");
        let mut ep = endpoint("hook", &url);
        ep.headers
            .insert("Authorization".into(), "Bearer s3cret".into());
        let cfg = config(dir.path(), vec![ep]);

        // Nothing listens on the port: every attempt fails.
        let first = Notifier::start(&cfg).expect("start").expect("notifier");
        let sent: Vec<Event> = (0..5).map(blob_push).collect();
        for e in &sent {
            first.emit(e.clone());
        }
        assert!(first.flush(Duration::from_secs(10)));
        assert_eq!(queue_files(dir.path(), "hook").len(), 5);
        assert_eq!(first.queued(), vec![("hook".to_owned(), 5)]);
        std::thread::sleep(Duration::from_millis(300));
        let first_instance = first.instance_id().to_owned();
        drop(first);
        assert_eq!(queue_files(dir.path(), "hook").len(), 5);

        let rx = Receiver::start(port, &[]);
        let second = Notifier::start(&cfg).expect("start").expect("notifier");
        assert_ne!(second.instance_id(), first_instance);
        let later = blob_push(5);
        second.emit(later.clone());
        let got = rx.wait_delivered(6);
        std::thread::sleep(Duration::from_millis(300));
        let got_all = rx.delivered();
        assert_eq!(got_all.len(), 6, "{got_all:#?}");
        let ids: Vec<&str> = got.iter().filter_map(|e| e["id"].as_str()).collect();
        let want: Vec<&str> = sent
            .iter()
            .chain(std::iter::once(&later))
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, want, "every event once, in order");
        // The events queued before the restart keep the instance that made them.
        assert_eq!(got[0]["source"]["instanceID"], first_instance.as_str());
        assert_eq!(got[5]["source"]["instanceID"], second.instance_id());
        assert_eq!(
            got[0]["target"]["url"],
            format!(
                "https://registry.test/v2/team/app/blobs/{}",
                sent[0].target.digest
            )
            .as_str()
        );
        let requests = rx.got();
        let head = &requests[0].head;
        assert!(head.starts_with("POST /events?k=1 HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Type: {EVENTS_MEDIA_TYPE}")),
            "{head}"
        );
        assert!(head.contains("Authorization: Bearer s3cret"), "{head}");
        assert!(head.contains(&format!("Host: 127.0.0.1:{port}")), "{head}");
        for _ in 0..100 {
            if queue_files(dir.path(), "hook").is_empty() && second.queued()[0].1 == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(queue_files(dir.path(), "hook").is_empty());
        assert_eq!(second.queued(), vec![("hook".to_owned(), 0)]);
    }

    #[test]
    fn failures_are_retried_until_a_2xx() {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let rx = Receiver::start(port, &[500, 404, 302]);
        let cfg = config(
            dir.path(),
            vec![endpoint("hook", &format!("http://127.0.0.1:{port}/"))],
        );
        let n = Notifier::start(&cfg).expect("start").expect("notifier");
        let e = blob_push(1);
        n.emit(e.clone());
        n.emit(blob_push(2));
        let got = rx.wait_delivered(2);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["id"], e.id.as_str());
        let attempts = rx.got();
        assert_eq!(
            attempts.iter().map(|g| g.status).collect::<Vec<_>>(),
            [500, 404, 302, 200, 200]
        );
        // Every retry carried the same event.
        let first: serde_json::Value = serde_json::from_slice(&attempts[0].body).expect("JSON");
        let last: serde_json::Value = serde_json::from_slice(&attempts[3].body).expect("JSON");
        assert_eq!(first, last);
    }

    /// A loopback https:// receiver with a self-signed certificate that keeps each
    /// connection open and answers every request 204. Its threads end with the test
    /// process.
    struct TlsReceiver {
        port: u16,
        /// Connections it took.
        connections: Arc<AtomicU64>,
        /// The bodies it got.
        bodies: Arc<Mutex<Vec<Vec<u8>>>>,
        /// The certificate's PEM file.
        ca: PathBuf,
    }

    fn tls_receiver(dir: &Path) -> TlsReceiver {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let ca = dir.join("hook-ca.pem");
        fs::write(&ca, ck.cert.pem()).expect("write the CA file");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .expect("server config"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (n, b) = (connections.clone(), bodies.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                let (cfg, b) = (cfg.clone(), b.clone());
                std::thread::spawn(move || {
                    let Ok(server) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(server, conn);
                    while let Some((_, body)) = read_request(&mut tls) {
                        lock(&b).push(body);
                        let answered = tls
                            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                            .and_then(|()| tls.flush());
                        if answered.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TlsReceiver {
            port,
            connections,
            bodies,
            ca,
        }
    }

    #[test]
    fn https_endpoints_trust_their_ca_file_and_keep_the_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rx = tls_receiver(dir.path());
        let url = format!("https://127.0.0.1:{}/hook", rx.port);

        // Another CA: the certificate is not trusted, nothing is delivered.
        let other = tempfile::tempdir().expect("tempdir");
        let mut ep = endpoint("distrust", &url);
        ep.ca = Some(tls_receiver(other.path()).ca);
        let n = Notifier::start(&config(dir.path(), vec![ep]))
            .expect("start")
            .expect("notifier");
        n.emit(blob_push(0));
        assert!(n.flush(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(500));
        assert!(lock(&rx.bodies).is_empty());
        assert_eq!(queue_files(dir.path(), "distrust").len(), 1);
        drop(n);

        // Its own CA: every event arrives, and events that come apart (not in the same
        // instant as the previous one's answer) use the same connection.
        let mut ep = endpoint("hook", &url);
        ep.ca = Some(rx.ca.clone());
        let n = Notifier::start(&config(dir.path(), vec![ep]))
            .expect("start")
            .expect("notifier");
        let before = rx.connections.load(Ordering::SeqCst);
        let sent: Vec<Event> = (1..=3).map(blob_push).collect();
        for (i, e) in sent.iter().enumerate() {
            n.emit(e.clone());
            for _ in 0..400 {
                if lock(&rx.bodies).len() > i {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        let ids: Vec<String> = lock(&rx.bodies)
            .iter()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_slice(b).expect("JSON");
                v["events"][0]["id"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        let want: Vec<&str> = sent.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, want);
        assert_eq!(rx.connections.load(Ordering::SeqCst) - before, 1);
        for _ in 0..100 {
            if queue_files(dir.path(), "hook").is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(queue_files(dir.path(), "hook").is_empty());
    }

    #[test]
    fn filters_and_persisted_emits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let closed = format!("http://127.0.0.1:{}/", free_port());
        let mut quiet = endpoint("quiet", &closed);
        quiet.ignore_actions = vec!["pull".into()];
        quiet.ignored_media_types = vec![BLOB_MEDIA_TYPE.into()];
        let all = endpoint("all", &closed);
        let cfg = config(dir.path(), vec![quiet, all]);
        let n = Notifier::start(&cfg).expect("start").expect("notifier");
        assert!(n.wants(Action::Pull));
        let manifest = Event::new(Action::Push, "r").manifest("sha256:1", "application/x", 3);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // On disk when emit_persisted returns.
        assert!(rt.block_on(n.emit_persisted(manifest)));
        assert_eq!(queue_files(dir.path(), "quiet").len(), 1);
        assert_eq!(queue_files(dir.path(), "all").len(), 1);
        assert!(rt.block_on(n.emit_persisted(blob_push(1))));
        n.emit(Event::new(Action::Pull, "r").manifest("sha256:1", "application/x", 3));
        n.emit(Event::new(Action::Delete, "r").tag("t"));
        assert!(n.flush(Duration::from_secs(10)));
        assert!(flush_all(Duration::from_secs(10)));
        assert_eq!(
            queue_files(dir.path(), "quiet").len(),
            2,
            "push manifest, delete"
        );
        assert_eq!(queue_files(dir.path(), "all").len(), 4);
        drop(n);

        // Only pulls wanted: pushes are not even built.
        let mut pulls = endpoint("pulls", &closed);
        pulls.ignore_actions = vec!["push".into(), "delete".into(), "mount".into()];
        let n = Notifier::start(&config(dir.path(), vec![pulls]))
            .expect("start")
            .expect("notifier");
        assert!(n.wants(Action::Pull) && !n.wants(Action::Push));
    }
}
