//! The S3 driver: the store's layout as object keys in a bucket, byte for byte the keys
//! registry:2's s3 driver uses (`<prefix>docker/registry/v2/...`), so a registry:2
//! bucket is served as it is, and several berth replicas can share one.
//!
//! What the filesystem gets from POSIX, this driver builds from plain GET/PUT/LIST/DELETE
//! (no conditional writes: not every S3-compatible store honours them):
//! - **Uploads** are segments, one object per request that appended
//!   (`…/_uploads/<id>/data.seg/<offset>`, each written by a multipart upload of its own
//!   as the bytes stream in). Their state is in the bucket, so any replica continues any
//!   upload, and no secret needs sharing. Committing assembles the segments at the blob's
//!   key inside the store (CopyObject or UploadPartCopy): no bytes pass through berth
//!   again, except segments under S3's 5 MiB part minimum.
//! - **"Used" marks** are small objects under `<prefix>.berth/marks/` holding the time
//!   (`Meta::last_used` is the later of the object's and its mark's).
//! - **The collector's move** (`move_tree`) is a copy and a delete with a doom marker
//!   written first: a reader marks, then looks for the marker, then for the object; the
//!   mover writes the marker, then reads the marks. One of them always sees the other,
//!   so a blob a reader was told is present carries that reader's mark to wherever it is
//!   moved, and a blob being moved is reported absent (see `lease` for the same
//!   argument).
//! - **Locks** are leases (see [`lease`]).
//! - **Caches**: blob bytes read whole (manifests) are immutable, cached by key; links
//!   and absent answers are cached for [`LINK_TTL`], so a tag moved through another
//!   replica is seen within that time, and this replica's own writes at once.

pub mod lease;
pub mod wire;

use super::content::BlobSource;
use super::driver::{Append, Driver, Locked, Meta, Reads, Renamed, Usage};
use super::Error;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use wire::Target;
use wire::Wire;

/// How long a link (tag, revision, layer) read from the bucket is trusted here.
pub(crate) const LINK_TTL: Duration = Duration::from_millis(250);
/// Bytes of immutable objects kept in memory.
const CACHE_BYTES: usize = 16 << 20;
/// A doom marker is obeyed this long after it was written (a collector that died midway
/// stops hiding the blob after it).
const DOOM_FOR: Duration = Duration::from_secs(300);
/// S3's smallest part (except the last).
const PART_MIN: u64 = 5 << 20;

/// How the driver behaves beyond where the bucket is.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory inside the bucket (registry:2's `rootdirectory`), without slashes
    /// at its ends; empty for the bucket's top.
    pub prefix: String,
    /// Blob GETs answer 307 to a presigned URL.
    pub redirect: bool,
    pub redirect_for: Duration,
    /// Bytes per uploaded part.
    pub part_size: u64,
    /// One request's deadline.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            redirect: false,
            redirect_for: Duration::from_secs(20 * 60),
            part_size: 8 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A driver on one bucket. Cloning shares the connection pool, caches and counters.
#[derive(Clone)]
pub struct S3Driver {
    inner: Arc<Inner>,
}

struct Inner {
    wire: Arc<Wire>,
    opts: Options,
    /// `<prefix>/` or empty.
    root: String,
    location: String,
    cache: Mutex<Cache>,
    /// When this process last wrote each mark (writes within the caller's window skip).
    marked: Mutex<HashMap<String, Instant>>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Instant, Option<Bytes>)>,
    bytes: usize,
}

impl std::fmt::Debug for S3Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Driver")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

fn rel_str(p: &Path) -> String {
    let mut s = String::new();
    for c in p.components() {
        if let Component::Normal(n) = c {
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(&n.to_string_lossy());
        }
    }
    s
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn ms_time(b: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let ms: u64 = s.strip_prefix('=').unwrap_or(s).parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A mark that a move wrote: its time is the object's last use, whatever the copy's own
/// `LastModified` (the time of the move) says.
fn moved_mark(b: &[u8]) -> bool {
    b.first() == Some(&b'=')
}

/// Whether `rel` is an upload's data (`…/_uploads/<id>/data`), which is kept as segments.
fn is_upload_data(rel: &str) -> bool {
    let mut parts = rel.rsplit('/');
    parts.next() == Some("data") && parts.next().is_some() && parts.next() == Some("_uploads")
}

/// Whether the bytes at `rel` can never change (content-addressed).
fn immutable(rel: &str) -> bool {
    rel.starts_with("docker/registry/v2/blobs/")
}

/// Where `[storage.s3]` says the bucket is, with the credentials it names: the access key
/// id from `access_key_id` or `AWS_ACCESS_KEY_ID`, the secret from
/// `secret_access_key_file` (not readable by everyone) or `AWS_SECRET_ACCESS_KEY` (or
/// registry:2's `REGISTRY_STORAGE_S3_SECRETKEY`). Errors name the key and the fix.
pub fn target_from(
    cfg: &crate::config::S3Storage,
    env: &[(String, String)],
) -> Result<(Target, Options), String> {
    let var = |k: &str| {
        env.iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let endpoint = cfg
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", cfg.region));
    let endpoint =
        url::Url::parse(&endpoint).map_err(|e| format!("storage.s3.endpoint {endpoint:?}: {e}"))?;
    let access_key_id = cfg
        .access_key_id
        .clone()
        .or_else(|| var("AWS_ACCESS_KEY_ID"))
        .ok_or(
            "storage.s3.access_key_id: no access key: set it in [storage.s3] or AWS_ACCESS_KEY_ID",
        )?;
    let secret_access_key = match &cfg.secret_access_key_file {
        Some(path) => {
            use std::os::unix::fs::PermissionsExt;
            let shown = path.display();
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("storage.s3.secret_access_key_file {shown}: {e}"))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o007 != 0 {
                return Err(format!(
                    "storage.s3.secret_access_key_file {shown}: readable by every user (mode {mode:04o}); chmod 0600 it (or 0640 with group berth)"
                ));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("storage.s3.secret_access_key_file {shown}: {e}"))?;
            let secret = text.trim().to_string();
            if secret.is_empty() {
                return Err(format!("storage.s3.secret_access_key_file {shown}: the file is empty"));
            }
            secret
        }
        None => var("AWS_SECRET_ACCESS_KEY")
            .or_else(|| var("REGISTRY_STORAGE_S3_SECRETKEY"))
            .ok_or(
                "storage.s3.secret_access_key_file: no secret key: set it to a file holding the secret (mode 0600), or set AWS_SECRET_ACCESS_KEY",
            )?,
    };
    let target = Target {
        endpoint,
        region: cfg.region.clone(),
        bucket: cfg.bucket.clone(),
        path_style: cfg.path_style,
        access_key_id,
        secret_access_key,
        ca: cfg.ca.clone(),
    };
    let opts = Options {
        prefix: cfg.prefix.trim_matches('/').to_string(),
        redirect: cfg.redirect,
        redirect_for: cfg.redirect_expiry.0,
        part_size: cfg.part_size.0,
        ..Options::default()
    };
    Ok((target, opts))
}

impl S3Driver {
    /// The driver on `target`'s bucket; checks that the bucket is there and the
    /// credentials work (an error names the key to fix). Its connections belong to the
    /// runtime it is called on.
    pub async fn connect(target: &Target, opts: Options) -> Result<Self, String> {
        Self::check(target, &opts).await?;
        Self::unchecked(target, opts)
    }

    /// Whether the bucket is there and the credentials work, on a connection of its own.
    pub async fn check(target: &Target, opts: &Options) -> Result<(), String> {
        Wire::new(target, opts.timeout)?.check_bucket().await
    }

    /// The driver, without a request (for a runtime that does not run yet).
    pub fn unchecked(target: &Target, opts: Options) -> Result<Self, String> {
        let wire = Wire::new(target, opts.timeout)?;
        Ok(Self::new(target, wire, opts))
    }

    pub(crate) fn new(target: &Target, wire: Wire, opts: Options) -> Self {
        let prefix = opts.prefix.trim_matches('/').to_string();
        let root = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let location = format!("s3://{}/{}", target.bucket, prefix);
        Self {
            inner: Arc::new(Inner {
                wire: Arc::new(wire),
                opts,
                root,
                location,
                cache: Mutex::default(),
                marked: Mutex::default(),
            }),
        }
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.inner.root)
    }

    fn mark_key(&self, rel: &str) -> String {
        format!("{}.berth/marks/{rel}", self.inner.root)
    }

    fn doom_key(&self, rel: &str) -> String {
        format!("{}.berth/doom/{rel}", self.inner.root)
    }

    fn lock_key(&self, rel: &str) -> String {
        format!("{}.berth/locks/{rel}", self.inner.root)
    }

    fn seg_prefix(&self, rel: &str) -> String {
        format!("{}{rel}.seg/", self.inner.root)
    }

    fn cached(&self, rel: &str) -> Option<Option<Bytes>> {
        #[cfg(test)]
        if wire::broken(&self.key(rel)) {
            return None;
        }
        let c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, v) = c.entries.get(rel)?;
        if (v.is_some() && immutable(rel)) || at.elapsed() < LINK_TTL {
            return Some(v.clone());
        }
        None
    }

    fn remember(&self, rel: &str, at: Instant, v: Option<Bytes>) {
        let mut c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        let n = v.as_ref().map_or(0, Bytes::len);
        if n > CACHE_BYTES / 4 {
            return;
        }
        if c.bytes + n > CACHE_BYTES || c.entries.len() > 100_000 {
            c.entries.clear();
            c.bytes = 0;
        }
        c.bytes += n;
        if let Some((_, old)) = c.entries.insert(rel.to_string(), (at, v)) {
            c.bytes -= old.map_or(0, |b| b.len());
        }
    }

    fn forget_prefix(&self, rel: &str) {
        let mut c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        let dir = format!("{rel}/");
        let mut freed = 0;
        c.entries.retain(|k, (_, v)| {
            let keep = k != rel && !k.starts_with(&dir);
            if !keep {
                freed += v.as_ref().map_or(0, Bytes::len);
            }
            keep
        });
        c.bytes -= freed;
    }

    async fn read_rel(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        if let Some(v) = self.cached(rel) {
            return Ok(v.map(|b| b.to_vec()));
        }
        let started = Instant::now();
        let v = self.inner.wire.get(&self.key(rel)).await?;
        self.remember(rel, started, v.clone());
        Ok(v.map(|b| b.to_vec()))
    }

    /// The later of the object's time and its mark's.
    async fn last_used(
        &self,
        rel: &str,
        modified: Option<SystemTime>,
    ) -> Result<Option<SystemTime>, Error> {
        let body = self.inner.wire.get(&self.mark_key(rel)).await?;
        let mark = body.as_deref().and_then(ms_time);
        if body.as_deref().is_some_and(moved_mark) {
            return Ok(mark);
        }
        Ok(match (modified, mark) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        })
    }

    /// Segments of an upload: (key, offset, size), in order; `None` when there is no
    /// such upload.
    async fn segments(&self, rel: &str) -> Result<Option<Vec<(String, u64, u64)>>, Error> {
        let prefix = self.seg_prefix(rel);
        let (objects, _) = self.inner.wire.list(&prefix, None, None).await?;
        if objects.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(objects.len());
        let mut at = 0u64;
        for o in objects {
            let Ok(offset) = o.key[prefix.len()..].parse::<u64>() else {
                continue;
            };
            if offset != at {
                return Err(Error::Internal(format!(
                    "upload {rel}: a segment starts at {offset}, not at {at} (written by two writers at once?)"
                )));
            }
            at += o.size;
            out.push((o.key, offset, o.size));
        }
        Ok(Some(out))
    }

    async fn stat_rel(&self, rel: &str) -> Result<Option<Meta>, Error> {
        let w = &self.inner.wire;
        let upload = |segs: Vec<(String, u64, u64)>| Meta {
            size: segs.iter().map(|s| s.2).sum(),
            is_dir: false,
            last_used: Some(SystemTime::now()),
        };
        // An upload's data is its segments; any key may be one (an upload is where
        // create_upload put it), the layout's upload keys are looked up that way first.
        let named_upload = is_upload_data(rel);
        if named_upload {
            if let Some(segs) = self.segments(rel).await? {
                return Ok(Some(upload(segs)));
            }
        }
        if let Some(h) = w.head(&self.key(rel)).await? {
            return Ok(Some(Meta {
                size: h.size,
                is_dir: false,
                last_used: self.last_used(rel, h.last_modified).await?,
            }));
        }
        if !named_upload {
            if let Some(segs) = self.segments(rel).await? {
                return Ok(Some(upload(segs)));
            }
        }
        let dir = format!("{}/", self.key(rel));
        let (objects, prefixes) = w.list(&dir, Some("/"), Some(1)).await?;
        if objects.is_empty() && prefixes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Meta {
            size: 0,
            is_dir: true,
            last_used: None,
        }))
    }

    /// Whether a collector is moving the prefix `rel` away now.
    async fn doomed(&self, rel: &str) -> Result<bool, Error> {
        let Some(b) = self.inner.wire.get(&self.doom_key(rel)).await? else {
            return Ok(false);
        };
        Ok(ms_time(&b).is_some_and(|until| until > SystemTime::now()))
    }

    async fn mark_rel(&self, rel: &str, fresh_within: Duration) -> Result<Option<Meta>, Error> {
        let skip = !fresh_within.is_zero()
            && self
                .inner
                .marked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(rel)
                .is_some_and(|t| t.elapsed() < fresh_within);
        if !skip {
            self.inner
                .wire
                .put(&self.mark_key(rel), Bytes::from(now_ms().to_string()))
                .await?;
            let mut m = self.inner.marked.lock().unwrap_or_else(|p| p.into_inner());
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(rel.to_string(), Instant::now());
        }
        // Mark, then the doom marker, then the object: see the module doc.
        if let Some(parent) = Path::new(rel).parent() {
            if self.doomed(&rel_str(parent)).await? {
                return Ok(None);
            }
        }
        Ok(self.inner.wire.head(&self.key(rel)).await?.map(|h| Meta {
            size: h.size,
            is_dir: false,
            last_used: Some(SystemTime::now()),
        }))
    }

    /// Every object under the prefix `rel` (not `rel` itself).
    async fn under(&self, rel: &str) -> Result<Vec<wire::Listed>, Error> {
        let dir = format!("{}/", self.key(rel));
        Ok(self.inner.wire.list(&dir, None, None).await?.0)
    }

    async fn remove_rel_tree(&self, rel: &str) -> Result<Option<Usage>, Error> {
        let w = &self.inner.wire;
        let mut objects = self.under(rel).await?;
        if let Some(h) = w.head(&self.key(rel)).await? {
            objects.push(wire::Listed {
                key: self.key(rel),
                size: h.size,
                last_modified: h.last_modified,
            });
        }
        self.forget_prefix(rel);
        if objects.is_empty() {
            return Ok(None);
        }
        let usage = Usage {
            files: objects.len() as u64,
            bytes: objects.iter().map(|o| o.size).sum(),
        };
        let mut keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
        // Their marks go too (a mark without its object is only clutter).
        let root = self.inner.root.len();
        keys.extend(objects.iter().map(|o| self.mark_key(&o.key[root..])));
        w.delete_many(&keys).await?;
        Ok(Some(usage))
    }

    /// Puts the segments of the upload `from` together as the object `to`, inside the
    /// store.
    async fn assemble(&self, segs: &[(String, u64, u64)], to: &str) -> Result<(), Error> {
        let w = &self.inner.wire;
        let segs: Vec<_> = segs.iter().filter(|s| s.2 > 0).collect();
        match segs.as_slice() {
            [] => return w.put(to, Bytes::new()).await,
            [one] => {
                if w.copy(&one.0, to).await? {
                    return Ok(());
                }
                return Err(Error::UploadUnknown);
            }
            _ => {}
        }
        let mpu = w.mpu_create(to).await?;
        let result = async {
            let mut etags = Vec::new();
            let mut small = BytesMut::new();
            let last = segs.len() - 1;
            for (i, (key, _, size)) in segs.iter().map(|s| (&s.0, s.1, s.2)).enumerate() {
                let n = u16::try_from(etags.len() + 1)
                    .map_err(|_| Error::Internal("upload has too many segments".into()))?;
                if size < PART_MIN && (i != last || !small.is_empty()) {
                    // Under S3's part minimum: gathered here into one part.
                    let bytes = w.get(key).await?.ok_or(Error::UploadUnknown)?;
                    small.extend_from_slice(&bytes);
                    if small.len() as u64 >= PART_MIN || i == last {
                        let part = small.split().freeze();
                        etags.push(w.mpu_part(to, &mpu, n, part).await?);
                    }
                    continue;
                }
                if !small.is_empty() {
                    let part = small.split().freeze();
                    etags.push(w.mpu_part(to, &mpu, n, part).await?);
                }
                let n = u16::try_from(etags.len() + 1)
                    .map_err(|_| Error::Internal("upload has too many segments".into()))?;
                // A copy is at most 5 GiB per part.
                let mut start = 0u64;
                let mut n = n;
                while start < size {
                    let end = (start + (5 << 30)).min(size) - 1;
                    let range = if start == 0 && end + 1 == size {
                        None
                    } else {
                        Some((start, end))
                    };
                    etags.push(w.mpu_part_copy(to, &mpu, n, key, range).await?);
                    n += 1;
                    start = end + 1;
                }
            }
            w.mpu_complete(to, &mpu, &etags).await
        }
        .await;
        if result.is_err() {
            let _ = w.mpu_abort(to, &mpu).await;
        }
        result
    }
}

/// The blocking side, on the blocking pool: each miss is a request run to completion.
pub struct S3Reads {
    driver: S3Driver,
    handle: tokio::runtime::Handle,
}

impl Reads for S3Reads {
    fn read(&self, key: &Path) -> Result<Option<Vec<u8>>, Error> {
        let rel = rel_str(key);
        if let Some(v) = self.driver.cached(&rel) {
            return Ok(v.map(|b| b.to_vec()));
        }
        self.handle.block_on(self.driver.read_rel(&rel))
    }

    fn mark_used(&self, key: &Path, fresh_within: Duration) -> Result<Option<Meta>, Error> {
        self.handle
            .block_on(self.driver.mark_rel(&rel_str(key), fresh_within))
    }

    fn open_blob(&self, key: &Path) -> Result<Option<BlobSource>, Error> {
        let rel = rel_str(key);
        let d = self.driver.clone();
        let k = d.key(&rel);
        if d.inner.opts.redirect {
            return Ok(Some(BlobSource::Redirect(
                d.inner.wire.presign_get(&k, d.inner.opts.redirect_for),
            )));
        }
        if self.handle.block_on(d.inner.wire.head(&k))?.is_none() {
            return Ok(None);
        }
        let wire = d.inner.wire.clone();
        Ok(Some(BlobSource::Stream(Box::new(move |offset, len| {
            stream(wire, k, offset, len)
        }))))
    }

    fn open_read(&self, key: &Path) -> Result<Box<dyn io::Read + Send>, Error> {
        let rel = rel_str(key);
        let d = &self.driver;
        let k = d.key(&rel);
        let pieces = match self.handle.block_on(d.inner.wire.head(&k))? {
            Some(h) => vec![(k, h.size)],
            None => self
                .handle
                .block_on(d.segments(&rel))?
                .ok_or_else(|| Error::io(key, io::ErrorKind::NotFound.into()))?
                .into_iter()
                .map(|(k, _, size)| (k, size))
                .collect(),
        };
        Ok(Box::new(ObjectReader {
            wire: d.inner.wire.clone(),
            handle: self.handle.clone(),
            pieces,
            at: 0,
            buf: Bytes::new(),
        }))
    }
}

/// Objects read one after another in bounded ranged GETs.
struct ObjectReader {
    wire: Arc<Wire>,
    handle: tokio::runtime::Handle,
    pieces: Vec<(String, u64)>,
    at: u64,
    buf: Bytes,
}

impl io::Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            let Some((key, size)) = self.pieces.first().cloned() else {
                return Ok(0);
            };
            if self.at >= size {
                self.pieces.remove(0);
                self.at = 0;
                continue;
            }
            let len = (size - self.at).min(8 << 20);
            let wire = self.wire.clone();
            let at = self.at;
            let bytes = self
                .handle
                .block_on(async move {
                    wire.get_range(&key, at, len)
                        .await?
                        .bytes()
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))
                })
                .map_err(io::Error::other)?;
            if bytes.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object shorter than listed",
                ));
            }
            self.at += bytes.len() as u64;
            self.buf = bytes;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// `len` bytes of `key` from `offset`, as the response body streams them in.
fn stream(wire: Arc<Wire>, key: String, offset: u64, len: u64) -> crate::body::BodyStream {
    enum State {
        Start,
        Reading(crate::upstream::Response, u64),
        Done,
    }
    let s = futures_util::stream::unfold(State::Start, move |state| {
        let (wire, key) = (wire.clone(), key.clone());
        async move {
            let (mut resp, left) = match state {
                State::Done => return None,
                State::Start if len == 0 => return None,
                State::Start => match wire.get_range(&key, offset, len).await {
                    Ok(r) => (r, len),
                    Err(e) => return Some((Err(io::Error::other(e.to_string())), State::Done)),
                },
                State::Reading(r, left) => (r, left),
            };
            match resp.chunk().await {
                Ok(Some(b)) => {
                    let left = left.saturating_sub(b.len() as u64);
                    Some((Ok(b), State::Reading(resp, left)))
                }
                Ok(None) if left == 0 => None,
                Ok(None) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object storage ended the body early",
                    )),
                    State::Done,
                )),
                Err(e) => Some((Err(io::Error::other(e.to_string())), State::Done)),
            }
        }
    });
    Box::pin(s)
}

/// One request's bytes of an upload: a segment object, streamed up as a multipart upload.
pub struct S3Append {
    wire: Arc<Wire>,
    handle: tokio::runtime::Handle,
    key: String,
    part_size: usize,
    buf: BytesMut,
    mpu: Option<(String, Vec<String>)>,
    written: u64,
    writer: Option<lease::Lease>,
}

impl S3Append {
    /// Lets the next request write (at once: it may come straight after this one).
    fn let_go(&mut self) {
        if let Some(l) = self.writer.take() {
            self.handle.block_on(l.release());
        }
    }

    fn flush_part(&mut self) -> Result<(), Error> {
        let part = self.buf.split().freeze();
        let (wire, key) = (self.wire.clone(), self.key.clone());
        let mpu = match &self.mpu {
            Some((id, _)) => id.clone(),
            None => {
                let id = self.handle.block_on(wire.mpu_create(&key))?;
                self.mpu = Some((id.clone(), Vec::new()));
                id
            }
        };
        let n = self.mpu.as_ref().map_or(0, |m| m.1.len()) + 1;
        let n = u16::try_from(n)
            .map_err(|_| Error::Internal("upload request has too many parts".into()))?;
        let etag = self.handle.block_on(wire.mpu_part(&key, &mpu, n, part))?;
        if let Some((_, etags)) = &mut self.mpu {
            etags.push(etag);
        }
        Ok(())
    }
}

impl Append for S3Append {
    fn write_all(&mut self, b: &[u8]) -> Result<(), Error> {
        self.buf.extend_from_slice(b);
        self.written += b.len() as u64;
        while self.buf.len() >= self.part_size {
            let rest = self.buf.split_off(self.part_size);
            self.flush_part()?;
            self.buf = rest;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn finish(mut self) -> Result<(), Error> {
        let kept = self.keep();
        self.let_go();
        kept
    }

    fn rollback(mut self) -> Result<(), Error> {
        let dropped = match self.mpu.take() {
            Some((id, _)) => self.handle.block_on(self.wire.mpu_abort(&self.key, &id)),
            None => Ok(()),
        };
        self.let_go();
        dropped
    }
}

impl S3Append {
    fn keep(&mut self) -> Result<(), Error> {
        if self.written == 0 {
            return Ok(());
        }
        let wire = self.wire.clone();
        match self.mpu.take() {
            None => {
                let body = self.buf.split().freeze();
                self.handle.block_on(wire.put(&self.key, body))
            }
            Some(m) => {
                self.mpu = Some(m);
                if !self.buf.is_empty() {
                    self.flush_part()?;
                }
                let Some((id, etags)) = self.mpu.take() else {
                    return Ok(());
                };
                self.handle
                    .block_on(wire.mpu_complete(&self.key, &id, &etags))
            }
        }
    }
}

impl Drop for S3Append {
    fn drop(&mut self) {
        // Neither finished nor rolled back (a panic): the parts are not kept.
        if let Some((id, _)) = self.mpu.take() {
            let (wire, key) = (self.wire.clone(), self.key.clone());
            self.handle.spawn(async move {
                let _ = wire.mpu_abort(&key, &id).await;
            });
        }
    }
}

impl Driver for S3Driver {
    type Reads = S3Reads;
    type Append = S3Append;
    type Lock = lease::Lease;

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn reads(&self) -> S3Reads {
        S3Reads {
            driver: self.clone(),
            handle: tokio::runtime::Handle::current(),
        }
    }

    async fn read(&self, key: &Path) -> Result<Option<Vec<u8>>, Error> {
        self.read_rel(&rel_str(key)).await
    }

    async fn stat(&self, key: &Path) -> Result<Option<Meta>, Error> {
        self.stat_rel(&rel_str(key)).await
    }

    async fn mark_used(&self, key: &Path, fresh_within: Duration) -> Result<Option<Meta>, Error> {
        self.mark_rel(&rel_str(key), fresh_within).await
    }

    async fn write_atomic(&self, key: &Path, bytes: Bytes) -> Result<(), Error> {
        let rel = rel_str(key);
        self.inner.wire.put(&self.key(&rel), bytes.clone()).await?;
        self.remember(&rel, Instant::now(), Some(bytes));
        Ok(())
    }

    async fn list_dirs(&self, prefix: &Path) -> Result<Vec<String>, Error> {
        let dir = format!("{}/", self.key(&rel_str(prefix)));
        let (_, prefixes) = self.inner.wire.list(&dir, Some("/"), None).await?;
        let mut names: Vec<String> = prefixes
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix(&dir)
                    .map(|n| n.trim_end_matches('/').to_string())
            })
            .filter(|n| !n.is_empty())
            .collect();
        // S3 orders whole keys, so "a-/" comes before "a/"; the contract is bytewise names.
        names.sort();
        Ok(names)
    }

    async fn find_dirs_with(
        &self,
        prefix: &Path,
        markers: &'static [&'static str],
    ) -> Result<Vec<String>, Error> {
        let base = rel_str(prefix);
        let mut out = Vec::new();
        let mut todo = vec![String::new()];
        while let Some(dir) = todo.pop() {
            let here = if dir.is_empty() {
                base.clone()
            } else {
                format!("{base}/{dir}")
            };
            let names = self.list_dirs(Path::new(&here)).await?;
            if names.iter().any(|n| markers.contains(&n.as_str())) && !dir.is_empty() {
                out.push(dir.clone());
            }
            for n in names {
                if n.starts_with('_') {
                    continue;
                }
                todo.push(if dir.is_empty() {
                    n
                } else {
                    format!("{dir}/{n}")
                });
            }
        }
        out.sort();
        Ok(out)
    }

    async fn remove_file(&self, key: &Path) -> Result<bool, Error> {
        let rel = rel_str(key);
        let k = self.key(&rel);
        let there = self.inner.wire.head(&k).await?.is_some();
        if there {
            self.inner
                .wire
                .delete_many(&[k, self.mark_key(&rel)])
                .await?;
        }
        self.forget_prefix(&rel);
        Ok(there)
    }

    async fn remove_dir_all(&self, prefix: &Path) -> Result<bool, Error> {
        Ok(self.remove_rel_tree(&rel_str(prefix)).await?.is_some())
    }

    async fn remove_tree(&self, prefix: &Path) -> Result<Option<Usage>, Error> {
        self.remove_rel_tree(&rel_str(prefix)).await
    }

    async fn usage(&self, prefix: &Path) -> Result<Option<Usage>, Error> {
        let rel = rel_str(prefix);
        let objects = self.under(&rel).await?;
        if objects.is_empty() {
            return Ok(self.inner.wire.head(&self.key(&rel)).await?.map(|h| Usage {
                files: 1,
                bytes: h.size,
            }));
        }
        Ok(Some(Usage {
            files: objects.len() as u64,
            bytes: objects.iter().map(|o| o.size).sum(),
        }))
    }

    async fn prune_empty(&self, prefix: &Path) -> Result<bool, Error> {
        let dir = format!("{}/", self.key(&rel_str(prefix)));
        let (objects, _) = self.inner.wire.list(&dir, None, Some(1)).await?;
        Ok(objects.is_empty())
    }

    async fn remove_empty_dirs_up(&self, _prefix: &Path, _stop: &Path) -> Result<(), Error> {
        Ok(())
    }

    async fn create_upload(
        &self,
        data: &Path,
        marker: &Path,
        marker_body: Bytes,
    ) -> Result<(), Error> {
        let rel = rel_str(data);
        let w = &self.inner.wire;
        w.put(&self.key(&rel_str(marker)), marker_body).await?;
        // An empty first segment: the upload exists, at size 0.
        w.put(&format!("{}{:020}", self.seg_prefix(&rel), 0), Bytes::new())
            .await
    }

    async fn append_at(&self, key: &Path, offset: u64) -> Result<S3Append, Error> {
        let rel = rel_str(key);
        let base = self.lock_key(&rel);
        // A writer that ended without finishing (a client gone mid-request) lets go by a
        // spawned DELETE, which may still be on its way: look a few times before calling
        // the upload busy. A live writer renews its lease and stays busy.
        let mut writer = None;
        for _ in 0..10 {
            writer = lease::try_exclusive(&self.inner.wire, &base).await?;
            if writer.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(writer) = writer else {
            return Err(Error::UploadBusy);
        };
        let size = match self.segments(&rel).await? {
            Some(segs) => segs.iter().map(|s| s.2).sum::<u64>(),
            None => return Err(Error::UploadUnknown),
        };
        if size != offset {
            return Err(Error::UploadOffset {
                expected: offset,
                actual: size,
            });
        }
        Ok(S3Append {
            wire: self.inner.wire.clone(),
            handle: tokio::runtime::Handle::current(),
            key: format!("{}{:020}", self.seg_prefix(&rel), offset),
            part_size: usize::try_from(self.inner.opts.part_size.max(PART_MIN)).unwrap_or(8 << 20),
            buf: BytesMut::new(),
            mpu: None,
            written: 0,
            writer: Some(writer),
        })
    }

    async fn commit(&self, from: &Path, to: &Path) -> Result<(), Error> {
        let (from, to) = (rel_str(from), rel_str(to));
        let w = &self.inner.wire;
        // Mark first, then wait out a collector moving the blob (module doc).
        w.put(&self.mark_key(&to), Bytes::from(now_ms().to_string()))
            .await?;
        if let Some(parent) = Path::new(&to).parent() {
            let parent = rel_str(parent);
            let started = Instant::now();
            while self.doomed(&parent).await? {
                if started.elapsed() > DOOM_FOR {
                    return Err(Error::Unavailable(format!(
                        "{to}: a garbage collection holds it"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        let segs = self.segments(&from).await?.ok_or(Error::UploadUnknown)?;
        if w.head(&self.key(&to)).await?.is_none() {
            self.assemble(&segs, &self.key(&to)).await?;
        }
        self.forget_prefix(&to);
        let keys: Vec<String> = segs.into_iter().map(|s| s.0).collect();
        w.delete_many(&keys).await
    }

    async fn move_tree(&self, from: &Path, to: &Path, _durable: bool) -> Result<Renamed, Error> {
        let (from, to) = (rel_str(from), rel_str(to));
        let w = &self.inner.wire;
        let root = self.inner.root.len();
        let mut objects = self.under(&from).await?;
        let single = objects.is_empty();
        if single {
            match w.head(&self.key(&from)).await? {
                Some(h) => objects.push(wire::Listed {
                    key: self.key(&from),
                    size: h.size,
                    last_modified: h.last_modified,
                }),
                None => return Ok(Renamed::SourceMissing),
            }
        }
        if !self.under(&to).await?.is_empty() || w.head(&self.key(&to)).await?.is_some() {
            return Ok(Renamed::TargetExists);
        }
        // The doom marker first; then the marks are read (module doc).
        let until = now_ms() + DOOM_FOR.as_millis();
        w.put(&self.doom_key(&from), Bytes::from(until.to_string()))
            .await?;
        let result = async {
            for o in &objects {
                let rel = &o.key[root..];
                let dest = if single {
                    to.clone()
                } else {
                    format!("{to}{}", &rel[from.len()..])
                };
                if !w.copy(&o.key, &self.key(&dest)).await? {
                    continue;
                }
                let mark = w.get(&self.mark_key(rel)).await?;
                let used = match (mark.as_deref().and_then(ms_time), o.last_modified) {
                    (Some(a), Some(b)) => a.max(b),
                    (a, b) => a.or(b).unwrap_or_else(SystemTime::now),
                };
                let ms = used.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
                w.put(&self.mark_key(&dest), Bytes::from(format!("={ms}")))
                    .await?;
            }
            let mut keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
            keys.extend(objects.iter().map(|o| self.mark_key(&o.key[root..])));
            w.delete_many(&keys).await
        }
        .await;
        self.forget_prefix(&from);
        self.forget_prefix(&to);
        w.delete(&self.doom_key(&from)).await?;
        result.map(|()| Renamed::Done)
    }

    async fn lock_shared(&self, key: &Path) -> Result<lease::Lease, Error> {
        lease::shared(&self.inner.wire, &self.lock_key(&rel_str(key))).await
    }

    async fn lock_exclusive(&self, key: &Path) -> Result<lease::Lease, Error> {
        lease::exclusive(&self.inner.wire, &self.lock_key(&rel_str(key))).await
    }

    async fn unlock(&self, lock: lease::Lease) {
        lock.release().await;
    }

    async fn try_lock(&self, key: &Path, create: bool) -> Result<Locked<lease::Lease>, Error> {
        let rel = rel_str(key);
        if !create && self.stat_rel(&rel).await?.is_none() {
            return Ok(Locked::Missing);
        }
        match lease::try_exclusive(&self.inner.wire, &self.lock_key(&rel)).await? {
            Some(l) => Ok(Locked::Held(l)),
            None => Ok(Locked::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{run, Medium};

    /// The bucket the tests use: from `BERTH_S3_ENDPOINT`, `BERTH_S3_BUCKET`,
    /// `BERTH_S3_REGION`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (what
    /// `tests/e2e/garage.sh start DIR` writes to `DIR/env`); `None` when unset.
    pub(crate) fn test_target() -> Option<Target> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(Target {
            endpoint: url::Url::parse(&var("BERTH_S3_ENDPOINT")?).ok()?,
            region: var("BERTH_S3_REGION").unwrap_or_else(|| "garage".into()),
            bucket: var("BERTH_S3_BUCKET").unwrap_or_else(|| "berth".into()),
            path_style: true,
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            ca: None,
        })
    }

    struct S3 {
        target: Target,
        prefix: String,
    }

    impl Medium for S3 {
        type D = S3Driver;
        fn open(&self) -> S3Driver {
            let opts = Options {
                prefix: self.prefix.clone(),
                ..Options::default()
            };
            let wire = Wire::new(&self.target, opts.timeout).expect("wire");
            S3Driver::new(&self.target, wire, opts)
        }
        fn break_key(&self, key: &Path) -> bool {
            wire::BROKEN
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("{}/{}", self.prefix, rel_str(key)));
            true
        }
    }

    /// The storage contract on a real S3 store (Garage in CI). Skipped, saying so, when
    /// no endpoint is configured; `BERTH_S3_REQUIRED=1` (CI) makes that a failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3_driver_keeps_the_contract() {
        let Some(target) = test_target() else {
            assert!(
                std::env::var("BERTH_S3_REQUIRED").is_err(),
                "BERTH_S3_REQUIRED is set but BERTH_S3_ENDPOINT / AWS_ACCESS_KEY_ID are not"
            );
            eprintln!("skipped: no BERTH_S3_ENDPOINT (see tests/e2e/garage.sh)");
            return;
        };
        let m = S3 {
            target,
            prefix: format!("suite-{}", uuid::Uuid::new_v4().simple()),
        };
        let mib = std::env::var("BERTH_S3_SUITE_LARGE_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(300);
        let failures = run(&m, (mib << 20) + 3).await;
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn upload_data_keys_are_recognised() {
        assert!(is_upload_data(
            "docker/registry/v2/repositories/a/_uploads/x/data"
        ));
        assert!(!is_upload_data(
            "docker/registry/v2/blobs/sha256/aa/aa/data"
        ));
        assert!(!is_upload_data("data"));
    }
}
