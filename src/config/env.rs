//! `BERTH__SECTION__KEY` environment variables: any setting, overridden by name
//! (`BERTH__STORAGE__ROOT=/srv/registry`, `BERTH__HTTP__LISTEN='["0.0.0.0:5000"]'`). They
//! are applied to the configuration as a TOML table, before it is read into its types, so
//! a bad value is refused with the variable's name.

use super::{to_table, Config, ConfigError};

/// Applies the `BERTH__` variables of `env` to `table`; returns the names of those used.
pub(super) fn apply(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let mut used = Vec::new();
    let defaults = toml::Value::Table(to_table(&Config::default()));
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("BERTH__") else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: "expected BERTH__SECTION__KEY, e.g. BERTH__STORAGE__ROOT".into(),
            });
        }
        let dotted = parts.join(".");
        let known = parts
            .iter()
            .try_fold(&defaults, |v, p| {
                v.as_table().and_then(|t| t.get(p.as_str()))
            })
            // A value, or a map with free keys (auth.groups); not a whole section.
            .is_some_and(|v| v.as_table().is_none_or(|t| t.is_empty()))
            || OPTIONAL_KEYS.contains(&dotted.as_str());
        if !known {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: format!("there is no setting {dotted}"),
            });
        }
        set_path(table, &parts, value(raw));
        used.push(var.clone());
    }
    Ok(used)
}

/// Sets the value at `path` (section names, then the key), making the sections on the way.
pub(super) fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((key, sections)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for s in sections {
        let entry = t
            .entry(s.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        t = next;
    }
    t.insert(key.clone(), value);
}

/// The value at `path`, if there is one.
pub(super) fn get_path<'t>(table: &'t toml::Table, path: &[String]) -> Option<&'t toml::Value> {
    let (key, sections) = path.split_last()?;
    let mut t = table;
    for s in sections {
        t = t.get(s)?.as_table()?;
    }
    t.get(key)
}

/// Settings with no default value, which the default table therefore lacks.
const OPTIONAL_KEYS: &[&str] = &[
    "http.external_url",
    "tls.certificate",
    "tls.key",
    "tls.chain",
    "tls.ca",
    "tls.acme.email",
    "tls.acme.eab_kid",
    "tls.acme.eab_hmac_key_file",
    "tls.acme.ca_roots",
    "tls.acme.renew_before",
    "auth.token.realm",
    "auth.token.signing_key",
    "auth.token.rootcertbundle",
    "auth.token.jwks",
    "storage.s3.endpoint",
    "storage.s3.access_key_id",
    "storage.s3.secret_access_key_file",
    "storage.s3.ca",
];

/// A TOML value when the text is one (`true`, `5`, `["a"]`), else the text as a string.
fn value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_when_they_can_be() {
        assert_eq!(value("true"), toml::Value::Boolean(true));
        assert_eq!(value("5"), toml::Value::Integer(5));
        assert_eq!(
            value(r#"["a"]"#),
            toml::Value::Array(vec![toml::Value::String("a".into())])
        );
        assert_eq!(value("/srv/x"), toml::Value::String("/srv/x".into()));
        assert_eq!(value("4MiB"), toml::Value::String("4MiB".into()));
    }

    #[test]
    fn paths_make_their_sections() {
        let mut t = toml::Table::new();
        let path = ["tls".to_owned(), "acme".to_owned(), "email".to_owned()];
        set_path(&mut t, &path, toml::Value::String("a@b".into()));
        assert_eq!(
            get_path(&t, &path),
            Some(&toml::Value::String("a@b".into()))
        );
        assert_eq!(get_path(&t, &["tls".to_owned(), "mode".to_owned()]), None);
    }
}
