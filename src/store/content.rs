//! The storage seam the API stands on: [`Content`], the registry's nouns (blobs, uploads,
//! manifests, tags, referrers, repositories) and nothing of the medium. No method here
//! mentions a path, a file, a lock file or an mtime.
//!
//! [`super::Store`] over the filesystem implements it. A second backend (object storage),
//! a pull-through cache wrapping a local store, or a decorator that adds events each
//! implement it too, and `api/` does not change. The filesystem implementation keeps its
//! batching: each method that reads several small files does so in one blocking-pool
//! hand-off (the manifest and blob-HEAD rows of `bench/` depend on it).

use super::Error;
use crate::body::BodyStream;
use crate::oci::{Digest, Reference, RepositoryName, Tag, UploadId};
use bytes::Bytes;

/// What the API needs of storage.
#[async_trait::async_trait]
pub trait Content: Send + Sync + 'static {
    /// Whether writes are refused (`storage.read_only`).
    fn read_only(&self) -> bool;
    fn set_read_only(&self, on: bool);
    /// Whether the store takes writes now (`/readyz`).
    async fn writable(&self) -> Result<(), Error>;
    /// Bytes of blob data held (for metrics; may walk the store, callers cache it).
    async fn blob_bytes(&self) -> Result<u64, Error>;
    /// When the last garbage collection finished and its summary; `None` before the first.
    async fn last_gc(&self) -> Result<Option<(std::time::SystemTime, String)>, Error> {
        Ok(None)
    }

    /// Size of a blob linked into `repo` (as a layer, config or manifest) whose bytes are
    /// present, marked as used for the collector's grace period.
    async fn blob_size(&self, repo: &RepositoryName, d: &Digest) -> Result<Option<u64>, Error>;
    /// As [`Content::blob_size`], and where its bytes come from.
    async fn blob_open(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<Option<(u64, BlobSource)>, Error>;
    /// Size of a blob in the shared blob store, whichever repository holds it, marked as
    /// used.
    async fn blob_size_global(&self, d: &Digest) -> Result<Option<u64>, Error>;
    /// Links an existing blob into `repo` (a mount).
    async fn blob_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error>;
    /// Unlinks a blob from `repo`; `false` when it was not linked.
    async fn blob_unlink(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error>;
    /// Stores a small blob given whole (a manifest), durably.
    async fn blob_put_small(&self, d: &Digest, bytes: Bytes) -> Result<(), Error>;
    /// Reads a small blob whole (manifests: bounded by the manifest limit).
    async fn blob_read_small(&self, d: &Digest) -> Result<Option<Bytes>, Error>;

    /// Starts an upload session in `repo`.
    async fn upload_start(&self, repo: &RepositoryName) -> Result<UploadId, Error>;
    /// Bytes received so far, or [`Error::UploadUnknown`].
    async fn upload_size(&self, repo: &RepositoryName, id: &UploadId) -> Result<u64, Error>;
    /// Opens the upload for appending at `offset`, which must be its current size.
    async fn upload_writer(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: u64,
    ) -> Result<Box<dyn UploadSink>, Error>;
    /// Verifies the upload against `expected` and makes it the blob, linked into `repo`;
    /// on a mismatch nothing becomes visible and the session is gone.
    async fn upload_commit(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<u64, Error>;
    /// Cancels an upload session; `false` when there was none.
    async fn upload_cancel(&self, repo: &RepositoryName, id: &UploadId) -> Result<bool, Error>;

    /// The digest a reference names in `repo` and the manifest's bytes, if present.
    async fn manifest_fetch(
        &self,
        repo: &RepositoryName,
        r: &Reference,
    ) -> Result<Option<(Digest, Bytes)>, Error>;
    /// Links manifest `d` into `repo` as a revision (marking it used if it is there).
    async fn manifest_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error>;
    /// Whether `d` is a manifest revision of `repo`, marking it as used.
    async fn manifest_use(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error>;
    /// Removes a manifest revision and the tags pointing at it; `false` when absent.
    async fn manifest_delete(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error>;
    /// Holds the collector off while a manifest push checks what it references and links
    /// itself; dropping the barrier lets go.
    async fn link_barrier(&self) -> Result<LinkBarrier, Error>;

    /// Points `tag` at `d`.
    async fn tag_set(&self, repo: &RepositoryName, tag: &Tag, d: &Digest) -> Result<(), Error>;
    /// Removes a tag; `false` when it did not exist.
    async fn tag_delete(&self, repo: &RepositoryName, tag: &Tag) -> Result<bool, Error>;
    /// Tags of `repo`, sorted; `None` when it has never had a tag.
    async fn tags(&self, repo: &RepositoryName) -> Result<Option<Vec<Tag>>, Error>;

    /// Every repository holding blobs or manifests, in catalog order.
    async fn repositories(&self) -> Result<Vec<RepositoryName>, Error>;
    /// Deletes a repository's links, uploads and referrers; `false` when there was none.
    async fn repository_delete(&self, repo: &RepositoryName) -> Result<bool, Error>;

    /// Records that manifest `referrer` in `repo` names `subject`.
    async fn referrer_add(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error>;
    async fn referrer_remove(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error>;
    /// Manifests in `repo` recorded as referring to `subject` that are still present.
    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Digest>, Error>;
}

/// Appends one request's bytes to an upload.
#[async_trait::async_trait]
pub trait UploadSink: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error>;
    /// Keeps what was written; returns the upload's new size.
    async fn finish(self: Box<Self>) -> Result<u64, Error>;
    /// Drops what this request wrote; the writer's own error, if it had one, is the real
    /// cause of the failure.
    async fn abort(self: Box<Self>) -> Result<(), Error>;
}

/// Where a blob's bytes come from, once the API knows which range the client wants.
pub enum BlobSource {
    /// A local file: the front door may send it zero-copy.
    File(super::fs::OpenBlob),
    /// Bytes from elsewhere: called with (offset, length).
    Stream(Box<dyn FnOnce(u64, u64) -> BodyStream + Send>),
    /// The client fetches the bytes at this URL itself (an object store's presigned URL).
    Redirect(String),
}

/// Held while a manifest push links itself; the collector waits for it (see `gc`).
pub struct LinkBarrier {
    _guard: Box<dyn Send + Sync>,
}

impl LinkBarrier {
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }
}

// The store over any driver: each method is the inherent one of the same name.
#[async_trait::async_trait]
impl<D: super::Driver> Content for super::Store<D> {
    fn read_only(&self) -> bool {
        super::Store::<D>::read_only(self)
    }
    fn set_read_only(&self, on: bool) {
        super::Store::<D>::set_read_only(self, on)
    }
    async fn writable(&self) -> Result<(), Error> {
        super::Store::<D>::writable(self).await
    }
    async fn blob_bytes(&self) -> Result<u64, Error> {
        super::Store::<D>::blob_bytes(self).await
    }
    async fn last_gc(&self) -> Result<Option<(std::time::SystemTime, String)>, Error> {
        super::gc::last_report(self).await
    }
    async fn blob_size(&self, repo: &RepositoryName, d: &Digest) -> Result<Option<u64>, Error> {
        super::Store::<D>::blob_size(self, repo, d).await
    }
    async fn blob_open(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<Option<(u64, BlobSource)>, Error> {
        super::Store::<D>::blob_open(self, repo, d).await
    }
    async fn blob_size_global(&self, d: &Digest) -> Result<Option<u64>, Error> {
        super::Store::<D>::blob_size_global(self, d).await
    }
    async fn blob_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error> {
        super::Store::<D>::blob_link(self, repo, d).await
    }
    async fn blob_unlink(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        super::Store::<D>::blob_unlink(self, repo, d).await
    }
    async fn blob_put_small(&self, d: &Digest, bytes: Bytes) -> Result<(), Error> {
        super::Store::<D>::blob_put_small(self, d, bytes).await
    }
    async fn blob_read_small(&self, d: &Digest) -> Result<Option<Bytes>, Error> {
        super::Store::<D>::blob_read_small(self, d).await
    }
    async fn upload_start(&self, repo: &RepositoryName) -> Result<UploadId, Error> {
        super::Store::<D>::upload_start(self, repo).await
    }
    async fn upload_size(&self, repo: &RepositoryName, id: &UploadId) -> Result<u64, Error> {
        super::Store::<D>::upload_size(self, repo, id).await
    }
    async fn upload_writer(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: u64,
    ) -> Result<Box<dyn UploadSink>, Error> {
        Ok(Box::new(
            super::Store::<D>::upload_writer(self, repo, id, offset).await?,
        ))
    }
    async fn upload_commit(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<u64, Error> {
        super::Store::<D>::upload_commit(self, repo, id, expected).await
    }
    async fn upload_cancel(&self, repo: &RepositoryName, id: &UploadId) -> Result<bool, Error> {
        super::Store::<D>::upload_cancel(self, repo, id).await
    }
    async fn manifest_fetch(
        &self,
        repo: &RepositoryName,
        r: &Reference,
    ) -> Result<Option<(Digest, Bytes)>, Error> {
        super::Store::<D>::manifest_fetch(self, repo, r).await
    }
    async fn manifest_link(&self, repo: &RepositoryName, d: &Digest) -> Result<(), Error> {
        super::Store::<D>::manifest_link(self, repo, d).await
    }
    async fn manifest_use(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        super::Store::<D>::manifest_use(self, repo, d).await
    }
    async fn manifest_delete(&self, repo: &RepositoryName, d: &Digest) -> Result<bool, Error> {
        super::Store::<D>::manifest_delete(self, repo, d).await
    }
    async fn link_barrier(&self) -> Result<LinkBarrier, Error> {
        Ok(LinkBarrier::new(super::Store::<D>::link_guard(self).await?))
    }
    async fn tag_set(&self, repo: &RepositoryName, tag: &Tag, d: &Digest) -> Result<(), Error> {
        super::Store::<D>::tag_set(self, repo, tag, d).await
    }
    async fn tag_delete(&self, repo: &RepositoryName, tag: &Tag) -> Result<bool, Error> {
        super::Store::<D>::tag_delete(self, repo, tag).await
    }
    async fn tags(&self, repo: &RepositoryName) -> Result<Option<Vec<Tag>>, Error> {
        super::Store::<D>::tags(self, repo).await
    }
    async fn repositories(&self) -> Result<Vec<RepositoryName>, Error> {
        super::Store::<D>::repositories(self).await
    }
    async fn repository_delete(&self, repo: &RepositoryName) -> Result<bool, Error> {
        super::Store::<D>::repository_delete(self, repo).await
    }
    async fn referrer_add(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error> {
        super::Store::<D>::referrer_add(self, repo, subject, referrer).await
    }
    async fn referrer_remove(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<(), Error> {
        super::Store::<D>::referrer_remove(self, repo, subject, referrer).await
    }
    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Digest>, Error> {
        super::Store::<D>::referrers(self, repo, subject).await
    }
}

#[async_trait::async_trait]
impl<A: super::Append> UploadSink for super::UploadWriter<A> {
    async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        super::UploadWriter::<A>::write(self, chunk).await
    }
    async fn finish(self: Box<Self>) -> Result<u64, Error> {
        super::UploadWriter::<A>::finish(*self).await
    }
    async fn abort(self: Box<Self>) -> Result<(), Error> {
        super::UploadWriter::<A>::abort(*self).await
    }
}
