//! The leaf values of the configuration: each is parsed from its text once, when the file or
//! variable is read (`FromStr`, and `Deserialize` through it), and the rest of berth takes
//! the typed value.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration as StdDuration;

/// `Deserialize` for a type written as a string in the configuration, through its
/// `FromStr` (whose error becomes the message naming the key).
macro_rules! deserialize_from_str {
    ($($t:ty),+) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    )+};
}

deserialize_from_str!(Duration, HttpUrl, TokenAlg);

/// `4MiB` → (4, "MiB"); `what` completes "is not ..." when there is no number.
fn number_and_unit<'a>(s: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n = num.parse().map_err(|_| format!("{s:?} is not {what}"))?;
    Ok((n, unit))
}

/// A byte size written as `4MiB`, `512KiB`, `1GiB`, `10MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (n, unit) = number_and_unit(s, "a size like \"4MiB\"")?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            u => {
                return Err(format!(
                    "unknown size unit {u:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl Size {
    /// The size as people read it: `512 B`, `1.5 KiB`, `3.0 GiB` (one decimal).
    pub fn approx(self) -> String {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < UNITS.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            format!("{} B", self.0)
        } else {
            format!("{v:.1} {}", UNITS[u])
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, m) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= m && self.0.is_multiple_of(m) {
                return write!(f, "{}{unit}", self.0 / m);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as `250ms`, `30s`, `5m`, `1h` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub const fn secs(n: u64) -> Self {
        Self(StdDuration::from_secs(n))
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (n, unit) = number_and_unit(s, "a duration like \"30s\"")?;
        let d = match unit {
            "ms" => StdDuration::from_millis(n),
            "s" => StdDuration::from_secs(n),
            "m" => StdDuration::from_secs(n.saturating_mul(60)),
            "h" => StdDuration::from_secs(n.saturating_mul(3600)),
            "d" => StdDuration::from_secs(n.saturating_mul(86_400)),
            u => {
                return Err(format!(
                    "unknown duration unit {u:?} in {s:?} (use ms, s, m, h, d)"
                ))
            }
        };
        Ok(Duration(d))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = self.0.as_secs();
        for (unit, m) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if s >= m && s.is_multiple_of(m) {
                return write!(f, "{}{unit}", s / m);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// An address block such as `10.0.0.0/8`, `192.168.1.10` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| "not an IP address or CIDR block like 10.0.0.0/8".to_owned())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("prefix must be 0 to {max}"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

/// An `http://` or `https://` URL (a webhook endpoint), taken apart for a client. It is
/// shown and written back as it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    /// For connecting and for TLS: a name or an address (no brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header: the authority as written.
    pub authority: String,
    /// The request target: path and query.
    pub target: String,
    text: String,
}

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for HttpUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{s:?} {why}; use a URL like \"https://hooks.example.com/registry\"")
        };
        if s.contains('#') {
            return Err(bad("has a fragment"));
        }
        let uri: http::Uri = s.parse().map_err(|_| bad("is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("is not an http:// or https:// URL")),
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| bad("has no host"))?;
        if authority.contains('@') {
            return Err(bad(
                "has credentials in it (send them with headers, e.g. Authorization)",
            ));
        }
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = match uri.port_u16() {
            Some(0) => return Err(bad("has port 0")),
            Some(p) => p,
            None if tls => 443,
            None => 80,
        };
        let target = match uri.path_and_query().map(|p| p.as_str()) {
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) if p.starts_with('?') => format!("/{p}"),
            _ => "/".to_owned(),
        };
        Ok(HttpUrl {
            tls,
            host,
            port,
            authority,
            target,
            text: s.to_owned(),
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A signature algorithm a token may use (`auth.token.algorithms`). `none` and the HMAC
/// algorithms have no variant: they are never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlg {
    Es256,
    Es384,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    EdDsa,
}

impl TokenAlg {
    pub const ALL: [TokenAlg; 9] = [
        TokenAlg::Es256,
        TokenAlg::Es384,
        TokenAlg::Rs256,
        TokenAlg::Rs384,
        TokenAlg::Rs512,
        TokenAlg::Ps256,
        TokenAlg::Ps384,
        TokenAlg::Ps512,
        TokenAlg::EdDsa,
    ];

    /// The name in a JWT's `alg` header (and in the configuration).
    pub fn name(self) -> &'static str {
        match self {
            TokenAlg::Es256 => "ES256",
            TokenAlg::Es384 => "ES384",
            TokenAlg::Rs256 => "RS256",
            TokenAlg::Rs384 => "RS384",
            TokenAlg::Rs512 => "RS512",
            TokenAlg::Ps256 => "PS256",
            TokenAlg::Ps384 => "PS384",
            TokenAlg::Ps512 => "PS512",
            TokenAlg::EdDsa => "EdDSA",
        }
    }
}

impl FromStr for TokenAlg {
    type Err = String;

    /// Exactly as a JWT names it (`ES256`, not `es256`).
    fn from_str(s: &str) -> Result<Self, String> {
        TokenAlg::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            format!(
                "{s:?} is not accepted; use some of ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA (\"none\" and HMAC never are)"
            )
        })
    }
}

impl fmt::Display for TokenAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TokenAlg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!("4MiB".parse::<Size>(), Ok(Size(4 << 20)));
        assert_eq!("10MB".parse::<Size>(), Ok(Size(10_000_000)));
        assert_eq!("123".parse::<Size>(), Ok(Size(123)));
        assert!("4 parsecs".parse::<Size>().is_err());
        assert_eq!(Size(4 << 20).to_string(), "4MiB");
        assert_eq!("30s".parse::<Duration>(), Ok(Duration::secs(30)));
        assert_eq!(
            "250ms".parse::<Duration>().map(|d| d.0.as_millis()),
            Ok(250)
        );
        assert_eq!(Duration::secs(3600).to_string(), "1h");
        assert!("30".parse::<Duration>().is_err());
    }

    #[test]
    fn cidr_blocks() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("11.0.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.0.0.1".parse().expect("ip")));
        let one: Cidr = "127.0.0.1".parse().expect("cidr");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let v6: Cidr = "fd00::/8".parse().expect("cidr");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    #[test]
    fn http_urls() {
        let u: HttpUrl = "https://hooks.example.com/x/y?token=1"
            .parse()
            .expect("url");
        assert!(u.tls);
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.authority.as_str(),
                u.target.as_str()
            ),
            (
                "hooks.example.com",
                443,
                "hooks.example.com",
                "/x/y?token=1"
            )
        );
        // Shown and written back as given.
        assert_eq!(u.to_string(), "https://hooks.example.com/x/y?token=1");
        let u: HttpUrl = "http://[::1]:8080".parse().expect("url");
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.authority.as_str(),
                u.target.as_str()
            ),
            ("::1", 8080, "[::1]:8080", "/")
        );
        for bad in [
            "ftp://x/",
            "hooks.example.com/x",
            "http://user:pw@x/",
            "http://x/#frag",
            "http://x:0/",
            "",
        ] {
            assert!(bad.parse::<HttpUrl>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn token_algorithms() {
        for a in TokenAlg::ALL {
            assert_eq!(a.name().parse::<TokenAlg>(), Ok(a));
        }
        for bad in ["none", "HS256", "es256", ""] {
            let e = bad.parse::<TokenAlg>().expect_err("refused");
            assert!(e.contains("is not accepted"), "{e}");
        }
    }
}
