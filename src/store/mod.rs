//! The registry's storage: blobs, uploads, manifests, tags and referrers in distribution's
//! on-disk layout ([`layout`]), through the filesystem driver ([`fs`]).
//!
//! This layer knows nothing of HTTP. It hashes each upload in one pass while the bytes
//! arrive, on a blocking thread, and commits it with a rename after the digest matches; a
//! blob that failed verification is never visible. Upload state lives on disk (the bytes
//! received so far), with the running hash cached in memory: a second process, or this one
//! after a restart, rebuilds the hash from the file.
//!
//! What tells a client that a blob or manifest is there also marks it as used (its mtime),
//! so the garbage collector ([`gc`]) leaves it alone for the grace period. [`fsck`] checks
//! the whole store (and repairs what is provably broken).

pub(crate) mod content;
pub(crate) mod driver;
#[cfg(test)]
mod fixtures;
pub(crate) mod fs;
pub mod fsck;
pub mod gc;
pub(crate) mod layout;
pub mod s3;
#[cfg(test)]
pub(crate) mod suite;

use crate::oci::{Algorithm, Digest, Reference, RepositoryName, Tag, UploadId};
use bytes::Bytes;
use sha2::Digest as _;
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

pub use content::{BlobSource, Content, LinkBarrier, UploadSink};
pub use driver::{Append, Driver, Locked, Meta, Reads, Renamed, Usage};
pub use fs::FsDriver;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("upload is at offset {actual}, not {expected}")]
    UploadOffset { expected: u64, actual: u64 },
    #[error("upload unknown")]
    UploadUnknown,
    #[error("upload is in use by another request")]
    UploadBusy,
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{path}: corrupt link: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("{0}")]
    Internal(String),
    /// The medium cannot be reached or keeps refusing (an object store that is down):
    /// 503, and never "not found".
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A mirrored repository's upstream cannot give what is not cached (the text names
    /// the upstream and says why): 503.
    #[error("{0}")]
    Upstream(String),
}

impl Error {
    pub fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

pub use crate::body::BlobFile;
pub use fs::{cached, OpenBlob, Prefetch};

// The blocking halves of the reads above, for `Driver::reading`: one hand-off per
// request however many files it reads.

/// The digest a link file holds; `None` when there is no such file.
fn read_link_in(fs: &impl Reads, path: &Path) -> Result<Option<Digest>, Error> {
    match fs.read(path)? {
        Some(bytes) => parse_link(path, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The size of a blob linked into `repo` (as a layer, or as a manifest revision), marked
/// as used; `None` when it is not linked there or its bytes are missing.
fn linked_size(fs: &impl Reads, repo: &RepositoryName, d: &Digest) -> Result<Option<u64>, Error> {
    let linked =
        |path: PathBuf| -> Result<bool, Error> { Ok(read_link_in(fs, &path)?.as_ref() == Some(d)) };
    if !linked(layout::layer_link(repo, d))? && !linked(layout::revision_link(repo, d))? {
        return Ok(None);
    }
    marked_size(fs, d)
}

/// The size of a blob in the shared store, marked as used (see `gc`).
fn marked_size(fs: &impl Reads, d: &Digest) -> Result<Option<u64>, Error> {
    Ok(fs
        .mark_used(&layout::blob_data(d), gc::TIMESTAMP_SLACK)?
        .filter(|m| !m.is_dir)
        .map(|m| m.size))
}

/// The digest a link file holds.
fn parse_link(path: &Path, bytes: &[u8]) -> Result<Digest, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Corrupt {
        path: path.to_owned(),
        why: "not UTF-8".into(),
    })?;
    text.trim()
        .parse()
        .map_err(|e: crate::oci::ParseError| Error::Corrupt {
            path: path.to_owned(),
            why: e.to_string(),
        })
}

/// Tag links checked at once when tags are listed.
const TAG_STATS: usize = 32;

/// The store over a medium ([`Driver`]; the filesystem unless named). Cheap to clone.
pub struct Store<D: Driver = FsDriver> {
    driver: D,
    hashes: Arc<Mutex<HashMap<UploadKey, (u64, sha2::Sha256)>>>,
    /// `storage.read_only`, shared by every clone (the API and the collector).
    read_only: Arc<std::sync::atomic::AtomicBool>,
}

type UploadKey = (RepositoryName, UploadId);

/// Chunks (pingora reads up to 64 KiB each) buffered between the connection and the
/// hashing/writing thread: enough to keep both busy, 512 KiB at most per upload.
const WRITE_QUEUE: usize = 8;

impl<D: Driver> Clone for Store<D> {
    fn clone(&self) -> Self {
        Self {
            driver: self.driver.clone(),
            hashes: self.hashes.clone(),
            read_only: self.read_only.clone(),
        }
    }
}

impl Store<FsDriver> {
    /// The store on the filesystem at `root` (made if missing).
    pub fn open(root: &Path) -> Result<Self, Error> {
        Ok(Self::on(FsDriver::open(root)?))
    }

    pub fn root(&self) -> &Path {
        self.driver.root()
    }
}

impl<D: Driver> Store<D> {
    /// The store on `driver`'s medium.
    pub fn on(driver: D) -> Self {
        Self {
            driver,
            hashes: Arc::default(),
            read_only: Arc::default(),
        }
    }

    /// Where the store is, for messages.
    pub fn location(&self) -> String {
        self.driver.location()
    }

    /// Whether writes are refused (`storage.read_only`).
    pub fn read_only(&self) -> bool {
        self.read_only.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_read_only(&self, on: bool) {
        self.read_only
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes of blob data in the store (a walk of the blob tree: for metrics, cached by
    /// the caller).
    pub async fn blob_bytes(&self) -> Result<u64, Error> {
        Ok(self
            .driver
            .usage(&layout::blobs())
            .await?
            .map_or(0, |u| u.bytes))
    }

    /// Whether the store takes writes: a file made and removed at its root.
    pub async fn writable(&self) -> Result<(), Error> {
        self.driver
            .write_atomic(
                std::path::Path::new(".berth-ready"),
                Bytes::from_static(b"ok"),
            )
            .await?;
        self.driver
            .remove_file(std::path::Path::new(".berth-ready"))
            .await
            .map(|_| ())
    }

    // ---- blobs ----

    /// Size of a blob if it is linked into `repo` (as a layer, config or manifest) and its
    /// bytes are present. One blocking call (a blob HEAD is the most frequent request of a
    /// push).
    pub async fn blob_size(&self, repo: &RepositoryName, d: &Digest) -> Result<Option<u64>, Error> {
        let (repo, d) = (repo.clone(), d.clone());
        self.driver
            .reading(move |fs| linked_size(fs, &repo, &d))
            .await
    }

    /// As [`Store::blob_size`], and the blob opened for reading, in one blocking call.
    pub async fn blob_open(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<Option<(u64, BlobSource)>, Error> {
        let (repo, d) = (repo.clone(), d.clone());
        self.driver
            .reading(move |fs| {
                let Some(size) = linked_size(fs, &repo, &d)? else {
                    return Ok(None);
                };
                // Gone between the stat and the open (the collector): not there.
                Ok(fs.open_blob(&layout::blob_data(&d))?.map(|b| (size, b)))
            })
            .await
    }

    /// Size of a blob in the shared blob store, whichever repository it came from. The
    /// blob is marked as used: a client told it is there (a HEAD before a manifest push, a
    /// mount) can rely on it for the collector's grace period.
    pub async fn blob_size_global(&self, d: &Digest) -> Result<Option<u64>, Error> {
        let d = d.clone();
        self.driver.reading(move |fs| marked_size(fs, &d)).await
    }

    /// Links an existing blob into `repo` (a mount, or the end of an upload).
    pub async fn blob_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error> {
        self.write_link(&layout::layer_link(repo, d), d).await
    }

    /// Unlinks a blob from `repo`; `false` when it was not linked. The bytes stay in the
    /// shared blob store until garbage collection.
    pub async fn blob_unlink(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        let link = layout::layer_link(repo, d);
        match link.parent() {
            Some(dir) if self.driver.stat(&link).await?.is_some() => {
                self.driver.remove_dir_all(dir).await
            }
            _ => Ok(false),
        }
    }

    // ---- uploads ----

    /// Starts an upload session in `repo`.
    pub async fn upload_start(&self, repo: &RepositoryName) -> Result<UploadId, Error> {
        let id = UploadId::new();
        let started = Bytes::from(crate::timestamp::seconds(SystemTime::now()));
        self.driver
            .create_upload(
                &layout::upload_data(repo, &id),
                &layout::upload_started_at(repo, &id),
                started,
            )
            .await?;
        Ok(id)
    }

    /// Bytes received so far, or `UploadUnknown`.
    pub async fn upload_size(&self, repo: &RepositoryName, id: &UploadId) -> Result<u64, Error> {
        match self.driver.stat(&layout::upload_data(repo, id)).await? {
            Some(m) if !m.is_dir => Ok(m.size),
            _ => Err(Error::UploadUnknown),
        }
    }

    /// Opens the upload for appending at `offset` (which must be its current size).
    pub async fn upload_writer(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: u64,
    ) -> Result<UploadWriter<D::Append>, Error> {
        let data = layout::upload_data(repo, id);
        let mut file = match self.driver.append_at(&data, offset).await {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(Error::UploadUnknown)
            }
            r => r?,
        };
        let key = (repo.clone(), id.clone());
        let cached = self.take_hash(&key, offset);
        let reads = self.driver.reads();
        let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let worker = tokio::task::spawn_blocking(move || {
            let mut hasher = match cached {
                Some(h) => h,
                None => hash_file_prefix(&reads, &data, offset)?,
            };
            let mut result = Ok(());
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                if let Err(e) = file.write_all(&chunk) {
                    result = Err(e);
                    break;
                }
            }
            Ok((file, hasher, result))
        });
        Ok(UploadWriter {
            tx: Some(tx),
            worker,
            key,
            offset,
            hashes: self.hashes.clone(),
        })
    }

    /// Verifies the upload against `expected` and makes it the blob: a rename, after which
    /// the blob is linked into `repo` and the session is gone. On a mismatch the session is
    /// removed and nothing becomes visible.
    pub async fn upload_commit(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<u64, Error> {
        let data = layout::upload_data(repo, id);
        let size = self.upload_size(repo, id).await?;
        let key = (repo.clone(), id.clone());
        let cached = match expected.algorithm() {
            Algorithm::Sha256 => self.take_hash(&key, size),
            Algorithm::Sha512 => None,
        };
        let actual = match cached {
            Some(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            None => {
                let data = data.clone();
                let alg = expected.algorithm();
                self.driver
                    .reading(move |fs| hash_file(fs, &data, alg))
                    .await?
            }
        };
        if &actual != expected {
            self.upload_cancel(repo, id).await?;
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.driver
            .commit(&data, &layout::blob_data(expected))
            .await?;
        self.blob_link(repo, expected).await?;
        self.driver
            .remove_dir_all(&layout::upload_dir(repo, id))
            .await?;
        Ok(size)
    }

    /// Cancels an upload session; `false` when there was none.
    pub async fn upload_cancel(&self, repo: &RepositoryName, id: &UploadId) -> Result<bool, Error> {
        self.forget_hash(&(repo.clone(), id.clone()));
        self.driver
            .remove_dir_all(&layout::upload_dir(repo, id))
            .await
    }

    /// Stores a small blob given whole (a manifest), durably; then it is linked as a
    /// manifest revision of `repo` by [`Store::manifest_link`].
    pub async fn blob_put_small(&self, d: &Digest, bytes: Bytes) -> Result<(), Error> {
        let path = layout::blob_data(d);
        if self
            .driver
            .mark_used(&path, std::time::Duration::ZERO)
            .await?
            .is_some_and(|m| m.size == bytes.len() as u64)
        {
            return Ok(());
        }
        self.driver.write_atomic(&path, bytes).await
    }

    /// Reads a small blob whole (manifests only: they are bounded by the manifest limit).
    pub async fn blob_read_small(&self, d: &Digest) -> Result<Option<Bytes>, Error> {
        Ok(self
            .driver
            .read(&layout::blob_data(d))
            .await?
            .map(Bytes::from))
    }

    // ---- manifests and tags ----

    /// Links manifest `d` into `repo` as a revision; one that is there already is marked
    /// as used (a re-push keeps it from the collector, as a new link would).
    pub async fn manifest_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error> {
        let link = layout::revision_link(repo, d);
        if self.read_link(&link).await.ok().flatten().as_ref() == Some(d)
            && self
                .driver
                .mark_used(&link, std::time::Duration::ZERO)
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.driver
            .write_atomic(&link, Bytes::from(d.to_string()))
            .await
    }

    /// Whether `d` is a manifest revision of `repo`, marking it as used: an index being
    /// pushed that names it keeps it from the collector (see [`gc`]).
    pub async fn manifest_use(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        let link = layout::revision_link(repo, d);
        if self
            .driver
            .mark_used(&link, std::time::Duration::ZERO)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        Ok(self.read_link(&link).await?.as_ref() == Some(d))
    }

    /// Holds the collector off while a manifest push checks what it references and links
    /// itself: a shared lock, taken after the body is read and held until the push is
    /// answered (see [`gc`] for why). Dropping it lets go.
    pub async fn link_guard(&self) -> Result<D::Lock, Error> {
        self.driver.lock_shared(&layout::link_lock()).await
    }

    /// Whether `d` is a manifest revision of `repo`.
    pub async fn manifest_exists(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        Ok(self
            .read_link(&layout::revision_link(repo, d))
            .await?
            .as_ref()
            == Some(d))
    }

    /// What a manifest GET/HEAD needs: the digest a reference names in `repo` and the
    /// manifest's bytes, if that manifest is present (a tag's link, the revision link, the
    /// blob) in one blocking call.
    pub async fn manifest_fetch(
        &self,
        repo: &RepositoryName,
        r: &Reference,
    ) -> Result<Option<(Digest, Bytes)>, Error> {
        let repo = repo.clone();
        let r = r.clone();
        self.driver
            .reading(move |fs| {
                let d = match r {
                    Reference::Tag(t) => {
                        match read_link_in(fs, &layout::tag_current_link(&repo, &t))? {
                            Some(d) => d,
                            None => return Ok(None),
                        }
                    }
                    Reference::Digest(d) => d,
                };
                if read_link_in(fs, &layout::revision_link(&repo, &d))?.as_ref() != Some(&d) {
                    return Ok(None);
                }
                Ok(fs
                    .read(&layout::blob_data(&d))?
                    .map(|b| (d, Bytes::from(b))))
            })
            .await
    }

    /// Points `tag` at `d`, keeping the tag's history in its index.
    pub async fn tag_set(&self, repo: &RepositoryName, tag: &Tag, d: &Digest) -> Result<(), Error> {
        self.write_link(&layout::tag_index_link(repo, tag, d), d)
            .await?;
        self.write_link(&layout::tag_current_link(repo, tag), d)
            .await
    }

    /// Removes a tag; `false` when it did not exist.
    pub async fn tag_delete(&self, repo: &RepositoryName, tag: &Tag) -> Result<bool, Error> {
        if self
            .read_link(&layout::tag_current_link(repo, tag))
            .await?
            .is_none()
        {
            return Ok(false);
        }
        self.driver
            .remove_dir_all(&layout::tag_dir(repo, tag))
            .await
    }

    /// Removes a manifest revision and every tag that points at it; `false` when it was
    /// not there.
    pub async fn manifest_delete(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        if !self.manifest_exists(repo, d).await? {
            return Ok(false);
        }
        for t in self.tags(repo).await?.unwrap_or_default() {
            if self
                .read_link(&layout::tag_current_link(repo, &t))
                .await?
                .as_ref()
                == Some(d)
            {
                self.driver
                    .remove_dir_all(&layout::tag_dir(repo, &t))
                    .await?;
            } else {
                // The tag's history forgets it too: once the collector takes its bytes,
                // the entry would name nothing (`fsck` reports such links).
                self.driver
                    .remove_dir_all(&layout::tag_index_entry(repo, &t, d))
                    .await?;
            }
        }
        self.driver
            .remove_dir_all(&layout::revision_dir(repo, d))
            .await
    }

    /// Tags of `repo`, sorted; `None` when the repository has never had a tag (as
    /// distribution answers `NAME_UNKNOWN` then).
    pub async fn tags(&self, repo: &RepositoryName) -> Result<Option<Vec<Tag>>, Error> {
        if self.driver.stat(&layout::tags_dir(repo)).await?.is_none() {
            return Ok(None);
        }
        let names: Vec<Tag> = self
            .driver
            .list_dirs(&layout::tags_dir(repo))
            .await?
            .iter()
            .filter_map(|n| n.parse::<Tag>().ok())
            .collect();
        // A tag whose link was removed leaves its directory: only linked ones count. The
        // checks run TAG_STATS at a time (a thousand tags were a thousand hand-offs in a row).
        let mut tags = Vec::with_capacity(names.len());
        for batch in names.chunks(TAG_STATS) {
            let keys: Vec<_> = batch
                .iter()
                .map(|t| layout::tag_current_link(repo, t))
                .collect();
            let found =
                futures_util::future::join_all(keys.iter().map(|k| self.driver.stat(k))).await;
            for (t, f) in batch.iter().zip(found) {
                if f?.is_some() {
                    tags.push(t.clone());
                }
            }
        }
        Ok(Some(tags))
    }

    /// Deletes a whole repository: its tags, manifest links, blob links, upload sessions
    /// and referrer index; repositories nested below it stay, and the blobs come back at
    /// the next garbage collection. `false` when there was no such repository.
    pub async fn repository_delete(&self, repo: &RepositoryName) -> Result<bool, Error> {
        let dir = layout::repository(repo);
        let _linking = self.link_guard().await?;
        let mut any = false;
        for part in ["_manifests", "_layers", "_uploads", "_referrers"] {
            any |= self.driver.remove_dir_all(&dir.join(part)).await?;
        }
        if any {
            self.driver
                .remove_empty_dirs_up(&dir, &layout::repositories())
                .await?;
        }
        Ok(any)
    }

    /// Every repository that holds blobs or manifests, in distribution's catalog order
    /// ([`catalog_order`]); a repository with only an upload in progress is not listed.
    pub async fn repositories(&self) -> Result<Vec<RepositoryName>, Error> {
        let mut names: Vec<RepositoryName> = self
            .driver
            .find_dirs_with(&layout::repositories(), &["_layers", "_manifests"])
            .await?
            .into_iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        names.sort_by(|a, b| catalog_order(a.as_str(), b.as_str()));
        Ok(names)
    }

    // ---- referrers ----

    /// Records that manifest `referrer` in `repo` names `subject`.
    pub async fn referrer_add(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error> {
        self.write_link(&layout::referrer_link(repo, subject, referrer), referrer)
            .await
    }

    pub async fn referrer_remove(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error> {
        let link = layout::referrer_link(repo, subject, referrer);
        if let Some(dir) = link.parent() {
            self.driver.remove_dir_all(dir).await?;
        }
        Ok(())
    }

    /// Manifests in `repo` recorded as referring to `subject` that are still present.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Digest>, Error> {
        let dir = layout::referrers_dir(repo, subject);
        let mut out = Vec::new();
        for alg in self.driver.list_dirs(&dir).await? {
            for hex in self.driver.list_dirs(&dir.join(&alg)).await? {
                let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() else {
                    continue;
                };
                if self.manifest_exists(repo, &d).await? {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    // ---- links ----

    async fn read_link(&self, path: &Path) -> Result<Option<Digest>, Error> {
        let path = path.to_owned();
        self.driver.reading(move |fs| read_link_in(fs, &path)).await
    }

    async fn write_link(&self, path: &Path, d: &Digest) -> Result<(), Error> {
        if self.read_link(path).await.ok().flatten().as_ref() == Some(d) {
            return Ok(());
        }
        self.driver
            .write_atomic(path, Bytes::from(d.to_string()))
            .await
    }

    // ---- the running-hash cache ----

    fn take_hash(&self, key: &UploadKey, offset: u64) -> Option<sha2::Sha256> {
        let mut map = self.hashes.lock().unwrap_or_else(|p| p.into_inner());
        match map.remove(key) {
            Some((o, h)) if o == offset => Some(h),
            _ => None,
        }
    }

    fn forget_hash(&self, key: &UploadKey) {
        self.hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// What the hashing/writing thread hands back: the file, the running hash, and how the
/// writes went.
type WorkerEnd<A> = (A, sha2::Sha256, Result<(), Error>);

/// Appends a request body to an upload: chunks go to a blocking thread that hashes and
/// writes them, so hashing overlaps with receiving.
pub struct UploadWriter<A: Append> {
    tx: Option<mpsc::Sender<Bytes>>,
    worker: tokio::task::JoinHandle<Result<WorkerEnd<A>, Error>>,
    key: UploadKey,
    offset: u64,
    hashes: Arc<Mutex<HashMap<UploadKey, (u64, sha2::Sha256)>>>,
}

impl<A: Append> UploadWriter<A> {
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        let sent = match &self.tx {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The worker stopped early: its error is reported by finish/abort.
            self.tx = None;
            Err(Error::Internal("upload writer stopped".into()))
        }
    }

    /// Finishes the request's part of the upload; returns the upload's new size.
    pub async fn finish(mut self) -> Result<u64, Error> {
        self.tx = None;
        let (file, hasher, result) = self.join().await?;
        if let Err(e) = result {
            blocking_end(move || file.rollback()).await?;
            return Err(e);
        }
        let file = {
            let written = file.written();
            blocking_end(move || file.finish()).await?;
            written
        };
        let size = self.offset + file;
        self.hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.key.clone(), (size, hasher));
        Ok(size)
    }

    /// Drops everything this request appended (a failed or short body). Returns the
    /// writing thread's own error if it had one (a full disk, say), which is then the real
    /// cause of the failure.
    pub async fn abort(mut self) -> Result<(), Error> {
        self.tx = None;
        let (file, _, result) = self.join().await?;
        blocking_end(move || file.rollback()).await?;
        result
    }

    async fn join(&mut self) -> Result<WorkerEnd<A>, Error> {
        (&mut self.worker)
            .await
            .map_err(|e| Error::Internal(format!("upload worker failed: {e}")))?
    }
}

/// Runs the end of an upload request (keep or drop what it wrote) on the blocking pool:
/// on an object store it is requests.
async fn blocking_end(f: impl FnOnce() -> Result<(), Error> + Send + 'static) -> Result<(), Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("upload worker failed: {e}")))?
}

/// The order distribution's catalog walks repositories in: path components first, so
/// `a/b` comes before `a-b` (`/` compares lowest).
pub fn catalog_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| {
        s.bytes()
            .map(|c| if c == b'/' { 0 } else { c })
            .collect::<Vec<u8>>()
    };
    key(a).cmp(&key(b))
}

/// SHA-256 state after the first `len` bytes of an upload file (rebuilding a hash that is
/// not cached: another process received those bytes, or this one restarted).
fn hash_file_prefix(fs: &impl Reads, rel: &Path, len: u64) -> Result<sha2::Sha256, Error> {
    let mut h = sha2::Sha256::new();
    if len > 0 {
        let f = fs.open_read(rel)?;
        let mut r = io::BufReader::with_capacity(1 << 20, f.take(len));
        io::copy(&mut r, &mut h).map_err(|e| Error::io(rel, e))?;
    }
    Ok(h)
}

fn hash_file(fs: &impl Reads, rel: &Path, alg: Algorithm) -> Result<Digest, Error> {
    let f = fs.open_read(rel)?;
    let mut r = io::BufReader::with_capacity(1 << 20, f);
    let hash = match alg {
        Algorithm::Sha256 => {
            let mut h = sha2::Sha256::new();
            io::copy(&mut r, &mut h).map_err(|e| Error::io(rel, e))?;
            h.finalize().to_vec()
        }
        Algorithm::Sha512 => {
            let mut h = sha2::Sha512::new();
            io::copy(&mut r, &mut h).map_err(|e| Error::io(rel, e))?;
            h.finalize().to_vec()
        }
    };
    Ok(Digest::from_hash(alg, &hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepositoryName {
        "team/app".parse().expect("name")
    }

    async fn push(store: &Store, chunks: &[&[u8]]) -> (UploadId, u64) {
        let id = store.upload_start(&repo()).await.expect("start");
        let mut off = 0;
        for c in chunks {
            let mut w = store
                .upload_writer(&repo(), &id, off)
                .await
                .expect("writer");
            w.write(Bytes::copy_from_slice(c)).await.expect("write");
            off = w.finish().await.expect("finish");
        }
        (id, off)
    }

    #[tokio::test]
    async fn chunked_upload_commits_and_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (id, size) = push(&store, &[b"hello ", b"world"]).await;
        assert_eq!(size, 11);
        let d = Digest::of(Algorithm::Sha256, b"hello world");
        assert_eq!(
            store.upload_commit(&repo(), &id, &d).await.expect("commit"),
            11
        );
        assert_eq!(store.blob_size(&repo(), &d).await.expect("size"), Some(11));
        let other: RepositoryName = "other".parse().expect("name");
        assert_eq!(store.blob_size(&other, &d).await.expect("size"), None);
        assert!(matches!(
            store.upload_size(&repo(), &id).await,
            Err(Error::UploadUnknown)
        ));
        let link = std::fs::read_to_string(dir.path().join(layout::layer_link(&repo(), &d)))
            .expect("link");
        assert_eq!(
            link,
            d.to_string(),
            "link files hold the digest with no newline"
        );
    }

    #[tokio::test]
    async fn rehashes_when_the_cache_is_cold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (id, _) = push(&store, &[b"abc"]).await;
        // A second store on the same root (another process) continues the upload.
        let other = Store::open(dir.path()).expect("open");
        let mut w = other.upload_writer(&repo(), &id, 3).await.expect("writer");
        w.write(Bytes::from_static(b"def")).await.expect("write");
        w.finish().await.expect("finish");
        let d = Digest::of(Algorithm::Sha256, b"abcdef");
        other.upload_commit(&repo(), &id, &d).await.expect("commit");
        assert_eq!(store.blob_size(&repo(), &d).await.expect("size"), Some(6));
    }

    #[tokio::test]
    async fn mismatch_leaves_nothing_visible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (id, _) = push(&store, &[b"abc"]).await;
        let wrong = Digest::of(Algorithm::Sha256, b"xyz");
        assert!(matches!(
            store.upload_commit(&repo(), &id, &wrong).await,
            Err(Error::DigestMismatch { .. })
        ));
        assert_eq!(store.blob_size_global(&wrong).await.expect("stat"), None);
        let right = Digest::of(Algorithm::Sha256, b"abc");
        assert_eq!(store.blob_size_global(&right).await.expect("stat"), None);
    }

    #[tokio::test]
    async fn sha512_uploads_are_verified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (id, _) = push(&store, &[b"abc"]).await;
        let d = Digest::of(Algorithm::Sha512, b"abc");
        store.upload_commit(&repo(), &id, &d).await.expect("commit");
        assert_eq!(store.blob_size(&repo(), &d).await.expect("size"), Some(3));
    }

    #[tokio::test]
    async fn tags_and_manifest_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let body = Bytes::from_static(b"{}");
        let d = Digest::of(Algorithm::Sha256, &body);
        store.blob_put_small(&d, body).await.expect("put");
        store.manifest_link(&repo(), &d).await.expect("link");
        for t in ["b", "a"] {
            store
                .tag_set(&repo(), &t.parse().expect("tag"), &d)
                .await
                .expect("tag");
        }
        let tags: Vec<String> = store
            .tags(&repo())
            .await
            .expect("tags")
            .unwrap_or_default()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(store.repositories().await.expect("repos"), vec![repo()]);
        // A tag moved on keeps the deleted manifest in its history no longer.
        let moved: Tag = "moved".parse().expect("tag");
        let next = Bytes::from_static(b"{\"next\":1}");
        let n = Digest::of(Algorithm::Sha256, &next);
        store.blob_put_small(&n, next).await.expect("put");
        store.manifest_link(&repo(), &n).await.expect("link");
        store.tag_set(&repo(), &moved, &d).await.expect("tag");
        store.tag_set(&repo(), &moved, &n).await.expect("retag");
        let history = dir.path().join(layout::tag_index_link(&repo(), &moved, &d));
        assert!(history.exists());
        assert!(store.manifest_delete(&repo(), &d).await.expect("delete"));
        assert!(!history.exists());
        assert!(dir
            .path()
            .join(layout::tag_index_link(&repo(), &moved, &n))
            .exists());
        assert_eq!(
            store.tags(&repo()).await.expect("tags").map(|t| t.len()),
            Some(1)
        );
        let never: RepositoryName = "never/tagged".parse().expect("name");
        assert_eq!(store.tags(&never).await.expect("tags"), None);
        assert!(!store.manifest_delete(&repo(), &d).await.expect("delete"));
    }

    #[test]
    fn catalog_order_puts_path_components_first() {
        let mut v = vec!["e2e/deep-sea", "e2e/deep/nested", "a", "a/b", "a-b"];
        v.sort_by(|a, b| catalog_order(a, b));
        assert_eq!(v, ["a", "a/b", "a-b", "e2e/deep/nested", "e2e/deep-sea"]);
    }
}
