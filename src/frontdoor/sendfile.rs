//! Zero-copy blob responses for plain HTTP/1.1: the response header is written to the
//! connection's socket and the blob follows with sendfile(2), so the kernel moves page-cache
//! pages to the socket with no copy through user space and no buffer in berth. This is what
//! registry:2 (Go's `io.Copy` to a TCP connection) does; streaming through pingora's writer
//! costs a read and a write copy per byte and a few MiB of buffers per transfer.
//!
//! pingora owns the connection and only lends its number (`UniqueID::id` is the raw fd), and
//! this crate forbids `unsafe`, so the socket is duplicated by number with `pidfd_getfd(2)`
//! on our own pidfd, which yields an owned descriptor safely. The duplicate shares the
//! connection's open file (so its `O_NONBLOCK` too); writes wait for room with `poll(2)`.
//! The transfer runs on the blocking pool: sendfile reads the file synchronously, and a cold
//! blob must not stall an async worker.
//!
//! Anything unusual takes the streamed path instead: TLS, HTTP/2, a request body still
//! unread, a kernel or seccomp filter without `pidfd_getfd`, a descriptor that is not a
//! socket. pingora never sees this response, so its session stays clean for keep-alive.

use crate::store::BlobFile;
use crate::store::Prefetch;
use pingora_core::protocols::http::ServerSession;
use rustix::fd::OwnedFd;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes handed to one sendfile call; the kernel sends what the socket buffer takes.
const SLICE: usize = 8 << 20;

/// A duplicate of the session's socket, when the zero-copy path can be used for it.
pub fn socket_of(session: &mut ServerSession) -> Option<OwnedFd> {
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
    is_socket.then_some(fd)
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
pub fn head(parts: &http::response::Parts, keepalive: bool) -> Vec<u8> {
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

/// Writes `head`, then the blob's bytes, to `socket`. Blocking; each wait for room in the
/// socket is bounded by `io_timeout`. Returns the body bytes sent (all of them on `Ok`).
pub fn send(socket: OwnedFd, head: &[u8], blob: BlobFile, io_timeout: Duration) -> io::Result<u64> {
    let mut written = 0;
    while written < head.len() {
        match rustix::io::write(&socket, &head[written..]) {
            Ok(n) => written += n,
            Err(rustix::io::Errno::AGAIN) => wait_writable(&socket, io_timeout)?,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let end = blob.offset + blob.len;
    let mut pos = blob.offset;
    let mut prefetch = Prefetch::new(pos);
    while pos < end {
        prefetch.ahead_of(&blob.file, pos, end - pos);
        let want = ((end - pos) as usize).min(SLICE);
        match rustix::fs::sendfile(&socket, &blob.file, Some(&mut pos), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than expected", blob.path.display()),
                ))
            }
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => wait_writable(&socket, io_timeout)?,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pos - blob.offset)
}

/// Waits until `socket` takes more bytes, at most `limit`.
fn wait_writable(socket: &OwnedFd, limit: Duration) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read the blob (http.io_timeout)",
            ));
        }
        let mut fds = [PollFd::new(socket, PollFlags::OUT)];
        let timeout = rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => {}
            Ok(_) => {
                let got = fds[0].revents();
                if got.intersects(PollFlags::ERR | PollFlags::HUP) && !got.contains(PollFlags::OUT)
                {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "client closed the connection",
                    ));
                }
                return Ok(());
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
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

    /// Over a real socket pair: the header, then exactly the requested range, even when the
    /// reader is slower than the socket buffer (EAGAIN and poll on the way).
    #[test]
    fn sends_the_header_and_the_range() {
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
        let socket = OwnedFd::from(server);
        let blob = BlobFile {
            file: std::fs::File::open(&path).expect("open"),
            path: path.clone(),
            offset: 7,
            len: body.len() as u64 - 17,
        };
        let sent = send(socket, b"HEAD\r\n", blob, Duration::from_secs(20)).expect("send");
        assert_eq!(sent, body.len() as u64 - 17);
        let got = reader.join().expect("reader");
        assert_eq!(&got[..6], b"HEAD\r\n");
        assert!(got[6..] == body[7..body.len() - 10], "body differs");
    }

    #[test]
    fn a_short_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"0123456789").expect("write");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let blob = BlobFile {
            file: std::fs::File::open(&path).expect("open"),
            path,
            offset: 0,
            len: 20,
        };
        let e = send(OwnedFd::from(server), b"", blob, Duration::from_secs(5)).expect_err("short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        drop(client);
    }

    #[test]
    fn a_client_that_never_reads_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, vec![7u8; 64 << 20]).expect("write");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let blob = BlobFile {
            file: std::fs::File::open(&path).expect("open"),
            path,
            offset: 0,
            len: 64 << 20,
        };
        let e = send(OwnedFd::from(server), b"", blob, Duration::from_millis(300))
            .expect_err("timeout");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }
}
