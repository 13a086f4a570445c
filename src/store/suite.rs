//! The storage contract: what every backend must do, checked through [`Content`] on a
//! [`Store`] over the backend's [`Driver`]. The filesystem runs it in CI (the tests at the
//! bottom); an object-store backend runs the same [`run`] with its own [`Medium`].
//!
//! Each check returns what it found wrong instead of panicking, so [`run`] reports every
//! broken rule at once and the mutation tests can show that a deliberately broken driver
//! fails the suite.

use super::driver::{Append, Driver, Locked, Meta, Renamed, Usage};
use super::{BlobSource, Content, Error, Store};
use crate::oci::{Algorithm, Digest, Reference, RepositoryName, Tag};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::Digest as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A backend under test: drivers on one shared medium (each a separate "process": no
/// state in memory is shared between two of them).
pub(crate) trait Medium: Send + Sync {
    type D: Driver;
    /// A new driver on the medium.
    fn open(&self) -> Self::D;
    /// Makes reading `key` fail with an I/O error (not "not found"); `false` when the
    /// medium cannot be broken that way, and the check that needs it is skipped.
    fn break_key(&self, key: &Path) -> bool;
}

type Failures = Vec<String>;

macro_rules! check {
    ($failures:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $failures.push(format!($($msg)+));
        }
    };
}

/// Runs every check on `medium`; the failures, each naming its check.
pub(crate) async fn run<M: Medium>(medium: &M, large_bytes: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |name: &str, r: Result<Failures, Error>| match r {
        Ok(f) => out.extend(f.into_iter().map(|m| format!("{name}: {m}"))),
        Err(e) => out.push(format!("{name}: unexpected error: {e}")),
    };
    add(
        "names at the grammar's edges",
        names_at_the_edges(medium).await,
    );
    add("empty blob", empty_blob(medium).await);
    add("large blob", large_blob(medium, large_bytes).await);
    add("resumable upload", resumable_upload(medium).await);
    add(
        "concurrent identical commits",
        identical_commits(medium).await,
    );
    add("deletes", deletes(medium).await);
    add("listing order", listing_order(medium).await);
    add("not found", not_found(medium).await);
    add("I/O errors", io_errors(medium).await);
    add("driver primitives", primitives(medium).await);
    out
}

fn content<M: Medium>(m: &M) -> Arc<dyn Content> {
    Arc::new(Store::on(m.open()))
}

fn repo(s: &str) -> RepositoryName {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sha256(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, b)
}

/// Uploads `bytes` into `r` in one request and commits it.
async fn push_blob(c: &dyn Content, r: &RepositoryName, bytes: &[u8]) -> Result<Digest, Error> {
    let d = sha256(bytes);
    let id = c.upload_start(r).await?;
    let mut w = c.upload_writer(r, &id, 0).await?;
    if !bytes.is_empty() {
        w.write(Bytes::copy_from_slice(bytes)).await?;
    }
    w.finish().await?;
    c.upload_commit(r, &id, &d).await?;
    Ok(d)
}

/// Stores `body` as a manifest of `r` tagged `t`.
async fn push_manifest(
    c: &dyn Content,
    r: &RepositoryName,
    t: &Tag,
    body: &[u8],
) -> Result<Digest, Error> {
    let d = sha256(body);
    c.blob_put_small(&d, Bytes::copy_from_slice(body)).await?;
    c.manifest_link(r, &d).await?;
    c.tag_set(r, t, &d).await?;
    Ok(d)
}

/// The bytes of `len` at `offset` of a blob source, streamed.
async fn stream_of(
    src: BlobSource,
    offset: u64,
    len: u64,
) -> Result<crate::body::BodyStream, String> {
    match src {
        BlobSource::File(f) => Ok(f.slice(offset, len).into_stream()),
        BlobSource::Stream(open) => Ok(open(offset, len)),
        BlobSource::Redirect(url) => Err(format!("redirected to {url}: not readable here")),
    }
}

async fn read_all(src: BlobSource, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let mut s = stream_of(src, offset, len).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

async fn blob_bytes(
    c: &dyn Content,
    r: &RepositoryName,
    d: &Digest,
) -> Result<Option<Vec<u8>>, String> {
    match c.blob_open(r, d).await.map_err(|e| e.to_string())? {
        Some((size, src)) => read_all(src, 0, size).await.map(Some),
        None => Ok(None),
    }
}

async fn names_at_the_edges<M: Medium>(m: &M) -> Result<Failures, Error> {
    let c = content(m);
    let mut f = Failures::new();
    let long = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    let names = [
        "a",
        "0",
        "a/b/c/d/e/f",
        "a__b",
        "a---b",
        "a.b_c-d",
        long.as_str(),
    ];
    let tags = ["a", "_", "A", "0.0-_", &"x".repeat(128)];
    for (i, n) in names.iter().enumerate() {
        let r = repo(n);
        for t in tags {
            let body = format!("{{\"n\":\"{n}\",\"t\":\"{t}\",\"i\":{i}}}");
            let d = push_manifest(&*c, &r, &tag(t), body.as_bytes()).await?;
            let got = c.manifest_fetch(&r, &Reference::Tag(tag(t))).await?;
            check!(
                f,
                got.as_ref().map(|(g, b)| (g, &b[..])) == Some((&d, body.as_bytes())),
                "{n}:{t} reads back as {:?}",
                got.map(|(g, _)| g)
            );
        }
        let listed = c.tags(&r).await?.unwrap_or_default();
        let mut want: Vec<Tag> = tags.iter().map(|t| tag(t)).collect();
        want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        check!(f, listed == want, "{n}: tags are {listed:?}");
        let blob = format!("layer of {n}");
        let d = push_blob(&*c, &r, blob.as_bytes()).await?;
        check!(
            f,
            blob_bytes(&*c, &r, &d).await.ok().flatten().as_deref() == Some(blob.as_bytes()),
            "{n}: blob does not read back"
        );
    }
    let catalog = c.repositories().await?;
    for n in names {
        check!(f, catalog.contains(&repo(n)), "{n} is not in the catalog");
    }
    Ok(f)
}

async fn empty_blob<M: Medium>(m: &M) -> Result<Failures, Error> {
    let c = content(m);
    let mut f = Failures::new();
    let r = repo("empty");
    let d = push_blob(&*c, &r, b"").await?;
    check!(f, d == sha256(b""), "digest {d}");
    check!(f, c.blob_size(&r, &d).await? == Some(0), "size is not 0");
    check!(
        f,
        blob_bytes(&*c, &r, &d).await.ok().flatten() == Some(Vec::new()),
        "does not read back as nothing"
    );
    Ok(f)
}

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The `i`th MiB of the large blob: one random block with the chunk number in front, so
/// no two chunks are the same and a reordering is caught.
fn large_chunk(block: &[u8], i: u64, len: usize) -> Bytes {
    let mut c = block[..len].to_vec();
    let n = i.to_le_bytes();
    let k = n.len().min(len);
    c[..k].copy_from_slice(&n[..k]);
    Bytes::from(c)
}

/// A blob of `size` bytes (more than 4 GiB in CI: offsets past 32 bits) pushed in many
/// requests and read back whole and at its end, with memory bounded throughout.
async fn large_blob<M: Medium>(m: &M, size: u64) -> Result<Failures, Error> {
    const MIB: usize = 1 << 20;
    const BOUND: u64 = 256 << 20;
    let c = content(m);
    let mut f = Failures::new();
    let r = repo("large");
    let before = peak_rss();
    let block: Vec<u8> = (0..MIB).map(|_| rand::random::<u8>()).collect();
    let mut hash = sha2::Sha256::new();
    let id = c.upload_start(&r).await?;
    let (mut offset, mut i) = (0u64, 0u64);
    // One request per 256 MiB, as a chunked push does.
    while offset < size {
        let mut w = c.upload_writer(&r, &id, offset).await?;
        let end = size.min(offset + (256 << 20));
        while offset < end {
            let len = (end - offset).min(MIB as u64) as usize;
            let chunk = large_chunk(&block, i, len);
            hash.update(&chunk);
            w.write(chunk).await?;
            offset += len as u64;
            i += 1;
        }
        let at = w.finish().await?;
        check!(f, at == offset, "upload is at {at} after {offset} bytes");
    }
    let d = Digest::from_hash(Algorithm::Sha256, &hash.finalize());
    check!(
        f,
        c.upload_commit(&r, &id, &d).await? == size,
        "commit size"
    );
    check!(f, c.blob_size(&r, &d).await? == Some(size), "blob size");
    let Some((_, src)) = c.blob_open(&r, &d).await? else {
        f.push("committed blob does not open".into());
        return Ok(f);
    };
    match stream_of(src, 0, size).await {
        Err(e) => f.push(e),
        Ok(mut s) => {
            let mut h = sha2::Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| Error::Internal(e.to_string()))?;
                n += chunk.len() as u64;
                h.update(&chunk);
            }
            let back = Digest::from_hash(Algorithm::Sha256, &h.finalize());
            check!(
                f,
                n == size && back == d,
                "read back {n} bytes hashing to {back}"
            );
        }
    }
    // The last bytes, by offset: past 4 GiB when the blob is.
    let tail = size.min(3);
    if let Some((_, src)) = c.blob_open(&r, &d).await? {
        let last = (size - 1) / MIB as u64;
        let last_len = (size - last * MIB as u64) as usize;
        let want = large_chunk(&block, last, last_len);
        let got = read_all(src, size - tail, tail).await;
        check!(
            f,
            got.as_deref() == Ok(&want[last_len - tail as usize..]),
            "range at {} reads {got:?}",
            size - tail
        );
    }
    if let (Some(b), Some(a)) = (before, peak_rss()) {
        check!(
            f,
            a.saturating_sub(b) < BOUND,
            "peak memory grew by {} MiB for a {} MiB blob",
            a.saturating_sub(b) >> 20,
            size >> 20
        );
    }
    Ok(f)
}

async fn resumable_upload<M: Medium>(m: &M) -> Result<Failures, Error> {
    let (one, other) = (content(m), content(m));
    let mut f = Failures::new();
    let r = repo("resume/me");
    let id = one.upload_start(&r).await?;
    let mut w = one.upload_writer(&r, &id, 0).await?;
    w.write(Bytes::from_static(b"first half, ")).await?;
    // While the first writer holds the upload, nobody else may write to it.
    let busy = other.upload_writer(&r, &id, 12).await;
    check!(
        f,
        matches!(busy, Err(Error::UploadBusy)),
        "a second writer got {:?}",
        busy.err()
    );
    check!(f, w.finish().await? == 12, "first request's size");
    // The other process sees the bytes, refuses a wrong offset, and finishes the upload.
    check!(
        f,
        other.upload_size(&r, &id).await? == 12,
        "size seen elsewhere"
    );
    let wrong = other.upload_writer(&r, &id, 5).await;
    check!(
        f,
        matches!(
            wrong,
            Err(Error::UploadOffset {
                expected: 5,
                actual: 12
            })
        ),
        "a wrong offset got {:?}",
        wrong.err()
    );
    let mut w = other.upload_writer(&r, &id, 12).await?;
    w.write(Bytes::from_static(b"second half")).await?;
    w.abort().await?;
    check!(
        f,
        other.upload_size(&r, &id).await? == 12,
        "an aborted request left bytes"
    );
    let mut w = other.upload_writer(&r, &id, 12).await?;
    w.write(Bytes::from_static(b"second half")).await?;
    w.finish().await?;
    let whole: &[u8] = b"first half, second half";
    let d = sha256(whole);
    let bad = one.upload_commit(&r, &id, &sha256(b"something else")).await;
    check!(
        f,
        matches!(bad, Err(Error::DigestMismatch { .. })),
        "mismatch got {bad:?}"
    );
    check!(
        f,
        invisible(&*one, &r, &d).await?,
        "a mismatched commit made the blob visible"
    );
    let id = one.upload_start(&r).await?;
    let mut w = one.upload_writer(&r, &id, 0).await?;
    w.write(Bytes::copy_from_slice(&whole[..12])).await?;
    w.finish().await?;
    let mut w = other.upload_writer(&r, &id, 12).await?;
    w.write(Bytes::copy_from_slice(&whole[12..])).await?;
    w.finish().await?;
    check!(
        f,
        one.upload_commit(&r, &id, &d).await? == whole.len() as u64,
        "commit size"
    );
    check!(
        f,
        blob_bytes(&*other, &r, &d).await.ok().flatten().as_deref() == Some(whole),
        "resumed blob does not read back"
    );
    let gone = one.upload_size(&r, &id).await;
    check!(
        f,
        matches!(gone, Err(Error::UploadUnknown)),
        "committed session is {gone:?}"
    );
    Ok(f)
}

/// Neither linked into `r` nor in the shared blob store.
async fn invisible(c: &dyn Content, r: &RepositoryName, d: &Digest) -> Result<bool, Error> {
    Ok(c.blob_size(r, d).await?.is_none() && c.blob_size_global(d).await?.is_none())
}

async fn identical_commits<M: Medium>(m: &M) -> Result<Failures, Error> {
    let mut f = Failures::new();
    let bytes = Bytes::from(vec![7u8; 3 << 20]);
    let d = sha256(&bytes);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = content(m);
        let bytes = bytes.clone();
        let r = repo(if i % 2 == 0 { "same/one" } else { "same/two" });
        tasks.push(tokio::spawn(
            async move { push_blob(&*c, &r, &bytes).await },
        ));
    }
    for t in tasks {
        match t.await {
            Ok(Ok(got)) => check!(f, got == d, "a commit made {got}"),
            Ok(Err(e)) => f.push(format!("a commit failed: {e}")),
            Err(e) => f.push(format!("a commit panicked: {e}")),
        }
    }
    let c = content(m);
    for r in ["same/one", "same/two"] {
        check!(
            f,
            blob_bytes(&*c, &repo(r), &d)
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some(&bytes[..]),
            "{r}: the blob does not read back whole"
        );
    }
    Ok(f)
}

async fn deletes<M: Medium>(m: &M) -> Result<Failures, Error> {
    let c = content(m);
    let mut f = Failures::new();
    let (a, b) = (repo("del/a"), repo("del/b"));
    let d = push_blob(&*c, &a, b"shared layer").await?;
    c.blob_link(&b, &d).await?;
    check!(
        f,
        c.blob_unlink(&a, &d).await?,
        "unlink said it was not linked"
    );
    check!(
        f,
        !c.blob_unlink(&a, &d).await?,
        "a second unlink said it was linked"
    );
    check!(
        f,
        c.blob_size(&a, &d).await?.is_none(),
        "unlinked blob is still in a"
    );
    check!(
        f,
        c.blob_size(&b, &d).await? == Some(12),
        "unlink from a took it from b"
    );

    let m1 = push_manifest(&*c, &a, &tag("one"), b"{\"m\":1}").await?;
    c.tag_set(&a, &tag("also"), &m1).await?;
    let m2 = push_manifest(&*c, &a, &tag("two"), b"{\"m\":2}").await?;
    check!(
        f,
        c.tag_delete(&a, &tag("two")).await?,
        "tag delete said absent"
    );
    check!(
        f,
        !c.tag_delete(&a, &tag("two")).await?,
        "second tag delete said present"
    );
    check!(
        f,
        c.manifest_fetch(&a, &Reference::Digest(m2.clone()))
            .await?
            .is_some(),
        "deleting a tag took its manifest"
    );
    check!(
        f,
        c.manifest_delete(&a, &m1).await?,
        "manifest delete said absent"
    );
    check!(
        f,
        !c.manifest_delete(&a, &m1).await?,
        "second manifest delete said present"
    );
    let tags = c.tags(&a).await?.unwrap_or_default();
    check!(
        f,
        tags.is_empty(),
        "tags of a deleted manifest remain: {tags:?}"
    );
    let fetched = c.manifest_fetch(&a, &Reference::Digest(m1.clone())).await?;
    check!(f, fetched.is_none(), "a deleted manifest is still fetched");

    let id = c.upload_start(&a).await?;
    check!(f, c.upload_cancel(&a, &id).await?, "cancel said absent");
    check!(
        f,
        !c.upload_cancel(&a, &id).await?,
        "second cancel said present"
    );
    let gone = c.upload_size(&a, &id).await;
    check!(
        f,
        matches!(gone, Err(Error::UploadUnknown)),
        "cancelled session is {gone:?}"
    );

    check!(
        f,
        c.repository_delete(&b).await?,
        "repository delete said absent"
    );
    check!(
        f,
        !c.repository_delete(&b).await?,
        "second repository delete said present"
    );
    check!(
        f,
        c.blob_size(&b, &d).await?.is_none(),
        "deleted repository still has its blob"
    );
    check!(
        f,
        !c.repositories().await?.contains(&b),
        "deleted repository is listed"
    );
    check!(f, c.repositories().await?.contains(&a), "a went with b");
    Ok(f)
}

async fn listing_order<M: Medium>(m: &M) -> Result<Failures, Error> {
    let c = content(m);
    let mut f = Failures::new();
    let names = [
        "order/a-b",
        "order/a/b",
        "order/a",
        "order/a.b",
        "order/a_b",
        "order/ab",
    ];
    for n in names {
        push_manifest(&*c, &repo(n), &tag("t"), n.as_bytes()).await?;
    }
    let listed: Vec<String> = c
        .repositories()
        .await?
        .into_iter()
        .map(|r| r.as_str().to_owned())
        .filter(|r| r.starts_with("order/"))
        .collect();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort_by(|a, b| super::catalog_order(a, b));
    check!(f, listed == want, "catalog order {listed:?}, want {want:?}");

    let r = repo("order/tags");
    let mut want = Vec::new();
    for i in (0..300).rev() {
        let t = tag(&format!("v{i}"));
        c.tag_set(
            &r,
            &t,
            &push_manifest(&*c, &r, &t, format!("{i}").as_bytes()).await?,
        )
        .await?;
        want.push(t);
    }
    for t in ["Z", "_a", "a", "A-"] {
        push_manifest(&*c, &r, &tag(t), t.as_bytes()).await?;
        want.push(tag(t));
    }
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let listed = c.tags(&r).await?.unwrap_or_default();
    check!(
        f,
        listed == want,
        "{} tags listed, not in byte order or some missing",
        listed.len()
    );
    Ok(f)
}

async fn not_found<M: Medium>(m: &M) -> Result<Failures, Error> {
    let c = content(m);
    let mut f = Failures::new();
    let (r, d) = (repo("nothing/here"), sha256(b"never stored"));
    check!(
        f,
        c.blob_size(&r, &d).await?.is_none(),
        "blob size of nothing"
    );
    check!(
        f,
        c.blob_open(&r, &d).await?.is_none(),
        "blob open of nothing"
    );
    check!(
        f,
        c.blob_size_global(&d).await?.is_none(),
        "global size of nothing"
    );
    check!(
        f,
        c.blob_read_small(&d).await?.is_none(),
        "small read of nothing"
    );
    check!(f, !c.blob_unlink(&r, &d).await?, "unlink of nothing");
    let by_tag = c.manifest_fetch(&r, &Reference::Tag(tag("none"))).await?;
    check!(f, by_tag.is_none(), "manifest by tag of nothing");
    let by_digest = c.manifest_fetch(&r, &Reference::Digest(d.clone())).await?;
    check!(f, by_digest.is_none(), "manifest by digest of nothing");
    check!(
        f,
        c.manifest_fetch(&r, &Reference::Digest(d.clone()))
            .await?
            .is_none(),
        "manifest exists of nothing"
    );
    check!(f, !c.manifest_use(&r, &d).await?, "manifest use of nothing");
    check!(
        f,
        !c.manifest_delete(&r, &d).await?,
        "manifest delete of nothing"
    );
    check!(f, c.tags(&r).await?.is_none(), "tags of nothing");
    check!(
        f,
        !c.tag_delete(&r, &tag("none")).await?,
        "tag delete of nothing"
    );
    check!(
        f,
        c.referrers(&r, &d).await?.is_empty(),
        "referrers of nothing"
    );
    check!(
        f,
        !c.repository_delete(&r).await?,
        "repository delete of nothing"
    );
    let id = crate::oci::UploadId::new();
    let size = c.upload_size(&r, &id).await;
    check!(
        f,
        matches!(size, Err(Error::UploadUnknown)),
        "size of no upload: {size:?}"
    );
    let w = c.upload_writer(&r, &id, 0).await;
    check!(
        f,
        matches!(w, Err(Error::UploadUnknown)),
        "writer of no upload: {:?}",
        w.err()
    );
    // A blob only in another repository is not in this one.
    let other = repo("nothing/else");
    let there = push_blob(&*c, &other, b"elsewhere").await?;
    check!(
        f,
        c.blob_size(&r, &there).await?.is_none(),
        "a blob leaked across repositories"
    );
    check!(
        f,
        c.blob_size_global(&there).await? == Some(9),
        "global size of a blob"
    );
    Ok(f)
}

async fn io_errors<M: Medium>(m: &M) -> Result<Failures, Error> {
    let c = content(m);
    let mut f = Failures::new();
    let r = repo("broken");
    let t = tag("t");
    let d = push_manifest(&*c, &r, &t, b"{\"broken\":true}").await?;
    if !m.break_key(&super::layout::tag_current_link(&r, &t)) {
        return Ok(f);
    }
    // A medium that fails is an error, never "not found": a 404 there would tell a client
    // that the image is gone.
    let fetched = c.manifest_fetch(&r, &Reference::Tag(t)).await;
    check!(f, fetched.is_err(), "a broken tag link read as {fetched:?}");
    let by_digest = c.manifest_fetch(&r, &Reference::Digest(d)).await;
    check!(
        f,
        matches!(by_digest, Ok(Some(_))),
        "the intact revision read as {by_digest:?}"
    );
    Ok(f)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task: {e}")))?
}

/// The driver operations the collector relies on, directly.
async fn primitives<M: Medium>(m: &M) -> Result<Failures, Error> {
    let (one, other) = (m.open(), m.open());
    let mut f = Failures::new();
    let p = Path::new;
    one.write_atomic(p("prim/x/data"), Bytes::from_static(b"12345"))
        .await?;
    let got = other.read(p("prim/x/data")).await?;
    check!(
        f,
        got.as_deref() == Some(&b"12345"[..]),
        "read back {got:?}"
    );
    let meta: Option<Meta> = other.stat(p("prim/x/data")).await?;
    check!(
        f,
        meta.is_some_and(|m| m.size == 5 && !m.is_dir),
        "stat {meta:?}"
    );
    check!(
        f,
        other.stat(p("prim/x")).await?.is_some_and(|m| m.is_dir),
        "prefix is not a dir"
    );
    let before = std::time::SystemTime::now() - Duration::from_secs(2);
    let marked = one.mark_used(p("prim/x/data"), Duration::ZERO).await?;
    check!(
        f,
        marked
            .and_then(|m| m.last_used)
            .is_some_and(|t| t >= before),
        "mark_used reports {marked:?}"
    );
    check!(
        f,
        one.mark_used(p("prim/none"), Duration::ZERO)
            .await?
            .is_none(),
        "marked nothing"
    );

    for name in ["b", "a", "a-", "B", "a_"] {
        one.write_atomic(&p("prim/list").join(name).join("f"), Bytes::new())
            .await?;
    }
    let listed = other.list_dirs(p("prim/list")).await?;
    check!(
        f,
        listed == ["B", "a", "a-", "a_", "b"],
        "list_dirs gives {listed:?}"
    );
    check!(
        f,
        other.list_dirs(p("prim/none")).await?.is_empty(),
        "listing of nothing"
    );
    let usage: Option<Usage> = other.usage(p("prim/list")).await?;
    check!(
        f,
        usage == Some(Usage { files: 5, bytes: 0 }),
        "usage {usage:?}"
    );

    let moved = one.move_tree(p("prim/x"), p("prim/y"), true).await?;
    check!(f, moved == Renamed::Done, "move gives {moved:?}");
    check!(
        f,
        other.read(p("prim/x/data")).await?.is_none(),
        "moved source remains"
    );
    check!(
        f,
        other
            .mark_used(p("prim/x/data"), Duration::ZERO)
            .await?
            .is_none(),
        "marked a moved-away key"
    );
    let again = one.move_tree(p("prim/x"), p("prim/y"), false).await?;
    check!(
        f,
        again == Renamed::SourceMissing,
        "second move gives {again:?}"
    );
    one.write_atomic(p("prim/x/data"), Bytes::from_static(b"other"))
        .await?;
    let onto = one.move_tree(p("prim/x"), p("prim/y"), false).await?;
    check!(
        f,
        onto == Renamed::TargetExists,
        "move onto a full target gives {onto:?}"
    );
    check!(
        f,
        other.read(p("prim/y/data")).await?.as_deref() == Some(&b"12345"[..]),
        "target changed"
    );

    let held = one.try_lock(p("prim/lock"), true).await?;
    check!(
        f,
        matches!(held, Locked::Held(_)),
        "first try_lock {held:?}",
        held = matches!(held, Locked::Held(_))
    );
    let busy = other.try_lock(p("prim/lock"), true).await?;
    check!(
        f,
        matches!(busy, Locked::Busy),
        "second try_lock was not busy"
    );
    // unlock lets go at once; a drop may take a moment on a medium that must send a
    // request for it (checked below, with the shared locks).
    if let Locked::Held(l) = held {
        one.unlock(l).await;
    }
    let after = other.try_lock(p("prim/lock"), true).await?;
    check!(
        f,
        matches!(after, Locked::Held(_)),
        "try_lock after unlock was not held"
    );
    drop(after);
    let missing = other.try_lock(p("prim/no-lock"), false).await?;
    check!(
        f,
        matches!(missing, Locked::Missing),
        "try_lock of nothing was not missing"
    );
    let shared = one.lock_shared(p("prim/lock")).await?;
    let shared2 = other.lock_shared(p("prim/lock")).await?;
    let excl = tokio::time::timeout(
        Duration::from_millis(300),
        other.lock_exclusive(p("prim/lock")),
    )
    .await;
    check!(
        f,
        excl.is_err(),
        "an exclusive lock was had while shared ones were held"
    );
    drop((shared, shared2));
    let excl = tokio::time::timeout(
        Duration::from_secs(10),
        other.lock_exclusive(p("prim/lock")),
    )
    .await;
    check!(
        f,
        matches!(excl, Ok(Ok(_))),
        "an exclusive lock was not had after release"
    );
    drop(excl);
    // fsck waits for a running collector (which holds its lock by try_lock) this way.
    let tried = one.try_lock(p("prim/lock"), true).await?;
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        other.lock_exclusive(p("prim/lock")),
    )
    .await;
    check!(
        f,
        matches!(tried, Locked::Held(_)) && waiting.is_err(),
        "an exclusive lock was had while try_lock held it"
    );
    drop(tried);
    let waited = tokio::time::timeout(
        Duration::from_secs(10),
        other.lock_exclusive(p("prim/lock")),
    )
    .await;
    check!(
        f,
        matches!(waited, Ok(Ok(_))),
        "an exclusive lock was not had after try_lock's holder let go"
    );
    drop(waited);
    // Waiters cancelled at any point (a client that hangs up while its request waits for
    // the lock) leave nothing behind that keeps the next one out.
    let held = one.lock_exclusive(p("prim/lock")).await?;
    for ms in [0u64, 1, 2, 5, 10, 20, 40] {
        let _ = tokio::time::timeout(
            Duration::from_millis(ms),
            other.lock_exclusive(p("prim/lock")),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_millis(ms), other.lock_shared(p("prim/lock")))
            .await;
    }
    drop(held);
    let after_cancels = tokio::time::timeout(
        Duration::from_secs(10),
        other.lock_exclusive(p("prim/lock")),
    )
    .await;
    check!(
        f,
        matches!(after_cancels, Ok(Ok(_))),
        "an exclusive lock was not had after cancelled waiters gave up"
    );
    drop(after_cancels);

    one.create_upload(
        p("prim/up/data"),
        p("prim/up/started"),
        Bytes::from_static(b"t"),
    )
    .await?;
    // An Append is used from a blocking thread, as the store does.
    let w = one.append_at(p("prim/up/data"), 0).await?;
    let written = blocking(move || {
        let mut w = w;
        w.write_all(b"abc")?;
        let n = w.written();
        w.finish().map(|()| n)
    })
    .await?;
    check!(f, written == 3, "written {written}");
    let w = other.append_at(p("prim/up/data"), 3).await?;
    blocking(move || {
        let mut w = w;
        w.write_all(b"def")?;
        w.rollback()
    })
    .await?;
    check!(
        f,
        other.stat(p("prim/up/data")).await?.map(|m| m.size) == Some(3),
        "rollback kept bytes"
    );
    one.commit(p("prim/up/data"), p("prim/blob/data")).await?;
    check!(
        f,
        other.read(p("prim/blob/data")).await?.as_deref() == Some(&b"abc"[..]),
        "commit result"
    );
    check!(
        f,
        other.read(p("prim/up/data")).await?.is_none(),
        "commit left its source"
    );
    one.create_upload(p("prim/up2/data"), p("prim/up2/started"), Bytes::new())
        .await?;
    let w = one.append_at(p("prim/up2/data"), 0).await?;
    blocking(move || {
        let mut w = w;
        w.write_all(b"xyz")?;
        w.finish()
    })
    .await?;
    one.commit(p("prim/up2/data"), p("prim/blob/data")).await?;
    check!(
        f,
        other.read(p("prim/blob/data")).await?.as_deref() == Some(&b"abc"[..]),
        "commit replaced an existing blob"
    );

    check!(
        f,
        one.remove_file(p("prim/y/data")).await?,
        "remove_file said absent"
    );
    check!(
        f,
        !one.remove_file(p("prim/y/data")).await?,
        "second remove_file said present"
    );
    check!(
        f,
        one.prune_empty(p("prim/y")).await?,
        "an empty prefix was not pruned"
    );
    check!(
        f,
        !one.prune_empty(p("prim/list")).await?,
        "a prefix with objects was pruned"
    );
    let removed = one.remove_tree(p("prim/list")).await?;
    check!(
        f,
        removed == Some(Usage { files: 5, bytes: 0 }),
        "remove_tree gives {removed:?}"
    );
    check!(
        f,
        one.remove_tree(p("prim/list")).await?.is_none(),
        "second remove_tree"
    );
    check!(
        f,
        one.remove_dir_all(p("prim/blob")).await?,
        "remove_dir_all said absent"
    );
    check!(
        f,
        !one.remove_dir_all(p("prim/blob")).await?,
        "second remove_dir_all said present"
    );
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::super::driver::Reads;
    use super::super::FsDriver;
    use super::*;
    use std::future::Future;
    use std::path::PathBuf;

    /// The blob size the filesystem's large check uses: past 4 GiB, so 32-bit offsets
    /// break it; `BERTH_SUITE_LARGE_MIB` changes it.
    fn large() -> u64 {
        let mib = std::env::var("BERTH_SUITE_LARGE_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(4097);
        (mib << 20) + 3
    }

    struct Fs(tempfile::TempDir);

    impl Medium for Fs {
        type D = FsDriver;
        fn open(&self) -> FsDriver {
            FsDriver::open(self.0.path()).expect("open")
        }
        fn break_key(&self, key: &Path) -> bool {
            // A directory where a file should be: reading it fails with EISDIR.
            let path = self.0.path().join(key);
            std::fs::remove_file(&path).is_ok() && std::fs::create_dir(&path).is_ok()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn filesystem_driver_keeps_the_contract() {
        let fs = Fs(tempfile::tempdir().expect("tempdir"));
        let failures = run(&fs, large()).await;
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// One operation broken on purpose.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Mutation {
        /// Listings come in reverse order.
        ListReversed,
        /// A missing object reads as an error.
        MissingIsError,
        /// Appending does not check the offset.
        AppendAnywhere,
        /// Deleting a prefix reports that there was nothing.
        RemoveSaysAbsent,
        /// Marking used does nothing (and says the object is missing).
        MarkForgets,
    }

    #[derive(Clone)]
    struct Broken(FsDriver, Mutation);

    struct BrokenMedium(Fs, Mutation);

    impl Medium for BrokenMedium {
        type D = Broken;
        fn open(&self) -> Broken {
            Broken(self.0.open(), self.1)
        }
        fn break_key(&self, key: &Path) -> bool {
            self.0.break_key(key)
        }
    }

    impl Driver for Broken {
        type Reads = BrokenReads;
        type Append = <FsDriver as Driver>::Append;
        type Lock = <FsDriver as Driver>::Lock;
        fn location(&self) -> String {
            self.0.location()
        }
        fn reads(&self) -> BrokenReads {
            BrokenReads(self.0.reads(), self.1)
        }
        async fn read(&self, key: &Path) -> Result<Option<Vec<u8>>, Error> {
            missing_is_error(self.1, key, self.0.read(key).await)
        }
        fn stat(&self, key: &Path) -> impl Future<Output = Result<Option<Meta>, Error>> + Send {
            self.0.stat(key)
        }
        async fn mark_used(&self, key: &Path, fresh: Duration) -> Result<Option<Meta>, Error> {
            match self.1 {
                Mutation::MarkForgets => Ok(None),
                _ => self.0.mark_used(key, fresh).await,
            }
        }
        fn write_atomic(
            &self,
            key: &Path,
            b: Bytes,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.0.write_atomic(key, b)
        }
        async fn list_dirs(&self, prefix: &Path) -> Result<Vec<String>, Error> {
            let mut v = self.0.list_dirs(prefix).await?;
            if self.1 == Mutation::ListReversed {
                v.reverse();
            }
            Ok(v)
        }
        fn find_dirs_with(
            &self,
            prefix: &Path,
            markers: &'static [&'static str],
        ) -> impl Future<Output = Result<Vec<String>, Error>> + Send {
            self.0.find_dirs_with(prefix, markers)
        }
        fn remove_file(&self, key: &Path) -> impl Future<Output = Result<bool, Error>> + Send {
            self.0.remove_file(key)
        }
        async fn remove_dir_all(&self, prefix: &Path) -> Result<bool, Error> {
            let r = self.0.remove_dir_all(prefix).await?;
            Ok(r && self.1 != Mutation::RemoveSaysAbsent)
        }
        fn remove_tree(
            &self,
            p: &Path,
        ) -> impl Future<Output = Result<Option<Usage>, Error>> + Send {
            self.0.remove_tree(p)
        }
        fn usage(&self, p: &Path) -> impl Future<Output = Result<Option<Usage>, Error>> + Send {
            self.0.usage(p)
        }
        fn prune_empty(&self, p: &Path) -> impl Future<Output = Result<bool, Error>> + Send {
            self.0.prune_empty(p)
        }
        fn remove_empty_dirs_up(
            &self,
            p: &Path,
            stop: &Path,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.0.remove_empty_dirs_up(p, stop)
        }
        fn create_upload(
            &self,
            data: &Path,
            marker: &Path,
            body: Bytes,
        ) -> impl Future<Output = Result<(), Error>> + Send {
            self.0.create_upload(data, marker, body)
        }
        async fn append_at(&self, key: &Path, offset: u64) -> Result<Self::Append, Error> {
            if self.1 == Mutation::AppendAnywhere {
                let size = self.0.stat(key).await?.map_or(0, |m| m.size);
                return self.0.append_at(key, size).await;
            }
            self.0.append_at(key, offset).await
        }
        fn commit(&self, from: &Path, to: &Path) -> impl Future<Output = Result<(), Error>> + Send {
            self.0.commit(from, to)
        }
        fn move_tree(
            &self,
            from: &Path,
            to: &Path,
            durable: bool,
        ) -> impl Future<Output = Result<Renamed, Error>> + Send {
            self.0.move_tree(from, to, durable)
        }
        fn lock_shared(
            &self,
            key: &Path,
        ) -> impl Future<Output = Result<Self::Lock, Error>> + Send {
            self.0.lock_shared(key)
        }
        fn lock_exclusive(
            &self,
            key: &Path,
        ) -> impl Future<Output = Result<Self::Lock, Error>> + Send {
            self.0.lock_exclusive(key)
        }
        fn try_lock(
            &self,
            key: &Path,
            create: bool,
        ) -> impl Future<Output = Result<Locked<Self::Lock>, Error>> + Send {
            self.0.try_lock(key, create)
        }
    }

    struct BrokenReads(<FsDriver as Driver>::Reads, Mutation);

    impl Reads for BrokenReads {
        fn read(&self, key: &Path) -> Result<Option<Vec<u8>>, Error> {
            missing_is_error(self.1, key, self.0.read(key))
        }
        fn mark_used(&self, key: &Path, fresh: Duration) -> Result<Option<Meta>, Error> {
            match self.1 {
                Mutation::MarkForgets => Ok(None),
                _ => self.0.mark_used(key, fresh),
            }
        }
        fn open_blob(&self, key: &Path) -> Result<Option<BlobSource>, Error> {
            self.0.open_blob(key)
        }
        fn open_read(&self, key: &Path) -> Result<Box<dyn std::io::Read + Send>, Error> {
            self.0.open_read(key)
        }
    }

    fn missing_is_error(
        m: Mutation,
        key: &Path,
        r: Result<Option<Vec<u8>>, Error>,
    ) -> Result<Option<Vec<u8>>, Error> {
        match r {
            Ok(None) if m == Mutation::MissingIsError => Err(Error::io(
                &PathBuf::from(key),
                std::io::Error::other("broken on purpose"),
            )),
            r => r,
        }
    }

    /// The mutation check: each broken operation makes the suite fail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_broken_operation_fails_the_contract() {
        for (m, caught_by) in [
            (Mutation::ListReversed, "listing order"),
            (Mutation::MissingIsError, "not found"),
            (Mutation::AppendAnywhere, "resumable upload"),
            (Mutation::RemoveSaysAbsent, "deletes"),
            (Mutation::MarkForgets, "driver primitives"),
        ] {
            let medium = BrokenMedium(Fs(tempfile::tempdir().expect("tempdir")), m);
            let failures = run(&medium, 1 << 20).await;
            assert!(
                failures.iter().any(|f| f.starts_with(caught_by)),
                "{m:?} was not caught by {caught_by:?}: {failures:#?}"
            );
        }
    }
}
