//! Uploads: start (and monolithic, and mount), chunked and streamed PATCH, the final PUT,
//! status and cancel.

use super::*;

impl Registry {
    /// 201 for a stored blob, recorded as a push.
    fn pushed_blob<'a>(&self, n: &'a RepositoryName, d: Digest, size: u64) -> Answer<'a> {
        Answer::with(
            blob_created(n, &d),
            Happened::BlobPushed {
                repo: n,
                digest: d,
                size,
            },
        )
    }

    pub(super) async fn upload_start<'a>(
        &self,
        n: &'a RepositoryName,
        q: &[(String, String)],
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
        mount_anywhere: bool,
        mount_from: bool,
    ) -> Result<Answer<'a>> {
        if let Some(m) = param(q, "mount").filter(|_| mount_from) {
            let d: Digest = m
                .parse()
                .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
            let from = param(q, "from").and_then(|f| f.parse::<RepositoryName>().ok());
            let present = match &from {
                Some(f) => self.store.blob_size(f, &d).await?,
                None if mount_anywhere => self.store.blob_size_global(&d).await?,
                // Not honoured: the client uploads instead (the spec allows this).
                None => None,
            };
            if let Some(size) = present {
                self.store.blob_link(n, &d).await?;
                return Ok(Answer::with(
                    blob_created(n, &d),
                    Happened::BlobMounted {
                        repo: n,
                        digest: d,
                        size,
                        from,
                    },
                ));
            }
        }
        let id = self.store.upload_start(n).await?;
        if let Some(digest) = param(q, "digest") {
            let d: Digest = digest
                .parse()
                .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
            self.check_content_length(headers)?;
            let result = self.append(n, &id, 0, body, None).await;
            if let Err(e) = result {
                let _ = self.store.upload_cancel(n, &id).await;
                return Err(e);
            }
            let size = self.store.upload_commit(n, &id, &d).await?;
            crate::metrics::upload(size);
            return Ok(self.pushed_blob(n, d, size));
        }
        Ok(upload_accepted(n, &id, 0, StatusCode::ACCEPTED).into())
    }

    pub(super) async fn upload_status(
        &self,
        n: &RepositoryName,
        id: &UploadId,
    ) -> Result<Response<Body>> {
        let size = self.store.upload_size(n, id).await?;
        Ok(upload_accepted(n, id, size, StatusCode::NO_CONTENT))
    }

    pub(super) async fn upload_patch(
        &self,
        n: &RepositoryName,
        id: &UploadId,
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
    ) -> Result<Response<Body>> {
        let size = self.store.upload_size(n, id).await?;
        self.check_content_length(headers)?;
        let expected_len = self.check_content_range(headers, size)?;
        let new_size = self.append(n, id, size, body, expected_len).await?;
        Ok(upload_accepted(n, id, new_size, StatusCode::ACCEPTED))
    }

    pub(super) async fn upload_put<'a>(
        &self,
        n: &'a RepositoryName,
        id: &UploadId,
        q: &[(String, String)],
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
    ) -> Result<Answer<'a>> {
        let d: Digest = param(q, "digest")
            .ok_or_else(|| ApiError::digest_invalid("the digest query parameter is required"))?
            .parse()
            .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
        let size = self.store.upload_size(n, id).await?;
        self.check_content_length(headers)?;
        let expected_len = self.check_content_range(headers, size)?;
        self.append(n, id, size, body, expected_len).await?;
        let size = self.store.upload_commit(n, id, &d).await?;
        crate::metrics::upload(size);
        tracing::info!(repo = %n, digest = %d, "blob stored");
        Ok(self.pushed_blob(n, d, size))
    }

    pub(super) async fn upload_cancel(
        &self,
        n: &RepositoryName,
        id: &UploadId,
    ) -> Result<Response<Body>> {
        self.check_delete_enabled()?;
        if !self.store.upload_cancel(n, id).await? {
            return Err(ApiError::upload_unknown());
        }
        Ok(empty(StatusCode::NO_CONTENT))
    }

    /// Streams the request body onto the upload; on any failure the upload is left as it
    /// was before this request.
    /// `expected` is the length a `Content-Range` announced.
    pub(super) async fn append(
        &self,
        n: &RepositoryName,
        id: &UploadId,
        offset: u64,
        body: &mut dyn RequestBody,
        expected: Option<u64>,
    ) -> Result<u64> {
        let first = body
            .chunk()
            .await
            .map_err(|e| ApiError::upload_invalid(e.to_string()))?;
        let Some(first) = first else {
            return match expected {
                Some(want) if want != 0 => Err(short_chunk(want, 0)),
                _ => Ok(offset),
            };
        };
        let mut w = self.store.upload_writer(n, id, offset).await?;
        let pumped = self
            .pump(&mut w, first, offset, body)
            .await
            .and_then(|got| match expected {
                Some(want) if want != got => Err(short_chunk(want, got)),
                _ => Ok(()),
            });
        match pumped {
            Ok(()) => Ok(w.finish().await?),
            Err(e) => {
                // A write failure on the worker is the real cause; else the body's error.
                w.abort().await?;
                Err(e)
            }
        }
    }

    /// Returns the number of bytes this request carried.
    pub(super) async fn pump(
        &self,
        w: &mut Box<dyn UploadSink>,
        first: Bytes,
        offset: u64,
        body: &mut dyn RequestBody,
    ) -> Result<u64> {
        let mut total = offset;
        let mut next = Some(first);
        while let Some(chunk) = next {
            total += chunk.len() as u64;
            if self.blob_max.is_some_and(|max| total > max) {
                return Err(ApiError::size_invalid(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "blob exceeds the configured limit",
                ));
            }
            w.write(chunk).await?;
            next = body
                .chunk()
                .await
                .map_err(|e| ApiError::upload_invalid(e.to_string()))?;
        }
        Ok(total - offset)
    }

    /// Checks a chunk's `Content-Range` against the upload's size; returns the announced
    /// length.
    pub(super) fn check_content_range(
        &self,
        headers: &HeaderMap,
        size: u64,
    ) -> Result<Option<u64>> {
        let Some(v) = headers.get(header::CONTENT_RANGE) else {
            return Ok(None);
        };
        let v = v.to_str().map_err(|_| ApiError::range_invalid(size))?;
        content_range(v, size)
            .map(Some)
            .ok_or_else(|| ApiError::range_invalid(size))
    }

    pub(super) fn check_content_length(&self, headers: &HeaderMap) -> Result<()> {
        let len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(len), Some(max)) = (len, self.blob_max) {
            if len > max {
                return Err(ApiError::size_invalid(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "blob exceeds the configured limit",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn check_delete_enabled(&self) -> Result<()> {
        if self.delete_enabled {
            Ok(())
        } else {
            Err(ApiError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "deletion is disabled on this registry (storage.delete_enabled = false)",
            ))
        }
    }
}

/// The length a chunk's `Content-Range` value (`<start>-<end>`, after an optional `bytes`
/// and before an optional `/<total>`) announces; `None` unless it is well-formed and starts
/// at `size`, the upload's current size.
pub(crate) fn content_range(v: &str, size: u64) -> Option<u64> {
    let spec = v.trim_start_matches("bytes").trim_start_matches(['=', ' ']);
    let spec = spec.split('/').next().unwrap_or("");
    let (a, b) = spec.split_once('-')?;
    let (a, b): (u64, u64) = match (a.trim().parse(), b.trim().parse()) {
        (Ok(a), Ok(b)) if b >= a => (a, b),
        _ => return None,
    };
    if a != size {
        return None;
    }
    // `0-18446744073709551615` announces 2^64 bytes: more than a u64 says.
    (b - a).checked_add(1)
}

fn short_chunk(want: u64, got: u64) -> ApiError {
    ApiError::upload_invalid(format!(
        "Content-Range announced {want} bytes but the body had {got}"
    ))
}

fn blob_created(n: &RepositoryName, d: &Digest) -> Response<Body> {
    let mut r = empty(StatusCode::CREATED);
    set(
        r.headers_mut(),
        header::LOCATION,
        &format!("/v2/{n}/blobs/{d}"),
    );
    set(r.headers_mut(), "Docker-Content-Digest", &d.to_string());
    r
}

fn upload_accepted(
    n: &RepositoryName,
    id: &UploadId,
    size: u64,
    status: StatusCode,
) -> Response<Body> {
    let mut r = empty(status);
    let h = r.headers_mut();
    set(h, header::LOCATION, &format!("/v2/{n}/blobs/uploads/{id}"));
    set(h, header::RANGE, &upload_range(size));
    set(h, "Docker-Upload-UUID", id.as_str());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("0-1023", 0), Some(1024));
        assert_eq!(content_range("bytes 1024-2047/4096", 1024), Some(1024));
        assert_eq!(content_range("bytes=5-5", 5), Some(1));
        assert_eq!(
            content_range("1024-2047", 0),
            None,
            "not at the upload's end"
        );
        assert_eq!(content_range("5-4", 5), None);
        assert_eq!(content_range("a-b", 0), None);
        // Found by the range fuzz target: 2^64 bytes overflowed (a panic in debug builds,
        // an announced length of 0 in release ones).
        assert_eq!(content_range("0-18446744073709551615", 0), None);
        assert_eq!(content_range("1-18446744073709551615", 1), Some(u64::MAX));
    }
}
