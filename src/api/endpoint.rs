//! The request path parsed into a typed [`Endpoint`] before any handler runs.

use super::error::{ApiError, OciCode};
use crate::oci::{Digest, Reference, RepositoryName, UploadId};

/// Every route of the OCI Distribution API that berth serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /`: health checks.
    Root,
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepositoryName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepositoryName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepositoryName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepositoryName, UploadId),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, Digest),
    /// `/token`: the built-in token service (token auth only).
    Token,
    /// `/berth/v1/repositories/<name>`: berth's admin API (DELETE a whole repository).
    Repository(RepositoryName),
}

impl Endpoint {
    /// A short name for logs and spans.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Root => "root",
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags(_) => "tags",
            Endpoint::Manifest(..) => "manifest",
            Endpoint::Blob(..) => "blob",
            Endpoint::UploadStart(_) => "upload_start",
            Endpoint::Upload(..) => "upload",
            Endpoint::Referrers(..) => "referrers",
            Endpoint::Token => "token",
            Endpoint::Repository(_) => "repository",
        }
    }

    /// The repository the request is about, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Endpoint::Tags(n)
            | Endpoint::Manifest(n, _)
            | Endpoint::Blob(n, _)
            | Endpoint::UploadStart(n)
            | Endpoint::Upload(n, _)
            | Endpoint::Referrers(n, _)
            | Endpoint::Repository(n) => Some(n),
            Endpoint::Root | Endpoint::Base | Endpoint::Catalog | Endpoint::Token => None,
        }
    }

    /// Parses a request path (without the query).
    pub fn parse(raw_path: &str) -> Result<Endpoint, ApiError> {
        let decoded;
        let path = if raw_path.contains('%') {
            decoded = percent_decode(raw_path).ok_or_else(not_found)?;
            decoded.as_str()
        } else {
            raw_path
        };
        if path == "/" {
            return Ok(Endpoint::Root);
        }
        if path == "/token" {
            return Ok(Endpoint::Token);
        }
        if let Some(name) = path.strip_prefix("/berth/v1/repositories/") {
            return Ok(Endpoint::Repository(name_of(name.trim_end_matches('/'))?));
        }
        let Some(rest) = path.strip_prefix("/v2") else {
            return Err(not_found());
        };
        if rest.is_empty() || rest == "/" {
            return Ok(Endpoint::Base);
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return Err(not_found());
        };
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Endpoint::Tags(name_of(name)?));
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Ok(Endpoint::UploadStart(name_of(name)?));
        }
        let (prefix, last) = rest.rsplit_once('/').ok_or_else(not_found)?;
        if let Some(name) = prefix.strip_suffix("/blobs/uploads") {
            let id = last.parse().map_err(|_| ApiError::upload_unknown())?;
            return Ok(Endpoint::Upload(name_of(name)?, id));
        }
        if let Some(name) = prefix.strip_suffix("/blobs") {
            let d = last
                .parse()
                .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
            return Ok(Endpoint::Blob(name_of(name)?, d));
        }
        if let Some(name) = prefix.strip_suffix("/manifests") {
            let name = name_of(name)?;
            let r = last.parse().map_err(|e: crate::oci::ParseError| match e {
                crate::oci::ParseError::Digest(..) => ApiError::digest_invalid(e.to_string()),
                _ => ApiError::new(OciCode::TagInvalid, e.to_string()),
            })?;
            return Ok(Endpoint::Manifest(name, r));
        }
        if let Some(name) = prefix.strip_suffix("/referrers") {
            let d = last
                .parse()
                .map_err(|e: crate::oci::ParseError| ApiError::digest_invalid(e.to_string()))?;
            return Ok(Endpoint::Referrers(name_of(name)?, d));
        }
        Err(not_found())
    }
}

fn name_of(s: &str) -> Result<RepositoryName, ApiError> {
    s.parse()
        .map_err(|e: crate::oci::ParseError| ApiError::name_invalid(e.to_string()))
}

fn not_found() -> ApiError {
    ApiError::new(OciCode::NotFound, "no such endpoint")
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query string's `key=value` pairs, decoded, in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn routes() {
        let ok = |p: &str| Endpoint::parse(p).unwrap_or_else(|e| panic!("{p}: {e:?}"));
        assert_eq!(ok("/"), Endpoint::Root);
        assert_eq!(ok("/v2/"), Endpoint::Base);
        assert_eq!(ok("/v2"), Endpoint::Base);
        assert_eq!(ok("/v2/_catalog"), Endpoint::Catalog);
        assert!(matches!(ok("/v2/a/b/tags/list"), Endpoint::Tags(n) if n.as_str() == "a/b"));
        assert!(matches!(
            ok("/v2/a/manifests/latest"),
            Endpoint::Manifest(..)
        ));
        assert!(matches!(
            ok(&format!("/v2/a/manifests/{}", d())),
            Endpoint::Manifest(_, Reference::Digest(_))
        ));
        assert!(matches!(
            ok(&format!("/v2/a/blobs/{}", d())),
            Endpoint::Blob(..)
        ));
        assert!(matches!(
            ok(&format!("/v2/a/blobs/{}", d().replace(':', "%3A"))),
            Endpoint::Blob(..)
        ));
        assert!(matches!(
            ok("/v2/a/blobs/uploads/"),
            Endpoint::UploadStart(_)
        ));
        assert!(matches!(
            ok("/v2/a/blobs/uploads"),
            Endpoint::UploadStart(_)
        ));
        let id = UploadId::new();
        assert!(matches!(
            ok(&format!("/v2/a/blobs/uploads/{id}")),
            Endpoint::Upload(..)
        ));
        assert!(matches!(
            ok(&format!("/v2/a/referrers/{}", d())),
            Endpoint::Referrers(..)
        ));
        // A repository may itself be named like a route segment.
        assert!(
            matches!(ok("/v2/x/blobs/manifests/latest"), Endpoint::Manifest(n, _) if n.as_str() == "x/blobs")
        );
    }

    #[test]
    fn bad_paths_are_client_errors() {
        let code = |p: &str| {
            Endpoint::parse(p)
                .map(|_| "ok")
                .unwrap_or_else(|e| e.code.as_str())
        };
        assert_eq!(code("/v2/../etc/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/%2e%2e/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/A/manifests/latest"), "NAME_INVALID");
        assert_eq!(
            code(&format!("/v2/{}/manifests/latest", "a".repeat(256))),
            "NAME_INVALID"
        );
        assert_eq!(
            code(&format!("/v2/a/manifests/{}", "t".repeat(129))),
            "TAG_INVALID"
        );
        assert_eq!(code("/v2/a/blobs/sha256:abc"), "DIGEST_INVALID");
        assert_eq!(code("/v2/a/blobs/uploads/../../x"), "NOT_FOUND");
        assert_eq!(
            code("/v2/a/blobs/uploads/not-a-uuid"),
            "BLOB_UPLOAD_UNKNOWN"
        );
        assert_eq!(code("/v3/"), "NOT_FOUND");
        assert_eq!(code("/v2/a/%zz"), "NOT_FOUND");
    }

    #[test]
    fn query() {
        let q = query_pairs(Some("tag=a&tag=b&digest=sha256%3Aab&empty"));
        assert_eq!(q[0], ("tag".into(), "a".into()));
        assert_eq!(q[1], ("tag".into(), "b".into()));
        assert_eq!(q[2], ("digest".into(), "sha256:ab".into()));
        assert_eq!(q[3], ("empty".into(), "".into()));
    }
}
