//! Locks over plain S3 reads and writes, for berth replicas sharing a bucket.
//!
//! S3-compatible stores do not all honour conditional writes (Garage 2.5's PutObject
//! ignores `If-None-Match`), so no lock here rests on them. Each contender **announces,
//! then scans**: it writes a lease object of its own under the lock's prefix, then lists
//! the prefix. With read-after-write and list-after-write for completed writes (AWS S3;
//! Garage in its default `consistent` mode), two contenders cannot both miss each other:
//! if A's scan missed B, B's announce completed after A's scan began, so after A's
//! announce, and B's scan sees A. Whoever sees another live lease withdraws (both may,
//! and then both try again after a random pause).
//!
//! A lease is live while its object's `LastModified` is within [`LEASE`] of now; the
//! holder renews it every [`RENEW`] from a task the guard owns, and deletes it when the
//! guard is dropped. A holder that dies leaves a lease that expires by itself. This
//! assumes the clocks of the replicas and of the store agree to well within [`LEASE`]
//! (NTP), as the filesystem's collector assumes of the machines sharing a store.

use super::super::Error;
use super::wire::Wire;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a lease is honoured without renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// How often a held lease is renewed.
const RENEW: Duration = Duration::from_secs(10);
/// The longest wait for a lock before the request gives up (503).
const WAIT_MAX: Duration = Duration::from_secs(120);

/// A held lease; dropping it lets go.
pub struct Lease {
    wire: Arc<Wire>,
    key: String,
    renew: Option<tokio::task::JoinHandle<()>>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(t) = self.renew.take() {
            t.abort();
        }
        let key = std::mem::take(&mut self.key);
        if key.is_empty() {
            return;
        }
        tracing::debug!(%key, "lease dropped");
        // Deleting is best effort: an undeleted lease expires by itself. The guard may be
        // dropped while its own write (the announce, a renewal) is still on the wire, which
        // the store could apply after a first delete; a second delete a moment later takes
        // that one too, so a cancelled waiter does not block the lock for a whole LEASE.
        let wire = self.wire.clone();
        self.handle.spawn(async move {
            let _ = wire.delete(&key).await;
            for later in [1, 4] {
                tokio::time::sleep(Duration::from_secs(later)).await;
                let _ = wire.delete(&key).await;
            }
        });
    }
}

impl Lease {
    /// Lets go now (a withdrawal: the next scan must not see it). Cancel-safe: if the
    /// caller is dropped mid-delete, the guard's drop deletes again.
    pub(crate) async fn release(mut self) {
        if let Some(t) = self.renew.take() {
            t.abort();
        }
        let _ = self.wire.delete(&self.key).await;
        tracing::debug!(key = %self.key, "lease released");
        self.key.clear();
    }
}

fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn live(modified: Option<SystemTime>) -> bool {
    modified.is_some_and(|m| m + LEASE >= SystemTime::now())
}

/// Writes a lease at `key` and starts renewing it. The guard exists before the write, so
/// a caller cancelled mid-write (a client that hung up while waiting for the lock) still
/// deletes what may have been written rather than leave it to block others for a LEASE.
async fn announce(wire: &Arc<Wire>, key: String) -> Result<Lease, Error> {
    let handle = tokio::runtime::Handle::current();
    let mut lease = Lease {
        wire: wire.clone(),
        key,
        renew: None,
        handle: handle.clone(),
    };
    wire.put(&lease.key, Bytes::from_static(b"lease")).await?;
    tracing::debug!(key = %lease.key, "lease announced");
    let (w, k) = (wire.clone(), lease.key.clone());
    lease.renew = Some(handle.spawn(async move {
        loop {
            tokio::time::sleep(RENEW).await;
            let _ = w.put(&k, Bytes::from_static(b"lease")).await;
        }
    }));
    Ok(lease)
}

/// Live leases under `prefix` other than `mine`.
async fn others(wire: &Wire, prefix: &str, mine: &str) -> Result<usize, Error> {
    Ok(live_others(wire, prefix, mine).await?.len())
}

/// The live leases under `prefix` other than `mine`, each as "key (age)": what a waiter
/// that gives up names.
async fn live_others(wire: &Wire, prefix: &str, mine: &str) -> Result<Vec<String>, Error> {
    let (objects, _) = wire.list(prefix, None, None).await?;
    let now = SystemTime::now();
    Ok(objects
        .iter()
        .filter(|o| o.key != mine && live(o.last_modified))
        .map(|o| {
            let age = o
                .last_modified
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            format!("{} ({} ms old)", o.key, age.as_millis())
        })
        .collect())
}

/// The pause before attempt `n` after contenders saw each other: random, and growing, so
/// two replicas whose announce-and-scan takes longer than the first pauses (a loaded
/// store) do not keep withdrawing in step.
fn pause(n: u32) -> Duration {
    crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_millis(1600))
        .jitter(0.1..1.0)
        .wait(n.saturating_add(1))
}

/// An exclusive lease under `base` if no one else holds one (or waits for shared holders).
pub(crate) async fn try_exclusive(wire: &Arc<Wire>, base: &str) -> Result<Option<Lease>, Error> {
    let prefix = format!("{base}/x-");
    let lease = announce(wire, format!("{prefix}{}", token())).await?;
    if others(wire, &prefix, &lease.key).await? > 0 {
        lease.release().await;
        return Ok(None);
    }
    Ok(Some(lease))
}

/// An exclusive lock: first the only exclusive lease, then no live shared one.
pub(crate) async fn exclusive(wire: &Arc<Wire>, base: &str) -> Result<Lease, Error> {
    let started = std::time::Instant::now();
    let mut attempt = 0;
    let lease = loop {
        if let Some(l) = try_exclusive(wire, base).await? {
            break l;
        }
        if let Err(e) = give_up(started, base) {
            return Err(gave_up(wire, base, e).await);
        }
        tokio::time::sleep(pause(attempt)).await;
        attempt += 1;
    };
    let shared = format!("{base}/s-");
    while others(wire, &shared, "").await? > 0 {
        if let Err(e) = give_up(started, base) {
            return Err(gave_up(wire, base, e).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(lease)
}

/// A shared lock: a shared lease while no exclusive one is live (writers first).
pub(crate) async fn shared(wire: &Arc<Wire>, base: &str) -> Result<Lease, Error> {
    let started = std::time::Instant::now();
    let excl = format!("{base}/x-");
    let mut attempt = 0;
    loop {
        let lease = announce(wire, format!("{base}/s-{}", token())).await?;
        if others(wire, &excl, "").await? == 0 {
            return Ok(lease);
        }
        lease.release().await;
        if let Err(e) = give_up(started, base) {
            return Err(gave_up(wire, base, e).await);
        }
        tokio::time::sleep(pause(attempt)).await;
        attempt += 1;
    }
}

fn give_up(started: std::time::Instant, base: &str) -> Result<(), Error> {
    if started.elapsed() > WAIT_MAX {
        return Err(Error::Unavailable(format!(
            "object storage: lock {base} still held by another replica after {WAIT_MAX:?}"
        )));
    }
    Ok(())
}

/// The error of a waiter that gave up, naming the leases it last saw (diagnostics only).
async fn gave_up(wire: &Wire, base: &str, e: Error) -> Error {
    let mut seen = Vec::new();
    for kind in ["x-", "s-"] {
        if let Ok(l) = live_others(wire, &format!("{base}/{kind}"), "").await {
            seen.extend(l);
        }
    }
    match e {
        Error::Unavailable(m) => {
            Error::Unavailable(format!("{m}; live leases: [{}]", seen.join(", ")))
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::pause;
    use std::time::Duration;

    #[test]
    fn contenders_pause_longer_the_more_they_collide() {
        let ms = Duration::from_millis;
        for n in 0..50 {
            let p = pause(n);
            assert!(p >= ms(20), "{n}: {p:?}");
            assert!(p <= ms(1600), "{n}: {p:?}");
        }
        assert!((0..50).all(|_| pause(0) <= ms(200)));
        // From the fourth collision on, some pauses exceed the first ones' ceiling.
        assert!((0..200).any(|_| pause(3) > ms(400)));
    }
}
