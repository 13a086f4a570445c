//! The filesystem driver: the narrow seam between the store and its medium.
//!
//! Read, write atomically, append to an upload, commit an upload as a blob, list, delete,
//! stat: nothing above this module calls the filesystem, so an object-store driver can take
//! its place later. Every write follows one recipe: a temporary file in the same directory,
//! fsync, rename into place, fsync the directory; a guard removes the temporary file on every
//! error path. Blocking calls run on tokio's blocking pool, never on the async workers.

use super::Error;
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Size of one read when streaming a blob out: large while few blobs stream (fewer
/// syscalls and wake-ups per byte), small when many do (memory stays flat).
const READ_CHUNK: usize = 1024 * 1024;
const READ_CHUNK_BUSY: usize = 256 * 1024;
/// Streams at or above which the small chunks are used.
const BUSY_STREAMS: usize = 4;
/// How far ahead of the reader the kernel is asked to fetch from disk, so that a cold
/// blob's disk reads overlap with sending it.
const PREFETCH: i64 = 8 << 20;
/// Blobs streaming out right now.
static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Chunks in flight between the reading thread and the connection.
const READ_AHEAD: usize = 4;

#[derive(Debug, Clone)]
pub struct FsDriver {
    root: PathBuf,
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub size: u64,
    pub is_dir: bool,
    pub modified: Option<SystemTime>,
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

    /// Reads a small file whole; `None` when it does not exist.
    pub async fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>, Error> {
        let path = self.abs(rel);
        blocking(move || match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    /// Size and kind of a path; `None` when it does not exist.
    pub async fn stat(&self, rel: &Path) -> Result<Option<Meta>, Error> {
        let path = self.abs(rel);
        blocking(move || match fs::metadata(&path) {
            Ok(m) => Ok(Some(Meta {
                size: m.len(),
                is_dir: m.is_dir(),
                modified: m.modified().ok(),
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    /// Writes `bytes` to `rel` durably and atomically: readers see the old file or the new
    /// one, never a part.
    pub async fn write_atomic(&self, rel: &Path, bytes: Bytes) -> Result<(), Error> {
        let path = self.abs(rel);
        blocking(move || write_atomic_sync(&path, &bytes)).await
    }

    /// Names of the entries directly under `rel` that are directories (empty when `rel`
    /// does not exist).
    pub async fn list_dirs(&self, rel: &Path) -> Result<Vec<String>, Error> {
        let path = self.abs(rel);
        blocking(move || list_dirs_sync(&path)).await
    }

    /// Every directory under `rel` (as a path relative to `rel`) that contains a directory
    /// named one of `markers`, not descending into directories whose name starts with `_`.
    pub async fn find_dirs_with(
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
    pub async fn remove_file(&self, rel: &Path) -> Result<bool, Error> {
        let path = self.abs(rel);
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    /// Removes a directory tree; `false` when it was not there.
    pub async fn remove_dir_all(&self, rel: &Path) -> Result<bool, Error> {
        let path = self.abs(rel);
        blocking(move || match fs::remove_dir_all(&path) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    /// Creates an empty upload file (and its directory) plus a small marker file beside it.
    pub async fn create_upload(
        &self,
        data: &Path,
        marker: &Path,
        marker_body: Bytes,
    ) -> Result<(), Error> {
        let data = self.abs(data);
        let marker = self.abs(marker);
        blocking(move || {
            let dir = parent(&data)?;
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            File::create(&data).map_err(|e| Error::io(&data, e))?;
            write_atomic_sync(&marker, &marker_body)
        })
        .await
    }

    /// Streams `len` bytes of a file starting at `offset`, read on the blocking pool, in
    /// chunks of [`READ_CHUNK`]. Returns `None` when the file does not exist.
    pub async fn read_stream(
        &self,
        rel: &Path,
        offset: u64,
        len: u64,
    ) -> Result<Option<mpsc::Receiver<io::Result<Bytes>>>, Error> {
        let path = self.abs(rel);
        let opened = blocking({
            let path = path.clone();
            move || match File::open(&path) {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(offset))
                        .map_err(|e| Error::io(&path, e))?;
                    Ok(Some(f))
                }
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(Error::io(&path, e)),
            }
        })
        .await?;
        let Some(mut file) = opened else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            use std::sync::atomic::Ordering;
            let streams = STREAMS.fetch_add(1, Ordering::AcqRel) + 1;
            let _done = scopeguard(|| {
                STREAMS.fetch_sub(1, Ordering::AcqRel);
            });
            let chunk = if streams >= BUSY_STREAMS {
                READ_CHUNK_BUSY
            } else {
                READ_CHUNK
            } as u64;
            let mut left = len;
            let mut pos = offset as i64;
            let mut prefetched = pos;
            while left > 0 {
                // Keep the kernel fetching PREFETCH ahead (a no-op for cached pages).
                if prefetched < pos + PREFETCH / 2 && left > chunk {
                    let _ = nix::fcntl::posix_fadvise(
                        &file,
                        pos,
                        PREFETCH.min(left as i64),
                        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
                    );
                    prefetched = pos + PREFETCH;
                }
                let want = left.min(chunk);
                // read_to_end fills spare capacity without zeroing it first.
                let mut buf = Vec::with_capacity(want as usize);
                let r = (&mut file).take(want).read_to_end(&mut buf);
                let msg = match r {
                    Ok(0) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than expected", path.display()),
                    )),
                    Ok(n) => {
                        left -= n as u64;
                        pos += n as i64;
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let failed = msg.is_err();
                if tx.blocking_send(msg).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }

    /// Opens an upload file for appending at exactly `offset` (its current size).
    pub async fn append_at(&self, rel: &Path, offset: u64) -> Result<AppendFile, Error> {
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

    /// Opens a file for reading on the calling (blocking) thread; for rehashing uploads.
    pub fn open_sync(&self, rel: &Path) -> Result<File, Error> {
        let path = self.abs(rel);
        File::open(&path).map_err(|e| Error::io(&path, e))
    }

    /// Makes the upload file at `from` the blob at `to`: fsync, rename, fsync the
    /// directories. A rename, never a copy. If `to` already exists (an identical concurrent
    /// push), the existing file stays and `from` is removed.
    pub async fn commit(&self, from: &Path, to: &Path) -> Result<(), Error> {
        let from = self.abs(from);
        let to = self.abs(to);
        blocking(move || {
            if to.exists() {
                let _ = fs::remove_file(&from);
                return Ok(());
            }
            File::open(&from)
                .and_then(|f| f.sync_all())
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

impl AppendFile {
    pub fn write_all(&mut self, b: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Bytes written through this handle.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Drops what this handle wrote, leaving the file as it was when opened.
    pub fn rollback(self) -> Result<(), Error> {
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
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
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
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
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
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

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
    async fn read_stream_returns_the_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FsDriver::open(dir.path()).expect("open");
        let body: Vec<u8> = (0..READ_CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        d.write_atomic(Path::new("f"), Bytes::from(body.clone()))
            .await
            .expect("write");
        let mut rx = d
            .read_stream(Path::new("f"), 10, body.len() as u64 - 20)
            .await
            .expect("stream")
            .expect("exists");
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            got.extend_from_slice(&c.expect("chunk"));
        }
        assert_eq!(got, &body[10..body.len() - 10]);
        assert!(d
            .read_stream(Path::new("nope"), 0, 1)
            .await
            .expect("ok")
            .is_none());
    }
}
