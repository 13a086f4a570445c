//! The integrity check (`berth fsck`, and `[scrub]` on the server's schedule): walks the
//! store and checks that every blob hashes to its digest, that every link names a blob
//! that is there (`_layers`, manifest revisions, tags and their history, referrers), that
//! every tag points at a manifest of its repository, and that every manifest's config,
//! layers and index children are there. Each problem is reported with its kind, its
//! repository, the digest and the path ([`Problem`]), as soon as it is known.
//!
//! Blobs are hashed as they stream from the medium (1 MiB at a time), on the blocking pool,
//! `workers` at a time; nothing else is read whole but manifests. Foreign layers (URLs, or a
//! non-distributable media type) may be absent; so may an index's children when
//! `manifests.require_index_children` is off (sparse indexes).
//!
//! **Repair** removes only what is provably broken: a link that names nothing (not a
//! digest, or not the one its path names), a link to a blob that is not there, and a tag
//! whose manifest is gone. A blob whose bytes do not hash to its digest is moved to
//! `.berth-quarantine/`, never deleted; once it is gone, the links to it dangle and go too,
//! and a client can push the blob again. A manifest whose blobs are missing stays (pushing
//! them again mends it), and so does everything else only an operator can judge.
//!
//! **While berth serves and collects.** A check takes no lock and changes nothing, not even
//! a "used" mark, so the collector's view of the store is untouched. What it reads while a
//! collection sweeps can look broken for a moment (a blob goes just before its links), so a
//! link, tag or reference that looks broken is looked at again at the end, holding the
//! collector's lock (after a collection in progress has finished): only what is still
//! broken then is reported. A repair holds the collector's lock for its whole run (refused
//! while a collection runs; one that starts meanwhile is skipped), first puts back what an
//! interrupted collection left in its trash, and removes a link or tag only after looking
//! at it again under the link lock, which waits for the manifest pushes in flight: what a
//! push has just linked is never removed. Uploads in progress live under `_uploads`, are
//! not blobs, and are not looked at.

use super::driver::{Driver, Locked, Renamed};
use super::gc::{self, Body};
use super::{layout, Error, Store};
use crate::oci::{Digest, RepositoryName, Tag};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Blobs hashed at once by `berth fsck` (one per core of a small appliance).
pub const DEFAULT_WORKERS: usize = 2;

/// Problems the server's schedule logs one by one in a run; the rest are counted.
const LOG_MAX: u64 = 100;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Remove what is provably broken and quarantine corrupt blobs (see the module docs).
    pub repair: bool,
    /// An index's children must be in its repository (`manifests.require_index_children`).
    pub require_index_children: bool,
    /// Blobs hashed at once.
    pub workers: usize,
}

impl Options {
    /// A check (no repair) with the configuration's rules, one blob at a time.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            repair: false,
            require_index_children: cfg.manifests.require_index_children,
            workers: 1,
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A blob's bytes do not hash to its digest.
    CorruptBlob,
    /// A blob, link or manifest could not be read (an I/O error).
    Unreadable,
    /// A link that holds no digest, or not the digest its path names.
    CorruptLink,
    /// A `_layers` link to a blob that is not in the store.
    DanglingLayerLink,
    /// A manifest revision whose bytes are not in the store.
    DanglingRevisionLink,
    /// A tag whose manifest is not in its repository.
    DanglingTag,
    /// An entry of a tag's history whose manifest bytes are not in the store.
    DanglingTagIndexLink,
    /// A referrer entry whose manifest bytes are not in the store.
    DanglingReferrerLink,
    /// A manifest references a blob that is not in the store.
    MissingBlob,
    /// A manifest references a blob that is in the store but not linked into the
    /// repository: pulls answer `BLOB_UNKNOWN`.
    UnlinkedBlob,
    /// An index lists a manifest that is not in the repository.
    MissingManifest,
    /// A manifest revision whose bytes are not a manifest.
    UnreadableManifest,
}

impl Kind {
    /// The name printed at the start of a problem's line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CorruptBlob => "corrupt-blob",
            Kind::Unreadable => "unreadable",
            Kind::CorruptLink => "corrupt-link",
            Kind::DanglingLayerLink => "dangling-layer-link",
            Kind::DanglingRevisionLink => "dangling-revision-link",
            Kind::DanglingTag => "dangling-tag",
            Kind::DanglingTagIndexLink => "dangling-tag-index-link",
            Kind::DanglingReferrerLink => "dangling-referrer-link",
            Kind::MissingBlob => "missing-blob",
            Kind::UnlinkedBlob => "unlinked-blob",
            Kind::MissingManifest => "missing-manifest",
            Kind::UnreadableManifest => "unreadable-manifest",
        }
    }
}

/// What a repair did about a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: a check, or nothing here is provably broken enough to remove.
    None,
    /// The link (with its directory) or the tag is gone.
    Removed,
    /// The blob's bytes are now here (relative to the store's root).
    Quarantined(PathBuf),
    Failed(String),
}

/// One thing wrong with the store.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: Kind,
    /// `None` for the shared blob store.
    pub repository: Option<RepositoryName>,
    /// The blob, manifest or link target concerned; `None` when there is none to name (a
    /// tag link that holds no digest).
    pub digest: Option<Digest>,
    /// The file concerned, relative to the store's root.
    pub path: PathBuf,
    pub detail: String,
    pub action: Action,
}

impl Problem {
    pub fn repaired(&self) -> bool {
        matches!(self.action, Action::Removed | Action::Quarantined(_))
    }

    /// `kind repository digest path: detail (action)`, with `-` for what is not there and
    /// paths under `root`.
    pub fn line(&self, root: &Path) -> String {
        let mut out = format!(
            "{} {} {} {}: {}",
            self.kind.as_str(),
            self.repository
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            self.digest
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            root.join(&self.path).display(),
            self.detail
        );
        let _ = match &self.action {
            Action::None => Ok(()),
            Action::Removed => write!(out, " (removed)"),
            Action::Quarantined(to) => write!(out, " (quarantined to {})", root.join(to).display()),
            Action::Failed(why) => write!(out, " (repair failed: {why})"),
        };
        out
    }
}

/// What a run looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub repair: bool,
    /// Blobs hashed, and their bytes.
    pub blobs: u64,
    pub bytes: u64,
    pub repositories: u64,
    /// Manifest revisions whose references were followed.
    pub manifests: u64,
    pub tags: u64,
    pub links: u64,
    pub problems: u64,
    /// Of `problems`, those a repair mended.
    pub repaired: u64,
    pub took: Duration,
}

impl Summary {
    /// Nothing is wrong (any longer).
    pub fn clean(&self) -> bool {
        self.problems == self.repaired
    }

    /// The totals, in one line.
    pub fn line(&self) -> String {
        let secs = self.took.as_secs_f64();
        let rate = if secs > 0.0 {
            self.bytes as f64 / secs / f64::from(1 << 20)
        } else {
            0.0
        };
        let mut out = format!(
            "checked {} blobs ({} bytes, {rate:.0} MiB/s), {} repositories, {} manifests, {} tags, {} links in {secs:.1}s: {} problem{}",
            self.blobs,
            self.bytes,
            self.repositories,
            self.manifests,
            self.tags,
            self.links,
            self.problems,
            if self.problems == 1 { "" } else { "s" }
        );
        if self.repair {
            let _ = write!(out, ", {} repaired", self.repaired);
        }
        out
    }
}

/// Checks the whole store, handing each problem to `report` as it is found (and, with
/// `repair`, after it was dealt with). `Ok(None)`: a repair was asked for and a collection
/// is running on the store.
pub async fn run<D: Driver>(
    store: &Store<D>,
    opts: &Options,
    report: &mut dyn FnMut(&Problem),
) -> Result<Option<Summary>, Error> {
    let started = Instant::now();
    let _collector = if opts.repair {
        match store.driver.try_lock(&layout::gc_lock(), true).await? {
            Locked::Held(lock) => {
                // What an interrupted collection left in its trash is not missing.
                gc::restore_trash(store).await?;
                Some(lock)
            }
            Locked::Busy => return Ok(None),
            Locked::Missing => {
                return Err(Error::Internal(
                    "the collector's lock file vanished while it was opened".into(),
                ))
            }
        }
    } else {
        None
    };
    let mut c = Checker {
        store,
        opts,
        report,
        summary: Summary {
            repair: opts.repair,
            ..Summary::default()
        },
        corrupt: HashSet::new(),
        suspects: Vec::new(),
    };
    c.blobs().await?;
    let names: Vec<RepositoryName> = store
        .driver
        .find_dirs_with(&layout::repositories(), gc::REPOSITORY_MARKERS)
        .await?
        .into_iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    for name in names {
        c.repository(&name).await?;
    }
    c.confirm().await?;
    c.summary.took = started.elapsed();
    Ok(Some(c.summary))
}

/// Checks the store every `interval` on a thread of its own (zero: never), counting from
/// the last check by any process on the store; logs what it finds and records the result
/// for `/metrics`. Never repairs.
pub fn spawn<D: Driver>(store: Store<D>, opts: Options, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let opts = Options {
        repair: false,
        ..opts
    };
    crate::spawn_background("berth-scrub", "the integrity scrub", move || {
        schedule(store, opts, interval)
    });
}

async fn schedule<D: Driver>(store: Store<D>, opts: Options, interval: Duration) {
    let Some(mut earliest) = SystemTime::now().checked_add(interval.min(gc::FIRST_RUN_DELAY))
    else {
        return;
    };
    loop {
        if gc::wait_until_due(&store, &layout::scrub_last_run(), interval, earliest)
            .await
            .is_none()
        {
            return;
        }
        let root = PathBuf::from(store.location());
        let mut logged = 0;
        let result = {
            let mut log = |p: &Problem| {
                logged += 1;
                if logged <= LOG_MAX {
                    tracing::warn!(kind = p.kind.as_str(), "integrity scrub: {}", p.line(&root));
                }
            };
            run(&store, &opts, &mut log).await
        };
        match result {
            Ok(Some(s)) => {
                crate::metrics::scrub(s.problems, s.bytes, s.took);
                if logged > LOG_MAX {
                    tracing::warn!(
                        "integrity scrub: {} more problems; `berth fsck` lists them all",
                        logged - LOG_MAX
                    );
                }
                let summary = s.line();
                if s.problems > 0 {
                    tracing::warn!(problems = s.problems, "integrity scrub finished: {summary}");
                } else {
                    tracing::info!("integrity scrub finished: {summary}");
                }
                // storage.read_only: nothing is written, this process keeps its own time.
                if !store.read_only() {
                    if let Err(e) = store
                        .driver
                        .write_atomic(&layout::scrub_last_run(), Bytes::new())
                        .await
                    {
                        tracing::debug!(error = %e, "cannot record the scrub's time in the store");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "integrity scrub failed"),
        }
        match SystemTime::now().checked_add(interval) {
            Some(t) => earliest = t,
            None => return,
        }
    }
}

/// What hashing one blob found.
enum Seen {
    /// Gone before it was read (collected), or not a file.
    Gone,
    Intact(u64),
    Corrupt {
        size: u64,
        actual: Digest,
    },
    Unreadable(String),
}

/// Hashes one blob as it streams, on the blocking pool.
async fn hash_blob<D: Driver>(driver: D, d: Digest) -> Result<(Digest, Seen), Error> {
    let data = layout::blob_data(&d);
    let Some(meta) = driver.stat(&data).await? else {
        return Ok((d, Seen::Gone));
    };
    if meta.is_dir {
        return Ok((d, Seen::Gone));
    }
    let alg = d.algorithm();
    let hashed = driver
        .reading(move |fs| super::hash_file(fs, &data, alg))
        .await;
    let seen = match hashed {
        Ok(actual) if actual == d => Seen::Intact(meta.size),
        Ok(actual) => Seen::Corrupt {
            size: meta.size,
            actual,
        },
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Seen::Gone,
        Err(Error::Io { source, .. }) => Seen::Unreadable(source.to_string()),
        Err(e) => return Err(e),
    };
    Ok((d, seen))
}

/// What a problem is about, to look at it again and to repair it.
enum Target {
    /// Only reported: nothing to look at again, nothing to remove.
    Report,
    /// A blob whose bytes did not hash to its digest (`size` bytes when hashed).
    Blob { digest: Digest, size: u64 },
    /// A link that names `digest`, a blob that is not in the store; `dir` goes with it.
    /// `relink`: a `_layers` link, written again if the blob comes back meanwhile.
    /// `prune`: empty directories above `dir` go too, up to the repository.
    Link {
        link: PathBuf,
        digest: Digest,
        dir: PathBuf,
        relink: Option<RepositoryName>,
        prune: Option<RepositoryName>,
    },
    /// A link that holds no digest, or not `expect` (the one its path names).
    Corrupt {
        link: PathBuf,
        expect: Option<Digest>,
        dir: PathBuf,
    },
    /// A tag pointing at `digest`, which is not a manifest of its repository.
    Tag {
        repo: RepositoryName,
        tag: Tag,
        digest: Digest,
    },
    /// `manifest` of `repo` references `digest` (as an index's child: `child`), which is
    /// not there (or not linked): looked at again, never repaired.
    Reference {
        repo: RepositoryName,
        manifest: Digest,
        digest: Digest,
        child: bool,
    },
}

/// What [`Checker::link`] found.
#[derive(Debug, PartialEq, Eq)]
enum Linked {
    /// No link file (a directory being made, or left over).
    Absent,
    /// The link names its digest and the blob is there.
    Present,
    Broken,
}

/// Where a link is and what goes with it.
struct LinkAt {
    kind: Kind,
    link: PathBuf,
    dir: PathBuf,
    relink: bool,
    prune: bool,
}

struct Checker<'a, D: Driver> {
    store: &'a Store<D>,
    opts: &'a Options,
    report: &'a mut dyn FnMut(&Problem),
    summary: Summary,
    /// Blobs found corrupt: a manifest among them is not read for its references.
    corrupt: HashSet<Digest>,
    /// Problems a check looks at again at the end (see the module docs).
    suspects: Vec<(Problem, Target)>,
}

impl<'a, D: Driver> Checker<'a, D> {
    /// Hashes every blob, `workers` at a time, one prefix directory after another (so
    /// that only one directory's names are held).
    async fn blobs(&mut self) -> Result<(), Error> {
        let store = self.store;
        let workers = self.opts.workers.max(1);
        let root = layout::blobs();
        for alg in store.driver.list_dirs(&root).await? {
            let alg_dir = root.join(&alg);
            for prefix in store.driver.list_dirs(&alg_dir).await? {
                let digests: Vec<Digest> = store
                    .driver
                    .list_dirs(&alg_dir.join(&prefix))
                    .await?
                    .into_iter()
                    // A directory out of place is not a blob of this store.
                    .filter(|hex| hex.starts_with(prefix.as_str()))
                    .filter_map(|hex| format!("{alg}:{hex}").parse().ok())
                    .collect();
                let mut hashed = futures_util::stream::iter(digests)
                    .map(|d| hash_blob(store.driver.clone(), d))
                    .buffer_unordered(workers);
                while let Some(r) = hashed.next().await {
                    let (d, seen) = r?;
                    self.blob(d, seen).await?;
                }
            }
        }
        Ok(())
    }

    async fn blob(&mut self, d: Digest, seen: Seen) -> Result<(), Error> {
        let problem = |kind, detail| Problem {
            kind,
            repository: None,
            digest: Some(d.clone()),
            path: layout::blob_data(&d),
            detail,
            action: Action::None,
        };
        match seen {
            Seen::Gone => {}
            Seen::Intact(size) => {
                self.summary.blobs += 1;
                self.summary.bytes += size;
            }
            Seen::Corrupt { size, actual } => {
                self.summary.blobs += 1;
                self.summary.bytes += size;
                let p = problem(Kind::CorruptBlob, format!("the bytes hash to {actual}"));
                self.corrupt.insert(d.clone());
                self.found(p, Target::Blob { digest: d, size }).await?;
            }
            Seen::Unreadable(why) => {
                self.summary.blobs += 1;
                self.found(problem(Kind::Unreadable, why), Target::Report)
                    .await?;
            }
        }
        Ok(())
    }

    /// A repository's links, tags and manifests.
    async fn repository(&mut self, repo: &RepositoryName) -> Result<(), Error> {
        self.summary.repositories += 1;
        let mut revisions = HashSet::new();
        for d in self.digest_dirs(&layout::revisions_dir(repo)).await? {
            let dir = layout::revision_dir(repo, &d);
            let at = LinkAt {
                kind: Kind::DanglingRevisionLink,
                link: layout::revision_link(repo, &d),
                dir,
                relink: false,
                prune: false,
            };
            if self.link(repo, &d, at).await? == Linked::Present {
                revisions.insert(d);
            }
        }
        self.tags(repo, &revisions).await?;
        for d in self.digest_dirs(&layout::layers_dir(repo)).await? {
            let at = LinkAt {
                kind: Kind::DanglingLayerLink,
                link: layout::layer_link(repo, &d),
                dir: layout::layer_dir(repo, &d),
                relink: true,
                prune: false,
            };
            self.link(repo, &d, at).await?;
        }
        for subject in self.digest_dirs(&layout::referrers_root(repo)).await? {
            let dir = layout::referrers_dir(repo, &subject);
            for d in self.digest_dirs(&dir).await? {
                let at = LinkAt {
                    kind: Kind::DanglingReferrerLink,
                    link: layout::referrer_link(repo, &subject, &d),
                    dir: layout::referrer_dir(repo, &subject, &d),
                    relink: false,
                    prune: true,
                };
                self.link(repo, &d, at).await?;
            }
        }
        let mut sorted: Vec<&Digest> = revisions.iter().collect();
        sorted.sort();
        for d in sorted {
            self.manifest(repo, d, &revisions).await?;
        }
        Ok(())
    }

    /// Every tag's current link and history.
    async fn tags(
        &mut self,
        repo: &RepositoryName,
        revisions: &HashSet<Digest>,
    ) -> Result<(), Error> {
        let store = self.store;
        for name in store.driver.list_dirs(&layout::tags_dir(repo)).await? {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            let current = layout::tag_current_link(repo, &tag);
            let problem = |kind, digest: Option<&Digest>, detail| Problem {
                kind,
                repository: Some(repo.clone()),
                digest: digest.cloned(),
                path: current.clone(),
                detail,
                action: Action::None,
            };
            match store.read_link(&current).await {
                // Not a tag (as `Store::tags` sees it).
                Ok(None) => {}
                Ok(Some(d)) => {
                    self.summary.tags += 1;
                    self.summary.links += 1;
                    if !revisions.contains(&d) {
                        let p = problem(
                            Kind::DanglingTag,
                            Some(&d),
                            format!("tag {tag} points at a manifest that is not in {repo}"),
                        );
                        let t = Target::Tag {
                            repo: repo.clone(),
                            tag: tag.clone(),
                            digest: d,
                        };
                        self.found(p, t).await?;
                    }
                }
                Err(Error::Corrupt { why, .. }) => {
                    self.summary.tags += 1;
                    self.summary.links += 1;
                    let p = problem(Kind::CorruptLink, None, format!("tag {tag}: {why}"));
                    let t = Target::Corrupt {
                        link: current.clone(),
                        expect: None,
                        dir: layout::tag_dir(repo, &tag),
                    };
                    self.found(p, t).await?;
                }
                Err(Error::Io { source, .. }) => {
                    let p = problem(Kind::Unreadable, None, format!("tag {tag}: {source}"));
                    self.found(p, Target::Report).await?;
                }
                Err(e) => return Err(e),
            }
            for d in self.digest_dirs(&layout::tag_index_dir(repo, &tag)).await? {
                let at = LinkAt {
                    kind: Kind::DanglingTagIndexLink,
                    link: layout::tag_index_link(repo, &tag, &d),
                    dir: layout::tag_index_entry(repo, &tag, &d),
                    relink: false,
                    prune: false,
                };
                self.link(repo, &d, at).await?;
            }
        }
        Ok(())
    }

    /// Checks one link whose path names `d`.
    async fn link(
        &mut self,
        repo: &RepositoryName,
        d: &Digest,
        at: LinkAt,
    ) -> Result<Linked, Error> {
        let read = self.store.read_link(&at.link).await;
        if !matches!(read, Ok(None)) {
            self.summary.links += 1;
        }
        let problem = |kind, detail| Problem {
            kind,
            repository: Some(repo.clone()),
            digest: Some(d.clone()),
            path: at.link.clone(),
            detail,
            action: Action::None,
        };
        let corrupt = |p: Problem| {
            let t = Target::Corrupt {
                link: at.link.clone(),
                expect: Some(d.clone()),
                dir: at.dir.clone(),
            };
            (p, t)
        };
        let (p, t) = match read {
            Ok(None) => return Ok(Linked::Absent),
            Ok(Some(named)) if named != *d => corrupt(problem(
                Kind::CorruptLink,
                format!("holds {named}, not the digest its path names"),
            )),
            Ok(Some(_)) => {
                if !self.missing(d).await? {
                    return Ok(Linked::Present);
                }
                let p = problem(at.kind, "names a blob that is not in the store".into());
                let t = Target::Link {
                    link: at.link.clone(),
                    digest: d.clone(),
                    dir: at.dir.clone(),
                    relink: at.relink.then(|| repo.clone()),
                    prune: at.prune.then(|| repo.clone()),
                };
                (p, t)
            }
            Err(Error::Corrupt { why, .. }) => corrupt(problem(Kind::CorruptLink, why)),
            Err(Error::Io { source, .. }) => (
                problem(Kind::Unreadable, source.to_string()),
                Target::Report,
            ),
            Err(e) => return Err(e),
        };
        self.found(p, t).await?;
        Ok(Linked::Broken)
    }

    /// Follows a manifest revision's references.
    async fn manifest(
        &mut self,
        repo: &RepositoryName,
        d: &Digest,
        revisions: &HashSet<Digest>,
    ) -> Result<(), Error> {
        // Its bytes are reported already; what they say is not to be trusted.
        if self.corrupt.contains(d) {
            return Ok(());
        }
        self.summary.manifests += 1;
        let data = layout::blob_data(d);
        let problem = |kind, digest: &Digest, path: PathBuf, detail| Problem {
            kind,
            repository: Some(repo.clone()),
            digest: Some(digest.clone()),
            path,
            detail,
            action: Action::None,
        };
        // Gone meanwhile (into the collector's trash): nothing to follow.
        let Some(meta) = self.store.driver.stat(&data).await? else {
            return Ok(());
        };
        if meta.is_dir || meta.size > gc::MANIFEST_READ_MAX {
            let p = problem(
                Kind::UnreadableManifest,
                d,
                data,
                "too large to be a manifest".into(),
            );
            return self.found(p, Target::Report).await;
        }
        let bytes = match self.store.driver.read(&data).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            Err(Error::Io { source, .. }) => {
                let p = problem(Kind::Unreadable, d, data, source.to_string());
                return self.found(p, Target::Report).await;
            }
            Err(e) => return Err(e),
        };
        let refs = match serde_json::from_slice::<Body>(&bytes) {
            Ok(body) => body.refs(),
            Err(e) => {
                let p = problem(
                    Kind::UnreadableManifest,
                    d,
                    data,
                    format!("not a manifest: {e}"),
                );
                return self.found(p, Target::Report).await;
            }
        };
        let mut seen = HashSet::new();
        for b in &refs.blobs {
            if !seen.insert(b) {
                continue;
            }
            let (kind, path, detail) = if self.missing(b).await? {
                if refs.foreign.contains(b) {
                    continue;
                }
                (
                    Kind::MissingBlob,
                    layout::blob_data(b),
                    format!("manifest {d} references it; it is not in the store"),
                )
            } else if !self.linked(repo, b).await? {
                (
                    Kind::UnlinkedBlob,
                    layout::layer_link(repo, b),
                    format!("manifest {d} references it; it is in the store but not linked into {repo}, so pulls answer BLOB_UNKNOWN"),
                )
            } else {
                continue;
            };
            let t = Target::Reference {
                repo: repo.clone(),
                manifest: d.clone(),
                digest: b.clone(),
                child: false,
            };
            self.found(problem(kind, b, path, detail), t).await?;
        }
        if !self.opts.require_index_children {
            return Ok(());
        }
        for c in &refs.children {
            if !seen.insert(c) || revisions.contains(c) {
                continue;
            }
            let p = problem(
                Kind::MissingManifest,
                c,
                layout::revision_link(repo, c),
                format!("index {d} lists it; it is not a manifest of {repo}"),
            );
            let t = Target::Reference {
                repo: repo.clone(),
                manifest: d.clone(),
                digest: c.clone(),
                child: true,
            };
            self.found(p, t).await?;
        }
        Ok(())
    }

    /// A problem: reported now; looked at again first (repairing), or at the end
    /// (checking).
    async fn found(&mut self, mut p: Problem, t: Target) -> Result<(), Error> {
        if !self.opts.repair {
            match t {
                Target::Report | Target::Blob { .. } => self.emit(&p),
                _ => self.suspects.push((p, t)),
            }
            return Ok(());
        }
        match self.repair(&t).await {
            Ok(Some(action)) => p.action = action,
            // Mended meanwhile (a push).
            Ok(None) => return Ok(()),
            Err(e) => p.action = Action::Failed(e.to_string()),
        }
        self.emit(&p);
        Ok(())
    }

    fn emit(&mut self, p: &Problem) {
        self.summary.problems += 1;
        if p.repaired() {
            self.summary.repaired += 1;
        }
        (self.report)(p);
    }

    /// Reports the suspects of a check that are still broken now that no collection runs.
    async fn confirm(&mut self) -> Result<(), Error> {
        if self.suspects.is_empty() {
            return Ok(());
        }
        // Waits for a collection in progress. A store this process may not lock (another
        // user's, read-only) is looked at again all the same.
        let _collector = match self.store.driver.lock_exclusive(&layout::gc_lock()).await {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::debug!(error = %e, "fsck: cannot hold the collector off");
                None
            }
        };
        for (p, t) in std::mem::take(&mut self.suspects) {
            if self.broken(&t).await? {
                self.emit(&p);
            }
        }
        Ok(())
    }

    /// Repairs what `t` names if it is still broken: `None` when it is not.
    async fn repair(&mut self, t: &Target) -> Result<Option<Action>, Error> {
        let store = self.store;
        let dir = match t {
            Target::Report => return Ok(Some(Action::None)),
            Target::Reference { .. } => {
                return Ok(self.broken(t).await?.then_some(Action::None));
            }
            Target::Blob { digest, size } => return self.quarantine(digest, *size).await,
            Target::Link { dir, .. } | Target::Corrupt { dir, .. } => dir.clone(),
            Target::Tag { repo, tag, .. } => layout::tag_dir(repo, tag),
        };
        // Manifest pushes in flight finish linking first; later ones wait.
        let _linking = store.driver.lock_exclusive(&layout::link_lock()).await?;
        if !self.broken(t).await? {
            return Ok(None);
        }
        store.driver.remove_tree(&dir).await?;
        if let Target::Link {
            digest,
            relink,
            prune,
            ..
        } = t
        {
            // Committed again meanwhile (an upload does not take the link lock).
            if let Some(repo) = relink {
                if self.present(digest).await? {
                    store.blob_link(repo, digest).await?;
                }
            }
            if let (Some(repo), Some(up)) = (prune, dir.parent()) {
                store
                    .driver
                    .remove_empty_dirs_up(up, &layout::repository(repo))
                    .await?;
            }
        }
        Ok(Some(Action::Removed))
    }

    /// Moves a corrupt blob into the quarantine, where nothing serves or collects it.
    async fn quarantine(&mut self, d: &Digest, size: u64) -> Result<Option<Action>, Error> {
        let driver = &self.store.driver;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_secs());
        let mut to = None;
        for attempt in 0..10 {
            let dir = layout::quarantine_blob(d, now, attempt);
            match driver.move_tree(&layout::blob_dir(d), &dir, true).await? {
                Renamed::Done => {
                    to = Some(dir);
                    break;
                }
                // Collected meanwhile, by a collector that did not see this one's lock.
                Renamed::SourceMissing => return Ok(None),
                Renamed::TargetExists => {}
            }
        }
        let Some(dir) = to else {
            return Ok(Some(Action::Failed(
                "the quarantine has no free name for it".into(),
            )));
        };
        let data = dir.join("data");
        // A manifest pushed again whole replaces bytes of another size (`blob_put_small`);
        // an upload never replaces a blob. Such bytes, or small ones, are hashed again: if
        // they are intact now, they go back.
        let moved = driver.stat(&data).await?;
        if moved.is_some_and(|m| m.size != size || m.size <= gc::MANIFEST_READ_MAX) {
            let (key, alg) = (data.clone(), d.algorithm());
            let again = driver
                .reading(move |fs| super::hash_file(fs, &key, alg))
                .await?;
            if again == *d {
                match driver.move_tree(&dir, &layout::blob_dir(d), true).await? {
                    Renamed::Done | Renamed::SourceMissing => {}
                    Renamed::TargetExists => {
                        driver.remove_tree(&dir).await?;
                    }
                }
                return Ok(None);
            }
        }
        Ok(Some(Action::Quarantined(data)))
    }

    /// Whether what `t` names is (still) broken.
    async fn broken(&self, t: &Target) -> Result<bool, Error> {
        Ok(match t {
            Target::Report | Target::Blob { .. } => true,
            Target::Link { link, digest, .. } => {
                self.links_to(link, digest).await && self.missing(digest).await?
            }
            Target::Corrupt { link, expect, .. } => match self.store.read_link(link).await {
                Err(Error::Corrupt { .. }) => true,
                Ok(Some(d)) => expect.as_ref().is_some_and(|e| *e != d),
                Ok(None) => false,
                Err(e) => return Err(e),
            },
            Target::Tag { repo, tag, digest } => {
                self.links_to(&layout::tag_current_link(repo, tag), digest)
                    .await
                    && !self.revision(repo, digest).await?
            }
            Target::Reference {
                repo,
                manifest,
                digest,
                child,
            } => {
                self.revision(repo, manifest).await?
                    && if *child {
                        !self.revision(repo, digest).await?
                    } else {
                        self.missing(digest).await? || !self.linked(repo, digest).await?
                    }
            }
        })
    }

    /// Whether the link at `link` names `d`.
    async fn links_to(&self, link: &Path, d: &Digest) -> bool {
        self.store.read_link(link).await.ok().flatten().as_ref() == Some(d)
    }

    /// Whether `d` is a manifest revision of `repo` whose bytes are there.
    async fn revision(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        Ok(self.links_to(&layout::revision_link(repo, d), d).await && !self.missing(d).await?)
    }

    /// Whether blob `d` is linked into `repo` (as a layer or a manifest revision), as
    /// `Store::blob_size` asks it.
    async fn linked(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        Ok(self.links_to(&layout::layer_link(repo, d), d).await
            || self.links_to(&layout::revision_link(repo, d), d).await)
    }

    async fn present(&self, d: &Digest) -> Result<bool, Error> {
        let data = self.store.driver.stat(&layout::blob_data(d)).await?;
        Ok(data.is_some_and(|m| !m.is_dir))
    }

    /// Whether blob `d` is neither in the store nor in the collector's trash (where it is
    /// being collected, and may come back).
    async fn missing(&self, d: &Digest) -> Result<bool, Error> {
        if self.present(d).await? {
            return Ok(false);
        }
        let trash = layout::trash_blob(d).join("data");
        Ok(self.store.driver.stat(&trash).await?.is_none())
    }

    /// The digests named by `<root>/<alg>/<hex>` directories.
    async fn digest_dirs(&self, root: &Path) -> Result<Vec<Digest>, Error> {
        let mut out = Vec::new();
        for alg in self.store.driver.list_dirs(root).await? {
            for hex in self.store.driver.list_dirs(&root.join(&alg)).await? {
                if let Ok(d) = format!("{alg}:{hex}").parse() {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;
    use crate::store::fixtures::*;

    fn check_opts() -> Options {
        Options {
            repair: false,
            require_index_children: true,
            workers: 2,
        }
    }

    fn repair_opts() -> Options {
        Options {
            repair: true,
            ..check_opts()
        }
    }

    /// Runs fsck; the problems it reported and its summary.
    async fn fsck(store: &Store, opts: &Options) -> (Vec<Problem>, Summary) {
        let mut found = Vec::new();
        let summary = run(store, opts, &mut |p: &Problem| found.push(p.clone()))
            .await
            .expect("fsck")
            .expect("no collector running");
        assert_eq!(summary.problems, found.len() as u64);
        (found, summary)
    }

    /// (kind, digest) of each problem, sorted, to compare with what a test expects.
    fn kinds(problems: &[Problem]) -> Vec<(Kind, Option<Digest>)> {
        let mut v: Vec<_> = problems
            .iter()
            .map(|p| (p.kind, p.digest.clone()))
            .collect();
        v.sort_by_key(|(k, d)| (k.as_str(), d.as_ref().map(|d| d.to_string())));
        v
    }

    fn expect(mut want: Vec<(Kind, Option<&Digest>)>) -> Vec<(Kind, Option<Digest>)> {
        want.sort_by_key(|(k, d)| (k.as_str(), d.map(|d| d.to_string())));
        want.into_iter().map(|(k, d)| (k, d.cloned())).collect()
    }

    /// A tagged image (config and one layer), returning (manifest, config, layer).
    async fn tagged_image(store: &Store, r: &RepositoryName, t: &str) -> (Digest, Digest, Digest) {
        let config = blob(store, r, format!("config of {t}").as_bytes()).await;
        let layer = blob(store, r, format!("layer of {t}").as_bytes()).await;
        let m = manifest(store, r, &image(&config, &[&layer], None), Some(t)).await;
        (m, config, layer)
    }

    #[tokio::test]
    async fn a_clean_store_has_no_problems_and_keeps_its_marks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("team/app");
        let (m, config, _) = tagged_image(&store, &a, "v1").await;
        let arm = blob(&store, &a, b"arm64 layer").await;
        let child = manifest(&store, &a, &image(&config, &[&arm], None), None).await;
        manifest(&store, &a, &index(&[&m, &child]), Some("latest")).await;
        let mut sig = image(&config, &[&arm], None);
        sig["subject"] = desc(OCI_MANIFEST, &m);
        manifest(&store, &a, &sig, None).await;
        let sha512 = blob_alg(&store, &a, b"sha512 bytes", Algorithm::Sha512).await;
        // A foreign layer: its bytes live elsewhere.
        let foreign = Digest::of(Algorithm::Sha256, b"elsewhere");
        let mut windows = image(&config, &[], None);
        windows["layers"] = serde_json::json!([{
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": foreign.to_string(),
            "size": 9,
            "urls": ["https://example.com/layer"],
        }]);
        manifest(&store, &repo("windows"), &windows, Some("ltsc")).await;
        store
            .blob_link(&repo("windows"), &config)
            .await
            .expect("mount");
        assert!(store.blob_size(&a, &sha512).await.expect("size").is_some());

        let data = dir.path().join(layout::blob_data(&config));
        let old = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::open(&data)
            .expect("open")
            .set_modified(old)
            .expect("mtime");
        let (problems, summary) = fsck(&store, &check_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert!(summary.clean());
        assert_eq!(summary.repositories, 2);
        assert_eq!(summary.tags, 3);
        assert_eq!(summary.manifests, 5);
        assert_eq!(summary.blobs, 9, "{summary:?}");
        assert!(summary.bytes > 0);
        // The collector's view is untouched: a check marks nothing as used.
        let mtime = std::fs::metadata(&data)
            .expect("stat")
            .modified()
            .expect("mtime");
        assert!(mtime <= old + Duration::from_secs(1), "{mtime:?}");
        assert!(
            summary.line().contains(": 0 problems"),
            "{}",
            summary.line()
        );
    }

    #[tokio::test]
    async fn deleting_and_collecting_leaves_nothing_dangling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        let (old, _, _) = tagged_image(&store, &a, "latest").await;
        let (new, _, _) = tagged_image(&store, &a, "next").await;
        // `latest` moves on, the old manifest is deleted by digest and collected.
        store
            .tag_set(&a, &tag("latest"), &new)
            .await
            .expect("retag");
        assert!(store.manifest_delete(&a, &old).await.expect("delete"));
        let aged = SystemTime::now() - Duration::from_secs(7200);
        let mut stack = vec![dir.path().to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    std::fs::File::open(e.path())
                        .and_then(|f| f.set_modified(aged))
                        .expect("age");
                }
            }
        }
        let opts = gc::Options {
            grace_period: Duration::from_secs(3600),
            delete_untagged: false,
            purge_uploads_after: Duration::ZERO,
            dry_run: false,
        };
        let collected = gc::run(&store, &opts).await.expect("gc").expect("ran");
        assert!(collected.blobs.iter().any(|(d, _)| *d == old));
        let (problems, summary) = fsck(&store, &check_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert!(summary.clean());
    }

    #[tokio::test]
    async fn a_corrupt_blob_is_reported_and_quarantined_never_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        let (m, _, layer) = tagged_image(&store, &a, "v1").await;
        let (_, _, intact) = tagged_image(&store, &a, "v2").await;
        let data = dir.path().join(layout::blob_data(&layer));
        let mut bytes = std::fs::read(&data).expect("read");
        bytes[0] ^= 0x20;
        std::fs::write(&data, &bytes).expect("corrupt");

        let (problems, summary) = fsck(&store, &check_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![(Kind::CorruptBlob, Some(&layer))])
        );
        assert_eq!(problems[0].path, layout::blob_data(&layer));
        assert_eq!(problems[0].action, Action::None);
        assert!(!summary.clean());
        let line = problems[0].line(dir.path());
        assert!(
            line.starts_with(&format!(
                "corrupt-blob - {layer} {}: the bytes hash to sha256:",
                data.display()
            )),
            "{line}"
        );
        assert!(data.exists(), "a check changes nothing");

        let (problems, summary) = fsck(&store, &repair_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![
                (Kind::CorruptBlob, Some(&layer)),
                (Kind::DanglingLayerLink, Some(&layer)),
                (Kind::MissingBlob, Some(&layer)),
            ])
        );
        let quarantined = problems
            .iter()
            .find_map(|p| match &p.action {
                Action::Quarantined(to) => Some(dir.path().join(to)),
                _ => None,
            })
            .expect("quarantined");
        assert!(quarantined.starts_with(dir.path().join(layout::quarantine())));
        assert_eq!(std::fs::read(&quarantined).expect("kept"), bytes);
        assert!(!data.exists());
        assert_eq!(store.blob_size(&a, &layer).await.expect("size"), None);
        assert!(store.blob_size(&a, &intact).await.expect("size").is_some());
        // The manifest stays: pushing the layer again mends it.
        assert!(store.manifest_exists(&a, &m).await.expect("exists"));
        let missing = problems
            .iter()
            .find(|p| p.kind == Kind::MissingBlob)
            .expect("missing");
        assert_eq!(missing.action, Action::None);
        assert!(
            missing.detail.contains(&m.to_string()),
            "{}",
            missing.detail
        );
        assert_eq!((summary.problems, summary.repaired), (3, 2));
        assert!(
            summary.line().ends_with("3 problems, 2 repaired"),
            "{}",
            summary.line()
        );

        let (problems, _) = fsck(&store, &repair_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![(Kind::MissingBlob, Some(&layer))])
        );
        blob(&store, &a, b"layer of v1").await;
        let (problems, summary) = fsck(&store, &check_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert!(summary.clean());
    }

    #[tokio::test]
    async fn sha512_blobs_are_hashed_with_sha512() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        let d = blob_alg(&store, &a, b"sha512 bytes", Algorithm::Sha512).await;
        let (problems, summary) = fsck(&store, &check_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(summary.blobs, 1);
        std::fs::write(dir.path().join(layout::blob_data(&d)), b"sha512 bytez").expect("corrupt");
        let (problems, _) = fsck(&store, &check_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![(Kind::CorruptBlob, Some(&d))])
        );
        assert!(
            problems[0].detail.contains("sha512:"),
            "{}",
            problems[0].detail
        );
    }

    #[tokio::test]
    async fn dangling_links_and_tags_are_reported_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let root = dir.path();
        let a = repo("app");
        // A layer whose bytes went: its link dangles, its manifest misses it.
        let (m1, _, gone_layer) = tagged_image(&store, &a, "v1").await;
        // A tagged manifest whose bytes went: revision, tag and tag history dangle.
        let (gone_manifest, _, _) = tagged_image(&store, &a, "v2").await;
        // A referrer whose bytes went.
        let config = blob(&store, &a, b"sig config").await;
        let mut sig = image(&config, &[], None);
        sig["subject"] = desc(OCI_MANIFEST, &m1);
        let gone_sig = manifest(&store, &a, &sig, None).await;
        for d in [&gone_layer, &gone_manifest, &gone_sig] {
            std::fs::remove_dir_all(root.join(layout::blob_dir(d))).expect("rm");
        }

        let (problems, summary) = fsck(&store, &check_opts()).await;
        let want = expect(vec![
            (Kind::DanglingLayerLink, Some(&gone_layer)),
            (Kind::MissingBlob, Some(&gone_layer)),
            (Kind::DanglingRevisionLink, Some(&gone_manifest)),
            (Kind::DanglingTag, Some(&gone_manifest)),
            (Kind::DanglingTagIndexLink, Some(&gone_manifest)),
            (Kind::DanglingRevisionLink, Some(&gone_sig)),
            (Kind::DanglingReferrerLink, Some(&gone_sig)),
        ]);
        assert_eq!(kinds(&problems), want);
        assert_eq!(summary.repaired, 0);
        let tag_line = problems
            .iter()
            .find(|p| p.kind == Kind::DanglingTag)
            .expect("tag")
            .line(root);
        assert!(
            tag_line.starts_with(&format!(
                "dangling-tag app {gone_manifest} {}: tag v2 ",
                root.join(layout::tag_current_link(&a, &tag("v2")))
                    .display()
            )),
            "{tag_line}"
        );

        let (problems, summary) = fsck(&store, &repair_opts()).await;
        // The tag goes with its history.
        let want: Vec<_> = want
            .into_iter()
            .filter(|(k, _)| *k != Kind::DanglingTagIndexLink)
            .collect();
        assert_eq!(kinds(&problems), want);
        for p in &problems {
            let expected = if p.kind == Kind::MissingBlob {
                Action::None
            } else {
                Action::Removed
            };
            assert_eq!(p.action, expected, "{p:?}");
        }
        assert_eq!(summary.repaired, 5);
        assert!(!root.join(layout::layer_dir(&a, &gone_layer)).exists());
        assert!(!root.join(layout::revision_dir(&a, &gone_manifest)).exists());
        assert!(!root.join(layout::tag_dir(&a, &tag("v2"))).exists());
        assert!(
            !root.join(layout::referrers_root(&a)).exists(),
            "emptied referrer dirs go"
        );
        let tags = store.tags(&a).await.expect("tags").unwrap_or_default();
        assert_eq!(tags, vec![tag("v1")]);
        let (problems, _) = fsck(&store, &check_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![(Kind::MissingBlob, Some(&gone_layer))])
        );
    }

    #[tokio::test]
    async fn truncated_and_wrong_links_are_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let root = dir.path();
        let a = repo("app");
        let (_, _, layer) = tagged_image(&store, &a, "v1").await;
        let (m2, config2, _) = tagged_image(&store, &a, "v2").await;
        std::fs::write(root.join(layout::layer_link(&a, &layer)), b"").expect("truncate");
        std::fs::write(
            root.join(layout::tag_current_link(&a, &tag("v2"))),
            b"sha256:ab",
        )
        .expect("truncate");
        // A layer link naming another digest than its path's.
        std::fs::write(root.join(layout::layer_link(&a, &config2)), m2.to_string())
            .expect("rewrite");

        let (problems, _) = fsck(&store, &check_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![
                (Kind::CorruptLink, None),
                (Kind::CorruptLink, Some(&layer)),
                (Kind::CorruptLink, Some(&config2)),
                // What the manifests name is not linked now.
                (Kind::UnlinkedBlob, Some(&layer)),
                (Kind::UnlinkedBlob, Some(&config2)),
            ])
        );
        let tag_problem = problems
            .iter()
            .find(|p| p.digest.is_none())
            .expect("tag link");
        assert!(
            tag_problem.detail.starts_with("tag v2: "),
            "{}",
            tag_problem.detail
        );

        let (problems, summary) = fsck(&store, &repair_opts()).await;
        assert_eq!(summary.repaired, 3, "{problems:?}");
        assert!(!root.join(layout::layer_dir(&a, &layer)).exists());
        assert!(!root.join(layout::tag_dir(&a, &tag("v2"))).exists());
        assert_eq!(
            store.tags(&a).await.expect("tags").unwrap_or_default(),
            vec![tag("v1")]
        );
        let (problems, _) = fsck(&store, &check_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![
                (Kind::UnlinkedBlob, Some(&layer)),
                (Kind::UnlinkedBlob, Some(&config2)),
            ])
        );
    }

    #[tokio::test]
    async fn an_index_missing_a_child_is_a_problem_unless_sparse_indexes_are_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("multi");
        let (m, _, _) = tagged_image(&store, &a, "amd64").await;
        let absent = Digest::of(Algorithm::Sha256, b"an arm64 manifest never pushed");
        manifest(&store, &a, &index(&[&m, &absent]), Some("latest")).await;

        let (problems, _) = fsck(&store, &check_opts()).await;
        assert_eq!(
            kinds(&problems),
            expect(vec![(Kind::MissingManifest, Some(&absent))])
        );
        let sparse = Options {
            require_index_children: false,
            ..check_opts()
        };
        let (problems, summary) = fsck(&store, &sparse).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert!(summary.clean());
        // Not something a repair removes.
        let (problems, _) = fsck(&store, &repair_opts()).await;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].action, Action::None);
    }

    #[tokio::test]
    async fn an_upload_in_progress_is_not_a_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        tagged_image(&store, &a, "v1").await;
        let id = store.upload_start(&a).await.expect("start");
        let mut w = store.upload_writer(&a, &id, 0).await.expect("writer");
        w.write(Bytes::from_static(b"half of a layer"))
            .await
            .expect("write");
        w.finish().await.expect("finish");
        // And one that only a crash left, in another repository.
        let b = repo("only/uploads");
        store.upload_start(&b).await.expect("start");

        let (problems, summary) = fsck(&store, &check_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(summary.blobs, 3);
        assert_eq!(store.upload_size(&a, &id).await.expect("upload"), 15);
        let (problems, _) = fsck(&store, &repair_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(store.upload_size(&a, &id).await.expect("upload"), 15);
    }

    #[tokio::test]
    async fn a_repair_is_refused_while_a_collection_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (_, _, layer) = tagged_image(&store, &repo("app"), "v1").await;
        std::fs::remove_dir_all(dir.path().join(layout::blob_dir(&layer))).expect("rm");
        let held = store
            .driver
            .try_lock(&layout::gc_lock(), true)
            .await
            .expect("lock");
        assert!(matches!(held, Locked::Held(_)));
        let refused = run(&store, &repair_opts(), &mut |_: &Problem| {})
            .await
            .expect("run");
        assert!(refused.is_none());
        assert!(dir
            .path()
            .join(layout::layer_link(&repo("app"), &layer))
            .exists());
        // A check runs beside it; it confirms what looks broken once the collection is
        // over.
        let collection_ends = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
            Instant::now()
        };
        let checked = async {
            let r = fsck(&store, &check_opts()).await;
            (r, Instant::now())
        };
        let (ended, ((problems, _), done)) = tokio::join!(collection_ends, checked);
        assert!(done >= ended, "the check waited for the collector");
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[tokio::test]
    async fn a_blob_in_the_collectors_trash_is_not_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        let (_, _, layer) = tagged_image(&store, &a, "v1").await;
        // As a collector leaves it mid-decision (or dead).
        let root = dir.path();
        std::fs::create_dir_all(root.join(layout::trash())).expect("mkdir");
        std::fs::rename(
            root.join(layout::blob_dir(&layer)),
            root.join(layout::trash_blob(&layer)),
        )
        .expect("rename");
        let (problems, _) = fsck(&store, &check_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        // A repair excludes collectors: it puts the blob back first.
        let (problems, _) = fsck(&store, &repair_opts()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert!(store.blob_size(&a, &layer).await.expect("size").is_some());
    }

    #[tokio::test]
    async fn a_repair_leaves_what_was_mended_since_it_was_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        let (m, _, layer) = tagged_image(&store, &a, "v1").await;
        let opts = repair_opts();
        let mut report = |_: &Problem| {};
        let mut c = Checker {
            store: &store,
            opts: &opts,
            report: &mut report,
            summary: Summary::default(),
            corrupt: HashSet::new(),
            suspects: Vec::new(),
        };
        // Found dangling, then pushed again before the repair came to them.
        let link = Target::Link {
            link: layout::layer_link(&a, &layer),
            digest: layer.clone(),
            dir: layout::layer_dir(&a, &layer),
            relink: Some(a.clone()),
            prune: None,
        };
        assert_eq!(c.repair(&link).await.expect("repair"), None);
        let t = Target::Tag {
            repo: a.clone(),
            tag: tag("v1"),
            digest: m.clone(),
        };
        assert_eq!(c.repair(&t).await.expect("repair"), None);
        assert!(store.blob_size(&a, &layer).await.expect("size").is_some());
        assert_eq!(
            store.tags(&a).await.expect("tags").unwrap_or_default(),
            vec![tag("v1")]
        );
    }

    #[tokio::test]
    async fn what_was_mended_meanwhile_is_not_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = repo("app");
        let (_, _, layer) = tagged_image(&store, &a, "v1").await;
        let blob_dir = dir.path().join(layout::blob_dir(&layer));
        let kept = dir.path().join("kept");
        std::fs::rename(&blob_dir, &kept).expect("move away");
        let (mut problems, mut suspects) = (Vec::new(), Vec::new());
        {
            let opts = check_opts();
            let mut report = |p: &Problem| problems.push(p.clone());
            let mut c = Checker {
                store: &store,
                opts: &opts,
                report: &mut report,
                summary: Summary::default(),
                corrupt: HashSet::new(),
                suspects: Vec::new(),
            };
            c.repository(&a).await.expect("scan");
            assert_eq!(c.suspects.len(), 2, "a dangling link and a missing blob");
            // A client pushes the layer again before the check ends.
            std::fs::rename(&kept, &blob_dir).expect("back");
            c.confirm().await.expect("confirm");
            suspects.append(&mut c.suspects);
        }
        assert!(problems.is_empty(), "{problems:?}");
        assert!(suspects.is_empty());
    }
}
