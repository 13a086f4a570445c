//! The S3 wire: requests signed by `rusty-s3` (SigV4, query-string signing), sent through
//! [`crate::upstream::Client`], retried with backoff when the store is briefly unable
//! (`503 SlowDown`, a 5xx, a refused or broken connection), and the few answers berth
//! needs, parsed. Nothing here knows the registry's layout: keys are object keys.
//!
//! Every request is signed for a short time and sent at once; no credential, signature
//! or presigned URL is ever logged (errors name the operation and the key only).

use super::super::Error;
use crate::upstream::{Client, ClientError, ClientOptions, Response, Roots};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use rusty_s3::actions::{
    CompleteMultipartUpload, CreateMultipartUpload, DeleteObjects, ListObjectsV2, ObjectIdentifier,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use url::Url;

/// How long a signature made for one request is valid.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// Where the bucket is and who we are.
#[derive(Clone)]
pub struct Target {
    pub endpoint: Url,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// One object of a listing.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// What HEAD tells.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// The bucket, the credentials, the connection pool and the retry policy.
pub(crate) struct Wire {
    bucket: Bucket,
    creds: Credentials,
    client: Client,
    /// Tries per request (the first included).
    attempts: u32,
}

/// Key prefixes whose requests fail as if the store broke (the contract suite's I/O-error
/// check).
#[cfg(test)]
pub(crate) static BROKEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[cfg(test)]
pub(crate) fn broken(key: &str) -> bool {
    BROKEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|b| key.starts_with(b.as_str()))
}

/// The retry schedule: 100 ms doubling to at most 2 s, each wait between half and all of it.
fn backoff(attempt: u32) -> Duration {
    crate::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(2))
        .jitter(0.5..1.0)
        .wait(attempt)
}

/// An S3 error answer's `<Code>`, if it has one.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let start = s.find("<Code>")? + "<Code>".len();
    let end = s[start..].find("</Code>")? + start;
    Some(s[start..end].to_string())
}

fn xml_tag(s: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&format!("</{tag}>"))? + start;
    Some(s[start..end].to_string())
}

fn http_date(h: &http::HeaderMap) -> Option<SystemTime> {
    h.get(http::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

fn rfc3339(s: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

fn md5_b64(b: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(b))
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}

/// A request to make: the signed URL, the headers that were signed (sent as they are),
/// and the body.
struct Call {
    method: Method,
    url: Url,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Wire {
    pub(crate) fn new(t: &Target, timeout: Duration) -> Result<Self, String> {
        let style = if t.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            t.endpoint.clone(),
            style,
            t.bucket.clone(),
            t.region.clone(),
        )
        .map_err(|e| format!("storage.s3.endpoint {}: {e}", t.endpoint))?;
        let roots = match &t.ca {
            Some(p) => Roots::SystemAnd(p.clone()),
            None if t.endpoint.scheme() == "https" => Roots::System,
            None => Roots::Empty,
        };
        let client = Client::new(&ClientOptions {
            timeout,
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: timeout,
            roots,
            body_max: 64 << 20,
            head_max: 64 << 10,
            idle_timeout: Duration::from_secs(20),
        })
        .map_err(|e| format!("storage.s3: {e}"))?;
        Ok(Self {
            bucket,
            creds: Credentials::new(t.access_key_id.clone(), t.secret_access_key.clone()),
            client,
            attempts: 6,
        })
    }

    /// Sends `call` (made afresh for every try, so each is signed now), retrying what a
    /// store answers when it is briefly unable. Returns any final answer, 4xx included.
    async fn send(
        &self,
        op: &'static str,
        key: &str,
        make: impl Fn() -> Call,
    ) -> Result<Response, Error> {
        #[cfg(test)]
        if broken(key) {
            return Err(Error::Internal(format!("s3 {op} {key}: injected failure")));
        }
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                crate::metrics::S3_RETRIES.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt)).await;
            }
            crate::metrics::S3_REQUESTS.fetch_add(1, Ordering::Relaxed);
            let call = make();
            let mut req = Request::builder()
                .method(call.method)
                .uri(call.url.as_str());
            for (k, v) in &call.headers {
                match HeaderValue::from_str(v) {
                    Ok(v) => req = req.header(*k, v),
                    Err(_) => return Err(Error::Internal(format!("s3 {op} {key}: bad header"))),
                }
            }
            if !call.body.is_empty() {
                req = req.header(http::header::CONTENT_LENGTH, call.body.len());
            }
            let req = req
                .body(Full::new(call.body))
                .map_err(|e| Error::Internal(format!("s3 {op} {key}: {e}")))?;
            match self.client.send(req).await {
                Ok(r) if retryable_status(r.status()) => {
                    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                        crate::metrics::S3_SLOWDOWNS.fetch_add(1, Ordering::Relaxed);
                    }
                    let status = r.status();
                    let code = r.bytes().await.ok().and_then(|b| error_code(&b));
                    last = format!(
                        "{status}{}",
                        code.map(|c| format!(" {c}")).unwrap_or_default()
                    );
                }
                Ok(r) => return Ok(r),
                Err(e) if retryable_error(&e) => last = e.to_string(),
                Err(e) => return Err(Error::Internal(format!("s3 {op} {key}: {e}"))),
            }
        }
        crate::metrics::S3_UNAVAILABLE.fetch_add(1, Ordering::Relaxed);
        Err(Error::Unavailable(format!(
            "object storage: {op} {key} failed {} times, last: {last}",
            self.attempts
        )))
    }

    /// The answer's body when it is a success; otherwise an error naming `op` and `key`.
    async fn expect(op: &str, key: &str, r: Response) -> Result<Bytes, Error> {
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| Error::Internal(format!("s3 {op} {key}: {e}")))?;
        if status.is_success() {
            // CopyObject and CompleteMultipartUpload can fail in a 200 answer.
            if body.starts_with(b"<?xml") || body.starts_with(b"<Error") {
                if let Ok(s) = std::str::from_utf8(&body) {
                    if s.contains("<Error>") {
                        let code = error_code(&body).unwrap_or_default();
                        return Err(Error::Internal(format!("s3 {op} {key}: {code}")));
                    }
                }
            }
            return Ok(body);
        }
        Err(status_error(op, key, status, &body))
    }

    /// `action` signed with `headers` among its signed headers (so they must be sent as
    /// they are), and the request that sends them.
    fn signed<'a, A: S3Action<'a>>(
        &self,
        mut action: A,
        method: Method,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    ) -> Call {
        for (k, v) in &headers {
            action.headers_mut().insert(*k, v.clone());
        }
        self.call(method, action.sign(SIGNED_FOR), headers, body)
    }

    fn call(
        &self,
        method: Method,
        url: Url,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    ) -> Call {
        Call {
            method,
            url,
            headers,
            body,
        }
    }

    /// An object whole; `None` when there is none.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        let r = self
            .send("GET", key, || {
                let url = self
                    .bucket
                    .get_object(Some(&self.creds), key)
                    .sign(SIGNED_FOR);
                self.call(Method::GET, url, vec![], Bytes::new())
            })
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::expect("GET", key, r).await.map(Some)
    }

    /// `len` bytes of an object from `offset`, as a streaming answer.
    pub(crate) async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Response, Error> {
        let range = format!("bytes={}-{}", offset, offset + len - 1);
        let r = self
            .send("GET", key, || {
                self.signed(
                    self.bucket.get_object(Some(&self.creds), key),
                    Method::GET,
                    vec![("range", range.clone())],
                    Bytes::new(),
                )
            })
            .await?;
        if r.status() == StatusCode::PARTIAL_CONTENT || r.status() == StatusCode::OK {
            return Ok(r);
        }
        let status = r.status();
        let body = r.bytes().await.unwrap_or_default();
        Err(status_error("GET", key, status, &body))
    }

    /// A presigned GET of `key`, valid for `valid`: for a client to fetch itself.
    pub(crate) fn presign_get(&self, key: &str, valid: Duration) -> String {
        self.bucket
            .get_object(Some(&self.creds), key)
            .sign(valid)
            .to_string()
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<Head>, Error> {
        let r = self
            .send("HEAD", key, || {
                let url = self
                    .bucket
                    .head_object(Some(&self.creds), key)
                    .sign(SIGNED_FOR);
                self.call(Method::HEAD, url, vec![], Bytes::new())
            })
            .await?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let size = r
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok(Some(Head {
                    size,
                    last_modified: http_date(r.headers()),
                }))
            }
            s => Err(status_error("HEAD", key, s, b"")),
        }
    }

    /// Writes `body` at `key` in one PUT (atomic in S3: the old object or the new one).
    pub(crate) async fn put(&self, key: &str, body: Bytes) -> Result<(), Error> {
        let md5 = md5_b64(&body);
        let r = self
            .send("PUT", key, || {
                self.signed(
                    self.bucket.put_object(Some(&self.creds), key),
                    Method::PUT,
                    vec![("content-md5", md5.clone())],
                    body.clone(),
                )
            })
            .await?;
        Self::expect("PUT", key, r).await.map(|_| ())
    }

    /// Removes `key`; S3 answers the same whether or not it was there.
    pub(crate) async fn delete(&self, key: &str) -> Result<(), Error> {
        let r = self
            .send("DELETE", key, || {
                let url = self
                    .bucket
                    .delete_object(Some(&self.creds), key)
                    .sign(SIGNED_FOR);
                self.call(Method::DELETE, url, vec![], Bytes::new())
            })
            .await?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(()),
            _ => Self::expect("DELETE", key, r).await.map(|_| ()),
        }
    }

    /// Removes `keys`, a thousand per request.
    pub(crate) async fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        for batch in keys.chunks(1000) {
            let first = batch.first().map_or("", String::as_str);
            let r = self
                .send("DeleteObjects", first, || {
                    let objects: Vec<ObjectIdentifier> = batch
                        .iter()
                        .map(|k| ObjectIdentifier::new(k.clone()))
                        .collect();
                    let mut a: DeleteObjects<'_, _> = self
                        .bucket
                        .delete_objects(Some(&self.creds), objects.iter());
                    a.set_quiet(true);
                    let url = a.sign(SIGNED_FOR);
                    let (body, md5) = a.body_with_md5();
                    self.call(
                        Method::POST,
                        url,
                        vec![("content-md5", md5)],
                        Bytes::from(body),
                    )
                })
                .await?;
            let body = Self::expect("DeleteObjects", first, r).await?;
            let text = String::from_utf8_lossy(&body);
            if text.contains("<Error>") {
                let code = xml_tag(&text, "Code").unwrap_or_default();
                let key = xml_tag(&text, "Key").unwrap_or_default();
                return Err(Error::Internal(format!("s3 DeleteObjects {key}: {code}")));
            }
        }
        Ok(())
    }

    /// Objects under `prefix` (and, with a delimiter, the common prefixes after it), in
    /// S3's key order, every page; at most `max` objects when given.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        max: Option<usize>,
    ) -> Result<(Vec<Listed>, Vec<String>), Error> {
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .send("LIST", prefix, || {
                    let mut a: ListObjectsV2<'_> = self.bucket.list_objects_v2(Some(&self.creds));
                    a.with_prefix(prefix);
                    if let Some(d) = delimiter {
                        a.with_delimiter(d);
                    }
                    if let Some(t) = &token {
                        a.with_continuation_token(t.clone());
                    }
                    a.with_max_keys(max.unwrap_or(1000).min(1000));
                    let url = a.sign(SIGNED_FOR);
                    self.call(Method::GET, url, vec![], Bytes::new())
                })
                .await?;
            let body = Self::expect("LIST", prefix, r).await?;
            let text = std::str::from_utf8(&body)
                .map_err(|_| Error::Internal(format!("s3 LIST {prefix}: not UTF-8")))?;
            let page = ListObjectsV2::parse_response(text)
                .map_err(|e| Error::Internal(format!("s3 LIST {prefix}: {e}")))?;
            objects.extend(page.contents.into_iter().map(|c| Listed {
                last_modified: rfc3339(&c.last_modified),
                key: c.key,
                size: c.size,
            }));
            prefixes.extend(page.common_prefixes.into_iter().map(|p| p.prefix));
            if max.is_some_and(|m| objects.len() + prefixes.len() >= m) {
                break;
            }
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok((objects, prefixes))
    }

    /// A server-side copy of `from` to `to` (CopyObject: no bytes through berth; in Garage
    /// it links the same blocks).
    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<bool, Error> {
        let source = self.copy_source(from);
        let r = self
            .send("COPY", to, || {
                self.signed(
                    self.bucket.put_object(Some(&self.creds), to),
                    Method::PUT,
                    vec![("x-amz-copy-source", source.clone())],
                    Bytes::new(),
                )
            })
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::expect("COPY", to, r).await.map(|_| true)
    }

    fn copy_source(&self, from: &str) -> String {
        let enc: String = percent_encoding::utf8_percent_encode(from, COPY_SOURCE).to_string();
        format!("/{}/{}", self.bucket.name(), enc)
    }

    pub(crate) async fn mpu_create(&self, key: &str) -> Result<String, Error> {
        let r = self
            .send("CreateMultipartUpload", key, || {
                let url = self
                    .bucket
                    .create_multipart_upload(Some(&self.creds), key)
                    .sign(SIGNED_FOR);
                self.call(Method::POST, url, vec![], Bytes::new())
            })
            .await?;
        let body = Self::expect("CreateMultipartUpload", key, r).await?;
        let text = String::from_utf8_lossy(&body);
        CreateMultipartUpload::parse_response(&text)
            .map(|r| r.upload_id().to_string())
            .map_err(|e| Error::Internal(format!("s3 CreateMultipartUpload {key}: {e}")))
    }

    /// Uploads one part; its ETag (checked against the bytes' MD5).
    pub(crate) async fn mpu_part(
        &self,
        key: &str,
        upload: &str,
        n: u16,
        body: Bytes,
    ) -> Result<String, Error> {
        let md5 = md5_b64(&body);
        let want = md5_hex(&body);
        let r = self
            .send("UploadPart", key, || {
                self.signed(
                    self.bucket.upload_part(Some(&self.creds), key, n, upload),
                    Method::PUT,
                    vec![("content-md5", md5.clone())],
                    body.clone(),
                )
            })
            .await?;
        let etag = etag_of(&r);
        Self::expect("UploadPart", key, r).await?;
        if etag.trim_matches('"') != want {
            return Err(Error::Internal(format!(
                "s3 UploadPart {key}: the store's ETag {etag} is not the part's MD5"
            )));
        }
        Ok(etag)
    }

    /// A part copied from `source` bytes `[start, end]` inside the store (UploadPartCopy).
    pub(crate) async fn mpu_part_copy(
        &self,
        key: &str,
        upload: &str,
        n: u16,
        source: &str,
        range: Option<(u64, u64)>,
    ) -> Result<String, Error> {
        let src = self.copy_source(source);
        let range = range.map(|(a, b)| format!("bytes={a}-{b}"));
        let r = self
            .send("UploadPartCopy", key, || {
                let mut headers = vec![("x-amz-copy-source", src.clone())];
                if let Some(r) = &range {
                    headers.push(("x-amz-copy-source-range", r.clone()));
                }
                self.signed(
                    self.bucket.upload_part(Some(&self.creds), key, n, upload),
                    Method::PUT,
                    headers,
                    Bytes::new(),
                )
            })
            .await?;
        let body = Self::expect("UploadPartCopy", key, r).await?;
        xml_tag(&String::from_utf8_lossy(&body), "ETag")
            .map(|e| e.replace("&quot;", "\""))
            .ok_or_else(|| Error::Internal(format!("s3 UploadPartCopy {key}: no ETag")))
    }

    pub(crate) async fn mpu_complete(
        &self,
        key: &str,
        upload: &str,
        etags: &[String],
    ) -> Result<(), Error> {
        let r = self
            .send("CompleteMultipartUpload", key, || {
                let a: CompleteMultipartUpload<'_, _> = self.bucket.complete_multipart_upload(
                    Some(&self.creds),
                    key,
                    upload,
                    etags.iter().map(String::as_str),
                );
                let url = a.sign(SIGNED_FOR);
                let body = a.body();
                self.call(Method::POST, url, vec![], Bytes::from(body))
            })
            .await?;
        Self::expect("CompleteMultipartUpload", key, r)
            .await
            .map(|_| ())
    }

    pub(crate) async fn mpu_abort(&self, key: &str, upload: &str) -> Result<(), Error> {
        let r = self
            .send("AbortMultipartUpload", key, || {
                let url = self
                    .bucket
                    .abort_multipart_upload(Some(&self.creds), key, upload)
                    .sign(SIGNED_FOR);
                self.call(Method::DELETE, url, vec![], Bytes::new())
            })
            .await?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(()),
            _ => Self::expect("AbortMultipartUpload", key, r)
                .await
                .map(|_| ()),
        }
    }

    /// HEAD of the bucket: whether it is there and ours. The error names the key to fix.
    pub(crate) async fn check_bucket(&self) -> Result<(), String> {
        let r = self
            .send("HeadBucket", self.bucket.name(), || {
                let url = self.bucket.head_bucket(Some(&self.creds)).sign(SIGNED_FOR);
                self.call(Method::HEAD, url, vec![], Bytes::new())
            })
            .await
            .map_err(|e| e.to_string())?;
        match r.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(format!(
                "storage.s3.bucket: there is no bucket {:?} at this endpoint; create it (garage bucket create / aws s3 mb) or fix the name",
                self.bucket.name()
            )),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Err(format!(
                "storage.s3: the endpoint refused the credentials for bucket {:?} ({}): check storage.s3.access_key_id and storage.s3.secret_access_key_file (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), and that the key may use the bucket",
                self.bucket.name(),
                r.status()
            )),
            StatusCode::BAD_REQUEST | StatusCode::MOVED_PERMANENTLY => Err(format!(
                "storage.s3.region: the endpoint refused the request ({}); the region may be wrong (Garage's is its s3_region, often \"garage\")",
                r.status()
            )),
            s => Err(format!("storage.s3: HEAD of bucket {:?} answered {s}", self.bucket.name())),
        }
    }
}

/// Characters kept as they are in `x-amz-copy-source` (a key's `/` stays).
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn etag_of(r: &Response) -> String {
    r.headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 500 | 502 | 503 | 504)
}

fn retryable_error(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Timeout(_)
            | ClientError::Connect { .. }
            | ClientError::Closed
            | ClientError::Truncated
            | ClientError::Io(_)
            | ClientError::Http(_)
    )
}

fn status_error(op: &str, key: &str, status: StatusCode, body: &[u8]) -> Error {
    let code = error_code(body).unwrap_or_default();
    match status {
        StatusCode::FORBIDDEN => Error::Unavailable(format!(
            "object storage refused {op} {key} ({status} {code}): check storage.s3's credentials"
        )),
        _ => Error::Internal(format!("s3 {op} {key}: {status} {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_s3_error_answers() {
        let body =
            b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>x</Message></Error>";
        assert_eq!(error_code(body).as_deref(), Some("SlowDown"));
        assert_eq!(error_code(b"<Error></Error>"), None);
    }

    #[test]
    fn copy_sources_keep_slashes_and_escape_the_rest() {
        let t = Target {
            endpoint: Url::parse("http://127.0.0.1:3900").expect("url"),
            region: "garage".into(),
            bucket: "b".into(),
            path_style: true,
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            ca: None,
        };
        let w = Wire::new(&t, Duration::from_secs(1)).expect("wire");
        assert_eq!(w.copy_source("a/b c+d/data"), "/b/a/b%20c%2Bd/data");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for a in 0..20 {
            let d = backoff(a);
            assert!(d <= Duration::from_secs(2), "{a}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_millis(100));
    }
}
