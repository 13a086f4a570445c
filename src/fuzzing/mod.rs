//! The parsers that see network or file bytes, for the fuzz targets in `fuzz/` and for
//! `tests/fuzz_corpus.rs`, which replays every committed corpus file through the same
//! functions under the normal test suite. Not an API: hidden from the docs, and nothing
//! else may call it.
//!
//! Each entry point takes the raw input, runs one parser (or a family of them) and checks
//! properties that must hold for every input, by panicking: a parsed value shows as the
//! text it came from, a canonical form parses back to the same value, a range lies inside
//! the blob, a header reader takes no byte past its header, berth's ClientHello reading
//! agrees with rustls', a manifest accepted on push reads back once stored. Text inputs
//! that are not UTF-8 are skipped where the parser takes `&str` (the front door hands the
//! parsers only text).
//!
//! The token keys in this directory (`issuer.*`, `leaf.*`) were made for fuzzing and sign
//! nothing else: they are not secrets.

use crate::api::blobs::{parse_range, RangeSpec};
use crate::api::endpoint::{percent_decode, query_pairs, Endpoint, Operation};
use crate::api::manifest::{accepts, Kind, Parsed};
use crate::api::uploads::content_range;
use crate::auth::gate::Need;
use crate::auth::token::{self, Access, KeySet, TokenError};
use crate::config::{Config, TokenAlg};
use crate::frontdoor::conn::{self, Proxied, HELLO_MAX, V1_MAX, V2_MAX};
use crate::oci::{Digest, Reference, RepositoryName, Tag, UploadId};
use crate::upstream::challenge;
use base64::Engine as _;
use http::Method;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

/// A fuzz target: takes any bytes, panics when a property does not hold.
pub type Target = fn(&[u8]);

/// Every target by name: the name is the fuzz target's (`fuzz/fuzz_targets/<name>.rs`) and
/// its corpus directory's (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("endpoint", endpoint),
    ("reference", reference),
    ("range", range),
    ("manifest", manifest),
    ("proxy_header", proxy_header),
    ("client_hello", client_hello),
    ("authorization", authorization),
    ("jwt", jwt),
    ("www_authenticate", www_authenticate),
    ("htpasswd", htpasswd),
    ("config", config),
    ("import_distribution", import_distribution),
    ("oci_layout", oci_layout),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// `METHOD /path?query` (a method and a space are optional: `GET`): the request target
/// as the front door routes it. A parsed endpoint renders back to a path that parses to
/// the same endpoint; the operation of a GET or HEAD never writes; an operation needs a
/// permission on a repository exactly when its endpoint names one, and that one.
pub fn endpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, target) = text.split_once(' ').unwrap_or(("GET", text));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    assert_eq!(
        percent_decode(path),
        strict_percent_decode(path),
        "percent-decoding {path:?}"
    );
    let pieces = query.map_or(0, |q| q.split('&').count());
    assert!(query_pairs(query).len() <= pieces);
    let Ok(e) = Endpoint::parse(path) else {
        return;
    };
    let shown = path_of(&e);
    match Endpoint::parse(&shown) {
        Ok(again) => assert_eq!(again, e, "{path:?} shown as {shown:?}"),
        Err(err) => panic!("{path:?} is {e:?}, shown as {shown:?}, which fails: {err:?}"),
    }
    let repo = e.repository().cloned();
    if let Some(n) = &repo {
        assert_eq!(n.as_str().parse::<RepositoryName>().as_ref(), Ok(n));
    }
    let _ = e.body_limit(1, Some(2));
    let _ = e.name();
    let Ok(m) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let op = Operation::of(e, &m);
    if m == Method::GET || m == Method::HEAD {
        assert!(!op.writes(), "{m} {path} writes");
    }
    match op.need() {
        Need::Repository(r, _) => assert_eq!(Some(r), repo.as_ref().map(|n| n.as_str())),
        Need::Nothing | Need::Login | Need::Catalog => assert_eq!(repo, None, "{m} {path}"),
    }
}

/// A repository name, tag, digest, reference or upload id. Each parser agrees with the
/// spec's regular expression, and what it accepts shows as the text it came from.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let re = grammars();
    let name = s.parse::<RepositoryName>();
    assert_eq!(
        name.is_ok(),
        re.name.is_match(s) && s.len() <= crate::oci::MAX_NAME_LEN,
        "name {s:?}"
    );
    if let Ok(n) = name {
        assert_eq!(n.to_string(), s);
        assert!(n.components().all(|c| c != "." && c != ".."));
    }
    let tag = s.parse::<Tag>();
    assert_eq!(tag.is_ok(), re.tag.is_match(s), "tag {s:?}");
    if let Ok(t) = &tag {
        assert_eq!(t.to_string(), s);
    }
    let digest = s.parse::<Digest>();
    assert_eq!(digest.is_ok(), re.digest.is_match(s), "digest {s:?}");
    if let Ok(d) = &digest {
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::from_hash(d.algorithm(), &hex_bytes(d.hex())), *d);
    }
    match s.parse::<Reference>() {
        Ok(r) => {
            assert!(tag.is_ok() || digest.is_ok(), "reference {s:?}");
            assert_eq!(r.to_string(), s);
        }
        Err(_) => assert!(tag.is_err() && digest.is_err(), "reference {s:?}"),
    }
    let id = s.parse::<UploadId>();
    assert_eq!(id.is_ok(), re.upload_id.is_match(s), "upload id {s:?}");
    if let Ok(id) = id {
        assert_eq!(id.to_string(), s);
    }
}

/// `SIZE\nVALUE`: a `Range` and a `Content-Range` value against a blob or upload of SIZE
/// bytes. A range served lies inside the blob, and its canonical form is the same range;
/// a chunk's announced length is at least one byte and its end fits in a u64.
pub fn range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((size, value)) = text.split_once('\n') else {
        return;
    };
    let Ok(size) = size.trim().parse::<u64>() else {
        return;
    };
    match parse_range(value, size) {
        RangeSpec::Part(a, b) => {
            assert!(a <= b && b < size, "{value:?} of {size}: {a}-{b}");
            assert!(matches!(
                parse_range(&format!("bytes={a}-{b}"), size),
                RangeSpec::Part(x, y) if (x, y) == (a, b)
            ));
        }
        RangeSpec::Whole => assert!(value.contains(','), "{value:?}"),
        RangeSpec::Unsatisfiable => {}
    }
    if let Some(len) = content_range(value, size) {
        assert!(len >= 1, "{value:?}");
        assert!(size.checked_add(len - 1).is_some(), "{value:?} at {size}");
        assert_eq!(
            content_range(&format!("bytes {size}-{}", size + (len - 1)), size),
            Some(len)
        );
    }
}

/// `CONTENT-TYPE\nBODY` (an empty first line: no header): a manifest PUT. What push
/// accepts has valid descriptors and the shape of its kind, and reads back the same once
/// stored.
pub fn manifest(data: &[u8]) {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let content_type = std::str::from_utf8(header).ok().filter(|h| !h.is_empty());
    let stored = Parsed::from_stored(body);
    let Ok(p) = Parsed::from_push(body, content_type) else {
        return;
    };
    for d in p.descriptors().chain(p.body.subject.iter()) {
        assert!(d.digest.parse::<Digest>().is_ok(), "{:?}", d.digest);
        assert!(d.size >= 0);
        let _ = d.is_foreign();
    }
    assert_eq!(p.subject().is_some(), p.body.subject.is_some());
    match p.kind {
        Kind::OciManifest | Kind::DockerManifest => {
            assert!(p.body.config.is_some() && p.body.layers.is_some());
            assert!(p.body.manifests.is_none());
        }
        Kind::OciIndex | Kind::DockerList => {
            assert!(p.body.manifests.is_some());
            assert!(p.body.config.is_none() && p.body.layers.is_none());
        }
        Kind::OciArtifact => {}
    }
    let _ = p.artifact_type();
    assert!(accepts(&[p.kind.media_type()], p.kind.media_type()));
    let stored = stored.expect("a manifest accepted on push reads back once stored");
    if p.body.media_type.is_some() {
        assert_eq!(stored.kind, p.kind);
    }
}

/// The bytes a connection starts with, read as a PROXY v1 or v2 header. The reader takes
/// the header and not one byte more, and the client address it reports is the one written.
pub fn proxy_header(data: &[u8]) {
    let mut rest = data;
    let got = ready(conn::read_proxy_header(&mut rest));
    let used = &data[..data.len() - rest.len()];
    if data.starts_with(b"PROXY") {
        assert!(used.len() <= V1_MAX, "{} bytes taken", used.len());
        let Ok(got) = got else {
            return;
        };
        assert!(used.ends_with(b"\r\n"));
        assert_eq!(used.windows(2).filter(|w| w == b"\r\n").count(), 1);
        if let Proxied::Client(addr) = got {
            let line = std::str::from_utf8(used).expect("accepted v1 lines are text");
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            assert_eq!(fields[2].parse(), Ok(addr.ip()));
            assert_eq!(fields[4].parse(), Ok(addr.port()));
        }
        return;
    }
    let Ok(got) = got else {
        return;
    };
    let len = u16::from_be_bytes([data[14], data[15]]) as usize;
    assert!(len <= V2_MAX);
    assert_eq!(
        used.len(),
        16 + len,
        "a v2 header is 16 bytes and its length"
    );
    if let Proxied::Client(addr) = got {
        let body = &data[16..];
        let (ip, port): (std::net::IpAddr, [u8; 2]) = match data[13] >> 4 {
            1 => (
                std::net::Ipv4Addr::new(body[0], body[1], body[2], body[3]).into(),
                [body[8], body[9]],
            ),
            _ => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[..16]);
                (std::net::Ipv6Addr::from(a).into(), [body[32], body[33]])
            }
        };
        assert_eq!((addr.ip(), addr.port()), (ip, u16::from_be_bytes(port)));
    }
}

/// TLS records as a client sends them first. The reader returns exactly the records it
/// read, and when rustls accepts the ClientHello, berth reads the same SNI and ALPN from it.
pub fn client_hello(data: &[u8]) {
    let _ = conn::parse_client_hello(data);
    let mut rest = data;
    let read = ready(conn::read_client_hello(&mut rest));
    let used = data.len() - rest.len();
    let ours = match read {
        Ok((raw, hello)) => {
            assert_eq!(
                raw,
                data[..used],
                "the bytes to put back are the bytes read"
            );
            assert!(raw.len() <= HELLO_MAX);
            hello
        }
        Err(_) => None,
    };
    if data.len() > HELLO_MAX {
        return;
    }
    let Some((sni, alpn)) = rustls_hello(data) else {
        return;
    };
    let ours = ours.expect("berth reads every ClientHello rustls accepts");
    assert_eq!(ours.alpn, alpn, "ALPN");
    if let Some(sni) = sni {
        let theirs = ours.server_name.as_deref().unwrap_or_default();
        assert!(
            sni.eq_ignore_ascii_case(theirs),
            "SNI {sni:?} vs {theirs:?}"
        );
    }
}

/// An `Authorization` value, and the `scope`s of a token request. Basic credentials
/// re-encoded parse to the same user and password; what base64 decodes, encodes back;
/// a Bearer token goes to verification; a scope shown parses to the same grant.
pub fn authorization(data: &[u8]) {
    let Ok(v) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((user, password)) = crate::auth::parse_basic(v) {
        assert!(!user.contains(':'));
        let again = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        assert_eq!(
            crate::auth::parse_basic(&again),
            Some((user, password)),
            "{v:?}"
        );
    }
    if let Some(raw) = crate::auth::base64_decode(v) {
        let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert_eq!(crate::auth::base64_decode(&standard).as_ref(), Some(&raw));
        assert_eq!(
            crate::auth::base64_decode(&token::base64url(&raw)).as_ref(),
            Some(&raw)
        );
    }
    if let Some(t) = crate::auth::bearer_token(v) {
        assert_eq!(t, t.trim());
        let _ = verified(t);
    }
    for scope in v.split(' ') {
        if let Some(a) = Access::parse_scope(scope) {
            assert_eq!(
                Access::parse_scope(&a.scope()).as_ref(),
                Some(&a),
                "{scope:?}"
            );
        }
    }
}

/// A JWT, by the first byte: `0` then a token as a client sends it; `1` then claims JSON,
/// which is signed with the trusted issuer key; `2` then a JOSE header JSON, signed with
/// fixed valid claims. What verifies is from the configured issuer for the configured
/// service and is valid now; what the trusted key signed (with its own header) is never
/// refused for its signature or key.
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let keys = jwt_keys();
    let got = match mode % 3 {
        0 => verified(text),
        1 => {
            let header = format!(r#"{{"typ":"JWT","alg":"ES256","kid":"{}"}}"#, keys.kid);
            let got = verified(&keys.sign(&header, text));
            assert!(
                !matches!(
                    got,
                    Err(TokenError::Signature
                        | TokenError::UntrustedKey
                        | TokenError::Algorithm(_))
                ),
                "{got:?} for claims {text:?}"
            );
            got
        }
        _ => {
            let claims = format!(
                r#"{{"iss":"{JWT_ISSUER}","sub":"alice","aud":"{JWT_SERVICE}","exp":{},"access":[{{"type":"repository","name":"a","actions":["pull"]}}]}}"#,
                JWT_NOW + 300
            );
            verified(&keys.sign(text, &claims))
        }
    };
    if let Ok(claims) = got {
        assert_eq!(claims.iss, JWT_ISSUER);
        assert!(token::check_times(&claims, JWT_NOW).is_ok());
        let _ = (claims.grants("a", "pull"), claims.grants_catalog());
        for a in &claims.access {
            let _ = a.scope();
        }
    }
}

/// A `WWW-Authenticate` value. What parses shows in canonical form as challenges that
/// parse to the same ones.
pub fn www_authenticate(data: &[u8]) {
    let Ok(v) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(all) = challenge::parse(v) else {
        return;
    };
    let shown = all
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        challenge::parse(&shown).as_ref(),
        Ok(&all),
        "{v:?} shown as {shown:?}"
    );
    for c in &all {
        assert!(!c.scheme().is_empty());
        assert!(c.token68().is_none() || c.params().count() == 0);
        for (name, _) in c.params() {
            assert_eq!(name, name.to_ascii_lowercase());
        }
        if let Some(b) = c.bearer() {
            assert!(c.is("Bearer"));
            assert_eq!(Some(b.realm.as_str()), c.realm());
            assert!(b.scopes.iter().all(|s| !s.is_empty() && !s.contains(' ')));
        }
    }
}

/// An htpasswd file. What parses is written back (as `berth user` writes the file) to text
/// that parses to the same users; an error names a line of the file.
pub fn htpasswd(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::auth::htpasswd::parse(text) {
        Ok(users) => {
            let mut written = String::new();
            for (user, hash) in &users {
                assert!(!user.is_empty() && !user.contains(':'), "{user:?}");
                assert!(hash.starts_with("$2"), "{hash:?}");
                written.push_str(&format!("{user}:{hash}\n"));
            }
            assert_eq!(crate::auth::htpasswd::parse(&written), Ok(users));
        }
        Err((line, _)) => assert!((1..=text.lines().count()).contains(&line)),
    }
}

/// `appliance.toml` text; lines `# env: NAME=VALUE` (TOML comments) are also set as
/// environment variables (`BERTH__...`, `REGISTRY_...`). A configuration that loads shows
/// (`berth config show`) as TOML that loads to the same configuration.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# env: ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Ok(cfg) = load_config(text, &env) else {
        return;
    };
    let shown = cfg.to_toml();
    let again = load_config(&shown, &[])
        .unwrap_or_else(|e| panic!("the configuration shown does not load: {e}\n{shown}"));
    let mut want = cfg.clone();
    for e in &mut want.notifications.endpoints {
        for v in e.headers.values_mut() {
            *v = "<redacted>".into();
        }
    }
    assert_eq!(again, want, "shown as\n{shown}");
    let _ = (cfg.listeners(), cfg.tls_plan(), cfg.acme_hostnames());
}

/// A registry:2 `config.yml`, and the same text as a compose `.env` file of `REGISTRY_*`
/// variables. The `appliance.toml` either translation writes is read by berth's schema.
pub fn import_distribution(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = crate::import::parse_env_file(text);
    let translations = [
        crate::import::import_distribution(text),
        crate::import::import_distribution_env(None, &env),
    ];
    for (toml_text, _notes) in translations.into_iter().flatten() {
        if let Err(e) = toml::from_str::<Config>(&toml_text) {
            panic!("the translation is not a berth configuration: {e}\n{toml_text}");
        }
    }
}

/// An OCI image layout's `index.json` (and the same bytes as its `oci-layout` marker).
/// Every accepted descriptor has a blob path inside `blobs/` and a size Go tools can hold;
/// the index written back parses to the same index.
pub fn oci_layout(data: &[u8]) {
    let _ = crate::oci_layout::parse_marker(data);
    let Ok(index) = crate::oci_layout::parse_index(data) else {
        return;
    };
    for d in &index.manifests {
        let path = crate::oci_layout::blob_path(&d.digest);
        let parts: Vec<&str> = path.split('/').collect();
        assert!(parts.len() == 3 && parts[0] == "blobs" && !path.contains(".."));
        assert!(i64::try_from(d.size).is_ok());
        if let Some((repo, tag)) = d.image() {
            let name = d.ref_name().expect("an image comes from a ref name");
            let shown = match repo {
                Some(r) => format!("{r}:{tag}"),
                None => tag.to_string(),
            };
            assert_eq!(shown, name);
        }
    }
    let written = index.to_json();
    assert_eq!(
        crate::oci_layout::parse_index(&written).as_ref(),
        Ok(&index)
    );
}

// ---- helpers ----

/// The issuer and service the `jwt` target's tokens must name, and its clock.
const JWT_ISSUER: &str = "berth-fuzzing";
const JWT_SERVICE: &str = "registry.fuzzing";
const JWT_NOW: i64 = 1_800_000_000;

/// The token issuer's certificate (the `rootcertbundle`) and its P-256 key, made for
/// fuzzing only.
const ISSUER_PEM: &str = include_str!("issuer.pem");
const ISSUER_KEY: &str = include_str!("issuer.key");

struct JwtKeys {
    keys: KeySet,
    kid: String,
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl JwtKeys {
    /// A compact JWS of `header` and `claims` (both taken as they are), signed ES256 with
    /// the issuer key.
    fn sign(&self, header: &str, claims: &str) -> String {
        let mut out = token::base64url(header.as_bytes());
        out.push('.');
        out.push_str(&token::base64url(claims.as_bytes()));
        // ECDSA signing fails only when the system's random source does.
        let sig = self
            .pair
            .sign(&self.rng, out.as_bytes())
            .expect("ECDSA signing");
        out.push('.');
        out.push_str(&token::base64url(sig.as_ref()));
        out
    }
}

/// The issuer's key set, as `auth.token.rootcertbundle` loads it (from a file).
fn jwt_keys() -> &'static JwtKeys {
    static KEYS: OnceLock<JwtKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use rustls::pki_types::pem::PemObject as _;
        use x509_parser::prelude::FromDer as _;
        let path = scratch_path("rootcertbundle.pem");
        // The fuzz harness cannot run without its keys: these expects guard the committed
        // test material and the temporary directory, not input.
        std::fs::write(&path, ISSUER_PEM).expect("writing the test root bundle");
        let mut keys = KeySet::default();
        let added = keys.add_cert_bundle(&path);
        let _ = std::fs::remove_file(&path);
        added.expect("the test root bundle loads");
        let der = rustls::pki_types::CertificateDer::from_pem_slice(ISSUER_PEM.as_bytes())
            .expect("the test certificate is PEM");
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
            .expect("the test certificate parses");
        let kid = token::libtrust_kid(cert.public_key().raw);
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(ISSUER_KEY.as_bytes())
            .expect("the test key is PKCS#8 PEM");
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        )
        .expect("the test key is P-256");
        JwtKeys {
            keys,
            kid,
            pair,
            rng,
        }
    })
}

fn verified(t: &str) -> Result<token::Claims, TokenError> {
    token::verify(
        t,
        &jwt_keys().keys,
        &token::Expect {
            issuer: JWT_ISSUER,
            service: JWT_SERVICE,
            algorithms: &TokenAlg::ALL,
            now: JWT_NOW,
        },
    )
}

/// `Config::load` of `text` as a file, as `berth serve -c` reads it.
fn load_config(text: &str, env: &[(String, String)]) -> Result<Config, crate::config::ConfigError> {
    let path = scratch_path("appliance.toml");
    // A scratch file that cannot be written is the machine's problem, not the input's.
    std::fs::write(&path, text).expect("writing a scratch file");
    let loaded = Config::load(Some(&path), env);
    let _ = std::fs::remove_file(&path);
    loaded
}

/// A path of its own in the temporary directory, for parsers that read files.
fn scratch_path(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("berth-fuzzing-{}-{n}-{name}", std::process::id()))
}

/// Runs a future that can only be waiting on an in-memory reader: it must finish in one
/// poll.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a reader over a byte slice returned Pending"),
    }
}

/// What rustls' server makes of the same records: the SNI and ALPN of a ClientHello it
/// accepts.
fn rustls_hello(mut records: &[u8]) -> Option<(Option<String>, Vec<Vec<u8>>)> {
    let mut acceptor = rustls::server::Acceptor::default();
    loop {
        if acceptor.read_tls(&mut records).ok()? == 0 {
            return None;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                let alpn = hello
                    .alpn()
                    .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default();
                return Some((hello.server_name().map(str::to_owned), alpn));
            }
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
}

/// The path an endpoint is reached by, in canonical form.
fn path_of(e: &Endpoint) -> String {
    match e {
        Endpoint::Root => "/".into(),
        Endpoint::Base => "/v2/".into(),
        Endpoint::Catalog => "/v2/_catalog".into(),
        Endpoint::Tags(n) => format!("/v2/{n}/tags/list"),
        Endpoint::Manifest(n, r) => format!("/v2/{n}/manifests/{r}"),
        Endpoint::BadReference {
            name, reference, ..
        } => format!("/v2/{name}/manifests/{}", percent_encode(reference)),
        Endpoint::Blob(n, d) => format!("/v2/{n}/blobs/{d}"),
        Endpoint::UploadStart(n) => format!("/v2/{n}/blobs/uploads/"),
        Endpoint::Upload(n, id) => format!("/v2/{n}/blobs/uploads/{id}"),
        Endpoint::Referrers(n, d) => format!("/v2/{n}/referrers/{d}"),
        Endpoint::Token => "/token".into(),
        Endpoint::Repository(n) => format!("/berth/v1/repositories/{n}"),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b':' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// RFC 3986's `pct-encoded = "%" HEXDIG HEXDIG`, and `+` as a space: what
/// `percent_decode` must do.
fn strict_percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(digit(hex[0]) << 4 | digit(hex[1]));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap_or_default()
}

/// The distribution spec's grammars, as regular expressions.
struct Grammars {
    name: regex::Regex,
    tag: regex::Regex,
    digest: regex::Regex,
    upload_id: regex::Regex,
}

fn grammars() -> &'static Grammars {
    static G: OnceLock<Grammars> = OnceLock::new();
    G.get_or_init(|| {
        // Fixed patterns: they compile.
        let re = |p: &str| regex::Regex::new(p).expect("a valid pattern");
        let component = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";
        Grammars {
            name: re(&format!(r"\A{component}(?:/{component})*\z")),
            tag: re(r"\A[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\z"),
            digest: re(r"\A(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\z"),
            upload_id: re(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\z"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(target: &str, name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
            .join(format!("seed-{name}"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The seed tokens were signed with the keys here: the properties of the `jwt` target
    /// are checked on tokens that verify, not only on refusals.
    #[test]
    fn seed_tokens_verify_with_the_fuzzing_keys() {
        let token = |name: &str| {
            let data = seed("jwt", &format!("token-{name}"));
            String::from_utf8(data[1..].to_vec()).expect("a token is text")
        };
        for name in ["kid", "no-kid", "x5c-leaf", "x5c-chain"] {
            let claims = verified(&token(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(claims.grants("team/app", "push"), "{name}");
        }
        assert_eq!(verified(&token("expired")), Err(TokenError::Expired));
        assert!(matches!(
            verified(&token("alg-none")),
            Err(TokenError::Algorithm(_))
        ));
    }

    /// The captured ClientHellos are ones rustls accepts, so the `client_hello` target
    /// compares the two readers from its first input on.
    #[test]
    fn captured_client_hellos_are_read_alike() {
        for name in [
            "openssl-default",
            "openssl-alpn",
            "openssl-tls12",
            "curl",
            "skopeo",
        ] {
            let data = seed("client_hello", name);
            let (sni, alpn) = rustls_hello(&data).unwrap_or_else(|| panic!("rustls: {name}"));
            let mut r = &data[..];
            let (_, hello) = ready(conn::read_client_hello(&mut r)).expect("read");
            let hello = hello.unwrap_or_else(|| panic!("berth: {name}"));
            assert_eq!((hello.server_name, hello.alpn), (sni, alpn), "{name}");
        }
    }
}
