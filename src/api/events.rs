//! The one place webhook events are made. A handler says what it did ([`Happened`]); after
//! it answers, [`Registry::events_of`] turns that into events if an endpoint takes the
//! action, and `handle` adds who asked and hands them to the notifier. A registry without
//! webhooks, or whose webhooks ignore pulls, builds nothing on a pull.

use super::{Body, Registry, Response};
use crate::notify::{Action, Event};
use crate::oci::{Digest, Reference, RepositoryName, Tag};

/// What a handler did that webhooks may be told of. It borrows the request's names, so
/// recording it costs nothing when nobody listens.
pub(super) enum Happened<'a> {
    BlobPulled {
        repo: &'a RepositoryName,
        digest: &'a Digest,
        size: u64,
    },
    ManifestPulled {
        repo: &'a RepositoryName,
        digest: Digest,
        media_type: String,
        size: u64,
        tag: Option<&'a Tag>,
    },
    BlobPushed {
        repo: &'a RepositoryName,
        digest: Digest,
        size: u64,
    },
    BlobMounted {
        repo: &'a RepositoryName,
        digest: Digest,
        size: u64,
        from: Option<RepositoryName>,
    },
    /// One event per tag (or one untagged).
    ManifestPushed {
        repo: &'a RepositoryName,
        digest: Digest,
        media_type: String,
        size: u64,
        tags: Vec<Tag>,
    },
    BlobDeleted {
        repo: &'a RepositoryName,
        digest: &'a Digest,
    },
    ManifestDeleted {
        repo: &'a RepositoryName,
        reference: &'a Reference,
    },
    RepositoryDeleted {
        repo: &'a RepositoryName,
    },
}

impl Happened<'_> {
    fn action(&self) -> Action {
        match self {
            Happened::BlobPulled { .. } | Happened::ManifestPulled { .. } => Action::Pull,
            Happened::BlobPushed { .. } | Happened::ManifestPushed { .. } => Action::Push,
            Happened::BlobMounted { .. } => Action::Mount,
            Happened::BlobDeleted { .. }
            | Happened::ManifestDeleted { .. }
            | Happened::RepositoryDeleted { .. } => Action::Delete,
        }
    }
}

/// A handler's response and what it did.
pub(super) struct Answer<'a> {
    pub resp: Response<Body>,
    pub happened: Option<Happened<'a>>,
}

impl From<Response<Body>> for Answer<'_> {
    fn from(resp: Response<Body>) -> Self {
        Answer {
            resp,
            happened: None,
        }
    }
}

impl<'a> Answer<'a> {
    pub(super) fn with(resp: Response<Body>, happened: Happened<'a>) -> Self {
        Answer {
            resp,
            happened: Some(happened),
        }
    }
}

impl Registry {
    /// The events `h` makes, if an endpoint takes its action.
    pub(super) fn events_of(&self, h: Happened<'_>) -> Vec<Event> {
        let action = h.action();
        if !self.notifier.as_ref().is_some_and(|n| n.wants(action)) {
            return Vec::new();
        }
        match h {
            Happened::BlobPulled { repo, digest, size } => {
                vec![Event::new(action, repo).blob(digest, size)]
            }
            Happened::BlobPushed { repo, digest, size } => {
                vec![Event::new(action, repo).blob(&digest, size)]
            }
            Happened::ManifestPulled {
                repo,
                digest,
                media_type,
                size,
                tag,
            } => {
                let e = Event::new(action, repo).manifest(&digest, &media_type, size);
                vec![match tag {
                    Some(t) => e.tag(t),
                    None => e,
                }]
            }
            Happened::BlobMounted {
                repo,
                digest,
                size,
                from,
            } => {
                let e = Event::new(action, repo).blob(&digest, size);
                vec![match &from {
                    Some(f) => e.mounted_from(f),
                    None => e,
                }]
            }
            Happened::ManifestPushed {
                repo,
                digest,
                media_type,
                size,
                tags,
            } => {
                // One event per tag, each with its own id.
                let pushed = || Event::new(action, repo).manifest(&digest, &media_type, size);
                if tags.is_empty() {
                    vec![pushed()]
                } else {
                    tags.iter().map(|t| pushed().tag(t)).collect()
                }
            }
            Happened::BlobDeleted { repo, digest } => {
                vec![Event::new(action, repo).digest(digest)]
            }
            Happened::ManifestDeleted { repo, reference } => vec![match reference {
                Reference::Tag(t) => Event::new(action, repo).tag(t),
                Reference::Digest(d) => Event::new(action, repo).digest(d),
            }],
            Happened::RepositoryDeleted { repo } => vec![Event::new(action, repo)],
        }
    }
}
