//! Zero-copy blob responses for plain HTTP/1.1: the response header is written to the
//! connection's socket and the blob follows with sendfile(2), so the kernel moves page-cache
//! pages to the socket with no copy through user space and no buffer in berth. This is what
//! registry:2 (Go's `io.Copy` to a TCP connection) does; streaming through pingora's writer
//! costs a read and a write copy per byte and a few MiB of buffers per transfer.
//!
//! pingora owns the connection and only lends its number (`UniqueID::id` is the raw fd), and
//! this crate forbids `unsafe`, so the socket is duplicated by number with `pidfd_getfd(2)`
//! on our own pidfd, which yields an owned descriptor safely. The duplicate shares the
//! connection's open file (so its `O_NONBLOCK` too) and is registered with the runtime's
//! reactor, so waiting for a slow client costs no thread. sendfile reads the file
//! synchronously, so a slice whose pages are not in the page cache is first read into it on
//! the blocking pool: a cold blob must not stall an async worker.
//!
//! Anything unusual takes the streamed path instead: TLS, HTTP/2, a request body still
//! unread, a kernel or seccomp filter without `pidfd_getfd`, a descriptor that is not a
//! socket. pingora never sees this response, so its session stays clean for keep-alive.

use crate::store::BlobFile;
use crate::store::Prefetch;
use pingora_core::protocols::http::ServerSession;
use rustix::fd::OwnedFd;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::Interest;

/// Bytes handed to one sendfile call (the kernel sends what the socket buffer takes): small
/// enough that one call does not hold an async worker for long.
const SLICE: usize = 1 << 20;
/// The buffer pages of a cold slice are read through.
const SCRATCH: usize = 64 << 10;

/// A duplicate of the session's TCP socket, when the zero-copy path can be used for it.
pub(crate) fn socket_of(session: &mut ServerSession) -> Option<std::net::TcpStream> {
    let h1 = session.as_http1()?;
    if h1.response_written().is_some() || !session.is_body_done() {
        return None;
    }
    let raw = session.stream()?.id();
    let fd =
        rustix::process::pidfd_getfd(own_pidfd()?, raw, rustix::process::PidfdGetfdFlags::empty())
            .map_err(|e| tracing::debug!(error = %e, "pidfd_getfd failed; streaming instead"))
            .ok()?;
    let is_socket = rustix::fs::fstat(&fd)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_socket());
    if !is_socket {
        return None;
    }
    // A TCP socket has an IP address (a Unix socket fails here).
    let tcp = std::net::TcpStream::from(fd);
    tcp.local_addr().is_ok().then_some(tcp)
}

/// This process's pidfd, opened once; `None` (logged once) where the kernel or a seccomp
/// filter refuses it.
fn own_pidfd() -> Option<&'static OwnedFd> {
    static PIDFD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    PIDFD
        .get_or_init(|| {
            let me = rustix::process::getpid();
            match rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::info!(error = %e, "pidfd_open is not available; blobs are streamed without sendfile");
                    None
                }
            }
        })
        .as_ref()
}

/// The HTTP/1.1 response header as it goes on the wire.
pub(crate) fn head(parts: &http::response::Parts, keepalive: bool) -> Vec<u8> {
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(b"HTTP/1.1 ");
    h.extend_from_slice(parts.status.as_str().as_bytes());
    h.push(b' ');
    h.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    h.extend_from_slice(b"\r\n");
    for (name, value) in parts.headers.iter() {
        if name == http::header::CONNECTION || name == http::header::DATE {
            continue;
        }
        h.extend_from_slice(name.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"date: ");
    h.extend_from_slice(pingora_core::protocols::http::date::get_cached_date().as_bytes());
    h.extend_from_slice(if keepalive {
        b"\r\nconnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nconnection: close\r\n\r\n"
    });
    h
}

/// Writes `head`, then the blob's bytes, to `socket`. Waiting for room in the socket is
/// asynchronous (the duplicate is registered with the runtime's reactor) and each wait is
/// bounded by `io_timeout`, so a slow client holds no thread. Slices whose pages are in the
/// page cache are sent on the calling task; a slice that must come from the disk is first
/// read into the page cache on the blocking pool. Returns the body bytes sent (all of
/// them on `Ok`).
pub(crate) async fn send(
    socket: std::net::TcpStream,
    head: &[u8],
    blob: BlobFile,
    io_timeout: Duration,
) -> io::Result<u64> {
    // Non-blocking already: the flag belongs to the open file pingora set up.
    let socket = tokio::net::TcpStream::from_std(socket)?;
    let mut written = 0;
    while written < head.len() {
        writable(&socket, io_timeout).await?;
        match socket.try_write(&head[written..]) {
            Ok(n) => written += n,
            Err(e) if retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let BlobFile {
        file,
        path,
        offset,
        len,
    } = blob;
    let file = Arc::new(file);
    let end = offset + len;
    let mut pos = offset;
    let mut prefetch = Prefetch::new(pos);
    let mut scratch = Vec::new();
    while pos < end {
        let want = ((end - pos) as usize).min(SLICE);
        if !crate::store::cached(&file, pos + want as u64 - 1) {
            prefetch.ahead_of(&file, pos, end - pos);
            let f = file.clone();
            let at = pos;
            scratch = tokio::task::spawn_blocking(move || page_in(&f, at, want, scratch))
                .await
                .map_err(io::Error::other)?;
        }
        writable(&socket, io_timeout).await?;
        let mut at = pos;
        let sent = socket.try_io(Interest::WRITABLE, || {
            Ok(rustix::fs::sendfile(&socket, &*file, Some(&mut at), want)?)
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than expected", path.display()),
                ))
            }
            Ok(n) => pos += n as u64,
            Err(e) if retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pos - offset)
}

/// Reads `len` bytes of `file` from `at` into the page cache, through a small scratch
/// buffer (returned for reuse), so that sendfile then finds them without waiting. Errors
/// and a short file are left for sendfile to report.
fn page_in(file: &std::fs::File, at: u64, len: usize, mut scratch: Vec<u8>) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    scratch.resize(SCRATCH, 0);
    let mut done = 0;
    while done < len {
        let n = (len - done).min(SCRATCH);
        match file.read_at(&mut scratch[..n], at + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(k) => done += k,
        }
    }
    scratch
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// Waits until `socket` takes more bytes, at most `limit`.
async fn writable(socket: &tokio::net::TcpStream, limit: Duration) -> io::Result<()> {
    match tokio::time::timeout(limit, socket.writable()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client did not read the blob (http.io_timeout)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn head_is_a_valid_http11_header() {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = http::StatusCode::PARTIAL_CONTENT;
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, "5".parse().expect("value"));
        parts
            .headers
            .insert(http::header::CONNECTION, "upgrade".parse().expect("value"));
        let h = String::from_utf8(head(&parts, false)).expect("utf8");
        assert!(h.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{h}");
        assert!(h.contains("\r\ncontent-length: 5\r\n"), "{h}");
        assert!(h.contains("\r\ndate: "), "{h}");
        assert!(h.ends_with("\r\nconnection: close\r\n\r\n"), "{h}");
        assert!(!h.contains("upgrade"), "{h}");
        assert!(head(&parts, true).ends_with(b"connection: keep-alive\r\n\r\n"));
    }

    /// Over a real socket pair: the header, then exactly the requested range of a file that
    /// is not in the page cache, even when the reader is slower than the socket buffer.
    #[tokio::test]
    async fn sends_the_header_and_the_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &body).expect("write");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).expect("connect");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                // Slow at first, so the sender meets a full socket buffer.
                if got.len() < 200_000 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                match c.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read: {e}"),
                }
            }
            got
        });
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let socket = server;
        // Out of the page cache, so the cold path (paging in on the blocking pool) runs.
        let f = std::fs::File::open(&path).expect("open");
        f.sync_all().expect("fsync");
        nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .expect("fadvise");
        assert!(
            !crate::store::cached(&f, body.len() as u64 / 2),
            "the file stayed in the page cache"
        );
        let blob = BlobFile {
            file: std::fs::File::open(&path).expect("open"),
            path: path.clone(),
            offset: 7,
            len: body.len() as u64 - 17,
        };
        let sent = send(socket, b"HEAD\r\n", blob, Duration::from_secs(20))
            .await
            .expect("send");
        assert_eq!(sent, body.len() as u64 - 17);
        let got = reader.join().expect("reader");
        assert_eq!(&got[..6], b"HEAD\r\n");
        assert!(got[6..] == body[7..body.len() - 10], "body differs");
    }

    /// A file holding `contents`, a blob of its first `len` bytes (which may be more than
    /// it has), and a connected loopback pair: (dir, client, non-blocking server, blob).
    fn connected_with_blob(
        contents: &[u8],
        len: u64,
    ) -> (
        tempfile::TempDir,
        std::net::TcpStream,
        std::net::TcpStream,
        BlobFile,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, contents).expect("write");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let blob = BlobFile {
            file: std::fs::File::open(&path).expect("open"),
            path,
            offset: 0,
            len,
        };
        (dir, client, server, blob)
    }

    #[tokio::test]
    async fn a_short_file_is_an_error() {
        let (_dir, client, server, blob) = connected_with_blob(b"0123456789", 20);
        let e = send(server, b"", blob, Duration::from_secs(5))
            .await
            .expect_err("short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        drop(client);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_times_out() {
        let (_dir, client, server, blob) = connected_with_blob(&vec![7u8; 64 << 20], 64 << 20);
        let e = send(server, b"", blob, Duration::from_millis(300))
            .await
            .expect_err("timeout");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }
}
