//! Secrets from files: every secret the host reads from the environment can come from a file
//! named by `NAME_FILE` instead (Docker and Kubernetes secrets, systemd credentials), so it
//! need not be a flag, which anyone can read in `ps`, nor sit in the environment.

/// The variables that hold secrets.
pub const SECRET_VARIABLES: [&str; 6] = [
    "COCO_MASTER_KEY",
    "COCO_API_TOKEN",
    "COCO_SERVER_TOKEN",
    "COCO_DROPBOX_CLIENT_SECRET",
    "COCO_ES_PASSWORD",
    "COCO_ES_API_KEY",
];

/// For each secret variable, the value to set from its `_FILE` (one trailing newline dropped),
/// or why it cannot be read. `get` reads the environment; a variable set both ways is refused,
/// since which one wins would be a guess.
pub fn from_files(get: impl Fn(&str) -> Option<String>) -> Result<Vec<(&'static str, String)>, String> {
    let mut found = Vec::new();
    for name in SECRET_VARIABLES {
        let Some(path) = get(&format!("{name}_FILE")).filter(|p| !p.is_empty()) else { continue };
        if get(name).is_some_and(|v| !v.is_empty()) {
            return Err(format!("{name} and {name}_FILE are both set: keep one"));
        }
        let raw = std::fs::read_to_string(&path).map_err(|e| format!("{name}_FILE ({path}): {e}"))?;
        let value = raw.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&raw).to_string();
        if value.is_empty() {
            return Err(format!("{name}_FILE ({path}) is empty"));
        }
        found.push((name, value));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::from_files;
    use std::collections::HashMap;

    #[test]
    fn secrets_come_from_files_once_and_never_from_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "s3cret-value\n").unwrap();
        let path = file.to_str().unwrap().to_string();
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let e = env(&[("COCO_MASTER_KEY_FILE", &path)]);
        assert_eq!(from_files(|k| e.get(k).cloned()).unwrap(), [("COCO_MASTER_KEY", "s3cret-value".to_string())]);
        let both = env(&[("COCO_MASTER_KEY_FILE", &path), ("COCO_MASTER_KEY", "x")]);
        assert!(from_files(|k| both.get(k).cloned()).unwrap_err().contains("both set"));
        let missing = env(&[("COCO_API_TOKEN_FILE", "/nonexistent/token")]);
        let why = from_files(|k| missing.get(k).cloned()).unwrap_err();
        assert!(why.starts_with("COCO_API_TOKEN_FILE (/nonexistent/token)"), "{why}");
        std::fs::write(&file, "\n").unwrap();
        assert!(from_files(|k| e.get(k).cloned()).unwrap_err().contains("empty"));
        assert!(from_files(|_| None).unwrap().is_empty());
    }
}
