//! The request path parsed into a typed [`Endpoint`] before any handler runs.

use super::error::{ApiError, OciCode};
use crate::auth::gate::Need;
use crate::auth::Action;
use crate::oci::{Digest, Reference, RepositoryName, UploadId};
use http::Method;

/// Every route of the OCI Distribution API that berth serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
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
    /// `/v2/<name>/manifests/<x>` where `x` is neither a tag nor a digest: a GET finds no
    /// such manifest (404, as the conformance suite expects), a PUT is refused (400).
    BadReference {
        name: RepositoryName,
        reference: String,
        code: OciCode,
        why: String,
    },
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
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Endpoint::Root => "root",
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags(_) => "tags",
            Endpoint::Manifest(..) | Endpoint::BadReference { .. } => "manifest",
            Endpoint::Blob(..) => "blob",
            Endpoint::UploadStart(_) => "upload_start",
            Endpoint::Upload(..) => "upload",
            Endpoint::Referrers(..) => "referrers",
            Endpoint::Token => "token",
            Endpoint::Repository(_) => "repository",
        }
    }

    /// The repository the request is about, if any.
    pub(crate) fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Endpoint::Tags(n)
            | Endpoint::Manifest(n, _)
            | Endpoint::Blob(n, _)
            | Endpoint::UploadStart(n)
            | Endpoint::Upload(n, _)
            | Endpoint::Referrers(n, _)
            | Endpoint::Repository(n)
            | Endpoint::BadReference { name: n, .. } => Some(n),
            Endpoint::Root | Endpoint::Base | Endpoint::Catalog | Endpoint::Token => None,
        }
    }

    /// The same route for another repository (a mirror's local name).
    pub(crate) fn renamed(self, to: RepositoryName) -> Endpoint {
        match self {
            Endpoint::Tags(_) => Endpoint::Tags(to),
            Endpoint::Manifest(_, r) => Endpoint::Manifest(to, r),
            Endpoint::Blob(_, d) => Endpoint::Blob(to, d),
            Endpoint::UploadStart(_) => Endpoint::UploadStart(to),
            Endpoint::Upload(_, id) => Endpoint::Upload(to, id),
            Endpoint::Referrers(_, d) => Endpoint::Referrers(to, d),
            Endpoint::Repository(_) => Endpoint::Repository(to),
            Endpoint::BadReference {
                reference,
                code,
                why,
                ..
            } => Endpoint::BadReference {
                name: to,
                reference,
                code,
                why,
            },
            e @ (Endpoint::Root | Endpoint::Base | Endpoint::Catalog | Endpoint::Token) => e,
        }
    }

    /// The largest body a request to this endpoint may carry (`manifest_max` for
    /// manifests, `blob_max` for uploads); the front door answers 413 early from
    /// `Content-Length` above it.
    pub(crate) fn body_limit(&self, manifest_max: u64, blob_max: Option<u64>) -> Option<u64> {
        match self {
            Endpoint::Manifest(..) | Endpoint::BadReference { .. } => Some(manifest_max),
            Endpoint::UploadStart(_) | Endpoint::Upload(..) => blob_max,
            Endpoint::Root
            | Endpoint::Base
            | Endpoint::Catalog
            | Endpoint::Tags(_)
            | Endpoint::Blob(..)
            | Endpoint::Referrers(..)
            | Endpoint::Token
            | Endpoint::Repository(_) => None,
        }
    }

    /// Parses a request path (without the query).
    pub(crate) fn parse(raw_path: &str) -> Result<Endpoint, ApiError> {
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
            return Ok(match last.parse() {
                Ok(r) => Endpoint::Manifest(name, r),
                Err(e) => Endpoint::BadReference {
                    name,
                    reference: last.to_owned(),
                    code: match e {
                        crate::oci::ParseError::Digest(..) => OciCode::DigestInvalid,
                        _ => OciCode::TagInvalid,
                    },
                    why: e.to_string(),
                },
            });
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

/// An endpoint together with a method it takes: what the request asks to do. The
/// (endpoint × method) match happens here, once; the gate ([`Operation::need`]) and the
/// handlers ([`super::Registry`]'s dispatch) match on this, exhaustively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    Root,
    Base,
    Catalog,
    TagList(RepositoryName),
    /// GET, or HEAD when the flag is set.
    ManifestGet(RepositoryName, Reference, bool),
    ManifestPut(RepositoryName, Reference),
    ManifestDelete(RepositoryName, Reference),
    /// A GET or HEAD of a reference that cannot name a manifest: 404.
    ManifestAbsent(RepositoryName, String),
    /// Any other method with such a reference: 400 with the parse error.
    ReferenceInvalid(RepositoryName, OciCode, String, Method),
    /// GET, or HEAD when the flag is set.
    BlobGet(RepositoryName, Digest, bool),
    BlobDelete(RepositoryName, Digest),
    /// POST: a new upload, a monolithic upload or a mount.
    UploadStart(RepositoryName),
    UploadStatus(RepositoryName, UploadId),
    UploadPatch(RepositoryName, UploadId),
    UploadPut(RepositoryName, UploadId),
    UploadCancel(RepositoryName, UploadId),
    Referrers(RepositoryName, Digest),
    /// The token service (it checks its own method: it answers with its own errors).
    Token,
    RepositoryDelete(RepositoryName),
    /// A method the endpoint does not take: 405, after the gate.
    Unsupported(Endpoint, Method),
}

impl Operation {
    pub(crate) fn of(e: Endpoint, m: &Method) -> Operation {
        let head = m == Method::HEAD;
        match (e, m.clone()) {
            (Endpoint::Root, Method::GET | Method::HEAD) => Operation::Root,
            (Endpoint::Base, Method::GET | Method::HEAD) => Operation::Base,
            (Endpoint::Catalog, Method::GET) => Operation::Catalog,
            (Endpoint::Tags(n), Method::GET) => Operation::TagList(n),
            (Endpoint::Manifest(n, r), Method::GET | Method::HEAD) => {
                Operation::ManifestGet(n, r, head)
            }
            (Endpoint::Manifest(n, r), Method::PUT) => Operation::ManifestPut(n, r),
            (Endpoint::Manifest(n, r), Method::DELETE) => Operation::ManifestDelete(n, r),
            (
                Endpoint::BadReference {
                    name, reference, ..
                },
                Method::GET | Method::HEAD,
            ) => Operation::ManifestAbsent(name, reference),
            (
                Endpoint::BadReference {
                    name, code, why, ..
                },
                m,
            ) => Operation::ReferenceInvalid(name, code, why, m),
            (Endpoint::Blob(n, d), Method::GET | Method::HEAD) => Operation::BlobGet(n, d, head),
            (Endpoint::Blob(n, d), Method::DELETE) => Operation::BlobDelete(n, d),
            (Endpoint::UploadStart(n), Method::POST) => Operation::UploadStart(n),
            (Endpoint::Upload(n, id), Method::GET) => Operation::UploadStatus(n, id),
            (Endpoint::Upload(n, id), Method::PATCH) => Operation::UploadPatch(n, id),
            (Endpoint::Upload(n, id), Method::PUT) => Operation::UploadPut(n, id),
            (Endpoint::Upload(n, id), Method::DELETE) => Operation::UploadCancel(n, id),
            (Endpoint::Referrers(n, d), Method::GET) => Operation::Referrers(n, d),
            (Endpoint::Token, _) => Operation::Token,
            (Endpoint::Repository(n), Method::DELETE) => Operation::RepositoryDelete(n),
            (e, m) => Operation::Unsupported(e, m),
        }
    }

    /// What the caller must be allowed. Deleting needs `delete`, an upload session
    /// (even its status) `push`, reading `pull`. A method an endpoint does not take is
    /// gated as what that method would do there, so the 405 is only told to a caller
    /// who could have done it.
    pub(crate) fn need(&self) -> Need<'_> {
        fn repo(n: &RepositoryName, a: Action) -> Need<'_> {
            Need::Repository(n.as_str(), a)
        }
        match self {
            Operation::Root | Operation::Token => Need::Nothing,
            Operation::Base => Need::Login,
            Operation::Catalog => Need::Catalog,
            Operation::TagList(n)
            | Operation::ManifestGet(n, ..)
            | Operation::ManifestAbsent(n, _)
            | Operation::BlobGet(n, ..)
            | Operation::Referrers(n, _) => repo(n, Action::Pull),
            Operation::ManifestPut(n, _)
            | Operation::UploadStart(n)
            | Operation::UploadStatus(n, _)
            | Operation::UploadPatch(n, _)
            | Operation::UploadPut(n, _) => repo(n, Action::Push),
            Operation::ManifestDelete(n, _)
            | Operation::BlobDelete(n, _)
            | Operation::UploadCancel(n, _)
            | Operation::RepositoryDelete(n) => repo(n, Action::Delete),
            Operation::ReferenceInvalid(n, .., m) if m == Method::DELETE => repo(n, Action::Delete),
            Operation::ReferenceInvalid(n, ..) => repo(n, Action::Push),
            Operation::Unsupported(e, m) => match (e, e.repository()) {
                (Endpoint::Root | Endpoint::Token, _) => Need::Nothing,
                (Endpoint::Base, _) => Need::Login,
                (Endpoint::Catalog, _) => Need::Catalog,
                (_, Some(n)) if m == Method::DELETE => repo(n, Action::Delete),
                (Endpoint::Upload(..), Some(n)) => repo(n, Action::Push),
                (_, Some(n)) if m == Method::GET || m == Method::HEAD => repo(n, Action::Pull),
                (_, Some(n)) => repo(n, Action::Push),
                (_, None) => Need::Nothing,
            },
        }
    }

    /// Whether the operation changes the store (refused while it is read-only).
    pub(crate) fn writes(&self) -> bool {
        match self {
            Operation::ManifestPut(..)
            | Operation::ManifestDelete(..)
            | Operation::BlobDelete(..)
            | Operation::UploadStart(_)
            | Operation::UploadPatch(..)
            | Operation::UploadPut(..)
            | Operation::UploadCancel(..)
            | Operation::RepositoryDelete(_) => true,
            Operation::Root
            | Operation::Base
            | Operation::Catalog
            | Operation::TagList(_)
            | Operation::ManifestGet(..)
            | Operation::ManifestAbsent(..)
            | Operation::BlobGet(..)
            | Operation::UploadStatus(..)
            | Operation::Referrers(..)
            | Operation::Token => false,
            Operation::Unsupported(_, m) | Operation::ReferenceInvalid(.., m) => {
                matches!(
                    *m,
                    Method::PUT | Method::POST | Method::PATCH | Method::DELETE
                )
            }
        }
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
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                // Two hex digits: from_str_radix alone also takes a sign (`%+a` is 0x0a).
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
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
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
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
        let long_tag = format!("/v2/a/manifests/{}", "t".repeat(129));
        assert!(matches!(
            Endpoint::parse(&long_tag),
            Ok(Endpoint::BadReference {
                code: OciCode::TagInvalid,
                ..
            })
        ));
        let bad_digest = Endpoint::parse("/v2/a/manifests/sha256:abc");
        assert!(matches!(
            bad_digest,
            Ok(Endpoint::BadReference {
                code: OciCode::DigestInvalid,
                ..
            })
        ));
        assert_eq!(code("/v2/a/blobs/sha256:abc"), "DIGEST_INVALID");
        assert_eq!(code("/v2/a/blobs/uploads/../../x"), "NOT_FOUND");
        assert_eq!(
            code("/v2/a/blobs/uploads/not-a-uuid"),
            "BLOB_UPLOAD_UNKNOWN"
        );
        assert_eq!(code("/v3/"), "NOT_FOUND");
        assert_eq!(code("/v2/a/%zz"), "NOT_FOUND");
        // Found by the endpoint fuzz target: a sign is no hex digit (`%+a` was 0x0a).
        assert_eq!(code("/v2/a%+2fb/tags/list"), "NOT_FOUND");
        assert_eq!(percent_decode("%+a"), None);
        assert_eq!(percent_decode("%2B%2b+"), Some("++ ".into()));
    }

    #[test]
    fn each_operation_names_what_it_needs() {
        let id = UploadId::new();
        let need = |m: Method, p: &str| {
            let op = Operation::of(Endpoint::parse(p).expect("parses"), &m);
            let need = match op.need() {
                Need::Nothing => "nothing".to_owned(),
                Need::Login => "login".to_owned(),
                Need::Catalog => "catalog".to_owned(),
                Need::Repository(r, a) => format!("{} {r}", a.name()),
            };
            (need, op.writes())
        };
        let blob = format!("/v2/a/blobs/{}", d());
        let upload = format!("/v2/a/blobs/uploads/{id}");
        let cases: Vec<(Method, &str, &str, bool)> = vec![
            (Method::GET, "/", "nothing", false),
            (Method::POST, "/", "nothing", true),
            (Method::GET, "/v2/", "login", false),
            (Method::POST, "/v2/", "login", true),
            (Method::GET, "/v2/_catalog", "catalog", false),
            (Method::GET, "/v2/a/tags/list", "pull a", false),
            (Method::HEAD, "/v2/a/manifests/t", "pull a", false),
            (Method::PUT, "/v2/a/manifests/t", "push a", true),
            (Method::DELETE, "/v2/a/manifests/t", "delete a", true),
            (Method::POST, "/v2/a/manifests/t", "push a", true),
            (Method::GET, "/v2/a/manifests/.INVALID", "pull a", false),
            (Method::HEAD, "/v2/a/manifests/.INVALID", "pull a", false),
            (Method::PUT, "/v2/a/manifests/.INVALID", "push a", true),
            (Method::DELETE, "/v2/a/manifests/.INVALID", "delete a", true),
            (Method::GET, &blob, "pull a", false),
            (Method::DELETE, &blob, "delete a", true),
            (Method::PUT, &blob, "push a", true),
            (Method::POST, "/v2/a/blobs/uploads/", "push a", true),
            (Method::GET, "/v2/a/blobs/uploads/", "pull a", false),
            (Method::GET, &upload, "push a", false),
            (Method::HEAD, &upload, "push a", false),
            (Method::PATCH, &upload, "push a", true),
            (Method::PUT, &upload, "push a", true),
            (Method::DELETE, &upload, "delete a", true),
            (Method::DELETE, "/berth/v1/repositories/a", "delete a", true),
            (Method::GET, "/berth/v1/repositories/a", "pull a", false),
            (Method::GET, "/token", "nothing", false),
        ];
        for (m, p, want, writes) in cases {
            assert_eq!(need(m.clone(), p), (want.to_owned(), writes), "{m} {p}");
        }
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
