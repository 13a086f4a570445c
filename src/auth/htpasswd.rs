//! The htpasswd file: `user:bcrypt-hash` lines, as `htpasswd -B` writes them. Only bcrypt
//! (`$2y$`, `$2b$`, `$2a$`) is accepted; any other hash is refused with its line number.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

/// bcrypt cost for new passwords (htpasswd -B uses 5 by default; 10 is bcrypt's usual).
const COST: u32 = 10;

/// A hash of a random password, made once: unknown users are checked against it so that
/// the answer takes as long as for a known user.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let pw: String = (0..24).map(|_| rand::random::<char>()).collect();
        hash(&pw).unwrap_or_default()
    })
}

/// Reads and checks the file.
pub fn read(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (create it with `berth user add NAME`)",
            path.display()
        )
    })?;
    parse(&text).map_err(|(line, why)| format!("{} line {line}: {why}", path.display()))
}

/// Parses htpasswd text; errors carry the 1-based line number.
pub fn parse(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or((i + 1, "expected user:hash".to_owned()))?;
        if user.is_empty() {
            return Err((i + 1, "empty user name".into()));
        }
        if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
            return Err((
                i + 1,
                format!("user {user:?}: only bcrypt hashes are accepted (htpasswd -B, or `berth user add`)"),
            ));
        }
        out.insert(user.to_owned(), hash.to_owned());
    }
    Ok(out)
}

/// Whether `password` matches `hash` (constant-time inside bcrypt).
pub fn verify(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// A new `$2y$` hash, the variant every htpasswd reader knows.
pub fn hash(password: &str) -> Result<String, String> {
    bcrypt::hash_with_result(password, COST)
        .map(|h| h.format_for_version(bcrypt::Version::TwoY))
        .map_err(|e| e.to_string())
}

/// Modification time and size, to notice changes.
pub fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Writes the file atomically, mode 0640 (the service's group may read it).
pub fn write(path: &Path, users: &BTreeMap<String, String>) -> Result<(), String> {
    let text: String = users.iter().map(|(u, h)| format!("{u}:{h}\n")).collect();
    crate::store::fs::write_atomic_mode(path, text.as_bytes(), 0o640).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_is_accepted() {
        let ok = parse(
            "# users\nalice:$2y$05$abcdefghijklmnopqrstuuJ0aQ6b2w3p8o0n1m2l3k4j5i6h7g8f9\n\n",
        )
        .expect("parse");
        assert!(ok.contains_key("alice"));
        let (line, why) = parse("alice:$2y$05$x\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
            .expect_err("sha refused");
        assert_eq!(line, 2);
        assert!(why.contains("bob") && why.contains("bcrypt"), "{why}");
        assert_eq!(parse("carol:$apr1$xyz$abc").expect_err("md5").0, 1);
        assert_eq!(parse("nocolon").expect_err("format").0, 1);
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$2y$10$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("x", "not a hash"));
        // The dummy is a well-formed hash that matches nothing a user would type.
        assert!(dummy_hash().starts_with("$2y$"));
        assert!(!verify("", dummy_hash()));
    }
}
