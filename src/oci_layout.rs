//! The OCI image layout (image-spec `image-layout.md`): the `oci-layout` marker and the
//! `index.json` that `skopeo copy ... oci:DIR`, `umoci` and `berth export` write, parsed and
//! checked before anything of the layout is trusted.
//!
//! ```text
//! DIR/oci-layout           {"imageLayoutVersion": "1.0.0"}
//! DIR/index.json           an image index: descriptors of the layout's manifests
//! DIR/blobs/<alg>/<hex>    every blob and manifest, by digest (blob_path)
//! ```
//!
//! A descriptor's digest and size are parsed into their types here (a digest that could
//! leave `blobs/` never gets further than this module), embedded `data` must hash to the
//! digest and be `size` bytes, and an `org.opencontainers.image.ref.name` must follow the
//! spec's grammar and name one descriptor only. Reading the files, and checking the blobs
//! themselves against their digests, is the importer's part. This module is a leaf beside
//! [`crate::oci`]: pure functions over bytes.

use crate::oci::{media_type, Digest, RepositoryName, Tag};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The marker file's name, at the top of the layout.
pub(crate) const MARKER_FILE: &str = "oci-layout";
/// The index's name, at the top of the layout.
pub(crate) const INDEX_FILE: &str = "index.json";
/// The one layout version there is.
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";
/// The annotation that names a tag in a layout (`latest`, or `library/alpine:3.19`).
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Larger `index.json` files are refused unread: a real one lists a descriptor per tag.
pub(crate) const INDEX_MAX: usize = 16 << 20;

/// Why a layout's marker or index was refused. The messages name the file and, for a
/// descriptor, its position in `manifests`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LayoutError {
    #[error("{file}: not valid JSON: {message}")]
    Json { file: &'static str, message: String },
    #[error("{file}: {len} bytes, more than the {max} a layout's index may have")]
    TooLarge {
        file: &'static str,
        len: usize,
        max: usize,
    },
    #[error("oci-layout: imageLayoutVersion {0:?} is not supported (1.0.0 is)")]
    Version(String),
    #[error("index.json: schemaVersion must be 2")]
    SchemaVersion,
    #[error("index.json: mediaType {0:?} is not the OCI image index's")]
    MediaType(String),
    #[error("index.json: manifests[{index}]: {what}")]
    Descriptor { index: usize, what: String },
    #[error("index.json: ref name {name:?} names both manifests[{first}] and manifests[{second}]")]
    DuplicateRef {
        name: String,
        first: usize,
        second: usize,
    },
}

/// A layout's `index.json`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    schema_version: u32,
    /// Written by current tools, absent in older layouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A descriptor of `index.json`'s `manifests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    #[serde(serialize_with = "as_text")]
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Embedded content (base64), already checked against `digest` and `size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// Where a multi-platform layout's manifest runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Checks the `oci-layout` marker.
pub(crate) fn parse_marker(bytes: &[u8]) -> Result<(), LayoutError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Marker {
        image_layout_version: String,
    }
    let m: Marker = serde_json::from_slice(bytes).map_err(|e| LayoutError::Json {
        file: MARKER_FILE,
        message: e.to_string(),
    })?;
    if m.image_layout_version != LAYOUT_VERSION {
        return Err(LayoutError::Version(m.image_layout_version));
    }
    Ok(())
}

/// Parses and checks `index.json`.
pub(crate) fn parse_index(bytes: &[u8]) -> Result<Index, LayoutError> {
    if bytes.len() > INDEX_MAX {
        return Err(LayoutError::TooLarge {
            file: INDEX_FILE,
            len: bytes.len(),
            max: INDEX_MAX,
        });
    }
    let raw: RawIndex = serde_json::from_slice(bytes).map_err(|e| LayoutError::Json {
        file: INDEX_FILE,
        message: e.to_string(),
    })?;
    if raw.schema_version != Some(2) {
        return Err(LayoutError::SchemaVersion);
    }
    if let Some(m) = raw
        .media_type
        .as_deref()
        .filter(|m| *m != media_type::OCI_INDEX)
    {
        return Err(LayoutError::MediaType(m.to_owned()));
    }
    let mut manifests = Vec::with_capacity(raw.manifests.len());
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, d) in raw.manifests.iter().enumerate() {
        let bad = |what: String| LayoutError::Descriptor { index, what };
        let checked = d.check().map_err(bad)?;
        if let Some(name) = d.annotations.get(REF_NAME) {
            if let Some(first) = names.insert(name, index) {
                return Err(LayoutError::DuplicateRef {
                    name: name.clone(),
                    first,
                    second: index,
                });
            }
        }
        manifests.push(checked);
    }
    Ok(Index {
        schema_version: 2,
        media_type: raw.media_type,
        manifests,
        annotations: raw.annotations,
    })
}

/// The layout path of a blob: `blobs/sha256/<hex>`. Safe to join to the layout's
/// directory: a [`Digest`] is an algorithm name and hex.
pub(crate) fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

impl Index {
    /// An OCI image index of `manifests`, with its media type.
    pub(crate) fn new(manifests: Vec<Descriptor>) -> Self {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_owned()),
            manifests,
            annotations: BTreeMap::new(),
        }
    }

    /// The index as `index.json` text, compact, as skopeo writes it.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Strings, integers and maps with string keys always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Descriptor {
    /// The descriptor's `org.opencontainers.image.ref.name` (checked when parsed).
    pub(crate) fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).map(String::as_str)
    }

    /// The ref name as berth's repository and tag: `library/alpine:3.19` is both, `latest`
    /// a tag only; `None` when there is no ref name or it is not one of those shapes (a
    /// registry host with a port, a digest, upper case in the repository).
    pub(crate) fn image(&self) -> Option<(Option<RepositoryName>, Tag)> {
        let name = self.ref_name()?;
        match name.rsplit_once(':') {
            Some((repo, tag)) => Some((Some(repo.parse().ok()?), tag.parse().ok()?)),
            None => Some((None, name.parse().ok()?)),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Vec<RawDescriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    /// Signed, so that a negative size gets its own message.
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<Platform>,
    artifact_type: Option<String>,
    data: Option<String>,
}

impl RawDescriptor {
    fn check(&self) -> Result<Descriptor, String> {
        if !valid_media_type(&self.media_type) {
            return Err(format!(
                "mediaType {:?} is not a media type",
                self.media_type
            ));
        }
        if let Some(a) = self
            .artifact_type
            .as_deref()
            .filter(|a| !valid_media_type(a))
        {
            return Err(format!("artifactType {a:?} is not a media type"));
        }
        let digest: Digest = self.digest.parse().map_err(|e| format!("{e}"))?;
        let size =
            u64::try_from(self.size).map_err(|_| format!("size {} is negative", self.size))?;
        if let Some(name) = self.annotations.get(REF_NAME) {
            if !valid_ref_name(name) {
                return Err(format!(
                    "{REF_NAME} {name:?} does not follow the image layout's grammar"
                ));
            }
        }
        if let Some(data) = &self.data {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| "data is not base64".to_owned())?;
            if bytes.len() as u64 != size {
                return Err(format!(
                    "data is {} bytes but size says {size}",
                    bytes.len()
                ));
            }
            if Digest::of(digest.algorithm(), &bytes) != digest {
                return Err(format!("data does not hash to {digest}"));
            }
        }
        Ok(Descriptor {
            media_type: self.media_type.clone(),
            digest,
            size,
            urls: self.urls.clone(),
            annotations: self.annotations.clone(),
            platform: self.platform.clone(),
            artifact_type: self.artifact_type.clone(),
            data: self.data.clone(),
        })
    }
}

/// RFC 6838's `type "/" subtype`, each a restricted-name (suffixes like `+json` included;
/// parameters are not part of a descriptor's media type).
fn valid_media_type(m: &str) -> bool {
    let restricted = |s: &str| {
        let b = s.as_bytes();
        (1..=127).contains(&b.len())
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(c))
    };
    m.split_once('/')
        .is_some_and(|(t, s)| restricted(t) && restricted(s))
}

/// The image layout's ref grammar:
/// `component ("/" component)*`, `component ::= alphanum (separator alphanum)*`,
/// `alphanum ::= [A-Za-z0-9]+`, `separator ::= [-._:@+] | "--"`.
fn valid_ref_name(name: &str) -> bool {
    name.split('/').all(|component| {
        let b = component.as_bytes();
        let mut i = 0;
        loop {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i == start {
                return false;
            }
            if i == b.len() {
                return true;
            }
            if b[i..].starts_with(b"--") {
                i += 2;
            } else if b"-._:@+".contains(&b[i]) {
                i += 1;
            } else {
                return false;
            }
        }
    })
}

fn as_text<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:848086e7861a1afb34871d6f6f82f6ae5d19def2237281f07d573a48a9994390";
    const D2: &str = "sha256:3a1b0a55d3f8fe56ebcbd708af7b57d7900632099ffac06fc219b20246240fcb";

    fn index(manifests: &str) -> String {
        format!(r#"{{"schemaVersion":2,"manifests":[{manifests}]}}"#)
    }

    fn descriptor(digest: &str, extra: &str) -> String {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":192{extra}}}"#
        )
    }

    #[test]
    fn marker() {
        assert_eq!(parse_marker(br#"{"imageLayoutVersion":"1.0.0"}"#), Ok(()));
        assert_eq!(
            parse_marker(br#"{"imageLayoutVersion":"2.0.0"}"#),
            Err(LayoutError::Version("2.0.0".into()))
        );
        assert!(matches!(
            parse_marker(b"{}"),
            Err(LayoutError::Json {
                file: "oci-layout",
                ..
            })
        ));
    }

    /// What skopeo 1.9 (`oci:DIR:library/demo:1.0` and `oci:DIR:v1`) and umoci 0.4 write.
    #[test]
    fn skopeo_and_umoci_indexes() {
        let skopeo = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":192,"annotations":{{"org.opencontainers.image.ref.name":"library/demo:1.0"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D2}","size":192,"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
        );
        let idx = parse_index(skopeo.as_bytes()).expect("skopeo's index");
        assert_eq!(idx.manifests.len(), 2);
        let (repo, tag) = idx.manifests[0].image().expect("repo:tag");
        assert_eq!(repo.expect("a repository").as_str(), "library/demo");
        assert_eq!(tag.as_str(), "1.0");
        let (repo, tag) = idx.manifests[1].image().expect("tag");
        assert_eq!((repo, tag.as_str()), (None, "v1"));
        assert_eq!(idx.manifests[1].digest.to_string(), D2);
        assert_eq!(idx.manifests[1].size, 192);
        assert_eq!(
            blob_path(&idx.manifests[0].digest),
            "blobs/sha256/848086e7861a1afb34871d6f6f82f6ae5d19def2237281f07d573a48a9994390"
        );
        // The canonical JSON parses back to the same index.
        assert_eq!(parse_index(&idx.to_json()), Ok(idx));

        let multi = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}],"annotations":{{"a":"b"}}}}"#,
            descriptor(
                D1,
                r#","platform":{"architecture":"arm64","os":"linux","variant":"v8","os.features":["x"]}"#
            ),
            descriptor(
                D2,
                r#","platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"},"unknown":1"#
            ),
        );
        let idx = parse_index(multi.as_bytes()).expect("a multi-platform index");
        let p = idx.manifests[1].platform.as_ref().expect("platform");
        assert_eq!(
            (p.os.as_str(), p.os_version.as_deref()),
            ("windows", Some("10.0.17763.1"))
        );
        assert_eq!(idx.manifests[0].ref_name(), None);
        assert_eq!(idx.manifests[0].image(), None);
        assert_eq!(parse_index(&idx.to_json()), Ok(idx));
    }

    #[test]
    fn embedded_data_is_checked() {
        // "{}" is sha256:44136fa3...
        let good = r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="}"#;
        assert!(parse_index(index(good).as_bytes()).is_ok());
        for (bad, why) in [
            (good.replace("\"size\":2", "\"size\":3"), "bytes but size"),
            (good.replace("e30=", "W10="), "does not hash"),
            (good.replace("e30=", "!!"), "not base64"),
        ] {
            let e = parse_index(index(&bad).as_bytes()).expect_err(why);
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn refusals_name_the_descriptor() {
        let refused = |json: String| parse_index(json.as_bytes()).expect_err("refused");
        let e = refused(index(&format!(
            "{},{}",
            descriptor(D1, ""),
            descriptor("sha256:../../etc", "")
        )));
        assert!(matches!(e, LayoutError::Descriptor { index: 1, .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with("index.json: manifests[1]: invalid digest"));
        let e = refused(index(&descriptor(D1, "").replace("192", "-1")));
        assert!(e.to_string().contains("size -1 is negative"), "{e}");
        for bad in [
            index(&descriptor(D1, "").replace("192", "1.5")),
            index(&descriptor(D1, "").replace(
                r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                "",
            )),
            r#"{"schemaVersion":2}"#.to_owned(),
            "[]".to_owned(),
        ] {
            assert!(matches!(
                refused(bad),
                LayoutError::Json {
                    file: "index.json",
                    ..
                }
            ));
        }
        assert_eq!(
            refused(
                index(&descriptor(D1, "")).replace(r#""schemaVersion":2"#, r#""schemaVersion":1"#)
            ),
            LayoutError::SchemaVersion
        );
        assert_eq!(
            refused(index(&descriptor(D1, "")).replace(r#""schemaVersion":2,"#, "")),
            LayoutError::SchemaVersion
        );
        let docker_list = index(&descriptor(D1, "")).replacen(
            "{",
            r#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","#,
            1,
        );
        assert!(matches!(refused(docker_list), LayoutError::MediaType(_)));
        assert!(refused(index(
            &descriptor(D1, "").replace("application/vnd.oci.image.manifest.v1+json", "nonsense")
        ))
        .to_string()
        .contains("not a media type"));
        for name in ["", "a//b", "-a", "a-", "a b", "a:", "ä", "a---b"] {
            let d = descriptor(D1, &format!(r#","annotations":{{"{REF_NAME}":"{name}"}}"#));
            assert!(
                refused(index(&d)).to_string().contains("grammar"),
                "ref name {name:?}"
            );
        }
        let tagged = |t: &str| descriptor(D1, &format!(r#","annotations":{{"{REF_NAME}":"{t}"}}"#));
        assert_eq!(
            refused(index(&format!(
                "{},{},{}",
                tagged("a"),
                tagged("b"),
                tagged("a")
            ))),
            LayoutError::DuplicateRef {
                name: "a".into(),
                first: 0,
                second: 2
            }
        );
        let platform = descriptor(D1, r#","platform":{"os":"linux"}"#);
        assert!(matches!(
            refused(index(&platform)),
            LayoutError::Json { .. }
        ));
        let huge = vec![b' '; INDEX_MAX + 1];
        assert!(matches!(
            parse_index(&huge),
            Err(LayoutError::TooLarge { .. })
        ));
    }

    #[test]
    fn ref_names_follow_the_spec_grammar() {
        for ok in [
            "latest",
            "v1.0",
            "library/demo:1.0",
            "registry.example:5000/a/b:c",
            "a--b",
            "a@sha256:abc",
            "A+b_c",
        ] {
            assert!(valid_ref_name(ok), "{ok}");
        }
        let d = |name: &str| Descriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: D1.parse().expect("digest"),
            size: 1,
            urls: vec![],
            annotations: BTreeMap::from([(REF_NAME.to_owned(), name.to_owned())]),
            platform: None,
            artifact_type: None,
            data: None,
        };
        // Valid ref names that are not a berth repository and tag.
        assert_eq!(d("registry.example:5000/a:b").image(), None);
        assert_eq!(d("Upper/case:tag").image(), None);
    }
}
