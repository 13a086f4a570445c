//! Talking to other HTTP servers. [`client`] is berth's one outbound HTTP client: webhook
//! delivery ([`crate::notify`]) sends its POSTs with it, and a pull-through cache is to fetch
//! an upstream registry's manifests and blobs with it. [`challenge`] reads the
//! `WWW-Authenticate` challenges an upstream answers a 401 with.

pub(crate) mod challenge;
pub mod client;

pub use client::{Client, ClientError, ClientOptions, RequestBody, Response, Roots};

/// For tests that stand up an HTTP/1.1 server by hand.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Read;

    /// One request from `conn`: its head (up to the blank line) and its body, by
    /// `Content-Length`, read exactly, so a pipelined next request stays unread. `None` at
    /// the end of the connection.
    pub(crate) fn read_request(conn: &mut impl Read) -> Option<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        conn.read_exact(&mut body).ok()?;
        Some((head, body))
    }
}
