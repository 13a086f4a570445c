//! What the store's own tests (`gc`, `fsck`) build stores from: blobs uploaded and
//! manifests linked as a push does, and manifest bodies.

use super::Store;
use crate::oci::{Algorithm, Digest, RepositoryName, Tag};
use bytes::Bytes;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub(crate) fn repo(s: &str) -> RepositoryName {
    s.parse().expect("name")
}

pub(crate) fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

/// Uploads `bytes` into `r` (one request) and commits it under its `alg` digest.
pub(crate) async fn blob_alg(
    store: &Store,
    r: &RepositoryName,
    bytes: &[u8],
    alg: Algorithm,
) -> Digest {
    let id = store.upload_start(r).await.expect("start");
    let mut w = store.upload_writer(r, &id, 0).await.expect("writer");
    w.write(Bytes::copy_from_slice(bytes)).await.expect("write");
    w.finish().await.expect("finish");
    let d = Digest::of(alg, bytes);
    store.upload_commit(r, &id, &d).await.expect("commit");
    d
}

/// As [`blob_alg`] with SHA-256.
pub(crate) async fn blob(store: &Store, r: &RepositoryName, bytes: &[u8]) -> Digest {
    blob_alg(store, r, bytes, Algorithm::Sha256).await
}

/// Stores and links a manifest as a push does (its subject recorded as a referrer),
/// tagged `t` if given.
pub(crate) async fn manifest(
    store: &Store,
    r: &RepositoryName,
    body: &serde_json::Value,
    t: Option<&str>,
) -> Digest {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("json"));
    let d = Digest::of(Algorithm::Sha256, &bytes);
    store.blob_put_small(&d, bytes).await.expect("put");
    store.manifest_link(r, &d).await.expect("link");
    if let Some(s) = body["subject"]["digest"]
        .as_str()
        .and_then(|s| s.parse::<Digest>().ok())
    {
        store.referrer_add(r, &s, &d).await.expect("referrer");
    }
    if let Some(t) = t {
        store.tag_set(r, &tag(t), &d).await.expect("tag");
    }
    d
}

pub(crate) fn desc(media_type: &str, d: &Digest) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": d.to_string(), "size": 1 })
}

/// An image manifest naming `config` and `layers`, with a `subject` if given.
pub(crate) fn image(
    config: &Digest,
    layers: &[&Digest],
    subject: Option<&Digest>,
) -> serde_json::Value {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers
            .iter()
            .map(|l| desc("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        m["subject"] = desc(OCI_MANIFEST, s);
    }
    m
}

/// An index naming `children` (image manifests).
pub(crate) fn index(children: &[&Digest]) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|c| desc(OCI_MANIFEST, c)).collect::<Vec<_>>(),
    })
}
