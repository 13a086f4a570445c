//! berth: a container-image registry appliance.
//!
//! The request path, top to bottom: [`frontdoor`] (pingora listeners and the session
//! adapter) → [`api`] (endpoint parsing, handlers, OCI errors) → [`store`] (the
//! distribution layout on a filesystem). [`oci`] holds the spec's nouns; [`config`] reads
//! `appliance.toml`.

pub mod api;
pub mod auth;
pub mod config;
pub mod frontdoor;
pub mod import;
pub mod metrics;
pub mod oci;
pub mod store;
pub mod tls;
