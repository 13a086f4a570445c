//! The rules a configuration must keep beyond what its types say: settings that only make
//! sense together (TLS files, ACME, token issuers, PROXY headers), ranges, references
//! between sections (rule groups), and the webhook endpoints' names and headers.

use super::{AuthMode, Cidr, Config, ConfigError, HttpUrl, Notifications, TlsPlan, TokenIssuer};
use std::collections::HashSet;

impl Config {
    /// Checks what types alone cannot.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.listeners().is_empty() {
            return Err(invalid(
                "http.listen",
                "at least one address is needed, e.g. [\"127.0.0.1:5000\"]".into(),
            ));
        }
        if self.tls_plan() == TlsPlan::Files
            && (self.tls.certificate.is_none() || self.tls.key.is_none())
        {
            return Err(invalid(
                "tls.certificate",
                "certificate files need both tls.certificate and tls.key (or use tls.mode = \"self-signed\")".into(),
            ));
        }
        if self.storage.driver == super::StorageDriver::S3 {
            let s3 = &self.storage.s3;
            if s3.bucket.trim().is_empty() {
                return Err(invalid(
                    "storage.s3.bucket",
                    "the s3 driver needs a bucket: set storage.s3.bucket (REGISTRY_STORAGE_S3_BUCKET)".into(),
                ));
            }
            if let Some(e) = &s3.endpoint {
                let ok = (e.starts_with("http://") || e.starts_with("https://"))
                    && e.split("://")
                        .nth(1)
                        .is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
                if !ok {
                    return Err(invalid(
                        "storage.s3.endpoint",
                        format!("{e:?} is not a URL like \"http://127.0.0.1:3900\" or \"https://s3.example.com\""),
                    ));
                }
            }
            if s3.part_size.0 < 5 << 20 || s3.part_size.0 > 5 << 30 {
                return Err(invalid(
                    "storage.s3.part_size",
                    "S3 parts are 5MiB to 5GiB: use e.g. \"8MiB\"".into(),
                ));
            }
            if s3.redirect_expiry.0 < std::time::Duration::from_secs(10)
                || s3.redirect_expiry.0 > std::time::Duration::from_secs(7 * 24 * 3600)
            {
                return Err(invalid(
                    "storage.s3.redirect_expiry",
                    "a presigned URL is valid 10s to 7d: use e.g. \"20m\"".into(),
                ));
            }
        }
        for p in &self.http.trusted_proxies {
            p.parse::<Cidr>()
                .map_err(|e| invalid("http.trusted_proxies", format!("{p:?}: {e}")))?;
        }
        if let Some(u) = &self.http.external_url {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && !u.trim_end_matches('/').contains(['?', '#'])
                && u.split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return Err(invalid(
                    "http.external_url",
                    format!("{u:?} is not a URL like \"https://registry.example.com\""),
                ));
            }
        }
        if self.tls_plan() == TlsPlan::Acme {
            if self.acme_hostnames().is_empty() {
                return Err(invalid(
                    "tls.acme.hostnames",
                    "ACME needs the names to certify: set tls.hostnames (or tls.acme.hostnames), e.g. [\"registry.example.com\"]".into(),
                ));
            }
            for h in self.acme_hostnames() {
                if h.parse::<std::net::IpAddr>().is_ok() || h.contains('*') {
                    return Err(invalid(
                        "tls.acme.hostnames",
                        format!(
                            "{h:?}: ACME certifies public DNS names (no addresses or wildcards)"
                        ),
                    ));
                }
            }
            let a = &self.tls.acme;
            if a.challenges.is_empty()
                || a.challenges
                    .iter()
                    .any(|c| c != "http-01" && c != "tls-alpn-01")
            {
                return Err(invalid(
                    "tls.acme.challenges",
                    "a list of \"http-01\" and/or \"tls-alpn-01\"".into(),
                ));
            }
            if a.eab_kid.is_some() != a.eab_hmac_key_file.is_some() {
                return Err(invalid(
                    "tls.acme.eab_kid",
                    "external account binding needs both eab_kid and eab_hmac_key_file".into(),
                ));
            }
            if !a.directory().starts_with("https://") {
                return Err(invalid(
                    "tls.acme.directory_url",
                    format!(
                        "{:?}: an https:// URL, or \"production\" / \"staging\"",
                        a.directory_url
                    ),
                ));
            }
            if a.retry_min.0.is_zero() || a.retry_max.0 < a.retry_min.0 {
                return Err(invalid(
                    "tls.acme.retry_min",
                    "retry_min must be more than 0 and at most retry_max".into(),
                ));
            }
        }
        if self.auth.mode == AuthMode::Token {
            let t = &self.auth.token;
            if t.algorithms.is_empty() {
                return Err(invalid(
                    "auth.token.algorithms",
                    "list at least one algorithm, e.g. [\"ES256\", \"RS256\"]".into(),
                ));
            }
            if t.expiration.0.as_secs() < 10 {
                return Err(invalid(
                    "auth.token.expiration",
                    "must be at least \"10s\"".into(),
                ));
            }
            if t.issuer == TokenIssuer::External {
                if t.realm.is_none() {
                    return Err(invalid(
                        "auth.token.realm",
                        "an external token server needs its URL here, e.g. \"https://auth.example.com/token\"".into(),
                    ));
                }
                if t.rootcertbundle.is_none() && t.jwks.is_none() {
                    return Err(invalid(
                        "auth.token.rootcertbundle",
                        "an external token server needs its keys: set rootcertbundle (PEM certificates) or jwks (a JWKS file)".into(),
                    ));
                }
            }
        }
        for (i, r) in self.auth.rules.iter().enumerate() {
            let key = format!("auth.rules[{i}]");
            if r.repositories.is_empty() || r.users.is_empty() || r.actions.is_empty() {
                return Err(invalid(
                    &key,
                    "needs repositories, users and actions".into(),
                ));
            }
            if let Some(a) = r
                .actions
                .iter()
                .find(|a| !["pull", "push", "delete", "*"].contains(&a.as_str()))
            {
                return Err(invalid(
                    &key,
                    format!("action {a:?}: use \"pull\", \"push\", \"delete\" or \"*\""),
                ));
            }
            if let Some(g) = r
                .users
                .iter()
                .filter_map(|u| u.strip_prefix('@'))
                .find(|g| !self.auth.groups.contains_key(*g))
            {
                return Err(invalid(&key, format!("group @{g} is not in auth.groups")));
            }
        }
        if self.http.proxy_protocol && self.http.trusted_proxies.is_empty() {
            return Err(invalid(
                "http.proxy_protocol",
                "PROXY headers are only taken from http.trusted_proxies; list the load balancer there, e.g. [\"10.0.0.5\"]".into(),
            ));
        }
        if self.limits.connections_max == 0 {
            return Err(invalid(
                "limits.connections_max",
                "must be at least 1".into(),
            ));
        }
        // pingora reads at most 1 MiB of header and 256 fields; berth's caps sit below.
        if !(1024..1 << 20).contains(&self.limits.header_max.0) {
            return Err(invalid(
                "limits.header_max",
                "must be between \"1KiB\" and \"1023KiB\"".into(),
            ));
        }
        if !(16..=256).contains(&self.limits.header_count_max) {
            return Err(invalid(
                "limits.header_count_max",
                "must be between 16 and 256".into(),
            ));
        }
        if self.limits.page_max == 0 {
            return Err(invalid("limits.page_max", "must be at least 1".into()));
        }
        if self.limits.manifest_max.0 == 0 {
            return Err(invalid(
                "limits.manifest_max",
                "must be more than 0, e.g. \"4MiB\"".into(),
            ));
        }
        for (key, list) in [
            (
                "manifests.foreign_urls_allow",
                &self.manifests.foreign_urls_allow,
            ),
            (
                "manifests.foreign_urls_deny",
                &self.manifests.foreign_urls_deny,
            ),
        ] {
            for re in list {
                regex::Regex::new(re).map_err(|e| {
                    invalid(key, format!("{re:?} is not a regular expression: {e}"))
                })?;
            }
        }
        check_notifications(&self.notifications).map_err(|(key, m)| invalid(&key, m))?;
        check_proxy(&self.proxy).map_err(|(key, m)| invalid(&key, m))?;
        // Each run walks the whole store: back to back, that is all the disk would do.
        if !self.gc.interval.0.is_zero()
            && self.gc.interval.0 < std::time::Duration::from_millis(100)
        {
            return Err(invalid(
                "gc.interval",
                "must be \"0s\" (no schedule) or at least \"100ms\", e.g. \"24h\"".into(),
            ));
        }
        // Each run reads every blob.
        if !self.scrub.interval.0.is_zero() && self.scrub.interval.0.as_secs() < 1 {
            return Err(invalid(
                "scrub.interval",
                "must be \"0s\" (no schedule) or at least \"1s\", e.g. \"7d\"".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("{:?}: {e}", self.log.level)))?;
        Ok(())
    }
}

/// Checks `[proxy]`: names and prefixes unique, a prefix a valid repository name that no
/// other prefix contains, at most one default, a password only with a username.
fn check_proxy(p: &crate::config::Proxy) -> Result<(), (String, String)> {
    let mut names = HashSet::new();
    let mut defaults = 0;
    for (i, u) in p.upstreams.iter().enumerate() {
        let key = |k: &str| format!("proxy.upstreams[{i}].{k}");
        if u.name.is_empty() || u.name.contains(['/', ' ', '?', '&', '#']) {
            return Err((
                key("name"),
                format!(
                    "{:?} is not a registry host name, e.g. \"docker.io\"",
                    u.name
                ),
            ));
        }
        if !names.insert(u.name.as_str()) {
            return Err((key("name"), format!("{:?} names two upstreams", u.name)));
        }
        if u.prefix.parse::<crate::oci::RepositoryName>().is_err() {
            return Err((
                key("prefix"),
                format!(
                    "{:?} is not a repository name (lower-case letters, digits, '.', '_', '-', '/'), e.g. \"hub\"",
                    u.prefix
                ),
            ));
        }
        for (j, other) in p.upstreams.iter().enumerate().take(i) {
            let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
            if nested(&u.prefix, &other.prefix) || nested(&other.prefix, &u.prefix) {
                return Err((
                    key("prefix"),
                    format!(
                        "{:?} overlaps proxy.upstreams[{j}].prefix {:?}; each upstream needs its own prefix",
                        u.prefix, other.prefix
                    ),
                ));
            }
        }
        if u.password_file.is_some() && u.username.is_none() {
            return Err((
                key("username"),
                "password_file is set but username is not; set both, or neither for anonymous pulls".into(),
            ));
        }
        if u.ca.is_some() && !u.url.tls {
            return Err((
                key("ca"),
                "a CA file is only used for https:// upstreams".into(),
            ));
        }
        for r in &u.realms {
            if r.parse::<HttpUrl>().is_err() {
                return Err((
                    key("realms"),
                    format!("{r:?} is not an http(s) URL, e.g. \"https://auth.docker.io/token\""),
                ));
            }
        }
        if u.tag_ttl.0.is_zero() {
            return Err((
                key("tag_ttl"),
                "must be more than \"0s\" (every pull of a tag asks the upstream anyway), e.g. \"5m\"".into(),
            ));
        }
        defaults += usize::from(u.default);
        if defaults > 1 {
            return Err((
                key("default"),
                "only one upstream can be the default".into(),
            ));
        }
    }
    Ok(())
}

/// Headers berth sets itself on a webhook request (or that would break its framing).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
];

/// What `notifications.endpoints[].ignore_actions` may name: the actions of `notify`'s
/// events.
const EVENT_ACTIONS: &[&str] = &["push", "pull", "delete", "mount"];

/// Checks `[notifications]` beyond what types check; the error is (key, message), the key
/// like `notifications.endpoints[0].name`.
fn check_notifications(n: &Notifications) -> Result<(), (String, String)> {
    let mut names = HashSet::new();
    for (i, e) in n.endpoints.iter().enumerate() {
        let key = |k: &str| format!("notifications.endpoints[{i}].{k}");
        check_name(&e.name).map_err(|m| (key("name"), m))?;
        if !names.insert(e.name.as_str()) {
            return Err((
                key("name"),
                format!(
                    "{:?} names two endpoints; each needs its own name (it names its queue directory)",
                    e.name
                ),
            ));
        }
        if e.ca.is_some() && !e.url.tls {
            return Err((
                key("ca"),
                "a CA file is only used for https:// endpoints".into(),
            ));
        }
        for (name, value) in &e.headers {
            check_header(name, value).map_err(|m| (key("headers"), m))?;
        }
        if e.timeout.0.is_zero() {
            return Err((key("timeout"), "must be more than 0, e.g. \"5s\"".into()));
        }
        if e.backoff.0.is_zero() {
            return Err((key("backoff"), "must be more than 0, e.g. \"1s\"".into()));
        }
        if e.backoff_max.0 < e.backoff.0 {
            return Err((
                key("backoff_max"),
                "must be at least backoff, e.g. \"5m\"".into(),
            ));
        }
        if let Some(a) = e
            .ignore_actions
            .iter()
            .find(|a| !EVENT_ACTIONS.contains(&a.as_str()))
        {
            return Err((
                key("ignore_actions"),
                format!("{a:?}: use some of \"push\", \"pull\", \"delete\", \"mount\""),
            ));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: up to 64 letters, digits, '.', '_' and '-', not starting with '.' or '-' (it names the queue directory), e.g. \"hook\""
        ))
    }
}

/// A header berth may send: a valid name that berth does not set itself, and a valid
/// value. The value is never quoted in the message (it is often a secret).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let parsed = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&parsed.as_str()) {
        return Err(format!("{name} is set by berth and cannot be configured"));
    }
    http::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of {name} has characters a header cannot carry"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Duration, NotifyEndpoint};
    use super::*;

    #[test]
    fn mirror_upstreams_are_checked_with_their_keys() {
        let parse = |text: &str| -> Result<(), String> {
            let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
            cfg.validate("x.toml").map_err(|e| e.to_string())
        };
        let one = |extra: &str| {
            format!(
                "[[proxy.upstreams]]\nname = \"docker.io\"\nurl = \"https://registry-1.docker.io\"\nprefix = \"hub\"\n{extra}"
            )
        };
        parse(&one("")).expect("a plain upstream");
        parse(&one("default = true\ntag_ttl = \"1m\"")).expect("a default upstream");
        let refused = |text: String, key: &str| {
            let e = parse(&text).expect_err("refused");
            assert!(e.contains(key), "{key}: {e}");
        };
        refused(one("password_file = \"/p\""), "proxy.upstreams[0].username");
        refused(one("tag_ttl = \"0s\""), "proxy.upstreams[0].tag_ttl");
        refused(one("realms = [\"nope\"]"), "proxy.upstreams[0].realms");
        refused(
            one("ca = \"/ca.pem\"").replace("https://registry-1", "http://registry-1"),
            "proxy.upstreams[0].ca",
        );
        let bad_prefix = one("").replace("\"hub\"", "\"Hub\"");
        refused(bad_prefix, "proxy.upstreams[0].prefix");
        let second = |name: &str, prefix: &str, extra: &str| {
            format!(
                "{}[[proxy.upstreams]]\nname = \"{name}\"\nurl = \"https://ghcr.io\"\nprefix = \"{prefix}\"\n{extra}",
                one("default = true\n")
            )
        };
        parse(&second("ghcr.io", "ghcr", "")).expect("two upstreams");
        refused(second("docker.io", "ghcr", ""), "proxy.upstreams[1].name");
        refused(second("ghcr.io", "hub/x", ""), "proxy.upstreams[1].prefix");
        refused(
            second("ghcr.io", "ghcr", "default = true"),
            "proxy.upstreams[1].default",
        );
        assert!(
            parse(&one("colour = 1")).is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn bad_regex_is_refused_with_its_key() {
        let mut cfg = Config::default();
        cfg.manifests.foreign_urls_allow = vec!["(".into()];
        let e = cfg.validate("x.toml").expect_err("refused").to_string();
        assert!(e.contains("manifests.foreign_urls_allow"), "{e}");
    }

    #[test]
    fn proxies_and_the_external_url() {
        let mut cfg = Config::default();
        cfg.http.trusted_proxies = vec!["10.0.0.0/99".into()];
        assert!(cfg
            .validate("x")
            .expect_err("refused")
            .to_string()
            .contains("http.trusted_proxies"));
        cfg.http.trusted_proxies = Vec::new();
        cfg.http.external_url = Some("registry.example.com".into());
        assert!(cfg
            .validate("x")
            .expect_err("refused")
            .to_string()
            .contains("http.external_url"));
    }

    #[test]
    fn notification_endpoints() {
        fn check(eps: Vec<NotifyEndpoint>) -> Result<(), String> {
            check_notifications(&Notifications { endpoints: eps })
                .map_err(|(k, m)| format!("{k}: {m}"))
        }
        fn refused(ok: &NotifyEndpoint, change: impl Fn(&mut NotifyEndpoint)) -> String {
            let mut e = ok.clone();
            change(&mut e);
            check(vec![e]).expect_err("refused")
        }
        let ok = NotifyEndpoint::new("hook", "http://127.0.0.1:9/events".parse().expect("url"));
        assert_eq!(check(vec![ok.clone()]), Ok(()));
        let e = refused(&ok, |e| e.name = "../x".into());
        assert!(e.starts_with("notifications.endpoints[0].name"), "{e}");
        assert!(refused(&ok, |e| e.name = String::new()).contains(".name"));
        assert!(refused(&ok, |e| e.ca = Some("/ca.pem".into())).contains(".ca"));
        let https = |e: &mut NotifyEndpoint| {
            e.url = "https://hooks.example.com/".parse().expect("url");
            e.ca = Some("/ca.pem".into());
        };
        let mut with_ca = ok.clone();
        https(&mut with_ca);
        assert_eq!(check(vec![with_ca]), Ok(()));
        assert!(refused(&ok, |e| e.timeout = Duration::secs(0)).contains(".timeout"));
        assert!(refused(&ok, |e| e.backoff = Duration::secs(0)).contains(".backoff"));
        assert!(refused(&ok, |e| e.backoff_max =
            Duration(std::time::Duration::from_millis(1)))
        .contains(".backoff_max"));
        assert!(refused(&ok, |e| e.ignore_actions = vec!["pul".into()]).contains("\"pul\""));
        let e = refused(&ok, |e| {
            e.headers
                .insert("Authorization".into(), "Bearer s3cret\r\nX: y".into());
        });
        assert!(e.contains(".headers") && !e.contains("s3cret"), "{e}");
        let e = refused(&ok, |e| {
            e.headers.insert("Content-Length".into(), "1".into());
        });
        assert!(e.contains("set by berth"), "{e}");
        let e = check(vec![ok.clone(), ok.clone()]).expect_err("duplicate");
        assert!(e.starts_with("notifications.endpoints[1].name"), "{e}");
        // Config::validate runs the same checks, with the origin and key.
        let mut cfg = Config::default();
        cfg.notifications.endpoints = vec![ok.clone(), ok];
        let e = cfg.validate("x.toml").expect_err("refused").to_string();
        assert!(
            e.contains("x.toml") && e.contains("notifications.endpoints[1].name"),
            "{e}"
        );
    }

    #[test]
    fn token_algorithms_are_needed_in_token_mode() {
        let mut cfg = Config::default();
        cfg.auth.mode = AuthMode::Token;
        cfg.auth.token.algorithms = Vec::new();
        let e = cfg.validate("x").expect_err("refused").to_string();
        assert!(e.contains("auth.token.algorithms"), "{e}");
    }
}
