//! The storage medium beneath [`super::Store`]: what a backend must provide so that the
//! store's layout, its upload hashing and the garbage collector work on it unchanged.
//!
//! Keys are relative paths with `/` separators, as [`super::layout`] makes them; a
//! directory is a key prefix. The filesystem driver ([`super::fs::FsDriver`]) joins them
//! to its root; an object store uses them as object keys. A second backend is a new
//! `impl Driver`, and the store, the collector and `api/` do not change.
//!
//! What the collector needs of a backend, beyond reads and writes (see [`super::gc`] for
//! the argument that uses each):
//! - **A "used" mark per object** ([`Driver::mark_used`]) and its time
//!   ([`Meta::last_used`]), read back after the mark. The filesystem keeps it as the
//!   mtime; a backend without settable times keeps it as a small object of its own.
//! - **Locks by name** ([`Driver::lock_shared`], [`Driver::lock_exclusive`],
//!   [`Driver::try_lock`]) that exclude holders in other processes and on other machines
//!   sharing the store, released when the guard is dropped. The filesystem uses `flock`.
//! - **An atomic move of a blob's prefix** ([`Driver::move_tree`]): after it, a mark made
//!   before the move is seen at the destination and a mark attempted after it finds
//!   nothing. That is the collector's quarantine step. The filesystem uses `rename(2)`; a
//!   backend without an atomic rename must give the same guarantee another way (for
//!   example a conditional delete on the mark's version) and say so.
//!
//! Reads that a request makes together (a tag link, a revision link, the manifest) go
//! through [`Driver::reading`] as one synchronous closure over [`Reads`]: the filesystem
//! runs it in one blocking-pool hand-off, which is what keeps small requests fast. A
//! network backend runs the same closure on the blocking pool too, each read a request.

use super::content::BlobSource;
use super::Error;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What [`Driver::stat`] reports.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub size: u64,
    /// A prefix with objects below it, not an object.
    pub is_dir: bool,
    /// When the object was last marked used (or written); `None` if the medium cannot
    /// tell.
    pub last_used: Option<SystemTime>,
}

/// Objects and bytes under a prefix (what `du` would count as apparent size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// What [`Driver::try_lock`] found.
#[derive(Debug)]
pub enum Locked<L> {
    Held(L),
    /// Someone else holds the lock.
    Busy,
    /// No such object (only when not asked to create it).
    Missing,
}

/// What [`Driver::move_tree`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renamed {
    Done,
    SourceMissing,
    /// The target exists (and is not an empty prefix); nothing was moved.
    TargetExists,
}

/// Synchronous reads, run inside [`Driver::reading`] (on a blocking thread).
pub trait Reads: Send + 'static {
    /// A small object whole; `None` when it does not exist.
    fn read(&self, key: &Path) -> Result<Option<Vec<u8>>, Error>;
    /// As [`Driver::mark_used`].
    fn mark_used(&self, key: &Path, fresh_within: Duration) -> Result<Option<Meta>, Error>;
    /// An object opened for sending to a client; `None` when it does not exist.
    fn open_blob(&self, key: &Path) -> Result<Option<BlobSource>, Error>;
    /// An object opened for reading here, from its start (rehashing an upload).
    fn open_read(&self, key: &Path) -> Result<Box<dyn io::Read + Send>, Error>;
}

/// An upload open for appending, written from a blocking thread.
pub trait Append: Send + 'static {
    fn write_all(&mut self, b: &[u8]) -> Result<(), Error>;
    /// Bytes written through this handle.
    fn written(&self) -> u64;
    /// Keeps what this handle wrote: the upload's size is now its old size plus
    /// [`Append::written`]. (The filesystem has nothing left to do; an object store sends
    /// its last part.)
    fn finish(self) -> Result<(), Error>;
    /// Drops what this handle wrote, leaving the upload as it was when opened.
    fn rollback(self) -> Result<(), Error>;
}

/// A storage medium. Every method may block on I/O only inside its future; none runs
/// blocking work on the async worker that polls it.
pub trait Driver: Clone + Send + Sync + 'static {
    type Reads: Reads;
    type Append: Append;
    /// A held lock; dropping it lets go.
    type Lock: Send + Sync + 'static;

    /// Where the store is, for messages.
    fn location(&self) -> String;

    /// The synchronous reader; only for use on a blocking thread.
    fn reads(&self) -> Self::Reads;

    /// Runs `f` on the blocking pool with [`Reads`]: one hand-off for several reads.
    fn reading<T, F>(&self, f: F) -> impl Future<Output = Result<T, Error>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Self::Reads) -> Result<T, Error> + Send + 'static,
    {
        let reads = self.reads();
        async move {
            tokio::task::spawn_blocking(move || f(&reads))
                .await
                .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
        }
    }

    /// A small object whole; `None` when it does not exist.
    fn read(&self, key: &Path) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + Send;

    /// Size, kind and last-used time; `None` when there is nothing at `key`.
    fn stat(&self, key: &Path) -> impl Future<Output = Result<Option<Meta>, Error>> + Send;

    /// Marks an object as used now (left alone when its mark is within `fresh_within` of
    /// now) and then stats it; `None` when it is not there. The stat comes after the mark,
    /// so an object moved away in between is reported missing, never present.
    fn mark_used(
        &self,
        key: &Path,
        fresh_within: Duration,
    ) -> impl Future<Output = Result<Option<Meta>, Error>> + Send;

    /// Writes `bytes` at `key` durably and atomically: readers see the old object or the
    /// new one, never a part.
    fn write_atomic(
        &self,
        key: &Path,
        bytes: Bytes,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Names of the prefixes directly under `prefix`, sorted bytewise (empty when there
    /// are none).
    fn list_dirs(&self, prefix: &Path) -> impl Future<Output = Result<Vec<String>, Error>> + Send;

    /// Every prefix under `prefix` (relative to it) that directly holds a prefix named one
    /// of `markers`, not descending into names that start with `_`.
    fn find_dirs_with(
        &self,
        prefix: &Path,
        markers: &'static [&'static str],
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;

    /// Removes one object; `false` when it was not there.
    fn remove_file(&self, key: &Path) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Removes everything under `prefix`; `false` when there was nothing.
    fn remove_dir_all(&self, prefix: &Path) -> impl Future<Output = Result<bool, Error>> + Send;

    /// As [`Driver::remove_dir_all`] (or one object), returning what it held.
    fn remove_tree(
        &self,
        prefix: &Path,
    ) -> impl Future<Output = Result<Option<Usage>, Error>> + Send;

    /// Objects and bytes under `prefix` (or of the object itself); `None` when absent.
    fn usage(&self, prefix: &Path) -> impl Future<Output = Result<Option<Usage>, Error>> + Send;

    /// Removes `prefix` if no object is under it; whether it is gone (or never was). An
    /// object written meanwhile stops it; it never removes an object.
    fn prune_empty(&self, prefix: &Path) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Removes `prefix` and then its parents while they hold nothing, stopping below
    /// `stop`. A medium without directories has nothing to do.
    fn remove_empty_dirs_up(
        &self,
        prefix: &Path,
        stop: &Path,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Creates an empty upload object at `data` and a small `marker` object beside it.
    fn create_upload(
        &self,
        data: &Path,
        marker: &Path,
        marker_body: Bytes,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Opens the upload at `key` for appending at exactly `offset` (its current size).
    /// One writer at a time, across processes: [`Error::UploadBusy`] otherwise;
    /// [`Error::UploadOffset`] when `offset` is not the size.
    fn append_at(
        &self,
        key: &Path,
        offset: u64,
    ) -> impl Future<Output = Result<Self::Append, Error>> + Send;

    /// Makes the upload at `from` the blob at `to`, never by copying through this
    /// process. If `to` exists already (an identical concurrent push), it stays and `from`
    /// goes. Either way `to` is marked used now.
    fn commit(&self, from: &Path, to: &Path) -> impl Future<Output = Result<(), Error>> + Send;

    /// Moves `from` (an object or a prefix) to `to` atomically (see the module doc);
    /// `durable` also makes the move survive a crash before it returns.
    fn move_tree(
        &self,
        from: &Path,
        to: &Path,
        durable: bool,
    ) -> impl Future<Output = Result<Renamed, Error>> + Send;

    /// A shared lock named `key`, waiting while someone holds it exclusively.
    fn lock_shared(&self, key: &Path) -> impl Future<Output = Result<Self::Lock, Error>> + Send;

    /// An exclusive lock named `key`, waiting for every holder to let go.
    fn lock_exclusive(&self, key: &Path) -> impl Future<Output = Result<Self::Lock, Error>> + Send;

    /// Lets go of `lock` now, waiting until others can see that (dropping a lock lets go
    /// too, but a medium that must send a request for it may not get to before the
    /// process exits: a command that ends right after should call this).
    fn unlock(&self, lock: Self::Lock) -> impl Future<Output = ()> + Send {
        drop(lock);
        std::future::ready(())
    }

    /// An exclusive lock on `key` if nobody holds one, without waiting. `create` makes a
    /// lock that does not exist yet; otherwise a missing `key` is reported as such (an
    /// upload whose writer is looked for).
    fn try_lock(
        &self,
        key: &Path,
        create: bool,
    ) -> impl Future<Output = Result<Locked<Self::Lock>, Error>> + Send;
}
