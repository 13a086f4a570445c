//! berth: a container-image registry appliance.
//!
//! The request path, top to bottom: [`frontdoor`] (pingora listeners and the session
//! adapter) → [`api`] (endpoint parsing, handlers, OCI errors) → [`store::Content`] (the
//! storage seam) → [`store::Store`] (the distribution layout on a filesystem). [`oci`]
//! holds the spec's nouns; [`config`] reads `appliance.toml`; [`body`] is the contract
//! between the front door and the handlers; [`upstream`] is the one client for other HTTP
//! servers (webhook endpoints, ACME, S3, upstream registries) and what they answer
//! (`WWW-Authenticate` challenges); `oci_layout` reads OCI image layouts (`oci-layout`, `index.json`).
//!
//! Dependency rules (the module graph and the leaves are checked by
//! `tests/module_graph.rs`, the rest in review):
//! - `oci`, `body`, `config`, `timestamp`, `retry`, `metrics` and `pem` are leaves (they
//!   import only each other); `oci_layout` uses `oci` only; `upstream` uses leaves only.
//!   The module graph has no cycle: `frontdoor` → `api` → `auth` → `tls` → `store` →
//!   `upstream` → `pem`; `notify` → `store`, `upstream`; `api` → `mirror` → `store`,
//!   `upstream` (the pull-through cache: a `Content` over the local store); `airgap` →
//!   `api`, `store`, `oci_layout` (export reads `Content`; import is a client of
//!   `Registry::handle`, so it checks what a push checks); `api` → `ui` → `store`, `auth`
//!   (the web UI renders from `Content` and hands deletes back to the API).
//! - `api` reaches storage only through `store::Content`; it never names `store::fs`,
//!   a path or a file.
//! - `store`'s traits (`Content`, `Driver`) name no `http` type (the S3 driver speaks HTTP
//!   through `upstream` inside `store/s3/`); only `store` touches the registry's disk.
//! - `frontdoor` knows handlers by their `http` types and `body::Body`; of the store it
//!   sees only the open-file types of the zero-copy path (`BlobFile`, in `sendfile.rs`)
//!   and, for the admin listener, `Content`.
//! - `auth::gate` decides access from an operation's `Need` and what the request
//!   presented; it knows neither endpoints nor responses (`api` renders its `Denial`).
//! - `store::Store` and the collector reach the medium only through `store::Driver`; a
//!   new medium passes `store/suite.rs`.
//! - `config` is a leaf: it imports no other module of the crate but the leaves
//!   (`oci`, `timestamp`); every subsystem takes its (already parsed) values from it.
//! - Outbound HTTP goes through `upstream::Client` (TLS always verified, redirects never
//!   followed); `upstream` knows nothing of the registry.
//! - `fuzzing` is the one door the fuzz crate (`fuzz/`) has to the parsers, which stay
//!   `pub(crate)`: thin entry points over bytes, hidden from the docs, used by nothing
//!   else but `tests/fuzz_corpus.rs`.

#![warn(unreachable_pub)]

pub mod airgap;
pub mod api;
pub mod auth;
pub(crate) mod body;
pub mod config;
pub mod frontdoor;
#[doc(hidden)]
pub mod fuzzing;
pub mod import;
pub(crate) mod metrics;
pub mod mirror;
pub mod notify;
pub mod oci;
pub(crate) mod oci_layout;
pub(crate) mod pem;
pub(crate) mod retry;
pub mod store;
pub mod timestamp;
pub mod tls;
pub(crate) mod ui;
pub mod upstream;

/// Runs `task` on a thread of its own with a single-threaded tokio runtime: the
/// background jobs (certificate reloads, ACME, garbage collection, the SIGTERM drain)
/// stay off pingora's request runtimes. `what` names the job in the error logged when
/// the thread or runtime cannot start.
pub fn spawn_background<F, Fut>(name: &str, what: &'static str, task: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task()),
                Err(e) => tracing::error!(error = %e, "{what} is unavailable"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "{what} is unavailable");
    }
}
