//! The contract between the front door and every handler: a request body read chunk by
//! chunk as it arrives ([`RequestBody`]), and a response [`Body`] that is empty, in
//! memory, a slice of a local file, or a stream from anywhere.
//!
//! The front door decides how each travels: a [`Body::File`] over plain HTTP/1.1 goes out
//! zero-copy (sendfile); a file over TLS or HTTP/2 is read as a [`Body::Stream`]; a stream
//! (an object store's GET, an upstream registry's blob) is written chunk by chunk as it
//! comes. A handler that wants the client to fetch bytes elsewhere (an object store's
//! presigned URL) answers a redirect with [`Body::Empty`]; the front door needs nothing
//! special for that.
//!
//! A leaf: it names nothing else of berth (the store implements [`BlobFile`]'s reading).

use bytes::Bytes;
use std::pin::Pin;

/// Some bytes of an open blob, on their way to a client: either read into memory chunk by
/// chunk (`into_stream`, which the store implements with its read-ahead), or handed to the
/// kernel whole by the front door's zero-copy path (plain HTTP/1.1), which uses the fields
/// directly.
#[derive(Debug)]
pub struct BlobFile {
    pub file: std::fs::File,
    pub path: std::path::PathBuf,
    /// The first byte to send.
    pub offset: u64,
    /// How many bytes to send.
    pub len: u64,
}

/// Bytes produced one chunk at a time; an error ends the response (the connection is
/// dropped, so a client never takes a short body for a whole one).
pub(crate) type BodyStream =
    Pin<Box<dyn futures_core::Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// A response body.
pub enum Body {
    Empty,
    Full(Bytes),
    /// Bytes of a local file; the length is in `Content-Length`. Kept apart from
    /// [`Body::Stream`] so the front door can send it zero-copy.
    File(BlobFile),
    /// Bytes from anywhere; the length, when known, is in `Content-Length`.
    Stream(BodyStream),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::File(b) => write!(f, "Body::File({} bytes)", b.len),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the request body: {0}")]
pub struct BodyError(pub String);

/// A request body, read chunk by chunk as it arrives.
#[async_trait::async_trait]
pub trait RequestBody: Send {
    /// The next chunk, or `None` at the end.
    async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError>;
}

/// An in-memory body, for tests and for callers that already hold the bytes.
pub struct FullBody(pub Option<Bytes>);

#[async_trait::async_trait]
impl RequestBody for FullBody {
    async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        Ok(self.0.take().filter(|b| !b.is_empty()))
    }
}

/// The next chunk of a stream (`None` at its end), without pulling in a combinator crate.
pub(crate) async fn next_chunk(s: &mut BodyStream) -> Option<std::io::Result<Bytes>> {
    std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_yields_its_chunks_then_ends() {
        let chunks = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))];
        let mut s: BodyStream = Box::pin(futures_util::stream::iter(chunks));
        let mut got = Vec::new();
        while let Some(c) = next_chunk(&mut s).await {
            got.extend_from_slice(&c.expect("chunk"));
        }
        assert_eq!(got, b"abc");
    }

    #[tokio::test]
    async fn full_body_is_one_chunk_and_empty_is_none() {
        let mut b = FullBody(Some(Bytes::from_static(b"xyz")));
        assert_eq!(
            b.chunk().await.expect("chunk").as_deref(),
            Some(&b"xyz"[..])
        );
        assert!(b.chunk().await.expect("end").is_none());
        let mut e = FullBody(Some(Bytes::new()));
        assert!(e.chunk().await.expect("end").is_none());
    }
}
