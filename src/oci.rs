//! The nouns of the OCI Distribution Spec, parsed once at the edge.
//!
//! Every string that arrives from a client and later takes part in a storage path passes
//! through one of these types first: [`RepositoryName`], [`Tag`], [`Reference`], [`Digest`]
//! and [`UploadId`]. Their grammars are the spec's, so a value of one of these types can never
//! hold `..`, a slash where none belongs, or a digest of the wrong length (a raw digest used
//! as a path gave Ollama a remote code execution, CVE-2024-37032).

use std::fmt;
use std::str::FromStr;

/// Longest repository name the spec lets a registry accept.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag in the spec's grammar.
pub const MAX_TAG_LEN: usize = 128;

/// Media types the registry understands.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// The artifact manifest from the 1.1 release candidates, still pushed by some tools.
    pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_LAYER_NONDISTRIBUTABLE: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_LAYER_NONDISTRIBUTABLE_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// A layer that lives elsewhere by its media type (non-distributable, foreign): a
    /// registry need not hold its bytes.
    pub fn is_foreign_layer(media_type: &str) -> bool {
        [
            OCI_LAYER_NONDISTRIBUTABLE,
            OCI_LAYER_NONDISTRIBUTABLE_GZIP,
            OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
            DOCKER_FOREIGN_LAYER,
        ]
        .contains(&media_type)
    }
}

/// Why a wire string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid repository name {0:?}: {1}")]
    Name(String, &'static str),
    #[error("invalid tag {0:?}: tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
    #[error("invalid digest {0:?}: {1}")]
    Digest(String, &'static str),
    #[error("invalid upload id {0:?}")]
    UploadId(String),
}

/// A repository name such as `library/alpine`, as the spec's grammar allows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components, each a valid path component.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for RepositoryName {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ParseError::Name(s.to_owned(), why);
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(err("longer than 255 characters"));
        }
        for component in s.split('/') {
            if !valid_name_component(component) {
                return Err(err("components are lowercase letters and digits joined by '.', '_', '__' or dashes"));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_name_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // one run of [a-z0-9]+
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // one separator
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
        if !first_ok || !rest_ok || b.len() > MAX_TAG_LEN {
            return Err(ParseError::Tag(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hash functions a digest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest such as `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part: lowercase hex of the right length for the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Builds a digest from a finished hash.
    pub fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Self {
        Self {
            algorithm,
            hex: hex::encode(hash),
        }
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => Self::from_hash(algorithm, &sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => Self::from_hash(algorithm, &sha2::Sha512::digest(bytes)),
        }
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ParseError::Digest(s.to_owned(), why);
        let (alg, hex) = s.split_once(':').ok_or_else(|| err("missing ':'"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(err("unsupported algorithm (sha256 and sha512 are)")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(err("wrong length for the algorithm"));
        }
        if !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(err("the encoded part must be lowercase hex"));
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse().map(Reference::Digest)
        } else {
            s.parse().map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// An upload session id: a lowercase UUID, as distribution makes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for UploadId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = b.len() == 36
            && b.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::UploadId(s.to_owned()))
        }
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec_grammar() {
        let good = [
            "a",
            "library/alpine",
            "a.b/c_d/e__f/g-h/i---j",
            "0/1/2",
            &"a".repeat(255),
        ];
        for n in good {
            assert!(n.parse::<RepositoryName>().is_ok(), "{n} should parse");
        }
        let bad = [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "a___b",
            "-a",
            "a-",
            "a.",
            "a..b",
            "a b",
            "a%2fb",
            "_a",
            &"a".repeat(256),
        ];
        for n in bad {
            assert!(n.parse::<RepositoryName>().is_err(), "{n:?} should fail");
        }
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for t in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(t.parse::<Tag>().is_ok(), "{t}");
        }
        for t in ["", ".x", "-x", "a/b", "a:b", "..", &"a".repeat(129)] {
            assert!(t.parse::<Tag>().is_err(), "{t:?}");
        }
    }

    #[test]
    fn digests_check_algorithm_and_length() {
        let h = "a".repeat(64);
        let d: Digest = format!("sha256:{h}").parse().expect("valid digest");
        assert_eq!(d.hex(), h);
        assert_eq!(d.to_string(), format!("sha256:{h}"));
        assert!(format!("sha512:{}", "0".repeat(128))
            .parse::<Digest>()
            .is_ok());
        for bad in [
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "g".repeat(64)),
            format!("md5:{}", "a".repeat(32)),
            format!("sha512:{}", "a".repeat(64)),
            "sha256".to_owned(),
            format!("sha256:../{}", "a".repeat(61)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_of_known_input() {
        assert_eq!(
            Digest::of(Algorithm::Sha256, b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "b".repeat(64));
        assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
        assert!("sha256:short".parse::<Reference>().is_err());
    }

    #[test]
    fn upload_ids_are_uuids() {
        for _ in 0..100 {
            let id = UploadId::new();
            assert_eq!(id.as_str().parse::<UploadId>(), Ok(id.clone()));
        }
        for bad in ["", "../../etc", "ABCDEFAB-0000-4000-8000-000000000000", "x"] {
            assert!(bad.parse::<UploadId>().is_err(), "{bad}");
        }
    }
}
