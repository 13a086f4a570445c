//! The filesystem driver: [`Driver`] over a directory tree.
//!
//! Every write follows one recipe: a temporary file in the same directory, fsync, rename
//! into place, fsync the directory; a guard removes the temporary file on every error path.
//! Blocking calls run on tokio's blocking pool, never on the async workers.
//!
//! The collector's needs map onto POSIX here: the "used" mark is a file's mtime, a lock is
//! `flock` on a lock file, the quarantine move is `rename(2)` of a blob's directory.
//! [`BlobFile`] (an open file and a range) is what the front door's zero-copy path sends.

use super::content::BlobSource;
use super::driver::{Append, Driver, Locked, Meta, Reads, Renamed, Usage};
use super::Error;
use crate::body::{BlobFile, BodyStream};
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Size of one read when streaming a blob out: small enough that the bytes are still in
/// the CPU's cache when TLS encrypts them, large enough to keep syscalls rare; smaller
/// still when many blobs stream at once (memory stays flat).
const READ_CHUNK: usize = 256 * 1024;
const READ_CHUNK_BUSY: usize = 128 * 1024;
/// Streams at or above which the small chunks are used.
const BUSY_STREAMS: usize = 4;
/// How far ahead of the reader the kernel is asked to fetch from disk, so that a cold
/// blob's disk reads overlap with sending it.
const PREFETCH: u64 = 8 << 20;
/// Blobs streaming out right now.
static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Buffers a reader keeps for reuse: chunks handed out may still sit in an HTTP/2 send
/// queue when the next one is read.
const POOL: usize = 3;

#[derive(Debug, Clone)]
pub struct FsDriver {
    root: PathBuf,
}

/// An open blob, before the API knows which range of it the client wants.
#[derive(Debug)]
pub struct OpenBlob {
    pub(super) file: File,
    pub(super) path: PathBuf,
}

impl OpenBlob {
    /// `len` bytes from `offset`, for the front door.
    pub fn slice(self, offset: u64, len: u64) -> BlobFile {
        BlobFile {
            file: self.file,
            path: self.path,
            offset,
            len,
        }
    }
}

impl BlobFile {
    /// The bytes as a response stream, for the paths that must see them (TLS, HTTP/2):
    /// [`BlobReader`]'s chunks, ending at the first error.
    pub fn into_stream(self) -> BodyStream {
        Box::pin(futures_util::stream::unfold(
            Some(self.reader()),
            |reader| async move {
                let mut r = reader?;
                match r.next().await {
                    Ok(Some(b)) => Some((Ok(b), Some(r))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            },
        ))
    }

    /// Reads the bytes chunk by chunk.
    pub fn reader(self) -> BlobReader {
        use std::sync::atomic::Ordering;
        let streams = STREAMS.fetch_add(1, Ordering::AcqRel) + 1;
        let chunk = if streams >= BUSY_STREAMS {
            READ_CHUNK_BUSY
        } else {
            READ_CHUNK
        };
        BlobReader {
            prefetch: Prefetch::new(self.offset),
            pos: self.offset,
            end: self.offset + self.len,
            file: std::sync::Arc::new(self.file),
            path: self.path,
            chunk,
            pool: Vec::with_capacity(POOL),
        }
    }
}

/// Reads a blob's bytes in order. Pages already in the page cache are read on the calling
/// task (`preadv2` with `RWF_NOWAIT` never blocks on the disk), which saves a thread
/// hand-off per chunk; a chunk that would wait for the disk is read on the blocking pool.
/// Buffers are reused once the connection has let go of them, so a transfer neither
/// allocates nor page-faults per chunk.
#[derive(Debug)]
pub struct BlobReader {
    file: std::sync::Arc<File>,
    path: PathBuf,
    pos: u64,
    end: u64,
    chunk: usize,
    prefetch: Prefetch,
    pool: Vec<Bytes>,
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl BlobReader {
    /// The next chunk, or `None` after the last byte.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let want = ((self.end - self.pos) as usize).min(self.chunk);
        let mut buf = self.buffer(want);
        self.prefetch
            .ahead_of(&self.file, self.pos, self.end - self.pos);
        let pos = self.pos;
        let fast = {
            let mut slices = [io::IoSliceMut::new(&mut buf)];
            rustix::io::preadv2(
                &*self.file,
                &mut slices,
                pos,
                rustix::io::ReadWriteFlags::NOWAIT,
            )
        };
        let n = match fast {
            Ok(n) if n > 0 => n,
            // Not in the page cache (or NOWAIT unsupported): wait for the disk off the
            // async workers.
            _ => {
                let file = self.file.clone();
                let (b, r) = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let r = file.read_at(&mut buf, pos);
                    (buf, r)
                })
                .await
                .map_err(io::Error::other)?;
                buf = b;
                r?
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than expected", self.path.display()),
            ));
        }
        buf.truncate(n);
        self.pos += n as u64;
        let out = buf.freeze();
        if self.pool.len() < POOL {
            self.pool.push(out.clone());
        }
        Ok(Some(out))
    }

    /// A zeroed buffer of `len` bytes: a pooled one the connection no longer holds, else a
    /// new one (pooled when there is room).
    fn buffer(&mut self, len: usize) -> bytes::BytesMut {
        if let Some(i) = self.pool.iter().position(|b| b.is_unique()) {
            let b = self.pool.swap_remove(i);
            if let Ok(mut m) = b.try_into_mut() {
                m.clear();
                if m.try_reclaim(len) {
                    m.resize(len, 0);
                    return m;
                }
            }
        }
        bytes::BytesMut::zeroed(len)
    }
}

/// Keeps the kernel fetching [`PREFETCH`] bytes ahead of a sequential reader, so that a
/// cold blob's disk reads overlap with sending it (a no-op for cached pages).
#[derive(Debug)]
pub struct Prefetch {
    until: u64,
}

impl Prefetch {
    pub fn new(from: u64) -> Self {
        Self { until: from }
    }

    /// Call before reading at `pos` with `left` bytes still to read. Asking for pages that
    /// are cached still walks the page cache, so a window whose last byte is cached (a warm
    /// blob) is not asked for.
    pub fn ahead_of(&mut self, file: &File, pos: u64, left: u64) {
        let window = PREFETCH;
        if self.until < pos + window / 2 && left > READ_CHUNK_BUSY as u64 {
            let span = window.min(left);
            if !cached(file, pos + span - 1) {
                let _ = nix::fcntl::posix_fadvise(
                    file,
                    pos as i64,
                    span as i64,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
                );
            }
            self.until = pos + window;
        }
    }
}

/// Whether the page holding byte `at` of `file` is in the page cache (a one-byte read that
/// may not wait for the disk). A heuristic for a range ending there: pages are evicted one
/// by one, so the rest of the range may still have to be read from the disk.
pub fn cached(file: &File, at: u64) -> bool {
    let mut byte = [0u8; 1];
    rustix::io::preadv2(
        file,
        &mut [io::IoSliceMut::new(&mut byte)],
        at,
        rustix::io::ReadWriteFlags::NOWAIT,
    )
    .is_ok_and(|n| n == 1)
}

/// Synchronous reads for [`Driver::reading`]; only exists on the blocking pool.
#[derive(Debug)]
pub struct Reader {
    root: PathBuf,
}

impl Reads for Reader {
    fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>, Error> {
        read_sync(&self.root.join(rel))
    }

    fn mark_used(&self, rel: &Path, fresh_within: Duration) -> Result<Option<Meta>, Error> {
        touch_sync(&self.root.join(rel), fresh_within)
    }

    fn open_blob(&self, rel: &Path) -> Result<Option<BlobSource>, Error> {
        let path = self.root.join(rel);
        match File::open(&path) {
            Ok(file) => Ok(Some(BlobSource::File(OpenBlob { file, path }))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn open_read(&self, rel: &Path) -> Result<Box<dyn io::Read + Send>, Error> {
        let path = self.root.join(rel);
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

fn read_sync(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// An advisory lock (`flock`) on a file, released when dropped. Each holder opens the file
/// itself: a lock belongs to one open file, so two holders in one process exclude each
/// other exactly as two processes do.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FsDriver {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, Error> {
        fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }
}

impl Driver for FsDriver {
    type Reads = Reader;
    type Append = AppendFile;
    type Lock = FileLock;

    /// Reads a small file whole; `None` when it does not exist.
    async fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>, Error> {
        let path = self.abs(rel);
        blocking(move || read_sync(&path)).await
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn reads(&self) -> Reader {
        Reader {
            root: self.root.clone(),
        }
    }

    /// Size and kind of a path; `None` when it does not exist.
    async fn stat(&self, rel: &Path) -> Result<Option<Meta>, Error> {
        let path = self.abs(rel);
        blocking(move || meta_sync(&path)).await
    }

    /// Marks a file as used now (its mtime; left alone when it is already within
    /// `fresh_within` of now) and then stats it by path; `None` when it is not there.
    ///
    /// The collector never removes what was used within its grace period, and reads the
    /// mark again after moving a blob away (see `store::gc`). The stat comes after the
    /// touch, so a file moved away in between is reported missing, never present. A store
    /// berth may not change (another owner, a read-only mount) is served unmarked: a
    /// collector with the same rights cannot remove anything from it either.
    async fn mark_used(&self, rel: &Path, fresh_within: Duration) -> Result<Option<Meta>, Error> {
        let path = self.abs(rel);
        blocking(move || touch_sync(&path, fresh_within)).await
    }

    /// Writes `bytes` to `rel` durably and atomically: readers see the old file or the new
    /// one, never a part.
    async fn write_atomic(&self, rel: &Path, bytes: Bytes) -> Result<(), Error> {
        let path = self.abs(rel);
        blocking(move || write_atomic_sync(&path, &bytes)).await
    }

    /// Names of the entries directly under `rel` that are directories (empty when `rel`
    /// does not exist).
    async fn list_dirs(&self, rel: &Path) -> Result<Vec<String>, Error> {
        let path = self.abs(rel);
        blocking(move || list_dirs_sync(&path)).await
    }

    /// Every directory under `rel` (as a path relative to `rel`) that contains a directory
    /// named one of `markers`, not descending into directories whose name starts with `_`.
    async fn find_dirs_with(
        &self,
        rel: &Path,
        markers: &'static [&'static str],
    ) -> Result<Vec<String>, Error> {
        let path = self.abs(rel);
        blocking(move || {
            let mut out = Vec::new();
            walk_for_marker(&path, "", markers, &mut out)?;
            Ok(out)
        })
        .await
    }

    /// Removes a file; `false` when it was not there.
    async fn remove_file(&self, rel: &Path) -> Result<bool, Error> {
        let path = self.abs(rel);
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    /// Removes a directory tree; `false` when it was not there.
    async fn remove_dir_all(&self, rel: &Path) -> Result<bool, Error> {
        let path = self.abs(rel);
        blocking(move || match fs::remove_dir_all(&path) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    /// Creates an empty upload file (and its directory) plus a small marker file beside it.
    async fn create_upload(
        &self,
        data: &Path,
        marker: &Path,
        marker_body: Bytes,
    ) -> Result<(), Error> {
        let data = self.abs(data);
        let marker = self.abs(marker);
        blocking(move || {
            let dir = parent(&data)?;
            mkdir_p(dir)?;
            let mut made = File::create(&data);
            if made
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            {
                // The collector removed the emptied repository's directories meanwhile.
                mkdir_p(dir)?;
                made = File::create(&data);
            }
            made.map_err(|e| Error::io(&data, e))?;
            write_atomic_sync(&marker, &marker_body)
        })
        .await
    }

    /// Opens an upload file for appending at exactly `offset` (its current size).
    async fn append_at(&self, rel: &Path, offset: u64) -> Result<AppendFile, Error> {
        let path = self.abs(rel);
        blocking(move || {
            let mut file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            // One writer per upload, across processes too: the lock goes with the handle.
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(Error::UploadBusy),
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            if len != offset {
                return Err(Error::UploadOffset {
                    expected: offset,
                    actual: len,
                });
            }
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| Error::io(&path, e))?;
            Ok(AppendFile {
                file,
                path,
                start: offset,
                written: 0,
            })
        })
        .await
    }

    /// A shared advisory lock on `rel` (created empty if missing), waiting while someone
    /// holds it exclusively.
    async fn lock_shared(&self, rel: &Path) -> Result<Self::Lock, Error> {
        let path = self.abs(rel);
        blocking(move || {
            let file = open_lock_file(&path)?;
            file.lock_shared().map_err(|e| Error::io(&path, e))?;
            Ok(FileLock { _file: file })
        })
        .await
    }

    /// An exclusive advisory lock on `rel` (created empty if missing), waiting for every
    /// holder to let go.
    async fn lock_exclusive(&self, rel: &Path) -> Result<Self::Lock, Error> {
        let path = self.abs(rel);
        blocking(move || {
            let file = open_lock_file(&path)?;
            file.lock().map_err(|e| Error::io(&path, e))?;
            Ok(FileLock { _file: file })
        })
        .await
    }

    /// An exclusive advisory lock on `rel` if nobody holds one, without waiting. `create`
    /// makes a missing file (a lock file); otherwise a missing file is reported as such (an
    /// upload's data).
    async fn try_lock(&self, rel: &Path, create: bool) -> Result<Locked<Self::Lock>, Error> {
        let path = self.abs(rel);
        blocking(move || {
            let file = if create {
                open_lock_file(&path)?
            } else {
                // Writable, as the lock of an upload's writer (`append_at`) is taken.
                match OpenOptions::new().write(true).open(&path) {
                    Ok(f) => f,
                    Err(e) if not_found(&e) => return Ok(Locked::Missing),
                    Err(e) => return Err(Error::io(&path, e)),
                }
            };
            match file.try_lock() {
                Ok(()) => Ok(Locked::Held(FileLock { _file: file })),
                Err(std::fs::TryLockError::WouldBlock) => Ok(Locked::Busy),
                Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
            }
        })
        .await
    }

    /// Renames a file or directory (atomically; the target's parent is made if needed).
    /// `durable` also fsyncs both parents. A target that exists and is not an empty
    /// directory is left alone.
    async fn move_tree(&self, from: &Path, to: &Path, durable: bool) -> Result<Renamed, Error> {
        let from = self.abs(from);
        let to = self.abs(to);
        blocking(move || {
            let dir = parent(&to)?;
            mkdir_p(dir)?;
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                    ) =>
                {
                    return Ok(Renamed::TargetExists)
                }
                Err(e) if not_found(&e) => return Ok(Renamed::SourceMissing),
                Err(e) => return Err(Error::io(&to, e)),
            }
            if durable {
                sync_dir(dir)?;
                sync_dir(parent(&from)?)?;
            }
            Ok(Renamed::Done)
        })
        .await
    }

    /// How many files `rel` holds and their total size (`rel` itself when it is a file);
    /// `None` when it does not exist.
    async fn usage(&self, rel: &Path) -> Result<Option<Usage>, Error> {
        let path = self.abs(rel);
        blocking(move || usage_sync(&path)).await
    }

    /// Removes a file or a directory tree; returns what it held (`None`: not there).
    async fn remove_tree(&self, rel: &Path) -> Result<Option<Usage>, Error> {
        let path = self.abs(rel);
        blocking(move || {
            let Some(usage) = usage_sync(&path)? else {
                return Ok(None);
            };
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => Ok(Some(usage)),
                Err(e) if not_found(&e) => Ok(Some(usage)),
                Err(e) => Err(Error::io(&path, e)),
            }
        })
        .await
    }

    /// Removes the directory tree `rel` if it holds no file at all (only directories),
    /// bottom-up with `rmdir`, so a file created meanwhile stops it; never removes a file.
    /// Returns whether `rel` is gone (or was never there).
    async fn prune_empty(&self, rel: &Path) -> Result<bool, Error> {
        let path = self.abs(rel);
        blocking(move || {
            match usage_sync(&path)? {
                None => return Ok(true),
                Some(u) if u.files > 0 => return Ok(false),
                Some(_) => {}
            }
            rmdir_tree(&path)
        })
        .await
    }

    /// Removes `rel` and then its parents while they are empty directories, stopping
    /// below `stop` (which is never removed).
    async fn remove_empty_dirs_up(&self, rel: &Path, stop: &Path) -> Result<(), Error> {
        let path = self.abs(rel);
        let stop = self.abs(stop);
        blocking(move || {
            let mut cur = path.as_path();
            while cur.starts_with(&stop) && cur != stop {
                match fs::remove_dir(cur) {
                    Ok(()) => {}
                    Err(e) if not_found(&e) => {}
                    Err(_) => break,
                }
                match cur.parent() {
                    Some(p) => cur = p,
                    None => break,
                }
            }
            Ok(())
        })
        .await
    }

    /// Makes the upload file at `from` the blob at `to`: fsync, rename, fsync the
    /// directories. A rename, never a copy. If `to` already exists (an identical concurrent
    /// push, or an older copy), the existing file stays and `from` is removed. Either way
    /// the blob is marked as used now (see [`Driver::mark_used`]), however long ago its
    /// bytes were written.
    async fn commit(&self, from: &Path, to: &Path) -> Result<(), Error> {
        let from = self.abs(from);
        let to = self.abs(to);
        blocking(move || {
            if touch_sync(&to, Duration::ZERO)?.is_some() {
                let _ = fs::remove_file(&from);
                return Ok(());
            }
            File::open(&from)
                .and_then(|f| {
                    mark_used(&f)?;
                    f.sync_all()
                })
                .map_err(|e| Error::io(&from, e))?;
            let dir = parent(&to)?;
            create_dir_all_durable(dir)?;
            fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
            sync_dir(dir)
        })
        .await
    }
}

/// An upload file open for appending, used from a blocking thread.
pub struct AppendFile {
    file: File,
    path: PathBuf,
    start: u64,
    written: u64,
}

impl Append for AppendFile {
    fn write_all(&mut self, b: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn finish(self) -> Result<(), Error> {
        Ok(())
    }

    fn rollback(self) -> Result<(), Error> {
        self.file
            .set_len(self.start)
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The durable write recipe, on the calling thread.
fn write_atomic_sync(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_mode(path, bytes, 0o666)
}

/// The durable write recipe with the new file's permission bits (before the umask): the
/// file never exists with wider ones, and readers see the old or the new file, whole.
pub(crate) fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = parent(path)?;
    create_dir_all_durable(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let guard = TempGuard(Some(tmp.clone()));
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
    };
    let mut f = match open() {
        // The collector removes the directories of a repository it emptied (store::gc);
        // one may go between the mkdir and the open: make it again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dir_all_durable(dir)?;
            open()
        }
        r => r,
    }
    .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    guard.disarm();
    sync_dir(dir)
}

/// Removes a temporary file unless disarmed after its rename.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// `mkdir -p`, fsyncing the parent of every directory it makes so the new entries survive
/// a crash.
fn create_dir_all_durable(dir: &Path) -> Result<(), Error> {
    // A parent may vanish meanwhile (the collector prunes emptied repositories): again.
    let mut attempts = 0;
    loop {
        match create_dir_all_durable_once(dir) {
            Err(Error::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && attempts < 3 =>
            {
                attempts += 1
            }
            r => return r,
        }
    }
}

fn create_dir_all_durable_once(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur);
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for d in missing.iter().rev() {
        if let Some(p) = d.parent() {
            sync_dir(p)?;
        }
    }
    Ok(())
}

/// `mkdir -p`, again when a parent vanishes meanwhile (bounded).
fn mkdir_p(dir: &Path) -> Result<(), Error> {
    let mut attempts = 0;
    loop {
        match fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
            Err(e) => return Err(Error::io(dir, e)),
        }
    }
}

fn meta_sync(path: &Path) -> Result<Option<Meta>, Error> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(Meta {
            size: m.len(),
            is_dir: m.is_dir(),
            last_used: m.modified().ok(),
        })),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// See [`Driver::mark_used`].
fn touch_sync(path: &Path, fresh_within: Duration) -> Result<Option<Meta>, Error> {
    let Some(before) = meta_sync(path)? else {
        return Ok(None);
    };
    let fresh = before
        .last_used
        .and_then(|m| m.checked_add(fresh_within))
        .is_some_and(|m| m >= SystemTime::now());
    if fresh && !fresh_within.is_zero() {
        return Ok(Some(before));
    }
    match File::open(path) {
        Ok(f) => mark_used(&f).map_err(|e| Error::io(path, e))?,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    }
    meta_sync(path)
}

/// Sets a file's mtime to now; a file berth may not change keeps its time (see
/// [`Driver::mark_used`]).
fn mark_used(f: &File) -> io::Result<()> {
    match f.set_modified(SystemTime::now()) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Opens (creating, empty, with its directory) a lock file, for writing: NFS emulates
/// `flock` with byte-range locks, whose exclusive kind needs a writable file. Read-only
/// when only that is allowed: a lock file made by another user (`sudo berth gc`) still
/// locks on a local filesystem.
fn open_lock_file(path: &Path) -> Result<File, Error> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    };
    match open() {
        Ok(f) => Ok(f),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            File::open(path).map_err(|e| Error::io(path, e))
        }
        Err(e) if not_found(&e) => {
            mkdir_p(parent(path)?)?;
            open().map_err(|e| Error::io(path, e))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn usage_sync(path: &Path) -> Result<Option<Usage>, Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if !meta.is_dir() {
        return Ok(Some(Usage {
            files: 1,
            bytes: meta.len(),
        }));
    }
    let mut usage = Usage::default();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let m = match entry.metadata() {
                Ok(m) => m,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(Error::io(&entry.path(), e)),
            };
            if m.is_dir() {
                stack.push(entry.path());
            } else {
                usage.files += 1;
                usage.bytes += m.len();
            }
        }
    }
    Ok(Some(usage))
}

/// `rmdir` every directory of a tree bottom-up; `false` as soon as one is not empty.
fn rmdir_tree(path: &Path) -> Result<bool, Error> {
    for name in list_dirs_sync(path)? {
        if !rmdir_tree(&path.join(name))? {
            return Ok(false);
        }
    }
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if not_found(&e) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn parent(path: &Path) -> Result<&Path, Error> {
    // A bare file name lives in the working directory.
    if path.parent().is_some_and(|p| p.as_os_str().is_empty()) {
        return Ok(Path::new("."));
    }
    path.parent().ok_or_else(|| {
        Error::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"),
        )
    })
}

fn list_dirs_sync(path: &Path) -> Result<Vec<String>, Error> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn walk_for_marker(
    dir: &Path,
    prefix: &str,
    markers: &[&str],
    out: &mut Vec<String>,
) -> Result<(), Error> {
    for name in list_dirs_sync(dir)? {
        if name.starts_with('_') {
            continue;
        }
        let sub = dir.join(&name);
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if markers.iter().any(|m| sub.join(m).is_dir()) {
            out.push(rel.clone());
        }
        walk_for_marker(&sub, &rel, markers, out)?;
    }
    Ok(())
}

/// Runs `f` when dropped.
fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Runs blocking filesystem work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FsDriver::open(dir.path()).expect("open");
        let p = Path::new("a/b/link");
        d.write_atomic(p, Bytes::from_static(b"one"))
            .await
            .expect("write");
        d.write_atomic(p, Bytes::from_static(b"two"))
            .await
            .expect("write");
        assert_eq!(d.read(p).await.expect("read").as_deref(), Some(&b"two"[..]));
        let names: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["link"]);
    }

    #[tokio::test]
    async fn append_checks_offset_and_rolls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FsDriver::open(dir.path()).expect("open");
        let data = Path::new("u/data");
        d.create_upload(data, Path::new("u/startedat"), Bytes::from_static(b"t"))
            .await
            .expect("create");
        let mut a = d.append_at(data, 0).await.expect("append");
        a.write_all(b"hello").expect("write");
        drop(a);
        assert!(matches!(
            d.append_at(data, 0).await,
            Err(Error::UploadOffset {
                expected: 0,
                actual: 5
            })
        ));
        let mut a = d.append_at(data, 5).await.expect("append");
        a.write_all(b" world").expect("write");
        a.rollback().expect("rollback");
        assert_eq!(d.stat(data).await.expect("stat").map(|m| m.size), Some(5));
    }

    #[tokio::test]
    async fn reader_returns_the_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FsDriver::open(dir.path()).expect("open");
        let body: Vec<u8> = (0..READ_CHUNK * 8 + 17).map(|i| (i % 251) as u8).collect();
        d.write_atomic(Path::new("f"), Bytes::from(body.clone()))
            .await
            .expect("write");
        let open = |offset, len| BlobFile {
            file: File::open(dir.path().join("f")).expect("open"),
            path: dir.path().join("f"),
            offset,
            len,
        };
        let mut rx = open(10, body.len() as u64 - 20).reader();
        let mut got = Vec::new();
        let mut held = Vec::new();
        let mut i = 0;
        while let Some(c) = rx.next().await.expect("chunk") {
            // Hold every other chunk, as an HTTP/2 send queue might: buffers are reused
            // once released, and never while held.
            if i % 2 == 1 {
                held.push((got.len(), c.clone()));
            }
            got.extend_from_slice(&c);
            i += 1;
        }
        assert!(i >= 8, "{i} chunks");
        assert_eq!(got, &body[10..body.len() - 10]);
        for (at, c) in held {
            assert!(
                c[..] == got[at..at + c.len()],
                "a held chunk was overwritten"
            );
        }
        let mut short = open(0, body.len() as u64 + 1).reader();
        let e = loop {
            match short.next().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a short file ended without an error"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
