//! The on-disk tree, byte for byte the one distribution's `registry:2` uses; the only place
//! that turns names into paths.
//!
//! ```text
//! <root>/docker/registry/v2/
//!   blobs/<alg>/<first two hex>/<hex>/data              the bytes of a blob or manifest
//!   .berth-gc.lock                                      berth only: one collector at a time
//!   .berth-gc.last                                      berth only: empty; mtime = last run
//!   .berth-link.lock                                    berth only: manifest pushes vs. the
//!                                                       collector (store::gc)
//!   .berth-trash/<alg>-<hex>/data                       berth only: a blob being collected
//!   .berth-scrub.last                                   berth only: empty; mtime = last scrub
//!   .berth-quarantine/<alg>-<hex>-<unix time>/data      berth only: a blob whose bytes did
//!                                                       not hash to its digest (fsck)
//!   repositories/<name>/
//!     _layers/<alg>/<hex>/link                          "<alg>:<hex>": blob linked to the repo
//!     _manifests/revisions/<alg>/<hex>/link             manifest revision in the repo
//!     _manifests/tags/<tag>/current/link                what the tag points at now
//!     _manifests/tags/<tag>/index/<alg>/<hex>/link      every digest the tag has pointed at
//!     _uploads/<uuid>/data                              bytes received so far
//!     _uploads/<uuid>/startedat                         RFC 3339 start time
//!     _referrers/<alg>/<subject hex>/<alg>/<hex>/link   berth only: manifests whose subject
//!                                                       is <subject>; registry:2 skips
//!                                                       directories that start with '_'
//! ```
//!
//! Link files hold the digest string with no trailing newline. Paths are relative to the
//! store root; the driver joins them. registry:2 reads only `blobs/` and `repositories/`,
//! so berth's own files beside them do not disturb it.

use crate::oci::{Digest, RepositoryName, Tag, UploadId};
use std::path::PathBuf;

const V2: &str = "docker/registry/v2";

pub(crate) fn blobs() -> PathBuf {
    PathBuf::from(V2).join("blobs")
}

pub(crate) fn blob_data(d: &Digest) -> PathBuf {
    blob_dir(d).join("data")
}

pub(crate) fn blob_dir(d: &Digest) -> PathBuf {
    let hex = d.hex();
    // `hex` is at least 64 lowercase hex characters (Digest's invariant), so the slice holds.
    PathBuf::from(V2)
        .join("blobs")
        .join(d.algorithm().as_str())
        .join(&hex[..2])
        .join(hex)
}

pub(crate) fn repositories() -> PathBuf {
    PathBuf::from(V2).join("repositories")
}

pub(crate) fn repository(name: &RepositoryName) -> PathBuf {
    let mut p = repositories();
    for c in name.components() {
        p.push(c);
    }
    p
}

pub(crate) fn manifests_dir(name: &RepositoryName) -> PathBuf {
    repository(name).join("_manifests")
}

pub(crate) fn layers_dir(name: &RepositoryName) -> PathBuf {
    repository(name).join("_layers")
}

pub(crate) fn layer_link(name: &RepositoryName, d: &Digest) -> PathBuf {
    layer_dir(name, d).join("link")
}

/// What holds a `_layers` link (and goes with it).
pub(crate) fn layer_dir(name: &RepositoryName, d: &Digest) -> PathBuf {
    layers_dir(name).join(d.algorithm().as_str()).join(d.hex())
}

pub(crate) fn revision_link(name: &RepositoryName, d: &Digest) -> PathBuf {
    revision_dir(name, d).join("link")
}

pub(crate) fn revisions_dir(name: &RepositoryName) -> PathBuf {
    manifests_dir(name).join("revisions")
}

pub(crate) fn revision_dir(name: &RepositoryName, d: &Digest) -> PathBuf {
    revisions_dir(name)
        .join(d.algorithm().as_str())
        .join(d.hex())
}

pub(crate) fn tags_dir(name: &RepositoryName) -> PathBuf {
    manifests_dir(name).join("tags")
}

pub(crate) fn tag_dir(name: &RepositoryName, tag: &Tag) -> PathBuf {
    tags_dir(name).join(tag.as_str())
}

pub(crate) fn tag_current_link(name: &RepositoryName, tag: &Tag) -> PathBuf {
    tag_dir(name, tag).join("current").join("link")
}

pub(crate) fn tag_index_dir(name: &RepositoryName, tag: &Tag) -> PathBuf {
    tag_dir(name, tag).join("index")
}

pub(crate) fn tag_index_link(name: &RepositoryName, tag: &Tag, d: &Digest) -> PathBuf {
    tag_index_entry(name, tag, d).join("link")
}

/// What holds one link of a tag's history.
pub(crate) fn tag_index_entry(name: &RepositoryName, tag: &Tag, d: &Digest) -> PathBuf {
    tag_index_dir(name, tag)
        .join(d.algorithm().as_str())
        .join(d.hex())
}

pub(crate) fn uploads_dir(name: &RepositoryName) -> PathBuf {
    repository(name).join("_uploads")
}

pub(crate) fn upload_dir(name: &RepositoryName, id: &UploadId) -> PathBuf {
    uploads_dir(name).join(id.as_str())
}

pub(crate) fn upload_data(name: &RepositoryName, id: &UploadId) -> PathBuf {
    upload_dir(name, id).join("data")
}

pub(crate) fn upload_started_at(name: &RepositoryName, id: &UploadId) -> PathBuf {
    upload_dir(name, id).join("startedat")
}

pub(crate) fn referrers_root(name: &RepositoryName) -> PathBuf {
    repository(name).join("_referrers")
}

pub(crate) fn referrers_dir(name: &RepositoryName, subject: &Digest) -> PathBuf {
    referrers_root(name)
        .join(subject.algorithm().as_str())
        .join(subject.hex())
}

pub(crate) fn referrer_link(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> PathBuf {
    referrer_dir(name, subject, referrer).join("link")
}

/// What holds one referrer link.
pub(crate) fn referrer_dir(name: &RepositoryName, subject: &Digest, referrer: &Digest) -> PathBuf {
    referrers_dir(name, subject)
        .join(referrer.algorithm().as_str())
        .join(referrer.hex())
}

/// Held (try, exclusive) by the one collector running on this store.
pub(crate) fn gc_lock() -> PathBuf {
    PathBuf::from(V2).join(".berth-gc.lock")
}

/// Rewritten (empty) after every collection: its mtime schedules the next one.
pub(crate) fn gc_last_run() -> PathBuf {
    PathBuf::from(V2).join(".berth-gc.last")
}

/// Shared by manifest pushes from their checks to their last link, exclusive by the
/// collector at its start and while it unlinks manifests.
pub(crate) fn link_lock() -> PathBuf {
    PathBuf::from(V2).join(".berth-link.lock")
}

/// Where the collector moves a blob before it decides; same filesystem as `blobs/`.
pub(crate) fn trash() -> PathBuf {
    PathBuf::from(V2).join(".berth-trash")
}

pub(crate) fn trash_blob(d: &Digest) -> PathBuf {
    trash().join(format!("{}-{}", d.algorithm().as_str(), d.hex()))
}

/// Rewritten (empty) after every scrub (`fsck` on the server's schedule).
pub(crate) fn scrub_last_run() -> PathBuf {
    PathBuf::from(V2).join(".berth-scrub.last")
}

/// Where `fsck --repair` moves a corrupt blob; same filesystem as `blobs/`, and outside it,
/// so that neither the collector nor a pull sees it.
pub(crate) fn quarantine() -> PathBuf {
    PathBuf::from(V2).join(".berth-quarantine")
}

/// A corrupt blob's place in [`quarantine`], named by its digest and when it came (Unix
/// seconds, and `attempt` when that name is taken).
pub(crate) fn quarantine_blob(d: &Digest, unix_secs: u64, attempt: u32) -> PathBuf {
    let name = format!("{}-{}-{unix_secs}", d.algorithm().as_str(), d.hex());
    quarantine().join(match attempt {
        0 => name,
        n => format!("{name}.{n}"),
    })
}

/// The digest a name in [`trash`] stands for.
pub(crate) fn trash_digest(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    format!("{alg}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Digest {
        format!("sha256:ab{}", "c".repeat(62))
            .parse()
            .expect("digest")
    }

    #[test]
    fn paths_match_distribution() {
        let n: RepositoryName = "library/alpine".parse().expect("name");
        let hex = format!("ab{}", "c".repeat(62));
        assert_eq!(
            blob_data(&d()),
            PathBuf::from(format!("docker/registry/v2/blobs/sha256/ab/{hex}/data"))
        );
        assert_eq!(
            layer_link(&n, &d()),
            PathBuf::from(format!(
                "docker/registry/v2/repositories/library/alpine/_layers/sha256/{hex}/link"
            ))
        );
        assert_eq!(
            revision_link(&n, &d()),
            PathBuf::from(format!(
                "docker/registry/v2/repositories/library/alpine/_manifests/revisions/sha256/{hex}/link"
            ))
        );
        let t: Tag = "latest".parse().expect("tag");
        assert_eq!(
            tag_current_link(&n, &t),
            PathBuf::from(
                "docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link"
            )
        );
        assert_eq!(
            tag_index_link(&n, &t, &d()),
            PathBuf::from(format!(
                "docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/index/sha256/{hex}/link"
            ))
        );
        assert_eq!(trash_digest("sha256-nope"), None);
        assert_eq!(
            trash_blob(&d())
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(trash_digest),
            Some(d())
        );
    }
}
