//! berth as a pull-through cache: `[[proxy.upstreams]]`, each another registry served
//! read-only under a repository prefix here (`hub/library/nginx` is Docker Hub's
//! `library/nginx`).
//!
//! - [`Mirror`] is the configured list and the routing: a local repository name to its
//!   upstream and the upstream's name for it; containerd's `?ns=<host>` and the default
//!   upstream (un-prefixed names not stored here) are mapped onto the prefix by the API
//!   before the permission rules see the name. Only configured upstreams are ever dialled:
//!   a client cannot name a host.
//! - [`cache::PullThrough`] wraps the local store as a [`crate::store::Content`] of its
//!   own: a hit reads locally, a miss asks the upstream and keeps what it answers, checked
//!   against its digest before it becomes visible.
//! - [`remote::Remote`] is the client of one upstream (login, tokens, `Retry-After`).

pub mod cache;
pub(crate) mod remote;

use crate::config::Proxy;
use crate::oci::RepositoryName;
use remote::Remote;
use std::sync::Arc;

/// The configured upstreams.
#[derive(Debug)]
pub struct Mirror {
    upstreams: Vec<Arc<Remote>>,
}

impl Mirror {
    /// The upstreams of `[proxy]`; `None` when there are none. Fails on a password file
    /// or CA that cannot be used.
    pub fn from_config(p: &Proxy) -> Result<Option<Arc<Mirror>>, String> {
        if p.upstreams.is_empty() {
            return Ok(None);
        }
        let upstreams = p
            .upstreams
            .iter()
            .map(|u| Remote::new(u).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Arc::new(Mirror { upstreams })))
    }

    /// The upstream serving the local repository `repo`, and the upstream's name for it.
    pub(crate) fn route(&self, repo: &RepositoryName) -> Option<(&Arc<Remote>, String)> {
        let name = repo.as_str();
        self.upstreams.iter().find_map(|u| {
            let rest = name.strip_prefix(u.prefix.as_str())?.strip_prefix('/')?;
            Some((u, u.remote_name(rest)))
        })
    }

    /// Whether `repo` is a mirrored (read-only) repository.
    pub fn is_mirrored(&self, repo: &RepositoryName) -> bool {
        self.route(repo).is_some()
    }

    /// The upstream named `ns` (containerd's `?ns=`) and the local name of its `repo`.
    pub(crate) fn by_ns(&self, ns: &str, repo: &RepositoryName) -> Option<RepositoryName> {
        let u = self
            .upstreams
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(ns))?;
        Self::under(u, repo)
    }

    /// The local name of `repo` under the default upstream, if there is one.
    pub(crate) fn by_default(&self, repo: &RepositoryName) -> Option<RepositoryName> {
        let u = self.upstreams.iter().find(|u| u.is_default)?;
        Self::under(u, repo)
    }

    /// `repo` of upstream `u` as named here: under its prefix.
    fn under(u: &Remote, repo: &RepositoryName) -> Option<RepositoryName> {
        format!("{}/{}", u.prefix, repo.as_str()).parse().ok()
    }
}
