//! Manifests: GET/HEAD by tag or digest (honouring `Accept`), PUT with its reference checks
//! and foreign-layer policy, DELETE.

use super::*;

impl Registry {
    pub(super) async fn manifest_get<'a>(
        &self,
        n: &'a RepositoryName,
        r: &'a Reference,
        headers: &HeaderMap,
        head: bool,
    ) -> Result<Answer<'a>> {
        let Some((d, bytes)) = self.store.manifest_fetch(n, r).await? else {
            return Err(ApiError::manifest_unknown(r));
        };
        let parsed = Parsed::from_stored(&bytes);
        let media_type = parsed
            .as_ref()
            .map(|p| {
                p.body
                    .media_type
                    .clone()
                    .unwrap_or_else(|| p.kind.media_type().to_owned())
            })
            .unwrap_or_else(|| "application/json".to_owned());
        let accept: Vec<&str> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if matches!(r, Reference::Tag(_)) && !manifest::accepts(&accept, &media_type) {
            return Err(ApiError::manifest_unknown(r).detail(serde_json::json!({
                "reference": r.to_string(),
                "reason": format!("the manifest is {media_type}, which the Accept header does not include"),
            })));
        }
        let mut resp = Response::new(if head {
            Body::Empty
        } else {
            Body::Full(bytes.clone())
        });
        let h = resp.headers_mut();
        set(h, header::CONTENT_TYPE, &media_type);
        set(h, header::CONTENT_LENGTH, &bytes.len().to_string());
        set(h, "Docker-Content-Digest", &d.to_string());
        set(h, header::ETAG, &format!("\"{d}\""));
        if head {
            return Ok(resp.into());
        }
        let tag = match r {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let size = bytes.len() as u64;
        Ok(Answer::with(
            resp,
            Happened::ManifestPulled {
                repo: n,
                digest: d,
                media_type,
                size,
                tag,
            },
        ))
    }

    pub(super) async fn manifest_put<'a>(
        &self,
        n: &'a RepositoryName,
        r: &Reference,
        q: &[(String, String)],
        headers: &HeaderMap,
        body: &mut dyn RequestBody,
    ) -> Result<Answer<'a>> {
        let extra_tags = q
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| {
                v.parse::<Tag>()
                    .map_err(|e| ApiError::new(OciCode::TagInvalid, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = read_limited(body, self.manifest_max).await?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let parsed = Parsed::from_push(&bytes, content_type)
            .map_err(|e| ApiError::manifest_invalid(e.to_string()))?;
        let d = Digest::of(
            match r {
                Reference::Digest(want) => want.algorithm(),
                Reference::Tag(_) => crate::oci::Algorithm::Sha256,
            },
            &bytes,
        );
        if let Reference::Digest(want) = r {
            if want != &d {
                return Err(ApiError::digest_invalid(
                    "manifest digest does not match the reference",
                )
                .detail(
                    serde_json::json!({ "expected": want.to_string(), "actual": d.to_string() }),
                ));
            }
        }
        // From the checks to the last link, the collector waits: what the checks found
        // (and marked as used) is what gets linked (see store::gc).
        let _linking = self.store.link_barrier().await?;
        self.check_references(n, &parsed).await?;

        let size = bytes.len() as u64;
        self.store.blob_put_small(&d, bytes).await?;
        self.store.manifest_link(n, &d).await?;
        let subject = parsed.subject();
        if let Some(s) = &subject {
            self.store.referrer_add(n, s, &d).await?;
        }
        let mut tags: Vec<Tag> = Vec::new();
        if let Reference::Tag(t) = r {
            tags.push(t.clone());
        }
        tags.extend(extra_tags);
        for t in &tags {
            self.store.tag_set(n, t, &d).await?;
        }
        tracing::info!(repo = %n, digest = %d, tags = tags.len(), "manifest stored");

        let mut resp = empty(StatusCode::CREATED);
        let h = resp.headers_mut();
        set(h, header::LOCATION, &format!("/v2/{n}/manifests/{d}"));
        set(h, "Docker-Content-Digest", &d.to_string());
        if let Some(s) = subject {
            set(h, "OCI-Subject", &s.to_string());
        }
        for t in &tags {
            if let Ok(v) = HeaderValue::from_str(t.as_str()) {
                h.append("OCI-Tag", v);
            }
        }
        let media_type = parsed
            .body
            .media_type
            .clone()
            .unwrap_or_else(|| parsed.kind.media_type().to_owned());
        Ok(Answer::with(
            resp,
            Happened::ManifestPushed {
                repo: n,
                digest: d,
                media_type,
                size,
                tags,
            },
        ))
    }

    /// Every blob and child manifest the manifest names must be in the repository, except
    /// foreign layers, whose URLs must pass the configured policy instead.
    pub(super) async fn check_references(&self, n: &RepositoryName, p: &Parsed) -> Result<()> {
        for desc in p.descriptors() {
            let d: Digest = desc.digest.parse().map_err(|_| {
                ApiError::manifest_invalid(format!("invalid digest {:?}", desc.digest))
            })?;
            if desc.is_foreign() {
                self.check_foreign_urls(&desc.urls)?;
                continue;
            }
            let present = if p.kind.is_index() {
                // Marked as used even when not required, so the collector keeps it.
                self.store.manifest_use(n, &d).await? || !self.require_index_children
            } else {
                self.store.blob_size(n, &d).await?.is_some()
            };
            if !present {
                return Err(if p.kind.is_index() {
                    ApiError::manifest_unknown(&d).detail(serde_json::json!({ "digest": d.to_string(), "reason": "index child manifest not in repository" })).with_status(StatusCode::BAD_REQUEST)
                } else {
                    ApiError::manifest_blob_unknown(&d)
                });
            }
        }
        Ok(())
    }

    pub(super) fn check_foreign_urls(&self, urls: &[String]) -> Result<()> {
        for u in urls {
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            let allowed =
                self.urls_allow.is_empty() || self.urls_allow.iter().any(|r| r.is_match(u));
            let denied = self.urls_deny.iter().any(|r| r.is_match(u));
            if !scheme_ok || u.contains('#') || !allowed || denied {
                return Err(ApiError::manifest_invalid(format!(
                    "foreign layer URL {u:?} is not allowed by this registry's policy"
                )));
            }
        }
        Ok(())
    }

    pub(super) async fn manifest_delete<'a>(
        &self,
        n: &'a RepositoryName,
        r: &'a Reference,
    ) -> Result<Answer<'a>> {
        self.check_delete_enabled()?;
        let found = match r {
            Reference::Tag(t) => self.store.tag_delete(n, t).await?,
            Reference::Digest(d) => {
                let subject = match self.store.blob_read_small(d).await? {
                    Some(b) => Parsed::from_stored(&b).and_then(|p| p.subject()),
                    None => None,
                };
                let found = self.store.manifest_delete(n, d).await?;
                if let (true, Some(s)) = (found, subject) {
                    self.store.referrer_remove(n, &s, d).await?;
                }
                found
            }
        };
        if !found {
            return Err(ApiError::manifest_unknown(r));
        }
        Ok(Answer::with(
            empty(StatusCode::ACCEPTED),
            Happened::ManifestDeleted {
                repo: n,
                reference: r,
            },
        ))
    }
}

/// Reads a whole body up to `max` bytes (413 above it).
async fn read_limited(body: &mut dyn RequestBody, max: u64) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(c) = body
        .chunk()
        .await
        .map_err(|e| ApiError::manifest_invalid(e.to_string()))?
    {
        if (buf.len() + c.len()) as u64 > max {
            return Err(ApiError::size_invalid(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("manifest exceeds the {max}-byte limit (limits.manifest_max)"),
            ));
        }
        buf.extend_from_slice(&c);
    }
    Ok(buf.freeze())
}
