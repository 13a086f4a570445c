//! In-process API tests: `Registry::handle` driven with request parts and a [`FullBody`],
//! no socket, over a store in a temporary directory. Milliseconds each; what needs a real
//! connection (TLS, HTTP/2, sendfile, upgrades) stays in `tests/`.

use super::*;
use crate::oci::Algorithm;
use crate::store::{Store, UploadSink};
use http::Method;

struct Harness {
    _dir: tempfile::TempDir,
    registry: Registry,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.storage.delete_enabled = true;
        let store = Store::open(dir.path()).expect("store");
        let registry = Registry::new(&config, Arc::new(store)).expect("registry");
        Self {
            _dir: dir,
            registry,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response<Body> {
        call_on(&self.registry, method, uri, headers, body).await
    }

    async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, bytes);
        let resp = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                bytes,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "monolithic push");
        d
    }
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The error code in a JSON error body.
fn code(resp: &Response<Body>) -> String {
    let Body::Full(b) = resp.body() else {
        panic!("an error has a JSON body, not {:?}", resp.body());
    };
    let v: serde_json::Value = serde_json::from_slice(b).expect("json");
    v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn base_and_unknown_paths_carry_the_api_version() {
    let h = Harness::new();
    let base = h.call(Method::GET, "/v2/", &[], b"").await;
    assert_eq!(base.status(), StatusCode::OK);
    assert_eq!(
        header(&base, "Docker-Distribution-API-Version"),
        API_VERSION
    );
    let none = h.call(Method::GET, "/v2/a/nothing/here", &[], b"").await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(&none), "NOT_FOUND");
    assert_eq!(header(&none, "X-Content-Type-Options"), "nosniff");
}

#[tokio::test]
async fn blob_push_head_get_and_range() {
    let h = Harness::new();
    let d = h.push_blob("team/app", b"hello world").await;
    let head = h
        .call(Method::HEAD, &format!("/v2/team/app/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "Content-Length"), "11");
    assert!(matches!(head.body(), Body::Empty));
    let get = h
        .call(
            Method::GET,
            &format!("/v2/team/app/blobs/{d}"),
            &[("Range", "bytes=6-")],
            b"",
        )
        .await;
    assert_eq!(get.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&get, "Content-Range"), "bytes 6-10/11");
    let Body::File(f) = get.into_body() else {
        panic!("a blob GET answers with the file");
    };
    assert_eq!((f.offset, f.len), (6, 5));
    let past = h
        .call(
            Method::GET,
            &format!("/v2/team/app/blobs/{d}"),
            &[("Range", "bytes=11-")],
            b"",
        )
        .await;
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(code(&past), "BLOB_UNKNOWN");
    assert_eq!(header(&past, "Content-Range"), "bytes */11");
}

#[tokio::test]
async fn errors_take_their_status_from_the_code_table() {
    let h = Harness::new();
    let missing = Digest::of(Algorithm::Sha256, b"absent");
    let r = h
        .call(Method::GET, &format!("/v2/a/blobs/{missing}"), &[], b"")
        .await;
    assert_eq!(
        (r.status(), code(&r)),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );
    let r = h
        .call(Method::GET, "/v2/a/manifests/latest", &[], b"")
        .await;
    assert_eq!(
        (r.status(), code(&r)),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let r = h.call(Method::GET, "/v2/a/tags/list", &[], b"").await;
    assert_eq!(
        (r.status(), code(&r)),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    let r = h.call(Method::GET, "/v2/_catalog?n=x", &[], b"").await;
    assert_eq!(
        (r.status(), code(&r)),
        (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID".into())
    );
    let wrong = h
        .call(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={missing}"),
            &[],
            b"not it",
        )
        .await;
    assert_eq!(
        (wrong.status(), code(&wrong)),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    let r = h
        .call(Method::PATCH, "/v2/a/manifests/latest", &[], b"")
        .await;
    assert_eq!(
        (r.status(), code(&r)),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into())
    );
}

#[tokio::test]
async fn manifest_put_then_get_by_tag_and_digest() {
    let h = Harness::new();
    let config = h.push_blob("r", b"{}").await;
    let layer = h.push_blob("r", b"layer").await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::media_type::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 5}],
    })
    .to_string();
    let ct = crate::oci::media_type::OCI_MANIFEST;
    let put = h
        .call(
            Method::PUT,
            "/v2/r/manifests/v1",
            &[("Content-Type", ct)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let d = Digest::of(Algorithm::Sha256, manifest.as_bytes());
    assert_eq!(header(&put, "Docker-Content-Digest"), d.to_string());
    for reference in ["v1".to_owned(), d.to_string()] {
        let get = h
            .call(
                Method::GET,
                &format!("/v2/r/manifests/{reference}"),
                &[("Accept", ct)],
                b"",
            )
            .await;
        assert_eq!(get.status(), StatusCode::OK, "{reference}");
        assert_eq!(header(&get, "Content-Type"), ct);
        let Body::Full(b) = get.body() else {
            panic!("a manifest is answered from memory");
        };
        assert_eq!(b.as_ref(), manifest.as_bytes());
    }
    // A manifest naming a blob the repository lacks is refused and changes nothing.
    let dangling = manifest.replace(
        &layer.to_string(),
        &Digest::of(Algorithm::Sha256, b"?").to_string(),
    );
    let r = h
        .call(
            Method::PUT,
            "/v2/r/manifests/v1",
            &[("Content-Type", ct)],
            dangling.as_bytes(),
        )
        .await;
    assert_eq!(
        (r.status(), code(&r)),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into())
    );
    let tags = h.call(Method::GET, "/v2/r/tags/list", &[], b"").await;
    let Body::Full(b) = tags.body() else {
        panic!("tags are JSON");
    };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(b).expect("json")["tags"],
        serde_json::json!(["v1"])
    );
}

#[tokio::test]
async fn read_only_refuses_writes_and_keeps_reads() {
    let h = Harness::new();
    let d = h.push_blob("r", b"kept").await;
    h.registry.store().set_read_only(true);
    let r = h.call(Method::POST, "/v2/r/blobs/uploads/", &[], b"").await;
    assert_eq!(
        (r.status(), code(&r)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE".into())
    );
    let head = h
        .call(Method::HEAD, &format!("/v2/r/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(head.status(), StatusCode::OK);
}

/// A backend whose blobs live elsewhere: it streams them (as an object store's GET would)
/// or redirects to them (a presigned URL), over a filesystem store for everything else.
struct Elsewhere {
    inner: Store,
    redirect: bool,
}

#[async_trait::async_trait]
impl Content for Elsewhere {
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
    fn set_read_only(&self, on: bool) {
        self.inner.set_read_only(on)
    }
    async fn writable(&self) -> std::result::Result<(), crate::store::Error> {
        self.inner.writable().await
    }
    async fn blob_bytes(&self) -> std::result::Result<u64, crate::store::Error> {
        self.inner.blob_bytes().await
    }
    async fn blob_size(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> std::result::Result<Option<u64>, crate::store::Error> {
        self.inner.blob_size(repo, d).await
    }
    async fn blob_open(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> std::result::Result<Option<(u64, BlobSource)>, crate::store::Error> {
        let Some(bytes) = self.inner.blob_read_small(d).await? else {
            return Ok(None);
        };
        if self.inner.blob_size(repo, d).await?.is_none() {
            return Ok(None);
        }
        let size = bytes.len() as u64;
        if self.redirect {
            return Ok(Some((
                size,
                BlobSource::Redirect(format!("https://objects.invalid/{d}")),
            )));
        }
        let open = move |offset: u64, len: u64| -> crate::body::BodyStream {
            let part = bytes.slice(offset as usize..(offset + len) as usize);
            let halves = vec![
                Ok(part.slice(..part.len() / 2)),
                Ok(part.slice(part.len() / 2..)),
            ];
            Box::pin(futures_util::stream::iter(halves))
        };
        Ok(Some((size, BlobSource::Stream(Box::new(open)))))
    }
    async fn blob_size_global(
        &self,
        d: &Digest,
    ) -> std::result::Result<Option<u64>, crate::store::Error> {
        self.inner.blob_size_global(d).await
    }
    async fn blob_link(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> std::result::Result<(), crate::store::Error> {
        self.inner.blob_link(repo, d).await
    }
    async fn blob_unlink(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> std::result::Result<bool, crate::store::Error> {
        self.inner.blob_unlink(repo, d).await
    }
    async fn blob_put_small(
        &self,
        d: &Digest,
        bytes: Bytes,
    ) -> std::result::Result<(), crate::store::Error> {
        self.inner.blob_put_small(d, bytes).await
    }
    async fn blob_read_small(
        &self,
        d: &Digest,
    ) -> std::result::Result<Option<Bytes>, crate::store::Error> {
        self.inner.blob_read_small(d).await
    }
    async fn upload_start(
        &self,
        repo: &RepositoryName,
    ) -> std::result::Result<UploadId, crate::store::Error> {
        self.inner.upload_start(repo).await
    }
    async fn upload_size(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> std::result::Result<u64, crate::store::Error> {
        self.inner.upload_size(repo, id).await
    }
    async fn upload_writer(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: u64,
    ) -> std::result::Result<Box<dyn UploadSink>, crate::store::Error> {
        Ok(Box::new(self.inner.upload_writer(repo, id, offset).await?))
    }
    async fn upload_commit(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        expected: &Digest,
    ) -> std::result::Result<u64, crate::store::Error> {
        self.inner.upload_commit(repo, id, expected).await
    }
    async fn upload_cancel(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> std::result::Result<bool, crate::store::Error> {
        self.inner.upload_cancel(repo, id).await
    }
    async fn manifest_fetch(
        &self,
        repo: &RepositoryName,
        r: &Reference,
    ) -> std::result::Result<Option<(Digest, Bytes)>, crate::store::Error> {
        self.inner.manifest_fetch(repo, r).await
    }
    async fn manifest_link(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> std::result::Result<(), crate::store::Error> {
        self.inner.manifest_link(repo, d).await
    }
    async fn manifest_use(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> std::result::Result<bool, crate::store::Error> {
        self.inner.manifest_use(repo, d).await
    }
    async fn manifest_delete(
        &self,
        repo: &RepositoryName,
        d: &Digest,
    ) -> std::result::Result<bool, crate::store::Error> {
        self.inner.manifest_delete(repo, d).await
    }
    async fn link_barrier(
        &self,
    ) -> std::result::Result<crate::store::LinkBarrier, crate::store::Error> {
        Ok(crate::store::LinkBarrier::new(
            self.inner.link_guard().await?,
        ))
    }
    async fn tag_set(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        d: &Digest,
    ) -> std::result::Result<(), crate::store::Error> {
        self.inner.tag_set(repo, tag, d).await
    }
    async fn tag_delete(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> std::result::Result<bool, crate::store::Error> {
        self.inner.tag_delete(repo, tag).await
    }
    async fn tags(
        &self,
        repo: &RepositoryName,
    ) -> std::result::Result<Option<Vec<Tag>>, crate::store::Error> {
        self.inner.tags(repo).await
    }
    async fn repositories(&self) -> std::result::Result<Vec<RepositoryName>, crate::store::Error> {
        self.inner.repositories().await
    }
    async fn repository_delete(
        &self,
        repo: &RepositoryName,
    ) -> std::result::Result<bool, crate::store::Error> {
        self.inner.repository_delete(repo).await
    }
    async fn referrer_add(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> std::result::Result<(), crate::store::Error> {
        self.inner.referrer_add(repo, subject, referrer).await
    }
    async fn referrer_remove(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        referrer: &Digest,
    ) -> std::result::Result<(), crate::store::Error> {
        self.inner.referrer_remove(repo, subject, referrer).await
    }
    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> std::result::Result<Vec<Digest>, crate::store::Error> {
        self.inner.referrers(repo, subject).await
    }
}

fn elsewhere(redirect: bool) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = Store::open(dir.path()).expect("store");
    let registry = Registry::new(&Config::default(), Arc::new(Elsewhere { inner, redirect }))
        .expect("registry");
    (dir, registry)
}

async fn call_on(
    r: &Registry,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response<Body> {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).expect("request").into_parts();
    r.handle(&parts, &mut FullBody(Some(Bytes::copy_from_slice(body))))
        .await
}

#[tokio::test]
async fn a_streaming_backend_serves_blobs_and_ranges_through_the_same_handler() {
    let (_dir, r) = elsewhere(false);
    let d = Digest::of(Algorithm::Sha256, b"streamed bytes");
    let push = call_on(
        &r,
        Method::POST,
        &format!("/v2/s/blobs/uploads/?digest={d}"),
        &[],
        b"streamed bytes",
    )
    .await;
    assert_eq!(push.status(), StatusCode::CREATED);
    for (range, status, want) in [
        (None, StatusCode::OK, &b"streamed bytes"[..]),
        (Some("bytes=9-"), StatusCode::PARTIAL_CONTENT, &b"bytes"[..]),
    ] {
        let headers: Vec<(&str, &str)> = range.map(|v| ("Range", v)).into_iter().collect();
        let resp = call_on(&r, Method::GET, &format!("/v2/s/blobs/{d}"), &headers, b"").await;
        assert_eq!(resp.status(), status);
        assert_eq!(header(&resp, "Content-Length"), want.len().to_string());
        let Body::Stream(mut s) = resp.into_body() else {
            panic!("a streaming backend's blob is a Body::Stream");
        };
        let mut got = Vec::new();
        while let Some(c) = crate::body::next_chunk(&mut s).await {
            got.extend_from_slice(&c.expect("chunk"));
        }
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn a_redirecting_backend_answers_307_with_the_url() {
    let (_dir, r) = elsewhere(true);
    let d = Digest::of(Algorithm::Sha256, b"far away");
    call_on(
        &r,
        Method::POST,
        &format!("/v2/s/blobs/uploads/?digest={d}"),
        &[],
        b"far away",
    )
    .await;
    let resp = call_on(&r, Method::GET, &format!("/v2/s/blobs/{d}"), &[], b"").await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header(&resp, "Location"),
        format!("https://objects.invalid/{d}")
    );
    assert_eq!(header(&resp, "Docker-Content-Digest"), d.to_string());
    let missing = Digest::of(Algorithm::Sha256, b"nowhere");
    let resp = call_on(&r, Method::GET, &format!("/v2/s/blobs/{missing}"), &[], b"").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
