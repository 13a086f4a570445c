//! Talking to other HTTP servers. [`client`] is berth's one outbound HTTP client: webhook
//! delivery ([`crate::notify`]) sends its POSTs with it, and a pull-through cache is to fetch
//! an upstream registry's manifests and blobs with it.

pub mod client;

pub use client::{Client, ClientError, ClientOptions, RequestBody, Response, Roots};
