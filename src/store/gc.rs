//! Garbage collection on a live store: removes the manifests, blobs, `_layers` links and
//! upload sessions nothing needs any more, while pushes and pulls go on, in this process
//! and in other berth processes on the same store (`berth gc`, a second `berth serve`).
//!
//! **Mark.** The roots are what every tag points at now (a tag's history does not keep
//! anything, as in registry:2), every manifest revision when `delete_untagged` is off, and
//! otherwise every revision linked or used within the grace period. From the roots the
//! mark follows an index's child manifests and the referrers of a kept subject (manifests
//! whose `subject` names it: what `_referrers` records), and keeps the config, layers and
//! own bytes of every kept manifest.
//!
//! **Sweep.** With `delete_untagged`, revisions the mark did not reach are unlinked (with
//! their tag-history and referrer entries). Then every blob that no kept manifest
//! references and nobody used within the grace period is deleted, with every `_layers`
//! link to it; upload sessions idle for `uploads.purge_after` are removed; a repository
//! left with no file at all loses its directories, so `_catalog` (berth's and registry:2's)
//! no longer lists it. `dry_run` computes the same report and changes nothing.
//!
//! **Why a push in flight never loses a blob.** "Used" is a timestamp on disk (the mtime of
//! a blob's `data`, of a revision's `link`), so it holds across processes:
//!
//! 1. Whatever tells a client that a blob is there marks it first and checks it by path
//!    after: upload commit (also when the bytes were already there), mount, blob HEAD and
//!    GET, and the reference checks of a manifest push. A manifest push also marks its own
//!    bytes and revision and the child manifests an index names.
//! 2. A blob is deleted only like this: its directory is renamed into `.berth-trash`
//!    (atomic), then the mark is read again on the moved file. Used within the grace
//!    period: it is renamed back. Otherwise it is deleted. A request that marked the blob
//!    before the rename is seen by that second read (same file); one that came after the
//!    rename found no file and answered "unknown" (404, or `MANIFEST_BLOB_UNKNOWN` for a
//!    push). There is no third order: a push either succeeds with its blobs kept or fails
//!    cleanly.
//! 3. The mark itself could miss a manifest push that checked its blobs before the
//!    collection started but links its revision after the mark read its repository. The
//!    link lock (`.berth-link.lock`, `flock`) closes that gap: manifest pushes hold it
//!    shared from their checks to their last link; the collector takes it exclusively once
//!    at its start, which waits for the pushes in flight, and reads the clock then (the
//!    start). Every push before the start is linked before the mark reads anything; every
//!    push after it marks what it uses at or after the start, and the cutoff (start minus
//!    the grace period) keeps that. Only manifest pushes take the lock, briefly; pulls and
//!    blob uploads never wait for it.
//! 4. Revisions are unlinked under the exclusive link lock, after reading each one's mark
//!    again: a push that named it since (a re-push, a tag, an index) is seen, and it stays
//!    with everything it reaches.
//!
//! One second is added to the grace period because some filesystems keep whole-second
//! timestamps. The argument needs the wall clock not to jump back by more than the grace
//! period, and on shared storage clocks that agree. One collector runs at a time
//! (`.berth-gc.lock`, `try_lock`); one that died mid-way leaves blobs in the trash, and the
//! next one (or `berth serve` at start) puts them back before anything else.

use super::driver::{Driver, Locked, Renamed, Usage};
use super::{layout, Error, Store};
use crate::oci::{Digest, RepositoryName, Tag, UploadId};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Added to the grace period: on filesystems with whole-second timestamps a mark made at
/// `t` reads as up to a second earlier. Also how fresh a blob's mark may be for a pull to
/// skip renewing it.
pub const TIMESTAMP_SLACK: Duration = Duration::from_secs(1);

/// Larger than any manifest (berth's limit is 4 MiB by default): not read as one.
pub(super) const MANIFEST_READ_MAX: u64 = 64 << 20;

/// The first scheduled run comes this long after start (or one interval, if shorter).
pub(super) const FIRST_RUN_DELAY: Duration = Duration::from_secs(60);

/// The schedule looks at the store's last-run time at least this often.
const RECHECK: Duration = Duration::from_secs(60);

/// Directories that make a directory under `repositories/` a repository.
pub(super) const REPOSITORY_MARKERS: &[&str] = &["_layers", "_manifests", "_uploads"];

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nothing used more recently than this is removed.
    pub grace_period: Duration,
    /// Unlink revisions no tag reaches.
    pub delete_untagged: bool,
    /// Upload sessions idle this long are removed; zero keeps them.
    pub purge_uploads_after: Duration,
    /// Compute the report, change nothing.
    pub dry_run: bool,
}

impl Options {
    /// `[gc]` and `[uploads]` of the configuration, for a real run.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            grace_period: cfg.gc.grace_period.0,
            delete_untagged: cfg.gc.delete_untagged,
            purge_uploads_after: cfg.uploads.purge_after.0,
            dry_run: false,
        }
    }
}

/// What a run removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    /// Manifest revisions unlinked from their repository.
    pub manifests: Vec<(RepositoryName, Digest)>,
    /// Blobs deleted, with the size of their data.
    pub blobs: Vec<(Digest, u64)>,
    /// `_layers` links removed with those blobs.
    pub layer_links: u64,
    /// Upload sessions purged, with the bytes their directory held.
    pub uploads: Vec<(RepositoryName, UploadId, u64)>,
    /// Repositories left with nothing, gone from the catalog.
    pub repositories: Vec<RepositoryName>,
    /// Every byte of every file removed (links and upload files included).
    pub bytes_freed: u64,
    /// What the run found odd; when `incomplete`, what kept it from sweeping.
    pub warnings: Vec<String>,
    /// A tag or manifest could not be read, so what it keeps is unknown: only upload
    /// sessions were purged.
    pub incomplete: bool,
}

impl Report {
    /// One line per removed item, the same in a dry run and a real one.
    pub fn items(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (repo, d) in &self.manifests {
            out.push(format!("manifest {repo}@{d}"));
        }
        for (d, size) in &self.blobs {
            out.push(format!("blob {d} {size}"));
        }
        for (repo, id, bytes) in &self.uploads {
            out.push(format!("upload {repo} {id} {bytes}"));
        }
        for repo in &self.repositories {
            out.push(format!("repository {repo}"));
        }
        out
    }

    /// The totals, in one line.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would free" } else { "freed" };
        format!(
            "{verb} {} bytes: {} manifests, {} blobs ({} layer links), {} uploads, {} repositories",
            self.bytes_freed,
            self.manifests.len(),
            self.blobs.len(),
            self.layer_links,
            self.uploads.len(),
            self.repositories.len()
        )
    }
}

/// Runs one collection. `Ok(None)`: another collector (in this process or another) is
/// running on the store.
pub async fn run<D: Driver>(store: &Store<D>, opts: &Options) -> Result<Option<Report>, Error> {
    let collector = match store.driver.try_lock(&layout::gc_lock(), true).await? {
        Locked::Held(lock) => lock,
        Locked::Busy => return Ok(None),
        Locked::Missing => {
            return Err(Error::Internal(
                "the collector's lock file vanished while it was opened".into(),
            ))
        }
    };
    if !opts.dry_run {
        restore_trash(store).await?;
    }
    // The barrier (point 3 of the module docs): manifest pushes in flight finish linking
    // first; every later one marks what it uses at or after `start`.
    let start = {
        let barrier = store.driver.lock_exclusive(&layout::link_lock()).await?;
        let start = SystemTime::now();
        store.driver.unlock(barrier).await;
        start
    };
    let mut c = Collector::new(store, opts, start);
    if let Err(e) = c.collect().await {
        store.driver.unlock(collector).await;
        return Err(e);
    }
    if !opts.dry_run {
        // Not left behind: made by `sudo berth gc`, it would turn the service's own
        // collector away.
        store.driver.prune_empty(&layout::trash()).await?;
        // The mark's time is when the run finished; its text what it freed (the UI shows it).
        store
            .driver
            .write_atomic(&layout::gc_last_run(), Bytes::from(c.report.summary()))
            .await?;
    }
    store.driver.unlock(collector).await;
    Ok(Some(c.report))
}

/// Puts back the blobs a collector that died mid-way left in the trash; a no-op (0) while
/// a collector runs. Returns how many came back.
pub async fn recover<D: Driver>(store: &Store<D>) -> Result<usize, Error> {
    if store.driver.list_dirs(&layout::trash()).await?.is_empty() {
        return Ok(0);
    }
    match store.driver.try_lock(&layout::gc_lock(), true).await? {
        Locked::Held(_collector) => restore_trash(store).await,
        Locked::Busy | Locked::Missing => Ok(0),
    }
}

/// When a collection (by any process) last finished on this store.
pub async fn last_run<D: Driver>(store: &Store<D>) -> Option<SystemTime> {
    marked_at(store, &layout::gc_last_run()).await
}

/// When the last collection on this store finished and what it freed (its summary line;
/// empty for a mark older berths left).
pub async fn last_report<D: Driver>(
    store: &Store<D>,
) -> Result<Option<(SystemTime, String)>, Error> {
    let key = layout::gc_last_run();
    let Some(at) = marked_at(store, &key).await else {
        return Ok(None);
    };
    let text = store.driver.read(&key).await?.unwrap_or_default();
    Ok(Some((at, String::from_utf8_lossy(&text).into_owned())))
}

/// Waits until `interval` has passed since the time of the mark `last` (what a run, by
/// any process on the store, leaves behind), and until `earliest`; `None` when that is
/// beyond any clock. The mark is looked at again every minute: another process may run
/// meanwhile.
pub(super) async fn wait_until_due<D: Driver>(
    store: &Store<D>,
    last: &Path,
    interval: Duration,
    earliest: SystemTime,
) -> Option<()> {
    loop {
        let due = match marked_at(store, last).await {
            Some(t) => t.checked_add(interval)?.max(earliest),
            None => earliest,
        };
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        if wait.is_zero() {
            return Some(());
        }
        tokio::time::sleep(wait.min(RECHECK)).await;
    }
}

/// The time of a mark object; `None` when there is none.
async fn marked_at<D: Driver>(store: &Store<D>, key: &Path) -> Option<SystemTime> {
    store
        .driver
        .stat(key)
        .await
        .ok()
        .flatten()
        .and_then(|m| m.last_used)
}

/// Runs the collector every `interval` on a thread of its own (zero: never), counting
/// from the store's last run, so that processes sharing the store do not each collect;
/// first puts back what an interrupted run left in the trash.
pub fn spawn<D: Driver>(store: Store<D>, opts: Options, interval: Duration) {
    crate::spawn_background("berth-gc", "garbage collection", move || {
        schedule(store, opts, interval)
    });
}

async fn schedule<D: Driver>(store: Store<D>, opts: Options, interval: Duration) {
    match recover(&store).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            blobs = n,
            "put back blobs an interrupted garbage collection left in its trash"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot look at the garbage collector's trash"),
    }
    if interval.is_zero() {
        return;
    }
    // Far beyond any clock (an absurd interval): no run.
    let Some(mut earliest) = SystemTime::now().checked_add(interval.min(FIRST_RUN_DELAY)) else {
        return;
    };
    loop {
        if wait_until_due(&store, &layout::gc_last_run(), interval, earliest)
            .await
            .is_none()
        {
            return;
        }
        if store.read_only() {
            tracing::info!("garbage collection skipped: storage.read_only is on");
            earliest = SystemTime::now() + RECHECK;
            continue;
        }
        match run(&store, &opts).await {
            Ok(Some(report)) => log_report(&report),
            Ok(None) => {
                // Another collector finishing moves the last-run time on; a repair by
                // `berth fsck` does not: look again soon (within the interval, and at
                // least every RECHECK) rather than a whole interval on.
                tracing::info!(
                    "garbage collection skipped: another collector (or fsck --repair) is running"
                );
                earliest = SystemTime::now() + interval.min(RECHECK);
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
        }
        match SystemTime::now().checked_add(interval) {
            Some(t) => earliest = t,
            None => return,
        }
    }
}

fn log_report(report: &Report) {
    crate::metrics::gc(
        report.blobs.len() as u64,
        report.manifests.len() as u64,
        report.uploads.len() as u64,
        report.bytes_freed,
    );
    for item in report.items() {
        tracing::debug!(%item, "garbage collected");
    }
    for w in &report.warnings {
        tracing::warn!("garbage collection: {w}");
    }
    tracing::info!(
        manifests = report.manifests.len(),
        blobs = report.blobs.len(),
        layer_links = report.layer_links,
        uploads = report.uploads.len(),
        repositories = report.repositories.len(),
        bytes = report.bytes_freed,
        "garbage collection finished"
    );
}

/// Puts every blob in the trash back (or drops it when a new copy took its place).
pub(super) async fn restore_trash<D: Driver>(store: &Store<D>) -> Result<usize, Error> {
    let mut restored = 0;
    for name in store.driver.list_dirs(&layout::trash()).await? {
        // Anything else in there is not berth's: left alone.
        let Some(d) = layout::trash_digest(&name) else {
            continue;
        };
        let trash = layout::trash_blob(&d);
        match store
            .driver
            .move_tree(&trash, &layout::blob_dir(&d), true)
            .await?
        {
            Renamed::Done => restored += 1,
            Renamed::SourceMissing => {}
            Renamed::TargetExists => {
                store.driver.remove_tree(&trash).await?;
            }
        }
    }
    store.driver.prune_empty(&layout::trash()).await?;
    Ok(restored)
}

/// One repository as the mark found it.
struct Repo {
    name: RepositoryName,
    /// Each revision and when its link was last written or used.
    revisions: BTreeMap<Digest, Option<SystemTime>>,
    tags: Vec<Tag>,
    /// Always kept: what the tags point at, and revisions whose link cannot be read.
    pinned: BTreeSet<Digest>,
    /// Blobs linked into the repository.
    layers: Vec<Digest>,
    uploads: Vec<UploadId>,
    /// The manifests the mark keeps (revisions, and what they reach).
    kept: BTreeSet<Digest>,
}

/// What one manifest references (also what `fsck` checks).
#[derive(Debug, Clone, Default)]
pub(super) struct Refs {
    /// Config, layers, artifact blobs, schema 1 layers.
    pub(super) blobs: Vec<Digest>,
    /// Those of `blobs` that live elsewhere (foreign layers: URLs, or a non-distributable
    /// media type), whose bytes a registry need not hold.
    pub(super) foreign: Vec<Digest>,
    /// An index's manifests.
    pub(super) children: Vec<Digest>,
    pub(super) subject: Option<Digest>,
}

/// A manifest as read from the blob store.
enum Manifest {
    /// No bytes (a dangling link): references nothing.
    Missing,
    /// Bytes that are not a manifest: what they reference is unknown.
    Unreadable,
    Read(Refs),
}

impl Manifest {
    fn refs(&self) -> Refs {
        match self {
            Manifest::Read(r) => r.clone(),
            Manifest::Missing | Manifest::Unreadable => Refs::default(),
        }
    }
}

struct Collector<'a, D: Driver> {
    store: &'a Store<D>,
    opts: &'a Options,
    /// Used before this: collectable.
    cutoff: SystemTime,
    manifests: HashMap<Digest, Manifest>,
    /// Files removed from each repository (to tell which ones are left empty).
    removed: BTreeMap<RepositoryName, Usage>,
    report: Report,
}

impl<'a, D: Driver> Collector<'a, D> {
    fn new(store: &'a Store<D>, opts: &'a Options, start: SystemTime) -> Self {
        Self {
            store,
            opts,
            cutoff: start.checked_sub(opts.grace_period).unwrap_or(UNIX_EPOCH),
            manifests: HashMap::new(),
            removed: BTreeMap::new(),
            report: Report {
                dry_run: opts.dry_run,
                ..Report::default()
            },
        }
    }

    async fn collect(&mut self) -> Result<(), Error> {
        let store = self.store;
        let names: Vec<RepositoryName> = store
            .driver
            .find_dirs_with(&layout::repositories(), REPOSITORY_MARKERS)
            .await?
            .into_iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let mut repos = Vec::with_capacity(names.len());
        for name in names {
            repos.push(self.scan(name).await?);
        }
        for repo in &mut repos {
            let kept = self.keep(repo, &BTreeSet::new()).await?;
            repo.kept = kept;
        }
        if self.opts.delete_untagged && !self.report.incomplete {
            self.unlink_untagged(&mut repos).await?;
        }
        if !self.report.incomplete {
            let mut marked: HashSet<Digest> = HashSet::new();
            let mut linked: HashMap<Digest, Vec<RepositoryName>> = HashMap::new();
            for repo in &repos {
                for d in &repo.kept {
                    marked.insert(d.clone());
                    marked.extend(self.refs(&repo.name, d).await?.blobs);
                }
                for d in &repo.layers {
                    linked.entry(d.clone()).or_default().push(repo.name.clone());
                }
            }
            self.sweep_blobs(&marked, &linked).await?;
        }
        self.purge_uploads(&repos).await?;
        self.prune_repositories().await
    }

    /// Reads a repository's revisions, tags, layer links and upload sessions.
    async fn scan(&mut self, name: RepositoryName) -> Result<Repo, Error> {
        let store = self.store;
        let mut repo = Repo {
            name,
            revisions: BTreeMap::new(),
            tags: Vec::new(),
            pinned: BTreeSet::new(),
            layers: Vec::new(),
            uploads: Vec::new(),
            kept: BTreeSet::new(),
        };
        let name = repo.name.clone();
        let root = layout::revisions_dir(&name);
        for alg in store.driver.list_dirs(&root).await? {
            for hex in store.driver.list_dirs(&root.join(&alg)).await? {
                let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() else {
                    continue;
                };
                let link = layout::revision_link(&name, &d);
                match store.read_link(&link).await {
                    Ok(Some(l)) if l == d => {
                        let used = store.driver.stat(&link).await?.and_then(|m| m.last_used);
                        repo.revisions.insert(d, used);
                    }
                    // Not a revision (as manifest_exists sees it): left alone.
                    Ok(_) => {}
                    Err(Error::Corrupt { path, why }) => {
                        self.report
                            .warnings
                            .push(format!("{}: {why}; manifest {d} is kept", path.display()));
                        repo.pinned.insert(d);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for tag in store.tags(&name).await?.unwrap_or_default() {
            match store
                .read_link(&layout::tag_current_link(&name, &tag))
                .await
            {
                Ok(Some(d)) => {
                    repo.pinned.insert(d);
                }
                // Deleted meanwhile.
                Ok(None) => {}
                Err(Error::Corrupt { path, why }) => {
                    self.report.incomplete = true;
                    self.report.warnings.push(format!(
                        "{}: {why}; nothing is swept until tag {name}:{tag} is repaired or deleted",
                        path.display()
                    ));
                }
                Err(e) => return Err(e),
            }
            repo.tags.push(tag);
        }
        let root = layout::layers_dir(&name);
        for alg in store.driver.list_dirs(&root).await? {
            for hex in store.driver.list_dirs(&root.join(&alg)).await? {
                if let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() {
                    repo.layers.push(d);
                }
            }
        }
        for id in store.driver.list_dirs(&layout::uploads_dir(&name)).await? {
            if let Ok(id) = id.parse::<UploadId>() {
                repo.uploads.push(id);
            }
        }
        Ok(repo)
    }

    /// The manifests of `repo` to keep: its roots (and `extra`), then, transitively, an
    /// index's children and the referrers of what is kept.
    async fn keep(
        &mut self,
        repo: &Repo,
        extra: &BTreeSet<Digest>,
    ) -> Result<BTreeSet<Digest>, Error> {
        let mut queue: Vec<Digest> = repo.pinned.iter().chain(extra).cloned().collect();
        for (d, used) in &repo.revisions {
            if !self.opts.delete_untagged || self.recent(*used) {
                queue.push(d.clone());
            }
        }
        // Without delete_untagged every revision is a root already.
        let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
        if self.opts.delete_untagged {
            for d in repo.revisions.keys() {
                if let Some(subject) = self.refs(&repo.name, d).await?.subject {
                    referrers.entry(subject).or_default().push(d.clone());
                }
            }
        }
        let mut kept = BTreeSet::new();
        while let Some(d) = queue.pop() {
            if kept.contains(&d) {
                continue;
            }
            queue.extend(self.refs(&repo.name, &d).await?.children);
            if let Some(r) = referrers.get(&d) {
                queue.extend(r.iter().cloned());
            }
            kept.insert(d);
        }
        Ok(kept)
    }

    /// Unlinks the revisions the mark did not keep (point 4 of the module docs).
    async fn unlink_untagged(&mut self, repos: &mut [Repo]) -> Result<(), Error> {
        if repos.iter().all(|r| doomed(r).is_empty()) {
            return Ok(());
        }
        let _linking = if self.opts.dry_run {
            None
        } else {
            Some(
                self.store
                    .driver
                    .lock_exclusive(&layout::link_lock())
                    .await?,
            )
        };
        for repo in repos.iter_mut() {
            let mut unlink = doomed(repo);
            if unlink.is_empty() {
                continue;
            }
            if !self.opts.dry_run {
                // Used since the mark (a push named it): it stays, with what it reaches.
                let mut used = BTreeSet::new();
                for d in &unlink {
                    let link = layout::revision_link(&repo.name, d);
                    let meta = self.store.driver.stat(&link).await?;
                    if meta.is_some_and(|m| self.recent(m.last_used)) {
                        used.insert(d.clone());
                    }
                }
                if !used.is_empty() {
                    let kept = self.keep(repo, &used).await?;
                    repo.kept = kept;
                    unlink = doomed(repo);
                }
            }
            if self.report.incomplete {
                return Ok(());
            }
            for d in unlink {
                self.unlink(repo, &d).await?;
            }
        }
        Ok(())
    }

    /// Removes one revision with its tag-history and referrer entries.
    async fn unlink(&mut self, repo: &Repo, d: &Digest) -> Result<(), Error> {
        let name = &repo.name;
        if self
            .remove(Some(name), &layout::revision_dir(name, d))
            .await?
            .is_none()
        {
            return Ok(());
        }
        self.report.manifests.push((name.clone(), d.clone()));
        for tag in &repo.tags {
            if let Some(dir) = layout::tag_index_link(name, tag, d).parent() {
                self.remove(Some(name), dir).await?;
            }
        }
        if let Some(subject) = self.refs(name, d).await?.subject {
            let link = layout::referrer_link(name, &subject, d);
            if let Some(dir) = link.parent() {
                self.remove(Some(name), dir).await?;
                if let (false, Some(up)) = (self.opts.dry_run, dir.parent()) {
                    self.store
                        .driver
                        .remove_empty_dirs_up(up, &layout::repository(name))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Deletes every blob that is neither `marked` nor recently used, with the links in
    /// `linked` to it.
    async fn sweep_blobs(
        &mut self,
        marked: &HashSet<Digest>,
        linked: &HashMap<Digest, Vec<RepositoryName>>,
    ) -> Result<(), Error> {
        let store = self.store;
        let root = layout::blobs();
        for alg in store.driver.list_dirs(&root).await? {
            let alg_dir = root.join(&alg);
            for prefix in store.driver.list_dirs(&alg_dir).await? {
                for hex in store.driver.list_dirs(&alg_dir.join(&prefix)).await? {
                    let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() else {
                        continue;
                    };
                    // A directory out of place is not one of ours to judge.
                    if !hex.starts_with(prefix.as_str()) || marked.contains(&d) {
                        continue;
                    }
                    let Some(meta) = store.driver.stat(&layout::blob_data(&d)).await? else {
                        continue;
                    };
                    if meta.is_dir || self.recent(meta.last_used) {
                        continue;
                    }
                    self.collect_blob(&d, meta.size, linked.get(&d).map(Vec::as_slice))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Deletes one blob the sweep chose (point 2 of the module docs), then its links.
    async fn collect_blob(
        &mut self,
        d: &Digest,
        size: u64,
        linked: Option<&[RepositoryName]>,
    ) -> Result<(), Error> {
        let store = self.store;
        if self.opts.dry_run {
            let held = store.driver.usage(&layout::blob_dir(d)).await?;
            self.report.bytes_freed += held.map_or(0, |u| u.bytes);
        } else {
            let trash = layout::trash_blob(d);
            match store
                .driver
                .move_tree(&layout::blob_dir(d), &trash, false)
                .await?
            {
                Renamed::Done => {}
                Renamed::SourceMissing => return Ok(()),
                Renamed::TargetExists => {
                    self.report.warnings.push(format!(
                        "blob {d} stays: an earlier copy in .berth-trash could not be cleared"
                    ));
                    return Ok(());
                }
            }
            // The second read of the mark, on the moved file.
            let used = store.driver.stat(&trash.join("data")).await?;
            if used.is_none_or(|m| self.recent(m.last_used)) {
                match store
                    .driver
                    .move_tree(&trash, &layout::blob_dir(d), true)
                    .await?
                {
                    Renamed::Done | Renamed::SourceMissing => {}
                    // The same bytes were uploaded again meanwhile: that copy stays.
                    Renamed::TargetExists => {
                        store.driver.remove_tree(&trash).await?;
                    }
                }
                return Ok(());
            }
            let freed = store.driver.remove_tree(&trash).await?;
            self.report.bytes_freed += freed.map_or(0, |u| u.bytes);
        }
        self.report.blobs.push((d.clone(), size));
        for repo in linked.unwrap_or_default() {
            let link = layout::layer_link(repo, d);
            let Some(dir) = link.parent() else {
                continue;
            };
            if self.remove(Some(repo), dir).await?.is_some() {
                self.report.layer_links += 1;
            }
            // The same bytes were committed again meanwhile; their link may have been
            // the one just removed.
            if !self.opts.dry_run && store.driver.stat(&layout::blob_data(d)).await?.is_some() {
                store.blob_link(repo, d).await?;
            }
        }
        Ok(())
    }

    /// Removes the upload sessions idle for `purge_uploads_after`: no start time
    /// (`startedat`, else the directory's mtime, as other registries leave it) and no
    /// write within it.
    async fn purge_uploads(&mut self, repos: &[Repo]) -> Result<(), Error> {
        let after = self.opts.purge_uploads_after;
        if after.is_zero() {
            return Ok(());
        }
        let store = self.store;
        let now = SystemTime::now();
        for repo in repos {
            let name = &repo.name;
            for id in &repo.uploads {
                let mut started = store
                    .driver
                    .read(&layout::upload_started_at(name, id))
                    .await?
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| crate::timestamp::parse(&s));
                if started.is_none() {
                    started = store
                        .driver
                        .stat(&layout::upload_dir(name, id))
                        .await?
                        .and_then(|m| m.last_used);
                }
                let written = store
                    .driver
                    .stat(&layout::upload_data(name, id))
                    .await?
                    .and_then(|m| m.last_used);
                let Some(last) = started.max(written) else {
                    continue;
                };
                if last.checked_add(after).is_none_or(|t| t >= now) {
                    continue;
                }
                // A request appending to it holds its lock: not abandoned after all. (A
                // dry run does not lock: that would turn such a request away.)
                let _writer = if self.opts.dry_run {
                    None
                } else {
                    match store
                        .driver
                        .try_lock(&layout::upload_data(name, id), false)
                        .await?
                    {
                        Locked::Busy => continue,
                        Locked::Held(lock) => Some(lock),
                        Locked::Missing => None,
                    }
                };
                if let Some(u) = self
                    .remove(Some(name), &layout::upload_dir(name, id))
                    .await?
                {
                    self.report
                        .uploads
                        .push((name.clone(), id.clone(), u.bytes));
                    if !self.opts.dry_run {
                        store.forget_hash(&(name.clone(), id.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the directories of every repository this run left without a file (only
    /// those it removed something from), so that the catalog no longer lists them.
    async fn prune_repositories(&mut self) -> Result<(), Error> {
        let store = self.store;
        let touched: Vec<(RepositoryName, Usage)> =
            self.removed.iter().map(|(n, u)| (n.clone(), *u)).collect();
        for (name, removed) in touched {
            let parts = [
                layout::layers_dir(&name),
                layout::manifests_dir(&name),
                layout::uploads_dir(&name),
                layout::referrers_root(&name),
            ];
            let mut files = 0;
            for p in &parts {
                files += store.driver.usage(p).await?.map_or(0, |u| u.files);
            }
            // A dry run has removed nothing: empty if everything there was counted.
            let left = if self.opts.dry_run {
                files.saturating_sub(removed.files)
            } else {
                files
            };
            if left > 0 {
                continue;
            }
            if !self.opts.dry_run {
                let mut gone = true;
                for p in &parts {
                    gone &= store.driver.prune_empty(p).await?;
                }
                if !gone {
                    continue;
                }
                store
                    .driver
                    .remove_empty_dirs_up(&layout::repository(&name), &layout::repositories())
                    .await?;
            }
            self.report.repositories.push(name);
        }
        Ok(())
    }

    /// Removes `rel` (or, in a dry run, measures it) and counts it against `repo`.
    async fn remove(
        &mut self,
        repo: Option<&RepositoryName>,
        rel: &Path,
    ) -> Result<Option<Usage>, Error> {
        let held = if self.opts.dry_run {
            self.store.driver.usage(rel).await?
        } else {
            self.store.driver.remove_tree(rel).await?
        };
        if let Some(u) = held {
            self.report.bytes_freed += u.bytes;
            if let Some(r) = repo {
                self.removed.entry(r.clone()).or_default().add(u);
            }
        }
        Ok(held)
    }

    /// What manifest `d` references (read once per run); marks the run incomplete when
    /// its bytes are not a manifest.
    async fn refs(&mut self, repo: &RepositoryName, d: &Digest) -> Result<Refs, Error> {
        if let Some(m) = self.manifests.get(d) {
            return Ok(m.refs());
        }
        let m = self.read_manifest(repo, d).await?;
        let refs = m.refs();
        self.manifests.insert(d.clone(), m);
        Ok(refs)
    }

    async fn read_manifest(
        &mut self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<Manifest, Error> {
        let store = self.store;
        let data = layout::blob_data(d);
        let Some(meta) = store.driver.stat(&data).await? else {
            return Ok(Manifest::Missing);
        };
        if meta.is_dir || meta.size > MANIFEST_READ_MAX {
            self.unreadable(repo, d, "too large to be a manifest");
            return Ok(Manifest::Unreadable);
        }
        let Some(bytes) = store.driver.read(&data).await? else {
            return Ok(Manifest::Missing);
        };
        match serde_json::from_slice::<Body>(&bytes) {
            Ok(body) => Ok(Manifest::Read(body.refs())),
            Err(e) => {
                self.unreadable(repo, d, &e.to_string());
                Ok(Manifest::Unreadable)
            }
        }
    }

    fn unreadable(&mut self, repo: &RepositoryName, d: &Digest, why: &str) {
        self.report.incomplete = true;
        self.report.warnings.push(format!(
            "{repo}: manifest {d} cannot be read ({why}); nothing is swept until it is deleted or repaired"
        ));
    }

    /// Whether something last used at `used` is within the grace period (unknown: yes).
    fn recent(&self, used: Option<SystemTime>) -> bool {
        used.is_none_or(|t| {
            t.checked_add(TIMESTAMP_SLACK)
                .is_none_or(|t| t >= self.cutoff)
        })
    }
}

/// The revisions of `repo` its mark does not keep.
fn doomed(repo: &Repo) -> Vec<Digest> {
    repo.revisions
        .keys()
        .filter(|d| !repo.kept.contains(*d))
        .cloned()
        .collect()
}

/// The parts of any manifest kind (and of Docker schema 1) the collector follows.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Body {
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    fs_layers: Option<Vec<Schema1Layer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: Option<String>,
    media_type: Option<String>,
    urls: Option<Vec<String>>,
}

impl Descriptor {
    /// As `api::manifest` decides it for a push: such a layer need not be in the registry.
    fn is_foreign(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
            || self
                .media_type
                .as_deref()
                .is_some_and(crate::oci::media_type::is_foreign_layer)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema1Layer {
    blob_sum: Option<String>,
}

impl Body {
    pub(super) fn refs(self) -> Refs {
        // A descriptor whose digest does not parse cannot name anything in the store.
        let digest = |d: Descriptor| d.digest.and_then(|s| s.parse::<Digest>().ok());
        let mut blobs = Vec::new();
        let mut foreign = Vec::new();
        for desc in self
            .config
            .into_iter()
            .chain(self.layers.into_iter().flatten())
            .chain(self.blobs.into_iter().flatten())
        {
            let elsewhere = desc.is_foreign();
            if let Some(d) = digest(desc) {
                if elsewhere {
                    foreign.push(d.clone());
                }
                blobs.push(d);
            }
        }
        blobs.extend(
            self.fs_layers
                .into_iter()
                .flatten()
                .filter_map(|l| l.blob_sum.and_then(|s| s.parse::<Digest>().ok())),
        );
        Refs {
            blobs,
            foreign,
            children: self
                .manifests
                .into_iter()
                .flatten()
                .filter_map(digest)
                .collect(),
            subject: self.subject.and_then(digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::*;
    use std::path::PathBuf;

    const HOUR: Duration = Duration::from_secs(3600);

    fn opts(delete_untagged: bool) -> Options {
        Options {
            grace_period: HOUR,
            delete_untagged,
            purge_uploads_after: Duration::from_secs(86_400),
            dry_run: false,
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Makes `path` look last used `ago` ago.
    fn set_age(path: &Path, ago: Duration) {
        std::fs::File::open(path)
            .expect("open")
            .set_modified(SystemTime::now() - ago)
            .expect("set mtime");
    }

    /// Makes `path` look last used two hours ago.
    fn age(path: &Path) {
        set_age(path, 2 * HOUR);
    }

    /// Everything in the store was last used two hours ago.
    fn age_all(root: &Path) {
        for f in files(root) {
            age(&f);
        }
    }

    /// Bytes of the store's files, but for the last run's mark (which holds its summary).
    fn bytes_in(root: &Path) -> u64 {
        let mark = root.join(layout::gc_last_run());
        files(root)
            .iter()
            .filter(|f| **f != mark)
            .map(|f| std::fs::metadata(f).expect("stat").len())
            .sum()
    }

    fn blob_digests(report: &Report) -> BTreeSet<Digest> {
        report.blobs.iter().map(|(d, _)| d.clone()).collect()
    }

    async fn collect(store: &Store, o: &Options) -> Report {
        run(store, o).await.expect("gc").expect("not busy")
    }

    #[tokio::test]
    async fn old_unreferenced_blobs_go_and_referenced_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("team/app");
        let config = blob(&store, &a, b"config").await;
        let own = blob(&store, &a, b"layer one").await;
        let shared = blob(&store, &a, b"shared layer").await;
        let tagged = manifest(
            &store,
            &a,
            &image(&config, &[&own, &shared], None),
            Some("v1"),
        )
        .await;
        let orphan = blob(&store, &a, b"orphan").await;
        let u_config = blob(&store, &a, b"config u").await;
        let u_layer = blob(&store, &a, b"layer u").await;
        let untagged = manifest(
            &store,
            &a,
            &image(&u_config, &[&u_layer, &shared], None),
            None,
        )
        .await;
        age_all(dir.path());

        let before = bytes_in(dir.path());
        let r = collect(&store, &opts(false)).await;
        assert_eq!(r.blobs, vec![(orphan.clone(), 6)]);
        assert!(r.manifests.is_empty());
        assert_eq!(r.layer_links, 1);
        assert_eq!(before - bytes_in(dir.path()), r.bytes_freed);
        assert_eq!(store.blob_size(&a, &orphan).await.expect("size"), None);
        assert_eq!(store.blob_size_global(&orphan).await.expect("size"), None);
        for d in [&config, &own, &shared, &u_config, &u_layer] {
            assert!(store.blob_size(&a, d).await.expect("size").is_some(), "{d}");
        }
        assert!(store.manifest_exists(&a, &untagged).await.expect("exists"));
        age_all(dir.path());

        let before = bytes_in(dir.path());
        let r = collect(&store, &opts(true)).await;
        assert_eq!(r.manifests, vec![(a.clone(), untagged.clone())]);
        assert_eq!(
            blob_digests(&r),
            BTreeSet::from([u_config.clone(), u_layer.clone(), untagged.clone()])
        );
        assert_eq!(before - bytes_in(dir.path()), r.bytes_freed);
        assert!(!store.manifest_exists(&a, &untagged).await.expect("exists"));
        assert!(store.manifest_exists(&a, &tagged).await.expect("exists"));
        for d in [&config, &own, &shared] {
            assert!(store.blob_size(&a, d).await.expect("size").is_some(), "{d}");
        }
        assert_eq!(store.repositories().await.expect("repos"), vec![a]);
    }

    #[tokio::test]
    async fn the_grace_period_and_use_keep_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        let used = blob(&store, &a, b"old but used").await;
        let old = blob(&store, &a, b"old").await;
        age_all(dir.path());
        let fresh = blob(&store, &a, b"fresh").await;
        // A HEAD (or a mount, or a manifest push's check) marks the blob as used.
        assert!(store.blob_size(&a, &used).await.expect("size").is_some());
        let r = collect(&store, &opts(false)).await;
        assert_eq!(blob_digests(&r), BTreeSet::from([old]));
        for d in [&used, &fresh] {
            assert!(store.blob_size(&a, d).await.expect("size").is_some(), "{d}");
        }
        // With no grace period, only the second of slack protects them.
        age_all(dir.path());
        let none = Options {
            grace_period: Duration::ZERO,
            ..opts(false)
        };
        let r = collect(&store, &none).await;
        assert_eq!(blob_digests(&r), BTreeSet::from([used, fresh]));
    }

    #[tokio::test]
    async fn index_children_and_referrers_of_kept_subjects_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("multi");
        let config = blob(&store, &a, b"config").await;
        let l1 = blob(&store, &a, b"amd64 layer").await;
        let l2 = blob(&store, &a, b"arm64 layer").await;
        let c1 = manifest(&store, &a, &image(&config, &[&l1], None), None).await;
        let c2 = manifest(&store, &a, &image(&config, &[&l2], None), None).await;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [desc(OCI_MANIFEST, &c1), desc(OCI_MANIFEST, &c2)],
        });
        let index = manifest(&store, &a, &index, Some("latest")).await;
        let sig_blob = blob(&store, &a, b"signature").await;
        let sig = manifest(&store, &a, &image(&config, &[&sig_blob], Some(&c1)), None).await;
        // An untagged image nothing reaches, its referrer, and a tag moved off one.
        let lone_layer = blob(&store, &a, b"lone layer").await;
        let lone = manifest(&store, &a, &image(&config, &[&lone_layer], None), None).await;
        let lone_sig = manifest(&store, &a, &image(&config, &[&sig_blob], Some(&lone)), None).await;
        let old_layer = blob(&store, &a, b"old v layer").await;
        let old = manifest(&store, &a, &image(&config, &[&old_layer], None), Some("v")).await;
        let v: Tag = "v".parse().expect("tag");
        store.tag_set(&a, &v, &c2).await.expect("retag");
        age_all(dir.path());

        let before = bytes_in(dir.path());
        let r = collect(&store, &opts(true)).await;
        let unlinked: BTreeSet<Digest> = r.manifests.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(
            unlinked,
            BTreeSet::from([lone.clone(), lone_sig.clone(), old.clone()])
        );
        assert_eq!(
            blob_digests(&r),
            BTreeSet::from([
                lone_layer,
                old_layer,
                lone.clone(),
                lone_sig.clone(),
                old.clone()
            ])
        );
        assert_eq!(before - bytes_in(dir.path()), r.bytes_freed);
        for d in [&index, &c1, &c2, &sig] {
            assert!(store.manifest_exists(&a, d).await.expect("exists"), "{d}");
        }
        assert_eq!(
            store.referrers(&a, &c1).await.expect("referrers"),
            vec![sig]
        );
        let root = dir.path();
        assert!(!root
            .join(layout::referrer_link(&a, &lone, &lone_sig))
            .exists());
        assert!(!root.join(layout::tag_index_link(&a, &v, &old)).exists());
        assert!(root.join(layout::tag_index_link(&a, &v, &c2)).exists());
    }

    #[tokio::test]
    async fn a_dry_run_reports_the_same_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("kept");
        let config = blob(&store, &a, b"config").await;
        let layer = blob(&store, &a, b"layer").await;
        manifest(&store, &a, &image(&config, &[&layer], None), Some("t")).await;
        let untagged_layer = blob(&store, &a, b"untagged layer").await;
        manifest(&store, &a, &image(&config, &[&untagged_layer], None), None).await;
        // A repository holding only an orphan blob empties completely.
        let gone = repo("gone/away");
        blob(&store, &gone, b"orphan").await;
        age_all(dir.path());

        let before = bytes_in(dir.path());
        let dry_opts = Options {
            dry_run: true,
            ..opts(true)
        };
        let dry = collect(&store, &dry_opts).await;
        assert_eq!(bytes_in(dir.path()), before, "a dry run changes nothing");
        assert_eq!(
            store.repositories().await.expect("repos"),
            vec![gone.clone(), a.clone()]
        );
        let real = collect(&store, &opts(true)).await;
        assert_eq!(dry.items(), real.items());
        assert_eq!(dry.bytes_freed, real.bytes_freed);
        assert_eq!(before - bytes_in(dir.path()), real.bytes_freed);
        assert_eq!(real.repositories, vec![gone]);
        assert_eq!(store.repositories().await.expect("repos"), vec![a]);
        assert!(dry.summary().starts_with("would free"));
        assert!(real.summary().starts_with("freed"));
    }

    #[tokio::test]
    async fn one_collector_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let held = store
            .driver
            .try_lock(&layout::gc_lock(), true)
            .await
            .expect("lock");
        assert!(matches!(held, Locked::Held(_)));
        assert!(run(&store, &opts(false)).await.expect("run").is_none());
        drop(held);
        assert!(run(&store, &opts(false)).await.expect("run").is_some());
        assert!(last_run(&store).await.is_some());
        let (_, text) = last_report(&store).await.expect("read").expect("a report");
        assert!(text.starts_with("freed "), "{text}");
    }

    #[tokio::test]
    async fn abandoned_uploads_are_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("up");
        let start = |store: Store| async move {
            let id = store.upload_start(&repo("up")).await.expect("start");
            let mut w = store
                .upload_writer(&repo("up"), &id, 0)
                .await
                .expect("writer");
            w.write(Bytes::from_static(b"partial"))
                .await
                .expect("write");
            w.finish().await.expect("finish");
            id
        };
        let abandoned = start(store.clone()).await;
        let fresh = start(store.clone()).await;
        let foreign = start(store.clone()).await;
        let root = dir.path();
        std::fs::write(
            root.join(layout::upload_started_at(&a, &abandoned)),
            "2020-01-01T00:00:00Z",
        )
        .expect("startedat");
        let two_days = 48 * HOUR;
        set_age(&root.join(layout::upload_data(&a, &abandoned)), two_days);
        // As another registry may leave one: no startedat, an old directory.
        std::fs::remove_file(root.join(layout::upload_started_at(&a, &foreign))).expect("rm");
        set_age(&root.join(layout::upload_data(&a, &foreign)), two_days);
        set_age(&root.join(layout::upload_dir(&a, &foreign)), two_days);

        let keep_all = Options {
            purge_uploads_after: Duration::ZERO,
            ..opts(false)
        };
        assert!(collect(&store, &keep_all).await.uploads.is_empty());
        let r = collect(&store, &opts(false)).await;
        let purged: HashSet<UploadId> = r.uploads.iter().map(|(_, id, _)| id.clone()).collect();
        assert_eq!(purged, HashSet::from([abandoned.clone(), foreign.clone()]));
        assert!(matches!(
            store.upload_size(&a, &abandoned).await,
            Err(Error::UploadUnknown)
        ));
        assert_eq!(store.upload_size(&a, &fresh).await.expect("fresh"), 7);
    }

    #[tokio::test]
    async fn a_blob_used_after_it_was_chosen_is_put_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("race");
        let d = blob(&store, &a, b"late").await;
        age_all(dir.path());
        let o = opts(false);
        let mut c = Collector::new(&store, &o, SystemTime::now());
        // Chosen as old, then a HEAD marks it before the collector moves it.
        assert!(!c.recent(
            store
                .driver
                .stat(&layout::blob_data(&d))
                .await
                .expect("stat")
                .and_then(|m| m.last_used)
        ));
        assert!(store.blob_size(&a, &d).await.expect("size").is_some());
        c.collect_blob(&d, 4, Some(std::slice::from_ref(&a)))
            .await
            .expect("collect");
        assert!(c.report.blobs.is_empty());
        assert_eq!(store.blob_size(&a, &d).await.expect("size"), Some(4));
        assert!(store
            .driver
            .list_dirs(&layout::trash())
            .await
            .expect("trash")
            .is_empty());
        // A run leaves no trash directory behind.
        collect(&store, &o).await;
        assert!(!dir.path().join(layout::trash()).exists());
    }

    #[tokio::test]
    async fn blobs_left_in_the_trash_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("trash");
        let d = blob(&store, &a, b"interrupted").await;
        let root = dir.path();
        std::fs::create_dir_all(root.join(layout::trash())).expect("mkdir");
        std::fs::rename(
            root.join(layout::blob_dir(&d)),
            root.join(layout::trash_blob(&d)),
        )
        .expect("rename");
        assert_eq!(store.blob_size(&a, &d).await.expect("size"), None);
        assert_eq!(recover(&store).await.expect("recover"), 1);
        assert_eq!(store.blob_size(&a, &d).await.expect("size"), Some(11));
    }
}
