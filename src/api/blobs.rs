//! Blobs: GET (with `Range`) and HEAD, answered from a local file, a stream or a redirect as
//! the storage decides; DELETE.

use super::*;

impl Registry {
    pub(super) async fn blob_get<'a>(
        &self,
        n: &'a RepositoryName,
        d: &'a Digest,
        headers: &HeaderMap,
        head: bool,
    ) -> Result<Answer<'a>> {
        // A GET opens the blob in the same blocking call that checks it (one hand-off).
        let (size, mut opened) = if head {
            match self.store.blob_size(n, d).await? {
                Some(size) => (size, None),
                None => return Err(ApiError::blob_unknown(d)),
            }
        } else {
            match self.store.blob_open(n, d).await? {
                Some((size, BlobSource::Redirect(url))) => return Ok(redirected(n, d, size, &url)),
                Some((size, source)) => (size, Some(source)),
                None => return Err(ApiError::blob_unknown(d)),
            }
        };
        let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            Some(r) => match parse_range(r, size) {
                RangeSpec::Whole => None,
                RangeSpec::Part(a, b) => Some((a, b)),
                RangeSpec::Unsatisfiable => {
                    return Err(ApiError::new(
                        OciCode::BlobUnknown,
                        "requested range not satisfiable",
                    )
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("Content-Range", format!("bytes */{size}")))
                }
            },
            None => None,
        };
        let (status, offset, len) = match range {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
            None => (StatusCode::OK, 0, size),
        };
        let body = match opened.take() {
            Some(BlobSource::File(blob)) if len > 0 => Body::File(blob.slice(offset, len)),
            Some(BlobSource::Stream(open)) if len > 0 => Body::Stream(open(offset, len)),
            _ => Body::Empty,
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        set(h, header::CONTENT_TYPE, "application/octet-stream");
        set(h, header::CONTENT_LENGTH, &len.to_string());
        set(h, "Docker-Content-Digest", &d.to_string());
        set(h, header::ETAG, &format!("\"{d}\""));
        set(h, header::ACCEPT_RANGES, "bytes");
        set(h, header::CACHE_CONTROL, "max-age=31536000");
        if let Some((a, b)) = range {
            set(h, header::CONTENT_RANGE, &format!("bytes {a}-{b}/{size}"));
        }
        if head {
            return Ok(resp.into());
        }
        Ok(pulled(resp, n, d, size))
    }

    pub(super) async fn blob_delete<'a>(
        &self,
        n: &'a RepositoryName,
        d: &'a Digest,
    ) -> Result<Answer<'a>> {
        self.check_delete_enabled()?;
        if !self.store.blob_unlink(n, d).await? {
            return Err(ApiError::blob_unknown(d));
        }
        Ok(Answer::with(
            empty(StatusCode::ACCEPTED),
            Happened::BlobDeleted { repo: n, digest: d },
        ))
    }
}

/// 307 to where the store serves the blob itself (an object store's presigned URL); the
/// client sends its `Range` there. A pull, as a served GET is.
fn redirected<'a>(n: &'a RepositoryName, d: &'a Digest, size: u64, url: &str) -> Answer<'a> {
    let mut resp = empty(StatusCode::TEMPORARY_REDIRECT);
    let h = resp.headers_mut();
    set(h, header::LOCATION, url);
    set(h, "Docker-Content-Digest", &d.to_string());
    pulled(resp, n, d, size)
}

/// A blob GET's response, recorded as a pull.
fn pulled<'a>(resp: Response<Body>, n: &'a RepositoryName, d: &'a Digest, size: u64) -> Answer<'a> {
    Answer::with(
        resp,
        Happened::BlobPulled {
            repo: n,
            digest: d,
            size,
        },
    )
}

pub(crate) enum RangeSpec {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range against a blob of `size` bytes. Several ranges are served as the
/// whole blob, which RFC 9110 allows.
pub(crate) fn parse_range(v: &str, size: u64) -> RangeSpec {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeSpec::Unsatisfiable;
    };
    if spec.contains(',') {
        return RangeSpec::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0 && size > 0)
            .map(|n| (size.saturating_sub(n), size - 1)),
        (false, true) => a
            .parse::<u64>()
            .ok()
            .filter(|&a| a < size)
            .map(|a| (a, size - 1)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b && a < size => Some((a, b.min(size - 1))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        Some((a, b)) => RangeSpec::Part(a, b),
        None => RangeSpec::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn ranges() {
        let p = |v: &str, size| match parse_range(v, size) {
            RangeSpec::Whole => "whole".to_owned(),
            RangeSpec::Part(a, b) => format!("{a}-{b}"),
            RangeSpec::Unsatisfiable => "416".to_owned(),
        };
        assert_eq!(p("bytes=0-9", 100), "0-9");
        assert_eq!(p("bytes=90-", 100), "90-99");
        assert_eq!(p("bytes=-10", 100), "90-99");
        assert_eq!(p("bytes=50-500", 100), "50-99");
        assert_eq!(p("bytes=100-", 100), "416");
        assert_eq!(p("bytes=9-1", 100), "416");
        assert_eq!(p("bytes=abc", 100), "416");
        assert_eq!(p("items=0-1", 100), "416");
        assert_eq!(p("bytes=0-1,5-6", 100), "whole");
    }
}
