//! Carrying images across an air gap: `berth export` writes repositories as an OCI image
//! layout (a directory or a tar), `berth import` loads one into the store.
//!
//! Export reads through [`Content`], the seam the API stands on. Import is a client of
//! the API in the same process: every blob is pushed through [`Registry::handle`] (so its
//! bytes are hashed against its digest by the same upload code a `docker push` meets, and
//! a full disk is the same 507), every manifest is checked by the same manifest PUT, and
//! the collector's link barrier guards it as it guards a push. Tags are set last, after
//! all of the layout's content is in: an import that fails or is killed leaves no tag
//! pointing at anything incomplete, and running it again skips what is already stored.
//!
//! The layout: `oci-layout`, `blobs/<alg>/<hex>` (each blob once, whichever repositories
//! share it), and `index.json`, whose descriptors name each tag as `repo:tag` in
//! `org.opencontainers.image.ref.name` (what `skopeo copy oci:DIR:repo:tag` reads); untagged
//! manifests (selected by digest, or referrers of a selected one) carry their repository
//! in [`REPOSITORY`] instead. Foreign layers are descriptors only, as the image spec says.

mod layout_io;
mod progress;
mod select;

pub use select::Selector as ExportSelector;

use crate::api::manifest::Parsed;
use crate::api::{Body, Registry, RequestBody};
use crate::body::BodyError;
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::oci_layout::{self, blob_path, REF_NAME};
use crate::store::{BlobSource, Content};
use bytes::Bytes;
use layout_io::{shown, Sink, Source};
use progress::{size, Progress};
use select::{Selector, Wanted};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

/// The annotation that names the repository of an untagged manifest in `index.json`.
pub const REPOSITORY: &str = "dev.berth.repository";

/// What `berth export` was asked to do.
pub struct ExportOptions {
    pub out: PathBuf,
    pub selectors: Vec<Selector>,
    pub tag_regex: Option<regex::Regex>,
    pub referrers: bool,
    pub since: Option<PathBuf>,
}

/// What `berth import` was asked to do.
pub struct ImportOptions {
    pub path: PathBuf,
    /// The repository of descriptors whose ref name is a bare tag (`latest`, as umoci
    /// and `skopeo copy ... oci:DIR:latest` write them) or that name none.
    pub repo: Option<RepositoryName>,
    pub dry_run: bool,
    /// Where standard input is spooled (a tar's index may come last).
    pub spool_dir: PathBuf,
    pub manifest_max: u64,
}

/// What an export or import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs_written: usize,
    pub bytes_written: u64,
    pub blobs_skipped: usize,
    pub bytes_skipped: u64,
}

impl Summary {
    pub fn line(&self, verb: &str, secs: f64) -> String {
        format!(
            "{verb} {} repositories, {} tags, {} manifests; {} blobs written ({}), {} skipped as already present ({}); {secs:.1} s",
            self.repositories,
            self.tags,
            self.manifests,
            self.blobs_written,
            size(self.bytes_written),
            self.blobs_skipped,
            size(self.bytes_skipped),
        )
    }
}

/// What a manifest references: child manifests (of an index) and blobs (of an image,
/// foreign layers left out), as (digest, size, media type).
struct Refs {
    media_type: String,
    manifests: Vec<(Digest, u64)>,
    blobs: Vec<(Digest, u64)>,
    artifact_type: Option<String>,
}

fn refs_of(bytes: &[u8], what: &str) -> Result<Refs, String> {
    let p = Parsed::from_stored(bytes)
        .ok_or_else(|| format!("{what}: not an image manifest or index berth can store"))?;
    let mut r = Refs {
        media_type: p
            .body
            .media_type
            .clone()
            .unwrap_or_else(|| p.kind.media_type().to_owned()),
        manifests: Vec::new(),
        blobs: Vec::new(),
        artifact_type: p.artifact_type(),
    };
    for desc in p.descriptors() {
        if desc.is_foreign() {
            continue;
        }
        let d: Digest = desc
            .digest
            .parse()
            .map_err(|e| format!("{what}: descriptor digest {:?}: {e}", desc.digest))?;
        let n = u64::try_from(desc.size)
            .map_err(|_| format!("{what}: descriptor {d} has a negative size"))?;
        if p.kind.is_index() {
            r.manifests.push((d, n));
        } else {
            r.blobs.push((d, n));
        }
    }
    Ok(r)
}

// ------------------------------------------------------------------ export

/// A manifest chosen for the layout's `index.json`.
struct Entry {
    repo: RepositoryName,
    tag: Option<Tag>,
    digest: Digest,
    size: u64,
    media_type: String,
    artifact_type: Option<String>,
}

/// Everything an export writes, gathered before it writes anything.
#[derive(Default)]
struct Gathered {
    entries: Vec<Entry>,
    /// Manifest bytes by digest.
    manifests: BTreeMap<Digest, Bytes>,
    /// Blob → (size, a repository it can be read from).
    blobs: BTreeMap<Digest, (u64, RepositoryName)>,
    /// (repository, manifest) pairs walked.
    seen: BTreeSet<(RepositoryName, Digest)>,
    repositories: BTreeSet<RepositoryName>,
}

async fn gather(store: &dyn Content, opts: &ExportOptions) -> Result<Gathered, String> {
    let catalog = store.repositories().await.map_err(|e| e.to_string())?;
    let mut g = Gathered::default();
    for sel in &opts.selectors {
        let repos = sel.repositories(&catalog);
        if repos.is_empty() {
            return Err(format!("selector {:?} matches no repository", sel.text()));
        }
        let mut found = 0;
        for repo in repos {
            let tags = store
                .tags(repo)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            for w in sel.wanted(&tags, opts.tag_regex.as_ref()) {
                let (reference, tag) = match &w {
                    Wanted::Tag(t) => (Reference::Tag(t.clone()), Some(t.clone())),
                    Wanted::Digest(d) => (Reference::Digest(d.clone()), None),
                };
                let Some((d, bytes)) = store
                    .manifest_fetch(repo, &reference)
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    return Err(format!(
                        "{repo}: no manifest {reference} (selector {:?})",
                        sel.text()
                    ));
                };
                found += 1;
                let r = refs_of(&bytes, &format!("{repo}@{d}"))?;
                let dup = g
                    .entries
                    .iter()
                    .any(|e| e.repo == *repo && e.digest == d && e.tag == tag);
                if !dup {
                    g.entries.push(Entry {
                        repo: repo.clone(),
                        tag,
                        digest: d.clone(),
                        size: bytes.len() as u64,
                        media_type: r.media_type.clone(),
                        artifact_type: r.artifact_type.clone(),
                    });
                }
                walk(store, opts, &mut g, repo, d, bytes).await?;
            }
        }
        if found == 0 {
            return Err(format!("selector {:?} matches no tag", sel.text()));
        }
    }
    Ok(g)
}

/// Adds a manifest, what it references and (with `--referrers`) what refers to it.
async fn walk(
    store: &dyn Content,
    opts: &ExportOptions,
    g: &mut Gathered,
    repo: &RepositoryName,
    d: Digest,
    bytes: Bytes,
) -> Result<(), String> {
    let mut todo = vec![(d, bytes)];
    while let Some((d, bytes)) = todo.pop() {
        if !g.seen.insert((repo.clone(), d.clone())) {
            continue;
        }
        g.repositories.insert(repo.clone());
        let r = refs_of(&bytes, &format!("{repo}@{d}"))?;
        g.manifests.insert(d.clone(), bytes);
        for (b, n) in r.blobs {
            g.blobs.entry(b).or_insert((n, repo.clone()));
        }
        for (c, _) in r.manifests {
            let Some((_, child)) = store
                .manifest_fetch(repo, &Reference::Digest(c.clone()))
                .await
                .map_err(|e| e.to_string())?
            else {
                return Err(format!(
                    "{repo}@{d}: its child manifest {c} is not in the store"
                ));
            };
            todo.push((c, child));
        }
        if opts.referrers {
            for rd in store.referrers(repo, &d).await.map_err(|e| e.to_string())? {
                let Some((_, rb)) = store
                    .manifest_fetch(repo, &Reference::Digest(rd.clone()))
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    continue; // deleted since the referrers list was read
                };
                let rr = refs_of(&rb, &format!("{repo}@{rd}"))?;
                if !g.entries.iter().any(|e| e.repo == *repo && e.digest == rd) {
                    g.entries.push(Entry {
                        repo: repo.clone(),
                        tag: None,
                        digest: rd.clone(),
                        size: rb.len() as u64,
                        media_type: rr.media_type,
                        artifact_type: rr.artifact_type,
                    });
                }
                todo.push((rd, rb));
            }
        }
    }
    Ok(())
}

/// The layout's `index.json`, through the same type `berth import` parses it into.
fn index_json(entries: &[Entry]) -> Vec<u8> {
    let manifests = entries
        .iter()
        .map(|e| {
            let (key, value) = match &e.tag {
                Some(t) => (REF_NAME, format!("{}:{t}", e.repo)),
                None => (REPOSITORY, e.repo.to_string()),
            };
            oci_layout::Descriptor {
                media_type: e.media_type.clone(),
                digest: e.digest.clone(),
                size: e.size,
                urls: Vec::new(),
                annotations: BTreeMap::from([(key.to_owned(), value)]),
                platform: None,
                artifact_type: e.artifact_type.clone(),
                data: None,
            }
        })
        .collect();
    oci_layout::Index::new(manifests).to_json()
}

/// Writes the selected repositories as an OCI image layout.
pub async fn export(store: &dyn Content, opts: &ExportOptions) -> Result<Summary, String> {
    let g = gather(store, opts).await?;
    let since = match &opts.since {
        Some(p) => layout_io::blobs_of(p)?,
        None => BTreeSet::new(),
    };
    let mut sum = Summary {
        repositories: g.repositories.len(),
        tags: g.entries.iter().filter(|e| e.tag.is_some()).count(),
        manifests: g.manifests.len(),
        ..Summary::default()
    };
    let to_write: Vec<_> = g
        .blobs
        .iter()
        .filter(|(d, _)| !since.contains(&blob_path(d)))
        .collect();
    let total: u64 = to_write.iter().map(|(_, (n, _))| n).sum();
    let mut progress = Progress::new("export", to_write.len() as u64, total);
    let mut sink = Sink::create(&opts.out)?;
    let out = opts.out.display().to_string();
    let io = |e: std::io::Error| format!("{out}: {e}");
    sink.put(
        oci_layout::MARKER_FILE,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(io)?;
    for (d, (n, repo)) in &g.blobs {
        let rel = blob_path(d);
        if since.contains(&rel) || sink.has(&rel, *n) {
            sum.blobs_skipped += 1;
            sum.bytes_skipped += n;
            continue;
        }
        let result = copy_blob(store, &mut sink, repo, d, *n, &mut progress).await;
        if let Err(e) = result {
            sink.abandon();
            return Err(e);
        }
        progress.item(&format!("{d} ({})", size(*n)));
        sum.blobs_written += 1;
        sum.bytes_written += n;
    }
    for (d, bytes) in &g.manifests {
        let rel = blob_path(d);
        let n = bytes.len() as u64;
        if since.contains(&rel) || sink.has(&rel, n) {
            continue;
        }
        sink.put(&rel, bytes).map_err(io)?;
    }
    sink.put(oci_layout::INDEX_FILE, &index_json(&g.entries))
        .map_err(io)?;
    sink.finish().map_err(io)?;
    progress.done();
    Ok(sum)
}

async fn copy_blob(
    store: &dyn Content,
    sink: &mut Sink,
    repo: &RepositoryName,
    d: &Digest,
    n: u64,
    progress: &mut Progress,
) -> Result<(), String> {
    let Some((len, source)) = store.blob_open(repo, d).await.map_err(|e| e.to_string())? else {
        return Err(format!(
            "{repo}: blob {d} is not in the store (run berth fsck)"
        ));
    };
    if len != n {
        return Err(format!(
            "{repo}: blob {d} is {len} bytes in the store, its manifest says {n} (run berth fsck)"
        ));
    }
    let mut stream = match source {
        BlobSource::File(f) => f.slice(0, len).into_stream(),
        BlobSource::Stream(open) => open(0, len),
        BlobSource::Redirect(_) => return Err(
            "the store answers blob reads with redirects; export with storage.s3.redirect = false"
                .into(),
        ),
    };
    let io = |e: std::io::Error| format!("writing {d}: {e}");
    sink.begin(&blob_path(d), n).map_err(io)?;
    let mut got = 0u64;
    while let Some(chunk) = crate::body::next_chunk(&mut stream).await {
        let chunk = chunk.map_err(|e| format!("reading {repo}@{d}: {e}"))?;
        got += chunk.len() as u64;
        sink.write(&chunk).map_err(io)?;
        progress.bytes(chunk.len() as u64);
    }
    if got != n {
        return Err(format!("reading {repo}@{d}: {got} bytes, expected {n}"));
    }
    sink.end().map_err(io)
}

// ------------------------------------------------------------------ import

/// One manifest to put: its digest, media type and bytes.
struct Put {
    digest: Digest,
    media_type: String,
    bytes: Bytes,
}

/// A blob the import needs in a repository.
struct Need {
    digest: Digest,
    size: u64,
    /// In the layout (else it must be in the store already).
    in_layout: bool,
    /// The manifest that names it, for messages.
    named_by: Digest,
}

#[derive(Default)]
struct RepoPlan {
    blobs: Vec<Need>,
    /// Children before parents.
    manifests: Vec<Put>,
    tags: Vec<(Tag, Digest)>,
    seen: BTreeSet<Digest>,
}

/// A manifest's bytes from the layout (checked against the digest) or, for an
/// incremental layout, from the store.
async fn manifest_bytes(
    src: &Source,
    store: &dyn Content,
    d: &Digest,
    want: Option<u64>,
    max: u64,
) -> Result<Bytes, String> {
    let rel = blob_path(d);
    match src.read_small(&rel, max)? {
        Some(b) => {
            if let Some(n) = want.filter(|&n| n != b.len() as u64) {
                return Err(format!(
                    "{}: {} bytes, its descriptor says {n} (truncated or replaced)",
                    shown(src, &rel),
                    b.len()
                ));
            }
            let got = Digest::of(d.algorithm(), &b);
            if &got != d {
                return Err(format!(
                    "{}: content does not match its digest (it hashes to {got})",
                    shown(src, &rel)
                ));
            }
            Ok(Bytes::from(b))
        }
        None => match store.blob_read_small(d).await.map_err(|e| e.to_string())? {
            Some(b) if Digest::of(d.algorithm(), &b) == *d => Ok(b),
            _ => Err(format!(
                "{}: missing from the layout, and not in the store either",
                shown(src, &rel)
            )),
        },
    }
}

async fn plan_manifest(
    src: &Source,
    store: &dyn Content,
    plan: &mut RepoPlan,
    root: Digest,
    root_size: u64,
    max: u64,
) -> Result<(), String> {
    // Depth first, children put before their index: (digest, size, expanded).
    let mut stack = vec![(root, root_size, false)];
    let mut pending: BTreeMap<Digest, (Bytes, Refs)> = BTreeMap::new();
    while let Some((d, n, expanded)) = stack.pop() {
        if expanded {
            let (bytes, r) = pending.remove(&d).ok_or("internal: manifest lost")?;
            plan.manifests.push(Put {
                digest: d,
                media_type: r.media_type,
                bytes,
            });
            continue;
        }
        if plan.seen.contains(&d) {
            continue;
        }
        plan.seen.insert(d.clone());
        let bytes = manifest_bytes(src, store, &d, Some(n), max).await?;
        let r = refs_of(&bytes, &shown(src, &blob_path(&d)))?;
        for (b, bn) in &r.blobs {
            let rel = blob_path(b);
            let in_layout = match src.size(&rel) {
                Some(have) if have == *bn => true,
                Some(have) => {
                    return Err(format!(
                        "{}: {have} bytes, manifest {d} says {bn} (truncated or replaced)",
                        shown(src, &rel)
                    ))
                }
                None => {
                    if store
                        .blob_size_global(b)
                        .await
                        .map_err(|e| e.to_string())?
                        .is_none()
                    {
                        return Err(format!(
                            "{}: missing from the layout, and not in the store either (manifest {d} names it)",
                            shown(src, &rel)
                        ));
                    }
                    false
                }
            };
            plan.blobs.push(Need {
                digest: b.clone(),
                size: *bn,
                in_layout,
                named_by: d.clone(),
            });
        }
        stack.push((d.clone(), n, true));
        for (c, cn) in r.manifests.iter().rev() {
            stack.push((c.clone(), *cn, false));
        }
        pending.insert(d, (bytes, r));
    }
    Ok(())
}

/// A layout file as an upload's request body, counted into the progress.
struct FileBody<'a> {
    reader: Box<dyn Read + Send>,
    progress: &'a mut Progress,
}

/// Bytes read from the layout per chunk.
const CHUNK: u64 = 1 << 20;

#[async_trait::async_trait]
impl RequestBody for FileBody<'_> {
    async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        // Read into the chunk's own buffer: it becomes the Bytes without a copy.
        let mut v = Vec::with_capacity(CHUNK as usize);
        (&mut self.reader)
            .take(CHUNK)
            .read_to_end(&mut v)
            .map_err(|e| BodyError(format!("reading the layout: {e}")))?;
        if v.is_empty() {
            return Ok(None);
        }
        self.progress.bytes(v.len() as u64);
        Ok(Some(Bytes::from(v)))
    }
}

/// The error an API answer carries, as one line.
fn answer_error(resp: &http::Response<Body>) -> String {
    let message = match resp.body() {
        Body::Full(b) => serde_json::from_slice::<serde_json::Value>(b)
            .ok()
            .and_then(|v| {
                let e = &v["errors"][0];
                Some(format!(
                    "{}: {}",
                    e["code"].as_str()?,
                    e["message"].as_str().unwrap_or_default()
                ))
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    format!("the store refused it: {} {message}", resp.status())
}

async fn call(
    registry: &Registry,
    method: http::Method,
    uri: &str,
    content_type: Option<&str>,
    len: u64,
    body: &mut dyn RequestBody,
) -> Result<http::Response<Body>, String> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_LENGTH, len);
    if let Some(t) = content_type {
        b = b.header(http::header::CONTENT_TYPE, t);
    }
    let (parts, ()) = b.body(()).map_err(|e| e.to_string())?.into_parts();
    Ok(registry.handle(&parts, body).await)
}

/// Loads an OCI image layout into the store behind `registry`.
pub async fn import(registry: &Registry, opts: &ImportOptions) -> Result<Summary, String> {
    let store = registry.store();
    let src = Source::open(&opts.path, &opts.spool_dir)?;
    let marker = src
        .read_small(oci_layout::MARKER_FILE, 4096)?
        .ok_or_else(|| {
            format!(
                "{}: not an OCI image layout (no oci-layout file)",
                shown(&src, oci_layout::MARKER_FILE)
            )
        })?;
    oci_layout::parse_marker(&marker).map_err(|e| format!("{}: {e}", opts.path.display()))?;
    let index = src
        .read_small(oci_layout::INDEX_FILE, oci_layout::INDEX_MAX as u64)?
        .ok_or_else(|| format!("{}: missing", shown(&src, oci_layout::INDEX_FILE)))?;
    let index =
        oci_layout::parse_index(&index).map_err(|e| format!("{}: {e}", opts.path.display()))?;

    let mut plans: BTreeMap<RepositoryName, RepoPlan> = BTreeMap::new();
    for (i, desc) in index.manifests.iter().enumerate() {
        let at = || format!("{} manifests[{i}]", shown(&src, oci_layout::INDEX_FILE));
        let (repo, tag) = match (desc.ref_name(), desc.image()) {
            (Some(_), Some((repo, tag))) => (repo, Some(tag)),
            (Some(name), None) => {
                return Err(format!(
                    "{}: ref name {name:?} is not a repository:tag berth can store",
                    at()
                ))
            }
            (None, _) => (
                match desc.annotations.get(REPOSITORY) {
                    Some(r) => Some(
                        r.parse()
                            .map_err(|e| format!("{}: {REPOSITORY}: {e}", at()))?,
                    ),
                    None => None,
                },
                None,
            ),
        };
        let Some(repo) = repo.or_else(|| opts.repo.clone()) else {
            return Err(format!(
                "{}: names no repository (its ref name is a bare tag or absent): give --repo NAME",
                at()
            ));
        };
        let plan = plans.entry(repo).or_default();
        plan_manifest(
            &src,
            store,
            plan,
            desc.digest.clone(),
            desc.size,
            opts.manifest_max,
        )
        .await?;
        if let Some(t) = tag {
            plan.tags.push((t, desc.digest.clone()));
        }
    }

    // Blobs each repository still lacks.
    let mut sum = Summary {
        repositories: plans.len(),
        ..Summary::default()
    };
    let mut uploads = 0u64;
    let mut upload_bytes = 0u64;
    let mut queued: BTreeSet<Digest> = BTreeSet::new();
    for plan in plans.values() {
        sum.tags += plan.tags.len();
        sum.manifests += plan.manifests.len();
        for b in &plan.blobs {
            if b.in_layout
                && store
                    .blob_size_global(&b.digest)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none()
                && queued.insert(b.digest.clone())
            {
                uploads += 1;
                upload_bytes += b.size;
            }
        }
    }
    if opts.dry_run {
        for (repo, plan) in &plans {
            let tags: Vec<String> = plan.tags.iter().map(|(t, _)| t.to_string()).collect();
            println!(
                "{repo}: {} tags [{}], {} manifests, {} blobs",
                plan.tags.len(),
                tags.join(", "),
                plan.manifests.len(),
                plan.blobs.len()
            );
        }
        println!(
            "would add {uploads} blobs ({}); the rest is in the store already",
            size(upload_bytes)
        );
        return Ok(sum);
    }
    if store.read_only() {
        return Err("the store is read-only (storage.read_only): nothing imported".into());
    }

    let mut progress = Progress::new("import", uploads, upload_bytes);
    for (repo, plan) in &plans {
        let mut done: BTreeSet<&Digest> = BTreeSet::new();
        for b in &plan.blobs {
            if !done.insert(&b.digest) {
                continue;
            }
            if store
                .blob_size(repo, &b.digest)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                sum.blobs_skipped += 1;
                sum.bytes_skipped += b.size;
                continue;
            }
            if store
                .blob_size_global(&b.digest)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                store
                    .blob_link(repo, &b.digest)
                    .await
                    .map_err(|e| e.to_string())?;
                sum.blobs_skipped += 1;
                sum.bytes_skipped += b.size;
                continue;
            }
            let rel = blob_path(&b.digest);
            if !b.in_layout {
                return Err(format!(
                    "{}: missing from the layout, and gone from the store (manifest {} names it)",
                    shown(&src, &rel),
                    b.named_by
                ));
            }
            let mut body = FileBody {
                reader: src.reader(&rel)?,
                progress: &mut progress,
            };
            let uri = format!("/v2/{repo}/blobs/uploads/?digest={}", b.digest);
            let resp = call(registry, http::Method::POST, &uri, None, b.size, &mut body).await?;
            if resp.status() != http::StatusCode::CREATED {
                progress.done();
                return Err(format!("{}: {}", shown(&src, &rel), answer_error(&resp)));
            }
            progress.item(&format!("{repo}@{} ({})", b.digest, size(b.size)));
            sum.blobs_written += 1;
            sum.bytes_written += b.size;
        }
        for m in &plan.manifests {
            put_manifest(registry, &src, repo, &m.digest.to_string(), m).await?;
        }
    }
    progress.done();
    // Last: the tags, now that everything they reach is stored.
    for (repo, plan) in &plans {
        for (t, d) in &plan.tags {
            let Some(m) = plan.manifests.iter().find(|m| m.digest == *d) else {
                return Err(format!("internal: {repo}:{t} has no planned manifest"));
            };
            put_manifest(registry, &src, repo, t.as_str(), m).await?;
        }
    }
    Ok(sum)
}

async fn put_manifest(
    registry: &Registry,
    src: &Source,
    repo: &RepositoryName,
    reference: &str,
    m: &Put,
) -> Result<(), String> {
    let uri = format!("/v2/{repo}/manifests/{reference}");
    let mut body = crate::api::FullBody(Some(m.bytes.clone()));
    let resp = call(
        registry,
        http::Method::PUT,
        &uri,
        Some(&m.media_type),
        m.bytes.len() as u64,
        &mut body,
    )
    .await?;
    if resp.status() != http::StatusCode::CREATED {
        return Err(format!(
            "{} ({repo}:{reference}): {}",
            shown(src, &blob_path(&m.digest)),
            answer_error(&resp)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_index_reads_back_with_its_repositories_and_tags() {
        let d = Digest::of(crate::oci::Algorithm::Sha256, b"m");
        let entry = |tag: Option<&str>| Entry {
            repo: "team/web".parse().expect("repo"),
            tag: tag.map(|t| t.parse().expect("tag")),
            digest: d.clone(),
            size: 1,
            media_type: crate::oci::media_type::OCI_MANIFEST.to_owned(),
            artifact_type: tag
                .is_none()
                .then(|| "application/vnd.example.sig".to_owned()),
        };
        let idx = oci_layout::parse_index(&index_json(&[entry(Some("v1")), entry(None)]))
            .expect("berth import reads what berth export writes");
        let (repo, tag) = idx.manifests[0].image().expect("a repo:tag ref name");
        assert_eq!(
            (repo.expect("repo").as_str(), tag.as_str()),
            ("team/web", "v1")
        );
        assert_eq!(idx.manifests[1].ref_name(), None);
        assert_eq!(idx.manifests[1].annotations[REPOSITORY], "team/web");
        assert_eq!(
            idx.manifests[1].artifact_type.as_deref(),
            Some("application/vnd.example.sig")
        );
    }
}
