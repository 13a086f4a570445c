//! Large bodies stream through berth in both directions without being buffered: the
//! server's peak RSS stays flat while a blob far larger than it moves.

mod common;

use common::*;
use sha2::Digest as _;
use std::io::Read;

/// A deterministic pseudo-random stream of `len` bytes.
struct Gen {
    left: u64,
    state: u64,
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

const SIZE: u64 = 1 << 30;

#[test]
fn one_gib_push_and_pull_keep_rss_flat() {
    let b = Berth::start(&[]);
    let mut h = sha2::Sha256::new();
    std::io::copy(
        &mut Gen {
            left: SIZE,
            state: 0x9e3779b97f4a7c15,
        },
        &mut h,
    )
    .expect("hash");
    let d = format!("sha256:{}", hex::encode(h.finalize()));

    // Streamed (chunked transfer encoding, no Content-Length), as docker sends a PATCH.
    let r = call("POST", &b.url("/v2/big/blobs/uploads/"), &[], None);
    let loc = r.header("Location").expect("location").to_owned();
    let resp = ureq::request("PATCH", &b.url(&loc))
        .send(Gen {
            left: SIZE,
            state: 0x9e3779b97f4a7c15,
        })
        .expect("patch");
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.header("Range"),
        Some(format!("0-{}", SIZE - 1).as_str())
    );
    let r = call("PUT", &b.url(&format!("{loc}?digest={d}")), &[], None);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    let resp = ureq::get(&b.url(&format!("/v2/big/blobs/{d}")))
        .call()
        .expect("get");
    assert_eq!(
        resp.header("Content-Length"),
        Some(SIZE.to_string().as_str())
    );
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut resp.into_reader(), &mut h).expect("read");
    assert_eq!(n, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), d);

    let peak_mib = b.peak_rss_kib() / 1024;
    assert!(peak_mib > 0, "could not read the server's RSS");
    assert!(
        peak_mib < 96,
        "peak RSS {peak_mib} MiB after moving 1 GiB each way: a body was buffered"
    );
}
