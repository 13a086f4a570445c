//! [`PullThrough`]: the local store with the upstreams behind it, as one [`Content`].
//!
//! For a repository under an upstream's prefix:
//! - **A manifest by digest** is read locally, or fetched once, checked (its bytes must
//!   hash to the digest) and kept: a digest never goes stale.
//! - **A manifest by tag** is read locally while the tag was checked with the upstream
//!   within `tag_ttl`; after that the upstream is asked (a `HEAD` when a copy is here: a
//!   moved tag is fetched, an unmoved one costs no download). When the upstream cannot be
//!   reached, answers 5xx or 429, the local copy is served anyway (a warning and
//!   `berth_proxy_stale_served_total`); with no copy the client gets 503 naming the
//!   upstream.
//! - **A blob** is read locally, or streamed from the upstream to the client while it is
//!   written into an upload here; the upload is committed (verified against the digest)
//!   before the last piece goes to the client, so a body the upstream cut short or
//!   corrupted is never stored, and its client sees a broken response, not a whole one.
//!   Requests for a blob already being fetched wait for that fetch instead of starting
//!   another (`berth_proxy_coalesced_total`), and then read the local copy.
//!
//! Everything else, and every repository outside the prefixes, is the local store's.

use super::remote::{Remote, UpstreamError};
use super::Mirror;
use crate::body::BodyStream;
use crate::metrics;
use crate::oci::{Algorithm, Digest, Reference, RepositoryName, Tag, UploadId};
use crate::store::{BlobSource, Content, Error, LinkBarrier, UploadSink};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// The state of one blob download, for those waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flight {
    Running,
    Done,
    Failed(String),
}

/// Held by the one fetch of a manifest.
type FlightLock = Arc<tokio::sync::Mutex<()>>;

/// The local store and the upstreams behind its mirrored repositories.
pub struct PullThrough {
    local: Arc<dyn Content>,
    mirror: Arc<Mirror>,
    /// When each (repository, tag) was last confirmed with its upstream.
    fresh: Mutex<HashMap<(String, String), Instant>>,
    /// One manifest fetch at a time per (repository, reference): the others wait and
    /// then find it here.
    manifest_flights: Mutex<HashMap<(String, String), FlightLock>>,
    /// Blob downloads under way.
    blob_flights: Arc<Mutex<HashMap<Digest, watch::Receiver<Flight>>>>,
}

/// Shows the cache's figures in `/metrics`.
pub fn enable_metrics() {
    metrics::PROXY_ON.store(true, Ordering::Relaxed);
}

impl PullThrough {
    pub fn new(local: Arc<dyn Content>, mirror: Arc<Mirror>) -> Self {
        Self {
            local,
            mirror,
            fresh: Mutex::new(HashMap::new()),
            manifest_flights: Mutex::new(HashMap::new()),
            blob_flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn upstream_error(e: UpstreamError, what: &str) -> Error {
        Error::Upstream(format!("{e}; {what} is not cached here"))
    }

    /// The lock that one fetch of `(repo, reference)` holds.
    fn manifest_flight(&self, repo: &RepositoryName, r: &str) -> FlightLock {
        let mut m = lock(&self.manifest_flights);
        // Locks nobody holds or waits for are dropped as new ones are made.
        if m.len() > 1024 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry((repo.as_str().to_owned(), r.to_owned()))
            .or_default()
            .clone()
    }

    fn is_fresh(&self, remote: &Remote, repo: &RepositoryName, tag: &Tag) -> bool {
        lock(&self.fresh)
            .get(&(repo.as_str().to_owned(), tag.as_str().to_owned()))
            .is_some_and(|at| at.elapsed() < remote.tag_ttl)
    }

    fn mark_fresh(&self, repo: &RepositoryName, tag: &Tag) {
        lock(&self.fresh).insert(
            (repo.as_str().to_owned(), tag.as_str().to_owned()),
            Instant::now(),
        );
    }

    /// A manifest of a mirrored repository.
    async fn mirrored_manifest(
        &self,
        remote: &Remote,
        rname: &str,
        repo: &RepositoryName,
        r: &Reference,
    ) -> Result<Option<(Digest, Bytes)>, Error> {
        match r {
            Reference::Digest(d) => {
                if let Some(hit) = self.local.manifest_fetch(repo, r).await? {
                    return Ok(Some(hit));
                }
                let text = d.to_string();
                let flight = self.manifest_flight(repo, &text);
                let _one = flight.lock().await;
                if let Some(hit) = self.local.manifest_fetch(repo, r).await? {
                    metrics::PROXY_COALESCED.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(hit));
                }
                let what = format!("{}@{d}", repo.as_str());
                let Some((got, bytes)) = self
                    .download_manifest(remote, rname, &text, Some(d))
                    .await
                    .map_err(|e| Self::upstream_error(e, &what))?
                else {
                    return Ok(None);
                };
                self.keep_manifest(repo, &got, bytes.clone(), None).await?;
                Ok(Some((got, bytes)))
            }
            Reference::Tag(t) => {
                if self.is_fresh(remote, repo, t) {
                    if let Some(hit) = self.local.manifest_fetch(repo, r).await? {
                        return Ok(Some(hit));
                    }
                }
                let flight = self.manifest_flight(repo, t.as_str());
                let _one = flight.lock().await;
                let local = self.local.manifest_fetch(repo, r).await?;
                if self.is_fresh(remote, repo, t) {
                    if let Some(hit) = local {
                        metrics::PROXY_COALESCED.fetch_add(1, Ordering::Relaxed);
                        return Ok(Some(hit));
                    }
                }
                match self
                    .refresh_tag(remote, rname, repo, t, local.as_ref())
                    .await
                {
                    Ok(Some(found)) => {
                        self.mark_fresh(repo, t);
                        Ok(Some(found))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => match local {
                        Some(hit) => {
                            metrics::PROXY_STALE.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                repository = repo.as_str(),
                                tag = t.as_str(),
                                digest = %hit.0,
                                error = %e,
                                "serving the cached tag: its upstream cannot confirm it now"
                            );
                            Ok(Some(hit))
                        }
                        None => Err(Self::upstream_error(
                            e,
                            &format!("{}:{}", repo.as_str(), t.as_str()),
                        )),
                    },
                }
            }
        }
    }

    /// Asks the upstream what `tag` names now; fetches and keeps the manifest if it is
    /// not the local copy.
    async fn refresh_tag(
        &self,
        remote: &Remote,
        rname: &str,
        repo: &RepositoryName,
        tag: &Tag,
        local: Option<&(Digest, Bytes)>,
    ) -> Result<Option<(Digest, Bytes)>, UpstreamError> {
        if let Some((have, bytes)) = local {
            // A HEAD costs the upstream no download (and Docker Hub no rate limit).
            let Some(head) = remote.manifest(rname, tag.as_str(), true).await? else {
                return Ok(None);
            };
            let said = header_digest(head.headers());
            if said.as_ref() == Some(have) {
                return Ok(Some((have.clone(), bytes.clone())));
            }
        }
        let Some((d, bytes)) = self
            .download_manifest(remote, rname, tag.as_str(), None)
            .await?
        else {
            return Ok(None);
        };
        self.keep_manifest(repo, &d, bytes.clone(), Some(tag))
            .await
            .map_err(|e| UpstreamError(format!("storing what {} sent: {e}", remote.describe())))?;
        Ok(Some((d, bytes)))
    }

    /// GETs a manifest and checks it: against `want` (a digest reference) and against the
    /// upstream's `Docker-Content-Digest`.
    async fn download_manifest(
        &self,
        remote: &Remote,
        rname: &str,
        reference: &str,
        want: Option<&Digest>,
    ) -> Result<Option<(Digest, Bytes)>, UpstreamError> {
        let Some(resp) = remote.manifest(rname, reference, false).await? else {
            return Ok(None);
        };
        let said = header_digest(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| UpstreamError(format!("{}: {e}", remote.describe())))?;
        metrics::PROXY_MANIFEST_FETCHES.fetch_add(1, Ordering::Relaxed);
        let alg = want
            .or(said.as_ref())
            .map_or(Algorithm::Sha256, |d| d.algorithm());
        let d = Digest::of(alg, &bytes);
        let refuse = |why: String| {
            metrics::PROXY_REFUSED.fetch_add(1, Ordering::Relaxed);
            UpstreamError(format!(
                "{}: the manifest {rname}:{reference} it sent {why}; nothing was kept",
                remote.describe()
            ))
        };
        if let Some(w) = want {
            if w != &d {
                return Err(refuse(format!("hashes to {d}, not {w}")));
            }
        }
        if let Some(s) = &said {
            if s.algorithm() == d.algorithm() && s != &d {
                return Err(refuse(format!(
                    "hashes to {d}, not to its Docker-Content-Digest {s}"
                )));
            }
        }
        if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
            return Err(refuse("is not JSON".into()));
        }
        Ok(Some((d, bytes)))
    }

    /// Stores a checked manifest in `repo` (and its referrer record), and points `tag` at
    /// it; the collector waits meanwhile.
    async fn keep_manifest(
        &self,
        repo: &RepositoryName,
        d: &Digest,
        bytes: Bytes,
        tag: Option<&Tag>,
    ) -> Result<(), Error> {
        let subject = subject_of(&bytes);
        let _linking = self.local.link_barrier().await?;
        self.local.blob_put_small(d, bytes).await?;
        self.local.manifest_link(repo, d).await?;
        if let Some(s) = subject {
            self.local.referrer_add(repo, &s, d).await?;
        }
        if let Some(t) = tag {
            self.local.tag_set(repo, t, d).await?;
        }
        Ok(())
    }

    /// A blob of a mirrored repository that is not linked here.
    async fn mirrored_blob(
        &self,
        remote: &Arc<Remote>,
        rname: &str,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<Option<(u64, BlobSource)>, Error> {
        // Another mirrored repository has it (a shared base layer): a link, no download.
        if self.local.blob_size_global(d).await?.is_some() {
            self.local.blob_link(repo, d).await?;
            if let Some(hit) = self.local.blob_open(repo, d).await? {
                return Ok(Some(hit));
            }
        }
        let leader = {
            let mut m = lock(&self.blob_flights);
            match m.get(d) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(Flight::Running);
                    m.insert(d.clone(), rx);
                    Ok(FlightGuard {
                        flights: self.blob_flights.clone(),
                        digest: d.clone(),
                        tx,
                    })
                }
            }
        };
        let guard = match leader {
            Ok(g) => g,
            Err(mut rx) => {
                metrics::PROXY_COALESCED.fetch_add(1, Ordering::Relaxed);
                let state = rx
                    .wait_for(|s| *s != Flight::Running)
                    .await
                    .map(|s| s.clone())
                    .unwrap_or(Flight::Failed("the download was abandoned".into()));
                return match state {
                    Flight::Failed(why) => Err(Error::Upstream(why)),
                    _ => self.local.blob_open(repo, d).await,
                };
            }
        };
        let what = format!("{}@{d}", repo.as_str());
        let resp = match remote.blob(rname, d, false).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                guard.fail(e.0.clone());
                return Err(Self::upstream_error(e, &what));
            }
        };
        let Some(size) = content_length(resp.headers()) else {
            let why = format!(
                "{}: the blob {d} came without a Content-Length",
                remote.describe()
            );
            guard.fail(why.clone());
            return Err(Error::Upstream(why));
        };
        let id = self.local.upload_start(repo).await?;
        let sink = match self.local.upload_writer(repo, &id, 0).await {
            Ok(s) => s,
            Err(e) => {
                let _ = self.local.upload_cancel(repo, &id).await;
                guard.fail(e.to_string());
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
        let download = Download {
            local: self.local.clone(),
            remote: remote.clone(),
            repo: repo.clone(),
            digest: d.clone(),
            id,
            size,
        };
        tokio::spawn(download.run(resp, sink, tx, guard));
        Ok(Some((
            size,
            BlobSource::Stream(Box::new(move |offset, len| relay(rx, offset, len))),
        )))
    }
}

/// One blob download: upstream → upload here (verified) and → the first client.
struct Download {
    local: Arc<dyn Content>,
    remote: Arc<Remote>,
    repo: RepositoryName,
    digest: Digest,
    id: UploadId,
    size: u64,
}

impl Download {
    async fn run(
        self,
        mut resp: crate::upstream::Response,
        mut sink: Box<dyn UploadSink>,
        tx: mpsc::Sender<std::io::Result<Bytes>>,
        guard: FlightGuard,
    ) {
        let mut client = Some(tx);
        // The last piece waits for the digest check: a client never gets a whole body that
        // was not verified.
        let mut held: Option<Bytes> = None;
        let mut got = 0u64;
        let d = &self.digest;
        let mut failed: Option<String> = None;
        loop {
            match resp.chunk().await {
                Ok(Some(piece)) => {
                    got += piece.len() as u64;
                    if got > self.size {
                        failed = Some(format!("sent more of {d} than its Content-Length"));
                        break;
                    }
                    if let Err(e) = sink.write(piece.clone()).await {
                        failed = Some(format!("storing {d}: {e}"));
                        break;
                    }
                    if let Some(prev) = held.replace(piece) {
                        if let Some(c) = &client {
                            if c.send(Ok(prev)).await.is_err() {
                                // The client went away; the download goes on for the cache.
                                client = None;
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(format!("the download of {d} broke off: {e}"));
                    break;
                }
            }
        }
        if failed.is_none() && got != self.size {
            failed = Some(format!(
                "sent {got} bytes of {d}, not the {} its Content-Length said",
                self.size
            ));
        }
        let outcome = match failed {
            Some(why) => {
                let _ = sink.abort().await;
                Err(why)
            }
            None => match sink.finish().await {
                Err(e) => Err(format!("storing {d}: {e}")),
                Ok(_) => match self.local.upload_commit(&self.repo, &self.id, d).await {
                    Ok(_) => Ok(()),
                    Err(Error::DigestMismatch { actual, .. }) => {
                        metrics::PROXY_REFUSED.fetch_add(1, Ordering::Relaxed);
                        Err(format!("sent bytes for {d} that hash to {actual}"))
                    }
                    Err(e) => Err(format!("storing {d}: {e}")),
                },
            },
        };
        match outcome {
            Ok(()) => {
                metrics::PROXY_BLOB_FETCHES.fetch_add(1, Ordering::Relaxed);
                metrics::PROXY_BLOB_BYTES.fetch_add(got, Ordering::Relaxed);
                guard.done();
                if let (Some(c), Some(last)) = (&client, held) {
                    let _ = c.send(Ok(last)).await;
                }
            }
            Err(why) => {
                let why = format!("{}: {why}; nothing was kept", self.remote.describe());
                tracing::warn!(repository = self.repo.as_str(), error = %why, "a blob from upstream was refused");
                let _ = self.local.upload_cancel(&self.repo, &self.id).await;
                guard.fail(why.clone());
                if let Some(c) = &client {
                    let _ = c.send(Err(std::io::Error::other(why))).await;
                }
            }
        }
    }
}

/// Removes a download from the flights when it ends, however it ends.
struct FlightGuard {
    flights: Arc<Mutex<HashMap<Digest, watch::Receiver<Flight>>>>,
    digest: Digest,
    tx: watch::Sender<Flight>,
}

impl FlightGuard {
    fn done(self) {
        self.tx.send_replace(Flight::Done);
    }

    fn fail(self, why: String) {
        self.tx.send_replace(Flight::Failed(why));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if *self.tx.borrow() == Flight::Running {
            self.tx
                .send_replace(Flight::Failed("the download was abandoned".into()));
        }
        lock(&self.flights).remove(&self.digest);
    }
}

/// The bytes `offset..offset + len` of what a download relays.
fn relay(rx: mpsc::Receiver<std::io::Result<Bytes>>, offset: u64, len: u64) -> BodyStream {
    Box::pin(futures_util::stream::unfold(
        (rx, offset, len),
        |(mut rx, mut skip, mut left)| async move {
            loop {
                if left == 0 {
                    return None;
                }
                let piece = match rx.recv().await {
                    None => {
                        return Some((
                            Err(std::io::Error::other("the upstream download ended early")),
                            (rx, skip, 0),
                        ))
                    }
                    Some(Err(e)) => return Some((Err(e), (rx, skip, 0))),
                    Some(Ok(p)) => p,
                };
                let n = piece.len() as u64;
                if skip >= n {
                    skip -= n;
                    continue;
                }
                let start = skip as usize;
                let take = (n - skip).min(left) as usize;
                skip = 0;
                left -= take as u64;
                return Some((Ok(piece.slice(start..start + take)), (rx, skip, left)));
            }
        },
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn header_digest(h: &http::HeaderMap) -> Option<Digest> {
    h.get("docker-content-digest")?.to_str().ok()?.parse().ok()
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The `subject` a manifest names (an OCI referrer).
fn subject_of(bytes: &[u8]) -> Option<Digest> {
    #[derive(serde::Deserialize)]
    struct Subject {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct WithSubject {
        subject: Option<Subject>,
    }
    serde_json::from_slice::<WithSubject>(bytes)
        .ok()?
        .subject?
        .digest
        .parse()
        .ok()
}

#[async_trait::async_trait]
impl Content for PullThrough {
    fn read_only(&self) -> bool {
        self.local.read_only()
    }
    fn set_read_only(&self, on: bool) {
        self.local.set_read_only(on)
    }
    async fn writable(&self) -> Result<(), Error> {
        self.local.writable().await
    }
    async fn blob_bytes(&self) -> Result<u64, Error> {
        self.local.blob_bytes().await
    }
    async fn last_gc(&self) -> Result<Option<(std::time::SystemTime, String)>, Error> {
        self.local.last_gc().await
    }

    async fn blob_size(&self, repo: &RepositoryName, d: &Digest) -> Result<Option<u64>, Error> {
        if let Some(n) = self.local.blob_size(repo, d).await? {
            return Ok(Some(n));
        }
        let Some((remote, rname)) = self.mirror.route(repo) else {
            return Ok(None);
        };
        if let Some(n) = self.local.blob_size_global(d).await? {
            self.local.blob_link(repo, d).await?;
            return Ok(Some(n));
        }
        // A HEAD: the size, without fetching the bytes.
        match remote.blob(&rname, d, true).await {
            Ok(Some(resp)) => Ok(content_length(resp.headers())),
            Ok(None) => Ok(None),
            Err(e) => Err(Self::upstream_error(e, &format!("{}@{d}", repo.as_str()))),
        }
    }
    async fn blob_open(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<Option<(u64, BlobSource)>, Error> {
        if let Some(hit) = self.local.blob_open(repo, d).await? {
            return Ok(Some(hit));
        }
        let Some((remote, rname)) = self.mirror.route(repo) else {
            return Ok(None);
        };
        let remote = remote.clone();
        self.mirrored_blob(&remote, &rname, repo, d).await
    }
    async fn blob_size_global(&self, d: &Digest) -> Result<Option<u64>, Error> {
        self.local.blob_size_global(d).await
    }
    async fn blob_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error> {
        self.local.blob_link(repo, d).await
    }
    async fn blob_unlink(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        self.local.blob_unlink(repo, d).await
    }
    async fn blob_put_small(&self, d: &Digest, bytes: Bytes) -> Result<(), Error> {
        self.local.blob_put_small(d, bytes).await
    }
    async fn blob_read_small(&self, d: &Digest) -> Result<Option<Bytes>, Error> {
        self.local.blob_read_small(d).await
    }

    async fn upload_start(&self, repo: &RepositoryName) -> Result<UploadId, Error> {
        self.local.upload_start(repo).await
    }
    async fn upload_size(&self, repo: &RepositoryName, id: &UploadId) -> Result<u64, Error> {
        self.local.upload_size(repo, id).await
    }
    async fn upload_writer(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: u64,
    ) -> Result<Box<dyn UploadSink>, Error> {
        self.local.upload_writer(repo, id, offset).await
    }
    async fn upload_commit(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<u64, Error> {
        self.local.upload_commit(repo, id, expected).await
    }
    async fn upload_cancel(&self, repo: &RepositoryName, id: &UploadId) -> Result<bool, Error> {
        self.local.upload_cancel(repo, id).await
    }

    async fn manifest_fetch(
        &self,
        repo: &RepositoryName,
        r: &Reference,
    ) -> Result<Option<(Digest, Bytes)>, Error> {
        match self.mirror.route(repo) {
            Some((remote, rname)) => {
                let remote = remote.clone();
                self.mirrored_manifest(&remote, &rname, repo, r).await
            }
            None => self.local.manifest_fetch(repo, r).await,
        }
    }
    async fn manifest_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error> {
        self.local.manifest_link(repo, d).await
    }
    async fn manifest_use(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        self.local.manifest_use(repo, d).await
    }
    async fn manifest_delete(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        self.local.manifest_delete(repo, d).await
    }
    async fn link_barrier(&self) -> Result<LinkBarrier, Error> {
        self.local.link_barrier().await
    }

    async fn tag_set(&self, repo: &RepositoryName, tag: &Tag, d: &Digest) -> Result<(), Error> {
        self.local.tag_set(repo, tag, d).await
    }
    async fn tag_delete(&self, repo: &RepositoryName, tag: &Tag) -> Result<bool, Error> {
        self.local.tag_delete(repo, tag).await
    }
    async fn tags(&self, repo: &RepositoryName) -> Result<Option<Vec<Tag>>, Error> {
        let Some((remote, rname)) = self.mirror.route(repo) else {
            return self.local.tags(repo).await;
        };
        // The upstream's list when it answers; what is cached when it does not.
        match remote.tags(&rname).await {
            Ok(Some(list)) => {
                let mut tags: Vec<Tag> = list.iter().filter_map(|t| t.parse().ok()).collect();
                tags.sort();
                tags.dedup();
                Ok(Some(tags))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(repository = repo.as_str(), error = %e, "listing the cached tags: the upstream cannot list them now");
                self.local.tags(repo).await
            }
        }
    }

    async fn repositories(&self) -> Result<Vec<RepositoryName>, Error> {
        self.local.repositories().await
    }
    async fn repository_delete(&self, repo: &RepositoryName) -> Result<bool, Error> {
        self.local.repository_delete(repo).await
    }

    async fn referrer_add(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error> {
        self.local.referrer_add(repo, subject, referrer).await
    }
    async fn referrer_remove(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error> {
        self.local.referrer_remove(repo, subject, referrer).await
    }
    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Digest>, Error> {
        if let Some((remote, rname)) = self.mirror.route(repo) {
            let remote = remote.clone();
            // The upstream's referrers are fetched (each a manifest by digest, checked)
            // and kept; offline, what was kept is listed.
            match remote.referrers(&rname, subject).await {
                Ok(Some(index)) => {
                    for d in index_digests(&index) {
                        let r = Reference::Digest(d);
                        if let Err(e) = self.mirrored_manifest(&remote, &rname, repo, &r).await {
                            tracing::warn!(repository = repo.as_str(), error = %e, "a referrer from upstream was not kept");
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(repository = repo.as_str(), error = %e, "listing the cached referrers: the upstream cannot list them now");
                }
            }
        }
        self.local.referrers(repo, subject).await
    }
}

/// The manifest digests an image index lists.
fn index_digests(bytes: &[u8]) -> Vec<Digest> {
    #[derive(serde::Deserialize)]
    struct Desc {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Desc>,
    }
    serde_json::from_slice::<Index>(bytes)
        .map(|i| {
            i.manifests
                .iter()
                .filter_map(|m| m.digest.parse().ok())
                .take(1000)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relay_cuts_the_range_out_of_the_pieces() {
        let (tx, rx) = mpsc::channel(8);
        for p in ["abc", "defg", "hi"] {
            tx.send(Ok(Bytes::from(p))).await.expect("send");
        }
        drop(tx);
        let mut s = relay(rx, 2, 5);
        let mut got = Vec::new();
        while let Some(p) = crate::body::next_chunk(&mut s).await {
            got.extend_from_slice(&p.expect("piece"));
        }
        assert_eq!(got, b"cdefg");
    }

    #[tokio::test]
    async fn relay_ends_in_an_error_when_the_download_stops_short() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(Ok(Bytes::from("ab"))).await.expect("send");
        drop(tx);
        let mut s = relay(rx, 0, 5);
        assert!(crate::body::next_chunk(&mut s).await.expect("one").is_ok());
        assert!(crate::body::next_chunk(&mut s).await.expect("two").is_err());
    }

    #[test]
    fn subjects_and_index_entries_are_read() {
        let d = Digest::of(Algorithm::Sha256, b"x");
        let m = format!(r#"{{"subject":{{"digest":"{d}"}},"manifests":[{{"digest":"{d}"}}]}}"#);
        assert_eq!(subject_of(m.as_bytes()), Some(d.clone()));
        assert_eq!(index_digests(m.as_bytes()), vec![d]);
        assert_eq!(subject_of(b"{}"), None);
    }
}
