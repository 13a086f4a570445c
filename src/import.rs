//! `berth config import-distribution`: a registry:2 (distribution) `config.yml`, and the
//! `REGISTRY_*` variables of a compose file, translated into `appliance.toml`.
//!
//! The YAML is read once into a small tree ([`Node`]); every key the translation uses is
//! taken out of it, so whatever is left is reported as not translated. The result only
//! uses keys that [`crate::config::Config`] knows, and paths for the packaged service
//! (`/var/lib/berth`, `/etc/berth`). How `REGISTRY_*` variables name settings, and the
//! berth key of the settings that carry over as they are, come from
//! [`crate::config::distribution`], which the run-time overrides use too. The TOML is
//! written with `toml_edit`, the notes as comments.

use crate::config::distribution::{self, Kind, Variable};
use crate::config::TokenAlg;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use toml_edit::{Array, ArrayOfTables, Decor, DocumentMut, Item, Key, Table, Value};

/// The configuration the `registry:2` image ships (`/etc/docker/registry/config.yml` in
/// `distribution/registry`): the base that compose-style `REGISTRY_*` variables override.
pub const REGISTRY_IMAGE_CONFIG: &str = "\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

/// Translates a distribution `config.yml`. Returns the `appliance.toml` text and what
/// could not be translated (or needs the operator's attention); an error when the
/// configuration cannot work in berth at all (another storage driver, a pull-through
/// cache).
pub fn import_distribution(yaml_text: &str) -> Result<(String, Vec<String>), String> {
    import_distribution_env(Some(yaml_text), &[])
}

/// As [`import_distribution`], with distribution's `REGISTRY_<SECTION>_<KEY>` variables
/// applied on top (as `registry serve` does), e.g. from a compose file's `environment:`.
/// Without a file the base is the `registry:2` image's own configuration
/// ([`REGISTRY_IMAGE_CONFIG`]). Other variables are ignored.
pub fn import_distribution_env(
    yaml_text: Option<&str>,
    env: &[(String, String)],
) -> Result<(String, Vec<String>), String> {
    let mut root = parse_yaml(yaml_text.unwrap_or(REGISTRY_IMAGE_CONFIG))?;
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("REGISTRY_"))
        .collect();
    // Parents before children: REGISTRY_AUTH before REGISTRY_AUTH_HTPASSWD_PATH.
    vars.sort();
    let mut used = Vec::new();
    for (var, raw) in vars {
        apply_env(&mut root, var, raw)?;
        used.push(var.clone());
    }
    translate(root, &used)
}

/// `KEY=VALUE` lines (a compose `.env` file, `docker inspect` output, an `env_file:`):
/// comments, blank lines and `export ` are skipped, one pair of quotes is removed.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// A YAML document, reduced to what configuration needs. Map keys keep their order.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// Removes and returns the value of `key` (case-insensitive) from a map.
    fn take(&mut self, key: &str) -> Option<Node> {
        let Node::Map(entries) = self else {
            return None;
        };
        let i = entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))?;
        Some(entries.remove(i).1)
    }

    /// A scalar as text (numbers and booleans as YAML writes them).
    fn text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Int(n) => Some(n.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Null | Node::List(_) | Node::Map(_) => None,
        }
    }

    /// A non-empty scalar as text.
    fn word(&self) -> Option<String> {
        self.text().filter(|s| !s.trim().is_empty())
    }

    fn flag(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            Node::Int(n) => Some(*n != 0),
            Node::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => None,
            },
            Node::Null | Node::List(_) | Node::Map(_) => None,
        }
    }

    /// A list of scalars (or one scalar) as texts.
    fn texts(&self) -> Vec<String> {
        match self {
            Node::List(items) => items.iter().filter_map(Node::word).collect(),
            other => other.word().into_iter().collect(),
        }
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Node::Map(entries) => entries.iter().map(|(k, _)| k.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// `auth: htpasswd` or `storage: filesystem` (as `REGISTRY_AUTH=htpasswd` sets them)
    /// become `{htpasswd: {}}`; null becomes `{}`.
    fn into_map(self) -> Node {
        match self {
            Node::Map(_) => self,
            Node::Str(s) if !s.is_empty() => Node::Map(vec![(s, Node::Map(Vec::new()))]),
            _ => Node::Map(Vec::new()),
        }
    }

    /// The child map at `key`, made when missing (a scalar there becomes a map as in
    /// [`Node::into_map`]).
    fn child(&mut self, key: &str) -> &mut Node {
        if !matches!(self, Node::Map(_)) {
            let old = std::mem::replace(self, Node::Null);
            *self = old.into_map();
        }
        let Node::Map(entries) = self else {
            unreachable!("made a map above");
        };
        let i = match entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some(i) => i,
            None => {
                entries.push((key.to_owned(), Node::Map(Vec::new())));
                entries.len() - 1
            }
        };
        &mut entries[i].1
    }
}

fn parse_yaml(text: &str) -> Result<Node, String> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("not a valid YAML configuration: {e}"))?;
    match from_yaml(&value) {
        Node::Map(entries) => Ok(Node::Map(entries)),
        Node::Null => Ok(Node::Map(Vec::new())),
        _ => Err("not a distribution configuration: the YAML document is not a mapping".into()),
    }
}

fn from_yaml(v: &serde_yaml::Value) -> Node {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Node::Null,
        Y::Bool(b) => Node::Bool(*b),
        Y::Number(n) => match n.as_i64() {
            Some(i) => Node::Int(i),
            None => Node::Str(n.to_string()),
        },
        Y::String(s) => Node::Str(s.clone()),
        Y::Sequence(items) => Node::List(items.iter().map(from_yaml).collect()),
        Y::Mapping(m) => Node::Map(
            m.iter()
                .map(|(k, v)| (from_yaml(k).text().unwrap_or_default(), from_yaml(v)))
                .collect(),
        ),
        Y::Tagged(t) => from_yaml(&t.value),
    }
}

/// One `REGISTRY_A_B_C=value`: sets `a.b.c` ([`Variable`]). A last part that is a number
/// appends to the list (`REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0`, as berth itself reads
/// it); a value written as a YAML list or map (`[a, b]`) is one.
fn apply_env(root: &mut Node, var: &str, raw: &str) -> Result<(), String> {
    let Some(v) = Variable::parse(var) else {
        return Err(format!("{var}: not a REGISTRY_SECTION_KEY variable"));
    };
    let value = env_value(var, raw)?;
    let Some((key, parents)) = v.path.split_last() else {
        return Err(format!("{var}: not a REGISTRY_SECTION_KEY variable"));
    };
    let mut node = root;
    for p in parents {
        node = node.child(p);
    }
    let slot = node.child(key);
    if v.element {
        // REGISTRY_..._HOSTS_<n>: an element of the list `hosts`.
        if !matches!(slot, Node::List(_)) {
            *slot = Node::List(Vec::new());
        }
        if let Node::List(items) = slot {
            items.push(value);
        }
    } else {
        *slot = value;
    }
    Ok(())
}

/// A variable's value as distribution reads it: YAML for lists, maps, booleans and
/// numbers, else the text as it is (`:5000` stays a string).
fn env_value(var: &str, raw: &str) -> Result<Node, String> {
    let t = raw.trim();
    if t.starts_with('[') || t.starts_with('{') {
        let v: serde_yaml::Value =
            serde_yaml::from_str(t).map_err(|e| format!("{var}: not valid YAML: {e}"))?;
        return Ok(from_yaml(&v));
    }
    if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false") {
        return Ok(Node::Bool(t.eq_ignore_ascii_case("true")));
    }
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Node::Int(n));
        }
    }
    Ok(Node::Str(raw.to_owned()))
}

/// What the translation sets; `None`/empty means berth's default (not written).
#[derive(Debug, Default)]
struct Out {
    http_listen: Vec<String>,
    redirect_listen: Option<Vec<String>>,
    external_url: Option<String>,
    shutdown_grace: Option<String>,
    tls_mode: &'static str,
    tls_listen: Option<Vec<String>>,
    tls_hostnames: Vec<String>,
    tls_certificate: Option<String>,
    tls_key: Option<String>,
    min_version: Option<&'static str>,
    acme_email: Option<String>,
    acme_directory_url: Option<String>,
    acme_challenges: Option<Vec<String>>,
    storage_root: String,
    /// `storage.s3` of registry:2: berth's s3 driver, with redirects on unless
    /// `storage.redirect.disable` (registry:2's default for s3).
    s3: Option<bool>,
    delete_enabled: bool,
    read_only: bool,
    page_max: Option<u32>,
    foreign_allow: Vec<String>,
    foreign_deny: Vec<String>,
    auth_mode: &'static str,
    /// `auth.token` of registry:2: an external token server whose tokens berth verifies,
    /// with these algorithms (none: berth's default list).
    token: Option<Vec<TokenAlg>>,
    /// The settings of [`distribution::SETTINGS`] copied as they are, by berth key
    /// (`auth.htpasswd.path`, `auth.token.realm`, ...).
    copied: BTreeMap<&'static str, String>,
    log_level: Option<String>,
    log_format: Option<&'static str>,
    /// `proxy:` of registry:2 (a pull-through cache of one upstream): berth's default
    /// upstream, as (upstream host, url, username).
    proxy: Option<(String, String, Option<String>)>,
}

impl Out {
    /// Takes every text setting that the distribution table has directly in the
    /// `config.yml` section `section` out of `node` (that section), for its berth key.
    fn copy(&mut self, node: &mut Node, section: &str) {
        for (key, s) in distribution::settings_in(section) {
            if s.kind != Kind::Text {
                continue;
            }
            if let Some(v) = node.take(key).and_then(|v| v.word()) {
                self.copied.insert(s.berth, v);
            }
        }
    }

    fn copied(&self, berth: &str) -> Option<&String> {
        self.copied.get(berth)
    }
}

/// registry:2's `proxy:`: it mirrors one upstream under the upstream's own names. In berth
/// that is one `[[proxy.upstreams]]` with `default = true` (un-prefixed names that are not
/// stored here are fetched from it), under the prefix `mirror` as well.
fn proxy(mut p: Node, out: &mut Out, w: &mut Vec<String>) -> Result<(), String> {
    let url = p
        .take("remoteurl")
        .and_then(|v| v.word())
        .ok_or("proxy.remoteurl: missing: registry:2's proxy mode needs the upstream's URL")?;
    // As berth will read it (http or https, a host, no fragment), then for its parts.
    url.parse::<crate::config::HttpUrl>()
        .map_err(|e| format!("proxy.remoteurl: {e}"))?;
    let parsed =
        url::Url::parse(&url).map_err(|e| format!("proxy.remoteurl: {url:?} is not a URL: {e}"))?;
    let host = match parsed.host_str() {
        Some("registry-1.docker.io" | "index.docker.io" | "docker.io") => "docker.io".to_owned(),
        Some(h) => match parsed.port() {
            Some(port) => format!("{h}:{port}"),
            None => h.to_owned(),
        },
        None => return Err(format!("proxy.remoteurl: {url:?} names no host")),
    };
    let username = p.take("username").and_then(|v| v.word());
    if p.take("password").is_some() {
        w.push(
            "proxy.password: not written to appliance.toml: put it in a file (mode 0600, owned \
             by berth) and set password_file in [[proxy.upstreams]]"
                .into(),
        );
    }
    if p.take("ttl").is_some() {
        w.push(
            "proxy.ttl: berth keeps what it fetched like pushed content (the collector \
             removes it when nothing references it); tags are re-checked after tag_ttl"
                .into(),
        );
    }
    w.push(
        "proxy: registry:2 in proxy mode refuses pushes; berth also keeps serving pushes to \
         names outside the mirror (add [[auth.rules]] to refuse them)"
            .into(),
    );
    leftovers(&p, "proxy", w);
    out.proxy = Some((host, url, username));
    Ok(())
}

/// Top-level sections berth has no counterpart for, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "notifications",
        "berth sends no webhook notifications on push or delete",
    ),
    (
        "redis",
        "berth keeps no cache in redis (nor in memory); nothing to configure",
    ),
    (
        "health",
        "GET / answers 200 for health checks; storage health checks are not configurable",
    ),
    ("reporting", "no bugsnag or New Relic reporting"),
    (
        "middleware",
        "no registry, repository or storage middleware (e.g. CloudFront redirects)",
    ),
    (
        "compatibility",
        "schema1 manifests are not supported; schema2, OCI and lists are served as pushed",
    ),
];

fn translate(mut root: Node, env_used: &[String]) -> Result<(String, Vec<String>), String> {
    let mut w = Vec::new();
    let proxy_section = root.take("proxy");
    let mut out = Out {
        storage_root: "/var/lib/registry".into(),
        s3: None,
        tls_mode: "off",
        auth_mode: "none",
        ..Out::default()
    };
    if let Some(v) = root.take("version").and_then(|v| v.text()) {
        if v != "0.1" {
            w.push(format!("version: {v:?}: read as version 0.1"));
        }
    }
    storage(root.take("storage"), &mut out, &mut w)?;
    if let Some(p) = proxy_section {
        proxy(p, &mut out, &mut w)?;
    }
    http(root.take("http"), &mut out, &mut w)?;
    auth(root.take("auth"), &mut out, &mut w)?;
    log(root.take("log"), root.take("loglevel"), &mut out, &mut w);
    validation(root.take("validation"), &mut out, &mut w);
    if let Some(mut c) = root.take("catalog") {
        if let Some(n) = c.take("maxentries").and_then(|n| n.text()) {
            match n.parse::<u32>() {
                Ok(n) if n > 0 => out.page_max = Some(n),
                _ => w.push(format!(
                    "catalog.maxentries: {n:?} is not a positive number"
                )),
            }
        }
        leftovers(&c, "catalog", &mut w);
    }
    for (key, why) in UNSUPPORTED {
        if root.take(key).is_some() {
            w.push(format!("{key}: not translated: {why}"));
        }
    }
    leftovers(&root, "", &mut w);
    review(&out, &mut w);
    let text = render(&out, &w, env_used);
    Ok((text, w))
}

fn storage(node: Option<Node>, out: &mut Out, w: &mut Vec<String>) -> Result<(), String> {
    let Some(node) = node else {
        return Err("storage: no storage driver configured (registry:2 would not start)".into());
    };
    let mut s = node.into_map();
    // registry:2 keeps deletes off unless storage.delete.enabled says otherwise.
    out.delete_enabled = false;
    if let Some(mut d) = s.take("delete").map(Node::into_map) {
        out.delete_enabled = d.take("enabled").and_then(|e| e.flag()).unwrap_or(false);
        leftovers(&d, "storage.delete", w);
    }
    if let Some(mut m) = s.take("maintenance").map(Node::into_map) {
        if let Some(mut r) = m.take("readonly").map(Node::into_map) {
            out.read_only = r.take("enabled").and_then(|e| e.flag()).unwrap_or(false);
            leftovers(&r, "storage.maintenance.readonly", w);
        }
        if m.take("uploadpurging").is_some() {
            w.push(
                "storage.maintenance.uploadpurging: not translated: berth's collector \
                 removes uploads idle for uploads.purge_after (default \"24h\", \"0s\" keeps \
                 them); set it in appliance.toml if the age differs"
                    .into(),
            );
        }
        leftovers(&m, "storage.maintenance", w);
    }
    if s.take("cache").is_some() {
        w.push(
            "storage.cache: not translated: berth keeps no blob-descriptor cache (in memory \
             or redis); none is needed"
                .into(),
        );
    }
    let mut redirect = true;
    if let Some(mut r) = s.take("redirect").map(Node::into_map) {
        redirect = !r.take("disable").and_then(|d| d.flag()).unwrap_or(false);
        leftovers(&r, "storage.redirect", w);
    }
    if let Some(mut s3) = s.take("s3").map(Node::into_map) {
        out.copy(&mut s3, "storage.s3");
        let forced = s3.take("forcepathstyle").and_then(|f| f.flag());
        // registry:2 2.8 always uses path style with a regionendpoint.
        let path_style = forced.unwrap_or_else(|| out.copied("storage.s3.endpoint").is_some());
        out.copied.insert(
            "storage.s3.path_style",
            if path_style { "true" } else { "false" }.into(),
        );
        if s3.take("secretkey").is_some() {
            w.push(
                "storage.s3.secretkey: not written to appliance.toml: put the secret in a file \
                 (mode 0600, owned by berth) and set storage.s3.secret_access_key_file, or set \
                 AWS_SECRET_ACCESS_KEY in the service's environment"
                    .into(),
            );
        }
        for k in ["secure", "v4auth", "skipverify"] {
            if s3.take(k).is_some() {
                w.push(format!(
                    "storage.s3.{k}: not translated: berth always signs with SigV4 and checks \
                     TLS; the endpoint's scheme (http:// or https://) says whether TLS is used"
                ));
            }
        }
        leftovers(&s3, "storage.s3", w);
        out.s3 = Some(redirect);
        if let Some(d) = s.keys().first() {
            return Err(format!(
                "storage.{d}: a second storage driver; registry:2 accepts exactly one"
            ));
        }
        return Ok(());
    }
    if s.take("tag").is_some() {
        w.push("storage.tag: not translated (tag lookup concurrency)".into());
    }
    let Some(mut fs) = s.take("filesystem").map(Node::into_map) else {
        let drivers = s.keys();
        return Err(match drivers.first() {
            Some(d) => format!(
                "storage.{d}: berth stores images on a local filesystem or in S3 (in \
                 registry:2's layout); copy the images there first (e.g. `skopeo sync`) and \
                 use storage.filesystem or storage.s3"
            ),
            None => "storage: no storage driver configured (registry:2 would not start)".into(),
        });
    };
    if let Some(root) = fs.take("rootdirectory").and_then(|r| r.word()) {
        out.storage_root = root;
    }
    if fs.take("maxthreads").is_some() {
        w.push("storage.filesystem.maxthreads: not translated (berth sizes its own I/O)".into());
    }
    leftovers(&fs, "storage.filesystem", w);
    if let Some(d) = s.keys().first() {
        return Err(format!(
            "storage.{d}: a second storage driver; registry:2 accepts exactly one"
        ));
    }
    Ok(())
}

fn http(node: Option<Node>, out: &mut Out, w: &mut Vec<String>) -> Result<(), String> {
    let mut h = node.unwrap_or(Node::Null).into_map();
    let raw_addr = h
        .take("addr")
        .and_then(|a| a.word())
        .unwrap_or_else(|| ":5000".to_owned());
    if let Some(net) = h.take("net").and_then(|n| n.word()) {
        if !net.eq_ignore_ascii_case("tcp") {
            return Err(format!(
                "http.net: {net:?}: berth listens on TCP addresses only"
            ));
        }
    }
    let addr = listen_addr(&raw_addr, w);
    if let Some(host) = h.take("host").and_then(|v| v.word()) {
        let host = host.trim_end_matches('/').to_owned();
        if host.starts_with("https://") || host.starts_with("http://") {
            out.external_url = Some(host);
        } else {
            w.push(format!(
                "http.host: {host:?} is not a URL like https://registry.example.com; not translated"
            ));
        }
    }
    if let Some(p) = h.take("prefix").and_then(|v| v.word()) {
        if !p.trim_matches('/').is_empty() {
            w.push(format!(
                "http.prefix: {p:?}: not translated: berth serves /v2/ at the root; a reverse \
                 proxy can keep the prefix"
            ));
        }
    }
    if h.take("secret").is_some() {
        w.push(
            "http.secret: not needed: berth keeps upload state on disk, not in signed tokens"
                .into(),
        );
    }
    // berth's Location headers are relative unless http.external_url is set.
    h.take("relativeurls");
    if let Some(d) = h.take("draintimeout").and_then(|v| v.word()) {
        match go_duration(&d) {
            Some(ms) if ms.is_multiple_of(1000) => {
                out.shutdown_grace = Some(format!("{}s", ms / 1000));
            }
            Some(ms) => out.shutdown_grace = Some(format!("{ms}ms")),
            None => w.push(format!(
                "http.draintimeout: {d:?} is not a duration like 60s"
            )),
        }
    }
    if let Some(mut h2) = h.take("http2").map(Node::into_map) {
        if h2.take("disabled").and_then(|d| d.flag()) == Some(true) {
            w.push(
                "http.http2.disabled: not translated: berth offers HTTP/2 on TLS listeners".into(),
            );
        }
        leftovers(&h2, "http.http2", w);
    }
    if h.take("headers").is_some() {
        w.push("http.headers: not translated: berth sends its own response headers".into());
    }
    if h.take("debug").is_some() {
        w.push("http.debug: not translated: no debug server (pprof, Prometheus metrics)".into());
    }
    let tls_on = match h.take("tls") {
        Some(t) => tls(t.into_map(), out, w)?,
        None => false,
    };
    leftovers(&h, "http", w);
    if tls_on {
        // registry:2 had no port-80 redirect; berth's default one stays off.
        out.tls_listen = Some(vec![addr]);
        out.redirect_listen = Some(Vec::new());
    } else {
        out.tls_mode = "off";
        out.http_listen = vec![addr];
    }
    Ok(())
}

/// `http.tls`; true when it turns TLS on.
fn tls(mut t: Node, out: &mut Out, w: &mut Vec<String>) -> Result<bool, String> {
    let cert = t.take("certificate").and_then(|v| v.word());
    let key = t.take("key").and_then(|v| v.word());
    let mut on = false;
    if let Some(mut le) = t.take("letsencrypt").map(Node::into_map) {
        let cachefile = le.take("cachefile").and_then(|v| v.word());
        let email = le.take("email").and_then(|v| v.word());
        let hosts = le.take("hosts").map(|h| h.texts()).unwrap_or_default();
        let directory = le.take("directoryurl").and_then(|v| v.word());
        leftovers(&le, "http.tls.letsencrypt", w);
        // registry:2 uses Let's Encrypt only when a cache file is set.
        match cachefile {
            Some(cf) => {
                if hosts.is_empty() {
                    return Err(
                        "http.tls.letsencrypt.hosts: berth asks Let's Encrypt only for \
                                listed names; list them"
                            .into(),
                    );
                }
                out.tls_mode = "acme";
                out.tls_hostnames = hosts;
                out.acme_email = email;
                out.acme_directory_url = directory;
                // registry:2 (Go's autocert) answers tls-alpn-01 only.
                out.acme_challenges = Some(vec!["tls-alpn-01".into()]);
                w.push(format!(
                    "http.tls.letsencrypt.cachefile: {cf:?} is not reused: berth registers its \
                     own ACME account and keeps it in /var/lib/berth/state/acme"
                ));
                if cert.is_some() {
                    w.push(
                        "http.tls.certificate: unused, as in registry:2 (Let's Encrypt is \
                         configured)"
                            .into(),
                    );
                }
                on = true;
            }
            None => {
                if email.is_some() || !hosts.is_empty() {
                    w.push(
                        "http.tls.letsencrypt: ignored without cachefile, as registry:2 does"
                            .into(),
                    );
                }
            }
        }
    }
    if !on {
        match (cert, key) {
            (Some(c), Some(k)) => {
                out.tls_mode = "files";
                out.tls_certificate = Some(c);
                out.tls_key = Some(k);
                on = true;
            }
            (None, None) => {}
            _ => return Err("http.tls: certificate and key go together".into()),
        }
    }
    if let Some(cas) = t.take("clientcas") {
        if !cas.texts().is_empty() {
            w.push(
                "http.tls.clientcas: not translated: berth does not ask clients for \
                 certificates (mutual TLS)"
                    .into(),
            );
        }
    }
    if let Some(v) = t.take("minimumtls").and_then(|v| v.word()) {
        match v.to_ascii_lowercase().as_str() {
            "tls1.2" => out.min_version = Some("1.2"),
            "tls1.3" => out.min_version = Some("1.3"),
            _ => {
                out.min_version = Some("1.2");
                w.push(format!(
                    "http.tls.minimumtls: {v:?}: berth accepts TLS 1.2 and 1.3 only"
                ));
            }
        }
    }
    if t.take("ciphersuites").is_some() {
        w.push(
            "http.tls.ciphersuites: not translated: berth uses rustls' safe default suites".into(),
        );
    }
    leftovers(&t, "http.tls", w);
    Ok(on)
}

fn auth(node: Option<Node>, out: &mut Out, w: &mut Vec<String>) -> Result<(), String> {
    let Some(node) = node else {
        out.auth_mode = "none";
        w.push(
            "auth: registry:2 had no authentication and neither has this configuration: \
             anyone who reaches it may push and delete (set auth.mode = \"htpasswd\" and \
             `berth user add`)"
                .into(),
        );
        return Ok(());
    };
    let mut a = node.into_map();
    if let Some(mut h) = a.take("htpasswd").map(Node::into_map) {
        out.auth_mode = "htpasswd";
        out.copy(&mut h, "auth.htpasswd");
        if out.copied(HTPASSWD_PATH).is_none() {
            out.copied.insert(HTPASSWD_PATH, DEFAULT_HTPASSWD.into());
            w.push("auth.htpasswd.path: not set; using /etc/berth/htpasswd".into());
        }
        leftovers(&h, "auth.htpasswd", w);
    } else if let Some(t) = a.take("token").map(Node::into_map) {
        out.auth_mode = "token";
        out.token = Some(token(t, out, w)?);
    }
    for kind in a.keys() {
        w.push(format!(
            "auth.{kind}: not translated: berth checks passwords from an htpasswd file \
             (`berth user add`) or verifies tokens of an external token server"
        ));
    }
    if out.auth_mode == "none" {
        // Fail closed: an unsupported scheme must not become an open registry.
        out.auth_mode = "htpasswd";
        out.copied.insert(HTPASSWD_PATH, DEFAULT_HTPASSWD.into());
        w.push(
            "auth: set to htpasswd with /etc/berth/htpasswd, so that nothing is open; add \
             users with `berth user add`"
                .into(),
        );
    }
    Ok(())
}

/// The berth key of `auth.htpasswd.path`, which the translation fills in when it is missing.
const HTPASSWD_PATH: &str = "auth.htpasswd.path";
const DEFAULT_HTPASSWD: &str = "/etc/berth/htpasswd";

/// `auth.token`: registry:2 verifies tokens of an external server; so does berth
/// (`auth.token.issuer = "external"`), with the same keys. Returns the algorithms.
fn token(mut t: Node, out: &mut Out, w: &mut Vec<String>) -> Result<Vec<TokenAlg>, String> {
    out.copy(&mut t, "auth.token");
    if out.copied("auth.token.realm").is_none() {
        return Err("auth.token.realm: the token server's URL is missing".into());
    }
    if out.copied("auth.token.rootcertbundle").is_none() && out.copied("auth.token.jwks").is_none()
    {
        return Err(
            "auth.token: neither rootcertbundle nor jwks: berth only trusts tokens signed by \
             keys it is given"
                .into(),
        );
    }
    let mut algorithms = Vec::new();
    if let Some(algs) = t.take("signingalgorithms") {
        for a in algs.texts() {
            match TokenAlg::ALL
                .into_iter()
                .find(|k| k.name().eq_ignore_ascii_case(&a))
            {
                Some(k) => algorithms.push(k),
                None => w.push(format!(
                    "auth.token.signingalgorithms: {a:?} is not accepted by berth; left out"
                )),
            }
        }
    }
    if t.take("autoredirect").is_some() {
        w.push(
            "auth.token.autoredirect: not translated: the challenge names auth.token.realm \
             as it is"
                .into(),
        );
    }
    leftovers(&t, "auth.token", w);
    Ok(algorithms)
}

fn log(node: Option<Node>, legacy: Option<Node>, out: &mut Out, w: &mut Vec<String>) {
    if let Some(l) = legacy.and_then(|v| v.word()) {
        out.log_level = Some(log_level(&l, w));
    }
    let Some(node) = node else {
        return;
    };
    let mut l = node.into_map();
    if let Some(v) = l.take("level").and_then(|v| v.word()) {
        out.log_level = Some(log_level(&v, w));
    }
    if let Some(f) = l.take("formatter").and_then(|v| v.word()) {
        match f.to_ascii_lowercase().as_str() {
            "text" => out.log_format = Some("text"),
            "json" => out.log_format = Some("json"),
            "logstash" => {
                out.log_format = Some("json");
                w.push("log.formatter: logstash: berth writes JSON lines instead".into());
            }
            _ => w.push(format!("log.formatter: {f:?}: berth writes text or json")),
        }
    }
    if l.take("fields").is_some() {
        w.push("log.fields: not translated: berth adds no fixed fields to its log lines".into());
    }
    if l.take("hooks").is_some() {
        w.push("log.hooks: not translated: berth logs to stderr (the journal) only".into());
    }
    if let Some(mut a) = l.take("accesslog").map(Node::into_map) {
        if a.take("disabled").and_then(|d| d.flag()) == Some(true) {
            w.push("log.accesslog.disabled: not translated: berth always logs requests".into());
        }
        leftovers(&a, "log.accesslog", w);
    }
    leftovers(&l, "log", w);
}

fn log_level(level: &str, w: &mut Vec<String>) -> String {
    match level.to_ascii_lowercase().as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => l.to_owned(),
        "warning" => "warn".to_owned(),
        "fatal" | "panic" => "error".to_owned(),
        _ => {
            w.push(format!("log.level: {level:?}: using info"));
            "info".to_owned()
        }
    }
}

fn validation(node: Option<Node>, out: &mut Out, w: &mut Vec<String>) {
    let Some(node) = node else {
        return;
    };
    let mut v = node.into_map();
    let disabled = v.take("disabled").and_then(|d| d.flag());
    let enabled = v.take("enabled").and_then(|d| d.flag());
    if disabled == Some(true) || enabled == Some(false) {
        w.push(
            "validation: berth always validates manifests (and refuses an index whose \
             children are missing unless manifests.require_index_children = false)"
                .into(),
        );
    }
    if let Some(mut m) = v.take("manifests").map(Node::into_map) {
        if let Some(mut u) = m.take("urls").map(Node::into_map) {
            out.foreign_allow = u.take("allow").map(|a| a.texts()).unwrap_or_default();
            out.foreign_deny = u.take("deny").map(|d| d.texts()).unwrap_or_default();
            leftovers(&u, "validation.manifests.urls", w);
        }
        leftovers(&m, "validation.manifests", w);
    }
    leftovers(&v, "validation", w);
}

/// Reports every key still in `node` as not translated.
fn leftovers(node: &Node, path: &str, w: &mut Vec<String>) {
    for key in node.keys() {
        let full = if path.is_empty() {
            key
        } else {
            format!("{path}.{key}")
        };
        w.push(format!("{full}: not translated: berth has no such setting"));
    }
}

/// Notes on the result as a whole: what the packaged service needs to reach, and what
/// behaves differently.
fn review(out: &Out, w: &mut Vec<String>) {
    if out.read_only {
        if out.auth_mode == "htpasswd" {
            w.push(
                "storage.maintenance.readonly: berth has no read-only mode; approximated by a \
                 pull-only rule for every user ([[auth.rules]]) and deletes off"
                    .into(),
            );
        } else {
            w.push(
                "storage.maintenance.readonly: not translated: berth has no read-only mode \
                 (with htpasswd users a pull-only [[auth.rules]] entry stands in for it); \
                 deletes are off"
                    .into(),
            );
        }
    }
    if out.tls_mode == "off" && out.auth_mode != "none" {
        let public = out
            .http_listen
            .iter()
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .any(|a| !a.ip().is_loopback());
        let behind_https = out
            .external_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if public && !behind_https {
            w.push(
                "http: registry:2 took passwords over plain HTTP here; berth refuses them from \
                 other machines. Serve TLS (tls.mode = \"self-signed\", \"acme\" or \"files\"), \
                 or behind a TLS proxy set http.external_url = \"https://...\" and \
                 http.trusted_proxies, or (not recommended) auth.insecure_allow_plaintext = true"
                    .into(),
            );
        }
    }
    let root = &out.storage_root;
    let in_state_dir = root == "/var/lib/berth" || root.starts_with("/var/lib/berth/");
    if !in_state_dir && out.s3.is_none() {
        w.push(format!(
            "storage.root: {root} is outside /var/lib/berth: the packaged service may write \
             there only with `systemctl edit berth` -> [Service] ReadWritePaths={root}, and the \
             files must belong to it: chown -R berth:berth {root}"
        ));
    }
    let outside: Vec<&str> = [
        out.copied(HTPASSWD_PATH),
        out.tls_certificate.as_ref(),
        out.tls_key.as_ref(),
        out.copied("auth.token.rootcertbundle"),
        out.copied("auth.token.jwks"),
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .filter(|p| !p.starts_with("/etc/berth/"))
    .collect();
    if !outside.is_empty() {
        w.push(format!(
            "berth runs as user berth and must be able to read {} (chgrp berth and chmod 0640, \
             or copy them to /etc/berth)",
            outside.join(", ")
        ));
    }
}

/// A Go duration (`90s`, `1m30s`, `1.5h`, `250ms`) in milliseconds.
fn go_duration(s: &str) -> Option<u128> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let (num, tail) = rest.split_at(n);
        let value: f64 = num.parse().ok()?;
        let u = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let ms = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += value * ms;
        rest = tail;
    }
    if s.is_empty() || !total.is_finite() || total > 1e15 {
        return None;
    }
    Some(total.round() as u128)
}

/// `:5000` (every address), `localhost:5000`, `10.0.0.5:443`, `[::]:5000`.
fn listen_addr(raw: &str, w: &mut Vec<String>) -> String {
    let (host, port) = raw.rsplit_once(':').unwrap_or((raw, ""));
    let port: u16 = match port.parse() {
        Ok(p) => p,
        Err(_) => {
            w.push(format!("http.addr: {raw:?} has no port; using 5000"));
            5000
        }
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                w.push(format!(
                    "http.addr: {raw:?}: berth listens on addresses, not names; using every \
                     address (0.0.0.0:{port})"
                ));
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        }
    };
    SocketAddr::new(ip, port).to_string()
}

/// The `appliance.toml` text: the notes as comments on top, then the settings.
fn render(out: &Out, warnings: &[String], env_used: &[String]) -> String {
    let mut doc = DocumentMut::new();
    let mut head = String::from(
        "# appliance.toml translated from a registry:2 (distribution) configuration by\n\
         # `berth config import-distribution`. Check it: berth config check FILE\n",
    );
    if !env_used.is_empty() {
        head.push_str(&comment(&format!(
            "Environment applied: {}",
            env_used.join(", ")
        )));
    }
    if !warnings.is_empty() {
        head.push_str("#\n# Not translated, or to review:\n");
        for w in warnings {
            head.push_str(&comment(&format!("  - {w}")));
        }
    }
    head.push('\n');
    doc.decor_mut().set_prefix(head);

    let mut http = Table::new();
    http.insert("listen", list(&out.http_listen));
    set(
        &mut http,
        "redirect_listen",
        out.redirect_listen.as_deref().map(list),
    );
    set(
        &mut http,
        "external_url",
        out.external_url.as_deref().map(text),
    );
    set(
        &mut http,
        "shutdown_grace",
        out.shutdown_grace.as_deref().map(text),
    );
    doc.insert("http", Item::Table(http));

    let mut tls = Table::new();
    tls.insert("mode", text(out.tls_mode));
    set(&mut tls, "listen", out.tls_listen.as_deref().map(list));
    if !out.tls_hostnames.is_empty() {
        tls.insert("hostnames", list(&out.tls_hostnames));
    }
    set(
        &mut tls,
        "certificate",
        out.tls_certificate.as_deref().map(text),
    );
    set(&mut tls, "key", out.tls_key.as_deref().map(text));
    set(&mut tls, "min_version", out.min_version.map(text));
    if out.tls_mode == "acme" {
        let mut acme = Table::new();
        set(
            &mut acme,
            "directory_url",
            out.acme_directory_url.as_deref().map(text),
        );
        set(&mut acme, "email", out.acme_email.as_deref().map(text));
        set(
            &mut acme,
            "challenges",
            out.acme_challenges.as_deref().map(list),
        );
        tls.insert("acme", Item::Table(acme));
    }
    doc.insert("tls", Item::Table(tls));

    let mut storage = Table::new();
    if out.s3.is_some() {
        storage.insert("driver", text("s3"));
    } else {
        storage.insert("root", text(&out.storage_root));
    }
    storage.insert(
        "delete_enabled",
        toml_edit::value(out.delete_enabled && !out.read_only),
    );
    if let Some(redirect) = out.s3 {
        let mut s3 = Table::new();
        for (key, berth) in [
            ("endpoint", "storage.s3.endpoint"),
            ("region", "storage.s3.region"),
            ("bucket", "storage.s3.bucket"),
            ("prefix", "storage.s3.prefix"),
            ("access_key_id", "storage.s3.access_key_id"),
            ("part_size", "storage.s3.part_size"),
        ] {
            // A prefix keeps registry:2's spelling ("/registry"): berth ignores the
            // slashes at its ends, as registry:2 does.
            if let Some(v) = out.copied(berth) {
                s3.insert(key, text(v));
            }
        }
        s3.insert(
            "path_style",
            toml_edit::value(
                out.copied("storage.s3.path_style")
                    .is_some_and(|v| v == "true"),
            ),
        );
        s3.insert("redirect", toml_edit::value(redirect));
        storage.insert("s3", Item::Table(s3));
    }
    doc.insert("storage", Item::Table(storage));

    let mut state = Table::new();
    state.insert_formatted(
        &commented(
            "dir",
            "berth's own state: its local CA, ACME account and keys.",
        ),
        text("/var/lib/berth/state"),
    );
    doc.insert("state", Item::Table(state));

    if let Some(n) = out.page_max {
        let mut limits = Table::new();
        limits.insert("page_max", toml_edit::value(i64::from(n)));
        doc.insert("limits", Item::Table(limits));
    }

    if !out.foreign_allow.is_empty() || !out.foreign_deny.is_empty() {
        let mut manifests = Table::new();
        manifests.insert("foreign_urls_allow", list(&out.foreign_allow));
        manifests.insert("foreign_urls_deny", list(&out.foreign_deny));
        doc.insert("manifests", Item::Table(manifests));
    }

    let mut auth = Table::new();
    auth.insert("mode", text(out.auth_mode));
    if out.auth_mode == "htpasswd" {
        let mut htpasswd = Table::new();
        put_copied(&mut htpasswd, out, "auth.htpasswd");
        auth.insert("htpasswd", Item::Table(htpasswd));
        if out.read_only {
            let mut rule = Table::new();
            rule.decor_mut().set_prefix(format!(
                "\n{}",
                comment("storage.maintenance.readonly: every user may pull, nobody may push.")
            ));
            for key in ["repositories", "users"] {
                rule.insert(key, list(&["*".to_owned()]));
            }
            rule.insert("actions", list(&["pull".to_owned()]));
            let mut rules = ArrayOfTables::new();
            rules.push(rule);
            auth.insert("rules", Item::ArrayOfTables(rules));
        }
    }
    if let Some(algorithms) = &out.token {
        let mut token = Table::new();
        token.insert_formatted(
            &commented(
                "issuer",
                "An external token server; berth verifies its tokens.",
            ),
            text("external"),
        );
        put_copied(&mut token, out, "auth.token");
        if !algorithms.is_empty() {
            let names: Vec<String> = algorithms.iter().map(|a| a.name().to_owned()).collect();
            token.insert("algorithms", list(&names));
        }
        auth.insert("token", Item::Table(token));
    }
    doc.insert("auth", Item::Table(auth));

    if let Some((name, url, username)) = &out.proxy {
        let mut up = Table::new();
        up.decor_mut().set_prefix(format!(
            "\n{}",
            comment("registry:2's proxy: this upstream serves the names not stored here.")
        ));
        up.insert("name", text(name));
        up.insert("url", text(url));
        up.insert("prefix", text("mirror"));
        up.insert("default", toml_edit::value(true));
        set(&mut up, "username", username.as_deref().map(text));
        let mut ups = ArrayOfTables::new();
        ups.push(up);
        let mut proxy = Table::new();
        proxy.insert("upstreams", Item::ArrayOfTables(ups));
        doc.insert("proxy", Item::Table(proxy));
    }

    if out.log_level.is_some() || out.log_format.is_some() {
        let mut log = Table::new();
        set(&mut log, "level", out.log_level.as_deref().map(text));
        set(&mut log, "format", out.log_format.map(text));
        doc.insert("log", Item::Table(log));
    }
    doc.to_string()
}

/// The copied settings ([`Out::copy`]) of the `config.yml` section `section`, in the
/// distribution table's order, into the berth table their keys name.
fn put_copied(table: &mut Table, out: &Out, section: &str) {
    for (_, s) in distribution::settings_in(section) {
        if let Some(v) = out.copied(s.berth) {
            let key = s.berth.rsplit('.').next().unwrap_or(s.berth);
            table.insert(key, text(v));
        }
    }
}

/// Sets `key` in `t` when there is a value.
fn set(t: &mut Table, key: &str, v: Option<Item>) {
    if let Some(v) = v {
        t.insert(key, v);
    }
}

fn text(s: &str) -> Item {
    toml_edit::value(s)
}

fn list(items: &[String]) -> Item {
    Item::Value(Value::Array(
        items.iter().map(String::as_str).collect::<Array>(),
    ))
}

/// A key with a comment line above it.
fn commented(key: &str, note: &str) -> Key {
    let mut decor = Decor::default();
    decor.set_prefix(comment(note));
    Key::new(key).with_leaf_decor(decor)
}

/// `# note` as one comment line: line breaks become spaces, and other control characters
/// (which a TOML comment may not hold) are written as escapes.
fn comment(note: &str) -> String {
    let mut line = String::from("# ");
    for c in note.chars() {
        match c {
            '\n' | '\r' => line.push(' '),
            '\t' => line.push(c),
            c if c.is_control() => line.extend(c.escape_unicode()),
            c => line.push(c),
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, Config, TlsMode};
    use std::path::PathBuf;

    /// /etc/docker/registry/config.yml of Debian 12's docker-registry 2.8.2+ds1-1.
    const DEBIAN_CONFIG: &str = "\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

    /// The translation parses as a berth configuration and passes its checks.
    fn config(text: &str) -> Config {
        let cfg: Config = toml::from_str(text)
            .unwrap_or_else(|e| panic!("not a valid appliance.toml: {e}\n{text}"));
        cfg.validate("imported")
            .unwrap_or_else(|e| panic!("refused by validate: {e}\n{text}"));
        cfg
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn warned(warnings: &[String], what: &str) -> bool {
        warnings.iter().any(|w| w.contains(what))
    }

    #[test]
    fn debian_docker_registry_config() {
        let (text, warnings) = import_distribution(DEBIAN_CONFIG).expect("translates");
        let cfg = config(&text);
        assert_eq!(cfg.storage.root, PathBuf::from("/var/lib/docker-registry"));
        assert!(cfg.storage.delete_enabled);
        assert_eq!(
            cfg.http.listen,
            vec!["0.0.0.0:5000".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(cfg.tls.mode, TlsMode::Off);
        assert_eq!(cfg.auth.mode, AuthMode::Htpasswd);
        assert_eq!(cfg.auth.htpasswd.realm, "basic-realm");
        assert_eq!(
            cfg.auth.htpasswd.path,
            PathBuf::from("/etc/docker/registry")
        );
        assert_eq!(cfg.state.dir, PathBuf::from("/var/lib/berth/state"));
        for what in [
            "log.fields",
            "storage.cache",
            "http.headers",
            "health",
            "plain HTTP",
            "ReadWritePaths=/var/lib/docker-registry",
            "/etc/docker/registry",
        ] {
            assert!(
                warned(&warnings, what),
                "no warning about {what}: {warnings:#?}"
            );
        }
        // The warnings are in the file too, as comments.
        assert!(text.contains("#   - log.fields: not translated"), "{text}");
    }

    #[test]
    fn compose_environment_over_the_image_config() {
        let vars = env(&[
            ("REGISTRY_HTTP_ADDR", "0.0.0.0:443"),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", "/certs/domain.crt"),
            ("REGISTRY_HTTP_TLS_KEY", "/certs/domain.key"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
            ("PATH", "/usr/bin"),
        ]);
        let (text, warnings) = import_distribution_env(None, &vars).expect("translates");
        let cfg = config(&text);
        assert_eq!(cfg.tls.mode, TlsMode::Files);
        assert_eq!(
            cfg.tls.certificate,
            Some(PathBuf::from("/certs/domain.crt"))
        );
        assert_eq!(cfg.tls.key, Some(PathBuf::from("/certs/domain.key")));
        assert_eq!(
            cfg.tls.listen,
            vec!["0.0.0.0:443".parse::<SocketAddr>().expect("addr")]
        );
        assert!(cfg.http.listen.is_empty());
        assert!(cfg.http.redirect_listen.is_empty());
        assert_eq!(cfg.auth.mode, AuthMode::Htpasswd);
        assert_eq!(cfg.auth.htpasswd.path, PathBuf::from("/auth/htpasswd"));
        assert_eq!(cfg.auth.htpasswd.realm, "Registry Realm");
        // The image's own rootdirectory.
        assert_eq!(cfg.storage.root, PathBuf::from("/var/lib/registry"));
        assert!(cfg.storage.delete_enabled);
        assert!(
            text.contains(
                "# Environment applied: REGISTRY_AUTH, REGISTRY_AUTH_HTPASSWD_PATH, \
                 REGISTRY_AUTH_HTPASSWD_REALM, REGISTRY_HTTP_ADDR, REGISTRY_HTTP_TLS_CERTIFICATE, \
                 REGISTRY_HTTP_TLS_KEY, REGISTRY_STORAGE_DELETE_ENABLED\n"
            ),
            "{text}"
        );
        assert!(warned(&warnings, "/certs/domain.key"), "{warnings:#?}");
    }

    #[test]
    fn compose_defaults_alone() {
        let (text, warnings) = import_distribution_env(None, &[]).expect("translates");
        let cfg = config(&text);
        assert_eq!(
            cfg.http.listen,
            vec!["0.0.0.0:5000".parse::<SocketAddr>().expect("addr")]
        );
        // registry:2 keeps deletes off by default, and has no authentication.
        assert!(!cfg.storage.delete_enabled);
        assert_eq!(cfg.auth.mode, AuthMode::None);
        assert!(warned(&warnings, "no authentication"), "{warnings:#?}");
    }

    #[test]
    fn lets_encrypt() {
        let yaml = "\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/berth
http:
  addr: :443
  host: https://registry.example.com
  draintimeout: 1m30s
  tls:
    minimumtls: tls1.3
    letsencrypt:
      cachefile: /etc/docker/registry/le.json
      email: ops@example.com
      hosts: [registry.example.com]
auth:
  htpasswd:
    realm: r
    path: /etc/berth/htpasswd
log:
  level: warning
  formatter: json
";
        let (text, warnings) = import_distribution(yaml).expect("translates");
        let cfg = config(&text);
        assert_eq!(cfg.tls.mode, TlsMode::Acme);
        assert_eq!(cfg.tls.hostnames, vec!["registry.example.com".to_owned()]);
        assert_eq!(cfg.tls.acme.email.as_deref(), Some("ops@example.com"));
        assert_eq!(cfg.tls.acme.challenges, vec!["tls-alpn-01".to_owned()]);
        assert_eq!(
            cfg.http.external_url.as_deref(),
            Some("https://registry.example.com")
        );
        assert_eq!(cfg.http.shutdown_grace.to_string(), "90s");
        assert_eq!(cfg.log.level, "warn");
        assert_eq!(cfg.log.format, crate::config::LogFormat::Json);
        assert!(warned(&warnings, "cachefile"), "{warnings:#?}");
        // Everything under /etc/berth and /var/lib/berth: nothing to chown.
        assert!(!warned(&warnings, "ReadWritePaths"), "{warnings:#?}");
        assert!(!warned(&warnings, "must be able to read"), "{warnings:#?}");
    }

    #[test]
    fn an_s3_section_becomes_the_s3_driver() {
        let yaml = "storage:\n  s3:\n    bucket: images\n    region: eu-west-1\n    accesskey: AKIAEXAMPLE\n    secretkey: not-written\n    regionendpoint: http://127.0.0.1:3900\n    rootdirectory: /registry\n    chunksize: 10485760\n  redirect:\n    disable: true\n";
        let (text, warnings) = import_distribution(yaml).expect("translates");
        let cfg = config(&text);
        assert_eq!(cfg.storage.driver, crate::config::StorageDriver::S3);
        let s3 = &cfg.storage.s3;
        assert_eq!(s3.bucket, "images");
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s3.prefix.trim_matches('/'), "registry");
        assert_eq!(s3.access_key_id.as_deref(), Some("AKIAEXAMPLE"));
        assert_eq!(s3.part_size.0, 10 << 20);
        assert!(
            s3.path_style,
            "a regionendpoint means path style in registry:2 2.8"
        );
        assert!(!s3.redirect, "storage.redirect.disable");
        assert!(
            !text.contains("not-written"),
            "the secret stays out: {text}"
        );
        assert!(warned(&warnings, "secret_access_key_file"), "{warnings:#?}");
        assert!(!warned(&warnings, "ReadWritePaths"), "{warnings:#?}");
        // Without redirect.disable, registry:2 redirects blob downloads: so does berth.
        let (text, _) =
            import_distribution("storage:\n  s3:\n    bucket: b\n    region: us-east-1\n")
                .expect("translates");
        let cfg = config(&text);
        assert!(cfg.storage.s3.redirect && !cfg.storage.s3.path_style);
    }

    #[test]
    fn other_storage_drivers_are_errors() {
        // s3 translates (see the test below); others are refused.
        let e = import_distribution("storage:\n  azure: {}\n").expect_err("refused");
        assert!(e.contains("storage.azure"), "{e}");
        let e = import_distribution("storage:\n  inmemory: {}\n").expect_err("refused");
        assert!(e.contains("storage.inmemory"), "{e}");
    }

    #[test]
    fn a_proxy_section_becomes_the_default_upstream() {
        let (text, warnings) = import_distribution(
            "proxy:\n  remoteurl: https://registry-1.docker.io\n  username: me\n  password: s3cret\n  ttl: 168h\nstorage:\n  filesystem: {}\n",
        )
        .expect("translates");
        assert!(
            !text.contains("s3cret"),
            "the password is never written:\n{text}"
        );
        let cfg = config(&text);
        let up = &cfg.proxy.upstreams[0];
        assert_eq!(
            (
                up.name.as_str(),
                up.url.to_string().trim_end_matches('/'),
                up.default
            ),
            ("docker.io", "https://registry-1.docker.io", true)
        );
        assert_eq!(up.username.as_deref(), Some("me"));
        for key in ["proxy.password", "proxy.ttl", "refuses pushes"] {
            assert!(
                warnings.iter().any(|w| w.contains(key)),
                "{key}: {warnings:?}"
            );
        }
        // The same from REGISTRY_PROXY_REMOTEURL, with a port kept in the name.
        let (text, _) = import_distribution_env(
            Some("storage:\n  filesystem: {}\n"),
            &env(&[("REGISTRY_PROXY_REMOTEURL", "https://mirror.lan:5443")]),
        )
        .expect("translates");
        assert_eq!(config(&text).proxy.upstreams[0].name, "mirror.lan:5443");
        let e = import_distribution("proxy:\n  username: me\nstorage:\n  filesystem: {}\n")
            .expect_err("no url");
        assert!(e.contains("proxy.remoteurl"), "{e}");
        let e = import_distribution(
            "proxy:\n  remoteurl: ftp://x.example\nstorage:\n  filesystem: {}\n",
        )
        .expect_err("not http");
        assert!(e.contains("proxy.remoteurl"), "{e}");
    }

    #[test]
    fn unsupported_sections_are_reported() {
        let yaml = "\
storage:
  filesystem:
    rootdirectory: /srv/registry
  maintenance:
    readonly:
      enabled: true
    uploadpurging:
      enabled: false
redis:
  addr: localhost:6379
notifications:
  endpoints:
    - name: hook
      url: https://example.com/hook
auth:
  silly:
    realm: silly-realm
    service: silly-service
http:
  addr: 127.0.0.1:5001
  secret: s3cr3t
  mystery: 1
validation:
  manifests:
    urls:
      allow: ['^https?://([^/]+\\.)*example\\.com/']
catalog:
  maxentries: 500
frobnicate: true
";
        let (text, warnings) = import_distribution(yaml).expect("translates");
        let cfg = config(&text);
        for what in [
            "redis",
            "notifications",
            "auth.silly",
            "uploadpurging",
            "readonly",
            "http.secret",
            "http.mystery",
            "frobnicate",
        ] {
            assert!(
                warned(&warnings, what),
                "no warning about {what}: {warnings:#?}"
            );
        }
        // An unsupported auth scheme fails closed, read-only becomes a pull-only rule.
        assert_eq!(cfg.auth.mode, AuthMode::Htpasswd);
        assert_eq!(cfg.auth.htpasswd.path, PathBuf::from("/etc/berth/htpasswd"));
        assert_eq!(cfg.auth.rules.len(), 1);
        assert_eq!(cfg.auth.rules[0].actions, vec!["pull".to_owned()]);
        assert!(!cfg.storage.delete_enabled);
        assert_eq!(cfg.manifests.foreign_urls_allow.len(), 1);
        assert_eq!(cfg.limits.page_max, 500);
        // Loopback plain HTTP: no warning about passwords in clear.
        assert!(!warned(&warnings, "plain HTTP"), "{warnings:#?}");
    }

    #[test]
    fn external_token_server() {
        let yaml = "\
storage:
  filesystem:
    rootdirectory: /var/lib/berth
http:
  addr: :443
  tls:
    certificate: /etc/berth/tls/cert.pem
    key: /etc/berth/tls/key.pem
auth:
  token:
    realm: https://auth.example.com/token
    service: registry.example.com
    issuer: auth.example.com
    rootcertbundle: /etc/docker/registry/token-bundle.pem
    signingalgorithms: [ES256, HS256]
    autoredirect: false
";
        let (text, warnings) = import_distribution(yaml).expect("translates");
        let cfg = config(&text);
        assert_eq!(cfg.auth.mode, AuthMode::Token);
        let t = &cfg.auth.token;
        assert_eq!(t.issuer, crate::config::TokenIssuer::External);
        assert_eq!(t.realm.as_deref(), Some("https://auth.example.com/token"));
        assert_eq!(t.service, "registry.example.com");
        assert_eq!(t.issuer_name, "auth.example.com");
        assert_eq!(
            t.rootcertbundle,
            Some(PathBuf::from("/etc/docker/registry/token-bundle.pem"))
        );
        assert_eq!(t.algorithms, vec![TokenAlg::Es256]);
        for what in ["HS256", "autoredirect", "token-bundle.pem"] {
            assert!(
                warned(&warnings, what),
                "no warning about {what}: {warnings:#?}"
            );
        }
        let e = import_distribution(
            "storage:\n  filesystem: {}\nauth:\n  token:\n    realm: https://a.example.com/token\n",
        )
        .expect_err("no keys");
        assert!(e.contains("rootcertbundle"), "{e}");
    }

    #[test]
    fn addresses_and_durations() {
        let mut w = Vec::new();
        assert_eq!(listen_addr(":5000", &mut w), "0.0.0.0:5000");
        assert_eq!(listen_addr("localhost:5000", &mut w), "127.0.0.1:5000");
        assert_eq!(listen_addr("[::]:443", &mut w), "[::]:443");
        assert_eq!(listen_addr("10.1.2.3:80", &mut w), "10.1.2.3:80");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(listen_addr("registry.lan:5000", &mut w), "0.0.0.0:5000");
        assert_eq!(w.len(), 1);
        assert_eq!(go_duration("60s"), Some(60_000));
        assert_eq!(go_duration("1m30s"), Some(90_000));
        assert_eq!(go_duration("1.5h"), Some(5_400_000));
        assert_eq!(go_duration("250ms"), Some(250));
        assert_eq!(go_duration("0"), Some(0));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration("soon"), None);
    }

    #[test]
    fn environment_values_and_lists() {
        let vars = env(&[
            ("REGISTRY_HTTP_ADDR", ":443"),
            ("REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE", "/le/cache"),
            ("REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0", "a.example.com"),
            ("REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_1", "b.example.com"),
            ("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: false}"),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
        ]);
        let (text, _) = import_distribution_env(None, &vars).expect("translates");
        let cfg = config(&text);
        assert_eq!(cfg.tls.mode, TlsMode::Acme);
        assert_eq!(
            cfg.tls.hostnames,
            vec!["a.example.com".to_owned(), "b.example.com".to_owned()]
        );
        assert!(!cfg.storage.delete_enabled);
        let mut root = parse_yaml("http: {}").expect("yaml");
        apply_env(
            &mut root,
            "REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS",
            "[c.example.com]",
        )
        .expect("applies");
        let hosts = root
            .take("http")
            .and_then(|mut h| h.take("tls"))
            .and_then(|mut t| t.take("letsencrypt"))
            .and_then(|mut l| l.take("hosts"))
            .map(|h| h.texts());
        assert_eq!(hosts, Some(vec!["c.example.com".to_owned()]));
    }

    #[test]
    fn env_files() {
        let vars = parse_env_file(
            "# compose .env\nREGISTRY_AUTH=htpasswd\nexport REGISTRY_AUTH_HTPASSWD_REALM=\"Registry Realm\"\n\nREGISTRY_HTTP_ADDR=':5000'\n",
        );
        assert_eq!(
            vars,
            env(&[
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
                ("REGISTRY_HTTP_ADDR", ":5000"),
            ])
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(import_distribution("http: [unclosed").is_err());
        assert!(import_distribution("- a\n- b\n").is_err());
        assert!(import_distribution("storage: {}\n").is_err());
        let e = import_distribution(
            "storage:\n  filesystem: {}\nhttp:\n  tls:\n    certificate: /c.pem\n",
        )
        .expect_err("refused");
        assert!(e.contains("certificate and key"), "{e}");
    }

    #[test]
    fn toml_strings_are_escaped() {
        let (text, _) =
            import_distribution("storage:\n  filesystem:\n    rootdirectory: '/srv/a \"b\"'\n")
                .expect("translates");
        assert_eq!(config(&text).storage.root, PathBuf::from("/srv/a \"b\""));
        // Quotes, backslashes, line breaks and control characters, in a value and in the
        // notes (comments) that repeat it: the file still reads back to the same text.
        let nasty = "/srv/a\"b\\c\nd\te\u{1}f";
        let yaml = format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n",
            serde_json::to_string(nasty).expect("json")
        );
        let (text, warnings) = import_distribution(&yaml).expect("translates");
        assert!(warned(&warnings, "ReadWritePaths"), "{warnings:#?}");
        assert_eq!(config(&text).storage.root, PathBuf::from(nasty), "{text}");
    }

    /// Each setting of the distribution table means the same to both of its readers: the
    /// run-time overrides (a `REGISTRY_*` variable over the built-in defaults) and the
    /// importer (the same variable over the registry:2 image's configuration).
    #[test]
    fn run_time_variables_and_the_importer_agree() {
        fn setting(cfg: &Config, berth: &str) -> Option<toml::Value> {
            let all = toml::Value::try_from(cfg).expect("serializes");
            berth.split('.').try_fold(&all, |v, k| v.get(k)).cloned()
        }
        for s in distribution::SETTINGS {
            let var = format!(
                "REGISTRY_{}",
                s.distribution.replace('.', "_").to_uppercase()
            );
            // What the setting needs beside it to be a working configuration.
            let mut vars: Vec<(String, String)> = match s.distribution {
                "http.tls.certificate" | "http.tls.key" => env(&[
                    ("REGISTRY_HTTP_TLS_CERTIFICATE", "/etc/berth/tls/cert.pem"),
                    ("REGISTRY_HTTP_TLS_KEY", "/etc/berth/tls/key.pem"),
                ]),
                d if d.starts_with("http.tls.letsencrypt.") => env(&[
                    ("REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE", "/le.json"),
                    ("REGISTRY_HTTP_TLS_LETSENCRYPT_EMAIL", "ops@example.com"),
                    (
                        "REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0",
                        "registry.example.com",
                    ),
                ]),
                d if d.starts_with("auth.htpasswd.") => env(&[("REGISTRY_AUTH", "htpasswd")]),
                "storage" => env(&[("REGISTRY_STORAGE_S3_BUCKET", "images")]),
                d if d.starts_with("storage.s3.") => env(&[
                    ("REGISTRY_STORAGE", "s3"),
                    ("REGISTRY_STORAGE_S3_BUCKET", "images"),
                ]),
                d if d.starts_with("auth.token.") => env(&[
                    ("REGISTRY_AUTH", "token"),
                    (
                        "REGISTRY_AUTH_TOKEN_REALM",
                        "https://auth.example.com/token",
                    ),
                    ("REGISTRY_AUTH_TOKEN_JWKS", "/etc/berth/jwks.json"),
                ]),
                _ => Vec::new(),
            };
            let samples: &[&str] = match (s.kind, s.distribution) {
                (Kind::Listen, _) => &["127.0.0.1:5443", ":5000"],
                (Kind::Flag, _) => &["true", "false"],
                (Kind::List, _) => &["registry.example.com"],
                (Kind::Text, "auth") => &["htpasswd", "token"],
                (Kind::Text, "storage") => &["s3"],
                (Kind::Text, "storage.s3.chunksize") => &["10485760"],
                (Kind::Text, "storage.s3.regionendpoint") => &["http://127.0.0.1:3900"],
                (Kind::Text, "http.tls.letsencrypt.email") => &["hostmaster@example.com"],
                (Kind::Text, _) => &["/etc/berth/sample"],
            };
            let name = if s.kind == Kind::List {
                format!("{var}_0")
            } else {
                var
            };
            for sample in samples {
                vars.retain(|(k, _)| *k != name);
                vars.push((name.clone(), (*sample).to_owned()));
                if s.distribution == "auth" && *sample == "token" {
                    vars.extend(env(&[
                        (
                            "REGISTRY_AUTH_TOKEN_REALM",
                            "https://auth.example.com/token",
                        ),
                        ("REGISTRY_AUTH_TOKEN_JWKS", "/etc/berth/jwks.json"),
                    ]));
                }
                let run_time =
                    Config::load(None, &vars).unwrap_or_else(|e| panic!("{name}={sample}: {e}"));
                let (text, _) = import_distribution_env(None, &vars).expect("translates");
                let imported = config(&text);
                let what = format!("{name}={sample}, {}", s.berth);
                if s.kind == Kind::List {
                    // The importer names Let's Encrypt's hosts in tls.hostnames, which ACME
                    // certifies when tls.acme.hostnames is empty.
                    assert_eq!(
                        run_time.acme_hostnames(),
                        imported.acme_hostnames(),
                        "{what}"
                    );
                } else {
                    let value = setting(&run_time, s.berth);
                    assert!(value.is_some(), "{what}: not set");
                    assert_eq!(value, setting(&imported, s.berth), "{what}\n{text}");
                }
                if let Some((key, value)) = s.implies {
                    let want = Some(toml::Value::String(value.to_owned()));
                    assert_eq!(setting(&run_time, key), want, "{what}: {key}");
                    assert_eq!(setting(&imported, key), want, "{what}: {key}\n{text}");
                }
            }
        }
        // An address given with a certificate serves TLS, in both.
        let vars = env(&[
            ("REGISTRY_HTTP_ADDR", ":5443"),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", "/etc/berth/tls/cert.pem"),
            ("REGISTRY_HTTP_TLS_KEY", "/etc/berth/tls/key.pem"),
        ]);
        let run_time = Config::load(None, &vars).expect("loads");
        let (text, _) = import_distribution_env(None, &vars).expect("translates");
        let imported = config(&text);
        assert_eq!(run_time.listeners(), imported.listeners());
        assert_eq!(run_time.tls.listen, imported.tls.listen);
        assert!(run_time.http.listen.is_empty() && imported.http.listen.is_empty());
    }

    #[test]
    fn notes_are_valid_comments() {
        let (text, warnings) =
            import_distribution("storage:\n  filesystem:\n    rootdirectory: \"/srv/a\\u0001b\"\n")
                .expect("translates");
        assert!(warned(&warnings, "/srv/a\u{1}b"), "{warnings:#?}");
        // The control character is in the value, escaped, and spelt out in the comment.
        assert_eq!(config(&text).storage.root, PathBuf::from("/srv/a\u{1}b"));
        assert!(text.contains("ReadWritePaths=/srv/a\\u{1}b"), "{text}");
    }
}
