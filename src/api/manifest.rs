//! Manifests as the registry sees them: which kind, what they reference, their subject.
//!
//! The stored bytes are never rewritten; this module only reads them to validate a push,
//! decide the media type of a pull and build referrer descriptors.

use crate::oci::{media_type as mt, Digest};
use serde::Deserialize;
use std::collections::BTreeMap;

/// What a manifest body says about itself.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: Option<i64>,
    pub media_type: Option<String>,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Option<Vec<Descriptor>>,
    pub manifests: Option<Vec<Descriptor>>,
    /// Members of the 1.1 release candidates' artifact manifest.
    pub blobs: Option<Vec<Descriptor>>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub urls: Vec<String>,
    /// Parsed only to refuse an index entry whose platform lacks `architecture`/`os`.
    #[allow(dead_code)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
}

/// The kinds of manifest berth accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    OciManifest,
    OciIndex,
    OciArtifact,
    DockerManifest,
    DockerList,
}

impl Kind {
    pub(crate) fn media_type(self) -> &'static str {
        match self {
            Kind::OciManifest => mt::OCI_MANIFEST,
            Kind::OciIndex => mt::OCI_INDEX,
            Kind::OciArtifact => mt::OCI_ARTIFACT,
            Kind::DockerManifest => mt::DOCKER_MANIFEST,
            Kind::DockerList => mt::DOCKER_LIST,
        }
    }

    pub(crate) fn is_index(self) -> bool {
        matches!(self, Kind::OciIndex | Kind::DockerList)
    }

    fn from_media_type(m: &str) -> Option<Kind> {
        Some(match m {
            mt::OCI_MANIFEST => Kind::OciManifest,
            mt::OCI_INDEX => Kind::OciIndex,
            mt::OCI_ARTIFACT => Kind::OciArtifact,
            mt::DOCKER_MANIFEST => Kind::DockerManifest,
            mt::DOCKER_LIST => Kind::DockerList,
            _ => return None,
        })
    }
}

/// Why a pushed manifest was refused (all become `MANIFEST_INVALID`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("Docker schema 1 manifests are not supported; push with a current client")]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    Mismatch { header: String, body: String },
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("{0}")]
    Structure(&'static str),
    #[error("descriptor digest {0:?} is invalid")]
    Digest(String),
    #[error("descriptor size {0} is negative")]
    Size(i64),
}

/// A manifest that passed the structural checks, with the kind it was stored as.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub kind: Kind,
    pub body: Manifest,
}

impl Parsed {
    /// Parses a pushed manifest, checking it against the request's `Content-Type`.
    pub(crate) fn from_push(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, Invalid> {
        let body: Manifest =
            serde_json::from_slice(bytes).map_err(|e| Invalid::Json(e.to_string()))?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| {
                !c.is_empty() && *c != "application/json" && *c != "application/octet-stream"
            });
        if [Some(mt::DOCKER_SCHEMA1), Some(mt::DOCKER_SCHEMA1_SIGNED)].contains(&header)
            || body.schema_version == Some(1)
        {
            return Err(Invalid::Schema1);
        }
        if let (Some(h), Some(b)) = (header, body.media_type.as_deref()) {
            if h != b {
                return Err(Invalid::Mismatch {
                    header: h.to_owned(),
                    body: b.to_owned(),
                });
            }
        }
        let kind = match body.media_type.as_deref().or(header) {
            Some(m) => Kind::from_media_type(m).ok_or_else(|| Invalid::MediaType(m.to_owned()))?,
            None => infer(&body),
        };
        if body.schema_version != Some(2) && kind != Kind::OciArtifact {
            return Err(Invalid::SchemaVersion);
        }
        let p = Parsed { kind, body };
        p.check_structure()?;
        Ok(p)
    }

    /// Parses stored bytes (already validated once, or written by another registry).
    pub(crate) fn from_stored(bytes: &[u8]) -> Option<Parsed> {
        let body: Manifest = serde_json::from_slice(bytes).ok()?;
        let kind = match body.media_type.as_deref() {
            Some(m) => Kind::from_media_type(m)?,
            None => infer(&body),
        };
        Some(Parsed { kind, body })
    }

    fn check_structure(&self) -> Result<(), Invalid> {
        let b = &self.body;
        match self.kind {
            Kind::OciManifest | Kind::DockerManifest => {
                if b.config.is_none() {
                    return Err(Invalid::Structure(
                        "an image manifest needs a config descriptor",
                    ));
                }
                if b.layers.is_none() {
                    return Err(Invalid::Structure("an image manifest needs a layers array"));
                }
                if b.manifests.is_some() {
                    return Err(Invalid::Structure(
                        "an image manifest cannot list manifests",
                    ));
                }
            }
            Kind::OciIndex | Kind::DockerList => {
                if b.manifests.is_none() {
                    return Err(Invalid::Structure("an index needs a manifests array"));
                }
                if b.config.is_some() || b.layers.is_some() {
                    return Err(Invalid::Structure("an index cannot have config or layers"));
                }
            }
            Kind::OciArtifact => {}
        }
        for d in self.descriptors().chain(b.subject.iter()) {
            d.digest
                .parse::<Digest>()
                .map_err(|_| Invalid::Digest(d.digest.clone()))?;
            if d.size < 0 {
                return Err(Invalid::Size(d.size));
            }
        }
        Ok(())
    }

    /// Every descriptor the manifest references (not its subject).
    pub(crate) fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        let b = &self.body;
        b.config
            .iter()
            .chain(b.layers.iter().flatten())
            .chain(b.blobs.iter().flatten())
            .chain(b.manifests.iter().flatten())
    }

    /// The subject's digest, if the manifest has a valid one.
    pub(crate) fn subject(&self) -> Option<Digest> {
        self.body
            .subject
            .as_ref()
            .and_then(|s| s.digest.parse().ok())
    }

    /// The artifact type a referrers response reports: `artifactType`, else the config's
    /// media type (for image manifests).
    pub(crate) fn artifact_type(&self) -> Option<String> {
        self.body.artifact_type.clone().or_else(|| {
            self.body
                .config
                .as_ref()
                .filter(|_| !self.kind.is_index())
                .map(|c| c.media_type.clone())
        })
    }
}

impl Descriptor {
    /// Foreign (non-distributable) layers live elsewhere: their presence is not required.
    pub(crate) fn is_foreign(&self) -> bool {
        !self.urls.is_empty() || mt::is_foreign_layer(&self.media_type)
    }
}

/// OCI image manifests may omit `mediaType`; decide by shape, as distribution does.
fn infer(b: &Manifest) -> Kind {
    if b.manifests.is_some() {
        Kind::OciIndex
    } else {
        Kind::OciManifest
    }
}

/// Whether an `Accept` header admits `media_type` (no header admits everything).
pub(crate) fn accepts(accept: &[&str], media_type: &str) -> bool {
    if accept.is_empty() {
        return true;
    }
    accept.iter().flat_map(|h| h.split(',')).any(|item| {
        let m = item.split(';').next().unwrap_or("").trim();
        m == media_type || m == "*/*" || m == "application/*"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn image(media: Option<&str>) -> String {
        let mt = media
            .map(|m| format!("\"mediaType\":\"{m}\","))
            .unwrap_or_default();
        format!(
            "{{\"schemaVersion\":2,{mt}\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{D}\",\"size\":2}},\"layers\":[]}}"
        )
    }

    #[test]
    fn kinds() {
        let p = Parsed::from_push(
            image(Some(mt::DOCKER_MANIFEST)).as_bytes(),
            Some(mt::DOCKER_MANIFEST),
        )
        .expect("ok");
        assert_eq!(p.kind, Kind::DockerManifest);
        let p = Parsed::from_push(image(None).as_bytes(), Some(mt::OCI_MANIFEST)).expect("ok");
        assert_eq!(p.kind, Kind::OciManifest);
        let idx = format!("{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"{}\",\"digest\":\"{D}\",\"size\":1}}]}}", mt::OCI_MANIFEST);
        assert_eq!(
            Parsed::from_push(idx.as_bytes(), None).expect("ok").kind,
            Kind::OciIndex
        );
    }

    #[test]
    fn refusals() {
        let bad = |b: &str, ct: Option<&str>| Parsed::from_push(b.as_bytes(), ct).is_err();
        assert!(bad("not json", None));
        assert!(bad(
            &image(Some(mt::OCI_MANIFEST)),
            Some(mt::DOCKER_MANIFEST)
        ));
        assert!(bad(&image(None), Some(mt::OCI_INDEX)));
        assert!(bad(&image(Some("application/x-nope")), None));
        assert!(bad("{\"schemaVersion\":1,\"name\":\"x\"}", None));
        assert!(bad(&image(None).replace(D, "sha256:zz"), None));
        assert!(bad(
            &image(None).replace("\"schemaVersion\":2", "\"schemaVersion\":3"),
            None
        ));
        assert!(bad(&image(None).replace("\"size\":2", "\"size\":-1"), None));
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&[], mt::OCI_INDEX));
        assert!(accepts(
            &["application/vnd.oci.image.index.v1+json, text/plain"],
            mt::OCI_INDEX
        ));
        assert!(accepts(&["*/*"], mt::OCI_INDEX));
        assert!(!accepts(&[mt::DOCKER_MANIFEST], mt::OCI_INDEX));
        assert!(accepts(
            &[mt::DOCKER_MANIFEST, mt::OCI_INDEX],
            mt::OCI_INDEX
        ));
    }
}
