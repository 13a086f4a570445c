//! registry:2's (distribution's) configuration vocabulary, in one place: how a `REGISTRY_*`
//! variable names a setting of its `config.yml` ([`Variable`]), and the berth key of each
//! setting that carries over one to one ([`SETTINGS`]).
//!
//! Two readers use it. [`Config::load`](super::Config::load) applies the variables a
//! `registry:2` deployment already sets (`apply`), on top of `appliance.toml`.
//! `berth config import-distribution` (`import.rs`) sets the same variables into a
//! whole `config.yml` as `registry serve` would, and copies the table's settings from it.

use super::env::{get_path, set_path};
use super::ConfigError;
use std::net::SocketAddr;

/// Where a `REGISTRY_*` variable points in `config.yml`: `REGISTRY_HTTP_TLS_KEY` is
/// `http.tls.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The keys from the top, lowercase: `["http", "tls", "key"]`.
    pub path: Vec<String>,
    /// The name ended in a number (`REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0`): the variable is
    /// one element of the list at `path`, not the whole value.
    pub element: bool,
}

impl Variable {
    /// `None` unless the name is `REGISTRY_` and `_`-separated parts, none of them empty.
    pub fn parse(name: &str) -> Option<Variable> {
        let rest = name.strip_prefix("REGISTRY_")?;
        let mut path: Vec<String> = rest.split('_').map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return None;
        }
        let element = path.len() > 1
            && path
                .last()
                .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
        if element {
            path.pop();
        }
        Some(Variable { path, element })
    }

    /// The path as `config.yml` writes it, dotted: `http.tls.key`.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// One `config.yml` setting with a berth key of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its path in `config.yml`, dotted: `storage.filesystem.rootdirectory` (so its
    /// variable is `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`).
    pub distribution: &'static str,
    /// The berth key it becomes.
    pub berth: &'static str,
    pub kind: Kind,
    /// Another berth setting it stands for, as registry:2 behaves: Let's Encrypt settings
    /// mean ACME, `auth.token` means an external token server.
    pub implies: Option<(&'static str, &'static str)>,
}

/// How a setting's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Taken as it is.
    Text,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Flag,
    /// A listen address, where `:5000` means every address. With a certificate
    /// (`http.tls.certificate`) the address serves TLS: it becomes `tls.listen`, and
    /// `http.listen` is emptied.
    Listen,
    /// A list, one element per variable (`_HOSTS_0`, `_HOSTS_1`, ...).
    List,
}

/// Every `config.yml` setting berth reads from `REGISTRY_*` variables, in the order the
/// importer writes them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        distribution: "http.addr",
        berth: "http.listen",
        kind: Kind::Listen,
        implies: None,
    },
    Setting {
        distribution: "http.tls.certificate",
        berth: "tls.certificate",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "http.tls.key",
        berth: "tls.key",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "http.tls.letsencrypt.email",
        berth: "tls.acme.email",
        kind: Kind::Text,
        implies: Some(("tls.mode", "acme")),
    },
    Setting {
        distribution: "http.tls.letsencrypt.hosts",
        berth: "tls.acme.hostnames",
        kind: Kind::List,
        implies: None,
    },
    Setting {
        distribution: "storage.filesystem.rootdirectory",
        berth: "storage.root",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "storage.delete.enabled",
        berth: "storage.delete_enabled",
        kind: Kind::Flag,
        implies: None,
    },
    Setting {
        distribution: "storage",
        berth: "storage.driver",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "storage.s3.regionendpoint",
        berth: "storage.s3.endpoint",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "storage.s3.region",
        berth: "storage.s3.region",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "storage.s3.bucket",
        berth: "storage.s3.bucket",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "storage.s3.rootdirectory",
        berth: "storage.s3.prefix",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "storage.s3.accesskey",
        berth: "storage.s3.access_key_id",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "storage.s3.forcepathstyle",
        berth: "storage.s3.path_style",
        kind: Kind::Flag,
        implies: None,
    },
    Setting {
        distribution: "storage.s3.chunksize",
        berth: "storage.s3.part_size",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "auth",
        berth: "auth.mode",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "auth.htpasswd.path",
        berth: "auth.htpasswd.path",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "auth.htpasswd.realm",
        berth: "auth.htpasswd.realm",
        kind: Kind::Text,
        implies: None,
    },
    Setting {
        distribution: "auth.token.realm",
        berth: "auth.token.realm",
        kind: Kind::Text,
        implies: Some(("auth.token.issuer", "external")),
    },
    Setting {
        distribution: "auth.token.service",
        berth: "auth.token.service",
        kind: Kind::Text,
        implies: Some(("auth.token.issuer", "external")),
    },
    Setting {
        distribution: "auth.token.issuer",
        berth: "auth.token.issuer_name",
        kind: Kind::Text,
        implies: Some(("auth.token.issuer", "external")),
    },
    Setting {
        distribution: "auth.token.rootcertbundle",
        berth: "auth.token.rootcertbundle",
        kind: Kind::Text,
        implies: Some(("auth.token.issuer", "external")),
    },
    Setting {
        distribution: "auth.token.jwks",
        berth: "auth.token.jwks",
        kind: Kind::Text,
        implies: Some(("auth.token.issuer", "external")),
    },
];

impl Setting {
    /// Its key within `section` when it sits directly in that `config.yml` section:
    /// `auth.token.realm` in `auth.token` is `realm`.
    pub fn key_in(&self, section: &str) -> Option<&'static str> {
        let key = self.distribution.strip_prefix(section)?.strip_prefix('.')?;
        (!key.contains('.')).then_some(key)
    }
}

/// The table's settings that sit directly in a `config.yml` section, in the table's order.
pub fn settings_in(section: &str) -> impl Iterator<Item = (&'static str, &'static Setting)> + '_ {
    SETTINGS
        .iter()
        .filter_map(move |s| s.key_in(section).map(|k| (k, s)))
}

/// Applies the `REGISTRY_*` variables of `env` that [`SETTINGS`] has to `table` (the
/// configuration as TOML); returns the names of those used. Other `REGISTRY_*` variables
/// are ignored, as they are for settings berth does not have.
pub(super) fn apply(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let mut used = Vec::new();
    let tls = env
        .iter()
        .any(|(k, _)| k == "REGISTRY_HTTP_TLS_CERTIFICATE");
    for (name, raw) in env {
        let Some(var) = Variable::parse(name) else {
            continue;
        };
        let dotted = var.dotted();
        let Some(setting) = SETTINGS
            .iter()
            .find(|s| s.distribution == dotted && var.element == (s.kind == Kind::List))
        else {
            continue;
        };
        let mut key = path(setting.berth);
        let value = match setting.kind {
            Kind::Text => toml::Value::String(raw.clone()),
            Kind::Flag => toml::Value::Boolean(flag(name, raw)?),
            Kind::Listen => {
                if tls {
                    set_path(table, &key, toml::Value::Array(Vec::new()));
                    key = path("tls.listen");
                }
                toml::Value::Array(vec![toml::Value::String(listen(name, raw)?.to_string())])
            }
            Kind::List => {
                let mut items = get_path(table, &key)
                    .and_then(toml::Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                items.push(toml::Value::String(raw.clone()));
                toml::Value::Array(items)
            }
        };
        if let Some((k, v)) = setting.implies {
            set_path(table, &path(k), toml::Value::String(v.to_owned()));
        }
        set_path(table, &key, value);
        used.push(name.clone());
    }
    // registry:2 2.8 always uses path-style URLs with a regionendpoint (Garage, MinIO).
    let has = |v: &str| used.iter().any(|u| u == v);
    if has("REGISTRY_STORAGE_S3_REGIONENDPOINT") && !has("REGISTRY_STORAGE_S3_FORCEPATHSTYLE") {
        set_path(
            table,
            &path("storage.s3.path_style"),
            toml::Value::Boolean(true),
        );
    }
    Ok(used)
}

fn path(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_owned).collect()
}

/// A listen address as distribution reads it: `:5000` means every address.
fn listen(var: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
    let full = if raw.starts_with(':') {
        format!("0.0.0.0{raw}")
    } else {
        raw.to_owned()
    };
    full.parse().map_err(|_| ConfigError::Env {
        var: var.to_owned(),
        message: format!("{raw:?} is not an address like 0.0.0.0:5000 or :5000"),
    })
}

fn flag(var: &str, raw: &str) -> Result<bool, ConfigError> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::Env {
            var: var.to_owned(),
            message: format!("{raw:?} is not true or false"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_name_config_yml_paths() {
        let v = |name: &str| Variable::parse(name).map(|v| (v.dotted(), v.element));
        assert_eq!(
            v("REGISTRY_HTTP_TLS_KEY"),
            Some(("http.tls.key".into(), false))
        );
        assert_eq!(v("REGISTRY_AUTH"), Some(("auth".into(), false)));
        assert_eq!(
            v("REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_12"),
            Some(("http.tls.letsencrypt.hosts".into(), true))
        );
        // A lone number is a key, not an index.
        assert_eq!(v("REGISTRY_5"), Some(("5".into(), false)));
        for bad in [
            "REGISTRY_",
            "REGISTRY__AUTH",
            "REGISTRY_AUTH_",
            "PATH",
            "BERTH__X__Y",
        ] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, s) in SETTINGS.iter().enumerate() {
            // Each setting once, and reachable by its own variable.
            assert!(
                SETTINGS[..i]
                    .iter()
                    .all(|t| t.distribution != s.distribution),
                "{} twice",
                s.distribution
            );
            let name = format!(
                "REGISTRY_{}",
                s.distribution.replace('.', "_").to_uppercase()
            );
            let var = Variable::parse(&name).expect("a variable");
            assert_eq!(var.dotted(), s.distribution);
        }
        let token: Vec<&str> = settings_in("auth.token").map(|(k, _)| k).collect();
        assert_eq!(
            token,
            ["realm", "service", "issuer", "rootcertbundle", "jwks"]
        );
        // Only direct children.
        assert!(settings_in("http").all(|(k, _)| k == "addr"));
    }
}
